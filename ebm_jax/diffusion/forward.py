"""The forward (noising) process of eqs. (11.4)–(11.6) and its closed-form Gaussian marginals.

One step of the lecture's Markov chain (eq. 11.4) is the Gaussian transition

.. math::

   p_\\beta(x' \\mid x) = N\\big(x';\\, \\sqrt{1-\\beta}\\, x,\\; \\beta I\\big),
   \\qquad x' = \\sqrt{1-\\beta}\\, x + \\sqrt{\\beta}\\, \\varepsilon,\\;
   \\varepsilon \\sim N(0, I) \\quad \\text{(11.5)},

and the perturbed density is :math:`p_\\beta(x') = \\int p(x)\\, p_\\beta(x' \\mid
x)\\, dx` (eq. 11.6). The factor :math:`\\sqrt{1-\\beta}` makes the transition
variance preserving: unit-covariance data stays unit-covariance. Composing
steps keeps the one-shot form (11.5) with the marginal level
:math:`\\bar\\beta_t = 1 - \\prod_{s \\le t}(1 - \\beta_s)` (see
:mod:`ebm_jax.diffusion.schedule`), so :func:`perturb` with
:math:`\\bar\\beta_t` draws :math:`x_t` given :math:`x_0` without running the chain.

Gaussian data stays Gaussian: if :math:`x \\sim N(\\mu, \\Sigma)` then
:math:`p_\\beta = N(\\sqrt{1-\\beta}\\,\\mu,\\; (1-\\beta)\\Sigma + \\beta I)`, and a
Gaussian mixture is perturbed component by component. These closed forms
(:func:`perturbed_gaussian`, :func:`perturbed_gaussian_mixture`,
:func:`perturbed_gaussian_mixture_logdensity`) give the exact perturbed score
that Tweedie's formula and the denoising objective are tested against.

References:
  Sohl-Dickstein, Weiss, Maheswaranathan & Ganguli (2015), *Deep unsupervised
  learning using nonequilibrium thermodynamics*, ICML, arXiv:1503.03585.
  Ho, Jain & Abbeel (2020), *Denoising diffusion probabilistic models*,
  NeurIPS, arXiv:2006.11239.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax import densities
from ebm_jax._validation import as_floating, check_finite_array, check_key, is_concrete
from ebm_jax.densities.base import Target
from ebm_jax.diffusion.schedule import NoiseSchedule
from ebm_jax.types import Array, ArrayLike, PRNGKey

_LOG_2PI = math.log(2.0 * math.pi)


def check_beta(beta: Any, name: str = "beta") -> None:
    """A scalar noise level in the open interval (0, 1); the value is checked when concrete.

    At :math:`\\beta = 0` nothing is perturbed and at :math:`\\beta = 1` the data
    is erased (:math:`\\sqrt{1-\\beta} = 0`), so Tweedie's formula divides by zero.
    """
    if isinstance(beta, (bool, str)) or not isinstance(
        beta, (int, float, np.ndarray, np.number, jax.Array)
    ):
        raise TypeError(f"{name} must be a float in (0, 1), got {type(beta).__name__}")
    if jnp.ndim(beta) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(beta)}")
    if not jnp.issubdtype(jnp.result_type(beta), jnp.number) or jnp.issubdtype(
        jnp.result_type(beta), jnp.complexfloating
    ):
        raise TypeError(f"{name} must be a real float in (0, 1), got dtype {jnp.result_type(beta)}")
    if is_concrete(beta):
        value = float(np.asarray(beta, dtype=np.float64))
        if not 0.0 < value < 1.0:  # also rejects NaN
            raise ValueError(f"{name} must lie in the open interval (0, 1), got {value}")


def _as_position(x: ArrayLike, name: str) -> Array:
    if isinstance(x, (bool, str)) or x is None:
        raise TypeError(f"{name} must be a real array, got {type(x).__name__}")
    position = as_floating(x)
    check_finite_array(position, name)
    return position


def perturb_with_noise(rng_key: PRNGKey, x: ArrayLike, beta: ArrayLike) -> tuple[Array, Array]:
    """Perturb ``x`` by eq. (11.5) and return the noise that was added.

    .. math::

       x' = \\sqrt{1-\\beta}\\, x + \\sqrt{\\beta}\\, \\varepsilon, \\qquad
       \\varepsilon \\sim N(0, I),

    a draw from :math:`p_\\beta(x' \\mid x) = N(\\sqrt{1-\\beta}\\, x, \\beta I)`
    (eq. 11.4). The noise :math:`\\varepsilon` is the regression target of the
    :math:`\\varepsilon`-prediction form of the denoising objective (11.16).

    Args:
      rng_key: a JAX PRNG key.
      x: the clean sample (any shape; one sample, or a batch sharing one
        :math:`\\beta`).
      beta: noise level :math:`\\beta \\in (0, 1)`, a scalar (traceable).

    Returns:
      ``(x_prime, noise)``, both of the shape and floating dtype of ``x``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.diffusion import forward
      >>> x = jnp.array([1.0, -1.0])
      >>> x_prime, noise = forward.perturb_with_noise(jax.random.key(0), x, 0.36)
      >>> bool(jnp.allclose(x_prime, 0.8 * x + 0.6 * noise))
      True

    References:
      Ho, Jain & Abbeel (2020), arXiv:2006.11239, eq. (4).
    """
    check_key(rng_key)
    x = _as_position(x, "x")
    check_beta(beta)
    beta = jnp.asarray(beta, x.dtype)
    noise = jax.random.normal(rng_key, x.shape, x.dtype)
    return jnp.sqrt(1.0 - beta) * x + jnp.sqrt(beta) * noise, noise


def perturb(rng_key: PRNGKey, x: ArrayLike, beta: ArrayLike) -> Array:
    """Draw :math:`x' \\sim p_\\beta(x' \\mid x)` in one shot (eq. 11.5).

    .. math:: x' = \\sqrt{1-\\beta}\\, x + \\sqrt{\\beta}\\, \\varepsilon, \\qquad
       \\varepsilon \\sim N(0, I).

    With the marginal level :math:`\\beta = \\bar\\beta_t` of a schedule
    (``schedule.marginal_betas[t - 1]``) this is the law of :math:`x_t` given
    :math:`x_0` after :math:`t` steps of :func:`forward_chain`.

    Args:
      rng_key: a JAX PRNG key.
      x: the clean sample (any shape).
      beta: noise level :math:`\\beta \\in (0, 1)`, a scalar (traceable).

    Returns:
      :math:`x'`, of the shape of ``x``. :func:`perturb_with_noise` also
      returns :math:`\\varepsilon`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.diffusion import forward
      >>> forward.perturb(jax.random.key(0), jnp.ones(3), 0.5).shape
      (3,)

    References:
      Ho, Jain & Abbeel (2020), arXiv:2006.11239.
    """
    return perturb_with_noise(rng_key, x, beta)[0]


def forward_step(rng_key: PRNGKey, x: ArrayLike, beta: ArrayLike) -> Array:
    """One step of the forward Markov chain, :math:`x_t \\sim p(x_t \\mid x_{t-1})` (eq. 11.4).

    .. math:: x_t = \\sqrt{1-\\beta_t}\\, x_{t-1} + \\sqrt{\\beta_t}\\, \\varepsilon_t,
       \\qquad \\varepsilon_t \\sim N(0, I),

    the same Gaussian transition as :func:`perturb`, applied with the
    *per-step* :math:`\\beta_t` (``schedule.betas[t - 1]``) rather than the
    marginal :math:`\\bar\\beta_t`.

    Args:
      rng_key: a JAX PRNG key.
      x: :math:`x_{t-1}` (any shape).
      beta: :math:`\\beta_t \\in (0, 1)`, a scalar (traceable).

    Returns:
      :math:`x_t`, of the shape of ``x``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.diffusion import forward
      >>> forward.forward_step(jax.random.key(0), jnp.zeros(2), 0.1).shape
      (2,)

    References:
      Sohl-Dickstein et al. (2015), arXiv:1503.03585; Ho et al. (2020), arXiv:2006.11239.
    """
    return perturb_with_noise(rng_key, x, beta)[0]


def forward_chain(rng_key: PRNGKey, x0: ArrayLike, schedule: NoiseSchedule) -> Array:
    """Run the whole forward chain :math:`x_1, \\dots, x_T` from :math:`x_0` (eq. 11.4, iterated).

    .. math::

       x_t = \\sqrt{1-\\beta_t}\\, x_{t-1} + \\sqrt{\\beta_t}\\, \\varepsilon_t
       \\quad\\Longrightarrow\\quad
       x_t \\mid x_0 \\sim N\\big(\\sqrt{\\bar\\alpha_t}\\, x_0,\\; (1 - \\bar\\alpha_t) I\\big),

    with independent :math:`\\varepsilon_t`, scanned with :func:`jax.lax.scan`.
    The path is a Markov chain, so :math:`\\mathrm{Cov}(x_s, x_t \\mid x_0) =
    \\sqrt{\\bar\\alpha_t / \\bar\\alpha_s}\\, (1 - \\bar\\alpha_s) I` for
    :math:`s \\le t`; only the marginals equal one-shot :func:`perturb` draws.

    Args:
      rng_key: a JAX PRNG key.
      x0: the clean sample :math:`x_0` (any shape; vmap for many chains).
      schedule: a :class:`~ebm_jax.diffusion.schedule.NoiseSchedule` with
        :math:`T` steps.

    Returns:
      The path, shape ``(T, *x0.shape)``; row ``t - 1`` is :math:`x_t`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.diffusion import forward, schedule
      >>> path = forward.forward_chain(jax.random.key(0), jnp.ones(2), schedule.linear_schedule(10))
      >>> path.shape
      (10, 2)

    References:
      Ho, Jain & Abbeel (2020), arXiv:2006.11239, eqs. (2) and (4).
    """
    check_key(rng_key)
    x0 = _as_position(x0, "x0")
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    betas = jnp.asarray(schedule.betas, x0.dtype)
    keys = jax.random.split(rng_key, betas.shape[0])

    def step(x: Array, key_and_beta: tuple[PRNGKey, Array]) -> tuple[Array, Array]:
        key, beta = key_and_beta
        noise = jax.random.normal(key, x.shape, x.dtype)
        x_next = jnp.sqrt(1.0 - beta) * x + jnp.sqrt(beta) * noise
        return x_next, x_next

    return jax.lax.scan(step, x0, (keys, betas))[1]


def _perturbed_covariances(covariances: Array, beta: float | Array) -> Array:
    """:math:`(1-\\beta)\\Sigma + \\beta I`, broadcast over leading axes."""
    identity = jnp.eye(covariances.shape[-1], dtype=covariances.dtype)
    return (1.0 - beta) * covariances + beta * identity


def _with_beta(target: Target, name: str, beta: float) -> Target:
    parameters = types.MappingProxyType({**target.parameters, "beta": beta})
    return target._replace(name=name, parameters=parameters)


def perturbed_gaussian(mean: ArrayLike, covariance: ArrayLike, beta: float) -> Target:
    """The perturbed density :math:`p_\\beta` of Gaussian data, in closed form (eq. 11.6).

    .. math::

       x \\sim N(\\mu, \\Sigma) \\;\\Longrightarrow\\;
       p_\\beta(x') = N\\big(x';\\, \\sqrt{1-\\beta}\\,\\mu,\\; (1-\\beta)\\Sigma + \\beta I\\big),

    since :math:`x' = \\sqrt{1-\\beta}\\, x + \\sqrt\\beta\\, \\varepsilon` is a sum
    of independent Gaussians. Its score :math:`-C^{-1}(x' - \\sqrt{1-\\beta}\\,\\mu)`,
    :math:`C = (1-\\beta)\\Sigma + \\beta I`, is the minimiser of the denoising
    objective (11.16) at level :math:`\\beta`.

    Args:
      mean: :math:`\\mu`, shape ``(d,)``.
      covariance: :math:`\\Sigma`, symmetric positive-definite, shape ``(d, d)``.
      beta: :math:`\\beta \\in (0, 1)`, a concrete scalar.

    Returns:
      A normalised :func:`ebm_jax.densities.gaussian` :class:`Target` named
      ``"perturbed_gaussian"``, with ``parameters["beta"]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax.diffusion import forward
      >>> target = forward.perturbed_gaussian(jnp.array([2.0, 0.0]), 4.0 * jnp.eye(2), 0.75)
      >>> target.mean, jnp.diag(target.covariance)  # √0.25·μ, 0.25·4 + 0.75
      (Array([1., 0.], dtype=float32), Array([1.75, 1.75], dtype=float32))
    """
    check_beta(beta)
    if not is_concrete(beta):
        raise ValueError("beta must be concrete (not traced) to build a Target")
    beta = float(beta)
    data = densities.gaussian(mean, covariance)  # validates mean and covariance, by name
    assert data.mean is not None and data.covariance is not None
    target = densities.gaussian(
        math.sqrt(1.0 - beta) * data.mean, _perturbed_covariances(data.covariance, beta)
    )
    return _with_beta(target, "perturbed_gaussian", beta)


def perturbed_gaussian_mixture(
    weights: ArrayLike, means: ArrayLike, covariances: ArrayLike, beta: float
) -> Target:
    """The perturbed density of Gaussian-mixture data, in closed form (eq. 11.6).

    .. math::

       p = \\sum_k w_k N(\\mu_k, \\Sigma_k) \\;\\Longrightarrow\\;
       p_\\beta = \\sum_k w_k\\, N\\big(\\sqrt{1-\\beta}\\,\\mu_k,\\;
       (1-\\beta)\\Sigma_k + \\beta I\\big),

    because the convolution in (11.6) is linear in :math:`p`. Its score is
    analytic (by :func:`jax.grad`) and not linear, so Tweedie's formula (11.13)
    and the vanishing cross term (11.21) are tested on it.

    Args:
      weights: :math:`w_k > 0`, shape ``(K,)`` (normalised to sum to one).
      means: :math:`\\mu_k`, shape ``(K, d)``.
      covariances: the :math:`\\Sigma_k` in any form
        :func:`ebm_jax.densities.gaussian_mixture` accepts (scalar, ``(K,)``,
        ``(K, d)`` or ``(K, d, d)``).
      beta: :math:`\\beta \\in (0, 1)`, a concrete scalar.

    Returns:
      A normalised :class:`Target` (exact samples, mean and covariance) named
      ``"perturbed_gaussian_mixture"``, with ``parameters["beta"]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax.diffusion import forward
      >>> target = forward.perturbed_gaussian_mixture(
      ...     jnp.array([1.0, 1.0]), jnp.array([[-2.0, 0.0], [2.0, 0.0]]), 0.25, 0.5)
      >>> target.parameters["covariances"][0]  # 0.5·0.25 + 0.5
      Array([[0.625, 0.   ],
             [0.   , 0.625]], dtype=float32)
    """
    check_beta(beta)
    if not is_concrete(beta):
        raise ValueError("beta must be concrete (not traced) to build a Target")
    beta = float(beta)
    data = densities.gaussian_mixture(weights, means, covariances)  # validates by name
    target = densities.gaussian_mixture(
        data.parameters["weights"],
        math.sqrt(1.0 - beta) * data.parameters["means"],
        _perturbed_covariances(data.parameters["covariances"], beta),
    )
    return _with_beta(target, "perturbed_gaussian_mixture", beta)


def perturbed_gaussian_mixture_logdensity(
    weights: ArrayLike, means: ArrayLike, covariances: ArrayLike
) -> Callable[[Array, Array], Array]:
    """The exact noise-conditional log-density :math:`\\log p_\\beta(x')` of mixture data.

    .. math::

       \\log p_\\beta(x') = \\log \\sum_k w_k\\, N\\big(x';\\, \\sqrt{1-\\beta}\\,\\mu_k,\\;
       (1-\\beta)\\Sigma_k + \\beta I\\big),

    traceable in :math:`\\beta` (one Cholesky factorisation per component per
    call), so ``jax.grad`` of it is the exact noise-conditional score
    :math:`S^*(x', \\beta) = \\nabla_{x'} \\log p_\\beta(x')`: the perfect model a
    diffusion sampler or :func:`ebm_jax.diffusion.tweedie.tweedie_mean` can be
    checked with. A single Gaussian is the case :math:`K = 1`.

    Args:
      weights: :math:`w_k > 0`, shape ``(K,)`` (normalised to sum to one).
      means: :math:`\\mu_k`, shape ``(K, d)``.
      covariances: as for :func:`perturbed_gaussian_mixture`.

    Returns:
      ``logdensity_fn(x_prime, beta) -> scalar``, normalised, for ONE sample of
      shape ``(d,)`` and a scalar :math:`\\beta \\in (0, 1)`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.diffusion import forward
      >>> logdensity_fn = forward.perturbed_gaussian_mixture_logdensity(
      ...     jnp.ones(1), jnp.array([[2.0]]), 1.0)
      >>> jax.grad(logdensity_fn)(jnp.array([0.0]), 0.75)  # −(x' − √0.25·2) / 1
      Array([1.], dtype=float32)
    """
    data = densities.gaussian_mixture(weights, means, covariances)  # validates by name
    log_weights = jnp.log(data.parameters["weights"])
    component_means = data.parameters["means"]
    # Σ_k = U_k diag(λ_k) U_kᵀ once, so (1 − β)Σ_k + βI = U_k diag((1 − β)λ_k + β) U_kᵀ at
    # every level with matrix products only: no factorisation per call, which under vmap
    # over many samples and levels would be a batched LAPACK call per component.
    eigenvalues, eigenvectors = jnp.linalg.eigh(data.parameters["covariances"])
    dim = component_means.shape[1]

    def logdensity_fn(x_prime: Array, beta: Array) -> Array:
        beta = jnp.asarray(beta, component_means.dtype)
        variances = (1.0 - beta) * eigenvalues + beta  # (K, d), each > 0 for β in (0, 1)
        residuals = x_prime - jnp.sqrt(1.0 - beta) * component_means
        rotated = jnp.einsum("kij,ki->kj", eigenvectors, residuals)  # U_kᵀ r_k
        half_log_dets = 0.5 * jnp.sum(jnp.log(variances), axis=-1)
        squared = jnp.sum(rotated**2 / variances, axis=-1)
        log_components = -0.5 * squared - half_log_dets - 0.5 * dim * _LOG_2PI
        return jax.nn.logsumexp(log_weights + log_components)

    return logdensity_fn


__all__ = [
    "check_beta",
    "forward_chain",
    "forward_step",
    "perturb",
    "perturb_with_noise",
    "perturbed_gaussian",
    "perturbed_gaussian_mixture",
    "perturbed_gaussian_mixture_logdensity",
]

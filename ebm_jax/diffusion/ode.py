"""The probability-flow ODE of a diffusion model: deterministic sampling, encoding, likelihood.

The forward chain of eqs. (11.4)–(11.5) is the discretisation of the
variance-preserving SDE :math:`dx = -\\tfrac12 b(t)\\, x\\, dt + \\sqrt{b(t)}\\, dW`,
whose marginal is :math:`x_t = \\sqrt{1 - \\bar\\beta}\\, x_0 + \\sqrt{\\bar\\beta}\\,
\\varepsilon` with :math:`\\bar\\beta(t) = 1 - e^{-\\int_0^t b}`. Its probability-flow
ODE :math:`dx/dt = -\\tfrac12 b(t) (x + \\nabla \\log p_t(x))` (Song et al. 2021)
moves samples of :math:`p_{\\bar\\beta}` to samples of :math:`p_{\\bar\\beta'}`
deterministically. Since :math:`d\\bar\\beta / dt = b\\, (1 - \\bar\\beta)`, in the
marginal level itself

.. math::

   \\frac{dx}{d\\bar\\beta} = -\\frac{x + S(x, \\bar\\beta)}{2 (1 - \\bar\\beta)},
   \\qquad S(x, \\bar\\beta) = \\nabla_x \\log p_{\\bar\\beta}(x).

Check: for data at one point 0, :math:`p_{\\bar\\beta} = N(0, \\bar\\beta I)`,
:math:`S = -x / \\bar\\beta` and :math:`dx/d\\bar\\beta = x / (2\\bar\\beta)`, so
:math:`x \\propto \\sqrt{\\bar\\beta}`, as the marginal says. (The tempting
:math:`-(x + \\bar\\beta S)/(2(1 - \\bar\\beta))` would leave this :math:`x`
frozen.) The ODE is integrated in the log signal-to-noise ratio
:math:`\\lambda = \\log((1 - \\bar\\beta) / \\bar\\beta)`, :math:`d\\bar\\beta /
d\\lambda = -\\bar\\beta (1 - \\bar\\beta)`:

.. math::

   \\frac{dx}{d\\lambda} = v(x, \\lambda)
   = \\tfrac12 \\bar\\beta\\, \\big(x + S(x, \\bar\\beta)\\big),
   \\qquad \\bar\\beta = \\operatorname{sigmoid}(-\\lambda),

which has no singularity at :math:`\\bar\\beta \\to 1` and, for Gaussian data,
rates bounded by :math:`\\tfrac12` over the whole range, so a grid uniform in
:math:`\\lambda` suits every schedule.

Two kinds of integrator (``method``):

- **fixed step** (:data:`METHODS`): Euler, Heun or RK4 on ``num_steps`` equal
  steps in :math:`\\lambda`, in ``lax.scan``; NFE = ``num_steps`` times the
  number of stages (1, 2, 4), the same for every sample.
- **adaptive** (:data:`ADAPTIVE_METHODS`, needs ``pip install "ebm_jax[ode]"``):
  the embedded 5(4) pairs of Tsitouras (``"tsit5"``) or Dormand & Prince
  (``"dopri5"``), solved by diffrax (Kidger 2021), one solve per sample
  (``vmap``), so each sample gets its own step sequence. A step
  :math:`h` from :math:`y_n` gives :math:`y_{n+1}` and an error estimate
  :math:`e` (the difference between the order-5 and order-4 solutions); with

  .. math::

     r = \\max_{\\text{parts } k} \\sqrt{\\frac{1}{d_k} \\sum_{i \\in k}
     \\Big(\\frac{e_i}{\\text{atol} + \\text{rtol} \\max(|y_{n,i}|, |y_{n+1,i}|)}\\Big)^2}

  (the root-mean-square over each part of the state, the position and, for
  the likelihood, the divergence integral, and the largest of these, so that
  each part is held to the tolerance on its own) the step is accepted when
  :math:`r < 1`, and the next trial step is :math:`h \\cdot
  \\operatorname{clip}(0.9\\, r^{-1/5}, f_{\\min}, f_{\\max})` with
  :math:`(f_{\\min}, f_{\\max}) = (1, 10)` after an accepted step and
  :math:`(0.2, 0.9)` after a rejected one (an integral controller,
  Hairer, Nørsett & Wanner 1993, §II.4). Both pairs evaluate the field 7
  times per step, the last at the new point and reused as the first stage of
  the next step (FSAL), so a sample whose solve took :math:`n` steps (accepted
  plus rejected) costs exactly :math:`1 + 6n` evaluations. The tolerances bound
  each step's estimated local error, not the global error at the end, which
  in practice is larger but shrinks with them. Song et al. (2021) computed
  likelihoods with Dormand-Prince (``scipy``'s ``RK45``) at rtol = atol =
  1e-5, the defaults here.

References:
  Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole (2021), *Score-based
  generative modeling through stochastic differential equations*, ICLR,
  arXiv:2011.13456 (Section 4.3, Appendix D).
  Chen, Rubanova, Bettencourt & Duvenaud (2018), *Neural ordinary
  differential equations*, NeurIPS, arXiv:1806.07366 (instantaneous change of
  variables).
  Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud (2019), *FFJORD:
  free-form continuous dynamics for scalable reversible generative models*,
  ICLR, arXiv:1810.01367 (Hutchinson's estimator with fixed probes).
  Kingma, Salimans, Poole & Ho (2021), *Variational diffusion models*,
  NeurIPS, arXiv:2107.00630 (the log-SNR parametrisation).
  Dormand & Prince (1980), *A family of embedded Runge-Kutta formulae*,
  Journal of Computational and Applied Mathematics 6(1), 19–26.
  Tsitouras (2011), *Runge-Kutta pairs of order 5(4) satisfying only the first
  column simplifying assumption*, Computers & Mathematics with Applications
  62(2), 770–775.
  Hairer, Nørsett & Wanner (1993), *Solving ordinary differential equations
  I: nonstiff problems*, 2nd ed., Springer (§II.4, automatic step size control).
  Kidger (2021), *On neural differential equations*, DPhil thesis, University
  of Oxford, arXiv:2202.02435 (diffrax).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax import trace
from ebm_jax._validation import (
    check_callable,
    check_int,
    check_key,
    check_logdensity,
    check_positive_scalar,
    is_concrete,
)
from ebm_jax.diffusion import guidance as guidance_lib
from ebm_jax.diffusion.guidance import Guidance
from ebm_jax.diffusion.samplers import _check_guided_score_model, _check_option
from ebm_jax.diffusion.schedule import NoiseSchedule
from ebm_jax.diffusion.tweedie import NoiseConditionalScoreFn
from ebm_jax.types import Array, ArrayLike, LogDensityFn, PRNGKey

_Tableau = tuple[tuple[tuple[float, ...], ...], tuple[float, ...], tuple[float, ...]]

# Explicit Runge-Kutta Butcher tableaux (a, b, c): stage i is evaluated at
# y + h sum_j a[i][j] k_j and time s + c[i] h; the step is y + h sum_i b[i] k_i.
_TABLEAUX: dict[str, _Tableau] = {
    "euler": (((),), (1.0,), (0.0,)),
    "heun": (((), (1.0,)), (0.5, 0.5), (0.0, 1.0)),
    "rk4": (
        ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        (1 / 6, 1 / 3, 1 / 3, 1 / 6),
        (0.0, 0.5, 0.5, 1.0),
    ),
}
METHODS = tuple(_TABLEAUX)
"""Fixed-step integrators: ``"euler"`` (order 1), ``"heun"`` (2), ``"rk4"`` (4)."""

ADAPTIVE_METHODS = ("tsit5", "dopri5")
"""Adaptive integrators with error control (diffrax): Tsitouras 5(4), Dormand-Prince 5(4)."""

DEFAULT_RTOL = 1e-5
"""Relative tolerance of the adaptive methods (Song et al. 2021's likelihoods)."""

DEFAULT_ATOL = 1e-5
"""Absolute tolerance of the adaptive methods."""

DEFAULT_MAX_STEPS = 4096
"""Most steps (accepted plus rejected) one adaptive solve may take."""

DIVERGENCES = ("exact", "hutchinson")
"""How :func:`probability_flow_log_likelihood` computes :math:`\\nabla \\cdot v`."""

_LOG_2PI = math.log(2.0 * math.pi)


class ProbabilityFlowResult(NamedTuple):
    """What :func:`probability_flow_sample` and :func:`probability_flow_encode` return.

    Attributes:
      positions: ``(num_samples, *event_shape)``, the end points of the flow
        (samples of :math:`p_{\\bar\\beta_{\\min}}` when sampling, latents when
        encoding).
      num_function_evaluations: model evaluations per sample (NFE). A fixed-step
        method: an ``int``, the same for every sample. An adaptive one: an int32
        array ``(num_samples,)``, :math:`1 + 6n` for a sample whose own solve
        took :math:`n` steps (accepted plus rejected). The batched solve runs
        until its last sample is done, so its cost is the maximum of these for
        every sample.
    """

    positions: Array
    num_function_evaluations: int | Array


class LogLikelihoodResult(NamedTuple):
    """What :func:`probability_flow_log_likelihood` returns (leading axis: samples).

    Attributes:
      log_likelihood: ``(num_samples,)``, :math:`\\log p_{\\bar\\beta_{\\min}}(x)`.
      latents: ``(num_samples, *event_shape)``, the encodings at
        :math:`\\bar\\beta_{\\max}`.
      prior_logdensity: ``(num_samples,)``, the prior's log-density at the latents.
      divergence_integral: ``(num_samples,)``, :math:`\\int \\nabla \\cdot v\\,
        d\\lambda` along the encoding path (the log-volume change).
      num_function_evaluations: model evaluations per sample (NFE), each with
        its Jacobian-vector products: an ``int`` for a fixed-step method, an
        int32 array ``(num_samples,)`` for an adaptive one (as in
        :class:`ProbabilityFlowResult`).
    """

    log_likelihood: Array
    latents: Array
    prior_logdensity: Array
    divergence_integral: Array
    num_function_evaluations: int | Array


class _Adaptive(NamedTuple):
    """The static part of an adaptive solve (the tolerances are traced values)."""

    method: str
    max_steps: int


# Either a fixed-step tableau or an adaptive solver: the static integrator argument.
_Integrator = _Tableau | _Adaptive


def probability_flow_drift(
    score_fn: NoiseConditionalScoreFn, x: ArrayLike, beta: ArrayLike
) -> Array:
    """The probability-flow velocity in the marginal level, :math:`dx / d\\bar\\beta`.

    .. math:: \\frac{dx}{d\\bar\\beta} = -\\frac{x + S(x, \\bar\\beta)}{2 (1 - \\bar\\beta)}.

    Args:
      score_fn: ``(x, beta) -> score`` of one sample at marginal level ``beta``.
      x: one sample.
      beta: the marginal level :math:`\\bar\\beta \\in (0, 1)`.

    Returns:
      The velocity, of ``x``'s shape.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax.diffusion import ode
      >>> point_mass_score = lambda x, beta: -x / beta  # x ∝ sqrt(beta): dx/dbeta = x/(2 beta)
      >>> ode.probability_flow_drift(point_mass_score, jnp.array([1.0]), 0.25)
      Array([2.], dtype=float32)
    """
    x = jnp.asarray(x)
    beta = jnp.asarray(beta, x.dtype)
    return -(x + score_fn(x, beta)) / (2.0 * (1.0 - beta))


def probability_flow_sample(
    score_fn: NoiseConditionalScoreFn,
    schedule: NoiseSchedule,
    initial_positions: ArrayLike,
    *,
    num_steps: int = 100,
    method: str = "heun",
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int | None = None,
    class_labels: ArrayLike | None = None,
    guidance_scale: float = 1.0,
    null_label: int | None = None,
) -> ProbabilityFlowResult:
    """Deterministic sampling: the probability-flow ODE from noise to data.

    .. math::

       x(\\lambda_{\\max}) = x_T + \\int_{\\lambda_{\\min}}^{\\lambda_{\\max}} \\tfrac12
       \\bar\\beta\\, \\big(x + S(x, \\bar\\beta)\\big)\\, d\\lambda,

    from :math:`\\lambda_{\\min} = \\lambda(\\bar\\beta_T)` to :math:`\\lambda_{\\max}
    = \\lambda(\\bar\\beta_1)`, on ``num_steps`` equal steps in the log-SNR
    :math:`\\lambda` or, with an adaptive ``method``, on steps chosen per sample
    to hold the local error to ``rtol`` and ``atol`` (see the module docstring).
    With the exact score it maps :math:`p_{\\bar\\beta_T}` exactly onto
    :math:`p_{\\bar\\beta_1}` (up to the integrator's error); with :math:`x_T \\sim
    N(0, I)` it is exact as :math:`\\bar\\alpha_T \\to 0`. The output is the sample
    at :math:`\\bar\\beta_1`, not denoised (:func:`ebm_jax.diffusion.tweedie_mean`
    does that).

    Args:
      score_fn: ``(x, beta) -> score`` of one sample at marginal level ``beta``.
      schedule: the :class:`~ebm_jax.diffusion.schedule.NoiseSchedule`; only its
        levels :math:`\\bar\\beta_1` and :math:`\\bar\\beta_T` are used.
      initial_positions: ``(num_samples, *event_shape)`` draws of :math:`x_T`.
      num_steps: an int :math:`\\ge 1`. Fixed-step methods: the number of equal
        steps. Adaptive methods: only the first trial step,
        :math:`(\\lambda_{\\max} - \\lambda_{\\min}) / \\text{num\\_steps}`; the
        controller chooses every later one.
      method: fixed step, ``"euler"``, ``"heun"`` (default) or ``"rk4"``;
        adaptive, ``"tsit5"`` or ``"dopri5"`` (needs ``pip install "ebm_jax[ode]"``).
      rtol: relative tolerance of an adaptive method, a positive float, default
        :data:`DEFAULT_RTOL` (1e-5). In float32, tolerances much below 1e-6 are
        under the rounding of the state: use float64 for tighter ones.
      atol: absolute tolerance of an adaptive method, default :data:`DEFAULT_ATOL`.
      max_steps: most steps (accepted plus rejected) of one adaptive solve, an
        int :math:`\\ge 1`, default :data:`DEFAULT_MAX_STEPS`. ``rtol``, ``atol``
        and ``max_steps`` given with a fixed-step method raise ``ValueError``.
      class_labels: ``(num_samples,)`` integer labels for a class-conditional
        ``score_fn(x, beta, label)``; default ``None``, an unconditional
        ``score_fn(x, beta)`` (see :mod:`ebm_jax.diffusion.guidance`).
      guidance_scale: :math:`w` of classifier-free guidance, :math:`S_\\varnothing
        + w (S_c - S_\\varnothing)` in the velocity; 1 (default) is the
        conditional model.
      null_label: the label the model was trained with for "no class"; needed
        for :math:`w \\ne 1`, and doubles the NFE.

    Returns:
      :class:`ProbabilityFlowResult`. NFE: ``num_steps`` times 1, 2 or 4 (an int)
      for a fixed-step method; per sample :math:`1 + 6n` (an array) for an
      adaptive one whose solve of that sample took :math:`n` steps; twice that
      with ``null_label``.

    Raises:
      RuntimeError: an adaptive solve took ``max_steps`` steps without reaching
        the end (under an outer ``jit``, that sample's positions are NaN instead).

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax.diffusion import ode, schedule
      >>> point_mass_score = lambda x, beta: -x / beta
      >>> noise_schedule = schedule.from_betas(jnp.array([0.19, 0.5]))  # levels 0.19, 0.595
      >>> result = ode.probability_flow_sample(
      ...     point_mass_score, noise_schedule, jnp.ones((1, 1)), method="rk4")
      >>> round(float(result.positions[0, 0]) ** 2, 4)  # x² ∝ beta: 0.19 / 0.595
      0.3193
      >>> adaptive = ode.probability_flow_sample(
      ...     point_mass_score, noise_schedule, jnp.ones((1, 1)), num_steps=4, method="tsit5")
      >>> round(float(adaptive.positions[0, 0]) ** 2, 4)
      0.3193
      >>> adaptive.num_function_evaluations  # 1 + 6 × 4 steps
      Array([25], dtype=int32)
    """
    positions, grid, integrator, tolerances, guidance = _prepare(
        score_fn,
        schedule,
        initial_positions,
        num_steps,
        method,
        rtol,
        atol,
        max_steps,
        guidance_arguments=(class_labels, guidance_scale, null_label),
    )
    # Sampling runs from noise (low log-SNR) to data (high log-SNR).
    samples, evaluations, succeeded = _integrate_positions(
        positions, grid, tolerances, guidance, score_fn=score_fn, integrator=integrator
    )
    nfe = _evaluations(integrator, num_steps, evaluations, succeeded)
    return ProbabilityFlowResult(samples, nfe * guidance_lib.evaluations_per_step(guidance))


def probability_flow_encode(
    score_fn: NoiseConditionalScoreFn,
    schedule: NoiseSchedule,
    data: ArrayLike,
    *,
    num_steps: int = 100,
    method: str = "heun",
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int | None = None,
) -> ProbabilityFlowResult:
    """Encoding: the probability-flow ODE from :math:`\\bar\\beta_1` to :math:`\\bar\\beta_T`.

    .. math::

       z = x + \\int_{\\lambda_{\\max}}^{\\lambda_{\\min}} \\tfrac12 \\bar\\beta\\,
       \\big(x + S(x, \\bar\\beta)\\big)\\, d\\lambda,

    the inverse of :func:`probability_flow_sample` (to the integrator's error):
    a deterministic, invertible map from data to latents.

    Args:
      score_fn: ``(x, beta) -> score`` of one sample at marginal level ``beta``.
      schedule: the :class:`~ebm_jax.diffusion.schedule.NoiseSchedule`.
      data: ``(num_samples, *event_shape)``, points at level :math:`\\bar\\beta_1`.
      num_steps: equal steps of a fixed-step method, or the first trial step
        :math:`\\Delta\\lambda / \\text{num\\_steps}` of an adaptive one.
      method: ``"euler"``, ``"heun"`` (default), ``"rk4"``, ``"tsit5"`` or ``"dopri5"``.
      rtol: relative tolerance of an adaptive method (default 1e-5).
      atol: absolute tolerance of an adaptive method (default 1e-5).
      max_steps: most steps of one adaptive solve (default 4096); as in
        :func:`probability_flow_sample`.

    Returns:
      :class:`ProbabilityFlowResult` with the latents.

    Raises:
      RuntimeError: an adaptive solve took ``max_steps`` steps without reaching the end.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax.diffusion import ode, schedule
      >>> standard_normal_score = lambda x, beta: -x  # N(0, I) data: the flow stands still
      >>> result = ode.probability_flow_encode(
      ...     standard_normal_score, schedule.linear_schedule(100), jnp.ones((2, 3)))
      >>> bool(jnp.allclose(result.positions, 1.0))
      True
    """
    positions, grid, integrator, tolerances, _ = _prepare(
        score_fn, schedule, data, num_steps, method, rtol, atol, max_steps, "data"
    )
    latents, evaluations, succeeded = _integrate_positions(
        positions, grid[::-1], tolerances, None, score_fn=score_fn, integrator=integrator
    )
    return ProbabilityFlowResult(
        latents, _evaluations(integrator, num_steps, evaluations, succeeded)
    )


def probability_flow_log_likelihood(
    rng_key: PRNGKey,
    score_fn: NoiseConditionalScoreFn,
    schedule: NoiseSchedule,
    data: ArrayLike,
    *,
    num_steps: int = 100,
    method: str = "heun",
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int | None = None,
    divergence: str = "exact",
    num_probes: int = 1,
    probe: str = "rademacher",
    prior_logdensity_fn: LogDensityFn | None = None,
) -> LogLikelihoodResult:
    """Log-likelihood :math:`\\log p_{\\bar\\beta_1}(x)` by the instantaneous change of variables.

    Along the encoding path :math:`x(\\lambda)` of :func:`probability_flow_encode`,
    :math:`d \\log p_\\lambda(x(\\lambda)) / d\\lambda = -\\nabla \\cdot v` (Chen et
    al. 2018), so

    .. math::

       \\log p_{\\bar\\beta_1}(x) = \\log \\pi(z) + \\int_{\\lambda_{\\max}}^{\\lambda_{\\min}}
       \\nabla_x \\cdot v(x(\\lambda), \\lambda)\\, d\\lambda, \\qquad
       \\nabla_x \\cdot v = \\tfrac12 \\bar\\beta\\, \\big(d + \\nabla_x \\cdot S\\big),

    integrated jointly with :math:`x`, as one ODE in the augmented state
    :math:`(x, \\int \\nabla \\cdot v)`, with :math:`z = x(\\lambda_{\\min})` and
    the prior :math:`\\pi = N(0, I) \\approx p_{\\bar\\beta_T}`. An adaptive
    ``method`` controls the error of both parts, each to ``rtol``/``atol`` on its
    own (the module docstring's norm), one solve and step sequence per sample.
    The divergence is exact (``"exact"``, :math:`d` JVPs per stage,
    :func:`ebm_jax.trace.value_and_exact_divergence`) or Hutchinson's estimate
    (``"hutchinson"``, ``num_probes`` JVPs per stage) with the probes drawn once
    per sample and held fixed along its path (FFJORD). With a fixed-step
    method the path does not depend on the probes and the quadrature is linear
    in the divergences, so the log-likelihood is unbiased for the
    exact-divergence one at any step count; an adaptive method picks its steps
    from the error of the estimated integral, so there it is unbiased up to
    the solver's tolerance. It is the likelihood of the data perturbed to
    :math:`\\bar\\beta_1`, not of the data itself (:math:`\\lambda = \\infty`).

    Args:
      rng_key: a JAX PRNG key for the probes (unused by ``"exact"``).
      score_fn: ``(x, beta) -> score`` of one sample at marginal level ``beta``.
      schedule: the :class:`~ebm_jax.diffusion.schedule.NoiseSchedule`.
      data: ``(num_samples, *event_shape)``.
      num_steps: equal steps of a fixed-step method, or the first trial step
        :math:`\\Delta\\lambda / \\text{num\\_steps}` of an adaptive one.
      method: ``"euler"``, ``"heun"`` (default), ``"rk4"``, ``"tsit5"`` or
        ``"dopri5"`` (adaptive, needs ``pip install "ebm_jax[ode]"``).
      rtol: relative tolerance of an adaptive method (default 1e-5, as Song et
        al. 2021); float64 for tolerances much below 1e-6.
      atol: absolute tolerance of an adaptive method (default 1e-5).
      max_steps: most steps of one adaptive solve (default 4096). ``rtol``,
        ``atol`` and ``max_steps`` given with a fixed-step method raise ``ValueError``.
      divergence: ``"exact"`` (default) or ``"hutchinson"``.
      num_probes: probes per sample for ``"hutchinson"``.
      probe: ``"rademacher"`` or ``"gaussian"`` (see :func:`ebm_jax.trace.sample_probes`).
      prior_logdensity_fn: ``z -> log pi(z)`` of one latent, normalised; default
        the standard normal.

    Returns:
      :class:`LogLikelihoodResult`. NFE: ``num_steps`` times 1, 2 or 4 (an int),
      or per sample :math:`1 + 6n` (an array) for an adaptive method.

    Raises:
      RuntimeError: an adaptive solve took ``max_steps`` steps without reaching
        the end (under an outer ``jit``, that sample's results are NaN instead).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.diffusion import ode, schedule
      >>> standard_normal_score = lambda x, beta: -x  # p_beta = N(0, I) at every level
      >>> result = ode.probability_flow_log_likelihood(
      ...     jax.random.key(0), standard_normal_score, schedule.linear_schedule(100),
      ...     jnp.zeros((1, 2)))
      >>> round(float(result.log_likelihood[0]), 4), round(-jnp.log(2 * jnp.pi).item(), 4)
      (-1.8379, -1.8379)

      Data :math:`N(2, 0.25)` in one dimension, so :math:`p_{\\bar\\beta} = N(2\\sqrt{1 -
      \\bar\\beta}, 0.25 (1 - \\bar\\beta) + \\bar\\beta)`; adaptive Tsit5 at Song et
      al.'s tolerances, with the exact :math:`p_{\\bar\\beta_T}` as the prior:

      >>> noise_schedule = schedule.linear_schedule(1000)
      >>> first, last = noise_schedule.marginal_betas[0], noise_schedule.marginal_betas[-1]
      >>> def logdensity(x, beta):
      ...     mean, variance = 2 * jnp.sqrt(1 - beta), 0.25 * (1 - beta) + beta
      ...     return jnp.sum(jax.scipy.stats.norm.logpdf(x, mean, jnp.sqrt(variance)))
      >>> result = ode.probability_flow_log_likelihood(
      ...     jax.random.key(0), jax.grad(logdensity), noise_schedule, jnp.array([[2.5]]),
      ...     method="tsit5", rtol=1e-5, atol=1e-5,
      ...     prior_logdensity_fn=lambda z: logdensity(z, last))
      >>> bool(jnp.abs(result.log_likelihood[0] - logdensity(jnp.array([2.5]), first)) < 1e-4)
      True
      >>> result.num_function_evaluations  # 1 + 6 × 17 steps
      Array([103], dtype=int32)

    References:
      Song et al. (2021), arXiv:2011.13456, Appendix D.2.
      Grathwohl et al. (2019), arXiv:1810.01367.
    """
    check_key(rng_key)
    _check_option(divergence, DIVERGENCES, "divergence")
    num_probes = check_int(num_probes, "num_probes", 1)
    _check_option(probe, trace.PROBES, "probe")
    positions, grid, integrator, tolerances, _ = _prepare(
        score_fn, schedule, data, num_steps, method, rtol, atol, max_steps, "data"
    )
    if prior_logdensity_fn is not None:
        check_callable(prior_logdensity_fn, "prior_logdensity_fn")
        try:
            hash(prior_logdensity_fn)
        except TypeError as exc:
            raise TypeError("prior_logdensity_fn must be hashable") from exc
        check_logdensity(prior_logdensity_fn, positions[0], "prior_logdensity_fn")
    (latents, divergence_integral, prior_logdensity), evaluations, succeeded = (
        _integrate_log_likelihood(
            rng_key,
            positions,
            grid[::-1],
            tolerances,
            score_fn=score_fn,
            integrator=integrator,
            divergence=divergence,
            num_probes=num_probes,
            probe=probe,
            prior_logdensity_fn=prior_logdensity_fn,
        )
    )
    return LogLikelihoodResult(
        prior_logdensity + divergence_integral,
        latents,
        prior_logdensity,
        divergence_integral,
        _evaluations(integrator, num_steps, evaluations, succeeded),
    )


# --- the integrators ----------------------------------------------------------------------


def _velocity(score_fn: NoiseConditionalScoreFn, x: Array, log_snr: Array) -> Array:
    """The velocity :math:`dx/d\\lambda = \\tfrac12 \\bar\\beta (x + S(x, \\bar\\beta))`.

    Here :math:`\\bar\\beta = \\operatorname{sigmoid}(-\\lambda)`.
    """
    beta = jax.nn.sigmoid(-log_snr)
    return 0.5 * beta * (x + score_fn(x, beta))


def _runge_kutta_step(
    vector_field: Callable[[Any, Array], Any],
    state: Any,
    time: Array,
    step: Array,
    tableau: _Tableau,
) -> Any:
    """One explicit Runge-Kutta step of ``d state / d time = vector_field(state, time)``."""
    a, b, c = tableau
    stages: list[Any] = []
    for row, node in zip(a, c, strict=True):
        stage_state = state
        for weight, stage in zip(row, stages, strict=False):
            if weight:
                stage_state = jax.tree.map(
                    lambda y, k, w=weight: y + (step * w) * k, stage_state, stage
                )
        stages.append(vector_field(stage_state, time + node * step))
    increment = jax.tree.map(lambda *ks: sum(w * k for w, k in zip(b, ks, strict=True)), *stages)
    return jax.tree.map(lambda y, k: y + step * k, state, increment)


def _integrate_fixed(
    vector_field: Callable[[Any, Array], Any], state: Any, grid: Array, tableau: _Tableau
) -> Any:
    def body(state: Any, interval: tuple[Array, Array]) -> tuple[Any, None]:
        start, end = interval
        return _runge_kutta_step(vector_field, state, start, end - start, tableau), None

    state, _ = jax.lax.scan(body, state, (grid[:-1], grid[1:]))
    return state


def _error_norm(scaled_error: Any) -> Array:
    """The largest root-mean-square of the parts of the scaled error (module docstring)."""
    return functools.reduce(
        jnp.maximum,
        [jnp.sqrt(jnp.mean(jnp.square(part))) for part in jax.tree.leaves(scaled_error)],
    )


def _integrate_adaptive(
    vector_field: Callable[[Any, Array], Any],
    state: Any,
    grid: Array,
    integrator: _Adaptive,
    tolerances: Array,
) -> tuple[Any, Array, Array]:
    """One adaptive solve over ``grid[0] -> grid[-1]``: the end state, its NFE, success."""
    diffrax = _import_diffrax(integrator.method)
    solver = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5}[integrator.method]()
    start, end = grid[0], grid[-1]
    initial_velocity = vector_field(state, start)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda log_snr, y, args: vector_field(y, log_snr)),
        solver,
        start,
        end,
        grid[1] - grid[0],
        state,
        stepsize_controller=diffrax.PIDController(
            rtol=tolerances[0], atol=tolerances[1], norm=_error_norm
        ),
        max_steps=integrator.max_steps,
        # The pairs are FSAL: handed the first stage, every trial step (the first one
        # and rejected ones included) evaluates exactly its len(c) other stages.
        solver_state=(jnp.asarray(False), initial_velocity),
        made_jump=False,
        throw=False,
    )
    succeeded = solution.result == diffrax.RESULTS.successful
    final = jax.tree.map(lambda path: jnp.where(succeeded, path[-1], jnp.nan), solution.ys)
    evaluations = 1 + len(solver.tableau.c) * solution.stats["num_steps"]
    return final, jnp.asarray(evaluations, jnp.int32), succeeded


def _integrate(
    vector_field: Callable[[Any, Array], Any],
    state: Any,
    grid: Array,
    integrator: _Integrator,
    tolerances: Array | None,
) -> tuple[Any, Array | None, Array | None]:
    """Integrate over ``grid``; NFE and success are ``None`` for a fixed-step method."""
    if isinstance(integrator, _Adaptive):
        assert tolerances is not None
        return _integrate_adaptive(vector_field, state, grid, integrator, tolerances)
    return _integrate_fixed(vector_field, state, grid, integrator), None, None


@functools.partial(jax.jit, static_argnames=("score_fn", "integrator"))
def _integrate_positions(
    positions: Array,
    grid: Array,
    tolerances: Array | None,
    guidance: Guidance | None,
    *,
    score_fn: NoiseConditionalScoreFn,
    integrator: _Integrator,
) -> tuple[Array, Array | None, Array | None]:
    guided_score = guidance_lib.per_sample(score_fn, guidance)
    labels = None if guidance is None else guidance.class_labels

    def one_sample(x: Array, label: Array | None) -> tuple[Array, Array | None, Array | None]:
        field = functools.partial(_velocity, lambda y, beta: guided_score(y, beta, label))
        return _integrate(field, x, grid, integrator, tolerances)

    return jax.vmap(one_sample)(positions, labels)


@functools.partial(
    jax.jit,
    static_argnames=(
        "score_fn",
        "integrator",
        "divergence",
        "num_probes",
        "probe",
        "prior_logdensity_fn",
    ),
)
def _integrate_log_likelihood(
    rng_key: PRNGKey,
    positions: Array,
    grid: Array,
    tolerances: Array | None,
    *,
    score_fn: NoiseConditionalScoreFn,
    integrator: _Integrator,
    divergence: str,
    num_probes: int,
    probe: str,
    prior_logdensity_fn: LogDensityFn | None,
) -> tuple[tuple[Array, Array, Array], Array | None, Array | None]:
    def one_sample(
        probe_key: PRNGKey, x: Array
    ) -> tuple[tuple[Array, Array, Array], Array | None, Array | None]:
        probes = trace.sample_probes(probe_key, x.shape, num_probes, probe, x.dtype)

        def augmented_field(state: tuple[Array, Array], log_snr: Array) -> tuple[Array, Array]:
            position, _ = state
            field = lambda y: _velocity(score_fn, y, log_snr)
            if divergence == "exact":
                return trace.value_and_exact_divergence(field, position)
            velocity, products = trace.value_and_jvps(field, position, probes)
            quadratic_forms = jnp.sum((probes * products).reshape(num_probes, -1), axis=1)
            return velocity, jnp.mean(quadratic_forms)

        initial = (x, jnp.zeros((), x.dtype))
        (latent, divergence_integral), evaluations, succeeded = _integrate(
            augmented_field, initial, grid, integrator, tolerances
        )
        if prior_logdensity_fn is None:
            prior = -0.5 * jnp.sum(latent**2) - 0.5 * latent.size * _LOG_2PI
        else:
            prior = prior_logdensity_fn(latent)
        return (latent, divergence_integral, prior), evaluations, succeeded

    probe_keys = jax.random.split(rng_key, positions.shape[0])
    return jax.vmap(one_sample)(probe_keys, positions)


# --- argument checks ----------------------------------------------------------------------


def _import_diffrax(method: str) -> Any:
    try:
        import diffrax
    except ImportError as exc:
        raise ImportError(
            f'method={method!r} is an adaptive solver and needs diffrax: pip install "ebm_jax[ode]"'
        ) from exc
    return diffrax


def _check_integrator(method: Any, rtol: Any, atol: Any, max_steps: Any) -> _Integrator:
    """The static integrator for ``method``; the adaptive options only with an adaptive one."""
    _check_option(method, METHODS + ADAPTIVE_METHODS, "method")
    if method in METHODS:
        given = [
            name
            for name, value in (("rtol", rtol), ("atol", atol), ("max_steps", max_steps))
            if value is not None
        ]
        if given:
            raise ValueError(
                f"{' and '.join(given)}: only for the adaptive methods {ADAPTIVE_METHODS}; "
                f"method={method!r} takes num_steps equal steps"
            )
        return _TABLEAUX[method]
    _import_diffrax(method)
    for value, name in ((rtol, "rtol"), (atol, "atol")):
        if value is not None:
            check_positive_scalar(value, name)
            if jnp.ndim(value) != 0:
                raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}")
    if max_steps is None:
        max_steps = DEFAULT_MAX_STEPS
    return _Adaptive(method, check_int(max_steps, "max_steps", 1))


def _prepare(
    score_fn: Any,
    schedule: Any,
    positions: Any,
    num_steps: Any,
    method: Any,
    rtol: Any,
    atol: Any,
    max_steps: Any,
    name: str = "initial_positions",
    guidance_arguments: tuple[Any, Any, Any] = (None, 1.0, None),
) -> tuple[Array, Array, _Integrator, Array | None, Guidance | None]:
    """Validate; return the positions, the log-SNR grid (noise to data), the integrator,
    the adaptive tolerances ``[rtol, atol]`` (``None`` for a fixed-step method) and the
    guidance (``None`` for an unconditional model)."""
    num_steps = check_int(num_steps, "num_steps", 1)
    integrator = _check_integrator(method, rtol, atol, max_steps)
    positions, guidance = _check_guided_score_model(
        score_fn, schedule, positions, *guidance_arguments, name=name
    )
    dtype = positions.dtype
    # log SNR = log ᾱ - log(1 - ᾱ), from ᾱ: near pure noise ᾱ stays representable where
    # β̄ = 1 - ᾱ rounds to 1 (a cosine schedule's ᾱ_T ≈ 2.4e-9), which would give -inf.
    smallest = jnp.asarray(schedule.marginal_betas[0], dtype)
    least_signal = jnp.asarray(schedule.alphas_cumprod[-1], dtype)
    log_snr_max = jnp.log1p(-smallest) - jnp.log(smallest)
    log_snr_min = jnp.log(least_signal) - jnp.log1p(-least_signal)
    grid = jnp.linspace(log_snr_min, log_snr_max, num_steps + 1, dtype=dtype)
    tolerances = None
    if isinstance(integrator, _Adaptive):
        # Traced values: a new tolerance reuses the compiled solve.
        tolerances = jnp.stack(
            [
                jnp.asarray(DEFAULT_RTOL if rtol is None else rtol, dtype),
                jnp.asarray(DEFAULT_ATOL if atol is None else atol, dtype),
            ]
        )
    return positions, grid, integrator, tolerances, guidance


def _evaluations(
    integrator: _Integrator, num_steps: int, evaluations: Array | None, succeeded: Array | None
) -> int | Array:
    """The NFE to report; a failed adaptive solve raises (when the result is concrete)."""
    if not isinstance(integrator, _Adaptive):
        return num_steps * len(integrator[1])
    assert evaluations is not None and succeeded is not None
    if is_concrete(succeeded) and not bool(np.all(succeeded)):
        failed = int(np.sum(~np.asarray(succeeded)))
        raise RuntimeError(
            f"the adaptive {integrator.method!r} solve of {failed} of {succeeded.size} samples "
            f"reached max_steps={integrator.max_steps} before the end of the flow: raise "
            "max_steps or loosen rtol/atol"
        )
    return evaluations


__all__ = [
    "ADAPTIVE_METHODS",
    "DEFAULT_ATOL",
    "DEFAULT_MAX_STEPS",
    "DEFAULT_RTOL",
    "DIVERGENCES",
    "METHODS",
    "LogLikelihoodResult",
    "ProbabilityFlowResult",
    "probability_flow_drift",
    "probability_flow_encode",
    "probability_flow_log_likelihood",
    "probability_flow_sample",
]

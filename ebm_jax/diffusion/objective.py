"""The denoising objective of eq. (11.16), over a distribution of noise levels (§11.2.5).

The lecture parametrises the perturbed score by a noise-conditional model
:math:`S_w(x', \\beta) \\approx \\nabla_{x'} \\log p_\\beta(x')` and, by Tweedie's
formula (11.13), would like to regress :math:`x' + \\beta S_w(x', \\beta)` on
:math:`\\sqrt{1-\\beta}\\,\\mathbb{E}[x \\mid x']` (eq. 11.15 — whose model
argument should read :math:`S_w(x', \\beta)`, not :math:`S_w(x, \\beta)`: the
model only ever sees the perturbed sample). The posterior mean is unknown, so
(11.16) regresses on the clean sample itself:

.. math::

   L(w) = \\mathbb{E}_\\beta\\, \\mathbb{E}_{x \\sim p}\\,
   \\mathbb{E}_{x' \\mid x} \\big\\|x' + \\beta S_w(x', \\beta) - \\sqrt{1-\\beta}\\, x\\big\\|^2 .

Why this is the same problem (11.17–11.21). Put :math:`b = \\sqrt{1-\\beta}\\,
\\mathbb{E}[x \\mid x']`, add and subtract it (11.18) and expand the square:

.. math::

   L(w) = \\mathbb{E} \\|x' + \\beta S_w - b\\|^2 + \\mathbb{E} \\|b - \\sqrt{1-\\beta}\\, x\\|^2
   + 2\\, \\mathbb{E}\\big[(x' + \\beta S_w - b)^\\top (b - \\sqrt{1-\\beta}\\, x)\\big].

The lecture's eq. (11.20) writes the cross term as a *product* of two
expectations; it is the expectation of an inner product, and it vanishes by the
tower property (11.21): :math:`x' + \\beta S_w - b` is a function of
:math:`x'` alone and :math:`\\mathbb{E}[b - \\sqrt{1-\\beta}\\, x \\mid x'] = 0`.
The second term does not depend on :math:`w`, so (11.16) and (11.15) have the
same minimiser, :math:`S^* = \\nabla_{x'} \\log p_\\beta` at every level.

With :math:`x' = \\sqrt{1-\\beta}\\, x + \\sqrt\\beta\\, \\varepsilon` the residual
is :math:`\\sqrt\\beta\\,\\varepsilon + \\beta S_w`, so

.. math::

   \\big\\|x' + \\beta S_w - \\sqrt{1-\\beta}\\, x\\big\\|^2
   = \\beta\\, \\big\\|\\varepsilon + \\sqrt\\beta\\, S_w\\big\\|^2,
   \\qquad S^* = -\\mathbb{E}[\\varepsilon \\mid x'] / \\sqrt\\beta,

and, per level, :math:`\\mathbb{E}\\|x' + \\beta S_w - \\sqrt{1-\\beta}\\, x\\|^2 =
\\beta^2\\, \\mathbb{E}_{p_\\beta} \\|S_w - \\nabla \\log p_\\beta\\|^2 + (1-\\beta)\\,
\\mathbb{E}\\|x - \\mathbb{E}[x \\mid x']\\|^2`: :math:`\\beta^2` times the Fisher
divergence plus the posterior variance. The lecture's unweighted form therefore
all but ignores small noise levels; :func:`denoising_loss` offers the usual
re-weightings :math:`w(\\beta)`, which change the balance between levels but not
the minimiser at any level.

References:
  Vincent (2011), *A connection between score matching and denoising
  autoencoders*, Neural Computation 23(7).
  Song & Ermon (2019), *Generative modeling by estimating gradients of the
  data distribution*, NeurIPS, arXiv:1907.05600.
  Ho, Jain & Abbeel (2020), *Denoising diffusion probabilistic models*,
  NeurIPS, arXiv:2006.11239.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._validation import check_callable, check_key, check_one_sample_output, is_concrete
from ebm_jax.diffusion.schedule import NoiseSchedule, linear_schedule
from ebm_jax.losses.score_matching import LossFn, as_batch, check_score_fn
from ebm_jax.types import Array, ArrayLike, ArrayTree, PRNGKey

NoiseConditionalFn = Callable[[ArrayTree, Array, Array], Array]
"""``(params, x, beta) -> S_w(x, β)`` (the shape of ``x``) or ``-> f_w(x, β)`` (a scalar)."""

BetaSampler = Callable[[PRNGKey], Array]
"""``beta_sampler(rng_key) -> beta``: one noise level in (0, 1), a scalar."""

WEIGHTINGS = ("lecture", "epsilon", "score")
"""The named weightings :math:`w(\\beta) = 1,\\ 1/\\beta,\\ 1/\\beta^2`."""


def _residual_scale(weighting: str | Callable[[Array], Array]) -> Callable[[Array], Array]:
    """:math:`w(\\beta)\\beta`, the factor of :math:`\\|\\varepsilon + \\sqrt\\beta S\\|^2`.

    The loss is computed in the :math:`\\varepsilon` form rather than as
    :math:`\\|x' - \\sqrt{1-\\beta}\\, x + \\beta S\\|^2`, whose first two terms
    cancel to :math:`\\sqrt\\beta\\,\\varepsilon` and lose precision at small
    :math:`\\beta`; the named weightings are written out so that no factor
    :math:`\\beta / \\beta` is rounded.
    """
    if isinstance(weighting, str):
        if weighting == "lecture":
            return lambda beta: beta
        if weighting == "epsilon":
            return lambda beta: jnp.ones_like(beta)
        if weighting == "score":
            return lambda beta: 1.0 / beta
        raise ValueError(
            f"weighting must be one of {WEIGHTINGS} or a callable w(beta), got {weighting!r}"
        )
    if not callable(weighting):
        raise TypeError(
            f"weighting must be one of {WEIGHTINGS} or a callable w(beta), "
            f"got {type(weighting).__name__}"
        )
    return lambda beta: weighting(beta) * beta


def _noise_conditional_score(
    logdensity_fn: NoiseConditionalFn | None, score_fn: NoiseConditionalFn | None
) -> NoiseConditionalFn:
    """The model's score ``(params, x, beta) -> S_w(x, beta)``, whichever form was given."""
    if (logdensity_fn is None) == (score_fn is None):
        raise TypeError(
            "give exactly one of logdensity_fn (an energy network f_w(x, beta)) or "
            "score_fn (a score network S_w(x, beta)), got "
            + ("neither" if logdensity_fn is None else "both")
        )
    if logdensity_fn is not None:
        check_callable(logdensity_fn, "logdensity_fn")
        return jax.grad(logdensity_fn, argnums=1)  # eq. (11.1): S_w = ∇ₓ f_w
    assert score_fn is not None
    check_callable(score_fn, "score_fn")
    return score_fn


def _check_scalar_output(fn: Callable[..., Any], name: str, *args: Any) -> None:
    """``fn(*args)`` must be a real floating scalar (checked by ``jax.eval_shape``)."""
    try:
        out = jax.eval_shape(fn, *args)
    except Exception as exc:  # re-raised with the argument named
        raise ValueError(f"{name} failed: {exc}") from exc
    if getattr(out, "shape", None) != ():
        raise ValueError(
            f"{name} must return a scalar, got shape {getattr(out, 'shape', type(out).__name__)}"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{name} must return a floating-point scalar, got dtype {out.dtype}")


def _check_schedule(schedule: Any) -> Array:
    """The marginal levels :math:`\\bar\\beta_t` of a schedule, checked to lie in (0, 1)."""
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    marginal_betas = jnp.asarray(schedule.marginal_betas)
    if marginal_betas.ndim != 1 or marginal_betas.shape[0] < 1:
        raise ValueError(
            f"schedule.marginal_betas must have shape (T,) with T >= 1, got {marginal_betas.shape}"
        )
    if is_concrete(marginal_betas):
        values = np.asarray(marginal_betas, dtype=np.float64)
        if not np.all((values > 0) & (values < 1)):  # also rejects NaN
            raise ValueError("schedule.marginal_betas must lie in the open interval (0, 1)")
    return marginal_betas


def denoising_loss(
    score_fn: NoiseConditionalFn | None = None,
    *,
    logdensity_fn: NoiseConditionalFn | None = None,
    schedule: NoiseSchedule | None = None,
    beta_sampler: BetaSampler | None = None,
    weighting: str | Callable[[Array], Array] = "epsilon",
) -> LossFn:
    """The denoising objective (11.16) of a noise-conditional model, over random noise levels.

    .. math::

       L(w) = \\frac{1}{B} \\sum_{b=1}^{B} w(\\beta_b)\\,
       \\big\\|x_b' + \\beta_b S_w(x_b', \\beta_b) - \\sqrt{1-\\beta_b}\\, x_b\\big\\|^2
       = \\frac{1}{B} \\sum_{b=1}^{B} w(\\beta_b)\\, \\beta_b\\,
       \\big\\|\\varepsilon_b + \\sqrt{\\beta_b}\\, S_w(x_b', \\beta_b)\\big\\|^2,

    with :math:`x_b' = \\sqrt{1-\\beta_b}\\, x_b + \\sqrt{\\beta_b}\\,\\varepsilon_b`
    (eq. 11.5), one level :math:`\\beta_b` and one :math:`\\varepsilon_b \\sim
    N(0, I)` per sample, and no factor :math:`\\tfrac12`. By the vanishing cross
    term (11.19–11.21) its expectation at each level is
    :math:`w(\\beta)\\beta^2\\, \\mathbb{E}_{p_\\beta}\\|S_w - \\nabla \\log
    p_\\beta\\|^2` plus a constant, minimised by the perturbed score
    :math:`S^*(x', \\beta) = \\nabla_{x'} \\log p_\\beta(x')` whatever the weighting.
    (The lecture's eq. 11.15 should read :math:`S_w(x', \\beta)`; its eq. 11.20
    writes the cross term as a product of expectations, but it is
    :math:`\\mathbb{E}[(x' + \\beta S_w - b)^\\top (b - \\sqrt{1-\\beta}\\, x)] = 0`.)

    Weightings :math:`w(\\beta)`:

    - ``"lecture"``: :math:`w = 1`, eq. (11.16) as written; per level
      :math:`\\beta^2 \\times` the Fisher divergence.
    - ``"epsilon"`` (default): :math:`w = 1/\\beta`, the loss
      :math:`\\|\\varepsilon + \\sqrt\\beta S_w\\|^2`: Ho et al.'s
      :math:`\\varepsilon`-prediction loss with :math:`\\hat\\varepsilon =
      -\\sqrt\\beta S_w`, and Song & Ermon's :math:`\\lambda(\\sigma) = \\sigma^2`
      with :math:`\\sigma^2 = \\beta`; per level :math:`\\beta \\times` the Fisher
      divergence, every level's loss of order :math:`d`.
    - ``"score"``: :math:`w = 1/\\beta^2`, the loss :math:`\\|S_w +
      \\varepsilon/\\sqrt\\beta\\|^2`: Vincent's denoising score matching per
      level, exactly the Fisher divergence plus a constant (twice
      :func:`ebm_jax.losses.denoising_score_matching` with :math:`\\sigma =
      \\sqrt\\beta` on data scaled by :math:`\\sqrt{1-\\beta}`); its variance
      grows like :math:`1/\\beta` at small levels.
    - a callable ``w(beta) -> scalar``, applied per sample.

    Args:
      score_fn: a noise-conditional score network ``(params, x, beta) -> S_w``
        of the shape of ``x``, for ONE sample ``x`` and a scalar ``beta``.
      logdensity_fn: keyword-only alternative, an energy network ``(params, x,
        beta) -> f_w(x, beta)``, a scalar; the model is :math:`S_w = \\nabla_x f_w`
        (eq. 11.1, by :func:`jax.grad`), the lecture's EBM view of diffusion.
        Give exactly one of ``score_fn`` and ``logdensity_fn``.
      schedule: draw the level of each sample as :math:`\\beta =
        \\bar\\beta_t` (``schedule.marginal_betas[t - 1]``) with :math:`t` uniform
        on :math:`1, \\dots, T`. The default, when ``beta_sampler`` is not given
        either, is :func:`~ebm_jax.diffusion.schedule.linear_schedule` with
        :math:`T = 1000`.
      beta_sampler: alternative to ``schedule``, a continuous level distribution
        ``beta_sampler(rng_key) -> beta`` returning a scalar in (0, 1) (not
        checked inside ``jit``).
      weighting: ``"lecture"``, ``"epsilon"`` (default), ``"score"``, or a
        callable ``w(beta)``.

    Returns:
      ``loss_fn(params, rng_key, batch) -> scalar``, ``batch`` of shape
      ``(batch_size, *event_shape)``. ``rng_key`` is split into ``(level_key,
      noise_key)``: the levels are drawn from ``level_key``, the noise is
      ``jax.random.normal(noise_key, batch.shape)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.diffusion import objective
      >>> # The exact score of N(0, I) data, which (11.5) leaves invariant: S*(x', β) = -x'.
      >>> score_fn = lambda scale, x, beta: -scale * x
      >>> loss_fn = objective.denoising_loss(score_fn)
      >>> batch = jax.random.normal(jax.random.key(0), (4096, 2))
      >>> losses = [loss_fn(s, jax.random.key(1), batch) for s in (0.5, 1.0, 2.0)]
      >>> bool(losses[1] < losses[0] and losses[1] < losses[2])
      True

    References:
      Vincent (2011), Neural Computation 23(7); Song & Ermon (2019),
      arXiv:1907.05600; Ho, Jain & Abbeel (2020), arXiv:2006.11239.
    """
    score_of = _noise_conditional_score(logdensity_fn, score_fn)
    residual_scale = _residual_scale(weighting)
    if schedule is not None and beta_sampler is not None:
        raise TypeError("give at most one of schedule and beta_sampler, got both")

    if beta_sampler is None:
        marginal_betas = _check_schedule(linear_schedule(1000) if schedule is None else schedule)

        def draw_levels(rng_key: PRNGKey, batch_size: int, dtype: Any) -> Array:
            steps = jax.random.randint(rng_key, (batch_size,), 0, marginal_betas.shape[0])
            return marginal_betas.astype(dtype)[steps]

    else:
        check_callable(beta_sampler, "beta_sampler")

        def draw_levels(rng_key: PRNGKey, batch_size: int, dtype: Any) -> Array:
            keys = jax.random.split(rng_key, batch_size)
            return jax.vmap(beta_sampler)(keys).astype(dtype)

    def check_model(params: ArrayTree, sample: Array, beta: Array) -> None:
        if logdensity_fn is not None:
            check_one_sample_output(
                lambda x: logdensity_fn(params, x, beta), sample, "logdensity_fn(params, x, beta)"
            )
        else:
            assert score_fn is not None
            check_score_fn(
                lambda p, x: score_fn(p, x, beta), params, sample, "score_fn(params, x, beta)"
            )

    def per_sample(params: ArrayTree, x: Array, noise: Array, beta: Array) -> Array:
        x_prime = jnp.sqrt(1.0 - beta) * x + jnp.sqrt(beta) * noise  # eq. (11.5)
        residual = noise + jnp.sqrt(beta) * score_of(params, x_prime, beta)
        return residual_scale(beta) * jnp.sum(residual**2)

    def loss_fn(params: ArrayTree, rng_key: PRNGKey, batch: ArrayLike) -> Array:
        check_key(rng_key)
        batch = as_batch(batch)
        probe_beta = jnp.asarray(0.5, batch.dtype)
        check_model(params, batch[0], probe_beta)
        if beta_sampler is not None:
            _check_scalar_output(beta_sampler, "beta_sampler", rng_key)
        if callable(weighting):
            _check_scalar_output(weighting, "weighting", probe_beta)
        level_key, noise_key = jax.random.split(rng_key)
        betas = draw_levels(level_key, batch.shape[0], batch.dtype)
        noise = jax.random.normal(noise_key, batch.shape, batch.dtype)
        per_sample_terms = jax.vmap(per_sample, in_axes=(None, 0, 0, 0))(
            params, batch, noise, betas
        )
        return jnp.mean(per_sample_terms)

    return loss_fn


__all__ = ["WEIGHTINGS", "BetaSampler", "NoiseConditionalFn", "denoising_loss"]

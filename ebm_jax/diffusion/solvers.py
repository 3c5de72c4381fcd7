"""Few-step samplers on the schedule's levels: DDIM and DPM-Solver++.

Both start from :math:`x_T` and visit the levels :math:`\\bar\\beta_{t_n} >
\\dots > \\bar\\beta_{t_1}` of :func:`~ebm_jax.diffusion.samplers.sampling_steps`
with one evaluation of ``score_fn(x, beta)`` per level, through the model's
estimates of the noise and of the data (Tweedie's formula, eq. 11.13),

.. math::

   \\hat\\varepsilon_t = -\\sqrt{\\bar\\beta_t}\\, S_w(x_t, \\bar\\beta_t), \\qquad
   \\hat x_0 = D(x_t)
   = \\frac{x_t + \\bar\\beta_t\\, S_w(x_t, \\bar\\beta_t)}{\\sqrt{\\bar\\alpha_t}}
   = \\frac{x_t - \\sqrt{\\bar\\beta_t}\\, \\hat\\varepsilon_t}{\\sqrt{\\bar\\alpha_t}},

and end, after :math:`t_1`, with :math:`\\hat x_0 = D(x_{t_1})`, the denoised
mean, as every sampler of :mod:`ebm_jax.diffusion.samplers` does. NFE = the
number of visited levels.

**DDIM** (Song, Meng & Ermon 2021, eq. 12) moves from :math:`t` to the next
visited step :math:`s` by

.. math::

   x_s = \\sqrt{\\bar\\alpha_s}\\, \\hat x_0
   + \\sqrt{\\bar\\beta_s - \\sigma_{t|s}^2}\\; \\hat\\varepsilon_t + \\sigma_{t|s}\\, z,
   \\qquad \\sigma_{t|s}^2 = \\eta^2\\, \\frac{\\bar\\beta_s}{\\bar\\beta_t}\\, \\beta_{t|s},

with :math:`\\beta_{t|s} = 1 - \\bar\\alpha_t / \\bar\\alpha_s`. At :math:`\\eta =
1` the noise is the posterior variance :math:`\\tilde\\beta_{t|s}` and the step
*is* the ancestral step: the coefficient of :math:`S_w` reduces to
:math:`\\beta_{t|s} / \\sqrt{1 - \\beta_{t|s}}` because :math:`\\bar\\beta_t -
\\beta_{t|s} = (1 - \\beta_{t|s}) \\bar\\beta_s`. At :math:`\\eta = 0` it is
deterministic, the first-order exponential integrator of the probability-flow
ODE below.

**DPM-Solver++** (Lu et al. 2022b) integrates the probability-flow ODE in the
half log-SNR :math:`\\lambda = \\log(\\alpha / \\sigma)`, :math:`\\alpha =
\\sqrt{\\bar\\alpha}`, :math:`\\sigma = \\sqrt{\\bar\\beta}`, where it reads
:math:`x_s = \\frac{\\sigma_s}{\\sigma_t} x_t + \\sigma_s \\int_{\\lambda_t}^{\\lambda_s}
e^{\\lambda} D(x_\\lambda)\\, d\\lambda`: the linear part exactly, the data
prediction by a polynomial in :math:`\\lambda` through the last ``order``
evaluations (multistep, no extra evaluations). With :math:`h = \\lambda_s -
\\lambda_t` and :math:`\\varphi = e^{-h} - 1`,

.. math::

   x_s &= \\frac{\\sigma_s}{\\sigma_t} x_t - \\alpha_s \\varphi\\, D_0
   \\quad \\text{(order 1, = DDIM with } \\eta = 0), \\\\
   x_s &= \\frac{\\sigma_s}{\\sigma_t} x_t - \\alpha_s \\varphi\\,
   \\Big(D_0 + \\frac{D_0 - D_{-1}}{2 r_0}\\Big), \\quad r_0 = \\frac{h_{-1}}{h}
   \\quad \\text{(order 2, "2M")},

with :math:`D_0, D_{-1}` the data predictions at :math:`t` and at the level
before it and :math:`h_{-1}` the step that led to :math:`t`; order 3 ("3M")
adds the second divided difference (Lu et al. 2022b, Algorithm 2 and
appendix). The first steps use the orders their history allows, and the last
step, to :math:`\\lambda = \\infty`, is :math:`\\hat x_0 = D(x_{t_1})`. All
coefficients are computed from :math:`\\log \\bar\\alpha` in float64 on the
host, so a level that rounds to 1 in float32 (the cosine schedule's
:math:`\\bar\\beta_T`) costs no precision.

Guidance (``class_labels``, ``guidance_scale``, ``null_label``) combines the
model's scores as in :mod:`ebm_jax.diffusion.guidance`; :math:`\\hat
x_0` and :math:`\\hat\\varepsilon` are linear in the score, so it is the same
combination of the data predictions (Lu et al.'s guided setting).

References:
  Song, Meng & Ermon (2021), *Denoising diffusion implicit models*, ICLR,
  arXiv:2010.02502.
  Lu, Zhou, Bao, Chen, Li & Zhu (2022a), *DPM-Solver: a fast ODE solver for
  diffusion probabilistic model sampling in around 10 steps*, NeurIPS,
  arXiv:2206.00927.
  Lu, Zhou, Bao, Chen, Li & Zhu (2022b), *DPM-Solver++: fast solver for guided
  sampling of diffusion probabilistic models*, arXiv:2211.01095.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._validation import check_int, check_key
from ebm_jax.diffusion import guidance as guidance_lib
from ebm_jax.diffusion.guidance import Guidance
from ebm_jax.diffusion.samplers import (
    DiffusionSamples,
    _check_guided_score_model,
    log_alphas_cumprod,
    sampling_steps,
)
from ebm_jax.diffusion.schedule import NoiseSchedule
from ebm_jax.diffusion.tweedie import NoiseConditionalScoreFn
from ebm_jax.types import Array, ArrayLike, PRNGKey

ORDERS = (1, 2, 3)
"""Orders of :func:`dpm_solver_sample`."""


class _Steps(NamedTuple):
    """Per visited level (noisiest first): ``x_s = x_coef x + sum_k data_coefs[k] D_{-k} + σ z``."""

    marginal_beta: Array  # β̄_t as stored in the schedule, the model's input
    score_scale: Array  # β̄_t from log ᾱ_t in float64
    data_scale: Array  # 1 / sqrt(ᾱ_t): D = data_scale * (x + score_scale * S)
    x_coef: Array
    data_coefs: Array  # (num_levels, 3): weights of D_0, D_{-1}, D_{-2}
    noise_std: Array


def ddim_sample(
    rng_key: PRNGKey,
    score_fn: NoiseConditionalScoreFn,
    schedule: NoiseSchedule,
    initial_positions: ArrayLike,
    num_steps: int | None = None,
    eta: float = 0.0,
    *,
    spacing: str = "linear",
    class_labels: ArrayLike | None = None,
    guidance_scale: float = 1.0,
    null_label: int | None = None,
) -> DiffusionSamples:
    """DDIM sampling (Song, Meng & Ermon 2021): deterministic at ``eta=0``, ancestral at 1.

    .. math::

       x_s = \\sqrt{\\bar\\alpha_s}\\, \\hat x_0
       + \\sqrt{\\bar\\beta_s - \\sigma_{t|s}^2}\\; \\hat\\varepsilon_t + \\sigma_{t|s}\\, z,
       \\qquad \\sigma_{t|s}^2 = \\eta^2\\, \\frac{\\bar\\beta_s}{\\bar\\beta_t}\\, \\beta_{t|s},

    from each visited step :math:`t` to the next :math:`s` (see the module
    docstring), ending with :math:`\\hat x_0 = D(x_{t_1})`. ``eta=1`` draws its
    noise from the keys :func:`~ebm_jax.diffusion.ancestral_sample` uses, so
    the two agree step for step.

    Args:
      rng_key: a JAX PRNG key (unused when ``eta=0``).
      score_fn: ``(x, beta) -> score`` of one sample at marginal level ``beta``.
      schedule: the :class:`~ebm_jax.diffusion.schedule.NoiseSchedule`.
      initial_positions: ``(num_samples, *event_shape)`` draws of :math:`x_T`.
      num_steps: how many levels to visit (see
        :func:`~ebm_jax.diffusion.sampling_steps`); default all :math:`T`.
      eta: :math:`\\eta \\in [0, 1]`.
      spacing: ``"linear"`` (default, Song et al.'s) or ``"log_snr"`` (see
        :func:`~ebm_jax.diffusion.sampling_steps`).
      class_labels: ``(num_samples,)`` labels of a class-conditional
        ``score_fn(x, beta, label)`` (see :mod:`ebm_jax.diffusion.guidance`).
      guidance_scale: :math:`w` of classifier-free guidance; 1 (default) is the
        conditional model.
      null_label: the model's "no class" label; needed for :math:`w \\ne 1`,
        doubles the NFE.

    Returns:
      :class:`~ebm_jax.diffusion.DiffusionSamples`, NFE = ``num_steps``.

    Examples:
      >>> import jax
      >>> from ebm_jax.diffusion import samplers, schedule, solvers
      >>> point_mass_score = lambda x, beta: -x / beta  # data all at the origin
      >>> x_T = samplers.initial_noise(jax.random.key(0), 3, (2,))
      >>> result = solvers.ddim_sample(
      ...     jax.random.key(1), point_mass_score, schedule.linear_schedule(100), x_T, 10)
      >>> result.num_function_evaluations, bool(abs(result.samples).max() < 1e-5)
      (10, True)

    References:
      Song, Meng & Ermon (2021), arXiv:2010.02502, eq. (12).
    """
    check_key(rng_key)
    if isinstance(eta, bool) or np.ndim(eta) != 0 or not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must be a real number in [0, 1], got {eta!r}")
    positions, guidance = _check_guided_score_model(
        score_fn, schedule, initial_positions, class_labels, guidance_scale, null_label
    )
    steps = sampling_steps(schedule, num_steps, spacing)
    coefficients = _ddim_steps(schedule, steps, float(eta), positions.dtype)
    samples = _run(
        rng_key, positions, coefficients, guidance, score_fn=score_fn, stochastic=eta != 0
    )
    return DiffusionSamples(samples, len(steps) * guidance_lib.evaluations_per_step(guidance))


def dpm_solver_sample(
    score_fn: NoiseConditionalScoreFn,
    schedule: NoiseSchedule,
    initial_positions: ArrayLike,
    num_steps: int = 20,
    order: int = 2,
    *,
    spacing: str = "log_snr",
    class_labels: ArrayLike | None = None,
    guidance_scale: float = 1.0,
    null_label: int | None = None,
) -> DiffusionSamples:
    """Multistep DPM-Solver++ (Lu et al. 2022b): the probability-flow ODE in few steps.

    .. math::

       x_s = \\frac{\\sigma_s}{\\sigma_t} x_t - \\alpha_s \\big(e^{-h} - 1\\big)
       \\Big(D_0 + \\frac{D_0 - D_{-1}}{2 r_0}\\Big), \\qquad h = \\lambda_s - \\lambda_t,

    at ``order=2`` (the module docstring has all three orders), from
    :math:`x_T` through the visited levels to :math:`\\hat x_0 = D(x_{t_1})`.
    With the exact score the result converges to the probability-flow ODE's
    (:func:`~ebm_jax.diffusion.probability_flow_sample` followed by
    :func:`~ebm_jax.diffusion.tweedie_mean`) at rate ``order`` in the step.
    Deterministic.

    Args:
      score_fn: ``(x, beta) -> score`` of one sample at marginal level ``beta``.
      schedule: the :class:`~ebm_jax.diffusion.schedule.NoiseSchedule`.
      initial_positions: ``(num_samples, *event_shape)`` draws of :math:`x_T`.
      num_steps: how many levels to visit (see
        :func:`~ebm_jax.diffusion.sampling_steps`), an int in :math:`[1, T]`;
        default 20.
      order: 1, 2 (default) or 3.
      spacing: ``"log_snr"`` (default: the steps evenly spaced in log-SNR, Lu
        et al.'s choice for few steps) or ``"linear"`` (see
        :func:`~ebm_jax.diffusion.sampling_steps`). On the linear schedule with
        :math:`T = 1000` at 10–25 steps the even strides in :math:`t` leave
        steps of 2 in half log-SNR near the data, where the multistep
        extrapolation overshoots: 2M's error against the flow is 5–12 times
        that of the log-SNR grid.
      class_labels: ``(num_samples,)`` labels of a class-conditional
        ``score_fn(x, beta, label)`` (see :mod:`ebm_jax.diffusion.guidance`).
      guidance_scale: :math:`w` of classifier-free guidance; 1 (default) is the
        conditional model.
      null_label: the model's "no class" label; needed for :math:`w \\ne 1`,
        doubles the NFE.

    Returns:
      :class:`~ebm_jax.diffusion.DiffusionSamples`, NFE = ``num_steps``.

    Examples:
      >>> import jax
      >>> from ebm_jax.diffusion import samplers, schedule, solvers
      >>> point_mass_score = lambda x, beta: -(x - 2.0) / beta  # data all at (2, 2)
      >>> x_T = samplers.initial_noise(jax.random.key(0), 3, (2,))
      >>> result = solvers.dpm_solver_sample(
      ...     point_mass_score, schedule.linear_schedule(1000), x_T, 10)
      >>> result.num_function_evaluations
      10
      >>> bool(jax.numpy.allclose(result.samples, 2.0, atol=1e-4))
      True

    References:
      Lu et al. (2022b), arXiv:2211.01095, Algorithm 2 (DPM-Solver++(2M)).
    """
    order = check_int(order, "order", 1)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order}")
    positions, guidance = _check_guided_score_model(
        score_fn, schedule, initial_positions, class_labels, guidance_scale, null_label
    )
    steps = sampling_steps(schedule, num_steps, spacing)
    coefficients = _dpm_solver_steps(schedule, steps, order, positions.dtype)
    samples = _run(
        jax.random.key(0), positions, coefficients, guidance, score_fn=score_fn, stochastic=False
    )
    return DiffusionSamples(samples, len(steps) * guidance_lib.evaluations_per_step(guidance))


# --- coefficients, in float64 on the host ------------------------------------------------------


def _ddim_steps(schedule: NoiseSchedule, steps: np.ndarray, eta: float, dtype: Any) -> _Steps:
    log_alpha_t, log_alpha_s = log_alphas_cumprod(schedule, steps)
    beta_t, beta_s = -np.expm1(log_alpha_t), -np.expm1(log_alpha_s)
    step_beta = -np.expm1(log_alpha_t - log_alpha_s)  # β_{t|s}
    noise_variance = eta**2 * beta_s / beta_t * step_beta
    # x_s = sqrt(ᾱ_s) D + sqrt(β̄_s - σ²) ε̂ with ε̂ = (x - sqrt(ᾱ_t) D) / sqrt(β̄_t):
    noise_coef = np.sqrt(np.maximum(beta_s - noise_variance, 0.0) / beta_t)
    x_coef = noise_coef
    data_coef = np.exp(0.5 * log_alpha_s) - noise_coef * np.exp(0.5 * log_alpha_t)
    data_coefs = np.stack([data_coef, np.zeros_like(data_coef), np.zeros_like(data_coef)], 1)
    return _as_steps(
        schedule, steps, log_alpha_t, x_coef, data_coefs, np.sqrt(noise_variance), dtype
    )


def _dpm_solver_steps(schedule: NoiseSchedule, steps: np.ndarray, order: int, dtype: Any) -> _Steps:
    log_alpha_t, log_alpha_s = log_alphas_cumprod(schedule, steps)
    # Half log-SNR λ = log(α/σ) = (log ᾱ - log β̄) / 2, and σ = sqrt(β̄), α = sqrt(ᾱ).
    lambda_t = 0.5 * (log_alpha_t - np.log(-np.expm1(log_alpha_t)))
    num_levels = len(steps)
    x_coef = np.zeros(num_levels)
    data_coefs = np.zeros((num_levels, 3))
    data_coefs[-1, 0] = 1.0  # to λ = ∞: x_0 = D(x_{t_1})
    for i in range(num_levels - 1):
        h = lambda_t[i + 1] - lambda_t[i]
        sigma_ratio = np.exp(
            0.5 * (np.log(-np.expm1(log_alpha_s[i])) - np.log(-np.expm1(log_alpha_t[i])))
        )
        alpha_s = np.exp(0.5 * log_alpha_s[i])
        phi = np.expm1(-h)
        x_coef[i] = sigma_ratio
        step_order = min(order, i + 1)
        if step_order == 1:
            data_coefs[i, 0] = -alpha_s * phi
        elif step_order == 2:
            r0 = (lambda_t[i] - lambda_t[i - 1]) / h
            data_coefs[i, :2] = -alpha_s * phi * np.array([1 + 0.5 / r0, -0.5 / r0])
        else:
            r0 = (lambda_t[i] - lambda_t[i - 1]) / h
            r1 = (lambda_t[i - 1] - lambda_t[i - 2]) / h
            # D1_0 = (D0 - D-1)/r0, D1_1 = (D-1 - D-2)/r1 as weights on (D0, D-1, D-2):
            d1_0 = np.array([1.0, -1.0, 0.0]) / r0
            d1_1 = np.array([0.0, 1.0, -1.0]) / r1
            d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            data_coefs[i] = (
                -alpha_s * phi * np.array([1.0, 0.0, 0.0])
                + alpha_s * (phi / h + 1.0) * d1
                - alpha_s * ((phi + h) / h**2 - 0.5) * d2
            )
    return _as_steps(schedule, steps, log_alpha_t, x_coef, data_coefs, np.zeros(num_levels), dtype)


def _as_steps(
    schedule: NoiseSchedule,
    steps: np.ndarray,
    log_alpha_t: np.ndarray,
    x_coef: np.ndarray,
    data_coefs: np.ndarray,
    noise_std: np.ndarray,
    dtype: Any,
) -> _Steps:
    # The model sees the schedule's own levels, as in every other sampler.
    marginal_beta = np.asarray(schedule.marginal_betas)[steps - 1]
    values = (
        marginal_beta,
        -np.expm1(log_alpha_t),
        np.exp(-0.5 * log_alpha_t),
        x_coef,
        data_coefs,
        noise_std,
    )
    return _Steps(*(jnp.asarray(value, dtype) for value in values))


# --- the jitted loop ---------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("score_fn", "stochastic"))
def _run(
    rng_key: PRNGKey,
    positions: Array,
    coefficients: _Steps,
    guidance: Guidance | None,
    *,
    score_fn: NoiseConditionalScoreFn,
    stochastic: bool,
) -> Array:
    batched_score = guidance_lib.batched(score_fn, guidance)

    def level_step(carry: tuple[Array, Array, Array], inputs: Any) -> tuple[Any, None]:
        x, previous, before_previous = carry
        level_key, (marginal_beta, score_scale, data_scale, x_coef, data_coefs, noise_std) = inputs
        data = data_scale * (x + score_scale * batched_score(x, marginal_beta))
        x_next = (
            x_coef * x
            + data_coefs[0] * data
            + data_coefs[1] * previous
            + data_coefs[2] * before_previous
        )
        if stochastic:
            # The keys of ancestral_sample: its predictor noise is the second of each level's pair.
            _, noise_key = jax.random.split(level_key)
            x_next = x_next + noise_std * jax.random.normal(noise_key, x.shape, x.dtype)
        return (x_next, data, previous), None

    keys = jax.random.split(rng_key, coefficients.marginal_beta.shape[0])
    initial = (positions, jnp.zeros_like(positions), jnp.zeros_like(positions))
    (x, _, _), _ = jax.lax.scan(level_step, initial, (keys, coefficients))
    return x


__all__ = ["ORDERS", "ddim_sample", "dpm_solver_sample"]

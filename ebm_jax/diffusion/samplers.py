"""Samplers of a learned diffusion model: reverse the forward chain of eqs. (11.4)–(11.6).

A noise-conditional model :math:`S_w(x', \\beta) \\approx \\nabla_{x'} \\log
p_\\beta(x')` (eq. 11.13) is given as ``score_fn(x, beta) -> score`` of ONE
sample, with :math:`\\beta` the *marginal* level :math:`\\bar\\beta_t = 1 -
\\bar\\alpha_t` of a :class:`~ebm_jax.diffusion.schedule.NoiseSchedule`; an energy
network as ``logdensity_fn(x, beta) -> scalar``, :math:`f_w(x', \\beta)`, whose
score is :func:`jax.grad` in :math:`x'`. With parameters, pass
``functools.partial(model.apply, params)``.

Every sampler starts from ``initial_positions`` of shape ``(num_samples,
*event_shape)`` (:math:`x_T \\sim N(0, I)`, see :func:`initial_noise`), vmaps the
model over the leading axis and ``lax.scan``-s over a decreasing sequence of
visited steps :math:`T = t_n > \\dots > t_1 = 1` (all :math:`T` steps, or
``num_steps`` of them evenly strided, see :func:`sampling_steps`), so that
quality can be traded against the number of function evaluations (NFE). Between
two visited steps :math:`s < t` the forward chain adds the noise

.. math::

   \\beta_{t|s} = 1 - \\frac{\\bar\\alpha_t}{\\bar\\alpha_s}, \\qquad
   x_t = \\sqrt{1 - \\beta_{t|s}}\\, x_s + \\sqrt{\\beta_{t|s}}\\, \\varepsilon,

eq. (11.5) again, with :math:`\\bar\\alpha_0 = 1` for the data. Tweedie's formula
(11.13) for this one step gives the mean of the reverse step used by every
predictor here,

.. math::

   \\mathbb{E}[x_s \\mid x_t] = \\frac{x_t + \\beta_{t|s}\\, \\nabla \\log
   p_{\\bar\\beta_t}(x_t)}{\\sqrt{1 - \\beta_{t|s}}},

since :math:`x_s \\sim p_{\\bar\\beta_s}` and :math:`x_t` is its perturbation by
:math:`\\beta_{t|s}`. On the last step (:math:`s = 0`, :math:`\\beta_{t|0} =
\\bar\\beta_t`) this is the denoised mean :math:`\\mathbb{E}[x_0 \\mid x_t]` itself.

The probability-flow ODE and its log-likelihood are in
:mod:`ebm_jax.diffusion.ode`.

References:
  Ho, Jain & Abbeel (2020), *Denoising diffusion probabilistic models*,
  NeurIPS, arXiv:2006.11239.
  Song & Ermon (2019), *Generative modeling by estimating gradients of the data
  distribution*, NeurIPS, arXiv:1907.05600.
  Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole (2021), *Score-based
  generative modeling through stochastic differential equations*, ICLR,
  arXiv:2011.13456.
  Du, Durkan, Strudel, Tenenbaum, Dieleman, Fergus, Sohl-Dickstein, Doucet &
  Grathwohl (2023), *Reduce, reuse, recycle: compositional generation with
  energy-based diffusion models and MCMC*, ICML, arXiv:2302.11552.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._validation import (
    as_floating,
    check_callable,
    check_finite_array,
    check_int,
    check_key,
    check_logdensity,
    check_positive_scalar,
)
from ebm_jax.diffusion import guidance as guidance_lib
from ebm_jax.diffusion.guidance import Guidance
from ebm_jax.diffusion.schedule import NoiseSchedule
from ebm_jax.diffusion.tweedie import NoiseConditionalScoreFn
from ebm_jax.samplers.langevin import mala
from ebm_jax.types import Array, ArrayLike, PRNGKey

NoiseConditionalLogDensityFn = Callable[[Array, Array], Array]
"""``(x, beta) -> f(x, beta)``: unnormalised :math:`\\log p_\\beta` of ONE sample, a scalar."""

PREDICTORS = ("ancestral", "reverse_diffusion")
"""Reverse steps between visited levels (see :func:`predictor_corrector_sample`)."""

VARIANCES = ("posterior", "forward")
"""Noise variances of the reverse step: :math:`\\tilde\\beta_{t|s}` or :math:`\\beta_{t|s}`."""


class DiffusionSamples(NamedTuple):
    """What a sampler of a noise-conditional score returns.

    Attributes:
      samples: ``(num_samples, *event_shape)``.
      num_function_evaluations: evaluations of the model per sample (NFE).
    """

    samples: Array
    num_function_evaluations: int


class AnnealedMALASamples(NamedTuple):
    """What :func:`annealed_mala_sample` returns.

    Attributes:
      samples: ``(num_samples, *event_shape)``.
      num_function_evaluations: ``value_and_grad`` evaluations of the energy
        network per sample (NFE).
      acceptance_rate: ``(num_steps,)`` mean MH acceptance probability at each
        visited level, in visiting order (noisiest first).
      noise_levels: ``(num_steps,)`` the visited marginal levels
        :math:`\\bar\\beta_{t_i}`, in the same order.
    """

    samples: Array
    num_function_evaluations: int
    acceptance_rate: Array
    noise_levels: Array


class _Levels(NamedTuple):
    """Per visited step :math:`t_i` (visiting order), the quantities of its reverse step."""

    marginal_beta: Array  # β̄_{t_i}, the model's noise level
    step_beta: Array  # β_{t_i | t_{i-1}}, with t_0 = 0
    noise_std: Array  # std of the reverse step's noise; 0 on the last step
    alpha: Array  # 1 - β_{t_i} of the schedule, for the signal-to-noise rule


def initial_noise(
    rng_key: PRNGKey,
    num_samples: int,
    event_shape: Sequence[int],
    dtype: Any = None,
) -> Array:
    """Draw the starting points :math:`x_T \\sim N(0, I)` of the reverse chain.

    .. math:: x_T \\sim N(0, I) \\approx p_{\\bar\\beta_T}, \\qquad
       p_{\\bar\\beta_T} = \\int p(x)\\, N(\\sqrt{\\bar\\alpha_T}\\, x, \\bar\\beta_T I)\\, dx,

    exact as :math:`\\bar\\alpha_T \\to 0` (eq. 11.6 with :math:`\\beta \\to 1`).

    Args:
      rng_key: a JAX PRNG key.
      num_samples: how many samples, an int :math:`\\ge 1`.
      event_shape: the shape of one sample, e.g. ``(2,)`` or ``(64,)``.
      dtype: floating dtype; default JAX's default float.

    Returns:
      An array of shape ``(num_samples, *event_shape)``.

    Examples:
      >>> import jax
      >>> from ebm_jax.diffusion import samplers
      >>> samplers.initial_noise(jax.random.key(0), 5, (2,)).shape
      (5, 2)
    """
    check_key(rng_key)
    num_samples = check_int(num_samples, "num_samples", 1)
    if isinstance(event_shape, int) or not all(
        isinstance(size, (int, np.integer)) and size >= 1 for size in event_shape
    ):
        raise TypeError(f"event_shape must be a tuple of positive ints, got {event_shape!r}")
    dtype = jnp.result_type(float) if dtype is None else dtype
    return jax.random.normal(rng_key, (num_samples, *event_shape), dtype)


SPACINGS = ("linear", "log_snr")
"""How :func:`sampling_steps` spreads the visited steps: evenly in :math:`t` or in log-SNR."""


def sampling_steps(
    schedule: NoiseSchedule, num_steps: int | None = None, spacing: str = "linear"
) -> np.ndarray:
    """The steps :math:`T = t_n > t_{n-1} > \\dots > t_1 = 1` a sampler visits.

    ``"linear"`` (default; Ho et al. 2020, Song et al. 2021's DDIM):

    .. math:: t_i = \\Big\\lfloor 1 + \\frac{(i - 1)(T - 1)}{n - 1} + \\tfrac12 \\Big\\rfloor,
       \\qquad i = 1, \\dots, n,

    evenly strided with both ends kept (for :math:`n = 1` only :math:`t_1 = T`).
    Spacing at least 1 keeps the steps distinct for every :math:`n \\le T`.

    ``"log_snr"``: the steps nearest to :math:`n` points evenly spaced in the
    log signal-to-noise ratio :math:`\\log(\\bar\\alpha_t / \\bar\\beta_t)`
    between :math:`t = T` and :math:`t = 1` (Lu et al. 2022a's choice for few
    steps: an exponential integrator's error is set by its steps in
    log-SNR), made distinct by moving a step that collides with its lower
    neighbour up by one (near the data end of a schedule, where the log-SNR
    changes fastest, consecutive targets can round to the same step).

    Args:
      schedule: the :class:`~ebm_jax.diffusion.schedule.NoiseSchedule`.
      num_steps: :math:`n`, an int in :math:`[1, T]`; ``None`` visits all
        :math:`T` steps.
      spacing: ``"linear"`` (default) or ``"log_snr"``.

    Returns:
      A decreasing NumPy int array of the :math:`n` step numbers (1-based: step
      :math:`t` has level ``schedule.marginal_betas[t - 1]``).

    Examples:
      >>> from ebm_jax.diffusion import samplers, schedule
      >>> samplers.sampling_steps(schedule.linear_schedule(10), 4).tolist()
      [10, 7, 4, 1]
      >>> samplers.sampling_steps(schedule.linear_schedule(1000), 6, "log_snr").tolist()
      [1000, 786, 493, 139, 18, 1]
    """
    _check_schedule(schedule)
    _check_option(spacing, SPACINGS, "spacing")
    num_schedule_steps = schedule.num_steps
    if num_steps is None:
        return np.arange(num_schedule_steps, 0, -1)
    num_steps = check_int(num_steps, "num_steps", 1)
    if num_steps > num_schedule_steps:
        raise ValueError(
            f"num_steps must be <= the schedule's T = {num_schedule_steps}, got {num_steps}"
        )
    if num_steps == 1:
        return np.array([num_schedule_steps])
    if spacing == "linear":
        # floor(x + 1/2), not np.round: round-half-to-even can map two points 1 apart together.
        grid = np.linspace(num_schedule_steps, 1, num_steps)
        return np.floor(grid + 0.5).astype(int)
    log_alphas_cumprod = np.cumsum(np.log1p(-np.asarray(schedule.betas, np.float64)))
    log_snr = log_alphas_cumprod - np.log(-np.expm1(log_alphas_cumprod))  # decreasing in t
    targets = np.linspace(log_snr[-1], log_snr[0], num_steps)
    # The step whose log-SNR is nearest each target (log_snr is decreasing: search its negative).
    above = np.clip(np.searchsorted(-log_snr, -targets), 1, num_schedule_steps - 1)
    nearer_above = np.abs(log_snr[above] - targets) < np.abs(log_snr[above - 1] - targets)
    steps = np.where(nearer_above, above, above - 1) + 1
    # Room for the steps on either side: t_i in [n - i, T - i] (0-based i), then distinct.
    index = np.arange(num_steps)
    steps = np.clip(steps, num_steps - index, num_schedule_steps - index)
    for i in range(num_steps - 2, -1, -1):
        steps[i] = max(steps[i], steps[i + 1] + 1)
    return steps.astype(int)


def ancestral_sample(
    rng_key: PRNGKey,
    score_fn: NoiseConditionalScoreFn,
    schedule: NoiseSchedule,
    initial_positions: ArrayLike,
    *,
    num_steps: int | None = None,
    variance: str = "posterior",
    class_labels: ArrayLike | None = None,
    guidance_scale: float = 1.0,
    null_label: int | None = None,
) -> DiffusionSamples:
    """Ancestral sampling of the reverse chain (Ho et al. 2020, Algorithm 2).

    From :math:`x_{t_n} = x_T` to :math:`x_0`, each visited step :math:`t` goes to
    the next one :math:`s` (0 after :math:`t_1`) by

    .. math::

       x_s = \\frac{x_t + \\beta_{t|s}\\, S_w(x_t, \\bar\\beta_t)}{\\sqrt{1 - \\beta_{t|s}}}
       + \\sigma_{t|s}\\, z, \\qquad z \\sim N(0, I),

    the Tweedie mean (eq. 11.13) of the step plus noise of variance
    :math:`\\sigma_{t|s}^2 = \\tilde\\beta_{t|s} = \\frac{\\bar\\beta_s}{\\bar\\beta_t}
    \\beta_{t|s}` (``"posterior"``: the variance of :math:`q(x_s \\mid x_t, x_0)`,
    exact when the data is one point) or :math:`\\beta_{t|s}` (``"forward"``,
    exact for :math:`N(0, I)` data); no noise on the last step, whose mean is
    :math:`\\mathbb{E}[x_0 \\mid x_{t_1}]`. The mean equals Ho et al.'s
    :math:`\\tilde\\mu(x_t, \\hat x_0)` with the Tweedie estimate
    :math:`\\hat x_0 = (x_t + \\bar\\beta_t S_w)/\\sqrt{\\bar\\alpha_t}` plugged in.
    With all :math:`T` steps :math:`\\beta_{t|t-1} = \\beta_t`; a strided
    sub-sequence uses the generalised :math:`\\beta_{t|s} = 1 - \\bar\\alpha_t /
    \\bar\\alpha_s`. One model evaluation per visited step.

    Args:
      rng_key: a JAX PRNG key.
      score_fn: ``(x, beta) -> score`` of one sample at marginal level ``beta``.
      schedule: the :class:`~ebm_jax.diffusion.schedule.NoiseSchedule` the model
        was trained on.
      initial_positions: ``(num_samples, *event_shape)`` draws of :math:`x_T`.
      num_steps: how many levels to visit (see :func:`sampling_steps`); default
        all :math:`T`.
      variance: ``"posterior"`` (default) or ``"forward"``.
      class_labels: ``(num_samples,)`` integer labels for a class-conditional
        ``score_fn(x, beta, label)``; default ``None``, an unconditional
        ``score_fn(x, beta)`` (see :mod:`ebm_jax.diffusion.guidance`).
      guidance_scale: :math:`w` of classifier-free guidance, :math:`S_\\varnothing
        + w (S_c - S_\\varnothing)`; 1 (default) is the conditional model.
      null_label: the label the model was trained with for "no class"; needed
        for :math:`w \\ne 1`, and doubles the NFE.

    Returns:
      :class:`DiffusionSamples`, NFE = ``num_steps`` (twice that with ``null_label``).

    Examples:
      >>> import jax
      >>> from ebm_jax.diffusion import samplers, schedule
      >>> noise_schedule = schedule.linear_schedule(100, 1e-3, 0.2)
      >>> point_mass_score = lambda x, beta: -x / beta  # data all at the origin
      >>> x_T = samplers.initial_noise(jax.random.key(0), 3, (2,))
      >>> result = samplers.ancestral_sample(
      ...     jax.random.key(1), point_mass_score, noise_schedule, x_T, num_steps=10)
      >>> result.samples.shape, result.num_function_evaluations
      ((3, 2), 10)
      >>> bool(abs(result.samples).max() < 1e-5)
      True

    References:
      Ho, Jain & Abbeel (2020), arXiv:2006.11239, Algorithm 2.
    """
    return predictor_corrector_sample(
        rng_key,
        score_fn,
        schedule,
        initial_positions,
        num_steps=num_steps,
        num_corrector_steps=0,
        predictor="ancestral",
        variance=variance,
        class_labels=class_labels,
        guidance_scale=guidance_scale,
        null_label=null_label,
    )


def langevin_step_sizes(step_size: float, marginal_betas: ArrayLike) -> Array:
    """Annealed Langevin steps :math:`\\tau_i \\propto \\bar\\beta_i`, capped where ULA is stable.

    .. math::

       \\tau_i = \\min\\Big(\\frac{\\epsilon}{\\bar\\beta_{\\min}}, 1\\Big)\\,
       \\bar\\beta_i .

    Song & Ermon's rule is :math:`\\tau_i = \\epsilon\\, \\bar\\beta_i /
    \\bar\\beta_{\\min}`. The cap :math:`\\tau_i \\le \\bar\\beta_i` holds
    every level where unadjusted Langevin contracts, whatever the data: since
    :math:`p_{\\bar\\beta}` is the data (scaled by :math:`\\sqrt{1 -
    \\bar\\beta}`) convolved with :math:`N(0, \\bar\\beta I)`, its Hessian is
    :math:`\\nabla^2 \\log p_{\\bar\\beta} = -I / \\bar\\beta + (1 -
    \\bar\\beta) \\operatorname{Cov}[x \\mid x'] / \\bar\\beta^2 \\succeq -I /
    \\bar\\beta`, so :math:`-\\log p_{\\bar\\beta}` curves by at most :math:`1 /
    \\bar\\beta` and the step :math:`x - \\tau \\kappa x` of a direction of
    curvature :math:`\\kappa` contracts (:math:`|1 - \\tau\\kappa| < 1`) for
    :math:`\\tau < 2 \\bar\\beta`; at :math:`\\tau = \\bar\\beta` it does not
    oscillate. Uncapped, :math:`\\epsilon > 2 \\bar\\beta_{\\min}` diverges on
    data concentrated at points, which is every level of a point mass and the
    noisy levels of any data set: e.g. ``step_size=1e-4`` on the cosine schedule
    with :math:`T = 1000` (:math:`\\bar\\beta_1 \\approx 4 \\cdot 10^{-5}`)
    overflows to NaN. Since the ratio :math:`\\tau_i / \\bar\\beta_i` is the same
    at every level, the cap either leaves the rule unchanged or replaces it by
    :math:`\\tau_i = \\bar\\beta_i`.

    Args:
      step_size: :math:`\\epsilon > 0`.
      marginal_betas: the visited levels :math:`\\bar\\beta_i`; the smallest is
        :math:`\\bar\\beta_{\\min}`.

    Returns:
      The steps :math:`\\tau_i`, of the levels' shape and dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax.diffusion import samplers
      >>> levels = jnp.array([0.5, 1e-4])
      >>> [round(tau, 7) for tau in samplers.langevin_step_sizes(1e-5, levels).tolist()]
      [0.05, 1e-05]
      >>> [round(tau, 7) for tau in samplers.langevin_step_sizes(1.0, levels).tolist()]  # capped
      [0.5, 0.0001]
    """
    marginal_betas = jnp.asarray(marginal_betas)
    ratio = jnp.minimum(step_size / jnp.min(marginal_betas), 1.0)
    return (ratio * marginal_betas).astype(marginal_betas.dtype)


def annealed_langevin_sample(
    rng_key: PRNGKey,
    score_fn: NoiseConditionalScoreFn,
    schedule: NoiseSchedule,
    initial_positions: ArrayLike,
    *,
    step_size: float,
    num_steps: int | None = None,
    num_steps_per_level: int = 10,
    denoise: bool = True,
    rescale: bool = True,
    class_labels: ArrayLike | None = None,
    guidance_scale: float = 1.0,
    null_label: int | None = None,
) -> DiffusionSamples:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) at decreasing levels.

    At each visited level :math:`\\bar\\beta_i` (noisiest first), ``K =
    num_steps_per_level`` unadjusted Langevin steps on :math:`p_{\\bar\\beta_i}`,

    .. math::

       x \\leftarrow x + \\tau_i\\, S_w(x, \\bar\\beta_i) + \\sqrt{2 \\tau_i}\\, z,
       \\qquad \\tau_i = \\min\\Big(\\frac{\\epsilon}{\\bar\\beta_{\\min}}, 1\\Big)\\,
       \\bar\\beta_i

    (see :func:`langevin_step_sizes` for the cap), then, with ``rescale``,
    :math:`x \\leftarrow x / \\sqrt{1 - \\beta_{t|s}}` on the way to the next
    visited step :math:`s`, and at the end, with ``denoise``, the Tweedie mean
    (eq. 11.13) at the smallest level,
    :math:`x \\leftarrow (x + \\bar\\beta_{\\min} S_w(x, \\bar\\beta_{\\min})) /
    \\sqrt{1 - \\bar\\beta_{\\min}}`.

    This is Song & Ermon's variance-exploding algorithm written for the
    variance-preserving levels: :math:`y = x / \\sqrt{\\bar\\alpha}` carries the
    noise :math:`\\sigma^2 = \\bar\\beta / \\bar\\alpha`, their step
    :math:`\\alpha_i = \\epsilon\\, \\sigma_i^2 / \\sigma_L^2` on :math:`y` is the
    step :math:`\\bar\\alpha_i \\alpha_i \\propto \\bar\\beta_i` on :math:`x`, and
    holding :math:`y` fixed between levels is the rescaling above (without it the
    Langevin steps themselves must carry the modes outwards as
    :math:`\\sqrt{1 - \\bar\\beta}` grows, which the tiny steps of the last levels
    cannot). Drift and noise follow the library's Langevin pair (:math:`\\tau`,
    :math:`2\\tau`): Song & Ermon's :math:`\\alpha_i` is :math:`2\\tau_i`, so their
    :math:`\\epsilon = 2 \\cdot 10^{-5}` with :math:`\\sigma_L^2 = 10^{-4}` is
    ``step_size=1e-5`` on a schedule with :math:`\\bar\\beta_1 = 10^{-4}` (the
    linear one). The chain is unadjusted, so biased at every finite step: the
    bias flattens the levels, pulling mixture weights towards equal ones (see
    :func:`annealed_mala_sample` for the MH-corrected version).

    Args:
      rng_key: a JAX PRNG key.
      score_fn: ``(x, beta) -> score`` of one sample at marginal level ``beta``.
      schedule: the :class:`~ebm_jax.diffusion.schedule.NoiseSchedule`.
      initial_positions: ``(num_samples, *event_shape)``.
      step_size: :math:`\\epsilon > 0`, the drift step at the smallest visited
        level (capped at :math:`\\bar\\beta_{\\min}`).
      num_steps: how many levels to visit (see :func:`sampling_steps`).
      num_steps_per_level: :math:`K \\ge 1`.
      denoise: finish with the Tweedie mean at the smallest level (one more
        evaluation).
      rescale: carry :math:`x / \\sqrt{\\bar\\alpha}` unchanged between levels
        (default, Song & Ermon's scheme) rather than :math:`x`.
      class_labels: ``(num_samples,)`` integer labels for a class-conditional
        ``score_fn(x, beta, label)``; default ``None``, an unconditional
        ``score_fn(x, beta)`` (see :mod:`ebm_jax.diffusion.guidance`).
      guidance_scale: :math:`w` of classifier-free guidance, :math:`S_\\varnothing
        + w (S_c - S_\\varnothing)`; 1 (default) is the conditional model.
      null_label: the label the model was trained with for "no class"; needed
        for :math:`w \\ne 1`, and doubles the NFE.

    Returns:
      :class:`DiffusionSamples`, NFE = ``num_steps * K`` (+ 1 with ``denoise``),
      twice that with ``null_label``.

    Examples:
      >>> import jax
      >>> from ebm_jax.diffusion import samplers, schedule
      >>> standard_normal_score = lambda x, beta: -x  # N(0, I) data: p_beta = N(0, I)
      >>> x_T = samplers.initial_noise(jax.random.key(0), 4, (3,))
      >>> result = samplers.annealed_langevin_sample(
      ...     jax.random.key(1), standard_normal_score, schedule.linear_schedule(50), x_T,
      ...     step_size=1e-3, num_steps=5, num_steps_per_level=2)
      >>> result.samples.shape, result.num_function_evaluations
      ((4, 3), 11)

    References:
      Song & Ermon (2019), arXiv:1907.05600, Algorithm 1.
    """
    check_key(rng_key)
    check_positive_scalar(step_size, "step_size")
    num_steps_per_level = check_int(num_steps_per_level, "num_steps_per_level", 1)
    for flag, name in ((denoise, "denoise"), (rescale, "rescale")):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    positions, guidance = _check_guided_score_model(
        score_fn, schedule, initial_positions, class_labels, guidance_scale, null_label
    )
    steps = sampling_steps(schedule, num_steps)
    levels = _levels(schedule, steps, "posterior", positions.dtype)
    langevin_steps = langevin_step_sizes(step_size, levels.marginal_beta)
    carry_scales = _carry_scales(levels) if rescale else jnp.ones_like(langevin_steps)
    samples = _run_score_sampler(
        rng_key,
        positions,
        levels,
        langevin_steps,
        carry_scales,
        jnp.zeros((), positions.dtype),
        guidance,
        score_fn=score_fn,
        predictor=None,
        corrector="langevin",
        num_corrector_steps=num_steps_per_level,
        denoise=denoise,
    )
    evaluations = len(steps) * num_steps_per_level + int(denoise)
    return DiffusionSamples(samples, evaluations * guidance_lib.evaluations_per_step(guidance))


def predictor_corrector_sample(
    rng_key: PRNGKey,
    score_fn: NoiseConditionalScoreFn,
    schedule: NoiseSchedule,
    initial_positions: ArrayLike,
    *,
    num_steps: int | None = None,
    num_corrector_steps: int = 1,
    snr: float = 0.16,
    predictor: str = "ancestral",
    variance: str = "posterior",
    class_labels: ArrayLike | None = None,
    guidance_scale: float = 1.0,
    null_label: int | None = None,
) -> DiffusionSamples:
    """Predictor-corrector sampling (Song et al. 2021, Algorithms 2 and 5).

    At each visited step :math:`t` (noisiest first): ``M = num_corrector_steps``
    Langevin corrector steps on :math:`p_{\\bar\\beta_t}`,

    .. math::

       x \\leftarrow x + \\tau\\, g + \\sqrt{2\\tau}\\, z, \\qquad
       g = S_w(x, \\bar\\beta_t), \\qquad
       \\tau = 2 \\alpha_t \\Big(r\\, \\frac{\\overline{\\|z\\|}}{\\overline{\\|g\\|}}\\Big)^2,

    with the signal-to-noise ratio :math:`r` (``snr``), :math:`\\alpha_t = 1 -
    \\beta_t` and the norms averaged over the batch, as in the paper's code; then a
    predictor to the next visited step :math:`s`:

    .. math::

       x_s = \\frac{x_t + \\beta_{t|s} S_w(x_t, \\bar\\beta_t)}{\\sqrt{1 - \\beta_{t|s}}}
       + \\sigma_{t|s} z \\quad \\text{(ancestral)}, \\qquad
       x_s = \\big(2 - \\sqrt{1 - \\beta_{t|s}}\\big) x_t + \\beta_{t|s} S_w + \\sigma_{t|s} z
       \\quad \\text{(reverse diffusion)},

    the first as in :func:`ancestral_sample`, the second the Euler-Maruyama step
    of the reverse-time SDE, equal to the first to first order in
    :math:`\\beta_{t|s}`. The last predictor step is noise-free and gives the
    denoised mean. ``num_corrector_steps=0`` is
    :func:`ancestral_sample`.

    Args:
      rng_key: a JAX PRNG key.
      score_fn: ``(x, beta) -> score`` of one sample at marginal level ``beta``.
      schedule: the :class:`~ebm_jax.diffusion.schedule.NoiseSchedule`.
      initial_positions: ``(num_samples, *event_shape)``.
      num_steps: how many levels to visit (see :func:`sampling_steps`).
      num_corrector_steps: :math:`M \\ge 0`.
      snr: :math:`r > 0`; Song et al. use 0.16 (CIFAR-10) to 0.075 (faces).
      predictor: ``"ancestral"`` (default) or ``"reverse_diffusion"``.
      variance: predictor noise, ``"posterior"`` :math:`\\tilde\\beta_{t|s}`
        (default) or ``"forward"`` :math:`\\beta_{t|s}` (Song et al.'s choice).
      class_labels: ``(num_samples,)`` integer labels for a class-conditional
        ``score_fn(x, beta, label)``; default ``None``, an unconditional
        ``score_fn(x, beta)`` (see :mod:`ebm_jax.diffusion.guidance`).
      guidance_scale: :math:`w` of classifier-free guidance, :math:`S_\\varnothing
        + w (S_c - S_\\varnothing)`; 1 (default) is the conditional model.
      null_label: the label the model was trained with for "no class"; needed
        for :math:`w \\ne 1`, and doubles the NFE.

    Returns:
      :class:`DiffusionSamples`, NFE = ``num_steps * (M + 1)``, twice that with
      ``null_label``.

    Examples:
      >>> import jax
      >>> from ebm_jax.diffusion import samplers, schedule
      >>> standard_normal_score = lambda x, beta: -x
      >>> x_T = samplers.initial_noise(jax.random.key(0), 4, (2,))
      >>> result = samplers.predictor_corrector_sample(
      ...     jax.random.key(1), standard_normal_score, schedule.linear_schedule(50), x_T,
      ...     num_steps=5, num_corrector_steps=2)
      >>> result.samples.shape, result.num_function_evaluations
      ((4, 2), 15)

    References:
      Song et al. (2021), arXiv:2011.13456, Section 4.2 and Appendix G.
    """
    check_key(rng_key)
    num_corrector_steps = check_int(num_corrector_steps, "num_corrector_steps", 0)
    check_positive_scalar(snr, "snr")
    _check_option(predictor, PREDICTORS, "predictor")
    _check_option(variance, VARIANCES, "variance")
    positions, guidance = _check_guided_score_model(
        score_fn, schedule, initial_positions, class_labels, guidance_scale, null_label
    )
    steps = sampling_steps(schedule, num_steps)
    levels = _levels(schedule, steps, variance, positions.dtype)
    samples = _run_score_sampler(
        rng_key,
        positions,
        levels,
        jnp.zeros_like(levels.alpha),
        jnp.ones_like(levels.alpha),
        jnp.asarray(snr, positions.dtype),
        guidance,
        score_fn=score_fn,
        predictor=predictor,
        corrector="snr",
        num_corrector_steps=num_corrector_steps,
        denoise=True,
    )
    evaluations = len(steps) * (num_corrector_steps + 1)
    return DiffusionSamples(samples, evaluations * guidance_lib.evaluations_per_step(guidance))


def annealed_mala_sample(
    rng_key: PRNGKey,
    logdensity_fn: NoiseConditionalLogDensityFn,
    schedule: NoiseSchedule,
    initial_positions: ArrayLike,
    *,
    step_size: float,
    num_steps: int | None = None,
    num_steps_per_level: int = 10,
    predictor: str | None = "ancestral",
    class_labels: ArrayLike | None = None,
    guidance_scale: float = 1.0,
    null_label: int | None = None,
) -> AnnealedMALASamples:
    """MH-corrected annealed Langevin (MALA) for an energy network (Du et al. 2023).

    An energy parametrisation :math:`f_w(x', \\beta)` gives an unnormalised
    :math:`\\log p_\\beta`, so each level's kernel can be Metropolis-Hastings
    corrected: every MALA step leaves its level's :math:`p_{\\bar\\beta_i}`
    exactly invariant, where an unadjusted Langevin step has a bias that grows
    with its step. The output is still not an exact sample of
    :math:`p_{\\bar\\beta_{\\min}}`: ``K`` steps per level do not mix a level
    from where the previous one left off, so what remains is the mixing error of
    finitely many steps, which more steps per level shrink, not a bias of the
    kernels. At each visited level
    :math:`\\bar\\beta_i` (noisiest first): ``K = num_steps_per_level`` MALA steps
    (:func:`ebm_jax.samplers.mala`, with its Metropolis-Hastings accept step of
    §11.2.1) on :math:`p_{\\bar\\beta_i} \\propto e^{f_w(\\cdot, \\bar\\beta_i)}` with

    .. math:: \\tau_i = \\epsilon\\, \\frac{\\bar\\beta_i}{\\bar\\beta_{\\min}}

    (Song & Ermon's rule, uncapped: a too-large step is rejected, not
    divergent), then the ancestral step
    (see :func:`ancestral_sample`) to the next level, with the score
    :math:`\\nabla_x f_w` that the MALA state already caches. With
    ``predictor=None`` the levels are only annealed, as in
    :func:`annealed_langevin_sample` (``rescale=True``) but with the MH
    correction, and the result is the Tweedie mean at the smallest level.

    Args:
      rng_key: a JAX PRNG key.
      logdensity_fn: ``(x, beta) -> f(x, beta)``, a scalar for one sample.
      schedule: the :class:`~ebm_jax.diffusion.schedule.NoiseSchedule`.
      initial_positions: ``(num_samples, *event_shape)``.
      step_size: :math:`\\epsilon > 0`, the MALA drift step at the smallest
        visited level (noise variance :math:`2\\tau_i`).
      num_steps: how many levels to visit (see :func:`sampling_steps`).
      num_steps_per_level: :math:`K \\ge 1`.
      predictor: ``"ancestral"`` (default, Du et al.) or ``None``.
      class_labels: ``(num_samples,)`` integer labels for a class-conditional
        ``logdensity_fn(x, beta, label)``; default ``None``, an unconditional
        ``logdensity_fn(x, beta)``.
      guidance_scale: :math:`w`: each level targets :math:`(1 - w)
        f(x, \\bar\\beta, \\varnothing) + w f(x, \\bar\\beta, c)`, a sum of
        energies, exactly under the MH correction (see
        :mod:`ebm_jax.diffusion.guidance`); 1 (default) is the conditional model.
      null_label: the label the model was trained with for "no class"; needed
        for :math:`w \\ne 1`, and doubles the NFE.

    Returns:
      :class:`AnnealedMALASamples`; NFE = ``num_steps * (K + 1)``, counting each
      ``value_and_grad`` of ``logdensity_fn`` once (one per MALA step and one to
      start each level; the predictor reuses the cached gradient), twice that
      with ``null_label``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.diffusion import samplers, schedule
      >>> standard_normal = lambda x, beta: -0.5 * jnp.sum(x**2)
      >>> x_T = samplers.initial_noise(jax.random.key(0), 8, (2,))
      >>> result = samplers.annealed_mala_sample(
      ...     jax.random.key(1), standard_normal, schedule.linear_schedule(50), x_T,
      ...     step_size=1e-3, num_steps=5, num_steps_per_level=3)
      >>> result.samples.shape, result.num_function_evaluations, result.acceptance_rate.shape
      ((8, 2), 20, (5,))

    References:
      Du et al. (2023), arXiv:2302.11552, Section 4.
      Roberts & Tweedie (1996), Bernoulli 2(4) (MALA).
    """
    check_key(rng_key)
    check_positive_scalar(step_size, "step_size")
    num_steps_per_level = check_int(num_steps_per_level, "num_steps_per_level", 1)
    if predictor is not None:
        _check_option(predictor, ("ancestral",), "predictor")
    positions = _check_positions(initial_positions)
    _check_schedule(schedule)
    guidance = guidance_lib.check_guidance(
        class_labels, guidance_scale, null_label, positions.shape[0], positions.dtype
    )
    _check_conditional_logdensity(logdensity_fn, positions, guidance)
    steps = sampling_steps(schedule, num_steps)
    levels = _levels(schedule, steps, "posterior", positions.dtype)
    mala_steps = step_size * levels.marginal_beta / levels.marginal_beta[-1]
    samples, acceptance_rate = _run_annealed_mala(
        rng_key,
        positions,
        levels,
        mala_steps,
        guidance,
        logdensity_fn=logdensity_fn,
        use_predictor=predictor is not None,
        num_steps_per_level=num_steps_per_level,
    )
    return AnnealedMALASamples(
        samples,
        len(steps) * (num_steps_per_level + 1) * guidance_lib.evaluations_per_step(guidance),
        acceptance_rate,
        levels.marginal_beta,
    )


# --- the jitted loops -------------------------------------------------------------------


def _squared_norms(batch: Array) -> Array:
    return jnp.sum(batch.reshape(batch.shape[0], -1) ** 2, axis=1)


def _tweedie_step(x: Array, score: Array, beta: Array) -> Array:
    """Eq. (11.13): :math:`(x + \\beta S) / \\sqrt{1 - \\beta}`, the mean of the reverse step."""
    return (x + beta * score) / jnp.sqrt(1.0 - beta)


def _predict(predictor: str, x: Array, score: Array, step_beta: Array) -> Array:
    if predictor == "ancestral":
        return _tweedie_step(x, score, step_beta)
    return (2.0 - jnp.sqrt(1.0 - step_beta)) * x + step_beta * score


@functools.partial(
    jax.jit,
    static_argnames=("score_fn", "predictor", "corrector", "num_corrector_steps", "denoise"),
)
def _run_score_sampler(
    rng_key: PRNGKey,
    positions: Array,
    levels: _Levels,
    langevin_steps: Array,
    carry_scales: Array,
    snr: Array,
    guidance: Guidance | None,
    *,
    score_fn: NoiseConditionalScoreFn,
    predictor: str | None,
    corrector: str,
    num_corrector_steps: int,
    denoise: bool,
) -> Array:
    batched_score = guidance_lib.batched(score_fn, guidance)

    def level_step(x: Array, inputs: tuple[Array, ...]) -> tuple[Array, None]:
        level_key, marginal_beta, step_beta, noise_std, alpha, langevin_step, carry_scale = inputs
        corrector_key, predictor_key = jax.random.split(level_key)

        def corrector_step(x: Array, step_key: PRNGKey) -> tuple[Array, None]:
            noise = jax.random.normal(step_key, x.shape, x.dtype)
            score = batched_score(x, marginal_beta)
            if corrector == "langevin":
                step = langevin_step
            else:
                noise_norm = jnp.mean(jnp.sqrt(_squared_norms(noise)))
                score_norm = jnp.mean(jnp.sqrt(_squared_norms(score)))
                score_norm = jnp.maximum(score_norm, jnp.finfo(x.dtype).tiny)
                step = 2.0 * alpha * (snr * noise_norm / score_norm) ** 2
            return x + step * score + jnp.sqrt(2.0 * step) * noise, None

        if num_corrector_steps:
            corrector_keys = jax.random.split(corrector_key, num_corrector_steps)
            x, _ = jax.lax.scan(corrector_step, x, corrector_keys)
        if predictor is not None:
            score = batched_score(x, marginal_beta)
            noise = jax.random.normal(predictor_key, x.shape, x.dtype)
            x = _predict(predictor, x, score, step_beta) + noise_std * noise
        else:
            x = carry_scale * x
        return x, None

    keys = jax.random.split(rng_key, levels.marginal_beta.shape[0])
    inputs = (keys, *levels, langevin_steps, carry_scales)
    x, _ = jax.lax.scan(level_step, positions, inputs)
    if predictor is None and denoise:
        smallest = levels.marginal_beta[-1]
        x = _tweedie_step(x, batched_score(x, smallest), smallest)
    return x


@functools.partial(
    jax.jit, static_argnames=("logdensity_fn", "use_predictor", "num_steps_per_level")
)
def _run_annealed_mala(
    rng_key: PRNGKey,
    positions: Array,
    levels: _Levels,
    mala_steps: Array,
    guidance: Guidance | None,
    *,
    logdensity_fn: NoiseConditionalLogDensityFn,
    use_predictor: bool,
    num_steps_per_level: int,
) -> tuple[Array, Array]:
    num_samples = positions.shape[0]
    guided_logdensity = guidance_lib.per_sample(logdensity_fn, guidance)
    labels = jnp.zeros(num_samples, jnp.int32) if guidance is None else guidance.class_labels

    def level_step(
        carry: tuple[Array, Array], inputs: tuple[Array, ...]
    ) -> tuple[tuple[Array, Array], Array]:
        x, _ = carry
        level_key, marginal_beta, step_beta, noise_std, _, mala_step, carry_scale = inputs
        mcmc_key, predictor_key = jax.random.split(level_key)

        def algorithm(label: Array) -> Any:
            return mala(lambda y: guided_logdensity(y, marginal_beta, label), mala_step)

        states = jax.vmap(lambda y, label: algorithm(label).init(y))(x, labels)

        def mcmc_step(states: Any, step_key: PRNGKey) -> tuple[Any, Array]:
            chain_keys = jax.random.split(step_key, num_samples)
            states, info = jax.vmap(lambda key, state, label: algorithm(label).step(key, state))(
                chain_keys, states, labels
            )
            return states, jnp.mean(info.acceptance_rate)

        mcmc_keys = jax.random.split(mcmc_key, num_steps_per_level)
        states, acceptance = jax.lax.scan(mcmc_step, states, mcmc_keys)
        x = states.position
        if use_predictor:
            noise = jax.random.normal(predictor_key, x.shape, x.dtype)
            x = _tweedie_step(x, states.logdensity_grad, step_beta) + noise_std * noise
        else:
            x = carry_scale * x
        return (x, states.logdensity_grad), jnp.mean(acceptance)

    keys = jax.random.split(rng_key, levels.marginal_beta.shape[0])
    inputs = (keys, *levels, mala_steps, _carry_scales(levels))
    (x, score), acceptance_rate = jax.lax.scan(level_step, (positions, positions), inputs)
    if not use_predictor:
        # The last level's cached gradient is its score: the Tweedie mean costs nothing.
        x = _tweedie_step(x, score, levels.marginal_beta[-1])
    return x, acceptance_rate


def _carry_scales(levels: _Levels) -> Array:
    """Factors :math:`1 / \\sqrt{1 - \\beta_{t|s}}` holding :math:`x / \\sqrt{\\bar\\alpha}` fixed.

    The last is 1: the final step is the denoising one.
    """
    return jnp.append(1.0 / jnp.sqrt(1.0 - levels.step_beta[:-1]), 1.0)


def log_alphas_cumprod(schedule: NoiseSchedule, steps: np.ndarray) -> tuple[np.ndarray, ...]:
    """:math:`\\log \\bar\\alpha` at the visited ``steps`` and at the next ones, in float64.

    The next step after the last is 0, :math:`\\bar\\alpha_0 = 1`. Formed by a
    cumulative sum of :math:`\\log(1 - \\beta)` on the host, so that
    :math:`\\log \\bar\\alpha_t - \\log \\bar\\alpha_s` keeps its relative
    precision for adjacent steps and :math:`\\bar\\alpha_T` its own where
    :math:`1 - \\bar\\alpha_T` rounds to 1 in float32.
    """
    betas = np.asarray(schedule.betas, np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(np.log1p(-betas))])
    return cumulative[steps], cumulative[np.append(steps[1:], 0)]


def _levels(schedule: NoiseSchedule, steps: np.ndarray, variance: str, dtype: Any) -> _Levels:
    """The reverse-step quantities of the visited ``steps`` (decreasing, 1-based)."""
    log_alpha_t, log_alpha_s = log_alphas_cumprod(schedule, steps)
    step_beta = -np.expm1(log_alpha_t - log_alpha_s)
    if variance == "posterior":
        noise_variance = np.expm1(log_alpha_s) / np.expm1(log_alpha_t) * step_beta
    else:
        noise_variance = step_beta
    noise_std = np.where(steps == steps[-1], 0.0, np.sqrt(noise_variance))
    # The model sees the schedule's own (stored) levels.
    marginal_beta = np.asarray(schedule.marginal_betas)[steps - 1]
    alpha = 1.0 - np.asarray(schedule.betas, np.float64)[steps - 1]
    values = (marginal_beta, step_beta, noise_std, alpha)
    return _Levels(*(jnp.asarray(value, dtype) for value in values))


# --- validation ---------------------------------------------------------------------------


def _check_option(value: Any, options: tuple[str, ...], name: str) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")


def _check_schedule(schedule: Any) -> None:
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(
            f"schedule must be a NoiseSchedule (e.g. linear_schedule(1000)), "
            f"got {type(schedule).__name__}"
        )


def _check_hashable(fn: Any, name: str) -> None:
    check_callable(fn, name)
    try:
        hash(fn)
    except TypeError as exc:
        raise TypeError(
            f"{name} must be hashable (it is a static argument of jit); "
            f"wrap it in functools.partial"
        ) from exc


def _check_positions(initial_positions: Any, name: str = "initial_positions") -> Array:
    """A finite floating array with a leading batch axis."""
    if isinstance(initial_positions, (bool, str)) or initial_positions is None:
        raise TypeError(f"{name} must be a real array, got {type(initial_positions).__name__}")
    positions = as_floating(initial_positions)
    if positions.ndim < 2 or positions.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (num_samples, *event_shape) with a leading batch axis, "
            f"got shape {positions.shape}"
        )
    check_finite_array(positions, name)
    return positions


def _check_score_model(
    score_fn: Any, schedule: Any, initial_positions: Any, name: str = "initial_positions"
) -> Array:
    """Validate an unconditional noise-conditional score; return the positions."""
    return _check_guided_score_model(score_fn, schedule, initial_positions, name=name)[0]


def _check_guided_score_model(
    score_fn: Any,
    schedule: Any,
    initial_positions: Any,
    class_labels: Any = None,
    guidance_scale: Any = 1.0,
    null_label: Any = None,
    name: str = "initial_positions",
) -> tuple[Array, Guidance | None]:
    """Validate a noise-conditional score on one position; return the positions and guidance."""
    _check_hashable(score_fn, "score_fn")
    _check_schedule(schedule)
    positions = _check_positions(initial_positions, name)
    guidance = guidance_lib.check_guidance(
        class_labels, guidance_scale, null_label, positions.shape[0], positions.dtype
    )
    position, beta = positions[0], jnp.asarray(0.5, positions.dtype)
    arguments = (position, beta) if guidance is None else (position, beta, guidance.class_labels[0])
    call = "score_fn(x, beta)" if guidance is None else "score_fn(x, beta, label)"
    try:
        out = jax.eval_shape(score_fn, *arguments)
    except Exception as exc:  # re-raised with the argument named
        raise ValueError(
            f"{call} failed on x of shape {position.shape} and a scalar beta: {exc}"
        ) from exc
    if not hasattr(out, "shape") or out.shape != position.shape:
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"{call} must return an array of x's shape {position.shape} for ONE "
            f"sample, got shape {shape}"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"score_fn must return floating-point values, got dtype {out.dtype}")
    return positions, guidance


def _check_conditional_logdensity(
    logdensity_fn: Any, positions: Array, guidance: Guidance | None = None
) -> None:
    _check_hashable(logdensity_fn, "logdensity_fn")
    beta = jnp.asarray(0.5, positions.dtype)
    if guidance is None:
        check_logdensity(lambda x: logdensity_fn(x, beta), positions[0], "logdensity_fn")
    else:
        label = guidance.class_labels[0]
        check_logdensity(
            lambda x: logdensity_fn(x, beta, label), positions[0], "logdensity_fn(x, beta, label)"
        )


__all__ = [
    "PREDICTORS",
    "SPACINGS",
    "VARIANCES",
    "AnnealedMALASamples",
    "DiffusionSamples",
    "NoiseConditionalLogDensityFn",
    "ancestral_sample",
    "annealed_langevin_sample",
    "annealed_mala_sample",
    "initial_noise",
    "langevin_step_sizes",
    "predictor_corrector_sample",
    "sampling_steps",
]

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
:math:`\\lambda` suits every schedule. Integration is by a fixed-step explicit
Runge-Kutta method (Euler, Heun or RK4) in ``lax.scan``.

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
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ebm_jax import trace
from ebm_jax._validation import check_callable, check_int, check_key, check_logdensity
from ebm_jax.diffusion.samplers import _check_option, _check_score_model
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

DIVERGENCES = ("exact", "hutchinson")
"""How :func:`probability_flow_log_likelihood` computes :math:`\\nabla \\cdot v`."""

_LOG_2PI = math.log(2.0 * math.pi)


class ProbabilityFlowResult(NamedTuple):
    """What :func:`probability_flow_sample` and :func:`probability_flow_encode` return.

    Attributes:
      positions: ``(num_samples, *event_shape)``, the end points of the flow
        (samples of :math:`p_{\\bar\\beta_{\\min}}` when sampling, latents when
        encoding).
      num_function_evaluations: model evaluations per sample (NFE).
    """

    positions: Array
    num_function_evaluations: int


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
        its Jacobian-vector products.
    """

    log_likelihood: Array
    latents: Array
    prior_logdensity: Array
    divergence_integral: Array
    num_function_evaluations: int


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
) -> ProbabilityFlowResult:
    """Deterministic sampling: the probability-flow ODE from noise to data.

    .. math::

       x(\\lambda_{\\max}) = x_T + \\int_{\\lambda_{\\min}}^{\\lambda_{\\max}} \\tfrac12
       \\bar\\beta\\, \\big(x + S(x, \\bar\\beta)\\big)\\, d\\lambda,

    from :math:`\\lambda_{\\min} = \\lambda(\\bar\\beta_T)` to :math:`\\lambda_{\\max}
    = \\lambda(\\bar\\beta_1)` on ``num_steps`` equal steps in the log-SNR
    :math:`\\lambda`. With the exact score it maps :math:`p_{\\bar\\beta_T}`
    exactly onto :math:`p_{\\bar\\beta_1}` (up to the integrator's error); with
    :math:`x_T \\sim N(0, I)` it is exact as :math:`\\bar\\alpha_T \\to 0`. The
    output is the sample at :math:`\\bar\\beta_1`, not denoised
    (:func:`ebm_jax.diffusion.tweedie_mean` does that).

    Args:
      score_fn: ``(x, beta) -> score`` of one sample at marginal level ``beta``.
      schedule: the :class:`~ebm_jax.diffusion.schedule.NoiseSchedule`; only its
        levels :math:`\\bar\\beta_1` and :math:`\\bar\\beta_T` are used.
      initial_positions: ``(num_samples, *event_shape)`` draws of :math:`x_T`.
      num_steps: integrator steps, an int :math:`\\ge 1`.
      method: ``"euler"``, ``"heun"`` (default) or ``"rk4"``.

    Returns:
      :class:`ProbabilityFlowResult`, NFE = ``num_steps`` times 1, 2 or 4.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax.diffusion import ode, schedule
      >>> point_mass_score = lambda x, beta: -x / beta
      >>> noise_schedule = schedule.from_betas(jnp.array([0.19, 0.5]))  # levels 0.19, 0.595
      >>> result = ode.probability_flow_sample(
      ...     point_mass_score, noise_schedule, jnp.ones((1, 1)), method="rk4")
      >>> round(float(result.positions[0, 0]) ** 2, 4)  # x² ∝ beta: 0.19 / 0.595
      0.3193
    """
    positions, grid, tableau = _prepare(score_fn, schedule, initial_positions, num_steps, method)
    # Sampling runs from noise (low log-SNR) to data (high log-SNR).
    samples = _integrate_positions(positions, grid, score_fn=score_fn, tableau=tableau)
    return ProbabilityFlowResult(samples, num_steps * len(tableau[1]))


def probability_flow_encode(
    score_fn: NoiseConditionalScoreFn,
    schedule: NoiseSchedule,
    data: ArrayLike,
    *,
    num_steps: int = 100,
    method: str = "heun",
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
      num_steps: integrator steps, an int :math:`\\ge 1`.
      method: ``"euler"``, ``"heun"`` (default) or ``"rk4"``.

    Returns:
      :class:`ProbabilityFlowResult` with the latents.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax.diffusion import ode, schedule
      >>> standard_normal_score = lambda x, beta: -x  # N(0, I) data: the flow stands still
      >>> result = ode.probability_flow_encode(
      ...     standard_normal_score, schedule.linear_schedule(100), jnp.ones((2, 3)))
      >>> bool(jnp.allclose(result.positions, 1.0))
      True
    """
    positions, grid, tableau = _prepare(score_fn, schedule, data, num_steps, method, "data")
    latents = _integrate_positions(positions, grid[::-1], score_fn=score_fn, tableau=tableau)
    return ProbabilityFlowResult(latents, num_steps * len(tableau[1]))


def probability_flow_log_likelihood(
    rng_key: PRNGKey,
    score_fn: NoiseConditionalScoreFn,
    schedule: NoiseSchedule,
    data: ArrayLike,
    *,
    num_steps: int = 100,
    method: str = "heun",
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

    integrated jointly with :math:`x` by the same Runge-Kutta method, with
    :math:`z = x(\\lambda_{\\min})` and the prior :math:`\\pi = N(0, I)
    \\approx p_{\\bar\\beta_T}`. The divergence is exact (``"exact"``, :math:`d`
    JVPs per stage, :func:`ebm_jax.trace.value_and_exact_divergence`) or
    Hutchinson's estimate (``"hutchinson"``, ``num_probes`` JVPs per stage) with
    the probes drawn once per sample and held fixed along its path (FFJORD): the
    path does not depend on them and the quadrature is linear in the
    divergences, so the log-likelihood is unbiased for the exact-divergence one
    at any step count. It is the likelihood of the data perturbed to
    :math:`\\bar\\beta_1`, not of the data itself (:math:`\\lambda = \\infty`).

    Args:
      rng_key: a JAX PRNG key for the probes (unused by ``"exact"``).
      score_fn: ``(x, beta) -> score`` of one sample at marginal level ``beta``.
      schedule: the :class:`~ebm_jax.diffusion.schedule.NoiseSchedule`.
      data: ``(num_samples, *event_shape)``.
      num_steps: integrator steps, an int :math:`\\ge 1`.
      method: ``"euler"``, ``"heun"`` (default) or ``"rk4"``.
      divergence: ``"exact"`` (default) or ``"hutchinson"``.
      num_probes: probes per sample for ``"hutchinson"``.
      probe: ``"rademacher"`` or ``"gaussian"`` (see :func:`ebm_jax.trace.sample_probes`).
      prior_logdensity_fn: ``z -> log pi(z)`` of one latent, normalised; default
        the standard normal.

    Returns:
      :class:`LogLikelihoodResult`, NFE = ``num_steps`` times 1, 2 or 4.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.diffusion import ode, schedule
      >>> standard_normal_score = lambda x, beta: -x  # p_beta = N(0, I) at every level
      >>> result = ode.probability_flow_log_likelihood(
      ...     jax.random.key(0), standard_normal_score, schedule.linear_schedule(100),
      ...     jnp.zeros((1, 2)))
      >>> round(float(result.log_likelihood[0]), 4), round(-jnp.log(2 * jnp.pi).item(), 4)
      (-1.8379, -1.8379)

    References:
      Song et al. (2021), arXiv:2011.13456, Appendix D.2.
      Grathwohl et al. (2019), arXiv:1810.01367.
    """
    check_key(rng_key)
    _check_option(divergence, DIVERGENCES, "divergence")
    num_probes = check_int(num_probes, "num_probes", 1)
    _check_option(probe, trace.PROBES, "probe")
    positions, grid, tableau = _prepare(score_fn, schedule, data, num_steps, method, "data")
    if prior_logdensity_fn is not None:
        check_callable(prior_logdensity_fn, "prior_logdensity_fn")
        try:
            hash(prior_logdensity_fn)
        except TypeError as exc:
            raise TypeError("prior_logdensity_fn must be hashable") from exc
        check_logdensity(prior_logdensity_fn, positions[0], "prior_logdensity_fn")
    latents, divergence_integral, prior_logdensity = _integrate_log_likelihood(
        rng_key,
        positions,
        grid[::-1],
        score_fn=score_fn,
        tableau=tableau,
        divergence=divergence,
        num_probes=num_probes,
        probe=probe,
        prior_logdensity_fn=prior_logdensity_fn,
    )
    return LogLikelihoodResult(
        prior_logdensity + divergence_integral,
        latents,
        prior_logdensity,
        divergence_integral,
        num_steps * len(tableau[1]),
    )


# --- the integrator -----------------------------------------------------------------------


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


def _integrate(
    vector_field: Callable[[Any, Array], Any], state: Any, grid: Array, tableau: _Tableau
) -> Any:
    def body(state: Any, interval: tuple[Array, Array]) -> tuple[Any, None]:
        start, end = interval
        return _runge_kutta_step(vector_field, state, start, end - start, tableau), None

    state, _ = jax.lax.scan(body, state, (grid[:-1], grid[1:]))
    return state


@functools.partial(jax.jit, static_argnames=("score_fn", "tableau"))
def _integrate_positions(
    positions: Array, grid: Array, *, score_fn: NoiseConditionalScoreFn, tableau: _Tableau
) -> Array:
    field = functools.partial(_velocity, score_fn)
    return jax.vmap(lambda x: _integrate(field, x, grid, tableau))(positions)


@functools.partial(
    jax.jit,
    static_argnames=(
        "score_fn",
        "tableau",
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
    *,
    score_fn: NoiseConditionalScoreFn,
    tableau: _Tableau,
    divergence: str,
    num_probes: int,
    probe: str,
    prior_logdensity_fn: LogDensityFn | None,
) -> tuple[Array, Array, Array]:
    def one_sample(probe_key: PRNGKey, x: Array) -> tuple[Array, Array, Array]:
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
        latent, divergence_integral = _integrate(augmented_field, initial, grid, tableau)
        if prior_logdensity_fn is None:
            prior = -0.5 * jnp.sum(latent**2) - 0.5 * latent.size * _LOG_2PI
        else:
            prior = prior_logdensity_fn(latent)
        return latent, divergence_integral, prior

    probe_keys = jax.random.split(rng_key, positions.shape[0])
    return jax.vmap(one_sample)(probe_keys, positions)


def _prepare(
    score_fn: Any,
    schedule: Any,
    positions: Any,
    num_steps: Any,
    method: Any,
    name: str = "initial_positions",
) -> tuple[Array, Array, _Tableau]:
    """Validate; return the positions, the log-SNR grid (noise to data) and the tableau."""
    num_steps = check_int(num_steps, "num_steps", 1)
    _check_option(method, METHODS, "method")
    positions = _check_score_model(score_fn, schedule, positions, name)
    dtype = positions.dtype
    # log SNR = log ᾱ - log(1 - ᾱ), from ᾱ: near pure noise ᾱ stays representable where
    # β̄ = 1 - ᾱ rounds to 1 (a cosine schedule's ᾱ_T ≈ 2.4e-9), which would give -inf.
    smallest = jnp.asarray(schedule.marginal_betas[0], dtype)
    least_signal = jnp.asarray(schedule.alphas_cumprod[-1], dtype)
    log_snr_max = jnp.log1p(-smallest) - jnp.log(smallest)
    log_snr_min = jnp.log(least_signal) - jnp.log1p(-least_signal)
    grid = jnp.linspace(log_snr_min, log_snr_max, num_steps + 1, dtype=dtype)
    return positions, grid, _TABLEAUX[method]


__all__ = [
    "DIVERGENCES",
    "METHODS",
    "LogLikelihoodResult",
    "ProbabilityFlowResult",
    "probability_flow_drift",
    "probability_flow_encode",
    "probability_flow_log_likelihood",
    "probability_flow_sample",
]

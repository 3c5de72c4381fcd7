"""Warm-up adaptation of the step size and the preconditioner, for MALA and RWMH.

Two ingredients, both standard:

* **Dual averaging** of :math:`\\log\\varepsilon` (Nesterov 2009) towards a
  target acceptance :math:`\\delta`, with the constants of Hoffman & Gelman
  (2014, Algorithm 5). After :math:`m` updates with acceptances
  :math:`\\alpha_1, \\dots, \\alpha_m`,

  .. math::

     \\bar H_m = \\Big(1 - \\frac{1}{m + t_0}\\Big) \\bar H_{m-1}
                 + \\frac{\\delta - \\alpha_m}{m + t_0}, \\qquad
     \\log\\varepsilon_m = \\mu - \\frac{\\sqrt m}{\\gamma} \\bar H_m,

  .. math::

     \\log\\bar\\varepsilon_m = m^{-\\kappa} \\log\\varepsilon_m
                               + (1 - m^{-\\kappa}) \\log\\bar\\varepsilon_{m-1},

  with :math:`\\gamma = 0.05`, :math:`t_0 = 10`, :math:`\\kappa = 0.75`,
  :math:`\\mu = \\log(10\\,\\varepsilon_0)`. The chain runs with the iterate
  :math:`\\varepsilon_m`; the adapted step size is the average
  :math:`\\bar\\varepsilon_m`.

* **A preconditioner** (inverse mass matrix) :math:`C` from the variances (or
  covariance) of the positions of the chains (the healthy ones, see below)
  over the steps of a window,
  accumulated with :mod:`ebm_jax.samplers.welford` and regularised as in Stan:

  .. math:: C = \\frac{n}{n + 5}\\, \\widehat{\\mathrm{Var}} + 10^{-3} \\frac{5}{n + 5}\\, I,

  where :math:`n` counts chain-steps (so with thousands of chains the shrinkage
  is negligible).

The windows follow Stan's schedule (see :func:`window_schedule`): a fast
window (step size only), doubling slow windows that each end by setting
:math:`C`, then a final fast window.

**When** :math:`C` **changes, the step size is rescaled and dual averaging
carries on.** For a target that is roughly a product of independent
coordinates, and :math:`h_i` the proposal variances in whitened coordinates,
the acceptance of MALA depends on the proposal through :math:`\\sum_i h_i^3`
and that of RWMH through :math:`\\sum_i h_i` (Roberts & Rosenthal 1998, 2001).
With :math:`\\lambda_i` the eigenvalues of :math:`C_{\\text{old}} C_{\\text{new}}^{-1}`
(:math:`C_{\\text{new}}` the target's covariance estimate), keeping those sums
fixed gives

.. math::

   \\tau_{\\text{new}} = \\tau_{\\text{old}} \\Big(\\frac1d \\sum_i \\lambda_i^3\\Big)^{1/3}
   \\quad \\text{(MALA)}, \\qquad
   s_{\\text{new}} = s_{\\text{old}} \\Big(\\frac1d \\sum_i \\lambda_i\\Big)^{1/2}
   \\quad \\text{(RWMH)}.

Every log step size held by dual averaging (:math:`\\log\\varepsilon_m`,
:math:`\\log\\bar\\varepsilon_m`, :math:`\\mu`) is shifted by the log of that
factor; :math:`\\bar H_m` and :math:`m` are kept. Stan instead restarts dual
averaging after each window. We do not: a single chain's MH acceptance is a
far noisier signal than NUTS's trajectory average, and a restart leaves
per-chain adaptation only the final window (10% of the steps) to settle; on a
10-d Gaussian with 1000 steps that left RWMH per-chain step sizes accepting
0.16 instead of 0.234, against 0.22 when carrying on (shared step sizes reach
the target either way).

**Many chains, some of them lost: the robust warm-up** (``adapt``'s default,
``robust=True``). Started as Stan starts (uniform(−2, 2) in the unconstrained
space), some chains land where the target is badly conditioned (a GARCH
variance recursion that explodes, a far plateau) and barely move. One step
size driven by the acceptance averaged over all chains then collapses for
everyone (on posteriordb's GARCH(1,1): 0.016 against 0.20, R̂ 1.39), and
a preconditioner pooled over all chains measures the lost chains' spread, not
the posterior's. Four changes, each cheap beside a kernel step:

1. *Each chain tunes its own step size* in the initial and slow windows (one
   dual averaging per chain, as NumPyro's vectorised chains each run their
   own adaptation). A chain far out shrinks or grows its own step, and
   gradient drift carries it in (MALA far from the bulk is a noisy gradient
   ascent), without touching the others. This is the early phase that brings
   chains into the typical set; an optimisation or Pathfinder start (Zhang et
   al. 2022) would need a line search per chain and buys little once steps
   are per chain.
2. *Lost chains are detected and resampled.* At the end of the initial window
   and of every slow window but the last, a chain is lost when its log-density
   is far below the bulk, :math:`f(x_c) < \\operatorname{med}_c f - 10
   \\max(\\hat s, \\sqrt{d/2})`, with :math:`\\hat s = 1.4826\\,\\mathrm{MAD}`
   the robust spread of :math:`f` over chains (:math:`\\sqrt{d/2}` is the sd
   of :math:`f` under a :math:`d`-dimensional Gaussian, so a chain drawn from
   a Gaussian target crosses the line with probability :math:`1.3 \\cdot
   10^{-4}` at :math:`d = 1` and far less above); when its mean acceptance
   over the window (of at least 50 steps) is below a tenth of the target; or
   when its step size is a thousand times below the healthy chains' median.
   Each lost chain is replaced by a copy of a healthy chain drawn uniformly at
   random (state and step-size state), the resampling move of sequential Monte
   Carlo (Del Moral, Doucet & Jasra 2006). Copies get at least the last slow
   window and the final window to decorrelate. Only the start of sampling
   changes: the kernel run afterwards leaves the target invariant whatever the
   resets did. The price, as with any restart scheme, is that a chain alone in
   a minor mode whose density is 10 robust sds below the bulk is moved to the
   bulk.
3. *The preconditioner comes from healthy chains only*: at every slow-window
   step, the positions of chains whose log-density is above the line of item
   2 (drawn at the end of the previous window) are folded into the Welford
   moments (a masked update), the others are not.
4. *The final step size is shared and robust*: at the end of the last slow
   window a single dual averaging starts from the median of the healthy
   chains' averaged step sizes (and shrinks towards it: :math:`\\mu` is that
   median, not ten times it) and runs the final window on the acceptance
   averaged over healthy chains. With ``per_chain=True`` each chain keeps
   its own step size to the end instead, and all share one preconditioner.

Everything is counted in :class:`AdaptationInfo` (per-chain acceptance per
window, resets per window and per chain, the chains still lost at the end),
and :func:`adapt` warns when any chain is still lost. The cross-chain idea,
adapting each chain with statistics of the others, is that of ChEES-HMC
(Hoffman, Radul & Sountsov 2021) and MEADS (Hoffman & Sountsov 2022), which
adapt HMC from many chains at once; their step-size rules use all chains,
which is what lets a few lost chains drag everyone. ``robust=False`` keeps the
plain scheme (one shared dual averaging on the mean acceptance, all chains
in the preconditioner, no resets) for comparison.

References:
  Nesterov (2009), *Primal-dual subgradient methods for convex problems*,
  Math. Program. 120. Hoffman & Gelman (2014), *The No-U-Turn sampler*, JMLR 15,
  arXiv:1111.4246. Stan Reference Manual, *HMC algorithm parameters:
  automatic parameter tuning*. Roberts, Gelman & Gilks (1997), Ann. Appl.
  Probab. 7(1) (RWMH, 0.234). Roberts & Rosenthal (1998), JRSS-B 60(1)
  (MALA, 0.574). Roberts & Rosenthal (2001), *Optimal scaling for various
  Metropolis-Hastings algorithms*, Statist. Sci. 16(4). Del Moral, Doucet &
  Jasra (2006), *Sequential Monte Carlo samplers*, JRSS-B 68(3). Hoffman,
  Radul & Sountsov (2021), *An adaptive MCMC scheme for setting trajectory
  lengths in Hamiltonian Monte Carlo* (ChEES), AISTATS. Hoffman & Sountsov
  (2022), *Tuning-free generalized Hamiltonian Monte Carlo* (MEADS),
  AISTATS. Zhang, Carpenter, Gelman & Vehtari (2022), *Pathfinder:
  parallel quasi-Newton variational inference*, JMLR 23.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ebm_jax._validation import (
    as_floating_tree,
    check_callable,
    check_finite_array,
    check_int,
    check_logdensity,
    check_positive_scalar,
    check_probability,
)
from ebm_jax.samplers import langevin, random_walk
from ebm_jax.samplers.preconditioning import Preconditioner
from ebm_jax.samplers.welford import (
    WelfordState,
    welford_init,
    welford_update_batch,
    welford_variance,
)
from ebm_jax.types import Array, ArrayLike, LogDensityFn, PRNGKey

DEFAULT_TARGET_ACCEPTANCE = {"mala": 0.574, "rwmh": 0.234}
"""Asymptotically optimal acceptance rates: MALA (Roberts & Rosenthal 1998), RWMH
(Roberts, Gelman & Gilks 1997)."""

_PRECONDITIONERS = ("auto", "diagonal", "dense", None)
MAX_AUTO_DENSE_SIZE = 128
"""``preconditioner="auto"`` adapts a dense preconditioner up to this many coordinates."""
_MIN_STEPS_FOR_WINDOWS = 20
_MIN_SLOW_WINDOW = 25
_INITIAL_FAST_FRACTION = 0.15
_FINAL_FAST_FRACTION = 0.1
# Lost chains (module docstring): log-density more than 10 robust sds (at least
# 10 sqrt(d/2)) below the median, acceptance under a tenth of the target over a
# window, or a step size a thousand times below the median.
_LOST_LOGDENSITY_MARGIN = 10.0
_LOST_ACCEPTANCE_FRACTION = 0.1
_LOST_MIN_WINDOW = 50  # shorter windows say too little about one chain's acceptance
_LOST_LOG_STEP_RATIO = math.log(1000.0)


# --------------------------------------------------------------------------- dual averaging


class DualAveragingState(NamedTuple):
    """Dual averaging of :math:`\\log\\varepsilon` (Hoffman & Gelman 2014, Alg. 5).

    Every field has the shape of the step size: a scalar, or ``(num_chains,)``
    when each chain adapts its own.

    Attributes:
      log_step_size: :math:`\\log\\varepsilon_m`, the step size to run with next.
      log_step_size_avg: :math:`\\log\\bar\\varepsilon_m`, the averaged iterate,
        the step size to keep after adaptation. Starts at
        :math:`\\log\\varepsilon_0` (the paper's 0 is overwritten by the first
        update, whose weight is :math:`1^{-\\kappa} = 1`).
      step: :math:`m`, the number of updates so far (int32).
      avg_error: :math:`\\bar H_m`, the running mean of :math:`\\delta - \\alpha`.
      mu: :math:`\\mu = \\log(10\\,\\varepsilon_0)`, the point the iterates shrink to.
    """

    log_step_size: Array
    log_step_size_avg: Array
    step: Array
    avg_error: Array
    mu: Array


def dual_averaging_init(initial_step_size: ArrayLike) -> DualAveragingState:
    """Start dual averaging at a step size :math:`\\varepsilon_0`.

    The iterates shrink towards :math:`\\mu = \\log(10\\,\\varepsilon_0)`.

    Args:
      initial_step_size: :math:`\\varepsilon_0 > 0`, a scalar or an array (one
        independent dual averaging per entry, e.g. per chain).

    Returns:
      A :class:`DualAveragingState` with ``step = 0``.

    Examples:
      >>> from ebm_jax.samplers import dual_averaging_init
      >>> state = dual_averaging_init(0.1)
      >>> int(state.step), round(float(state.mu), 4)
      (0, 0.0)
    """
    check_positive_scalar(initial_step_size, "initial_step_size")
    step_size = jnp.asarray(initial_step_size)
    if not jnp.issubdtype(step_size.dtype, jnp.floating):
        step_size = step_size.astype(jnp.result_type(float))
    log_step_size = jnp.log(step_size)
    return DualAveragingState(
        log_step_size=log_step_size,
        log_step_size_avg=log_step_size,
        step=jnp.zeros(log_step_size.shape, jnp.int32),
        avg_error=jnp.zeros_like(log_step_size),
        mu=jnp.log(10.0) + log_step_size,
    )


def dual_averaging_update(
    state: DualAveragingState,
    acceptance_rate: ArrayLike,
    target_acceptance: ArrayLike,
    *,
    gamma: float = 0.05,
    t0: float = 10.0,
    kappa: float = 0.75,
) -> DualAveragingState:
    """One dual-averaging update from the acceptance of the last step.

    Implements Algorithm 5 of Hoffman & Gelman (2014) (see the module
    docstring): an acceptance above the target raises the step size, one
    below lowers it. A NaN acceptance counts as 0. Pure and elementwise, so
    it broadcasts over per-chain states and runs under ``jit``/``scan``.

    Args:
      state: the current :class:`DualAveragingState`.
      acceptance_rate: :math:`\\alpha_m \\in [0, 1]`, the MH acceptance
        probability of the step just taken (a mean over chains, or one per chain).
      target_acceptance: :math:`\\delta \\in (0, 1)`.
      gamma: :math:`\\gamma`, how strongly the iterates shrink towards :math:`\\mu`.
      t0: :math:`t_0 \\ge 0`, damps the first updates.
      kappa: :math:`\\kappa \\in (0.5, 1]`, the averaging weight decay.

    Returns:
      The updated state; ``exp(state.log_step_size_avg)`` is the adapted step size.

    Examples:
      Find :math:`\\varepsilon` with :math:`e^{-\\varepsilon} = 0.5`, i.e. :math:`\\log 2`:

      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.samplers import dual_averaging_init, dual_averaging_update
      >>> def update(_, state):
      ...     acceptance = jnp.exp(-jnp.exp(state.log_step_size))
      ...     return dual_averaging_update(state, acceptance, 0.5)
      >>> state = jax.lax.fori_loop(0, 2000, update, dual_averaging_init(1.0))
      >>> bool(jnp.abs(jnp.exp(state.log_step_size_avg) - jnp.log(2.0)) < 0.01)
      True

    References:
      Nesterov (2009); Hoffman & Gelman (2014), §3.2 and Algorithm 5.
    """
    dtype = state.log_step_size.dtype
    acceptance_rate = jnp.asarray(acceptance_rate, dtype)
    acceptance_rate = jnp.where(jnp.isnan(acceptance_rate), 0.0, acceptance_rate)
    step = state.step + 1
    m = step.astype(dtype)
    error = jnp.asarray(target_acceptance, dtype) - acceptance_rate
    avg_error = (1.0 - 1.0 / (m + t0)) * state.avg_error + error / (m + t0)
    log_step_size = state.mu - jnp.sqrt(m) / gamma * avg_error
    weight = m ** (-kappa)
    log_step_size_avg = weight * log_step_size + (1.0 - weight) * state.log_step_size_avg
    return DualAveragingState(log_step_size, log_step_size_avg, step, avg_error, state.mu)


# --------------------------------------------------------------------------- schedule


class AdaptationSchedule(NamedTuple):
    """Window lengths, in steps; they sum to ``num_steps``.

    Attributes:
      initial_fast: first window, step size only (lets chains leave their
        initial positions before any variance is measured).
      slow: the slow windows, each doubling the last; each ends by setting the
        preconditioner (and rescaling the step size to it). Empty when the
        preconditioner is not adapted.
      final_fast: last window, step size only, for the final preconditioner.
    """

    initial_fast: int
    slow: tuple[int, ...]
    final_fast: int


def window_schedule(num_steps: int, *, adapt_preconditioner: bool = True) -> AdaptationSchedule:
    """Stan-like windows derived from ``num_steps``.

    With ``N = num_steps`` and a preconditioner to adapt:

    * ``N < 20``: one fast window of ``N`` steps (step size only; the
      preconditioner stays the identity).
    * otherwise: an initial fast window of ``floor(0.15 N)`` steps, a final fast
      window of ``floor(0.1 N)`` steps, and in between
      :math:`K = \\max(1, \\lfloor\\log_2(S / 25 + 1)\\rfloor)` slow windows
      of lengths :math:`w, 2w, \\dots, 2^{K-1} w` (the last absorbs rounding)
      covering the remaining :math:`S` steps, so that no slow window is shorter
      than 25 steps unless :math:`S` itself is. ``N = 1000`` gives
      150 | 50, 100, 200, 400 | 100, close to Stan's defaults.

    Without a preconditioner to adapt, all ``N`` steps are one fast window.

    Args:
      num_steps: total number of adaptation steps, ``>= 1``.
      adapt_preconditioner: whether slow windows are wanted.

    Returns:
      An :class:`AdaptationSchedule`.

    Examples:
      >>> from ebm_jax.samplers import window_schedule
      >>> window_schedule(1000)
      AdaptationSchedule(initial_fast=150, slow=(50, 100, 200, 400), final_fast=100)
      >>> window_schedule(10)
      AdaptationSchedule(initial_fast=10, slow=(), final_fast=0)
    """
    num_steps = check_int(num_steps, "num_steps", 1)
    if not adapt_preconditioner or num_steps < _MIN_STEPS_FOR_WINDOWS:
        return AdaptationSchedule(num_steps, (), 0)
    initial_fast = int(_INITIAL_FAST_FRACTION * num_steps)
    final_fast = int(_FINAL_FAST_FRACTION * num_steps)
    slow_total = num_steps - initial_fast - final_fast
    num_windows = max(1, int(math.log2(slow_total / _MIN_SLOW_WINDOW + 1)))
    base = slow_total // (2**num_windows - 1)
    slow = [base * 2**k for k in range(num_windows)]
    slow[-1] += slow_total - sum(slow)
    return AdaptationSchedule(initial_fast, tuple(slow), final_fast)


# --------------------------------------------------------------------------- adaptation


class AdaptationInfo(NamedTuple):
    """What happened during the warm-up: traces per step, counts per window and chain.

    ``W`` below is the number of windows of :func:`window_schedule`
    (initial fast, slow windows, final fast; empty windows included).

    Attributes:
      acceptance_rate: ``(num_steps,)``, the MH acceptance probability averaged
        over chains at each step.
      step_size: the step size (``scale`` for RWMH) the chains ran with:
        ``(num_steps, num_chains)`` with ``per_chain=True``; otherwise
        ``(num_steps,)``, the shared step size, or while each chain runs with
        its own (the robust warm-up's early windows) their geometric mean.
      window: ``(num_steps,)`` int, 0 for the initial fast window, ``1..K`` for
        the slow windows and ``K + 1`` for the final fast window.
      chain_acceptance_rate: ``(W, num_chains)``, each chain's mean acceptance
        over each window (NaN for an empty window).
      num_reset: ``(W,)`` int, how many lost chains were reset to a copy of a
        healthy chain at the end of each window (always 0 with ``robust=False``).
      reset_count: ``(num_chains,)`` int, how many times each chain was reset.
      is_lost: ``(num_chains,)`` bool, the chains judged lost at the end of the
        warm-up (:func:`adapt` warns when any is).
    """

    acceptance_rate: Array
    step_size: Array
    window: Array
    chain_acceptance_rate: Array
    num_reset: Array
    reset_count: Array
    is_lost: Array


class AdaptationResult(NamedTuple):
    """What :func:`adapt` returns.

    Attributes:
      states: the chains' final states (batched, leading ``num_chains`` axis):
        a :class:`~ebm_jax.samplers.MALAState` or
        :class:`~ebm_jax.samplers.RWMHState`; sampling can continue from them.
      parameters: keyword arguments for the sampler factory shared by all
        chains: ``step_size`` (MALA) or ``scale`` (RWMH), plus
        ``inverse_mass_matrix`` when a preconditioner was adapted. With
        ``per_chain=True`` the step size moves to ``chain_parameters`` and
        only the (single, shared) preconditioner stays here.
      info: an :class:`AdaptationInfo`.
      chain_parameters: with ``per_chain=True``, ``{"step_size": (num_chains,)}``
        (``"scale"`` for RWMH), ready for ``run_chains(...,
        chain_parameters=result.chain_parameters)``; otherwise empty.
    """

    states: Any
    parameters: dict[str, Array]
    info: AdaptationInfo
    chain_parameters: dict[str, Array] = {}  # noqa: RUF012  # never mutated


def _sampler_name(sampler: Any) -> str:
    if isinstance(sampler, str):
        name = sampler
    elif sampler is langevin.mala:
        name = "mala"
    elif sampler is random_walk.rwmh:
        name = "rwmh"
    elif sampler is langevin.ula:
        name = "ula"
    else:
        raise TypeError(
            f"sampler must be 'mala', 'rwmh', ej.samplers.mala or ej.samplers.rwmh, got {sampler!r}"
        )
    if name == "ula":
        raise ValueError(
            "sampler='ula' cannot be adapted to a target acceptance: ULA has no "
            "Metropolis-Hastings step, so it accepts every finite proposal; choose its "
            "step_size from its bias instead, or adapt 'mala'"
        )
    if name not in DEFAULT_TARGET_ACCEPTANCE:
        raise ValueError(f"sampler must be 'mala' or 'rwmh', got {name!r}")
    return name


def _identity_preconditioner(kind: str | None, size: int, dtype: jnp.dtype) -> Preconditioner:
    if kind is None:
        return Preconditioner(None, None)
    if kind == "diagonal":
        return Preconditioner(jnp.ones(size, dtype), jnp.ones(size, dtype))
    return Preconditioner(jnp.eye(size, dtype=dtype), jnp.eye(size, dtype=dtype))


def _end_slow_window(
    welford: WelfordState, preconditioner: Preconditioner, sampler_name: str
) -> tuple[WelfordState, Preconditioner, Array]:
    """Set C from the window's moments; also return the log factor rescaling the step size."""
    count = welford.count
    shrink = count / (count + 5.0)
    jitter = 1e-3 * 5.0 / (count + 5.0)
    estimate = welford_variance(welford)
    old, old_cholesky = preconditioner
    assert old is not None and old_cholesky is not None  # only called with a preconditioner
    power = 3 if sampler_name == "mala" else 1
    if old.ndim == 1:
        matrix = shrink * estimate + jitter
        cholesky = jnp.sqrt(matrix)
        power_mean = jnp.mean((old / matrix) ** power)
    else:
        matrix = shrink * estimate + jitter * jnp.eye(old.shape[0], dtype=old.dtype)
        matrix = 0.5 * (matrix + matrix.T)
        cholesky = jnp.linalg.cholesky(matrix)
        solve = functools.partial(jax.scipy.linalg.solve_triangular, cholesky, lower=True)
        whitened_old = solve(solve(old).T)  # L^{-1} C_old L^{-T}, eigenvalues of C_old C_new^{-1}
        whitened_old = 0.5 * (whitened_old + whitened_old.T)
        if power == 1:
            power_mean = jnp.trace(whitened_old) / old.shape[0]
        else:
            power_mean = jnp.sum(whitened_old * (whitened_old @ whitened_old)) / old.shape[0]
    # Keep the old C if the estimate is unusable (overflowed variances, failed Cholesky).
    usable = jnp.all(jnp.isfinite(cholesky)) & jnp.isfinite(power_mean) & (power_mean > 0)
    matrix = jnp.where(usable, matrix, old)
    cholesky = jnp.where(usable, cholesky, old_cholesky)
    power_mean = jnp.where(usable, power_mean, 1.0)
    # tau scales like (mean lambda^3)^(1/3) (MALA), the RWMH scale like (mean lambda)^(1/2).
    log_factor = jnp.log(power_mean) / (3.0 if sampler_name == "mala" else 2.0)
    return jax.tree.map(jnp.zeros_like, welford), Preconditioner(matrix, cholesky), log_factor


def _shift(dual_averaging: DualAveragingState, log_factor: Array) -> DualAveragingState:
    """Carry dual averaging into a new metric: every log step size it holds moves by
    ``log_factor``; its averaged error and step count are kept."""
    return dual_averaging._replace(
        log_step_size=dual_averaging.log_step_size + log_factor,
        log_step_size_avg=dual_averaging.log_step_size_avg + log_factor,
        mu=dual_averaging.mu + log_factor,
    )


def _median(values: Array, mask: Array) -> Array:
    """Median of ``values`` where ``mask`` holds (NaN when it holds nowhere)."""
    return jnp.nanmedian(jnp.where(mask, values, jnp.nan))


def _logdensity_floor(logdensity: Array, size: int) -> Array:
    """The log-density below which a chain is far from the bulk (module docstring)."""
    finite = jnp.isfinite(logdensity)
    median = _median(logdensity, finite)
    spread = 1.4826 * _median(jnp.abs(logdensity - median), finite)
    return median - _LOST_LOGDENSITY_MARGIN * jnp.maximum(spread, math.sqrt(size / 2.0))


def _lost_chains(
    logdensity: Array,
    window_acceptance: Array,
    window_steps: Array | int,
    log_step_size: Array,
    target_acceptance: Array,
    size: int,
) -> Array:
    """Which chains are lost (module docstring, *Lost chains*)."""
    far_below = ~(logdensity >= _logdensity_floor(logdensity, size))  # NaN counts as lost
    not_moving = (window_steps >= _LOST_MIN_WINDOW) & (
        window_acceptance < _LOST_ACCEPTANCE_FRACTION * target_acceptance
    )
    median_log_step = _median(log_step_size, ~far_below)
    collapsed = log_step_size < median_log_step - _LOST_LOG_STEP_RATIO
    return far_below | not_moving | collapsed


def _shared_start(chain_da: DualAveragingState, healthy: Array) -> DualAveragingState:
    """A fresh dual averaging for one shared step size, started at (and shrinking
    towards) the median of the healthy chains' averaged step sizes."""
    log_step_sizes = chain_da.log_step_size_avg
    start = _median(log_step_sizes, healthy)
    start = jnp.where(jnp.isfinite(start), start, jnp.median(log_step_sizes))
    return dual_averaging_init(jnp.exp(start))._replace(mu=start)


def _reset_lost(
    rng_key: PRNGKey, lost: Array, states: Any, chain_da: DualAveragingState
) -> tuple[Any, DualAveragingState]:
    """Replace each lost chain by a copy of a healthy chain drawn uniformly at random."""
    num_chains = lost.shape[0]
    healthy = ~lost
    any_healthy = jnp.any(healthy)
    logits = jnp.where(healthy, 0.0, -jnp.inf)
    logits = jnp.where(any_healthy, logits, 0.0)
    donors = jax.random.categorical(rng_key, logits, shape=(num_chains,))
    source = jnp.where(lost & any_healthy, donors, jnp.arange(num_chains))
    take = functools.partial(jnp.take, indices=source, axis=0)
    return jax.tree.map(take, states), jax.tree.map(take, chain_da)


class _Flags(NamedTuple):
    """Per-step flags of the warm-up scan (host arrays, built from the schedule)."""

    window: np.ndarray  # window index
    is_slow: np.ndarray  # accumulate positions for C
    is_window_end: np.ndarray  # last step of a window
    is_slow_end: np.ndarray  # last step of a slow window: C is set
    is_check: np.ndarray  # last step of a window after which lost chains are reset
    is_last_slow_end: np.ndarray  # the shared step size starts from the chains' median here
    chain_driven: np.ndarray  # chains run with their own step sizes


def _flags(schedule: AdaptationSchedule, *, robust: bool, per_chain: bool) -> _Flags:
    lengths = [schedule.initial_fast, *schedule.slow, schedule.final_fast]
    num_slow = len(schedule.slow)
    window = np.concatenate([np.full(n, i, np.int32) for i, n in enumerate(lengths)])
    is_slow = (window >= 1) & (window <= num_slow)
    ends = np.cumsum(lengths) - 1
    is_window_end = np.zeros(window.shape, bool)
    is_window_end[[end for end, n in zip(ends, lengths, strict=True) if n > 0]] = True
    is_slow_end = is_window_end & is_slow
    # Resets happen after the initial window and every slow window but the last, so
    # that copies have the last slow window and the final window to decorrelate.
    is_check = is_window_end & (window < num_slow) & robust
    is_last_slow_end = is_slow_end & (window == num_slow) & robust & (not per_chain)
    if per_chain:
        chain_driven = np.ones(window.shape, bool)
    elif robust:
        chain_driven = (window <= num_slow) if num_slow else np.ones(window.shape, bool)
    else:
        chain_driven = np.zeros(window.shape, bool)
    return _Flags(
        window, is_slow, is_window_end, is_slow_end, is_check, is_last_slow_end, chain_driven
    )


class _Carry(NamedTuple):
    states: Any
    chain_da: DualAveragingState  # one dual averaging per chain, (num_chains,)
    shared_da: DualAveragingState  # one for all chains, ()
    welford: WelfordState
    precond: Preconditioner
    window_acceptance: Array  # (num_chains,), summed over the current window
    window_steps: Array  # steps so far in the current window
    floor: Array  # healthy chains' log-density is above it (set at window ends)
    chain_acceptance: Array  # (num_windows, num_chains)
    num_reset: Array  # (num_windows,)
    reset_count: Array  # (num_chains,)


@functools.partial(
    jax.jit,
    static_argnames=(
        "sampler_name",
        "logdensity_fn",
        "num_steps",
        "per_chain",
        "preconditioner",
        "robust",
    ),
)
def _run_adaptation(
    rng_key: PRNGKey,
    initial_positions: Array,
    initial_step_size: Array,
    target_acceptance: Array,
    *,
    sampler_name: str,
    logdensity_fn: LogDensityFn,
    num_steps: int,
    per_chain: bool,
    preconditioner: str | None,
    robust: bool,
) -> tuple[Any, Array, Preconditioner, AdaptationInfo]:
    num_chains = jax.tree.leaves(initial_positions)[0].shape[0]
    first = jax.tree.map(lambda leaf: leaf[0], initial_positions)
    size = ravel_pytree(first)[0].size
    dtype = ravel_pytree(first)[0].dtype

    init_fn: Callable[..., Any]
    kernel: Callable[..., Any]
    if sampler_name == "mala":
        init_fn = langevin.init
        mala_kernel = langevin.build_mala_kernel(logdensity_fn)

        def kernel(rng_key, state, step_size, precond):
            return mala_kernel(rng_key, state, step_size, 2.0 * step_size, precond)

    else:
        init_fn = random_walk.init
        kernel = random_walk.build_kernel(logdensity_fn)

    batched_kernel = jax.vmap(kernel, in_axes=(0, 0, 0, None))
    states = jax.vmap(lambda position: init_fn(position, logdensity_fn))(initial_positions)

    # The robust warm-up always has windows: without a preconditioner they only pace
    # the lost-chain checks and the switch to a shared step size.
    schedule = window_schedule(num_steps, adapt_preconditioner=robust or preconditioner is not None)
    flags = _flags(schedule, robust=robust, per_chain=per_chain)
    num_windows = 2 + len(schedule.slow)
    step_size = jnp.full((num_chains,), initial_step_size, dtype)
    carry = _Carry(
        states=states,
        chain_da=dual_averaging_init(step_size),
        shared_da=dual_averaging_init(step_size[0]),
        welford=welford_init((size,), dtype, dense=preconditioner == "dense"),
        precond=_identity_preconditioner(preconditioner, size, dtype),
        window_acceptance=jnp.zeros((num_chains,), dtype),
        window_steps=jnp.zeros((), dtype),
        floor=jnp.asarray(-jnp.inf, dtype),
        chain_acceptance=jnp.full((num_windows, num_chains), jnp.nan, dtype),
        num_reset=jnp.zeros((num_windows,), jnp.int32),
        reset_count=jnp.zeros((num_chains,), jnp.int32),
    )

    def is_lost(carry: _Carry) -> Array:
        return _lost_chains(
            carry.states.logdensity,
            carry.window_acceptance / jnp.maximum(carry.window_steps, 1.0),
            carry.window_steps,
            carry.chain_da.log_step_size,
            target_acceptance,
            size,
        )

    def end_window(carry: _Carry, key: Array, window: Array, check: Array) -> _Carry:
        chain_acceptance = carry.chain_acceptance.at[window].set(
            carry.window_acceptance / carry.window_steps
        )
        lost = is_lost(carry) & check
        states, chain_da = _reset_lost(key, lost, carry.states, carry.chain_da)
        return carry._replace(
            states=states,
            chain_da=chain_da,
            floor=_logdensity_floor(states.logdensity, size).astype(dtype),
            window_acceptance=jnp.zeros_like(carry.window_acceptance),
            window_steps=jnp.zeros_like(carry.window_steps),
            chain_acceptance=chain_acceptance,
            num_reset=carry.num_reset.at[window].set(jnp.sum(lost, dtype=jnp.int32)),
            reset_count=carry.reset_count + lost.astype(jnp.int32),
        )

    def end_slow_window(carry: _Carry, last_slow: Array) -> _Carry:
        welford, precond, log_factor = _end_slow_window(carry.welford, carry.precond, sampler_name)
        carry = carry._replace(
            welford=welford,
            precond=precond,
            chain_da=_shift(carry.chain_da, log_factor),
            shared_da=_shift(carry.shared_da, log_factor),
        )
        return jax.lax.cond(last_slow, start_shared, lambda c: c, carry)

    def start_shared(carry: _Carry) -> _Carry:
        return carry._replace(shared_da=_shared_start(carry.chain_da, ~is_lost(carry)))

    def one_step(carry: _Carry, inputs):
        key, window, slow, window_end, slow_end, check, last_slow, chain_driven = inputs
        step_key, reset_key = jax.random.split(key)
        step_size = jnp.where(
            chain_driven,
            jnp.exp(carry.chain_da.log_step_size),
            jnp.exp(carry.shared_da.log_step_size),
        )
        states, info = batched_kernel(
            jax.random.split(step_key, num_chains), carry.states, step_size, carry.precond
        )
        acceptance = jnp.where(jnp.isnan(info.acceptance_rate), 0.0, info.acceptance_rate)
        acceptance = acceptance.astype(dtype)
        if robust:
            # Healthy: above the floor set at the last window's end (a comparison
            # per step; the medians behind the floor are taken once per window).
            healthy = states.logdensity >= carry.floor
            shared_acceptance = jnp.sum(jnp.where(healthy, acceptance, 0.0)) / jnp.maximum(
                jnp.sum(healthy), 1
            )
        else:
            healthy = jnp.ones((num_chains,), bool)
            shared_acceptance = jnp.mean(acceptance)
        chain_da = dual_averaging_update(carry.chain_da, acceptance, target_acceptance)
        shared_da = dual_averaging_update(carry.shared_da, shared_acceptance, target_acceptance)
        carry = carry._replace(
            states=states,
            chain_da=jax.tree.map(
                lambda new, old: jnp.where(chain_driven, new, old), chain_da, carry.chain_da
            ),
            shared_da=jax.tree.map(
                lambda new, old: jnp.where(chain_driven, old, new), shared_da, carry.shared_da
            ),
            window_acceptance=carry.window_acceptance + acceptance,
            window_steps=carry.window_steps + 1.0,
        )
        if preconditioner is not None:
            flat_positions = jax.vmap(lambda position: ravel_pytree(position)[0])(states.position)
            carry = carry._replace(
                welford=jax.lax.cond(
                    slow,
                    lambda w: welford_update_batch(w, flat_positions, healthy),
                    lambda w: w,
                    carry.welford,
                )
            )
            carry = jax.lax.cond(
                slow_end, lambda c: end_slow_window(c, last_slow), lambda c: c, carry
            )
        else:
            carry = jax.lax.cond(last_slow, start_shared, lambda c: c, carry)
        carry = jax.lax.cond(
            window_end,
            lambda c: end_window(c, reset_key, window, check),
            lambda c: c,
            carry,
        )
        if per_chain:
            trace = step_size
        else:
            trace = jnp.where(chain_driven, jnp.exp(jnp.mean(jnp.log(step_size))), step_size[0])
        return carry, (jnp.mean(acceptance), trace)

    inputs = (
        jax.random.split(rng_key, num_steps),
        *(jnp.asarray(flag) for flag in flags),
    )
    carry, (acceptance_trace, step_size_trace) = jax.lax.scan(one_step, carry, inputs)

    last_window = int(flags.window[-1])  # the last window that ran
    lost = _lost_chains(
        carry.states.logdensity,
        carry.chain_acceptance[last_window],
        int(np.sum(flags.window == last_window)),
        carry.chain_da.log_step_size,
        target_acceptance,
        size,
    )
    if per_chain:
        step_size = jnp.exp(carry.chain_da.log_step_size_avg)
    elif flags.chain_driven[-1]:
        # No window ran with a shared step size (short runs): aggregate the chains' own.
        step_size = jnp.exp(_shared_start(carry.chain_da, ~lost).log_step_size)
    else:
        step_size = jnp.exp(carry.shared_da.log_step_size_avg)
    info = AdaptationInfo(
        acceptance_rate=acceptance_trace,
        step_size=step_size_trace,
        window=jnp.asarray(flags.window),
        chain_acceptance_rate=carry.chain_acceptance,
        num_reset=carry.num_reset,
        reset_count=carry.reset_count,
        is_lost=lost,
    )
    return carry.states, step_size, carry.precond, info


def adapt(
    rng_key: PRNGKey,
    sampler: str | Callable[..., Any],
    logdensity_fn: LogDensityFn,
    initial_positions: ArrayLike,
    num_steps: int,
    *,
    target_acceptance: float | None = None,
    initial_step_size: float | None = None,
    per_chain: bool = False,
    preconditioner: str | None = "auto",
    robust: bool = True,
) -> AdaptationResult:
    """Warm up many chains and return the adapted step size and preconditioner.

    All chains move together (``jax.vmap`` of the single-chain kernel inside
    one jitted ``lax.scan``) through Stan-like windows (:func:`window_schedule`):
    an initial fast window, doubling slow windows that each end by setting the
    preconditioner :math:`C` from the positions seen in the window (positions
    of any event shape are flattened), regularised as
    :math:`\\frac{n}{n+5}\\widehat{\\mathrm{Var}} + 10^{-3}\\frac{5}{n+5}`
    with :math:`n` chain-steps, and a final fast window. Step sizes follow dual
    averaging towards ``target_acceptance``; when :math:`C` changes, dual
    averaging carries on with its step sizes rescaled to the new :math:`C`.
    The returned step size is the averaged iterate :math:`\\bar\\varepsilon`,
    as in NUTS. MALA is adapted with the standard noise variance
    :math:`2\\tau`, the factory's default.

    By default (``robust=True``) the warm-up survives chains that start in bad
    regions (module docstring, *the robust warm-up*): each chain tunes its own
    step size until the final window; chains whose log-density is far below
    the others', or that stop accepting, or whose step size collapses, are
    replaced by copies of healthy chains at the end of the initial window and
    of every slow window but the last; :math:`C` is estimated from healthy
    chains only; and the final window runs one shared step size started at the
    healthy chains' median and driven by their mean acceptance. A
    ``RuntimeWarning`` names how many chains are still lost at the end
    (``result.info.is_lost``). ``robust=False`` is the plain scheme: one
    shared step size on the acceptance averaged over all chains from the
    start, every chain in :math:`C`, no resets (lost chains are still
    reported).

    The result plugs straight back into the factory::

        alg = ej.samplers.mala(logdensity_fn, **result.parameters)   # or rwmh

    With ``per_chain=True`` each chain keeps its own step size to the end;
    they come back in ``result.chain_parameters`` (leading ``num_chains``
    axis) while ``result.parameters`` holds the one preconditioner all chains
    share. :func:`ebm_jax.run_chains` builds the preconditioner (and its
    Cholesky factor) once and maps only the step size over chains::

        factory = functools.partial(ej.samplers.mala, logdensity_fn, **result.parameters)
        chains = ej.run_chains(key, factory, result.states.position, num_steps,
                               chain_parameters=result.chain_parameters)

    Per-chain step sizes are noisier than a shared one (each follows one
    chain's acceptance), and dual averaging settles where the acceptance
    *averaged over its fluctuating iterates* hits the target, so the
    averaged per-chain step sizes typically miss the target acceptance by a
    few hundredths (less with more steps); the shared step size, driven by the
    mean over many chains, does not.

    The compiled scan is cached per ``logdensity_fn`` object (and shapes,
    ``num_steps`` and options): calling again with the same function does not
    recompile, while a new closure (say over updated model parameters) does.

    Args:
      rng_key: PRNG key.
      sampler: ``"mala"`` or ``"rwmh"`` (or the factories
        ``ej.samplers.mala`` / ``ej.samplers.rwmh``). ULA has no acceptance
        step and is refused.
      logdensity_fn: ``x -> f(x)``, unnormalised log-density of one sample.
      initial_positions: ``(num_chains, *event_shape)``, or a pytree (e.g. a
        dict of parameters) whose leaves share a leading ``num_chains`` axis;
        finite. The preconditioner acts on the flattened position
        (:func:`jax.flatten_util.ravel_pytree` order), as in BlackJAX.
      num_steps: adaptation steps, ``>= 1``; the windows shrink with it
        (below 20 steps only the step size is adapted, there are no resets,
        and the returned ``inverse_mass_matrix`` is the identity).
      target_acceptance: :math:`\\delta \\in (0, 1)`; default 0.574 for MALA
        (Roberts & Rosenthal 1998), 0.234 for RWMH (Roberts, Gelman & Gilks 1997).
      initial_step_size: :math:`\\varepsilon_0 > 0`; default
        :math:`d^{-1/3}` for MALA and :math:`2.38 / \\sqrt d` for RWMH
        (:math:`d` = event size), the optimal scalings on a standard Gaussian
        up to constants.
      per_chain: one step size per chain instead of one shared by all (in
        ``result.chain_parameters``).
      preconditioner: ``"auto"`` (default: ``"dense"`` up to
        :data:`MAX_AUTO_DENSE_SIZE` = 128 flattened coordinates, ``"diagonal"``
        above), ``"diagonal"`` (a variance per coordinate), ``"dense"`` (full
        covariance) or ``None`` (identity, step size only). MALA's
        efficiency falls with the condition number of the whitened target, so
        on correlated posteriors a dense :math:`C` is worth far more than its
        cost (posteriordb's GARCH(1,1): bulk ESS 36 000 against 7 900 with a
        diagonal one, same steps); above a hundred or so coordinates its
        :math:`O(d^2)` work per chain-step (Welford update, matrix-vector
        products) starts to rival a gradient, which is where ``"auto"``
        switches.
      robust: the many-chain warm-up robust to lost chains (default), or the
        plain one (``False``).

    Returns:
      An :class:`AdaptationResult` ``(states, parameters, info,
      chain_parameters)``.

    Warns:
      RuntimeWarning: when chains are still lost at the end of the warm-up.

    Raises:
      TypeError, ValueError: naming the offending argument.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> scales = jnp.array([1.0, 10.0])
      >>> logdensity_fn = lambda x: -0.5 * jnp.sum((x / scales) ** 2)
      >>> positions = jax.random.normal(jax.random.key(0), (256, 2))
      >>> result = ej.samplers.adapt(jax.random.key(1), "mala", logdensity_fn, positions, 300)
      >>> sorted(result.parameters), result.info.acceptance_rate.shape
      (['inverse_mass_matrix', 'step_size'], (300,))
      >>> alg = ej.samplers.mala(logdensity_fn, **result.parameters)
      >>> states, info = jax.vmap(alg.step)(jax.random.split(jax.random.key(2), 256), result.states)
      >>> bool(jnp.abs(jnp.mean(info.acceptance_rate) - 0.574) < 0.1)
      True

    References:
      Hoffman & Gelman (2014), arXiv:1111.4246; Stan Reference Manual
      (windowed adaptation); Roberts & Rosenthal (1998); Roberts, Gelman &
      Gilks (1997); Del Moral, Doucet & Jasra (2006) (resampling); Hoffman &
      Sountsov (2022) (many-chain adaptation).
    """
    if not isinstance(rng_key, (jax.Array, np.ndarray)):
        raise TypeError(f"rng_key must be a JAX PRNG key, got {type(rng_key).__name__}")
    sampler_name = _sampler_name(sampler)
    check_callable(logdensity_fn, "logdensity_fn")
    num_steps = check_int(num_steps, "num_steps", 1)
    if not isinstance(per_chain, (bool, np.bool_)):
        raise TypeError(f"per_chain must be a bool, got {type(per_chain).__name__}")
    if not isinstance(robust, (bool, np.bool_)):
        raise TypeError(f"robust must be a bool, got {type(robust).__name__}")
    if preconditioner not in _PRECONDITIONERS:
        raise ValueError(
            f"preconditioner must be 'auto', 'diagonal', 'dense' or None, got {preconditioner!r}"
        )
    if target_acceptance is None:
        target_acceptance = DEFAULT_TARGET_ACCEPTANCE[sampler_name]
    check_probability(target_acceptance, "target_acceptance")

    positions = as_floating_tree(initial_positions, "initial_positions")
    if isinstance(positions, jax.Array) and positions.ndim < 2:
        raise ValueError(
            "initial_positions must have shape (num_chains, *event_shape) with rank >= 2, "
            f"got shape {positions.shape}; for scalar events use shape (num_chains, 1)"
        )
    leaves = jax.tree.leaves(positions)
    if any(leaf.ndim < 1 or leaf.shape[0] != leaves[0].shape[0] for leaf in leaves):
        raise ValueError(
            "every leaf of initial_positions needs the same leading num_chains axis, got "
            f"shapes {jax.tree.map(jnp.shape, positions)}"
        )
    num_chains = leaves[0].shape[0]
    if num_chains == 0:
        raise ValueError("initial_positions must hold at least one chain")
    for leaf in leaves:
        check_finite_array(leaf, "initial_positions")
    first = jax.tree.map(lambda leaf: leaf[0], positions)
    check_logdensity(logdensity_fn, first)

    flat_first = ravel_pytree(first)[0]
    size, dtype = flat_first.size, flat_first.dtype
    if preconditioner == "auto":
        preconditioner = "dense" if size <= MAX_AUTO_DENSE_SIZE else "diagonal"
    if initial_step_size is None:
        initial_step_size = size ** (-1 / 3) if sampler_name == "mala" else 2.38 / math.sqrt(size)
    check_positive_scalar(initial_step_size, "initial_step_size")
    if jnp.ndim(initial_step_size) != 0:
        raise ValueError(
            f"initial_step_size must be a scalar, got shape {jnp.shape(initial_step_size)}"
        )

    try:
        hash(logdensity_fn)  # the compiled scan is cached per (hashable) logdensity_fn
    except TypeError:
        unhashable_fn = logdensity_fn
        logdensity_fn = lambda position: unhashable_fn(position)

    states, step_size, precond, info = _run_adaptation(
        rng_key,
        positions,
        jnp.asarray(initial_step_size, dtype),
        jnp.asarray(target_acceptance, dtype),
        sampler_name=sampler_name,
        logdensity_fn=logdensity_fn,
        num_steps=num_steps,
        per_chain=bool(per_chain),
        preconditioner=preconditioner,
        robust=bool(robust),
    )
    num_lost = int(jnp.sum(info.is_lost))
    if num_lost:
        warnings.warn(
            f"adapt: {num_lost} of {num_chains} chains are still lost after {num_steps} "
            "warm-up steps (log-density far below the other chains', acceptance near 0 "
            "over the last window, or a collapsed step size; see result.info.is_lost). "
            "Until they move, draws from them misrepresent the target: warm up longer, "
            "reparameterise (a funnel's neck, for one, needs a non-centred form), or "
            "check the model, and check R-hat of the draws either way.",
            RuntimeWarning,
            stacklevel=2,
        )
    name = "step_size" if sampler_name == "mala" else "scale"
    parameters: dict[str, Array] = {}
    chain_parameters: dict[str, Array] = {}
    (chain_parameters if per_chain else parameters)[name] = step_size
    if precond.matrix is not None:
        parameters["inverse_mass_matrix"] = precond.matrix
    return AdaptationResult(states, parameters, info, chain_parameters)


__all__ = [
    "DEFAULT_TARGET_ACCEPTANCE",
    "MAX_AUTO_DENSE_SIZE",
    "AdaptationInfo",
    "AdaptationResult",
    "AdaptationSchedule",
    "DualAveragingState",
    "adapt",
    "dual_averaging_init",
    "dual_averaging_update",
    "window_schedule",
]

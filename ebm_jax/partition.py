"""Partition functions by annealed importance sampling (AIS), both sides of :math:`\\log Z`.

An EBM :math:`p_\\theta(x) = e^{f_\\theta(x)} / Z(\\theta)` (eq. 11.3) is learned by
minimising a divergence (§11.1): the KL route is maximum likelihood, whose
objective :math:`-\\frac1n\\sum_i f_\\theta(x_i) + \\log Z(\\theta)` (the test NLL
that judges a model) needs the intractable :math:`\\log Z(\\theta)`. Score
matching avoids it during training, but not when models are compared.

AIS (Neal 2001) estimates :math:`Z` by importance sampling along the geometric
path from a normalised, exactly-sampled base :math:`p_0` to the target,

.. math::

   f_\\beta(x) = (1 - \\beta) \\log p_0(x) + \\beta f(x), \\qquad
   0 = \\beta_0 < \\beta_1 < \\dots < \\beta_T = 1,

moving many chains in parallel with Markov kernels that leave each
:math:`e^{f_{\\beta_t}}` invariant (MALA on :math:`\\mathbb{R}^d`, Gibbs on
:math:`\\{0, 1\\}^d`). Forward AIS is unbiased for :math:`Z`, so its
:math:`\\log \\hat Z` is a stochastic *lower* bound; reverse AIS from exact target
samples is unbiased for :math:`1/Z`, so its :math:`\\log \\hat Z` is a stochastic
*upper* bound (Burda, Grosse & Salakhutdinov 2015; Grosse, Ghahramani & Adams
2015). Run both to see how far the estimate can be trusted.

References:
  Neal (2001), *Annealed importance sampling*, Statistics and Computing 11(2);
  Salakhutdinov & Murray (2008), *On the quantitative analysis of deep belief
  networks*, ICML (AIS for RBMs); Burda, Grosse & Salakhutdinov (2015),
  *Accurate and conservative estimates of MRF log-likelihood using reverse
  annealing*, AISTATS, arXiv:1412.8566; Grosse, Ghahramani & Adams (2015),
  *Sandwiching the marginal likelihood using bidirectional Monte Carlo*,
  arXiv:1511.02543.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax import _static
from ebm_jax._validation import (
    as_floating,
    check_callable,
    check_finite_array,
    check_int,
    check_key,
    check_logdensity,
    check_positive_scalar,
    is_concrete,
)
from ebm_jax.samplers.base import SamplingAlgorithm
from ebm_jax.samplers.gibbs import binary_gibbs
from ebm_jax.samplers.langevin import mala
from ebm_jax.types import Array, ArrayLike, ArrayTree, LogDensityFn, PRNGKey

Transition = Callable[[LogDensityFn], SamplingAlgorithm]
"""``tempered_logdensity_fn -> SamplingAlgorithm``: the kernel at one temperature."""

_LOG_2PI = math.log(2.0 * math.pi)

# MALA step-size pilot (see annealed_importance_sampling). 0.65 sits a little above MALA's
# optimum 0.574 (Roberts & Rosenthal 1998), which is derived for long stationary runs; AIS
# makes one or a few moves per temperature, from positions slightly out of equilibrium.
_TARGET_ACCEPTANCE = 0.65
_PILOT_GAIN = 1.0
_PILOT_WARMUP_STEPS = 100
_PILOT_MAX_CHAINS = 64
_PILOT_INITIAL_STEP_SIZE = 0.1
_LOG_STEP_SIZE_BOUNDS = (math.log(1e-8), math.log(1e8))


class Base(NamedTuple):
    """A normalised, exactly-sampled base distribution :math:`p_0` for AIS.

    A position is an array or any pytree of floating arrays. The functions may
    be :class:`jax.tree_util.Partial` objects, as :func:`gaussian_base` and
    :func:`bernoulli_base` build them: their arrays are then data to the
    compiled annealing pass, so a new base of the same shapes does not
    recompile (a plain closure is compared by identity).

    Attributes:
      logdensity_fn: ``x -> log p_0(x)``, the *normalised* log-density of ONE
        position (so :math:`\\log Z_0 = 0`).
      sample: ``rng_key -> x``, one exact sample.
      is_binary: whether positions live in :math:`\\{0, 1\\}^d`; chooses the
        default transition (:func:`~ebm_jax.samplers.binary_gibbs` if True,
        :func:`~ebm_jax.samplers.mala` otherwise).
    """

    logdensity_fn: LogDensityFn
    sample: Callable[[PRNGKey], ArrayTree]
    is_binary: bool


class AISResult(NamedTuple):
    """What :func:`annealed_importance_sampling` and its reverse return.

    Attributes:
      log_partition: :math:`\\log \\hat Z = \\log Z_0 + \\log \\frac1n \\sum_i w_i`
        (forward) or :math:`\\log Z_0 - \\log \\frac1n \\sum_i \\tilde w_i`
        (reverse), with :math:`\\log Z_0 = 0` for a normalised base.
      standard_error: delta-method standard error of ``log_partition``,
        :math:`\\mathrm{sd}(w) / (\\sqrt n\\, \\bar w) = \\sqrt{(n/\\mathrm{ESS} - 1)/(n - 1)}`
        (sample sd with :math:`n - 1`); it understates the error when the
        weights are heavy-tailed, as AIS weights with too few temperatures are.
      ess: effective sample size of the weights,
        :math:`(\\sum_i w_i)^2 / \\sum_i w_i^2 \\in [1, n]` (0 if every weight is 0).
      log_weights: :math:`\\log w_i`, shape ``(num_chains,)``; :math:`-\\infty`
        for a chain that met a non-finite weight increment.
      positions: the chains' final positions, ``(num_chains, *event_shape)``
        (per leaf, for pytree positions): approximate target samples (forward)
        or base samples (reverse).
      acceptance_rate: mean acceptance probability of each chain over all its
        transitions, ``(num_chains,)`` (1 for Gibbs).
      num_nonfinite: per chain, the number of non-finite proposals (or Gibbs
        log-odds) rejected plus non-finite weight increments, ``(num_chains,)``.
    """

    log_partition: Array
    standard_error: Array
    ess: Array
    log_weights: Array
    positions: ArrayTree
    acceptance_rate: Array
    num_nonfinite: Array


def _real_array(value: Any, name: str) -> Array:
    if isinstance(value, (bool, str)) or value is None:
        raise TypeError(f"{name} must be a real array, got {type(value).__name__}")
    try:
        array = jnp.asarray(value)
    except TypeError as exc:
        raise TypeError(f"{name} must be a real array, got {type(value).__name__}") from exc
    if array.dtype == jnp.bool_ or jnp.issubdtype(array.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {array.dtype}")
    array = as_floating(array)
    check_finite_array(array, name)
    return array


def _gaussian_logdensity(
    mean: ArrayTree, scale: ArrayTree, log_normalizer: Array, x: ArrayTree
) -> Array:
    squares = jax.tree.map(lambda m, s, y: jnp.sum(((y - m) / s) ** 2), mean, scale, x)
    return -0.5 * sum(jax.tree.leaves(squares)) - log_normalizer


def _gaussian_sample(mean: ArrayTree, scale: ArrayTree, rng_key: PRNGKey) -> ArrayTree:
    means, treedef = jax.tree.flatten(mean)
    scales = jax.tree.leaves(scale)  # built with mean's structure
    keys = [rng_key] if len(means) == 1 else list(jax.random.split(rng_key, len(means)))
    draws = [
        m + s * jax.random.normal(key, m.shape, m.dtype)
        for m, s, key in zip(means, scales, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, draws)


def _nested_numbers_as_array(value: Any) -> Any:
    """A (nested) list or tuple of Python numbers is one array, as NumPy reads it."""
    if isinstance(value, (list, tuple)) and all(
        isinstance(leaf, (int, float)) and not isinstance(leaf, bool)
        for leaf in jax.tree.leaves(value)
    ):
        return np.asarray(value)
    return value


def _gaussian_leaf(mean: Any, scale: Any) -> tuple[Array, Array]:
    """One leaf of the base: mean and scale checked, broadcast together, in one dtype."""
    mean = _real_array(mean, "mean")
    check_positive_scalar(scale, "scale")
    scale = _real_array(scale, "scale")
    try:
        event_shape = np.broadcast_shapes(mean.shape, scale.shape)
    except ValueError as exc:
        raise ValueError(
            f"scale of shape {scale.shape} does not broadcast with mean of shape {mean.shape}"
        ) from exc
    dtype = jnp.result_type(mean, scale)
    return (
        jnp.broadcast_to(mean, event_shape).astype(dtype),
        jnp.broadcast_to(scale, event_shape).astype(dtype),
    )


def gaussian_base(mean: ArrayLike | ArrayTree, scale: ArrayLike | ArrayTree) -> Base:
    """The Gaussian base :math:`N(\\mu, \\operatorname{diag}(s^2))`.

    .. math::

       \\log p_0(x) = -\\sum_i \\Big(\\frac{(x_i - \\mu_i)^2}{2 s_i^2} + \\log s_i
         + \\tfrac12 \\log 2\\pi\\Big).

    Choose it wider than the target (a few target standard deviations around
    its mean): AIS weights degrade fast where the base misses target mass.
    The mean and scale are data to the compiled annealing pass: a new base of
    the same shapes and dtypes does not recompile.

    Args:
      mean: :math:`\\mu`, an array or a pytree of arrays (e.g.
        ``{"weights": jnp.zeros(3), "bias": jnp.zeros(())}``); its structure
        and shapes, broadcast with ``scale``'s, are those of a position
        (``jnp.zeros(2)`` for 2-D positions). A list of numbers is one array.
      scale: standard deviations :math:`s > 0`: a scalar, or one array per
        leaf of ``mean`` (same structure), each a scalar or one per
        coordinate.

    Returns:
      A :class:`Base` with ``is_binary=False`` (default transition: MALA),
      whose samples and ``logdensity_fn`` positions have ``mean``'s structure.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import partition
      >>> base = partition.gaussian_base(jnp.zeros(2), 3.0)
      >>> base.sample(jax.random.key(0)).shape
      (2,)
      >>> round(float(base.logdensity_fn(jnp.zeros(2))), 4)  # -log(2π · 9)
      -4.0351
      >>> tree_base = partition.gaussian_base({"a": jnp.zeros(2), "b": jnp.zeros(())}, 1.0)
      >>> jax.tree.map(jnp.shape, tree_base.sample(jax.random.key(0)))
      {'a': (2,), 'b': ()}
    """
    mean, scale = _nested_numbers_as_array(mean), _nested_numbers_as_array(scale)
    means, treedef = jax.tree.flatten(mean)
    if not means:
        raise TypeError(f"mean must be an array or a pytree of arrays, got {mean!r}")
    scale_structure = jax.tree.structure(scale)
    if scale_structure == treedef:  # type: ignore[operator]
        scales = jax.tree.leaves(scale)
    elif jax.tree_util.treedef_is_leaf(scale_structure) and jnp.ndim(scale) == 0:
        scales = [scale] * len(means)
    else:
        raise ValueError(
            "scale must be a scalar or a pytree with mean's structure "
            f"{treedef}, got {jax.tree.structure(scale)}"
        )
    leaves = [_gaussian_leaf(m, s) for m, s in zip(means, scales, strict=True)]
    mean = jax.tree.unflatten(treedef, [m for m, _ in leaves])
    scale = jax.tree.unflatten(treedef, [s for _, s in leaves])
    dtype = jnp.result_type(*(m.dtype for m, _ in leaves))
    log_normalizer = jnp.asarray(
        sum(jnp.sum(jnp.log(s)) + 0.5 * m.size * _LOG_2PI for m, s in leaves), dtype
    )
    return Base(
        jax.tree_util.Partial(_gaussian_logdensity, mean, scale, log_normalizer),
        jax.tree_util.Partial(_gaussian_sample, mean, scale),
        False,
    )


def _bernoulli_logdensity(log_on: Array, log_off: Array, x: Array) -> Array:
    return jnp.sum(x * log_on + (1.0 - x) * log_off)


def _bernoulli_sample(probabilities: Array, rng_key: PRNGKey) -> Array:
    draw = jax.random.uniform(rng_key, probabilities.shape, probabilities.dtype)
    return (draw < probabilities).astype(probabilities.dtype)


def bernoulli_base(probabilities: ArrayLike, *, min_probability: float = 1e-3) -> Base:
    """Independent Bernoulli base on :math:`\\{0, 1\\}^d`.

    .. math::

       \\log p_0(x) = \\sum_i \\big(x_i \\log \\pi_i + (1 - x_i) \\log(1 - \\pi_i)\\big).

    The probabilities are clipped to
    :math:`[\\epsilon, 1 - \\epsilon]` (:math:`\\epsilon` = ``min_probability``):
    a base probability of exactly 0 or 1 gives every intermediate distribution
    :math:`\\beta < 1` zero mass where the target may have some, which biases
    AIS. For RBMs, the data's per-pixel means make a good base
    (Salakhutdinov & Murray 2008); the clip covers pixels that are constant
    in the data.

    Args:
      probabilities: :math:`\\pi_i = p(x_i = 1) \\in [0, 1]`; its shape is the
        event shape.
      min_probability: :math:`\\epsilon \\in (0, 1/2)`, the clip.

    Returns:
      A :class:`Base` with ``is_binary=True`` (default transition:
      :func:`~ebm_jax.samplers.binary_gibbs`).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import partition
      >>> base = partition.bernoulli_base(jnp.full(3, 0.5))
      >>> base.sample(jax.random.key(0)).shape
      (3,)
      >>> round(float(base.logdensity_fn(jnp.ones(3))), 4)  # 3 log(1/2)
      -2.0794
    """
    probabilities = _real_array(probabilities, "probabilities")
    if is_concrete(probabilities) and not bool(
        np.all((np.asarray(probabilities) >= 0) & (np.asarray(probabilities) <= 1))
    ):
        raise ValueError("probabilities must lie in [0, 1]")
    if isinstance(min_probability, bool) or not isinstance(min_probability, (int, float)):
        raise TypeError(f"min_probability must be a float, got {type(min_probability).__name__}")
    if not 0.0 < min_probability < 0.5:
        raise ValueError(f"min_probability must be in (0, 0.5), got {min_probability}")
    probabilities = jnp.clip(probabilities, min_probability, 1.0 - min_probability)
    log_on, log_off = jnp.log(probabilities), jnp.log1p(-probabilities)
    return Base(
        jax.tree_util.Partial(_bernoulli_logdensity, log_on, log_off),
        jax.tree_util.Partial(_bernoulli_sample, probabilities),
        True,
    )


def sigmoid_schedule(num_temperatures: int, sharpness: float = 4.0) -> Array:
    """The sigmoidal annealing schedule of Grosse, Ghahramani & Adams (2015).

    .. math::

       \\tilde\\beta_t = \\operatorname{sigmoid}\\big(\\delta (2t/T - 1)\\big), \\qquad
       \\beta_t = \\frac{\\tilde\\beta_t - \\tilde\\beta_0}{\\tilde\\beta_T - \\tilde\\beta_0},
       \\qquad t = 0, \\dots, T,

    with :math:`\\delta` = ``sharpness``. It spends more temperatures near
    both ends, where :math:`f_\\beta` changes fastest relative to its spread,
    than a linear schedule does. Computed in float64, with
    :math:`\\beta_0 = 0` and :math:`\\beta_T = 1` set exactly.

    Args:
      num_temperatures: :math:`T \\ge 1`, the number of annealing steps.
      sharpness: :math:`\\delta > 0`; :math:`\\delta \\to 0` tends to the
        linear schedule.

    Returns:
      Strictly increasing :math:`(\\beta_0, \\dots, \\beta_T)`, shape
      ``(T + 1,)``, in the default float dtype.

    Examples:
      >>> from ebm_jax import partition
      >>> betas = partition.sigmoid_schedule(4)
      >>> [round(float(b), 4) for b in betas]
      [0.0, 0.105, 0.5, 0.895, 1.0]

    References:
      Grosse, Ghahramani & Adams (2015), arXiv:1511.02543, §6.
    """
    num_temperatures = check_int(num_temperatures, "num_temperatures", minimum=1)
    if isinstance(sharpness, bool) or not isinstance(sharpness, (int, float)):
        raise TypeError(f"sharpness must be a float, got {type(sharpness).__name__}")
    if not (math.isfinite(sharpness) and sharpness > 0):
        raise ValueError(f"sharpness must be finite and > 0, got {sharpness}")
    grid = sharpness * (2.0 * np.arange(num_temperatures + 1) / num_temperatures - 1.0)
    raw = 1.0 / (1.0 + np.exp(-grid))
    betas = (raw - raw[0]) / (raw[-1] - raw[0])
    betas[0], betas[-1] = 0.0, 1.0
    return jnp.asarray(betas, dtype=jnp.result_type(float))


# -- the annealing loop -------------------------------------------------------------------


def _num_chains(positions: ArrayTree) -> int:
    return jax.tree.leaves(positions)[0].shape[0]


def _dtype(positions: ArrayTree) -> Any:
    """The floating dtype of the weights and rates: that of the (widest) position leaf."""
    return jnp.result_type(*jax.tree.leaves(positions))


def _tempered(logdensity_fn: LogDensityFn, base: Base, beta: Array) -> LogDensityFn:
    """:math:`f_\\beta = (1 - \\beta) \\log p_0 + \\beta f` (exactly f at β = 1)."""

    def tempered_logdensity_fn(x: ArrayTree) -> Array:
        return (1.0 - beta) * base.logdensity_fn(x) + beta * logdensity_fn(x)

    return tempered_logdensity_fn


def _move_chains(
    rng_key: PRNGKey,
    positions: ArrayTree,
    tempered_logdensity_fn: LogDensityFn,
    step_size: Array,
    transition: Transition | None,
    num_steps: int,
) -> tuple[ArrayTree, Array, Array]:
    """``num_steps`` transitions of every chain at one temperature.

    Returns the new positions, each chain's mean acceptance and its count of
    non-finite proposals.
    """
    if transition is None:
        algorithm = mala(tempered_logdensity_fn, step_size)
    else:
        algorithm = transition(tempered_logdensity_fn)

    def move(key: PRNGKey, position: ArrayTree) -> tuple[ArrayTree, Array, Array]:
        def one_step(carry: tuple, step_key: PRNGKey) -> tuple[tuple, None]:
            state, rate_sum, num_nonfinite = carry
            state, info = algorithm.step(step_key, state)
            # Info fields by name: a kernel without them (BlackJAX's have no is_nonfinite)
            # reports a NaN acceptance and no non-finite proposals.
            acceptance = getattr(info, "acceptance_rate", jnp.nan)
            nonfinite = getattr(info, "is_nonfinite", False)
            rate_sum = rate_sum + jnp.asarray(acceptance).astype(rate_sum.dtype)
            return (state, rate_sum, num_nonfinite + jnp.asarray(nonfinite, jnp.int32)), None

        carry = (algorithm.init(position), jnp.zeros((), _dtype(positions)), jnp.int32(0))
        if num_steps == 1:  # the common case: no inner loop to compile
            (state, rate_sum, num_nonfinite), _ = one_step(carry, key)
        else:
            (state, rate_sum, num_nonfinite), _ = jax.lax.scan(
                one_step, carry, jax.random.split(key, num_steps)
            )
        return state.position, rate_sum / num_steps, num_nonfinite

    return jax.vmap(move)(jax.random.split(rng_key, _num_chains(positions)), positions)


def _anneal(
    rng_key: PRNGKey,
    positions: ArrayTree,
    temperatures: Array,
    step_sizes: Array,
    logdensity_fn: LogDensityFn,
    base: Base,
    transition: Transition | None,
    num_steps: int,
) -> tuple[Array, ArrayTree, Array, Array]:
    """AIS along ``temperatures`` (either direction) from ``positions``.

    Returns log-weights, final positions, mean acceptance and non-finite counts.
    """

    def log_ratio(x: ArrayTree) -> Array:
        return logdensity_fn(x) - base.logdensity_fn(x)

    def anneal_step(carry: tuple, inputs: tuple) -> tuple[tuple, None]:
        positions, log_weights, rate_sums, num_nonfinite = carry
        previous, current, step_size, key = inputs
        # The weight uses the position BEFORE the move at β_t: that is what makes
        # E[w] = Z_T / Z_0 (Neal 2001, §2).
        increments = ((current - previous) * jax.vmap(log_ratio)(positions)).astype(
            log_weights.dtype
        )
        finite = jnp.isfinite(increments)
        log_weights = jnp.where(finite, log_weights + increments, -jnp.inf)
        positions, rates, nonfinite_moves = _move_chains(
            key,
            positions,
            _tempered(logdensity_fn, base, current),
            step_size,
            transition,
            num_steps,
        )
        carry = (
            positions,
            log_weights,
            rate_sums + rates,
            num_nonfinite + nonfinite_moves + ~finite,
        )
        return carry, None

    num_chains, num_annealing_steps = _num_chains(positions), temperatures.shape[0] - 1
    dtype = _dtype(positions)
    carry = (
        positions,
        jnp.zeros(num_chains, dtype),
        jnp.zeros(num_chains, dtype),
        jnp.zeros(num_chains, jnp.int32),
    )
    inputs = (
        temperatures[:-1],
        temperatures[1:],
        step_sizes[1:],
        jax.random.split(rng_key, num_annealing_steps),
    )
    (positions, log_weights, rate_sums, num_nonfinite), _ = jax.lax.scan(anneal_step, carry, inputs)
    return log_weights, positions, rate_sums / num_annealing_steps, num_nonfinite


@functools.partial(jax.jit, static_argnames=("model_static", "num_chains", "num_steps"))
def _pilot_step_sizes(
    rng_key: PRNGKey,
    temperatures: Array,
    model_arrays: list[Array],
    *,
    model_static: _static.Static,
    num_chains: int,
    num_steps: int,
) -> Array:
    """MALA step sizes per temperature, tuned on a separate population of chains.

    Stochastic approximation on :math:`\\log \\tau`: after the moves at
    :math:`\\beta_t`, :math:`\\log \\tau \\mathrel{+}= \\gamma(\\bar a_t - 0.65)` with
    :math:`\\bar a_t` the population mean acceptance, and the updated
    :math:`\\tau` is recorded for :math:`\\beta_t`. A warm-up at :math:`\\beta_0`
    (where the chains start exactly at equilibrium) first brings :math:`\\tau`
    to the base's scale.
    """
    logdensity_fn, base = _static.merge(model_arrays, model_static)
    sample_key, anneal_key = jax.random.split(rng_key)
    positions = jax.vmap(base.sample)(jax.random.split(sample_key, num_chains))
    dtype = _dtype(positions)

    def adapt(carry: tuple, inputs: tuple) -> tuple[tuple, Array]:
        positions, log_step_size = carry
        beta, key = inputs
        positions, rates, _ = _move_chains(
            key,
            positions,
            _tempered(logdensity_fn, base, beta),
            jnp.exp(log_step_size),
            None,
            num_steps,
        )
        log_step_size = jnp.clip(
            log_step_size + _PILOT_GAIN * (jnp.mean(rates) - _TARGET_ACCEPTANCE),
            *_LOG_STEP_SIZE_BOUNDS,
        )
        return (positions, log_step_size), jnp.exp(log_step_size)

    # One scan for warm-up and annealing: a second scan would compile the kernel twice.
    betas = jnp.concatenate([jnp.full(_PILOT_WARMUP_STEPS, temperatures[0]), temperatures])
    keys = jax.random.split(anneal_key, betas.shape[0])
    carry = (positions, jnp.asarray(math.log(_PILOT_INITIAL_STEP_SIZE), dtype))
    _, step_sizes = jax.lax.scan(adapt, carry, (betas, keys))
    return step_sizes[_PILOT_WARMUP_STEPS:]


def _summarise(log_weights: Array) -> tuple[Array, Array, Array]:
    """:math:`\\log \\frac1n \\sum w`, its delta-method SE and the ESS, stably in log space.

    With normalised weights :math:`r_i = w_i / \\sum_j w_j`,
    :math:`\\mathrm{ESS} = 1 / \\sum r_i^2` and
    :math:`\\mathrm{sd}(w)^2 / (n \\bar w^2) = (n \\sum r_i^2 - 1) / (n - 1)`.
    """
    num_chains = log_weights.shape[0]
    largest = jnp.max(log_weights)
    shift = jnp.where(jnp.isfinite(largest), largest, 0.0)
    scaled = jnp.exp(log_weights - shift)  # in [0, 1], the largest is 1
    total, total_squares = jnp.sum(scaled), jnp.sum(scaled**2)
    any_mass = total > 0
    log_mean = jnp.log(total) - math.log(num_chains) + shift
    ess = jnp.where(any_mass, total**2 / jnp.where(any_mass, total_squares, 1.0), 0.0)
    relative_variance = jnp.maximum(num_chains * total_squares / total**2 - 1.0, 0.0)
    standard_error = jnp.where(any_mass, jnp.sqrt(relative_variance / (num_chains - 1)), jnp.inf)
    return log_mean, standard_error, ess


@functools.partial(jax.jit, static_argnames=("model_static", "num_chains"))
def _sample_base(
    rng_key: PRNGKey,
    model_arrays: list[Array],
    *,
    model_static: _static.Static,
    num_chains: int,
) -> ArrayTree:
    _, base = _static.merge(model_arrays, model_static)
    return jax.vmap(base.sample)(jax.random.split(rng_key, num_chains))


@functools.partial(jax.jit, static_argnames=("model_static", "transition", "num_steps"))
def _run(
    rng_key: PRNGKey,
    initial_positions: ArrayTree,
    temperatures: Array,
    step_sizes: Array,
    direction: Array,
    model_arrays: list[Array],
    *,
    model_static: _static.Static,
    transition: Transition | None,
    num_steps: int,
) -> AISResult:
    """The annealing pass as one compiled program, shared by both directions.

    The schedule, the step sizes, ``direction`` (+1 forward, -1 reverse) and
    the arrays of ``(logdensity_fn, base)`` (``model_arrays``, split from the
    functions in ``model_static`` by :func:`ebm_jax._static.split`) are data,
    so neither a new step-size schedule, nor reversing, nor a new base of the
    same shapes recompiles.
    """
    logdensity_fn, base = _static.merge(model_arrays, model_static)
    log_weights, positions, acceptance_rate, num_nonfinite = _anneal(
        rng_key,
        initial_positions,
        temperatures,
        step_sizes,
        logdensity_fn,
        base,
        transition,
        num_steps,
    )
    log_mean, standard_error, ess = _summarise(log_weights)
    # The base is normalised (log Z_0 = 0); reverse weights estimate Z_0 / Z.
    return AISResult(
        direction * log_mean,
        standard_error,
        ess,
        log_weights,
        positions,
        acceptance_rate,
        num_nonfinite,
    )


# -- validation and the public estimators ------------------------------------------------


class _Settings(NamedTuple):
    temperatures: Array
    step_sizes: Array
    transition: Transition | None
    num_steps: int
    tune: bool
    event: Any  # a ShapeDtypeStruct, or a pytree of them
    dtype: Any  # of the temperatures, weights and step sizes


def _check_temperatures(temperatures: Any, dtype: Any) -> Array:
    # Checked after the cast: two entries that round to one value would make a zero step.
    temperatures = _real_array(temperatures, "temperatures").astype(dtype)
    if temperatures.ndim != 1 or temperatures.shape[0] < 2:
        raise ValueError(
            f"temperatures must be 1-D with at least 2 entries, got shape {temperatures.shape}"
        )
    if is_concrete(temperatures):
        values = np.asarray(temperatures, dtype=np.float64)
        if values[0] != 0.0 or values[-1] != 1.0:
            raise ValueError(
                f"temperatures must start at 0 and end at 1, got {values[0]} ... {values[-1]}"
            )
        if not np.all(np.diff(values) > 0):
            raise ValueError(f"temperatures must be strictly increasing (in {np.dtype(dtype)})")
    return temperatures


def _check_settings(
    rng_key: Any,
    logdensity_fn: Any,
    base: Any,
    num_temperatures: Any,
    temperatures: Any,
    transition: Any,
    step_size: Any,
    num_steps_per_temperature: Any,
) -> _Settings:
    check_key(rng_key)
    check_callable(logdensity_fn, "logdensity_fn")
    if not isinstance(base, Base):
        raise TypeError(
            "base must be a partition.Base (e.g. gaussian_base(...) or bernoulli_base(...)), "
            f"got {type(base).__name__}"
        )
    check_callable(base.logdensity_fn, "base.logdensity_fn")
    check_callable(base.sample, "base.sample")
    try:
        event = jax.eval_shape(base.sample, rng_key)
    except Exception as exc:  # re-raised with the argument named
        raise ValueError(f"base.sample failed on rng_key: {exc}") from exc
    leaves = jax.tree.leaves(event)
    if not leaves or not all(
        isinstance(leaf, jax.ShapeDtypeStruct) and jnp.issubdtype(leaf.dtype, jnp.floating)
        for leaf in leaves
    ):
        raise TypeError(
            f"base.sample must return a floating-point array or a pytree of them, got {event}"
        )
    dtype = _dtype(event)
    check_logdensity(base.logdensity_fn, event, "base.logdensity_fn")
    check_logdensity(logdensity_fn, event)
    num_steps = check_int(num_steps_per_temperature, "num_steps_per_temperature", minimum=1)

    if temperatures is None:
        num_temperatures = check_int(num_temperatures, "num_temperatures", minimum=1)
        temperatures = sigmoid_schedule(num_temperatures).astype(dtype)
    else:
        temperatures = _check_temperatures(temperatures, dtype)

    if transition is not None:
        check_callable(transition, "transition")
    elif base.is_binary:
        transition = binary_gibbs
    if step_size is not None and transition is not None:
        raise ValueError(
            "step_size applies only to the default MALA transition (non-binary base, "
            "transition=None); set the step size inside your transition instead"
        )
    tune = transition is None and step_size is None
    if step_size is None:
        step_sizes = jnp.ones(temperatures.shape, dtype)  # unused placeholder
    else:
        check_positive_scalar(step_size, "step_size")
        step_sizes = _real_array(step_size, "step_size").astype(dtype)
        if step_sizes.shape not in ((), temperatures.shape):
            raise ValueError(
                "step_size must be a scalar or one per temperature, shape "
                f"{temperatures.shape}, got {step_sizes.shape}"
            )
        step_sizes = jnp.broadcast_to(step_sizes, temperatures.shape)
    return _Settings(temperatures, step_sizes, transition, num_steps, tune, event, dtype)


def _check_initial_positions(initial_positions: Any, event: Any, is_binary: bool) -> ArrayTree:
    """Real arrays of shape ``(num_chains, *event_shape)`` per leaf, in the base's dtypes."""
    events, treedef = jax.tree.flatten(event)
    if jax.tree_util.treedef_is_leaf(treedef):  # one array: also accept nested lists
        leaves = [initial_positions]
    elif jax.tree.structure(initial_positions) == treedef:  # type: ignore[operator]
        leaves = jax.tree.leaves(initial_positions)
    else:
        raise ValueError(
            f"initial_positions must have the structure of the base's samples {treedef}, "
            f"got {jax.tree.structure(initial_positions)}"
        )
    checked: list[Array] = []
    for leaf, leaf_event in zip(leaves, events, strict=True):
        leaf = _real_array(leaf, "initial_positions")
        if leaf.ndim != leaf_event.ndim + 1 or leaf.shape[1:] != leaf_event.shape:
            raise ValueError(
                f"initial_positions must have shape (num_chains, *{leaf_event.shape}) like the "
                f"base's samples, got {leaf.shape}"
            )
        if checked and leaf.shape[0] != checked[0].shape[0]:
            raise ValueError(
                "initial_positions must share one leading num_chains axis, got shapes "
                f"{[np.shape(other) for other in [*checked, leaf]]}"
            )
        if (
            is_binary
            and is_concrete(leaf)
            and not bool(np.all(np.isin(np.asarray(leaf), (0.0, 1.0))))
        ):
            raise ValueError("initial_positions must contain only 0 and 1 for a binary base")
        checked.append(leaf.astype(leaf_event.dtype))
    return jax.tree.unflatten(treedef, checked)


def _estimate(
    rng_key: PRNGKey,
    logdensity_fn: LogDensityFn,
    base: Base,
    initial_positions: ArrayTree | None,
    num_chains: int,
    settings: _Settings,
) -> AISResult:
    """Pilot (when tuning, always forward from the base), then the annealing pass.

    Forward from fresh base samples when ``initial_positions`` is None, else reverse.
    """
    # Arrays (a base's mean and scale, a Partial's parameters) are traced, functions static.
    model_arrays, model_static = _static.split((logdensity_fn, base))
    pilot_key, sample_key, run_key = jax.random.split(rng_key, 3)
    temperatures, step_sizes = settings.temperatures, settings.step_sizes
    if settings.tune:
        step_sizes = _pilot_step_sizes(
            pilot_key,
            temperatures,
            model_arrays,
            model_static=model_static,
            num_chains=min(num_chains, _PILOT_MAX_CHAINS),
            num_steps=settings.num_steps,
        )
    if initial_positions is None:
        initial_positions = _sample_base(
            sample_key, model_arrays, model_static=model_static, num_chains=num_chains
        )
        direction = 1.0
    else:
        temperatures, step_sizes, direction = temperatures[::-1], step_sizes[::-1], -1.0
    return _run(
        run_key,
        initial_positions,
        temperatures,
        step_sizes,
        jnp.asarray(direction, temperatures.dtype),
        model_arrays,
        model_static=model_static,
        transition=settings.transition,
        num_steps=settings.num_steps,
    )


def annealed_importance_sampling(
    rng_key: PRNGKey,
    logdensity_fn: LogDensityFn,
    base: Base,
    *,
    num_chains: int = 256,
    num_temperatures: int = 1000,
    temperatures: ArrayLike | None = None,
    transition: Transition | None = None,
    step_size: ArrayLike | None = None,
    num_steps_per_temperature: int = 1,
) -> AISResult:
    """Estimate :math:`\\log Z = \\log \\int e^{f}` by annealed importance sampling.

    Draws :math:`x_0 \\sim p_0` (the normalised ``base``) for each of
    ``num_chains`` chains and, along the geometric path
    :math:`f_\\beta = (1 - \\beta)\\log p_0 + \\beta f`, for :math:`t = 1, \\dots, T`

    .. math::

       \\log w \\mathrel{+}= (\\beta_t - \\beta_{t-1})\\big(f(x_{t-1}) - \\log p_0(x_{t-1})\\big),
       \\qquad x_t \\sim K_{\\beta_t}(x_{t-1}, \\cdot),

    where :math:`K_\\beta` leaves :math:`e^{f_\\beta}` invariant. Then
    :math:`E[w] = Z / Z_0 = Z` (Neal 2001) and

    .. math::

       \\log \\hat Z = \\log \\frac1n \\sum_{i=1}^n w_i, \\qquad
       E[\\log \\hat Z] \\le \\log Z, \\qquad
       P(\\log \\hat Z > \\log Z + a) \\le e^{-a}:

    unbiased for :math:`Z`, a stochastic *lower* bound on :math:`\\log Z`
    (Jensen; Markov). :func:`reverse_annealed_importance_sampling` gives the
    matching upper bound. Chains run in parallel (``vmap``) and temperatures
    in one ``lax.scan``, so memory is :math:`O(\\text{num\\_chains})` whatever
    :math:`T`. The annealing pass is one compiled program (the pilot below
    another), cached across calls with the same functions, shapes and
    transition. The arrays inside ``base`` and ``logdensity_fn`` are data:
    a new key, step-size schedule, or base of the same shapes (e.g.
    :func:`gaussian_base` with another mean and scale) does not recompile, nor
    does a new :class:`jax.tree_util.Partial` ``logdensity_fn`` over new
    parameters; a plain function or closure is compared by identity (build it
    once and reuse it). The reverse pass shares the forward pass's program.

    Transitions. ``transition`` builds the kernel from the tempered
    log-density at each temperature; by default
    :func:`~ebm_jax.samplers.binary_gibbs` for a binary base, else
    :func:`~ebm_jax.samplers.mala`. The kernel state is re-initialised from
    the position at each temperature (one extra ``value_and_grad`` for MALA).

    MALA step size. Adapting the step size on the chains that carry the
    weights would make each kernel depend on those chains' history, and AIS
    is unbiased only for kernels fixed in advance. So with ``step_size=None``
    a *pilot* population of :math:`\\min(n, 64)` chains, on an independent
    key, runs the same annealing first and tunes :math:`\\log\\tau` per
    temperature by stochastic approximation towards a mean acceptance of 0.65;
    the main pass then uses that fixed schedule of step sizes with a fresh key.
    A given ``step_size`` skips the pilot.

    Non-finite values. A NaN/inf proposal is rejected by the kernel; a
    NaN/inf weight increment (e.g. :math:`f = -\\infty` at a base sample) sets
    that chain's log-weight to :math:`-\\infty` (weight 0). Both are counted in
    ``num_nonfinite``; :math:`\\log \\hat Z` is NaN-free.

    Args:
      rng_key: a JAX PRNG key.
      logdensity_fn: ``x -> f(x)``, the unnormalised log-density of ONE
        position, shaped like the base's samples (an array or a pytree).
      base: the normalised starting distribution, e.g. :func:`gaussian_base`
        or :func:`bernoulli_base`.
      num_chains: :math:`n \\ge 2` parallel chains.
      num_temperatures: :math:`T`, the number of annealing steps, for the
        default :func:`sigmoid_schedule`; ignored when ``temperatures`` is given.
      temperatures: :math:`(\\beta_0, \\dots, \\beta_T)`, strictly increasing
        from exactly 0 to exactly 1.
      transition: ``tempered_logdensity_fn -> kernel``, any object with
        ``init(position)`` / ``step(rng_key, state)``, e.g.
        ``lambda f: ej.samplers.rwmh(f, 0.5)`` or ``lambda f: blackjax.mala(f,
        0.1)`` (info fields read by name: no ``acceptance_rate`` gives a NaN
        acceptance, no ``is_nonfinite`` counts none); ``None`` for the default.
      step_size: MALA step :math:`\\tau` (default transition only): a scalar,
        or one per temperature, aligned with ``temperatures`` (the entry for
        :math:`\\beta_0` is used only by the reverse pass); ``None`` tunes it.
      num_steps_per_temperature: transitions at each temperature.

    Returns:
      An :class:`AISResult`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import partition
      >>> logdensity_fn = lambda x: -0.5 * jnp.sum((x - 1.0) ** 2 / 0.25)  # Z = 2π/4
      >>> result = partition.annealed_importance_sampling(
      ...     jax.random.key(0), logdensity_fn, partition.gaussian_base(jnp.zeros(2), 2.0),
      ...     num_chains=64, num_temperatures=100)
      >>> bool(abs(result.log_partition - jnp.log(2 * jnp.pi / 4)) < 0.1)
      True

    References:
      Neal (2001), *Annealed importance sampling*, Stat. Comput. 11(2);
      Salakhutdinov & Murray (2008), ICML; Grosse, Ghahramani & Adams (2015),
      arXiv:1511.02543.
    """
    settings = _check_settings(
        rng_key,
        logdensity_fn,
        base,
        num_temperatures,
        temperatures,
        transition,
        step_size,
        num_steps_per_temperature,
    )
    num_chains = check_int(num_chains, "num_chains", minimum=2)
    return _estimate(rng_key, logdensity_fn, base, None, num_chains, settings)


def reverse_annealed_importance_sampling(
    rng_key: PRNGKey,
    logdensity_fn: LogDensityFn,
    base: Base,
    initial_positions: ArrayLike | ArrayTree,
    *,
    num_temperatures: int = 1000,
    temperatures: ArrayLike | None = None,
    transition: Transition | None = None,
    step_size: ArrayLike | None = None,
    num_steps_per_temperature: int = 1,
) -> AISResult:
    """Reverse AIS: anneal from target samples to the base, for an upper bound on :math:`\\log Z`.

    Runs the AIS recursion of :func:`annealed_importance_sampling` along the
    reversed path :math:`\\beta_T = 1 \\to \\beta_0 = 0`, starting from
    ``initial_positions`` :math:`y_0 \\sim p = e^f / Z`:

    .. math::

       \\log \\tilde w \\mathrel{+}= (\\beta_{t-1} - \\beta_t)
         \\big(f(y) - \\log p_0(y)\\big), \\qquad t = T, \\dots, 1,

    each followed by a move at :math:`\\beta_{t-1}`. With exact target samples
    :math:`E[\\tilde w] = Z_0 / Z = 1/Z`, and

    .. math::

       \\log \\hat Z = -\\log \\frac1n \\sum_i \\tilde w_i, \\qquad
       E[\\log \\hat Z] \\ge \\log Z,

    a stochastic *upper* bound (Burda, Grosse & Salakhutdinov 2015, "RAISE";
    Grosse, Ghahramani & Adams 2015, bidirectional Monte Carlo). With the
    forward estimate, a lower bound, it sandwiches :math:`\\log Z`; the gap
    measures how far either can be trusted. From approximate samples (long
    MCMC chains) the bound holds only as far as they are exact.

    The pilot that tunes the MALA step sizes (``step_size=None``) runs
    *forward* from fresh base samples on an independent key, so the kernels
    do not depend on ``initial_positions``; ``standard_error`` and ``ess``
    refer to the reverse weights :math:`\\tilde w`.

    Args:
      rng_key: a JAX PRNG key.
      logdensity_fn: ``x -> f(x)``, as for :func:`annealed_importance_sampling`.
      base: the normalised base distribution the path ends at.
      initial_positions: exact target samples, ``(num_chains, *event_shape)``
        with ``num_chains >= 2`` (per leaf, with the structure of the base's
        samples, for pytree positions; binary 0/1 for a binary base).
      num_temperatures: :math:`T` for the default :func:`sigmoid_schedule`.
      temperatures: the forward schedule :math:`(0 = \\beta_0, \\dots, \\beta_T = 1)`;
        it is traversed backwards.
      transition: as for :func:`annealed_importance_sampling`.
      step_size: as for :func:`annealed_importance_sampling`.
      num_steps_per_temperature: transitions at each temperature.

    Returns:
      An :class:`AISResult`; ``positions`` are approximate base samples.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import partition
      >>> logdensity_fn = lambda x: -0.5 * jnp.sum((x - 1.0) ** 2 / 0.25)  # Z = 2π/4
      >>> exact = 1.0 + 0.5 * jax.random.normal(jax.random.key(1), (64, 2))
      >>> result = partition.reverse_annealed_importance_sampling(
      ...     jax.random.key(0), logdensity_fn, partition.gaussian_base(jnp.zeros(2), 2.0),
      ...     exact, num_temperatures=100, step_size=0.5)
      >>> error = result.log_partition - jnp.log(2 * jnp.pi / 4)
      >>> bool(abs(error) < 4 * result.standard_error)
      True

    References:
      Burda, Grosse & Salakhutdinov (2015), AISTATS, arXiv:1412.8566;
      Grosse, Ghahramani & Adams (2015), arXiv:1511.02543.
    """
    settings = _check_settings(
        rng_key,
        logdensity_fn,
        base,
        num_temperatures,
        temperatures,
        transition,
        step_size,
        num_steps_per_temperature,
    )
    initial_positions = _check_initial_positions(initial_positions, settings.event, base.is_binary)
    num_chains = check_int(_num_chains(initial_positions), "num_chains (initial_positions)", 2)
    return _estimate(rng_key, logdensity_fn, base, initial_positions, num_chains, settings)


__all__ = [
    "AISResult",
    "Base",
    "Transition",
    "annealed_importance_sampling",
    "bernoulli_base",
    "gaussian_base",
    "reverse_annealed_importance_sampling",
    "sigmoid_schedule",
]

"""Gibbs samplers: update one coordinate (or one colour class) at a time, §11.1.

A Gibbs update draws :math:`x_i \\sim p(x_i \\mid x_{-i})`, which leaves
:math:`p` invariant; a *sweep* updates every coordinate once. Three kernels:

* :func:`gaussian_gibbs`: exact conditionals of :math:`N(\\mu, Q^{-1})`,
  systematic scan (coordinates :math:`1, \\dots, d` in order).
* :func:`ising_gibbs`: exact conditionals of the 2-D Ising model on a torus,
  checkerboard scan (all black sites in parallel, then all white sites).
* :func:`metropolis_within_gibbs`: any ``logdensity_fn``; each conditional is
  sampled approximately by one 1-D random-walk Metropolis-Hastings step
  (the shared :func:`~ebm_jax.samplers.proposal.mh_accept`), systematic scan.
* :func:`binary_gibbs`: any ``logdensity_fn`` on binary vectors
  :math:`\\{0, 1\\}^d`; each conditional is an exact Bernoulli, systematic scan.

A systematic scan is not reversible, but each of its updates leaves :math:`p`
invariant, so the sweep does too.

References:
  Geman & Geman (1984), *Stochastic relaxation, Gibbs distributions, and the
  Bayesian restoration of images*, IEEE TPAMI 6(6); Tierney (1994), *Markov
  chains for exploring posterior distributions*, Ann. Statist. 22(4).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ebm_jax._validation import (
    as_floating,
    as_floating_tree,
    as_parameter,
    check_callable,
    check_finite_array,
    check_inverse_mass_matrix,
    check_key,
    check_logdensity,
    check_positive_scalar,
    is_concrete,
)
from ebm_jax.samplers.base import SamplingAlgorithm
from ebm_jax.samplers.proposal import MHInfo, is_finite_tree, mh_accept
from ebm_jax.types import Array, ArrayLike, LogDensityFn, PRNGKey


class GibbsState(NamedTuple):
    """One exact-Gibbs chain: its position (exact conditionals need nothing cached)."""

    position: Array


class MetropolisWithinGibbsState(NamedTuple):
    """One Metropolis-within-Gibbs chain: position (any pytree) and cached log-density."""

    position: Any
    logdensity: Array


class BinaryGibbsState(NamedTuple):
    """One binary Gibbs chain: position in :math:`\\{0, 1\\}^d` and cached log-density.

    Caching :math:`f(x)` means each site costs one evaluation, at the flipped
    configuration, instead of two.
    """

    position: Array
    logdensity: Array


GibbsInfo = MHInfo
"""The info of every Gibbs kernel; the exact ones report ``acceptance_rate`` 1."""


def _check_real_scalar(value: Any, name: str) -> Array:
    """A finite real scalar (value checks skipped for tracers)."""
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.ndarray, jax.Array, np.number)
    ):
        raise TypeError(f"{name} must be a real scalar, got {type(value).__name__}")
    array = jnp.asarray(value)
    if not (jnp.issubdtype(array.dtype, jnp.floating) or jnp.issubdtype(array.dtype, jnp.integer)):
        raise TypeError(f"{name} must be a real scalar, got dtype {array.dtype}")
    if array.shape != ():
        raise ValueError(f"{name} must be a real scalar, got shape {array.shape}")
    check_finite_array(array, name)
    return array


def _exact_info(dtype: Any) -> MHInfo:
    return MHInfo(jnp.ones((), dtype), jnp.array(True), jnp.array(False))


def gaussian_gibbs(mean: ArrayLike, precision: ArrayLike) -> SamplingAlgorithm:
    """Exact systematic-scan Gibbs sampler for :math:`N(\\mu, Q^{-1})`.

    For :math:`i = 1, \\dots, d` in order, draws the exact conditional

    .. math::

       x_i \\mid x_{-i} \\sim N\\Big(\\mu_i - \\frac{1}{Q_{ii}}
       \\sum_{j \\ne i} Q_{ij}(x_j - \\mu_j),\\; \\frac{1}{Q_{ii}}\\Big),

    computed as :math:`x_i - (Q(x - \\mu))_i / Q_{ii}` (the :math:`j = i` term
    cancels), so a sweep costs :math:`O(d^2)` and no matrix is inverted.
    Convergence slows as the correlations grow: on a bivariate Gaussian with
    correlation :math:`\\rho`, the chain of :math:`x_2` is AR(1) with
    coefficient :math:`\\rho^2`.

    Args:
      mean: :math:`\\mu`, shape ``(d,)``.
      precision: :math:`Q = \\Sigma^{-1}`, symmetric positive-definite ``(d, d)``
        (e.g. ``target.parameters["precision"]`` of a Gaussian target).

    Returns:
      A :class:`SamplingAlgorithm` with :class:`GibbsState` states; infos are
      :class:`MHInfo` with ``acceptance_rate`` 1.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> alg = ej.samplers.gaussian_gibbs(jnp.zeros(2), jnp.array([[2.0, 1.0], [1.0, 2.0]]))
      >>> state, info = alg.step(jax.random.key(0), alg.init(jnp.zeros(2)))
      >>> state.position.shape, float(info.acceptance_rate)
      ((2,), 1.0)

    References:
      Geman & Geman (1984); Roberts & Sahu (1997), *Updating schemes,
      correlation structure, blocking and parameterization for the Gibbs
      sampler*, JRSS B 59(2).
    """
    mean = jnp.asarray(mean)
    if mean.ndim != 1:
        raise ValueError(f"mean must be 1-D, got shape {mean.shape}")
    check_finite_array(mean, "mean")
    precision = jnp.asarray(precision)
    if precision.shape != (mean.size, mean.size):
        raise ValueError(
            f"precision must have shape {(mean.size, mean.size)} to match mean, "
            f"got {precision.shape}"
        )
    check_inverse_mass_matrix(precision, "precision")
    dtype = jnp.result_type(mean, precision)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    mean, precision = mean.astype(dtype), precision.astype(dtype)
    # Partials are pytrees: the numbers are leaves (data to jit), the functions structure.
    return SamplingAlgorithm(
        jax.tree_util.Partial(_gaussian_gibbs_init, mean=mean),
        jax.tree_util.Partial(_gaussian_gibbs_step, mean=mean, precision=precision),
    )


def _gaussian_gibbs_init(position: ArrayLike, *, mean: Array) -> GibbsState:
    position = as_floating(position)
    if position.shape != mean.shape:
        raise ValueError(f"position must have shape {mean.shape} like mean, got {position.shape}")
    check_finite_array(position, "position")
    return GibbsState(position.astype(mean.dtype))


def _gaussian_gibbs_step(
    rng_key: PRNGKey, state: GibbsState, *, mean: Array, precision: Array
) -> tuple[GibbsState, MHInfo]:
    check_key(rng_key)
    dtype, dim = mean.dtype, mean.size
    diagonal = jnp.diag(precision)
    conditional_std = 1.0 / jnp.sqrt(diagonal)
    noise = jax.random.normal(rng_key, (dim,), dtype)

    def update_coordinate(i: Array, x: Array) -> Array:
        conditional_mean = x[i] - precision[i] @ (x - mean) / diagonal[i]
        return x.at[i].set(conditional_mean + conditional_std[i] * noise[i])

    position = jax.lax.fori_loop(0, dim, update_coordinate, state.position)
    return GibbsState(position), _exact_info(dtype)


def ising_gibbs(coupling: ArrayLike, field: ArrayLike = 0.0) -> SamplingAlgorithm:
    """Exact checkerboard Gibbs sampler for the 2-D Ising model on a torus.

    For :math:`f(s) = J\\sum_{\\langle ij\\rangle} s_i s_j + h\\sum_i s_i`
    (:func:`ebm_jax.densities.ising`), the conditional of one spin given the
    rest depends only on the sum :math:`n_i` of its four neighbours:

    .. math:: p(s_i = +1 \\mid s_{-i}) = \\operatorname{sigmoid}\\big(2(J n_i + h)\\big).

    Sites of one colour of the checkerboard (:math:`(r + c)` even, then odd)
    have no neighbours of the same colour, so each colour is updated in
    parallel from its exact conditionals; a step is the two colour sweeps.
    Neighbours come from :func:`jax.numpy.roll` (periodic boundaries). Both
    sides must be even, else the torus is not two-colourable and the parallel
    update would be wrong.

    Args:
      coupling: :math:`J`, a finite scalar (inverse temperature absorbed).
      field: :math:`h`, a finite scalar.

    Returns:
      A :class:`SamplingAlgorithm`; ``init`` takes a :math:`\\pm 1` float array
      of shape ``(L, M)`` with :math:`L, M` even; infos are :class:`MHInfo`
      with ``acceptance_rate`` 1.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> alg = ej.samplers.ising_gibbs(coupling=0.44)
      >>> state, info = alg.step(jax.random.key(0), alg.init(jnp.ones((4, 4))))
      >>> bool(jnp.all(jnp.abs(state.position) == 1))
      True

    References:
      Geman & Geman (1984); Glauber (1963), *Time-dependent statistics of the
      Ising model*, J. Math. Phys. 4(2).
    """
    coupling = _check_real_scalar(coupling, "coupling")
    field = _check_real_scalar(field, "field")
    return SamplingAlgorithm(
        jax.tree_util.Partial(_ising_init),
        jax.tree_util.Partial(_ising_step, coupling=coupling, field=field),
    )


def _ising_init(position: ArrayLike) -> GibbsState:
    position = as_floating(position)
    if position.ndim != 2 or any(side < 2 or side % 2 for side in position.shape):
        raise ValueError(
            "position must be a 2-D spin array with even sides >= 2 (checkerboard "
            f"updates need a two-colourable torus), got shape {position.shape}"
        )
    if is_concrete(position) and not bool(jnp.all(jnp.abs(position) == 1)):
        raise ValueError("position must contain only spins -1 and +1")
    return GibbsState(position)


def _ising_step(
    rng_key: PRNGKey, state: GibbsState, *, coupling: Array, field: Array
) -> tuple[GibbsState, MHInfo]:
    check_key(rng_key)
    spins = state.position
    coupling, field = coupling.astype(spins.dtype), field.astype(spins.dtype)
    rows, cols = jnp.indices(spins.shape)
    colour = (rows + cols) % 2
    # One flat draw for both colours (XLA:CPU compiles it faster than a 3-D one).
    uniforms = jax.random.uniform(rng_key, (2 * spins.size,), spins.dtype)
    uniforms = uniforms.reshape(2, *spins.shape)
    for parity in (0, 1):
        neighbours = (
            jnp.roll(spins, 1, axis=0)
            + jnp.roll(spins, -1, axis=0)
            + jnp.roll(spins, 1, axis=1)
            + jnp.roll(spins, -1, axis=1)
        )
        prob_up = jax.nn.sigmoid(2.0 * (coupling * neighbours + field))
        proposal = jnp.where(uniforms[parity] < prob_up, 1.0, -1.0).astype(spins.dtype)
        spins = jnp.where(colour == parity, proposal, spins)
    return GibbsState(spins), _exact_info(spins.dtype)


def metropolis_within_gibbs(logdensity_fn: LogDensityFn, scale: ArrayLike) -> SamplingAlgorithm:
    """Metropolis-within-Gibbs: a systematic sweep of 1-D random-walk MH updates.

    For each coordinate :math:`i` of the flattened position in order, proposes
    :math:`y = x + s_i \\varepsilon\\, e_i` with :math:`\\varepsilon \\sim N(0, 1)`
    and accepts with

    .. math:: A(x, y) = \\min\\big(1, e^{f(y) - f(x)}\\big)

    (§11.2.1; the proposal is symmetric). Each update leaves
    :math:`p(x_i \\mid x_{-i})`, hence :math:`p`, invariant. A sweep costs
    :math:`d` evaluations of ``logdensity_fn``. A proposal with NaN/inf
    log-density is rejected and flagged.

    Args:
      logdensity_fn: ``x -> f(x)``, unnormalised log-density of one sample.
      scale: proposal standard deviations :math:`s_i > 0`: a scalar, an array
        broadcastable to the position's shape (one per coordinate) or, for a
        pytree position, a pytree like it. It is data: a new value does not
        recompile :func:`ebm_jax.run_chains`.

    Returns:
      A :class:`SamplingAlgorithm` with :class:`MetropolisWithinGibbsState`
      states. Its :class:`MHInfo` summarises the sweep: ``acceptance_rate`` is
      the mean of the :math:`d` acceptance probabilities, ``is_accepted``
      whether any coordinate moved, ``is_nonfinite`` whether any proposal was
      NaN/inf.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> alg = ej.samplers.metropolis_within_gibbs(lambda x: -0.5 * jnp.sum(x**2), 1.0)
      >>> state, info = alg.step(jax.random.key(0), alg.init(jnp.zeros(3)))
      >>> 0.0 <= float(info.acceptance_rate) <= 1.0
      True

    References:
      Tierney (1994); Müller (1991), *A generic approach to posterior
      integration and Gibbs sampling*, Purdue technical report 91-09.
    """
    check_callable(logdensity_fn, "logdensity_fn")
    if isinstance(scale, (jax.Array, np.ndarray, np.number, int, float)):
        check_positive_scalar(scale, "scale")
    else:
        for leaf in jax.tree.leaves(scale):
            check_positive_scalar(leaf, "scale")
    scale = jax.tree.map(as_parameter, scale)
    return SamplingAlgorithm(
        jax.tree_util.Partial(_mwg_init, logdensity_fn=logdensity_fn, scale=scale),
        jax.tree_util.Partial(_mwg_step, logdensity_fn=logdensity_fn, scale=scale),
    )


def _flat_scales(scale: Any, position: Any) -> Array:
    """The per-coordinate proposal scales, on the flattened position."""
    if isinstance(scale, jax.Array) and not isinstance(position, (jax.Array, np.ndarray)):
        if scale.ndim:
            raise ValueError(
                "scale must be a scalar or a pytree like the position when the position is "
                f"a pytree, got shape {scale.shape}"
            )
        scale = jax.tree.map(lambda _: scale, position)
    try:
        scales = jax.tree.map(
            lambda leaf_scale, leaf: jnp.broadcast_to(leaf_scale, jnp.shape(leaf)),
            scale,
            position,
        )
    except ValueError as exc:
        raise ValueError(
            f"scale of shape {jax.tree.map(jnp.shape, scale)} does not broadcast to the "
            f"position's shape {jax.tree.map(jnp.shape, position)}"
        ) from exc
    return ravel_pytree(scales)[0]


def _mwg_init(
    position: Any, *, logdensity_fn: LogDensityFn, scale: Any
) -> MetropolisWithinGibbsState:
    position = as_floating_tree(position)
    _flat_scales(scale, position)
    check_logdensity(logdensity_fn, position)
    for leaf in jax.tree.leaves(position):
        check_finite_array(leaf, "position")
    return MetropolisWithinGibbsState(position, logdensity_fn(position))


def _mwg_step(
    rng_key: PRNGKey, state: MetropolisWithinGibbsState, *, logdensity_fn: LogDensityFn, scale: Any
) -> tuple[MetropolisWithinGibbsState, MHInfo]:
    check_key(rng_key)
    flat_position, unravel = ravel_pytree(state.position)
    size, dtype = flat_position.size, flat_position.dtype
    noise_key, accept_key = jax.random.split(rng_key)
    steps = _flat_scales(scale, state.position).astype(dtype) * jax.random.normal(
        noise_key, (size,), dtype
    )
    accept_keys = jax.random.split(accept_key, size)

    def update_coordinate(i: Array, carry: tuple) -> tuple:
        current, flat_current, rate_sum, num_accepted, any_nonfinite = carry
        flat_proposal = flat_current.at[i].add(steps[i])
        position = unravel(flat_proposal)
        proposed = MetropolisWithinGibbsState(position, logdensity_fn(position))
        log_ratio = proposed.logdensity - current.logdensity
        (new, flat_new), info = mh_accept(
            accept_keys[i],
            log_ratio,
            (proposed, flat_proposal),
            (current, flat_current),
            is_finite_tree(proposed),
        )
        return (
            new,
            flat_new,
            rate_sum + info.acceptance_rate,
            num_accepted + info.is_accepted,
            any_nonfinite | info.is_nonfinite,
        )

    carry = (
        state,
        flat_position,
        jnp.zeros((), state.logdensity.dtype),
        jnp.int32(0),
        jnp.array(False),
    )
    state, _, rate_sum, num_accepted, any_nonfinite = jax.lax.fori_loop(
        0, size, update_coordinate, carry
    )
    return state, MHInfo(rate_sum / size, num_accepted > 0, any_nonfinite)


def binary_gibbs(logdensity_fn: LogDensityFn) -> SamplingAlgorithm:
    """Exact systematic-scan Gibbs sampler on binary vectors, for any log-density.

    For each site :math:`i` of the flattened position in order, draws :math:`x_i`
    from its exact conditional, a Bernoulli with log-odds the change of
    :math:`f` when the site is switched on:

    .. math::

       p(x_i = 1 \\mid x_{-i}) = \\operatorname{sigmoid}\\big(
         f(x_{i \\leftarrow 1}) - f(x_{i \\leftarrow 0})\\big)

    (the normaliser :math:`Z` cancels, §11.1). The state caches :math:`f(x)`,
    so a site costs one evaluation of ``logdensity_fn``, at the flipped
    configuration, and a sweep costs :math:`d`. This is the Gibbs sampler of
    a Boltzmann machine or of the visible units of an RBM (from its free
    energy), and the default transition of
    :func:`ebm_jax.partition.annealed_importance_sampling` on binary data.

    A site whose conditional log-odds are NaN or infinite (the flipped or the
    current configuration has a non-finite log-density) keeps its current
    value and sets ``is_nonfinite``, like a rejected NaN proposal of the MH
    kernels: bad values never enter the chain.

    Args:
      logdensity_fn: ``x -> f(x)``, unnormalised log-density of ONE binary
        configuration (a float array of 0s and 1s, any shape).

    Returns:
      A :class:`SamplingAlgorithm` with :class:`BinaryGibbsState` states.
      ``init`` takes a float array of 0s and 1s (integers are promoted); a
      step is one full sweep. Infos are :class:`MHInfo` with
      ``acceptance_rate`` 1 and ``is_accepted`` True (every conditional is
      exact), ``is_nonfinite`` True when any site met non-finite log-odds.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> coupling = jnp.array([[0.0, 1.0], [1.0, 0.0]])
      >>> alg = ej.samplers.binary_gibbs(lambda x: 0.5 * x @ coupling @ x - 0.3 * jnp.sum(x))
      >>> state, info = alg.step(jax.random.key(0), alg.init(jnp.array([0.0, 1.0])))
      >>> bool(jnp.all((state.position == 0) | (state.position == 1)))
      True
      >>> float(info.acceptance_rate)
      1.0

    References:
      Geman & Geman (1984); Ackley, Hinton & Sejnowski (1985), *A learning
      algorithm for Boltzmann machines*, Cognitive Science 9(1).
    """
    check_callable(logdensity_fn, "logdensity_fn")

    def init_fn(position: ArrayLike) -> BinaryGibbsState:
        position = as_floating(position)
        if is_concrete(position) and not bool(np.all(np.isin(np.asarray(position), (0.0, 1.0)))):
            raise ValueError("position must contain only the binary values 0 and 1")
        check_logdensity(logdensity_fn, position)
        return BinaryGibbsState(position, logdensity_fn(position))

    def step_fn(rng_key: PRNGKey, state: BinaryGibbsState) -> tuple[BinaryGibbsState, MHInfo]:
        shape, size = state.position.shape, state.position.size
        uniforms = jax.random.uniform(rng_key, (size,), state.logdensity.dtype)

        def update_site(i: Array, carry: tuple) -> tuple:
            flat, logdensity, any_nonfinite = carry
            current_value = flat[i]
            flipped = flat.at[i].set(1.0 - current_value)
            flipped_logdensity = logdensity_fn(flipped.reshape(shape))
            # log-odds of x_i = 1: f(x_i <- 1) - f(x_i <- 0), whichever of the two is current
            log_odds = jnp.where(
                current_value == 1.0,
                logdensity - flipped_logdensity,
                flipped_logdensity - logdensity,
            )
            finite = jnp.isfinite(log_odds)
            new_value = (uniforms[i] < jax.nn.sigmoid(log_odds)).astype(flat.dtype)
            is_flipped = finite & (new_value != current_value)
            return (
                jnp.where(is_flipped, flipped, flat),
                jnp.where(is_flipped, flipped_logdensity, logdensity),
                any_nonfinite | ~finite,
            )

        carry = (state.position.reshape(-1), state.logdensity, jnp.array(False))
        flat, logdensity, any_nonfinite = jax.lax.fori_loop(0, size, update_site, carry)
        info = MHInfo(jnp.ones((), state.logdensity.dtype), jnp.array(True), any_nonfinite)
        return BinaryGibbsState(flat.reshape(shape), logdensity), info

    return SamplingAlgorithm(init_fn, step_fn)


__all__ = [
    "BinaryGibbsState",
    "GibbsInfo",
    "GibbsState",
    "MetropolisWithinGibbsState",
    "binary_gibbs",
    "gaussian_gibbs",
    "ising_gibbs",
    "metropolis_within_gibbs",
]

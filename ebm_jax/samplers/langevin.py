"""Langevin kernels: unadjusted (ULA) and Metropolis-adjusted (MALA), §11.2.1.

Both propose

.. math:: y = x + \\tau\\, C \\nabla_x f(x) + \\sqrt{\\sigma^2}\\, L \\varepsilon,
   \\qquad \\varepsilon \\sim N(0, I),\\; C = L L^\\top,

with drift step :math:`\\tau` (``step_size``), noise variance :math:`\\sigma^2`
(``noise_variance``, default :math:`2\\tau`) and preconditioner :math:`C`
(``inverse_mass_matrix``, default :math:`I`). The default pair
:math:`(\\tau, 2\\tau)` is the Euler-Maruyama step of the Langevin diffusion
that leaves :math:`p` invariant (Roberts & Tweedie 1996), as in BlackJAX.

The lecture writes the pair :math:`(\\eta, \\eta)`. MALA accepts with
:math:`A(x, y)` computed from the true proposal density
:math:`q(y|x) = N(y; x + \\tau C\\nabla f(x), \\sigma^2 C)`, so it is exact for
*any* pair, the lecture's included. ULA has no correction: with
:math:`(\\eta, \\eta)` it is a Langevin step for :math:`p^2`, not :math:`p`.

References:
  Roberts & Tweedie (1996), *Exponential convergence of Langevin distributions
  and their discrete approximations*, Bernoulli 2(4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ebm_jax._validation import (
    as_parameter,
    check_callable,
    check_initial_position,
    check_key,
    check_matrix_matches,
    check_positive_scalar,
)
from ebm_jax.samplers import preconditioning
from ebm_jax.samplers.base import SamplingAlgorithm
from ebm_jax.samplers.preconditioning import Preconditioner
from ebm_jax.samplers.proposal import (
    MHInfo,
    is_finite_tree,
    mh_accept_with_log_uniform,
    select_state,
)
from ebm_jax.types import Array, ArrayLike, ArrayTree, LogDensityFn, PRNGKey


class MALAState(NamedTuple):
    """One Langevin chain: its position and the cached :math:`f` and :math:`\\nabla f`.

    Caching both means each step costs exactly one ``value_and_grad``, at the
    proposal; a rejected proposal costs nothing extra. ``position`` may be any
    pytree of floating arrays; ``logdensity_grad`` has the same structure.
    """

    position: ArrayTree
    logdensity: Array
    logdensity_grad: ArrayTree


ULAState = MALAState
MALAInfo = MHInfo
ULAInfo = MHInfo


def init(position: ArrayTree, logdensity_fn: LogDensityFn) -> MALAState:
    """Cache :math:`f(x)` and :math:`\\nabla f(x)` at an initial (pytree) ``position``."""
    position = check_initial_position(logdensity_fn, position)
    logdensity, logdensity_grad = jax.value_and_grad(logdensity_fn)(position)
    return MALAState(position, logdensity, logdensity_grad)


class _FlatState(NamedTuple):
    """A :class:`MALAState` seen through the flattened position (what the maths acts on)."""

    position: Array
    logdensity: Array
    logdensity_grad: Array


def _flatten(state: MALAState) -> tuple[_FlatState, Callable[[Array], ArrayTree]]:
    flat_position, unravel = ravel_pytree(state.position)
    flat_grad, _ = ravel_pytree(state.logdensity_grad)
    return _FlatState(flat_position, state.logdensity, flat_grad), unravel


def _prepare(
    rng_key: PRNGKey, state: MALAState, *parameters: Any
) -> tuple[_FlatState, Callable[[Array], ArrayTree], Any, Any, Any]:
    """The flat view of ``state`` and the parameters cast to the position's dtype.

    The cast keeps float32 positions float32 under ``jax_enable_x64`` (a Python
    float step size is float64 there), so no carry is silently promoted.
    """
    check_key(rng_key)
    flat, unravel = _flatten(state)
    dtype = flat.position.dtype
    step_size, noise_variance, preconditioner = (
        jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype), value) for value in parameters
    )
    return flat, unravel, step_size, noise_variance, preconditioner


def _propose(
    noise: Array,
    state: _FlatState,
    unravel: Callable[[Array], ArrayTree],
    logdensity_fn: LogDensityFn,
    step_size: Array,
    noise_variance: Array,
    preconditioner: Preconditioner,
) -> tuple[MALAState, _FlatState]:
    """:math:`y = x + \\tau C \\nabla f(x) + \\sigma L \\varepsilon`, with f(y) and ∇f(y) cached."""
    drift = step_size * preconditioning.apply(preconditioner, state.logdensity_grad)
    flat_position = (
        state.position
        + drift
        + jnp.sqrt(noise_variance) * preconditioning.scale_noise(preconditioner, noise)
    )
    position = unravel(flat_position)
    logdensity, logdensity_grad = jax.value_and_grad(logdensity_fn)(position)
    proposed = MALAState(position, logdensity, logdensity_grad)
    return proposed, _FlatState(flat_position, logdensity, ravel_pytree(logdensity_grad)[0])


def _noise_and_log_uniform(rng_key: PRNGKey, position: Array) -> tuple[Array, Array]:
    """Noise :math:`\\varepsilon \\sim N(0, I)` and the MH :math:`\\log u`, from ONE draw.

    Draws :math:`v \\sim U(-1, 1)` with one entry more than the position has;
    :math:`\\varepsilon = \\sqrt2\\, \\operatorname{erf}^{-1}(v)` on all but the last
    (the inverse-CDF map :func:`jax.random.normal` applies to the same
    uniforms) and :math:`u = (1 + v_{\\text{last}}) / 2 \\sim U(0, 1)`. One PRNG
    call per step instead of three (split, normal, uniform).
    """
    dtype = position.dtype
    lower = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype))  # erfinv(-1) = -inf
    draws = jax.random.uniform(rng_key, (position.size + 1,), dtype, minval=lower, maxval=1.0)
    noise = np.sqrt(2.0).astype(dtype) * jax.lax.erf_inv(draws[:-1])
    log_uniform = jnp.log(0.5 * (1.0 + draws[-1]))
    return noise.reshape(position.shape), log_uniform


def _log_proposal_ratio(
    proposed: _FlatState,
    state: _FlatState,
    step_size: Array,
    noise_variance: Array,
    preconditioner: Preconditioner,
) -> Array:
    """:math:`\\log q(x \\mid y) - \\log q(y \\mid x)`, the proposal's part of the MH ratio.

    With :math:`q(y|x) = N(y; x + \\tau C g_x, \\sigma^2 C)` and :math:`g = \\nabla f`,
    the :math:`C^{-1}` terms of the two Mahalanobis norms cancel:

    .. math::

       \\log \\frac{q(x|y)}{q(y|x)} = -\\frac{\\tau}{2\\sigma^2}\\, (g_x + g_y)^\\top
       \\big[2 (y - x) + \\tau C (g_y - g_x)\\big],

    one inner product: no solve with :math:`C` and no cancellation between two
    large norms.
    """
    gradient_sum = state.logdensity_grad + proposed.logdensity_grad
    gradient_change = preconditioning.apply(
        preconditioner, proposed.logdensity_grad - state.logdensity_grad
    )
    direction = 2.0 * (proposed.position - state.position) + step_size * gradient_change
    return -0.5 * step_size / noise_variance * jnp.sum(gradient_sum * direction)


def mala_step(
    rng_key: PRNGKey,
    state: MALAState,
    *,
    logdensity_fn: LogDensityFn,
    step_size: Any,
    noise_variance: Any,
    preconditioner: Preconditioner,
) -> tuple[MALAState, MHInfo]:
    """One MALA transition of ONE chain, every parameter an argument (traced, never baked in)."""
    flat, unravel, step_size, noise_variance, preconditioner = _prepare(
        rng_key, state, step_size, noise_variance, preconditioner
    )
    noise, log_uniform = _noise_and_log_uniform(rng_key, flat.position)
    proposed, flat_proposed = _propose(
        noise, flat, unravel, logdensity_fn, step_size, noise_variance, preconditioner
    )
    log_ratio = (
        proposed.logdensity
        - state.logdensity
        + _log_proposal_ratio(flat_proposed, flat, step_size, noise_variance, preconditioner)
    )
    finite = is_finite_tree(proposed.logdensity, flat_proposed.logdensity_grad)
    return mh_accept_with_log_uniform(log_uniform, log_ratio, proposed, state, finite)


def ula_step(
    rng_key: PRNGKey,
    state: MALAState,
    *,
    logdensity_fn: LogDensityFn,
    step_size: Any,
    noise_variance: Any,
    preconditioner: Preconditioner,
) -> tuple[MALAState, MHInfo]:
    """One ULA transition of ONE chain, every parameter an argument."""
    flat, unravel, step_size, noise_variance, preconditioner = _prepare(
        rng_key, state, step_size, noise_variance, preconditioner
    )
    noise = jax.random.normal(rng_key, flat.position.shape, flat.position.dtype)
    proposed, flat_proposed = _propose(
        noise, flat, unravel, logdensity_fn, step_size, noise_variance, preconditioner
    )
    finite = is_finite_tree(proposed.logdensity, flat_proposed.logdensity_grad)
    one = jnp.ones((), proposed.logdensity.dtype)
    info = MHInfo(jnp.where(finite, one, 0.0 * one), finite, ~finite)
    return select_state(finite, proposed, state), info


def _with_positional_parameters(
    step: Callable[..., tuple[MALAState, MHInfo]], logdensity_fn: LogDensityFn
) -> Callable[..., tuple[MALAState, MHInfo]]:
    def kernel(
        rng_key: PRNGKey,
        state: MALAState,
        step_size: Array,
        noise_variance: Array,
        preconditioner: Preconditioner,
    ) -> tuple[MALAState, MHInfo]:
        return step(
            rng_key,
            state,
            logdensity_fn=logdensity_fn,
            step_size=step_size,
            noise_variance=noise_variance,
            preconditioner=preconditioner,
        )

    return kernel


def build_mala_kernel(
    logdensity_fn: LogDensityFn,
) -> Callable[..., tuple[MALAState, MHInfo]]:
    """MALA transition with its parameters as arguments (for adaptation, per-chain tuning).

    Returns:
      ``kernel(rng_key, state, step_size, noise_variance, preconditioner)``.
    """
    return _with_positional_parameters(mala_step, logdensity_fn)


def build_ula_kernel(
    logdensity_fn: LogDensityFn,
) -> Callable[..., tuple[MALAState, MHInfo]]:
    """ULA transition with its parameters as arguments.

    Returns:
      ``kernel(rng_key, state, step_size, noise_variance, preconditioner)``.
    """
    return _with_positional_parameters(ula_step, logdensity_fn)


def _init(
    position: ArrayTree, *, logdensity_fn: LogDensityFn, preconditioner: Preconditioner
) -> MALAState:
    check_matrix_matches(preconditioner.matrix, position)
    return init(position, logdensity_fn)


def _langevin_algorithm(
    step: Callable[..., tuple[MALAState, MHInfo]],
    logdensity_fn: LogDensityFn,
    step_size: ArrayLike,
    noise_variance: ArrayLike | None,
    inverse_mass_matrix: ArrayLike | None,
) -> SamplingAlgorithm:
    check_callable(logdensity_fn, "logdensity_fn")
    check_positive_scalar(step_size, "step_size")
    step_size = as_parameter(step_size)
    if noise_variance is None:
        noise_variance = 2.0 * step_size
    else:
        check_positive_scalar(noise_variance, "noise_variance")
        noise_variance = as_parameter(noise_variance)
    preconditioner = preconditioning.make_preconditioner(inverse_mass_matrix)
    # Partials are pytrees: the numbers are leaves (data to jit), the functions structure.
    return SamplingAlgorithm(
        jax.tree_util.Partial(_init, logdensity_fn=logdensity_fn, preconditioner=preconditioner),
        jax.tree_util.Partial(
            step,
            logdensity_fn=logdensity_fn,
            step_size=step_size,
            noise_variance=noise_variance,
            preconditioner=preconditioner,
        ),
    )


def mala(
    logdensity_fn: LogDensityFn,
    step_size: ArrayLike,
    *,
    noise_variance: ArrayLike | None = None,
    inverse_mass_matrix: ArrayLike | None = None,
) -> SamplingAlgorithm:
    """Metropolis-adjusted Langevin algorithm (MALA).

    Proposes :math:`y = x + \\tau C\\nabla f(x) + \\sigma L\\varepsilon` and
    accepts with the MH probability :math:`A(x, y)` of §11.2.1, using the exact
    Gaussian proposal density, so the chain leaves :math:`p \\propto e^f`
    invariant for every :math:`(\\tau, \\sigma^2, C)`. One ``value_and_grad``
    and one PRNG draw per step: :math:`\\varepsilon` and the MH uniform come
    from the same uniform draw (see ``_noise_and_log_uniform``).

    Args:
      logdensity_fn: ``x -> f(x)``, unnormalised log-density of one sample;
        ``x`` is an array or any pytree of arrays (a dict of parameters).
      step_size: drift step :math:`\\tau > 0`. Like every number given here it
        is data: a kernel rebuilt with a new value reuses the program
        :func:`ebm_jax.run_chains` compiled.
      noise_variance: :math:`\\sigma^2 > 0`; default :math:`2\\tau` (standard
        MALA). ``noise_variance=step_size`` gives the lecture's
        :math:`(\\eta, \\eta)` proposal, still exact under MH.
      inverse_mass_matrix: preconditioner :math:`C` on the flattened position,
        a vector (diagonal) or a dense SPD matrix; default the identity.

    Returns:
      A :class:`SamplingAlgorithm` whose states are :class:`MALAState` and
      infos :class:`MHInfo`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> alg = ej.samplers.mala(lambda x: -0.5 * jnp.sum(x**2), step_size=0.5)
      >>> state = alg.init(jnp.zeros(2))
      >>> state, info = alg.step(jax.random.key(0), state)
      >>> state.position.shape, info.is_accepted.dtype
      ((2,), dtype('bool'))

      Any pytree is a position; a preconditioner acts on the flattened vector:

      >>> logdensity_fn = lambda x: -0.5 * (x["mu"] ** 2 + jnp.sum(x["theta"] ** 2))
      >>> alg = ej.samplers.mala(logdensity_fn, 0.5, inverse_mass_matrix=jnp.ones(3))
      >>> state = alg.init({"mu": 0.0, "theta": jnp.zeros(2)})
      >>> jax.tree.map(jnp.shape, alg.step(jax.random.key(0), state)[0].position)
      {'mu': (), 'theta': (2,)}

    References:
      Roberts & Tweedie (1996); Besag (1994), comment on Grenander & Miller.
    """
    return _langevin_algorithm(
        mala_step, logdensity_fn, step_size, noise_variance, inverse_mass_matrix
    )


def ula(
    logdensity_fn: LogDensityFn,
    step_size: ArrayLike,
    *,
    noise_variance: ArrayLike | None = None,
    inverse_mass_matrix: ArrayLike | None = None,
) -> SamplingAlgorithm:
    """Unadjusted Langevin algorithm (ULA): the Langevin step with no MH correction.

    :math:`y = x + \\tau C\\nabla f(x) + \\sqrt{2\\tau} L\\varepsilon` is always
    taken (except a NaN/inf proposal, which is rejected and flagged). It is
    biased at any finite :math:`\\tau`: on :math:`N(0, s^2)` its stationary
    variance is :math:`s^2 / (1 - \\tau / (2 s^2))`.

    Args:
      logdensity_fn: ``x -> f(x)``, unnormalised log-density of one sample;
        ``x`` is an array or any pytree of arrays (a dict of parameters).
      step_size: :math:`\\tau > 0`.
      noise_variance: default :math:`2\\tau`. The lecture's
        :math:`(\\eta, \\eta)` pair without correction targets :math:`p^2`.
      inverse_mass_matrix: preconditioner :math:`C`, default the identity.

    Returns:
      A :class:`SamplingAlgorithm`; ``info.acceptance_rate`` is 1 except for
      rejected non-finite proposals.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> alg = ej.samplers.ula(lambda x: -0.5 * jnp.sum(x**2), step_size=0.1)
      >>> state, info = alg.step(jax.random.key(0), alg.init(jnp.zeros(3)))
      >>> bool(info.is_accepted)
      True
    """
    return _langevin_algorithm(
        ula_step, logdensity_fn, step_size, noise_variance, inverse_mass_matrix
    )


__all__ = [
    "MALAInfo",
    "MALAState",
    "ULAInfo",
    "ULAState",
    "build_mala_kernel",
    "build_ula_kernel",
    "init",
    "mala",
    "mala_step",
    "ula",
    "ula_step",
]

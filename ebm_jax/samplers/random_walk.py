"""Random-walk Metropolis-Hastings (RWMH), §11.2.1.

Proposes :math:`y = x + s\\, L\\varepsilon` with :math:`\\varepsilon \\sim N(0, I)`
and :math:`C = L L^\\top`: isotropic (:math:`C = I`), diagonal or
full-covariance. The proposal is symmetric, so
:math:`A(x, y) = \\min(1, p(y)/p(x))` (Metropolis et al. 1953).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
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
from ebm_jax.samplers.proposal import MHInfo, is_finite_tree, mh_accept
from ebm_jax.types import Array, ArrayLike, ArrayTree, LogDensityFn, PRNGKey


class RWMHState(NamedTuple):
    """One random-walk chain: position (any pytree of arrays) and cached log-density."""

    position: ArrayTree
    logdensity: Array


RWMHInfo = MHInfo


def init(position: ArrayTree, logdensity_fn: LogDensityFn) -> RWMHState:
    """Cache :math:`f(x)` at an initial (pytree) ``position``."""
    position = check_initial_position(logdensity_fn, position)
    return RWMHState(position, logdensity_fn(position))


def rwmh_step(
    rng_key: PRNGKey,
    state: RWMHState,
    *,
    logdensity_fn: LogDensityFn,
    scale: ArrayLike,
    preconditioner: Preconditioner,
) -> tuple[RWMHState, MHInfo]:
    """One RWMH transition of ONE chain, every parameter an argument (traced, never baked in)."""
    check_key(rng_key)
    flat_position, unravel = ravel_pytree(state.position)
    dtype = flat_position.dtype
    scale = jnp.asarray(scale, dtype)
    preconditioner = jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype), preconditioner)
    proposal_key, accept_key = jax.random.split(rng_key)
    noise = jax.random.normal(proposal_key, flat_position.shape, dtype)
    flat_proposal = flat_position + scale * preconditioning.scale_noise(preconditioner, noise)
    position = unravel(flat_proposal)
    proposed = RWMHState(position, logdensity_fn(position))
    log_ratio = proposed.logdensity - state.logdensity
    return mh_accept(accept_key, log_ratio, proposed, state, is_finite_tree(proposed))


def build_kernel(logdensity_fn: LogDensityFn) -> Callable[..., tuple[RWMHState, MHInfo]]:
    """RWMH transition with its parameters as arguments.

    Returns:
      ``kernel(rng_key, state, scale, preconditioner)``.
    """

    def kernel(
        rng_key: PRNGKey, state: RWMHState, scale: Array, preconditioner: Preconditioner
    ) -> tuple[RWMHState, MHInfo]:
        return rwmh_step(
            rng_key, state, logdensity_fn=logdensity_fn, scale=scale, preconditioner=preconditioner
        )

    return kernel


def _init(
    position: ArrayTree, *, logdensity_fn: LogDensityFn, preconditioner: Preconditioner
) -> RWMHState:
    check_matrix_matches(preconditioner.matrix, position)
    return init(position, logdensity_fn)


def rwmh(
    logdensity_fn: LogDensityFn,
    scale: ArrayLike,
    *,
    inverse_mass_matrix: ArrayLike | None = None,
) -> SamplingAlgorithm:
    """Random-walk Metropolis-Hastings with a Gaussian proposal :math:`N(x, s^2 C)`.

    Args:
      logdensity_fn: ``x -> f(x)``, unnormalised log-density of one sample;
        ``x`` is an array or any pytree of arrays (a dict of parameters).
      scale: proposal scale :math:`s > 0` (a standard deviation when :math:`C = I`).
      inverse_mass_matrix: proposal shape :math:`C` on the flattened position:
        ``None`` (isotropic), a vector of variances (diagonal) or a dense SPD
        matrix (full covariance).

    Returns:
      A :class:`SamplingAlgorithm` with :class:`RWMHState` states.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> alg = ej.samplers.rwmh(lambda x: -0.5 * jnp.sum(x**2), scale=1.0)
      >>> state, info = alg.step(jax.random.key(1), alg.init(jnp.zeros(2)))
      >>> float(info.acceptance_rate) <= 1.0
      True

    References:
      Metropolis et al. (1953); Hastings (1970); Roberts, Gelman & Gilks (1997)
      for the 0.234 optimal acceptance.
    """
    check_callable(logdensity_fn, "logdensity_fn")
    check_positive_scalar(scale, "scale")
    preconditioner = preconditioning.make_preconditioner(inverse_mass_matrix)
    # Partials are pytrees: the numbers are leaves (data to jit), the functions structure.
    return SamplingAlgorithm(
        jax.tree_util.Partial(_init, logdensity_fn=logdensity_fn, preconditioner=preconditioner),
        jax.tree_util.Partial(
            rwmh_step,
            logdensity_fn=logdensity_fn,
            scale=as_parameter(scale),
            preconditioner=preconditioner,
        ),
    )


__all__ = ["RWMHInfo", "RWMHState", "build_kernel", "init", "rwmh", "rwmh_step"]

"""Scores of log-densities (eq. 11.1) and the energy adapter."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

from ebm_jax.types import Array, EnergyFn, LogDensityFn


def score(
    logdensity_fn: LogDensityFn | Callable[..., Array], argnum: int = 0
) -> Callable[..., Array]:
    """Return the score :math:`s(x) = \\nabla_x f(x)` of a log-density.

    Implements eq. (11.1): because :math:`\\log Z(\\theta)` does not depend on
    :math:`x`, :math:`\\nabla_x \\log p_\\theta(x) = \\nabla_x f_\\theta(x)`, so
    the score of an unnormalised model is exact.

    Args:
      logdensity_fn: ``x -> f(x)``, the unnormalised log-density of one sample,
        or a parametric ``(params, x) -> f(x)`` with ``argnum=1``.
      argnum: which positional argument is the sample ``x``.

    Returns:
      The function ``x -> ∇ₓ f(x)`` (same signature as ``logdensity_fn``), whose
      output has the shape of ``x``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> s = ej.score(lambda x: -0.5 * jnp.sum(x**2))
      >>> s(jnp.array([1.0, -2.0]))
      Array([-1.,  2.], dtype=float32)
    """
    if not callable(logdensity_fn):
        raise TypeError(f"logdensity_fn must be callable, got {type(logdensity_fn).__name__}")
    return jax.grad(logdensity_fn, argnums=argnum)


def from_energy(energy_fn: EnergyFn) -> LogDensityFn:
    """Turn an energy :math:`E(x)` into the log-density :math:`f(x) = -E(x)`.

    This is the only place the sign convention flips: :math:`p(x) \\propto
    \\exp(-E(x)) = \\exp f(x)`. Extra positional arguments (e.g. ``params``)
    are passed through, so ``from_energy(E)(params, x) == -E(params, x)``.

    Args:
      energy_fn: ``x -> E(x)`` (or ``(params, x) -> E(params, x)``), a scalar.

    Returns:
      The log-density ``f = -E`` with the same signature.

    Examples:
      >>> import jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> f = ej.from_energy(lambda x: 0.5 * jnp.sum(x**2))
      >>> f(jnp.array([1.0, 1.0]))
      Array(-1., dtype=float32)
    """
    if not callable(energy_fn):
        raise TypeError(f"energy_fn must be callable, got {type(energy_fn).__name__}")

    @functools.wraps(energy_fn)
    def logdensity_fn(*args: Array) -> Array:
        return -energy_fn(*args)

    return logdensity_fn


__all__ = ["from_energy", "score"]

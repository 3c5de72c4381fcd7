"""Shared type aliases and the sign convention, stated once.

The core object of the library is the lecture's :math:`f_\\theta`, an
*unnormalised log-density* of ONE sample,

.. math:: p(x) = \\exp f(x) / Z,

written ``logdensity_fn(x) -> scalar`` (``logdensity_fn(params, x)`` for
parametric models). An energy :math:`E = -f` enters only through
:func:`ebm_jax.from_energy`. The score is :math:`s(x) = \\nabla_x f(x)`
(eq. 11.1), always computed by :func:`jax.grad`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import jax

Array: TypeAlias = jax.Array
ArrayLike: TypeAlias = jax.typing.ArrayLike
PRNGKey: TypeAlias = jax.Array
ArrayTree: TypeAlias = Any

LogDensityFn: TypeAlias = Callable[[Array], Array]
"""``x -> f(x)``: unnormalised log-density of one sample (a scalar)."""

EnergyFn: TypeAlias = Callable[[Array], Array]
"""``x -> E(x) = -f(x)``: energy of one sample (a scalar)."""

ScoreFn: TypeAlias = Callable[[Array], Array]
"""``x -> ∇ₓ f(x)``: score of one sample, same shape as ``x``."""

__all__ = ["Array", "ArrayLike", "ArrayTree", "EnergyFn", "LogDensityFn", "PRNGKey", "ScoreFn"]

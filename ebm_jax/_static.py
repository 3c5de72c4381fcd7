"""Values are data, functions are structure: splitting an object for ``jax.jit``.

A kernel such as ``ej.samplers.mala(f, 0.1)`` is a pytree whose leaves are its
numbers (step size, mass matrix) and its functions (``f``). Passed to a jitted
function as a static argument it would recompile for every new step size;
passed as a traced argument its functions would be rejected. :func:`split`
separates the two, as equinox's ``filter_jit`` does: array leaves become
traced arguments, everything else (functions, strings, Python numbers, the
tree structure) a hashable static key. Two kernels built from the same
functions with different numbers then share one compiled program.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np


class _ByIdentity:
    """An unhashable static leaf, compared by identity (so it still keys a cache)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.value is self.value


class Static(NamedTuple):
    """The hashable, non-array part of a pytree: its structure and non-array leaves."""

    treedef: Any
    leaves: tuple[tuple[int, Any], ...]


def _is_data(leaf: Any) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray))


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return _ByIdentity(value)
    return value


def split(tree: Any) -> tuple[list[Any], Static]:
    """``(arrays, static)``: the array leaves of ``tree`` and a hashable key for the rest."""
    leaves, treedef = jax.tree.flatten(tree)
    arrays = [leaf for leaf in leaves if _is_data(leaf)]
    others = tuple(
        (index, _hashable(leaf)) for index, leaf in enumerate(leaves) if not _is_data(leaf)
    )
    return arrays, Static(treedef, others)


def merge(arrays: list[Any], static: Static) -> Any:
    """Inverse of :func:`split`."""
    fixed = {
        index: value.value if isinstance(value, _ByIdentity) else value
        for index, value in static.leaves
    }
    remaining = iter(arrays)
    num_leaves = len(arrays) + len(fixed)
    leaves = [fixed[index] if index in fixed else next(remaining) for index in range(num_leaves)]
    return jax.tree.unflatten(static.treedef, leaves)

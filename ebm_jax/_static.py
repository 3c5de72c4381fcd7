"""Values are data, functions are structure: splitting an object for ``jax.jit``.

A kernel such as ``ej.samplers.mala(f, 0.1)`` is a pytree whose leaves are its
numbers (step size, mass matrix) and its functions (``f``). Passed to a jitted
function as a static argument it would recompile for every new step size;
passed as a traced argument its functions would be rejected. :func:`split`
separates the two, as equinox's ``filter_jit`` does: array leaves become
traced arguments, everything else (functions, strings, Python numbers, the
tree structure) a hashable static key. Two kernels built from the same
functions with different numbers then share one compiled program.

:class:`FunctionKey` goes one step further for functions whose numbers are
closed over rather than held as leaves (an optax optimizer's ``update``): it
compares two functions by what they compute, so rebuilt equal closures share
a compiled program too.
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Callable, Hashable
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


class FunctionKey:
    """A function as a static ``jit`` argument, equal to any function computing the same thing.

    ``jax.jit`` compares static functions by identity, so every rebuilt
    ``optax.adam(1e-3)`` (whose ``update`` is a fresh closure) would compile
    anew. Two functions here are equal when they have the same code, defaults
    and closed-over values and name the same global values, compared
    recursively through nested closures, containers and
    :func:`functools.partial`: Python scalars and strings by value, functions
    defined at module level, modules, classes, arrays and every other object
    by identity. Equal keys trace to the same program, so the first one's
    compilation serves both. The key holds every object it compared by
    identity, so no ``id`` is reused while it lives in ``jit``'s cache.
    """

    __slots__ = ("_fingerprint", "_hash", "_referenced", "function")

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self._referenced: list[Any] = []
        self._fingerprint = self._summarise(function, [])
        self._hash = hash(self._fingerprint)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FunctionKey) and self._fingerprint == other._fingerprint

    def __hash__(self) -> int:
        return self._hash

    def _by_identity(self, value: Any) -> tuple[str, int]:
        self._referenced.append(value)
        return ("object", id(value))

    def _summarise(self, value: Any, ancestors: list[int]) -> Hashable:
        if value is None or isinstance(value, (bool, int, str, bytes)):
            return (type(value), value)
        if isinstance(value, (float, complex, np.generic)):
            return (type(value), repr(value))  # repr tells -0.0 from 0.0
        if id(value) in ancestors:  # a recursive closure: point at the enclosing node
            return ("cycle", len(ancestors) - ancestors.index(id(value)))
        ancestors = [*ancestors, id(value)]
        if isinstance(value, (tuple, list)):
            return (type(value), tuple(self._summarise(item, ancestors) for item in value))
        if isinstance(value, dict):
            return (
                type(value),
                tuple(
                    (self._summarise(key, ancestors), self._summarise(item, ancestors))
                    for key, item in value.items()
                ),
            )
        if isinstance(value, functools.partial):
            return (
                type(value),
                self._summarise(value.func, ancestors),
                self._summarise(value.args, ancestors),
                self._summarise(value.keywords, ancestors),
            )
        if isinstance(value, types.MethodType):
            return (
                type(value),
                self._summarise(value.__func__, ancestors),
                self._by_identity(value.__self__),
            )
        if isinstance(value, types.FunctionType) and not _is_module_attribute(value):
            code = value.__code__
            cells = tuple(
                self._summarise(cell.cell_contents, ancestors) if _is_filled(cell) else ("empty",)
                for cell in value.__closure__ or ()
            )
            named_globals = tuple(
                (name, self._summarise_global(value.__globals__[name], ancestors))
                for name in sorted(_names(code))
                if name in value.__globals__
            )
            return (
                "function",
                code,
                self._summarise(value.__defaults__, ancestors),
                self._summarise(value.__kwdefaults__, ancestors),
                cells,
                named_globals,
            )
        return self._by_identity(value)

    def _summarise_global(self, value: Any, ancestors: list[int]) -> Hashable:
        """Global scalars by value, global closures recursively, anything else by identity."""
        if isinstance(value, (types.FunctionType, functools.partial)) or value is None:
            return self._summarise(value, ancestors)
        if isinstance(value, (bool, int, str, bytes, float, complex, np.generic)):
            return self._summarise(value, ancestors)
        return self._by_identity(value)


def _is_module_attribute(function: types.FunctionType) -> bool:
    """Defined at the top level of its module (a singleton: compared by identity)."""
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    return getattr(module, function.__name__, None) is function


def _is_filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises on access
    except ValueError:
        return False
    return True


def _names(code: types.CodeType) -> set[str]:
    """The global (and attribute) names ``code`` and the code nested in it refer to."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _names(constant)
    return names

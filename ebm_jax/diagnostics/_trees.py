"""Pytrees of draws: per-leaf mapping and variable names, shared by summary and ArviZ export."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

from ebm_jax.types import ArrayTree

DEFAULT_NAME = "x"


def is_single_array(samples: Any) -> bool:
    """An array (or tracer, scalar, nested list of numbers) rather than a container of arrays.

    A nested list of Python or NumPy numbers is one array, as NumPy reads it; a
    dict, tuple, list or other pytree node holding arrays is a pytree.
    """
    leaves, treedef = jax.tree_util.tree_flatten(samples)
    if not leaves:
        return False
    if jax.tree_util.treedef_is_leaf(treedef):
        return True
    return all(isinstance(leaf, (int, float, np.number)) for leaf in leaves)


def flatten_samples(samples: ArrayTree) -> tuple[list[tuple[str, Any]], Callable[[list], Any]]:
    """``(label, leaf)`` pairs and a function rebuilding the structure from per-leaf values.

    ``label`` spells the leaf for error messages: ``samples`` for a plain
    array, ``samples['theta']`` for a leaf of a pytree.
    """
    if is_single_array(samples):
        return [("samples", samples)], lambda values: values[0]
    flat, treedef = jax.tree_util.tree_flatten_with_path(samples)
    if not flat:
        raise ValueError("samples must hold at least one array, got a pytree without leaves")
    labelled = [(f"samples{jax.tree_util.keystr(path)}", leaf) for path, leaf in flat]
    return labelled, lambda values: jax.tree_util.tree_unflatten(treedef, values)


def _path_name(path: tuple[Any, ...]) -> str:
    parts = []
    for entry in path:
        if isinstance(entry, DictKey):
            parts.append(str(entry.key))
        elif isinstance(entry, GetAttrKey):
            parts.append(entry.name)
        elif isinstance(entry, SequenceKey):
            parts.append(str(entry.idx))
        elif isinstance(entry, FlattenedIndexKey):
            parts.append(str(entry.key))
        else:
            parts.append(str(entry))
    name = ".".join(parts)
    # Positions in a tuple or list are not names: x_0, x_1, ...
    if isinstance(path[0], (SequenceKey, FlattenedIndexKey)):
        return f"{DEFAULT_NAME}_{name}"
    return name


def named_leaves(samples: ArrayTree, var_names: Sequence[str] | None) -> list[tuple[str, str, Any]]:
    """``(name, label, leaf)`` for every leaf of ``samples``, in flattening order.

    Dict keys and NamedTuple fields name their leaves (nested ones joined with
    ``"."``), positions in a tuple or list give ``x_0, x_1, ...``, and a single
    array is ``x``; ``var_names`` (one name per leaf) overrides them all. The
    label spells the leaf for error messages, as in :func:`flatten_samples`.
    """
    labelled, _ = flatten_samples(samples)
    if is_single_array(samples):
        flat: list[tuple[str, str, Any]] = [(DEFAULT_NAME, *labelled[0])]
    else:
        paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(samples)[0]]
        flat = [(_path_name(path), *pair) for path, pair in zip(paths, labelled, strict=True)]
    if var_names is not None:
        if isinstance(var_names, str) or not isinstance(var_names, Sequence):
            raise TypeError(
                f"var_names must be a list of strings, one per leaf, got {type(var_names).__name__}"
            )
        if len(var_names) != len(flat):
            raise ValueError(
                f"var_names must hold one name per leaf of samples: {len(flat)} leaves "
                f"({', '.join(name for name, _, _ in flat)}), got {len(var_names)} names"
            )
        for name in var_names:
            if not isinstance(name, str) or not name:
                raise TypeError(f"var_names must be non-empty strings, got {name!r}")
        flat = [(name, *rest) for name, (_, *rest) in zip(var_names, flat, strict=True)]
    names = [name for name, _, _ in flat]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        source = "var_names" if var_names is not None else "the names of the leaves"
        raise ValueError(
            f"{source} must be unique, got {duplicates} more than once; pass var_names"
        )
    return flat

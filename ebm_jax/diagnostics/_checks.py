"""Argument checks shared by the diagnostics modules."""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from ebm_jax._validation import check_finite_array
from ebm_jax.types import Array


def _as_float_array(value: Any, name: str) -> Array:
    try:
        arr = jnp.asarray(value)
    except TypeError as exc:
        raise TypeError(f"{name} must be an array, got {type(value).__name__}") from exc
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    return arr


def _check_points(value: Any, name: str, min_points: int) -> Array:
    """A finite ``(num_points, dim)`` array."""
    arr = _as_float_array(value, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must have shape (num_points, dim), got shape {arr.shape}; "
            f"for 1-D data pass {name}[:, None]"
        )
    if arr.shape[0] < min_points:
        raise ValueError(f"{name} must hold at least {min_points} points, got {arr.shape[0]}")
    check_finite_array(arr, name)
    return arr


def _check_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value

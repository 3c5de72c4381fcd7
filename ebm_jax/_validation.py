"""Early, named argument checks shared by the factories (not public API).

Checks run on concrete values only: inside ``jit``/``vmap`` (tracers) the
value checks are skipped, while shape checks, which are static, always run.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(value: Any) -> bool:
    """True when ``value`` holds data rather than an abstract tracer."""
    return not isinstance(value, jax.core.Tracer)


def as_floating(value: Any) -> jax.Array:
    """``value`` as an array, integers promoted to the default float dtype (traceable)."""
    array = jnp.asarray(value)
    if not jnp.issubdtype(array.dtype, jnp.floating):
        array = array.astype(jnp.result_type(float))
    return array


def as_parameter(value: Any) -> jax.Array:
    """A kernel parameter as a strongly typed floating array (so equal shapes share a compile)."""
    array = as_floating(value)
    return array.astype(array.dtype)


def check_callable(value: Any, name: str) -> None:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")


def check_positive_scalar(value: Any, name: str) -> None:
    """A finite, strictly positive scalar (or array of them, e.g. per chain)."""
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.ndarray, jax.Array, np.number)
    ):
        raise TypeError(f"{name} must be a positive float, got {type(value).__name__}")
    if not is_concrete(value):
        return
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value}")
    if not np.all(arr > 0):
        raise ValueError(f"{name} must be > 0, got {value}")


def check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_probability(value: Any, name: str) -> None:
    if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0 or math.isnan(value):
        raise ValueError(f"{name} must be a float in (0, 1), got {value}")


def check_finite_array(value: Any, name: str) -> None:
    # NumPy, not jnp: a concrete array closed over by a caller's jit must not be traced.
    if is_concrete(value) and not bool(np.all(np.isfinite(np.asarray(value)))):
        raise ValueError(f"{name} must be finite (it contains NaN or inf)")


def check_key(rng_key: Any, name: str = "rng_key") -> None:
    """A single JAX PRNG key: typed (``jax.random.key``) or raw uint32 of shape (2,)."""
    if not isinstance(rng_key, jax.Array):
        raise TypeError(f"{name} must be a jax.random key, got {type(rng_key).__name__}")
    typed = jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key)
    if not typed and rng_key.dtype != jnp.uint32:
        raise TypeError(
            f"{name} must be a jax.random key (jax.random.key(seed)), got an array of dtype "
            f"{rng_key.dtype}"
        )
    if (typed and rng_key.shape != ()) or (not typed and rng_key.shape != (2,)):
        raise ValueError(
            f"{name} must be a single key (jax.random.key(seed)), got shape {rng_key.shape}"
        )


def _shapes(position: Any) -> Any:
    """The shape of an array, or the pytree of its leaves' shapes."""
    if isinstance(position, (jax.Array, np.ndarray)):
        return position.shape
    return jax.tree.map(jnp.shape, position)


def check_logdensity(logdensity_fn: Any, position: Any, name: str = "logdensity_fn") -> None:
    """``logdensity_fn(position)`` must return a real scalar (checked by ``jax.eval_shape``)."""
    check_callable(logdensity_fn, name)
    try:
        out = jax.eval_shape(logdensity_fn, position)
    except Exception as exc:  # re-raised with the argument named
        raise ValueError(
            f"{name} failed on a position of shape {_shapes(position)}: {exc}"
        ) from exc
    if not hasattr(out, "shape") or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"{name} must return a scalar for one position of shape {_shapes(position)}, "
            f"got shape {shape}; kernels move ONE chain (vmap at the call site)"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{name} must return a floating-point scalar, got dtype {out.dtype}")


def check_inverse_mass_matrix(inverse_mass_matrix: Any, name: str = "inverse_mass_matrix") -> None:
    """A vector of positive variances (diagonal) or a symmetric positive-definite matrix."""
    if inverse_mass_matrix is None:
        return
    arr = jnp.asarray(inverse_mass_matrix)
    if arr.ndim not in (1, 2) or (arr.ndim == 2 and arr.shape[0] != arr.shape[1]):
        raise ValueError(
            f"{name} must be a 1-D vector (diagonal) or a square 2-D matrix, got shape {arr.shape}"
        )
    if not is_concrete(inverse_mass_matrix):
        return
    check_finite_array(arr, name)
    if arr.ndim == 1 and not np.all(np.asarray(arr) > 0):  # numpy: no tracing under jit
        raise ValueError(f"{name} must have strictly positive diagonal entries")
    if arr.ndim == 2:
        sym = np.asarray(arr, dtype=np.float64)
        if not np.allclose(sym, sym.T, rtol=1e-5, atol=1e-8):
            raise ValueError(f"{name} must be symmetric")
        if np.any(np.linalg.eigvalsh(sym) <= 0):
            raise ValueError(f"{name} must be positive definite")


def position_size(position: Any) -> int:
    """Number of entries of a (pytree) position, i.e. the length of its flattened vector."""
    return sum(int(np.prod(jnp.shape(leaf))) for leaf in jax.tree.leaves(position))


def check_matrix_matches(matrix: Any, position: Any, name: str = "inverse_mass_matrix") -> None:
    """The (inverse) mass matrix must act on the flattened (pytree) position."""
    if matrix is None:
        return
    size = position_size(position)
    if jnp.shape(matrix)[0] != size:
        shapes = jax.tree.map(jnp.shape, position)
        raise ValueError(
            f"{name} has shape {jnp.shape(matrix)} but the position has {size} entries "
            f"(shape {shapes})"
        )


def as_floating_tree(position: Any, name: str = "position") -> Any:
    """Every leaf of a pytree ``position`` as a floating array (integers promoted)."""
    leaves = jax.tree.leaves(position)
    if not leaves:
        raise ValueError(f"{name} must hold at least one array, got {position!r}")
    for leaf in leaves:
        if not isinstance(leaf, (jax.Array, np.ndarray, np.number, int, float)) or isinstance(
            leaf, bool
        ):
            raise TypeError(
                f"{name} must be an array or a pytree (dict, tuple, ...) of arrays; "
                f"found a leaf of type {type(leaf).__name__}"
            )
    return jax.tree.map(as_floating, position)


def check_initial_position(logdensity_fn: Any, position: Any) -> Any:
    """A finite floating-point (pytree) position at which ``logdensity_fn`` returns a scalar."""
    position = as_floating_tree(position)
    check_logdensity(logdensity_fn, position)
    for leaf in jax.tree.leaves(position):
        check_finite_array(leaf, "position")
    return position


ONE_SAMPLE_HINT = (
    "the loss calls the model on one sample, vmapped inside over the batch; a Flax model "
    "initialised on a whole batch, model.init(key, batch), may accept only batches: "
    "initialise it on one sample, model.init(key, batch[0])"
)


def check_one_sample_output(fn: Any, sample: Any, call: str, returns: str = "scalar") -> None:
    """``fn(sample)`` on ONE sample: a floating scalar, or an array of the sample's shape.

    Checked by ``jax.eval_shape`` (free, and valid under tracing: shapes are
    static). ``call`` names the model as the user wrote it, e.g.
    ``"logdensity_fn(params, x)"``; ``returns`` is ``"scalar"`` or ``"sample"``.
    Both a failure and a wrong shape raise a ``ValueError`` that says the
    model sees one sample and how to initialise a Flax model for that.
    """
    shape = jnp.shape(sample)
    try:
        out = jax.eval_shape(fn, sample)
    except Exception as exc:  # re-raised with the argument named
        raise ValueError(
            f"{call} failed on one sample x of shape {shape} ({ONE_SAMPLE_HINT}): {exc}"
        ) from exc
    expected_shape = () if returns == "scalar" else shape
    if not hasattr(out, "shape") or out.shape != expected_shape:
        found = getattr(out, "shape", type(out).__name__)
        expected = "a scalar" if returns == "scalar" else f"an array of x's shape {shape}"
        squeeze = (
            " (take out[0] of a (1,)-shaped output)"
            if returns == "scalar" and found == (1,)
            else ""
        )
        raise ValueError(
            f"{call} must return {expected} for one sample x of shape {shape}, got shape "
            f"{found}{squeeze}; {ONE_SAMPLE_HINT}"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{call} must return floating-point values, got dtype {out.dtype}")

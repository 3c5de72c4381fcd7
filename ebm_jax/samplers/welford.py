"""Streaming mean and (co)variance of many chains at once (Welford; Chan et al.).

A :class:`WelfordState` holds the count :math:`n`, the running mean
:math:`\\bar x` and the running sum of squared deviations
:math:`M_2 = \\sum_i (x_i - \\bar x)^2` (or :math:`\\sum_i (x_i - \\bar x)(x_i - \\bar x)^\\top`
for a dense covariance). :func:`welford_update_batch` folds in a whole batch
(one position per chain) with the pairwise combination of Chan, Golub &
LeVeque: with batch statistics :math:`(n_b, \\bar x_b, M_{2,b})` and
:math:`\\delta = \\bar x_b - \\bar x_a`,

.. math::

   n = n_a + n_b, \\qquad
   \\bar x = \\bar x_a + \\delta\\, \\frac{n_b}{n}, \\qquad
   M_2 = M_{2,a} + M_{2,b} + \\delta^2\\, \\frac{n_a n_b}{n}.

The batch's own :math:`M_{2,b}` is computed in two passes (about its own
mean), so the update stays accurate in float32 when the mean is far from 0.
Used by :func:`ebm_jax.samplers.adapt` for the preconditioner and by the chain
runner for streaming statistics.

References:
  Welford (1962), *Note on a method for calculating corrected sums of squares
  and products*, Technometrics 4(3). Chan, Golub & LeVeque (1983), *Algorithms
  for computing the sample variance: analysis and recommendations*, The
  American Statistician 37(3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from ebm_jax.types import Array, ArrayLike


class WelfordState(NamedTuple):
    """Running moments of the samples seen so far.

    Attributes:
      count: number of samples :math:`n`, a float scalar (a float so that
        millions of chains times thousands of steps cannot overflow an int32).
      mean: running mean, of the sample shape.
      m2: sum of squared deviations from the mean: of the sample shape
        (diagonal), or ``(size, size)`` on the flattened sample (dense).
    """

    count: Array  # type: ignore[assignment]  # shadows tuple.count, by design
    mean: Array
    m2: Array


def welford_init(
    shape: int | Sequence[int], dtype: jnp.dtype = jnp.float32, *, dense: bool = False
) -> WelfordState:
    """Empty running moments for samples of ``shape``.

    Args:
      shape: the shape of one sample (e.g. a chain's position).
      dtype: floating dtype of the accumulators.
      dense: track the full covariance of the flattened sample (``m2`` of
        shape ``(size, size)``) instead of per-coordinate variances.

    Returns:
      A :class:`WelfordState` with ``count = 0``.

    Examples:
      >>> from ebm_jax.samplers.welford import welford_init
      >>> welford_init((2, 3)).m2.shape, welford_init(3, dense=True).m2.shape
      ((2, 3), (3, 3))
    """
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not all(isinstance(s, (int, np.integer)) and s >= 0 for s in shape):
        raise ValueError(f"shape must be a tuple of non-negative ints, got {shape}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    size = math.prod(shape)
    m2_shape = (size, size) if dense else shape
    return WelfordState(jnp.zeros((), dtype), jnp.zeros(shape, dtype), jnp.zeros(m2_shape, dtype))


def welford_update_batch(
    state: WelfordState, batch: ArrayLike, mask: ArrayLike | None = None
) -> WelfordState:
    """Fold a batch of samples (leading axis) into the running moments.

    Args:
      state: the moments so far.
      batch: ``(batch_size, *shape)``, e.g. one position per chain.
      mask: optional ``(batch_size,)`` booleans; only the samples where it is
        true are folded in (a batch with none leaves ``state`` unchanged).
        Lets :func:`ebm_jax.samplers.adapt` leave lost chains out.

    Returns:
      The moments of all samples seen so far, ``batch`` included.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax.samplers.welford import welford_init, welford_update_batch
      >>> state = welford_update_batch(welford_init(1), jnp.array([[1.0], [2.0]]))
      >>> state = welford_update_batch(state, jnp.array([[6.0]]))
      >>> float(state.count), float(state.mean[0]), float(state.m2[0])
      (3.0, 3.0, 14.0)
      >>> keep = jnp.array([False, True])
      >>> masked = welford_update_batch(state, jnp.array([[100.0], [3.0]]), keep)
      >>> float(masked.count), float(masked.mean[0])
      (4.0, 3.0)
    """
    batch = jnp.asarray(batch, state.mean.dtype)
    if batch.ndim < 1 or batch.shape[1:] != state.mean.shape:
        raise ValueError(
            f"batch must have shape (batch_size, *{state.mean.shape}), got {batch.shape}"
        )
    if batch.shape[0] == 0:
        raise ValueError("batch must hold at least one sample")
    # A dense m2 is (size, size); when size == 1 both layouts hold the same number.
    dense = state.m2.shape != state.mean.shape
    if mask is None:
        batch_count = jnp.asarray(batch.shape[0], state.count.dtype)
        batch_mean = jnp.mean(batch, axis=0)
        centred = batch - batch_mean
    else:
        mask = jnp.asarray(mask)
        if mask.shape != batch.shape[:1]:
            raise ValueError(f"mask must have shape ({batch.shape[0]},), got {mask.shape}")
        weights = mask.astype(state.mean.dtype).reshape(-1, *([1] * (batch.ndim - 1)))
        batch_count = jnp.sum(mask).astype(state.count.dtype)
        batch_mean = jnp.sum(weights * batch, axis=0) / jnp.maximum(batch_count, 1.0)
        centred = weights * (batch - batch_mean)
    if dense:
        flat = centred.reshape(batch.shape[0], -1)
        batch_m2 = flat.T @ flat
    else:
        batch_m2 = jnp.sum(centred**2, axis=0)

    count = state.count + batch_count
    delta = batch_mean - state.mean
    safe_count = jnp.maximum(count, 1.0)  # an empty masked batch into an empty state
    mean = state.mean + delta * (batch_count / safe_count)
    weight = state.count * batch_count / safe_count
    if dense:
        flat_delta = delta.reshape(-1)
        m2 = state.m2 + batch_m2 + weight * jnp.outer(flat_delta, flat_delta)
    else:
        m2 = state.m2 + batch_m2 + weight * delta**2
    return WelfordState(count, mean, m2)


def welford_variance(state: WelfordState, ddof: int = 1) -> Array:
    """The variance (or covariance) of the samples seen so far.

    Args:
      state: the running moments.
      ddof: delta degrees of freedom, as in NumPy: divides :math:`M_2` by
        :math:`n - \\mathrm{ddof}`; 1 (default) gives the unbiased sample
        variance, 0 the maximum-likelihood one.

    Returns:
      ``m2 / (count - ddof)``: per-coordinate variances (of the sample shape)
      or the ``(size, size)`` covariance of the flattened sample. NaN or inf
      while ``count <= ddof``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax.samplers.welford import welford_init, welford_update_batch
      >>> from ebm_jax.samplers.welford import welford_variance
      >>> state = welford_update_batch(welford_init(1), jnp.array([[1.0], [2.0], [6.0]]))
      >>> float(welford_variance(state)[0]), float(welford_variance(state, ddof=0)[0])
      (7.0, 4.666666507720947)
    """
    return state.m2 / (state.count - ddof)


__all__ = ["WelfordState", "welford_init", "welford_update_batch", "welford_variance"]

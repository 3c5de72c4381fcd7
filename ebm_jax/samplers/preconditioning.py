"""Preconditioners (inverse mass matrices) shared by MALA, ULA and RWMH.

A preconditioner :math:`C` (the *inverse mass matrix*, BlackJAX's name) is
either a vector of per-coordinate variances (diagonal :math:`C`) or a dense
symmetric positive-definite matrix. It acts on the flattened position (for a
pytree position, the vector :func:`jax.flatten_util.ravel_pytree` gives, as in
BlackJAX). The
Cholesky factor :math:`C = L L^\\top` is computed once, at construction, so a
MALA step costs three mat-vecs (the drift, the noise and the proposal-density
ratio, which needs no solve with :math:`C`) and a RWMH step one.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ebm_jax._validation import as_parameter, check_inverse_mass_matrix
from ebm_jax.types import Array, ArrayLike


class Preconditioner(NamedTuple):
    """:math:`C` and its Cholesky factor (both ``None`` for the identity).

    For a diagonal :math:`C`, ``matrix`` is the vector of variances and
    ``cholesky`` the vector of standard deviations.
    """

    matrix: Array | None
    cholesky: Array | None


def make_preconditioner(inverse_mass_matrix: ArrayLike | None) -> Preconditioner:
    """Validate :math:`C` and precompute its Cholesky factor."""
    if inverse_mass_matrix is None:
        return Preconditioner(None, None)
    check_inverse_mass_matrix(inverse_mass_matrix)
    matrix = as_parameter(inverse_mass_matrix)
    if matrix.ndim == 1:
        return Preconditioner(matrix, jnp.sqrt(matrix))
    return Preconditioner(matrix, jnp.linalg.cholesky(matrix))


def apply(preconditioner: Preconditioner, vector: Array) -> Array:
    """:math:`C v` for a ``vector`` of the position's shape."""
    if preconditioner.matrix is None:
        return vector
    if preconditioner.matrix.ndim == 1:
        return preconditioner.matrix.reshape(vector.shape) * vector
    return (preconditioner.matrix @ vector.reshape(-1)).reshape(vector.shape)


def scale_noise(preconditioner: Preconditioner, noise: Array) -> Array:
    """:math:`L \\varepsilon`, so that :math:`L\\varepsilon \\sim N(0, C)`."""
    if preconditioner.cholesky is None:
        return noise
    if preconditioner.cholesky.ndim == 1:
        return preconditioner.cholesky.reshape(noise.shape) * noise
    return (preconditioner.cholesky @ noise.reshape(-1)).reshape(noise.shape)


def squared_norm(preconditioner: Preconditioner, vector: Array) -> Array:
    """:math:`v^\\top C^{-1} v`, the Mahalanobis norm of a proposal residual."""
    if preconditioner.cholesky is None:
        return jnp.sum(vector**2)
    if preconditioner.cholesky.ndim == 1:
        return jnp.sum((vector.reshape(-1) / preconditioner.cholesky.reshape(-1)) ** 2)
    whitened = jax.scipy.linalg.solve_triangular(
        preconditioner.cholesky, vector.reshape(-1), lower=True
    )
    return jnp.sum(whitened**2)


__all__ = ["Preconditioner", "apply", "make_preconditioner", "scale_noise", "squared_norm"]

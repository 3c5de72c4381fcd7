"""Gaussian targets :math:`N(\\mu, \\Sigma)`: isotropic, diagonal and full covariance.

.. math::

   \\log N(x; \\mu, \\Sigma) = -\\tfrac12 (x - \\mu)^\\top \\Sigma^{-1} (x - \\mu)
   - \\tfrac12 \\log\\det \\Sigma - \\tfrac{d}{2} \\log 2\\pi .

The full-covariance form never inverts a matrix: with a Cholesky factor
:math:`\\Sigma = L L^\\top` the quadratic form is :math:`\\|L^{-1}(x - \\mu)\\|^2`
(one triangular solve) and :math:`\\log\\det\\Sigma = 2 \\sum_i \\log L_{ii}`;
given the precision :math:`Q = \\Sigma^{-1} = L_Q L_Q^\\top` instead, it is
:math:`\\|L_Q^\\top (x - \\mu)\\|^2` and :math:`-2\\sum_i \\log (L_Q)_{ii}`.
Every Gaussian target carries its dense ``precision`` in ``parameters`` (for
:func:`ebm_jax.samplers.gaussian_gibbs`); its score is
:math:`\\nabla f(x) = -Q(x - \\mu)`, obtained by :func:`jax.grad`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ebm_jax._validation import check_inverse_mass_matrix, check_positive_scalar
from ebm_jax.densities.base import Target, as_float_array, make_target
from ebm_jax.types import Array, ArrayLike, PRNGKey

_LOG_2PI = math.log(2.0 * math.pi)


def isotropic_gaussian(mean: ArrayLike, scale: ArrayLike = 1.0) -> Target:
    """The isotropic Gaussian :math:`N(\\mu, s^2 I)`.

    .. math:: f(x) = -\\frac{\\|x - \\mu\\|^2}{2 s^2} - d \\log s - \\frac{d}{2}\\log 2\\pi .

    Args:
      mean: :math:`\\mu`, shape ``(d,)``.
      scale: the standard deviation :math:`s > 0` of every coordinate.

    Returns:
      A normalised :class:`Target` with event shape ``(d,)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import densities
      >>> target = densities.isotropic_gaussian(jnp.zeros(2), scale=2.0)
      >>> target.sample(jax.random.key(0), 5).shape
      (5, 2)
      >>> target.score_fn(jnp.array([2.0, -4.0]))
      Array([-0.5,  1. ], dtype=float32)
    """
    mean = as_float_array(mean, "mean", ndim=1)
    check_positive_scalar(scale, "scale")
    if jnp.ndim(scale) != 0:
        raise ValueError(f"scale must be a scalar, got shape {jnp.shape(scale)}")
    variances = jnp.full(mean.shape, jnp.asarray(scale, mean.dtype) ** 2)
    return _diagonal_target(mean, variances, "isotropic_gaussian", {"scale": scale})


def diagonal_gaussian(mean: ArrayLike, variances: ArrayLike) -> Target:
    """The Gaussian :math:`N(\\mu, \\mathrm{diag}(\\sigma_1^2, \\dots, \\sigma_d^2))`.

    .. math::

       f(x) = -\\sum_i \\Big(\\frac{(x_i - \\mu_i)^2}{2\\sigma_i^2}
       + \\log \\sigma_i\\Big) - \\frac{d}{2}\\log 2\\pi .

    Args:
      mean: :math:`\\mu`, shape ``(d,)``.
      variances: :math:`\\sigma_i^2 > 0`, shape ``(d,)`` (variances, not
        standard deviations).

    Returns:
      A normalised :class:`Target` with event shape ``(d,)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax import densities
      >>> target = densities.diagonal_gaussian(jnp.zeros(2), jnp.array([1.0, 4.0]))
      >>> target.covariance
      Array([[1., 0.],
             [0., 4.]], dtype=float32)
    """
    mean = as_float_array(mean, "mean", ndim=1)
    variances = as_float_array(variances, "variances", ndim=1)
    if variances.shape != mean.shape:
        raise ValueError(f"variances must have shape {mean.shape} like mean, got {variances.shape}")
    check_positive_scalar(variances, "variances")
    dtype = jnp.result_type(mean, variances)
    return _diagonal_target(mean.astype(dtype), variances.astype(dtype), "diagonal_gaussian", {})


def gaussian(
    mean: ArrayLike,
    covariance: ArrayLike | None = None,
    *,
    precision: ArrayLike | None = None,
) -> Target:
    """The Gaussian :math:`N(\\mu, \\Sigma)`, given :math:`\\Sigma` or :math:`Q = \\Sigma^{-1}`.

    .. math::

       f(x) = -\\tfrac12 \\|L^{-1}(x - \\mu)\\|^2 - \\sum_i \\log L_{ii}
       - \\tfrac{d}{2}\\log 2\\pi, \\qquad \\Sigma = L L^\\top,

    evaluated by a triangular solve (or, given :math:`Q = L_Q L_Q^\\top`, by
    the mat-vec :math:`L_Q^\\top (x - \\mu)`); no matrix is inverted.
    Sampling is :math:`\\mu + L\\varepsilon` (or :math:`\\mu + L_Q^{-\\top}\\varepsilon`).

    Args:
      mean: :math:`\\mu`, shape ``(d,)``.
      covariance: :math:`\\Sigma`, a symmetric positive-definite ``(d, d)``
        matrix. Give exactly one of ``covariance`` and ``precision``.
      precision: :math:`Q = \\Sigma^{-1}`, symmetric positive-definite ``(d, d)``
        (a Gaussian Markov random field is specified this way).

    Returns:
      A normalised :class:`Target` with event shape ``(d,)``; both
      ``covariance`` and ``parameters["precision"]`` are set.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax import densities
      >>> target = densities.gaussian(jnp.zeros(2), jnp.array([[1.0, 0.5], [0.5, 1.0]]))
      >>> round(float(target.logdensity_fn(jnp.zeros(2))), 4)  # -log(2π) - ½ log(0.75)
      -1.694
    """
    mean = as_float_array(mean, "mean", ndim=1)
    if (covariance is None) == (precision is None):
        raise ValueError("give exactly one of covariance and precision")
    name = "covariance" if precision is None else "precision"
    matrix = as_float_array(covariance if precision is None else precision, name, ndim=2)
    if matrix.shape != (mean.size, mean.size):
        raise ValueError(
            f"{name} must have shape {(mean.size, mean.size)} to match mean, got {matrix.shape}"
        )
    check_inverse_mass_matrix(matrix, name)
    dtype = jnp.result_type(mean, matrix)
    mean, matrix = mean.astype(dtype), matrix.astype(dtype)
    cholesky = jnp.linalg.cholesky(matrix)
    identity = jnp.eye(mean.size, dtype=dtype)
    inverse = jax.scipy.linalg.cho_solve((cholesky, True), identity)
    inverse = 0.5 * (inverse + inverse.T)
    log_diagonal_sum = jnp.sum(jnp.log(jnp.diag(cholesky)))
    normalizer = 0.5 * mean.size * _LOG_2PI

    if precision is None:
        covariance_matrix, precision_matrix = matrix, inverse
        log_det_covariance_half = log_diagonal_sum

        def whiten(residual: Array) -> Array:
            return jax.scipy.linalg.solve_triangular(cholesky, residual, lower=True)

        def colour(noise: Array) -> Array:  # rows of noise -> rows of L ε
            return noise @ cholesky.T

    else:
        covariance_matrix, precision_matrix = inverse, matrix
        log_det_covariance_half = -log_diagonal_sum

        def whiten(residual: Array) -> Array:
            return cholesky.T @ residual

        def colour(noise: Array) -> Array:  # rows of noise -> rows of L_Q^{-T} ε
            return jax.scipy.linalg.solve_triangular(cholesky.T, noise.T, lower=False).T

    def logdensity_fn(x: Array) -> Array:
        whitened = whiten(x - mean)
        return -0.5 * jnp.sum(whitened**2) - log_det_covariance_half - normalizer

    def draw(rng_key: PRNGKey, num_samples: int) -> Array:
        noise = jax.random.normal(rng_key, (num_samples, mean.size), dtype)
        return mean + colour(noise)

    return make_target(
        logdensity_fn=logdensity_fn,
        draw=draw,
        event_shape=mean.shape,
        is_normalized=True,
        mean=mean,
        covariance=covariance_matrix,
        name="gaussian",
        parameters={"precision": precision_matrix},
    )


def _diagonal_target(mean: Array, variances: Array, name: str, extra: dict) -> Target:
    log_std_sum = 0.5 * jnp.sum(jnp.log(variances))
    normalizer = 0.5 * mean.size * _LOG_2PI

    def logdensity_fn(x: Array) -> Array:
        return -0.5 * jnp.sum((x - mean) ** 2 / variances) - log_std_sum - normalizer

    def draw(rng_key: PRNGKey, num_samples: int) -> Array:
        noise = jax.random.normal(rng_key, (num_samples, *mean.shape), mean.dtype)
        return mean + jnp.sqrt(variances) * noise

    return make_target(
        logdensity_fn=logdensity_fn,
        draw=draw,
        event_shape=mean.shape,
        is_normalized=True,
        mean=mean,
        covariance=jnp.diag(variances),
        name=name,
        parameters={"precision": jnp.diag(1.0 / variances), **extra},
    )


__all__ = ["diagonal_gaussian", "gaussian", "isotropic_gaussian"]

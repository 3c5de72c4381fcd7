"""Finite Gaussian mixtures :math:`\\sum_k w_k N(\\mu_k, \\Sigma_k)`: the multimodal toy target.

.. math::

   f(x) = \\log \\sum_{k=1}^K w_k\\, N(x; \\mu_k, \\Sigma_k)
        = \\operatorname{logsumexp}_k \\big(\\log w_k + \\log N(x; \\mu_k, \\Sigma_k)\\big),

exact and normalised, computed with ``logsumexp`` and one triangular solve per
component. Exact samples draw a component :math:`k \\sim w` and then
:math:`\\mu_k + L_k \\varepsilon`. The moments are closed form:

.. math::

   E[x] = \\sum_k w_k \\mu_k, \\qquad
   \\mathrm{Cov}[x] = \\sum_k w_k \\big(\\Sigma_k
     + (\\mu_k - \\bar\\mu)(\\mu_k - \\bar\\mu)^\\top\\big).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ebm_jax._validation import check_inverse_mass_matrix, check_positive_scalar
from ebm_jax.densities.base import Target, as_float_array, make_target
from ebm_jax.types import Array, ArrayLike, PRNGKey

_LOG_2PI = math.log(2.0 * math.pi)


def _full_covariances(covariances: Array, num_components: int, dim: int) -> Array:
    """Expand the accepted covariance forms to ``(K, d, d)`` and validate them."""
    shape = covariances.shape
    if covariances.ndim == 3:
        if shape != (num_components, dim, dim):
            raise ValueError(
                f"covariances must have shape {(num_components, dim, dim)} (full), got {shape}"
            )
        for k in range(num_components):
            check_inverse_mass_matrix(covariances[k], f"covariances[{k}]")
        return covariances
    check_positive_scalar(covariances, "covariances")
    if covariances.ndim == 0:
        variances = jnp.full((num_components, dim), covariances)
    elif covariances.ndim == 1 and shape == (num_components,):
        variances = jnp.broadcast_to(covariances[:, None], (num_components, dim))
    elif covariances.ndim == 2 and shape == (num_components, dim):
        variances = covariances
    else:
        raise ValueError(
            f"covariances must be a scalar variance, (K,) = {(num_components,)} per-component "
            f"variances, (K, d) = {(num_components, dim)} diagonal variances or "
            f"(K, d, d) = {(num_components, dim, dim)} full covariances, got shape {shape}"
        )
    return jax.vmap(jnp.diag)(variances)


def gaussian_mixture(weights: ArrayLike, means: ArrayLike, covariances: ArrayLike) -> Target:
    """A mixture of :math:`K` Gaussians in :math:`d` dimensions.

    .. math:: p(x) = \\sum_{k=1}^K w_k\\, N(x; \\mu_k, \\Sigma_k), \\qquad \\sum_k w_k = 1 .

    Args:
      weights: :math:`w_k > 0`, shape ``(K,)``; divided by their sum, so
        unnormalised weights (e.g. counts) are fine.
      means: :math:`\\mu_k`, shape ``(K, d)``.
      covariances: the :math:`\\Sigma_k`, as *variances*: a scalar (shared
        :math:`\\sigma^2 I`), shape ``(K,)`` (:math:`\\sigma_k^2 I`), ``(K, d)``
        (diagonal) or ``(K, d, d)`` (full, symmetric positive-definite).

    Returns:
      A normalised :class:`Target` with event shape ``(d,)`` and closed-form
      ``mean`` and ``covariance``; ``parameters`` holds the normalised
      ``weights``, the ``means`` and the full ``covariances``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import densities
      >>> target = densities.gaussian_mixture(
      ...     jnp.array([1.0, 1.0]), jnp.array([[-2.0, 0.0], [2.0, 0.0]]), 0.25)
      >>> target.mean
      Array([0., 0.], dtype=float32)
      >>> target.covariance  # 0.25 + 2² along the axis of the means
      Array([[4.25, 0.  ],
             [0.  , 0.25]], dtype=float32)
      >>> target.sample(jax.random.key(0), 3).shape
      (3, 2)
    """
    weights = as_float_array(weights, "weights", ndim=1)
    check_positive_scalar(weights, "weights")
    means = as_float_array(means, "means", ndim=2)
    num_components, dim = means.shape
    if weights.shape != (num_components,):
        raise ValueError(
            f"weights must have shape {(num_components,)} (one per row of means), "
            f"got {weights.shape}"
        )
    covariances = _full_covariances(as_float_array(covariances, "covariances"), num_components, dim)
    dtype = jnp.result_type(weights, means, covariances)
    weights = (weights / jnp.sum(weights)).astype(dtype)
    means, covariances = means.astype(dtype), covariances.astype(dtype)

    log_weights = jnp.log(weights)
    choleskys = jnp.linalg.cholesky(covariances)
    half_log_dets = jnp.sum(jnp.log(jnp.diagonal(choleskys, axis1=-2, axis2=-1)), axis=-1)
    normalizer = 0.5 * dim * _LOG_2PI

    # L⁻¹ once here, so a log-density costs one small mat-vec per component instead of a
    # triangular solve (which batches poorly under vmap over thousands of chains).
    identity = jnp.broadcast_to(jnp.eye(dim, dtype=dtype), covariances.shape)
    inverse_choleskys = jax.scipy.linalg.solve_triangular(choleskys, identity, lower=True)
    log_constants = log_weights - half_log_dets - normalizer

    def logdensity_fn(x: Array) -> Array:
        whitened = jnp.einsum("kij,kj->ki", inverse_choleskys, x - means)
        return jax.nn.logsumexp(log_constants - 0.5 * jnp.sum(whitened**2, axis=-1))

    def draw(rng_key: PRNGKey, num_samples: int) -> Array:
        component_key, noise_key = jax.random.split(rng_key)
        components = jax.random.categorical(component_key, log_weights, shape=(num_samples,))
        noise = jax.random.normal(noise_key, (num_samples, dim), dtype)
        return means[components] + jnp.einsum("nij,nj->ni", choleskys[components], noise)

    mean = weights @ means
    offsets = means - mean
    covariance = jnp.einsum("k,kij->ij", weights, covariances) + jnp.einsum(
        "k,ki,kj->ij", weights, offsets, offsets
    )
    return make_target(
        logdensity_fn=logdensity_fn,
        draw=draw,
        event_shape=(dim,),
        is_normalized=True,
        mean=mean,
        covariance=covariance,
        name="gaussian_mixture",
        parameters={"weights": weights, "means": means, "covariances": covariances},
    )


__all__ = ["gaussian_mixture"]

"""Denoising score matching at one noise level (Vincent 2011).

References:
  Vincent (2011), *A connection between score matching and denoising
  autoencoders*, Neural Computation 23(7).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ebm_jax._validation import check_callable, check_key, check_positive_scalar
from ebm_jax.losses.score_matching import LossFn, ParametricFn, as_batch, check_score_fn
from ebm_jax.types import Array, ArrayLike, ArrayTree, PRNGKey


def denoising_score_matching(score_fn: ParametricFn, sigma: ArrayLike) -> LossFn:
    """Denoising score matching: regress the score on the noise that was added.

    With :math:`\\tilde x = x + \\sigma \\varepsilon`, :math:`\\varepsilon \\sim
    N(0, I)`, so that :math:`\\nabla_{\\tilde x} \\log q_\\sigma(\\tilde x | x) =
    -\\varepsilon / \\sigma`,

    .. math::

       J_\\sigma(\\theta) = \\frac{1}{B} \\sum_{b=1}^{B} \\tfrac12 \\big\\|
       s_\\theta(x_b + \\sigma \\varepsilon_b) + \\varepsilon_b / \\sigma \\big\\|^2
       = \\tfrac12\\, \\mathbb{E}_{q_\\sigma} \\big\\|s_\\theta(\\tilde x)
       - \\nabla \\log q_\\sigma(\\tilde x)\\big\\|^2 + C_\\sigma

    in expectation over :math:`\\varepsilon`, where :math:`q_\\sigma = \\hat p
    * N(0, \\sigma^2 I)` is the :math:`\\sigma`-smoothed data. So DSM is
    :math:`\\tfrac12` the Fisher divergence to :math:`q_\\sigma` plus a
    constant, on the same scale as Hyvärinen's :math:`J = \\mathbb{E}[\\tfrac12
    \\|s\\|^2 + \\operatorname{tr} \\nabla s]` (ONE HALF of the lecture's
    eq. 11.2 objective), with no Jacobian trace at all. It matches the score
    of the smoothed data, not of :math:`\\hat p`: biased for every
    :math:`\\sigma > 0` (for Gaussian data with covariance :math:`\\Sigma` a
    Gaussian model learns covariance :math:`\\Sigma + \\sigma^2 I`). The noise
    is drawn from ``rng_key``, one :math:`\\varepsilon` per sample.

    Args:
      score_fn: ``(params, x) -> s(x)`` of the shape of ``x``. An EBM passes
        ``ej.score(logdensity_fn, argnum=1)``.
      sigma: noise scale :math:`\\sigma > 0`, a finite scalar.

    Returns:
      ``loss_fn(params, rng_key, batch) -> scalar``, ``batch`` of shape
      ``(batch_size, *event_shape)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> from ebm_jax import losses
      >>> logdensity_fn = lambda precision, x: -0.5 * precision * jnp.sum(x**2)
      >>> loss_fn = losses.denoising_score_matching(ej.score(logdensity_fn, argnum=1), 0.1)
      >>> loss = loss_fn(1.0, jax.random.key(0), jnp.zeros((4, 2)))
      >>> loss.shape, bool(loss > 0)
      ((), True)

    References:
      Vincent (2011), Neural Computation 23(7).
    """
    check_callable(score_fn, "score_fn")
    check_positive_scalar(sigma, "sigma")
    if jnp.ndim(sigma) != 0:
        raise ValueError(f"sigma must be a scalar, got shape {jnp.shape(sigma)}")

    def loss_fn(params: ArrayTree, rng_key: PRNGKey, batch: ArrayLike) -> Array:
        check_key(rng_key)
        batch = as_batch(batch)
        check_score_fn(score_fn, params, batch[0])
        noise = jax.random.normal(rng_key, batch.shape, batch.dtype)
        scale = jnp.asarray(sigma, batch.dtype)
        scores = jax.vmap(score_fn, in_axes=(None, 0))(params, batch + scale * noise)
        residuals = (scores + noise / scale).reshape(batch.shape[0], -1)
        return 0.5 * jnp.mean(jnp.sum(residuals**2, axis=1))

    return loss_fn


__all__ = ["denoising_score_matching"]

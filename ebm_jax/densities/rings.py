"""Concentric rings in 2-D: a mixture of radial Gaussian shells with uniform angle.

Ring :math:`k` has radius :math:`r_k` and width :math:`\\sigma_k`; with
:math:`\\rho = \\|x\\|`,

.. math::

   p(x) = \\sum_k w_k \\frac{e^{-(\\rho - r_k)^2 / 2\\sigma_k^2}}{Z_k}, \\qquad
   Z_k = \\int_{\\mathbb{R}^2} e^{-(\\|x\\| - r_k)^2 / 2\\sigma_k^2} dx
       = 2\\pi\\sigma_k^2 \\Big(e^{-a_k^2/2} + a_k \\sqrt{2\\pi}\\, \\Phi(a_k)\\Big),

with :math:`a_k = r_k/\\sigma_k` and
:math:`\\Phi(a) = \\tfrac12(1 + \\operatorname{erf}(a/\\sqrt2))`,
so :math:`f = \\log p` is exactly normalised. In polar coordinates the angle
is uniform and the radius of ring :math:`k` has density
:math:`g_k(\\rho) \\propto \\rho\\, e^{-(\\rho - r_k)^2/2\\sigma_k^2}` on
:math:`\\rho \\ge 0`, whose CDF is closed form,

.. math::

   G_k(t) \\propto \\sigma_k^2 \\big(e^{-a_k^2/2} - e^{-(t - r_k)^2/2\\sigma_k^2}\\big)
   + r_k \\sigma_k \\sqrt{2\\pi}\\, \\big(\\Phi((t - r_k)/\\sigma_k) - \\Phi(-a_k)\\big);

exact samples invert it by bisection (to float precision). The mean is 0 and
the covariance is :math:`\\tfrac12 \\sum_k w_k E_k[\\rho^2]\\, I` with

.. math::

   E_k[\\rho^2] = \\frac{\\sigma^2 e^{-a^2/2}(r^2 + 2\\sigma^2)
   + r \\sqrt{2\\pi}\\sigma\\Phi(a)(r^2 + 3\\sigma^2)}{\\sigma^2 e^{-a^2/2}
   + r \\sqrt{2\\pi}\\sigma\\Phi(a)}  \\quad (r = r_k, \\sigma = \\sigma_k, a = a_k).

The norm has a kink at :math:`x = 0`; there the score (by :func:`jax.grad`)
is set to 0 rather than NaN, so chains may start at the origin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from ebm_jax._validation import check_positive_scalar
from ebm_jax.densities.base import Target, as_float_array, make_target
from ebm_jax.types import Array, ArrayLike, PRNGKey

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_BISECTION_STEPS = 64  # halves [0, r + 12σ] to below float64 resolution


def _safe_norm(x: Array) -> Array:
    """:math:`\\|x\\|` with gradient 0 (not NaN) at the origin."""
    squared = jnp.sum(x**2)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def rings(
    radii: ArrayLike | Sequence[float] = (1.0, 2.0, 3.0),
    scale: ArrayLike | Sequence[float] = 0.1,
    weights: ArrayLike | Sequence[float] | None = None,
) -> Target:
    """Concentric rings: a mixture of radial Gaussian shells with uniform angle.

    .. math::

       p(x) = \\sum_k w_k\\, e^{-(\\|x\\| - r_k)^2 / 2\\sigma_k^2} / Z_k,
       \\qquad x \\in \\mathbb{R}^2 .

    Args:
      radii: ring radii :math:`r_k \\ge 0`, shape ``(K,)``.
      scale: radial widths :math:`\\sigma_k > 0`, a scalar or shape ``(K,)``.
      weights: ring masses :math:`w_k > 0`, shape ``(K,)``, divided by their
        sum; default equal mass per ring.

    Returns:
      A normalised :class:`Target` with event shape ``(2,)``, mean 0 and
      closed-form isotropic covariance.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import densities
      >>> target = densities.rings(radii=(1.0, 2.0), scale=0.1)
      >>> radii = jnp.linalg.norm(target.sample(jax.random.key(0), 1000), axis=-1)
      >>> bool(jnp.all(jnp.abs(radii - jnp.round(radii)) < 0.6))
      True
    """
    radii = as_float_array(radii, "radii", ndim=1)
    if radii.shape[0] == 0:
        raise ValueError("radii must hold at least one radius")
    if not bool(np.all(np.asarray(radii) >= 0)):
        raise ValueError("radii must be >= 0")
    num_rings = radii.shape[0]
    scale = as_float_array(scale, "scale")
    check_positive_scalar(scale, "scale")
    if scale.shape not in ((), (num_rings,)):
        raise ValueError(f"scale must be a scalar or have shape {(num_rings,)}, got {scale.shape}")
    if weights is None:
        weights = jnp.ones(num_rings, radii.dtype)
    weights = as_float_array(weights, "weights", ndim=1)
    check_positive_scalar(weights, "weights")
    if weights.shape != (num_rings,):
        raise ValueError(f"weights must have shape {(num_rings,)} like radii, got {weights.shape}")
    dtype = jnp.result_type(radii, scale, weights)

    # Constants in float64 NumPy (cheap, and exact to float64 before the cast).
    radii64 = np.asarray(radii, np.float64)
    scales64 = np.broadcast_to(np.asarray(scale, np.float64), (num_rings,))
    weights64 = np.asarray(weights, np.float64) / np.sum(np.asarray(weights, np.float64))
    ratio64 = radii64 / scales64  # a_k
    tail64 = np.exp(-0.5 * ratio64**2)  # e^{-a²/2}
    cdf_at_ratio = np.array([0.5 * (1.0 + math.erf(a / math.sqrt(2.0))) for a in ratio64])
    shell64 = radii64 * _SQRT_2PI * scales64 * cdf_at_ratio  # r √(2π) σ Φ(a)
    mass64 = scales64**2 * tail64 + shell64  # ∫_0^∞ ρ e^{-(ρ-r)²/2σ²} dρ = Z_k / 2π
    second_moments64 = (  # E_k[ρ²]
        scales64**2 * tail64 * (radii64**2 + 2.0 * scales64**2)
        + shell64 * (radii64**2 + 3.0 * scales64**2)
    ) / mass64
    variance = 0.5 * np.sum(weights64 * second_moments64)

    def constant(value: np.ndarray) -> Array:
        return jnp.asarray(value, dtype)

    radii, scales, weights = constant(radii64), constant(scales64), constant(weights64)
    ratio, gaussian_tail, radial_mass = constant(ratio64), constant(tail64), constant(mass64)
    log_normalizers = constant(np.log(2.0 * np.pi * mass64))
    log_weights = constant(np.log(weights64))

    def logdensity_fn(x: Array) -> Array:
        radius = _safe_norm(x)
        return jax.nn.logsumexp(
            log_weights - 0.5 * ((radius - radii) / scales) ** 2 - log_normalizers
        )

    def radial_cdf(t: Array, k: Array) -> Array:
        r, s = radii[k], scales[k]
        gaussian_part = s**2 * (gaussian_tail[k] - jnp.exp(-0.5 * ((t - r) / s) ** 2))
        shell_part = r * _SQRT_2PI * s * (ndtr((t - r) / s) - ndtr(-ratio[k]))
        return (gaussian_part + shell_part) / radial_mass[k]

    def draw(rng_key: PRNGKey, num_samples: int) -> Array:
        ring_key, radius_key, angle_key = jax.random.split(rng_key, 3)
        k = jax.random.categorical(ring_key, log_weights, shape=(num_samples,))
        u = jax.random.uniform(radius_key, (num_samples,), dtype)

        def bisect(_: int, bounds: tuple[Array, Array]) -> tuple[Array, Array]:
            low, high = bounds
            middle = 0.5 * (low + high)
            below = radial_cdf(middle, k) < u
            return jnp.where(below, middle, low), jnp.where(below, high, middle)

        low, high = jnp.zeros_like(u), radii[k] + 12.0 * scales[k]
        low, high = jax.lax.fori_loop(0, _BISECTION_STEPS, bisect, (low, high))
        radius = 0.5 * (low + high)
        angle = jax.random.uniform(angle_key, (num_samples,), dtype, 0.0, 2.0 * math.pi)
        return radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)

    return make_target(
        logdensity_fn=logdensity_fn,
        draw=draw,
        event_shape=(2,),
        is_normalized=True,
        mean=jnp.zeros(2, dtype),
        covariance=constant(variance * np.eye(2)),
        name="rings",
        parameters={"radii": radii, "scales": scales, "weights": weights},
    )


__all__ = ["rings"]

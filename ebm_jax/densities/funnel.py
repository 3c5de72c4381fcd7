"""Neal's funnel: a hierarchical target whose scale varies by orders of magnitude.

The position is :math:`(v, x_1, \\dots, x_{d-1})` with
:math:`v \\sim N(0, \\sigma^2)` and :math:`x_i \\mid v \\sim N(0, e^{v})` independently:

.. math::

   f(v, x) = -\\frac{v^2}{2\\sigma^2} - \\log\\sigma - \\frac{d-1}{2} v
             - \\frac{e^{-v}}{2}\\sum_{i=1}^{d-1} x_i^2 - \\frac{d}{2}\\log 2\\pi,

normalised. Exact samples are ancestral: :math:`v = \\sigma z_0`,
:math:`x_i = e^{v/2} z_i`. The mean is 0 and the covariance is diagonal with
:math:`\\mathrm{Var}[v] = \\sigma^2` and
:math:`\\mathrm{Var}[x_i] = E[e^{v}] = e^{\\sigma^2/2}` (:math:`e^{9/2}` for Neal's
:math:`\\sigma = 3`); :math:`v` and :math:`x_i` are uncorrelated but dependent.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ebm_jax._validation import check_int, check_positive_scalar
from ebm_jax.densities.base import Target, as_float_array, make_target
from ebm_jax.types import Array, ArrayLike, PRNGKey

_LOG_2PI = math.log(2.0 * math.pi)


def funnel(dim: int = 10, scale: ArrayLike = 3.0) -> Target:
    """Neal's funnel in ``dim`` dimensions.

    .. math:: p(v, x) = N(v; 0, \\sigma^2) \\prod_{i=1}^{d-1} N(x_i; 0, e^{v}).

    Args:
      dim: total dimension :math:`d \\ge 2`: the position is
        ``[v, x_1, ..., x_{d-1}]`` (Neal uses :math:`d = 10`).
      scale: :math:`\\sigma > 0`, the standard deviation of :math:`v` (Neal: 3).

    Returns:
      A normalised :class:`Target` with event shape ``(dim,)``, mean 0 and
      covariance :math:`\\mathrm{diag}(\\sigma^2, e^{\\sigma^2/2}, \\dots)`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax import densities
      >>> target = densities.funnel(dim=3, scale=1.0)
      >>> jnp.diag(target.covariance)  # (σ², e^{1/2}, e^{1/2})
      Array([1.       , 1.6487212, 1.6487212], dtype=float32)

    References:
      Neal (2003), *Slice sampling*, Annals of Statistics 31(3), §8.
    """
    dim = check_int(dim, "dim", minimum=2)
    check_positive_scalar(scale, "scale")
    scale = as_float_array(scale, "scale", ndim=0)
    dtype = scale.dtype
    normalizer = jnp.log(scale) + 0.5 * dim * _LOG_2PI

    def logdensity_fn(position: Array) -> Array:
        v, x = position[0], position[1:]
        return (
            -0.5 * (v / scale) ** 2
            - 0.5 * (dim - 1) * v
            - 0.5 * jnp.exp(-v) * jnp.sum(x**2)
            - normalizer
        )

    def draw(rng_key: PRNGKey, num_samples: int) -> Array:
        noise = jax.random.normal(rng_key, (num_samples, dim), dtype)
        v = scale * noise[:, :1]
        return jnp.concatenate([v, jnp.exp(0.5 * v) * noise[:, 1:]], axis=-1)

    variances = jnp.full(dim, jnp.exp(0.5 * scale**2), dtype).at[0].set(scale**2)
    return make_target(
        logdensity_fn=logdensity_fn,
        draw=draw,
        event_shape=(dim,),
        is_normalized=True,
        mean=jnp.zeros(dim, dtype),
        covariance=jnp.diag(variances),
        name="funnel",
        parameters={"scale": scale},
    )


__all__ = ["funnel"]

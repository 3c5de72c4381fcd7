"""The twisted Gaussian ("banana") of Haario, Saksman & Tamminen (1999).

A Gaussian :math:`N(0, \\mathrm{diag}(a^2, 1, \\dots, 1))` composed with the
twist :math:`\\phi(x) = (x_1,\\; x_2 + b(x_1^2 - a^2),\\; x_3, \\dots, x_d)`:

.. math::

   f(x) = \\log N\\big(\\phi(x);\\, 0,\\, \\mathrm{diag}(a^2, 1, \\dots, 1)\\big)
        = -\\frac{x_1^2}{2a^2} - \\frac{(x_2 + b(x_1^2 - a^2))^2}{2}
          - \\sum_{i \\ge 3} \\frac{x_i^2}{2} - \\log a - \\frac{d}{2}\\log 2\\pi .

:math:`\\phi` has unit Jacobian determinant (it shears :math:`x_2` by a
function of :math:`x_1`), so :math:`f` is normalised, and
:math:`x = \\phi^{-1}(y) = (y_1, y_2 - b(y_1^2 - a^2), y_3, \\dots)` with
:math:`y \\sim N(0, \\mathrm{diag}(a^2, 1, \\dots))` is an exact sample. The
moments follow from :math:`E[y_1^3] = 0` and :math:`\\mathrm{Var}[y_1^2] = 2a^4`:

.. math:: E[x] = 0, \\qquad \\mathrm{Cov}[x] = \\mathrm{diag}(a^2,\\; 1 + 2a^4b^2,\\; 1, \\dots, 1).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ebm_jax._validation import check_int, check_positive_scalar
from ebm_jax.densities.base import Target, as_float_array, make_target
from ebm_jax.types import Array, ArrayLike, PRNGKey

_LOG_2PI = math.log(2.0 * math.pi)


def banana(scale: ArrayLike = 10.0, curvature: ArrayLike = 0.03, dim: int = 2) -> Target:
    """Haario et al.'s twisted Gaussian in ``dim`` dimensions.

    .. math:: p(x) = N\\big((x_1, x_2 + b(x_1^2 - a^2), x_3, \\dots);\\, 0,\\,
       \\mathrm{diag}(a^2, 1, \\dots, 1)\\big).

    Args:
      scale: :math:`a > 0`, the standard deviation of :math:`x_1`. Haario et
        al. use :math:`a = 10`.
      curvature: :math:`b`, how strongly the banana bends (any finite real;
        0 gives a Gaussian). Haario et al. use 0.03 (moderate) and 0.1 (strong).
      dim: :math:`d \\ge 2`; coordinates 3 to d are standard normal.

    Returns:
      A normalised :class:`Target` with event shape ``(dim,)`` and closed-form
      ``mean`` and ``covariance``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax import densities
      >>> target = densities.banana(scale=1.0, curvature=1.0)
      >>> target.covariance  # diag(a², 1 + 2 a⁴ b²)
      Array([[1., 0.],
             [0., 3.]], dtype=float32)

    References:
      Haario, Saksman & Tamminen (1999), *Adaptive proposal distribution for
      random walk Metropolis algorithm*, Computational Statistics 14(3).
    """
    check_positive_scalar(scale, "scale")
    scale = as_float_array(scale, "scale", ndim=0)
    curvature = as_float_array(curvature, "curvature", ndim=0)
    dim = check_int(dim, "dim", minimum=2)
    dtype = jnp.result_type(scale, curvature)
    scale, curvature = scale.astype(dtype), curvature.astype(dtype)
    normalizer = jnp.log(scale) + 0.5 * dim * _LOG_2PI

    def untwist(x: Array) -> Array:
        """:math:`\\phi(x)`, which is standard Gaussian after scaling x_1 by 1/a."""
        return x.at[..., 1].add(curvature * (x[..., 0] ** 2 - scale**2))

    def logdensity_fn(x: Array) -> Array:
        y = untwist(x)
        return -0.5 * (y[0] / scale) ** 2 - 0.5 * jnp.sum(y[1:] ** 2) - normalizer

    def draw(rng_key: PRNGKey, num_samples: int) -> Array:
        y = jax.random.normal(rng_key, (num_samples, dim), dtype)
        y = y.at[:, 0].multiply(scale)
        return y.at[:, 1].add(-curvature * (y[:, 0] ** 2 - scale**2))

    variances = jnp.ones(dim, dtype).at[0].set(scale**2)
    variances = variances.at[1].set(1.0 + 2.0 * scale**4 * curvature**2)
    return make_target(
        logdensity_fn=logdensity_fn,
        draw=draw,
        event_shape=(dim,),
        is_normalized=True,
        mean=jnp.zeros(dim, dtype),
        covariance=jnp.diag(variances),
        name="banana",
        parameters={"scale": scale, "curvature": curvature},
    )


__all__ = ["banana"]

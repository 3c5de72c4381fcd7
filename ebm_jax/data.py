"""Datasets: pure, keyed, jittable 2-D toy generators and the 8×8 handwritten digits.

The 2-D toys are the usual benchmark distributions for density estimation and
EBMs, popularised by FFJORD (Grathwohl et al. 2019) and earlier by WGAN-GP
(eight Gaussians, swiss roll) and the structured VAE (pinwheel). Every
generator is ``name(rng_key, num_samples) -> Array`` of shape
``(num_samples, 2)``, float32, built from :mod:`jax.random` only, so it is
pure, runs under :func:`jax.jit` (``num_samples`` static) and under
:func:`jax.vmap` over keys. All are scaled to roughly :math:`[-4, 4]^2` with a
mean near 0, so the one box :data:`TOY_BOUNDS` holds essentially all of their
mass (at least 99.9%; tested), which makes a single quadrature box
(:func:`ebm_jax.diagnostics.nll_2d_quadrature`) work for every toy.

The definitions follow the widely used FFJORD versions, written here from their
mathematical description, with one change: counts that FFJORD fixes (equal
numbers per mode, evenly spaced angles) are drawn at random, so every
generator returns iid samples of a well-defined density. Three toys have a
closed-form normalised log-density, for exact test NLLs:
:func:`eight_gaussians_logdensity`, :func:`rings_logdensity` and
:func:`checkerboard_logdensity` (collected in :data:`TOY_LOGDENSITIES`).

:func:`load_digits` gives scikit-learn's bundled 8×8 digits (offline) with a
fixed, stratified train/test split; scikit-learn is the optional extra
``pip install "ebm_jax[data]"``.

References:
  Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud (2019), *FFJORD:
  Free-form continuous dynamics for scalable reversible generative models*,
  ICLR, arXiv:1810.01367.
  Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville (2017), *Improved training
  of Wasserstein GANs*, NeurIPS, arXiv:1704.00028.
  Johnson, Duvenaud, Wiltschko, Datta & Adams (2016), *Composing graphical
  models with neural networks for structured representations and fast
  inference*, NeurIPS, arXiv:1603.06277.
  Alpaydin & Kaynak (1998), *Optical recognition of handwritten digits*, UCI
  Machine Learning Repository.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._validation import check_int, check_key, check_probability
from ebm_jax.densities.base import SampleFn
from ebm_jax.densities.rings import _safe_norm
from ebm_jax.types import Array, ArrayLike, LogDensityFn, PRNGKey

TOY_BOUNDS: tuple[tuple[float, float], tuple[float, float]] = ((-4.5, 4.5), (-4.5, 4.5))
"""``((x_min, x_max), (y_min, y_max))``: one box holding ≥ 99.9% of every toy's mass."""

_DTYPE = jnp.float32

# Eight Gaussians: FFJORD's centres (±4, 0), (0, ±4), (±√8, ±√8) and std 0.5, divided by √2.
_EIGHT_RADIUS = 2.0 * math.sqrt(2.0)
_EIGHT_SCALE = math.sqrt(2.0) / 4.0
_EIGHT_ANGLES = np.arange(8) * np.pi / 4.0
_EIGHT_CENTRES = _EIGHT_RADIUS * np.stack([np.cos(_EIGHT_ANGLES), np.sin(_EIGHT_ANGLES)], -1)

# Rings: FFJORD's four circles of radii 3 · (1/4, 1/2, 3/4, 1) with Gaussian noise 0.08.
_RING_RADII = np.array([0.75, 1.5, 2.25, 3.0])
_RING_NOISE = 0.08

# Checkerboard: the 8 "black" 2×2 squares of [-4, 4]², each of mass 1/8.
_CHECKER_HALF_WIDTH = 4.0
_CHECKER_SIDE = 2.0
_CHECKER_LOG_DENSITY = -math.log(32.0)  # uniform over a total black area of 8 · 4 = 32


# --------------------------------------------------------------------------------------
# Samplers of the toys (pure; compiled once per num_samples)
# --------------------------------------------------------------------------------------


def _unit_circle(angle: Array) -> Array:
    return jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)


def _draw_eight_gaussians(rng_key: PRNGKey, num_samples: int) -> Array:
    mode_key, noise_key = jax.random.split(rng_key)
    modes = jax.random.randint(mode_key, (num_samples,), 0, 8)
    noise = jax.random.normal(noise_key, (num_samples, 2), _DTYPE)
    return jnp.asarray(_EIGHT_CENTRES, _DTYPE)[modes] + _EIGHT_SCALE * noise


def _draw_two_moons(rng_key: PRNGKey, num_samples: int) -> Array:
    moon_key, angle_key, noise_key = jax.random.split(rng_key, 3)
    is_lower = jax.random.bernoulli(moon_key, 0.5, (num_samples, 1))
    angle = jax.random.uniform(angle_key, (num_samples,), _DTYPE, 0.0, math.pi)
    upper_arc = _unit_circle(angle)
    lower_arc = jnp.array([1.0, 0.5], _DTYPE) - upper_arc
    arc = jnp.where(is_lower, lower_arc, upper_arc)
    noise = jax.random.normal(noise_key, (num_samples, 2), _DTYPE)
    return 2.0 * (arc + 0.1 * noise) - jnp.array([1.0, 0.2], _DTYPE)


def _draw_pinwheel(rng_key: PRNGKey, num_samples: int) -> Array:
    arm_key, noise_key = jax.random.split(rng_key)
    arm = jax.random.randint(arm_key, (num_samples,), 0, 5)
    noise = jax.random.normal(noise_key, (num_samples, 2), _DTYPE)
    radial = 1.0 + 0.3 * noise[:, 0]
    tangential = 0.1 * noise[:, 1]
    # The twist grows like exp(radial): points further out are rotated further.
    angle = 2.0 * math.pi * arm / 5.0 + 0.25 * jnp.exp(radial)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    return 2.0 * jnp.stack([radial * cos - tangential * sin, radial * sin + tangential * cos], -1)


def _draw_checkerboard(rng_key: PRNGKey, num_samples: int) -> Array:
    x_key, row_key, y_key = jax.random.split(rng_key, 3)
    x = jax.random.uniform(x_key, (num_samples,), _DTYPE, -_CHECKER_HALF_WIDTH, _CHECKER_HALF_WIDTH)
    column = jnp.floor(x / _CHECKER_SIDE).astype(jnp.int32)
    # Black squares are those with column + row even: two rows per column.
    row = 2 * jax.random.randint(row_key, (num_samples,), -1, 1) + jnp.mod(column, 2)
    y = _CHECKER_SIDE * (row + jax.random.uniform(y_key, (num_samples,), _DTYPE))
    return jnp.stack([x, y], axis=-1)


def _draw_rings(rng_key: PRNGKey, num_samples: int) -> Array:
    ring_key, angle_key, noise_key = jax.random.split(rng_key, 3)
    ring = jax.random.randint(ring_key, (num_samples,), 0, _RING_RADII.shape[0])
    angle = jax.random.uniform(angle_key, (num_samples,), _DTYPE, 0.0, 2.0 * math.pi)
    radius = jnp.asarray(_RING_RADII, _DTYPE)[ring]
    noise = jax.random.normal(noise_key, (num_samples, 2), _DTYPE)
    return radius[:, None] * _unit_circle(angle) + _RING_NOISE * noise


def _draw_swiss_roll(rng_key: PRNGKey, num_samples: int) -> Array:
    turn_key, noise_key = jax.random.split(rng_key)
    turn = 1.5 * math.pi * (1.0 + 2.0 * jax.random.uniform(turn_key, (num_samples,), _DTYPE))
    noise = jax.random.normal(noise_key, (num_samples, 2), _DTYPE)
    return (turn[:, None] * _unit_circle(turn) + noise) / 5.0


def _draw_two_spirals(rng_key: PRNGKey, num_samples: int) -> Array:
    turn_key, arm_key, jitter_key, noise_key = jax.random.split(rng_key, 4)
    # sqrt of a uniform: points spread evenly along the spiral's growing length.
    turn = 3.0 * math.pi * jnp.sqrt(jax.random.uniform(turn_key, (num_samples,), _DTYPE))
    arm_sign = jnp.where(jax.random.bernoulli(arm_key, 0.5, (num_samples, 1)), 1.0, -1.0)
    jitter = jax.random.uniform(jitter_key, (num_samples, 2), _DTYPE, 0.0, 0.5)
    spiral = jnp.stack([-turn * jnp.cos(turn), turn * jnp.sin(turn)], axis=-1)
    noise = jax.random.normal(noise_key, (num_samples, 2), _DTYPE)
    return (arm_sign * (spiral + jitter) / 3.0 + 0.1 * noise).astype(_DTYPE)


_compiled = {
    name: jax.jit(draw, static_argnums=1)
    for name, draw in {
        "eight_gaussians": _draw_eight_gaussians,
        "two_moons": _draw_two_moons,
        "pinwheel": _draw_pinwheel,
        "checkerboard": _draw_checkerboard,
        "rings": _draw_rings,
        "swiss_roll": _draw_swiss_roll,
        "two_spirals": _draw_two_spirals,
    }.items()
}


def _draw(name: str, rng_key: PRNGKey, num_samples: int) -> Array:
    check_key(rng_key)  # shape and dtype only, so it also runs under a caller's jit
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    return _compiled[name](rng_key, num_samples)


# --------------------------------------------------------------------------------------
# Public generators
# --------------------------------------------------------------------------------------


def eight_gaussians(rng_key: PRNGKey, num_samples: int) -> Array:
    """Eight isotropic Gaussians with equal weights, evenly spaced on a circle.

    .. math::
       p(x) = \\frac18 \\sum_{k=0}^{7} N\\big(x;\\, r(\\cos\\tfrac{k\\pi}{4},
       \\sin\\tfrac{k\\pi}{4}),\\, s^2 I\\big), \\qquad r = 2\\sqrt2,\\; s = \\sqrt2/4,

    FFJORD's centres at radius 4 and standard deviation 0.5, divided by
    :math:`\\sqrt2`. Mean 0, covariance :math:`(r^2/2 + s^2) I = 4.125\\, I`.
    The log-density is :func:`eight_gaussians_logdensity`.

    Args:
      rng_key: JAX PRNG key.
      num_samples: number of samples, a Python int ``>= 1`` (static under ``jit``).

    Returns:
      Samples of shape ``(num_samples, 2)``, float32.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import data
      >>> x = data.eight_gaussians(jax.random.key(0), 1000)
      >>> x.shape, x.dtype
      ((1000, 2), dtype('float32'))
      >>> radius = jnp.linalg.norm(x, axis=-1)
      >>> bool(jnp.abs(jnp.median(radius) - 2 * jnp.sqrt(2.0)) < 0.1)
      True

    References:
      Gulrajani et al. (2017), arXiv:1704.00028; Grathwohl et al. (2019),
      arXiv:1810.01367.
    """
    return _draw("eight_gaussians", rng_key, num_samples)


def two_moons(rng_key: PRNGKey, num_samples: int) -> Array:
    """Two interleaving half circles ("moons") with Gaussian noise.

    .. math::
       x = 2(a + 0.1\\,\\varepsilon) - (1, 0.2), \\qquad
       a = (\\cos t, \\sin t) \\text{ or } (1 - \\cos t, \\tfrac12 - \\sin t),

    each moon with probability 1/2, :math:`t \\sim U[0, \\pi]`,
    :math:`\\varepsilon \\sim N(0, I)`: scikit-learn's ``make_moons`` with noise
    0.1, mapped by FFJORD's affine map. Mean :math:`(0, 0.3)`.

    Args:
      rng_key: JAX PRNG key.
      num_samples: number of samples, a Python int ``>= 1`` (static under ``jit``).

    Returns:
      Samples of shape ``(num_samples, 2)``, float32.

    Examples:
      >>> import jax
      >>> from ebm_jax import data
      >>> data.two_moons(jax.random.key(0), 3).shape
      (3, 2)

    References:
      Grathwohl et al. (2019), arXiv:1810.01367.
    """
    return _draw("two_moons", rng_key, num_samples)


def pinwheel(rng_key: PRNGKey, num_samples: int) -> Array:
    """Five spiral arms ("pinwheel"), each an increasingly twisted Gaussian blob.

    .. math::
       x = 2 R(\\theta) (u, v)^\\top, \\qquad
       \\theta = \\tfrac{2\\pi k}{5} + \\tfrac14 e^{u},

    with arm :math:`k \\sim U\\{0, \\dots, 4\\}`, radial coordinate
    :math:`u \\sim N(1, 0.3^2)`, tangential :math:`v \\sim N(0, 0.1^2)` and
    :math:`R(\\theta)` the rotation by :math:`\\theta`. Mean 0 and, by the
    five-fold symmetry, covariance :math:`2 E[u^2 + v^2] I = 2.2\\, I`.

    Args:
      rng_key: JAX PRNG key.
      num_samples: number of samples, a Python int ``>= 1`` (static under ``jit``).

    Returns:
      Samples of shape ``(num_samples, 2)``, float32.

    Examples:
      >>> import jax
      >>> from ebm_jax import data
      >>> data.pinwheel(jax.random.key(0), 3).shape
      (3, 2)

    References:
      Johnson et al. (2016), arXiv:1603.06277; Grathwohl et al. (2019),
      arXiv:1810.01367.
    """
    return _draw("pinwheel", rng_key, num_samples)


def checkerboard(rng_key: PRNGKey, num_samples: int) -> Array:
    """Uniform on the 8 "black" squares of a 4×4 checkerboard covering :math:`[-4, 4)^2`.

    .. math::
       p(x) = \\tfrac{1}{32}\\, \\mathbb 1\\big[x \\in [-4, 4)^2,\\;
       \\lfloor x_1/2 \\rfloor + \\lfloor x_2/2 \\rfloor \\text{ even}\\big].

    Squares have side 2 and are half-open, :math:`[2i, 2i + 2) \\times [2j, 2j + 2)`.
    Mean 0; variances :math:`16/3`; covariance :math:`E[x_1 x_2] = 1`. The
    log-density is :func:`checkerboard_logdensity`.

    Args:
      rng_key: JAX PRNG key.
      num_samples: number of samples, a Python int ``>= 1`` (static under ``jit``).

    Returns:
      Samples of shape ``(num_samples, 2)``, float32.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import data
      >>> x = data.checkerboard(jax.random.key(0), 1000)
      >>> cells = jnp.floor(x / 2).astype(int)
      >>> bool(jnp.all((cells[:, 0] + cells[:, 1]) % 2 == 0))
      True

    References:
      Grathwohl et al. (2019), arXiv:1810.01367.
    """
    return _draw("checkerboard", rng_key, num_samples)


def rings(rng_key: PRNGKey, num_samples: int) -> Array:
    """Four concentric circles of radii 0.75, 1.5, 2.25, 3 blurred by Gaussian noise.

    .. math::
       x = r_k (\\cos\\phi, \\sin\\phi) + \\sigma \\varepsilon, \\qquad
       k \\sim U\\{1, \\dots, 4\\},\\; \\phi \\sim U[0, 2\\pi),\\; \\sigma = 0.08 .

    FFJORD places the points at evenly spaced angles with equal counts per
    ring; here both are random, so samples are iid from the density
    :func:`rings_logdensity`. Mean 0, covariance
    :math:`(\\overline{r^2}/2 + \\sigma^2) I`. (Not the radial-shell target
    :func:`ebm_jax.densities.rings`.)

    Args:
      rng_key: JAX PRNG key.
      num_samples: number of samples, a Python int ``>= 1`` (static under ``jit``).

    Returns:
      Samples of shape ``(num_samples, 2)``, float32.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import data
      >>> radius = jnp.linalg.norm(data.rings(jax.random.key(0), 1000), axis=-1)
      >>> bool(jnp.all(jnp.abs(radius / 0.75 - jnp.round(radius / 0.75)) < 0.5))
      True

    References:
      Grathwohl et al. (2019), arXiv:1810.01367.
    """
    return _draw("rings", rng_key, num_samples)


def swiss_roll(rng_key: PRNGKey, num_samples: int) -> Array:
    """A noisy 2-D swiss roll (spiral of growing radius).

    .. math::
       x = \\big(t (\\cos t, \\sin t) + \\varepsilon\\big) / 5, \\qquad
       t \\sim U[\\tfrac{3\\pi}{2}, \\tfrac{9\\pi}{2}],\\; \\varepsilon \\sim N(0, I),

    the first and third coordinates of scikit-learn's ``make_swiss_roll`` with
    noise 1, divided by 5 as in FFJORD. Its mean is not 0 but
    :math:`(2/5,\\, 2/(15\\pi)) \\approx (0.4, 0.04)`.

    Args:
      rng_key: JAX PRNG key.
      num_samples: number of samples, a Python int ``>= 1`` (static under ``jit``).

    Returns:
      Samples of shape ``(num_samples, 2)``, float32.

    Examples:
      >>> import jax
      >>> from ebm_jax import data
      >>> data.swiss_roll(jax.random.key(0), 3).shape
      (3, 2)

    References:
      Gulrajani et al. (2017), arXiv:1704.00028; Grathwohl et al. (2019),
      arXiv:1810.01367.
    """
    return _draw("swiss_roll", rng_key, num_samples)


def two_spirals(rng_key: PRNGKey, num_samples: int) -> Array:
    """Two interleaved spiral arms, point-symmetric about the origin.

    .. math::
       x = \\pm\\tfrac13 \\big((-t\\cos t,\\, t\\sin t) + j\\big) + 0.1\\,\\varepsilon,
       \\qquad t = 3\\pi\\sqrt{u},

    with the sign :math:`\\pm` (the arm) equally likely, :math:`u \\sim U[0, 1]`
    (so :math:`t` has density :math:`2t / (3\\pi)^2` on :math:`[0, 3\\pi]`),
    jitter :math:`j \\sim U[0, \\tfrac12]^2` and :math:`\\varepsilon \\sim N(0, I)`.
    Mean 0.

    Args:
      rng_key: JAX PRNG key.
      num_samples: number of samples, a Python int ``>= 1`` (static under ``jit``).

    Returns:
      Samples of shape ``(num_samples, 2)``, float32.

    Examples:
      >>> import jax
      >>> from ebm_jax import data
      >>> data.two_spirals(jax.random.key(0), 3).shape
      (3, 2)

    References:
      Grathwohl et al. (2019), arXiv:1810.01367.
    """
    return _draw("two_spirals", rng_key, num_samples)


TOY_DATASETS: Mapping[str, SampleFn] = types.MappingProxyType(
    {
        "eight_gaussians": eight_gaussians,
        "two_moons": two_moons,
        "pinwheel": pinwheel,
        "checkerboard": checkerboard,
        "rings": rings,
        "swiss_roll": swiss_roll,
        "two_spirals": two_spirals,
    }
)
"""Read-only registry ``name -> generator(rng_key, num_samples)`` of the 2-D toys."""


def toy_2d(name: str, rng_key: PRNGKey, num_samples: int) -> Array:
    """Samples of the 2-D toy called ``name`` (a key of :data:`TOY_DATASETS`).

    Args:
      name: one of ``sorted(TOY_DATASETS)``.
      rng_key: JAX PRNG key.
      num_samples: number of samples, a Python int ``>= 1`` (static under ``jit``).

    Returns:
      Samples of shape ``(num_samples, 2)``, float32.

    Raises:
      ValueError: if ``name`` is not a registered toy (the valid names are listed).

    Examples:
      >>> import jax
      >>> from ebm_jax import data
      >>> data.toy_2d("pinwheel", jax.random.key(0), 4).shape
      (4, 2)
    """
    if not isinstance(name, str) or name not in TOY_DATASETS:
        raise ValueError(f"name must be one of {sorted(TOY_DATASETS)}, got {name!r}")
    return TOY_DATASETS[name](rng_key, num_samples)


# --------------------------------------------------------------------------------------
# Exact log-densities
# --------------------------------------------------------------------------------------


def _as_point(x: ArrayLike, name: str = "x") -> Array:
    """One 2-D point as a floating array (shape checked statically, so also under jit)."""
    x = jnp.asarray(x)
    if x.shape != (2,):
        raise ValueError(f"{name} must be ONE point of shape (2,), got shape {x.shape}; vmap it")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def eight_gaussians_logdensity(x: ArrayLike) -> Array:
    """Normalised log-density of :func:`eight_gaussians` at ONE point.

    .. math::
       \\log p(x) = \\operatorname{logsumexp}_{k}
       \\Big(-\\frac{\\|x - \\mu_k\\|^2}{2 s^2}\\Big) - \\log 8 - \\log(2\\pi s^2).

    Args:
      x: one point, shape ``(2,)``.

    Returns:
      The scalar :math:`\\log p(x)`, in the floating dtype of ``x``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax import data
      >>> centre = jnp.array([2 * 2**0.5, 0.0])
      >>> round(float(data.eight_gaussians_logdensity(centre)), 4)  # log(1/8) - log(2π s²)
      -1.8379
    """
    x = _as_point(x)
    centres = jnp.asarray(_EIGHT_CENTRES, x.dtype)
    squared = jnp.sum((x - centres) ** 2, axis=-1)
    log_normalizer = math.log(8.0) + math.log(2.0 * math.pi * _EIGHT_SCALE**2)
    return jax.nn.logsumexp(-0.5 * squared / _EIGHT_SCALE**2) - log_normalizer


def rings_logdensity(x: ArrayLike) -> Array:
    """Normalised log-density of :func:`rings` at ONE point, in closed form.

    A circle of radius :math:`r` with uniform angle, convolved with
    :math:`N(0, \\sigma^2 I)`, has density (with :math:`\\rho = \\|x\\|`)

    .. math::
       \\frac{1}{2\\pi} \\int_0^{2\\pi} N\\big(x; r(\\cos\\phi, \\sin\\phi), \\sigma^2 I\\big)
       d\\phi = \\frac{1}{2\\pi\\sigma^2} e^{-(\\rho^2 + r^2)/2\\sigma^2}
       I_0\\big(\\rho r / \\sigma^2\\big),

    :math:`I_0` the modified Bessel function; it is evaluated as
    :math:`e^{-(\\rho - r)^2/2\\sigma^2}\\, \\mathrm{i0e}(\\rho r/\\sigma^2)`
    (``i0e(z) = e^{-z} I_0(z)``), which never overflows. The rings are averaged
    with equal weights.

    Args:
      x: one point, shape ``(2,)``.

    Returns:
      The scalar :math:`\\log p(x)`, in the floating dtype of ``x``; its
      gradient is finite everywhere, 0 at the origin.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax import data
      >>> on_ring = data.rings_logdensity(jnp.array([3.0, 0.0]))
      >>> between = data.rings_logdensity(jnp.array([2.6, 0.0]))
      >>> bool(on_ring > between + 5.0)
      True
    """
    x = _as_point(x)
    radius = _safe_norm(x)
    radii = jnp.asarray(_RING_RADII, x.dtype)
    argument = radius * radii / _RING_NOISE**2
    log_rings = -0.5 * ((radius - radii) / _RING_NOISE) ** 2 + jnp.log(
        jax.scipy.special.i0e(argument)
    )
    log_normalizer = math.log(_RING_RADII.shape[0]) + math.log(2.0 * math.pi * _RING_NOISE**2)
    return jax.nn.logsumexp(log_rings) - log_normalizer


def checkerboard_logdensity(x: ArrayLike) -> Array:
    """Normalised log-density of :func:`checkerboard` at ONE point: −log 32 or −inf.

    .. math::
       \\log p(x) = \\begin{cases} -\\log 32 & x \\in [-4, 4)^2,\\;
       \\lfloor x_1/2 \\rfloor + \\lfloor x_2/2 \\rfloor \\text{ even} \\\\
       -\\infty & \\text{otherwise.} \\end{cases}

    Piecewise constant, so its gradient (score) is 0 wherever it is finite: it
    serves exact NLLs, not score-based training.

    Args:
      x: one point, shape ``(2,)``.

    Returns:
      The scalar :math:`\\log p(x)`, in the floating dtype of ``x``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax import data
      >>> float(data.checkerboard_logdensity(jnp.array([0.5, 0.5])))  # -log 32
      -3.465735912322998
      >>> float(data.checkerboard_logdensity(jnp.array([-0.5, 0.5])))
      -inf
    """
    x = _as_point(x)
    cells = jnp.floor(x / _CHECKER_SIDE).astype(jnp.int32)
    inside = jnp.all((x >= -_CHECKER_HALF_WIDTH) & (x < _CHECKER_HALF_WIDTH))
    is_black = jnp.mod(cells[0] + cells[1], 2) == 0
    return jnp.where(inside & is_black, jnp.asarray(_CHECKER_LOG_DENSITY, x.dtype), -jnp.inf)


TOY_LOGDENSITIES: Mapping[str, LogDensityFn] = types.MappingProxyType(
    {
        "eight_gaussians": eight_gaussians_logdensity,
        "rings": rings_logdensity,
        "checkerboard": checkerboard_logdensity,
    }
)
"""Read-only registry of the toys whose normalised log-density is known in closed form."""


# --------------------------------------------------------------------------------------
# Handwritten digits
# --------------------------------------------------------------------------------------

_DIGITS_SCALES = ("unit", "standardize", "binary")
_DIGITS_MAX_PIXEL = 16.0


class Digits(NamedTuple):
    """A fixed train/test split of the 8×8 digits, images flattened to 64 pixels.

    Attributes:
      train: training images, shape ``(num_train, 64)``, float32.
      test: test images, shape ``(num_test, 64)``, float32.
      train_labels: digits 0–9 of ``train``, shape ``(num_train,)``, int32.
      test_labels: digits 0–9 of ``test``, shape ``(num_test,)``, int32.
      train_indices: rows of scikit-learn's ``load_digits().data`` in ``train``
        (increasing), shape ``(num_train,)``, int32.
      test_indices: rows in ``test`` (increasing), disjoint from ``train_indices``.
      pixel_mean: per-pixel offset subtracted after scaling to [0, 1], shape ``(64,)``.
      pixel_std: per-pixel divisor applied after the offset, shape ``(64,)``; so
        ``images * pixel_std + pixel_mean`` recovers the [0, 1] images (for
        ``scale="unit"`` and ``"standardize"``; binarisation is not invertible).
    """

    train: Array
    test: Array
    train_labels: Array
    test_labels: Array
    train_indices: Array
    test_indices: Array
    pixel_mean: Array
    pixel_std: Array


def _stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a seeded permutation; the first round(fraction · count) rows go to test."""
    generator = np.random.default_rng(seed)  # PCG64: identical streams on every platform
    test_rows = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        num_test = math.floor(test_fraction * rows.size + 0.5)
        if not 0 < num_test < rows.size:
            raise ValueError(
                f"test_fraction={test_fraction} leaves class {label} ({rows.size} images) "
                "with an empty train or test part"
            )
        test_rows.append(generator.permutation(rows)[:num_test])
    is_test = np.zeros(labels.shape[0], dtype=bool)
    is_test[np.concatenate(test_rows)] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def load_digits(*, test_fraction: float = 0.2, scale: str = "unit", seed: int = 0) -> Digits:
    """scikit-learn's 8×8 handwritten digits with a fixed, stratified train/test split.

    The 1797 images (pixel values 0..16, bundled with scikit-learn, so no
    download) are split per class: within each digit a permutation from
    ``numpy.random.default_rng(seed)`` sends the first
    :math:`\\lfloor f n_c + \\tfrac12 \\rfloor` images to test. The split is thus
    deterministic and identical on every machine (default: 1438 train, 359
    test). Pixels are then

    - ``"unit"``: divided by 16, in :math:`[0, 1]`;
    - ``"standardize"``: unit-scaled, then standardised per pixel with the
      *train* mean and standard deviation (``ddof=0``); pixels constant on the
      train set keep divisor 1;
    - ``"binary"``: 1 where the unit-scaled pixel is > 0.5, else 0 (for
      binary RBMs).

    Args:
      test_fraction: fraction :math:`f \\in (0, 1)` of each class held out.
      scale: ``"unit"``, ``"standardize"`` or ``"binary"``.
      seed: non-negative int seeding the split.

    Returns:
      A :class:`Digits` of float32 images of shape ``(n, 64)`` and int32 labels.

    Raises:
      ImportError: if scikit-learn is missing (``pip install "ebm_jax[data]"``).

    Examples:
      >>> from ebm_jax import data
      >>> digits = data.load_digits()
      >>> digits.train.shape, digits.test.shape
      ((1438, 64), (359, 64))

    References:
      Alpaydin & Kaynak (1998), *Optical recognition of handwritten digits*, UCI
      Machine Learning Repository (scikit-learn ships its 1797-image test set).
    """
    check_probability(test_fraction, "test_fraction")
    if scale not in _DIGITS_SCALES:
        raise ValueError(f"scale must be one of {_DIGITS_SCALES}, got {scale!r}")
    seed = check_int(seed, "seed", minimum=0)
    try:
        from sklearn.datasets import load_digits as _sklearn_load_digits
    except ImportError as exc:
        raise ImportError('load_digits needs scikit-learn: pip install "ebm_jax[data]"') from exc

    bunch: Any = _sklearn_load_digits()
    images = np.asarray(bunch.data, dtype=np.float64) / _DIGITS_MAX_PIXEL
    labels = np.asarray(bunch.target, dtype=np.int32)
    train_rows, test_rows = _stratified_split(labels, float(test_fraction), seed)

    pixel_mean, pixel_std = np.zeros(images.shape[1]), np.ones(images.shape[1])
    if scale == "standardize":
        pixel_mean = images[train_rows].mean(axis=0)
        spread = images[train_rows].std(axis=0)
        pixel_std = np.where(spread > 0, spread, 1.0)
        images = (images - pixel_mean) / pixel_std
    elif scale == "binary":
        images = (images > 0.5).astype(np.float64)

    def as_float32(values: np.ndarray) -> Array:
        return jnp.asarray(values, dtype=jnp.float32)

    return Digits(
        train=as_float32(images[train_rows]),
        test=as_float32(images[test_rows]),
        train_labels=jnp.asarray(labels[train_rows], jnp.int32),
        test_labels=jnp.asarray(labels[test_rows], jnp.int32),
        train_indices=jnp.asarray(train_rows, jnp.int32),
        test_indices=jnp.asarray(test_rows, jnp.int32),
        pixel_mean=as_float32(pixel_mean),
        pixel_std=as_float32(pixel_std),
    )


__all__ = [
    "TOY_BOUNDS",
    "TOY_DATASETS",
    "TOY_LOGDENSITIES",
    "Digits",
    "checkerboard",
    "checkerboard_logdensity",
    "eight_gaussians",
    "eight_gaussians_logdensity",
    "load_digits",
    "pinwheel",
    "rings",
    "rings_logdensity",
    "swiss_roll",
    "toy_2d",
    "two_moons",
    "two_spirals",
]

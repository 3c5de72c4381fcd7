"""Noise schedules: the β of each step of the forward chain (eq. 11.4) and the marginal noise.

The forward Markov chain applies eq. (11.4), :math:`x_t = \\sqrt{1-\\beta_t}\\,
x_{t-1} + \\sqrt{\\beta_t}\\,\\varepsilon_t`, for :math:`t = 1, \\dots, T`. Its
marginal is again of the lecture's one-shot form (11.5),

.. math::

   x_t = \\sqrt{\\bar\\alpha_t}\\, x_0 + \\sqrt{1 - \\bar\\alpha_t}\\, \\varepsilon,
   \\qquad \\bar\\alpha_t = \\prod_{s=1}^{t} (1 - \\beta_s),

so a step :math:`t` of the chain is the perturbation of eq. (11.5) with the
*marginal* noise level :math:`\\bar\\beta_t = 1 - \\bar\\alpha_t`. Noise-conditional
models :math:`S_w(x', \\beta)` are conditioned on this marginal level, and
:class:`NoiseSchedule` carries both sequences.

References:
  Ho, Jain & Abbeel (2020), *Denoising diffusion probabilistic models*,
  NeurIPS, arXiv:2006.11239 (the linear schedule).
  Nichol & Dhariwal (2021), *Improved denoising diffusion probabilistic
  models*, ICML, arXiv:2102.09672 (the cosine schedule).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from ebm_jax._validation import check_int, check_positive_scalar
from ebm_jax.types import Array


class NoiseSchedule(NamedTuple):
    """The per-step and marginal noise levels of a T-step forward chain.

    Index ``t - 1`` of each array belongs to step :math:`t = 1, \\dots, T`.

    Attributes:
      betas: :math:`\\beta_t \\in (0, 1)`, the variance added at step :math:`t`
        (eq. 11.4), shape ``(T,)``.
      alphas_cumprod: :math:`\\bar\\alpha_t = \\prod_{s \\le t} (1 - \\beta_s)`,
        shape ``(T,)``, decreasing.
      marginal_betas: :math:`\\bar\\beta_t = 1 - \\bar\\alpha_t`, the noise level
        of the one-shot perturbation (11.5) that gives :math:`x_t` from
        :math:`x_0`, shape ``(T,)``, increasing.
    """

    betas: Array
    alphas_cumprod: Array
    marginal_betas: Array

    @property
    def num_steps(self) -> int:
        """T, the number of steps of the forward chain."""
        return int(self.betas.shape[0])


def from_betas(betas: np.ndarray | Array) -> NoiseSchedule:
    """A :class:`NoiseSchedule` from per-step :math:`\\beta_t \\in (0, 1)`.

    The products are formed in float64 with NumPy and stored in float32, so
    :math:`\\bar\\beta_t` keeps its relative precision near :math:`t = 1`
    (computed as ``-expm1(sum(log1p(-beta)))``).

    Args:
      betas: shape ``(T,)``, every entry in the open interval (0, 1).

    Returns:
      The schedule.

    Examples:
      >>> from ebm_jax.diffusion import schedule
      >>> s = schedule.from_betas([0.5, 0.5])
      >>> s.alphas_cumprod.tolist(), s.marginal_betas.tolist()
      ([0.5, 0.25], [0.5, 0.75])
    """
    values = np.asarray(betas, dtype=np.float64)
    if values.ndim != 1 or values.shape[0] < 1:
        raise ValueError(f"betas must be a 1-D array with T >= 1 entries, got shape {values.shape}")
    if not np.all(np.isfinite(values)) or not np.all((values > 0) & (values < 1)):
        raise ValueError("betas must lie in the open interval (0, 1)")
    log_alphas_cumprod = np.cumsum(np.log1p(-values))
    return NoiseSchedule(
        betas=jnp.asarray(values, jnp.float32),
        alphas_cumprod=jnp.asarray(np.exp(log_alphas_cumprod), jnp.float32),
        marginal_betas=jnp.asarray(-np.expm1(log_alphas_cumprod), jnp.float32),
    )


def linear_schedule(
    num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> NoiseSchedule:
    """Linearly spaced :math:`\\beta_t` from ``beta_start`` to ``beta_end`` (Ho et al. 2020).

    .. math:: \\beta_t = \\beta_{\\text{start}} + \\frac{t - 1}{T - 1}
       (\\beta_{\\text{end}} - \\beta_{\\text{start}}), \\qquad t = 1, \\dots, T.

    Ho et al. use :math:`T = 1000`, for which :math:`\\bar\\alpha_T \\approx 4 \\cdot
    10^{-5}`, so :math:`x_T` is nearly :math:`N(0, I)`. The same endpoints with
    far fewer steps leave signal in :math:`x_T`; to keep the total noise of a
    1000-step chain with :math:`T` steps, scale both endpoints by
    :math:`1000 / T` (as Nichol & Dhariwal do).

    Args:
      num_steps: :math:`T \\ge 1`.
      beta_start: :math:`\\beta_1 \\in (0, 1)`.
      beta_end: :math:`\\beta_T \\in (0, 1)`.

    Returns:
      The schedule.

    Examples:
      >>> from ebm_jax.diffusion import schedule
      >>> s = schedule.linear_schedule(1000)
      >>> round(float(s.betas[0]), 6), round(float(s.betas[-1]), 6)
      (0.0001, 0.02)
      >>> float(s.alphas_cumprod[-1]) < 1e-4
      True

    References:
      Ho, Jain & Abbeel (2020), arXiv:2006.11239.
    """
    num_steps = check_int(num_steps, "num_steps", 1)
    for value, name in ((beta_start, "beta_start"), (beta_end, "beta_end")):
        check_positive_scalar(value, name)
        if not value < 1:
            raise ValueError(f"{name} must be < 1, got {value}")
    return from_betas(np.linspace(beta_start, beta_end, num_steps, dtype=np.float64))


def cosine_schedule(
    num_steps: int = 1000, offset: float = 0.008, max_beta: float = 0.999
) -> NoiseSchedule:
    """The cosine schedule of Nichol & Dhariwal (2021).

    .. math::

       \\bar\\alpha_t = \\frac{g(t)}{g(0)}, \\quad
       g(t) = \\cos^2\\Big(\\frac{t/T + s}{1 + s} \\cdot \\frac{\\pi}{2}\\Big), \\qquad
       \\beta_t = \\min\\Big(1 - \\frac{\\bar\\alpha_t}{\\bar\\alpha_{t-1}},\\;
       \\beta_{\\max}\\Big),

    with offset :math:`s` so that :math:`\\beta_1` is not vanishingly small, and
    :math:`\\beta_t` clipped at :math:`\\beta_{\\max}` to avoid the singularity at
    :math:`t = T`. Unlike the linear schedule it destroys information evenly in
    log signal-to-noise ratio, for any :math:`T`.

    Args:
      num_steps: :math:`T \\ge 1`.
      offset: :math:`s > 0`.
      max_beta: :math:`\\beta_{\\max} \\in (0, 1)`.

    Returns:
      The schedule.

    Examples:
      >>> from ebm_jax.diffusion import schedule
      >>> s = schedule.cosine_schedule(100)
      >>> bool(s.marginal_betas[-1] > 0.999), bool(s.marginal_betas[0] < 1e-3)
      (True, True)

    References:
      Nichol & Dhariwal (2021), arXiv:2102.09672.
    """
    num_steps = check_int(num_steps, "num_steps", 1)
    check_positive_scalar(offset, "offset")
    check_positive_scalar(max_beta, "max_beta")
    if not max_beta < 1:
        raise ValueError(f"max_beta must be < 1, got {max_beta}")
    steps = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    g = np.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    betas = np.minimum(1 - g[1:] / g[:-1], max_beta)
    return from_betas(betas)


__all__ = ["NoiseSchedule", "cosine_schedule", "from_betas", "linear_schedule"]

"""Diffusion, as the lecture derives it (§11.2.4–11.2.5).

Noise-perturbed distributions :math:`p(x' \\mid x) = N(\\sqrt{1-\\beta}\\, x, \\beta I)`
(eqs. 11.4–11.6), the perturbed score by Tweedie's formula (11.7–11.13), the
denoising objective (11.15–11.16) and samplers of the learned model.
"""

from ebm_jax.diffusion.schedule import NoiseSchedule, cosine_schedule, from_betas, linear_schedule

__all__ = ["NoiseSchedule", "cosine_schedule", "from_betas", "linear_schedule"]

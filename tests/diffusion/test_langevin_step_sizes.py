"""Annealed Langevin's steps (Song & Ermon 2019, capped): τ_i = min(ε/β̄_min, 1) β̄_i."""

from __future__ import annotations

import numpy as np
import pytest

from ebm_jax.diffusion import samplers, schedule

LEVELS = np.asarray(schedule.cosine_schedule(1000).marginal_betas)[::37]


@pytest.mark.parametrize("ratio", [1e-3, 0.5, 1.0, 4.0, 1e4], ids=lambda r: f"eps_{r:g}_min")
def test_steps_are_proportional_to_the_level_and_capped_at_it(ratio):
    """ε = ratio · β̄_min: below the cap τ_i = ε β̄_i / β̄_min (Song & Ermon's rule), at or
    above it τ_i = β̄_i. ULA on a point mass's level N(m, β̄_i I) contracts by
    1 − τ_i/β̄_i per step: within (−1, 1) for every ε, so it never diverges."""
    smallest = float(LEVELS.min())
    steps = np.asarray(samplers.langevin_step_sizes(ratio * smallest, LEVELS))
    assert steps.shape == LEVELS.shape and steps.dtype == LEVELS.dtype
    levels = LEVELS.astype(np.float64)
    np.testing.assert_allclose(steps, min(ratio, 1.0) * levels, rtol=1e-5)
    contraction = 1.0 - steps / levels
    assert np.all(np.abs(contraction) < 1.0)

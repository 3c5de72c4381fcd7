"""Every sampler with every schedule, in float32 and float64: finite, and the Gaussian closed form.

Data N(m, s² I) with m = (1, -2), s = 0.5: p_β = N(sqrt(1 - β) m, ((1 - β) s² + β) I),
so the exact score and log-density are linear and quadratic, and every sampler's
output has a known law: the samplers that end with the Tweedie mean at β̄_1
return N(m, v I) with v = s⁴ (1 - β̄_1) / ((1 - β̄_1) s² + β̄_1), the
probability flow returns p_{β̄_1} itself. The cosine schedules are the hard
case: their last level β̄_T rounds to 1 in float32 (T = 1000) and their first is
near 2.5e-4 (T = 200), where a level formed from β̄ instead of ᾱ gave NaN.

Tolerances: 2000 samples, SE of a mean s / sqrt(n) = 0.011 and of a variance
s² sqrt(2 / n) = 0.008; the gates add to 4 SE an allowance of 0.03 (means) and
0.1 relative (variances) for the discretisation of 25-200 levels and the
unadjusted Langevin bias. Measured on every schedule: means within 0.027,
variances within 8 %, except annealed Langevin, 5-17 % wide (its ULA steps).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.diffusion import ode, samplers, schedule, solvers

MEAN = np.array([1.0, -2.0])
DATA_VARIANCE = 0.25
NUM_SAMPLES = 2000
SCHEDULES = {
    "linear_1000": schedule.linear_schedule(1000),
    "cosine_1000": schedule.cosine_schedule(1000),
    "cosine_200": schedule.cosine_schedule(200),
}


def gaussian_logdensity(x, beta):
    variance = (1.0 - beta) * DATA_VARIANCE + beta
    return -0.5 * jnp.sum((x - jnp.sqrt(1.0 - beta) * jnp.asarray(MEAN, x.dtype)) ** 2) / variance


gaussian_score = jax.grad(gaussian_logdensity)

SAMPLERS = {
    "ancestral": lambda key, s, x: (
        samplers.ancestral_sample(key, gaussian_score, s, x, num_steps=200).samples
    ),
    "predictor_corrector": lambda key, s, x: (
        samplers.predictor_corrector_sample(key, gaussian_score, s, x, num_steps=100).samples
    ),
    "reverse_diffusion": lambda key, s, x: (
        samplers.predictor_corrector_sample(
            key,
            gaussian_score,
            s,
            x,
            num_steps=100,
            predictor="reverse_diffusion",
            variance="forward",
        ).samples
    ),
    "annealed_langevin": lambda key, s, x: (
        samplers.annealed_langevin_sample(
            key, gaussian_score, s, x, step_size=1e-4, num_steps=50, num_steps_per_level=10
        ).samples
    ),
    "annealed_mala": lambda key, s, x: (
        samplers.annealed_mala_sample(
            key, gaussian_logdensity, s, x, step_size=1e-4, num_steps=50, num_steps_per_level=5
        ).samples
    ),
    "ddim": lambda key, s, x: solvers.ddim_sample(key, gaussian_score, s, x, 100).samples,
    "dpm_solver": lambda key, s, x: solvers.dpm_solver_sample(gaussian_score, s, x, 25).samples,
    "probability_flow": lambda key, s, x: (
        ode.probability_flow_sample(gaussian_score, s, x, num_steps=25).positions
    ),
    "probability_flow_adaptive": lambda key, s, x: (
        ode.probability_flow_sample(
            gaussian_score, s, x, method="tsit5", rtol=1e-4, atol=1e-4
        ).positions
    ),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_sampler_is_finite_and_gaussian_on_every_schedule(dtype):
    # One test per dtype: the schedules share every compiled loop (same shapes).
    for schedule_name, noise_schedule in SCHEDULES.items():
        smallest = float(noise_schedule.marginal_betas[0])
        level_variance = (1.0 - smallest) * DATA_VARIANCE + smallest
        denoised_variance = DATA_VARIANCE**2 * (1.0 - smallest) / level_variance
        with jax.enable_x64(dtype == "float64"):
            x_T = samplers.initial_noise(jax.random.key(0), NUM_SAMPLES, (2,), jnp.dtype(dtype))
            outputs = {
                name: sample(jax.random.key(1), noise_schedule, x_T)
                for name, sample in SAMPLERS.items()
            }
        for name, out in outputs.items():
            case = (name, schedule_name, dtype)
            assert out.dtype == jnp.dtype(dtype), case
            out = np.asarray(out, np.float64)
            assert np.all(np.isfinite(out)), case
            if name.startswith("probability_flow"):
                mean, variance = np.sqrt(1.0 - smallest) * MEAN, level_variance
            else:
                mean, variance = MEAN, denoised_variance
            mean_gate = 4.0 * np.sqrt(variance / NUM_SAMPLES) + 0.03
            variance_gate = variance * (4.0 * np.sqrt(2.0 / NUM_SAMPLES) + 0.1)
            assert np.all(np.abs(out.mean(axis=0) - mean) < mean_gate), (case, out.mean(0))
            assert np.all(np.abs(out.var(axis=0) - variance) < variance_gate), (case, out.var(0))

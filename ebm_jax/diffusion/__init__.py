"""Diffusion, as the lecture derives it (§11.2.4–11.2.5).

Noise-perturbed distributions :math:`p(x' \\mid x) = N(\\sqrt{1-\\beta}\\, x, \\beta I)`
(eqs. 11.4–11.6) and the forward chain of a :class:`NoiseSchedule`, the
perturbed score by Tweedie's formula (11.7–11.13), the denoising objective
(11.15–11.16), samplers of the learned model (ancestral, annealed Langevin and
MALA, predictor-corrector, DDIM, DPM-Solver++, the probability-flow ODE) and
classifier-free guidance.
"""

from ebm_jax.diffusion import (
    forward,
    guidance,
    objective,
    ode,
    samplers,
    schedule,
    solvers,
    tweedie,
)
from ebm_jax.diffusion.forward import (
    forward_chain,
    forward_step,
    perturb,
    perturb_with_noise,
    perturbed_gaussian,
    perturbed_gaussian_mixture,
    perturbed_gaussian_mixture_logdensity,
)
from ebm_jax.diffusion.objective import denoising_loss
from ebm_jax.diffusion.ode import (
    LogLikelihoodResult,
    ProbabilityFlowResult,
    probability_flow_drift,
    probability_flow_encode,
    probability_flow_log_likelihood,
    probability_flow_sample,
)
from ebm_jax.diffusion.samplers import (
    AnnealedMALASamples,
    DiffusionSamples,
    ancestral_sample,
    annealed_langevin_sample,
    annealed_mala_sample,
    initial_noise,
    langevin_step_sizes,
    predictor_corrector_sample,
    sampling_steps,
)
from ebm_jax.diffusion.schedule import NoiseSchedule, cosine_schedule, from_betas, linear_schedule
from ebm_jax.diffusion.solvers import ddim_sample, dpm_solver_sample
from ebm_jax.diffusion.tweedie import tweedie_mean, tweedie_noise

__all__ = [
    "AnnealedMALASamples",
    "DiffusionSamples",
    "LogLikelihoodResult",
    "NoiseSchedule",
    "ProbabilityFlowResult",
    "ancestral_sample",
    "annealed_langevin_sample",
    "annealed_mala_sample",
    "cosine_schedule",
    "ddim_sample",
    "denoising_loss",
    "dpm_solver_sample",
    "forward",
    "forward_chain",
    "forward_step",
    "from_betas",
    "guidance",
    "initial_noise",
    "langevin_step_sizes",
    "linear_schedule",
    "objective",
    "ode",
    "perturb",
    "perturb_with_noise",
    "perturbed_gaussian",
    "perturbed_gaussian_mixture",
    "perturbed_gaussian_mixture_logdensity",
    "predictor_corrector_sample",
    "probability_flow_drift",
    "probability_flow_encode",
    "probability_flow_log_likelihood",
    "probability_flow_sample",
    "samplers",
    "sampling_steps",
    "schedule",
    "solvers",
    "tweedie",
    "tweedie_mean",
    "tweedie_noise",
]

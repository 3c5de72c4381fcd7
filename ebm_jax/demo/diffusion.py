"""Section 4, diffusion (§11.2.4–11.2.5): a 2-D toy and 8×8 digits, written to one JSON.

The two parts live in :mod:`ebm_jax.demo.diffusion_2d` and
:mod:`ebm_jax.demo.diffusion_digits`; both train by
:func:`~ebm_jax.demo.diffusion_fit.fit_noise_conditional_score`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ebm_jax import diffusion
from ebm_jax.demo.diffusion_2d import run_toy_2d
from ebm_jax.demo.diffusion_digits import run_digits


def run_diffusion(
    out_dir: Path,
    *,
    seed: int = 0,
    dataset: str = "eight_gaussians",
    num_train_steps: int = 4000,
    num_samples: int = 2000,
    num_ancestral_steps: int = 250,
    num_ode_steps: int = 50,
    num_langevin_levels: int = 100,
    num_likelihood_points: int = 1000,
    num_digits_train_steps: int = 6000,
    num_digit_samples: int = 1000,
    num_classifier_steps: int = 2000,
    quick: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Learn noise-conditional scores by eq. (11.16) on a 2-D toy and on digits; sample them.

    Both models are :class:`~ebm_jax.models.NoiseConditionalScore` networks on
    the linear schedule with :math:`T = 1000` (Ho et al. 2020), trained by the
    ε-weighted denoising loss :math:`\\|\\varepsilon + \\sqrt\\beta S_w(x',
    \\beta)\\|^2` (eq. 11.16 divided by :math:`\\beta`, same minimiser) with Adam
    on a cosine-decayed step size.

    2-D: the toy is divided by its standard deviation for training and the
    samples multiplied back. Ancestral sampling, the probability-flow ODE (Heun)
    and annealed Langevin dynamics start from the same :math:`x_T \\sim N(0, I)`;
    each is compared with test data by MMD² (at the median and at a fine
    bandwidth) and SW₂, beside two references: train data (the floor a perfect
    model reaches at this sample size) and the scaled starting points (which
    already match the data's mean and covariance); on the eight Gaussians also
    by the fraction of samples near the modes
    (:func:`~ebm_jax.demo.diffusion_2d.mode_coverage`). The probability-flow
    test NLL is that of :math:`p_{\\bar\\beta_1}`, the data perturbed by
    :math:`\\bar\\beta_1 = 10^{-4}` (negligible here), in the data's units,
    beside the exact NLL of the true density where the toy has one.

    Digits: pixels scaled to [-1, 1]; ancestral samples clipped back to [0, 1]
    and compared with the test digits by the Fréchet distance in the features of
    a classifier trained on the train digits, beside train digits (the floor)
    and the starting noise.

    Args:
      out_dir: where ``diffusion.json``, ``diffusion_2d.png`` and
        ``diffusion_digits.png`` are written.
      seed: seeds every key of the section.
      dataset: a key of :data:`ebm_jax.data.TOY_DATASETS`.
      num_train_steps: Adam steps on the toy (batch 256).
      num_samples: 2-D samples per sampler, and test points they are compared with.
      num_ancestral_steps: levels visited by ancestral sampling (its NFE), both parts.
      num_ode_steps: Heun steps of the probability-flow ODE (NFE twice that),
        for sampling and for the likelihood.
      num_langevin_levels: levels of annealed Langevin, 5 steps each.
      num_likelihood_points: test points of the probability-flow NLL.
      num_digits_train_steps: Adam steps on the digits (batch 128).
      num_digit_samples: generated digits, and train digits for the floor.
      num_classifier_steps: training steps of the feature classifier.
      quick: label the printouts, figures and JSON as quick mode; changes no size.
      progress: training progress bars; default off.

    Returns:
      The summary written to ``diffusion.json``: ``{"toy_2d": ..., "digits": ...,
      "quick_mode": ..., "warnings": ...}``, the warnings those of both parts.
    """
    noise_schedule = diffusion.linear_schedule(1000)
    toy = run_toy_2d(
        out_dir,
        noise_schedule,
        seed=seed,
        dataset=dataset,
        num_train_steps=num_train_steps,
        num_samples=num_samples,
        num_ancestral_steps=num_ancestral_steps,
        num_ode_steps=num_ode_steps,
        num_langevin_levels=num_langevin_levels,
        num_likelihood_points=num_likelihood_points,
        quick=quick,
        progress=progress,
    )
    digits = run_digits(
        out_dir,
        noise_schedule,
        seed=seed,
        num_train_steps=num_digits_train_steps,
        num_samples=num_digit_samples,
        num_ancestral_steps=num_ancestral_steps,
        num_classifier_steps=num_classifier_steps,
        quick=quick,
        progress=progress,
    )
    summary = {
        "quick_mode": quick,
        "toy_2d": toy,
        "digits": digits,
        "warnings": toy["warnings"] + digits["warnings"],
    }
    (out_dir / "diffusion.json").write_text(json.dumps(summary, indent=2))
    return summary

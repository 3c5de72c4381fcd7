"""Section 4, diffusion on 8×8 digits (§11.2.4–11.2.5): ancestral samples judged by features.

A noise-conditional score is learned by eq. (11.16) on digits with pixels
scaled to [-1, 1]; ancestral samples, clipped back to [0, 1], are compared with
the test digits by the Fréchet distance in the features of a classifier
trained on the train digits, beside train digits (the floor) and the starting
noise. Writes ``diffusion_digits.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax import data, diagnostics, diffusion, models
from ebm_jax.demo import report
from ebm_jax.demo.diffusion_fit import fit_noise_conditional_score


def run_digits(
    out_dir: Path,
    noise_schedule: diffusion.NoiseSchedule,
    *,
    seed: int,
    num_train_steps: int,
    num_samples: int,
    num_ancestral_steps: int,
    num_classifier_steps: int,
    quick: bool,
    progress: bool | None,
) -> dict[str, Any]:
    """Learn, sample and judge the digits part of :func:`ebm_jax.demo.run_diffusion`; draw it."""
    digits = data.load_digits()
    # Pixels in [-1, 1], as Ho et al. (2020) scale images: x_T ~ N(0, I) is then on their scale.
    train = 2.0 * jnp.asarray(digits.train) - 1.0
    keys = jax.random.split(jax.random.key(seed + 4), 5)
    score_fn, fit, train_seconds = fit_noise_conditional_score(
        keys[0],
        models.NoiseConditionalScore.digits_8x8(),
        noise_schedule,
        train,
        learning_rate=2e-3,
        num_steps=num_train_steps,
        batch_size=128,
        progress=progress,
    )
    initial = diffusion.initial_noise(keys[1], num_samples, (train.shape[1],))
    ancestral = diffusion.ancestral_sample(
        keys[2], score_fn, noise_schedule, initial, num_steps=num_ancestral_steps
    )
    as_images = lambda points: jnp.clip((points + 1.0) / 2.0, 0.0, 1.0)
    samples = as_images(ancestral.samples)

    classifier = models.train_digit_classifier(
        keys[3],
        digits.train,
        digits.train_labels,
        digits.test,
        digits.test_labels,
        num_steps=num_classifier_steps,
    )
    test_features = np.asarray(classifier.features(digits.test))

    def frechet_to_test(images: jax.Array) -> float:
        return diagnostics.frechet_distance(np.asarray(classifier.features(images)), test_features)

    predicted = np.bincount(np.asarray(classifier.predict(samples)), minlength=10)
    summary = {
        "quick_mode": quick,
        "dataset": "8x8 digits, pixels scaled to [-1, 1] (1438 train / 359 test)",
        "objective": "eq. 11.16, epsilon-weighted",
        "schedule": f"linear, T = {noise_schedule.num_steps}",
        "num_train_steps": num_train_steps,
        "train_seconds": train_seconds,
        "final_loss": float(jnp.mean(fit.losses[-100:])),
        "num_samples": num_samples,
        "sampler": "ancestral",
        "num_function_evaluations": ancestral.num_function_evaluations,
        "classifier_test_accuracy": classifier.test_accuracy,
        "frechet_samples_vs_test": frechet_to_test(samples),
        "frechet_train_vs_test": frechet_to_test(digits.train[:num_samples]),
        "frechet_noise_vs_test": frechet_to_test(as_images(initial)),
        "predicted_digit_counts": predicted.tolist(),
    }
    summary["warnings"] = digits_warnings(summary)
    _print_digits(summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot_digits(
        out_dir / "diffusion_digits.png", summary, np.asarray(samples[:64]), digits.test[:64]
    )
    return summary


def digits_warnings(summary: dict[str, Any]) -> list[str]:
    """A warning when the samples' Fréchet distance sits nearer the noise's than the floor.

    Examples:
      >>> digits_warnings({"frechet_samples_vs_test": 9.0, "frechet_train_vs_test": 4.9,
      ...                  "frechet_noise_vs_test": 52.0})
      []
    """
    return report.gap_warnings(
        "diffusion digits, ancestral",
        "Fréchet distance",
        summary["frechet_samples_vs_test"],
        summary["frechet_train_vs_test"],
        summary["frechet_noise_vs_test"],
    )


def _print_digits(summary: dict[str, Any]) -> None:
    title = "Diffusion: noise-conditional score on 8x8 digits, ancestral sampling"
    print(report.header(title, quick=summary["quick_mode"]))
    print(
        f"  training                 {summary['num_train_steps']} Adam steps in "
        f"{summary['train_seconds']:.1f} s, final loss {summary['final_loss']:.4g}"
    )
    print(
        f"  Fréchet distance         samples {summary['frechet_samples_vs_test']:.3g}, "
        f"train {summary['frechet_train_vs_test']:.3g} (floor), "
        f"noise {summary['frechet_noise_vs_test']:.3g}  ({summary['num_samples']} vs test, "
        f"NFE {summary['num_function_evaluations']})"
    )
    print(f"  classifier features      test accuracy {summary['classifier_test_accuracy']:.3f}")
    print(f"  predicted digits 0-9     {summary['predicted_digit_counts']}")
    report.print_warnings(summary["warnings"])


def _plot_digits(path: Path, summary: dict[str, Any], samples: Any, test: Any) -> None:
    figure, axes = report.figure(
        f"Diffusion on 8×8 digits: {summary['num_train_steps']} Adam steps of eq. (11.16), "
        f"ancestral sampling with {summary['num_function_evaluations']} network evaluations",
        quick=summary["quick_mode"],
        ncols=2,
        figsize=(11, 6),
    )
    panels = [
        (samples, f"ancestral samples\nFréchet distance {summary['frechet_samples_vs_test']:.3g} "
         "to the test digits"),
        (test, f"test digits\nfloor: train digits at Fréchet distance "
         f"{summary['frechet_train_vs_test']:.3g}"),
    ]  # fmt: skip
    for ax, (images, title) in zip(axes, panels, strict=True):
        image = ax.imshow(report.tile_digits(images, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set(title=title, xticks=[], yticks=[])
        ax.set_xlabel(f"{len(images)} images, 8×8 pixels each")
    figure.colorbar(image, ax=axes, shrink=0.7, label="pixel intensity (1 = ink)")
    report.save(figure, path)

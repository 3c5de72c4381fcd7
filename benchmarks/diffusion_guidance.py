"""Classifier-free guidance on the 8×8 digits: per-class hit rate and Fréchet distance against w.

One class-conditional network is trained on the digits with their labels by the
denoising objective (11.16) with label dropout (Ho & Salimans 2022): each
label is replaced by the null label 10 with probability :data:`LABEL_DROPOUT`,
so the network learns both :math:`S(x, \\beta, c)` and :math:`S(x, \\beta,
\\varnothing)`. It is then sampled with the guided score

.. math::

   \\tilde S = S(x, \\beta, \\varnothing)
   + w\\, \\big(S(x, \\beta, c) - S(x, \\beta, \\varnothing)\\big)

at every guidance scale :math:`w` of :data:`GUIDANCE_SCALES` (:math:`w = 0`:
unconditional, :math:`w = 1`: conditional), the same number of samples of each
class, all from the same :math:`x_T`. The score network is sampled by the
ancestral sampler and by DPM-Solver++(2M); the energy network
(``NoiseConditionalEnergy(num_classes=10)``, :math:`S = \\nabla_x f`) by
annealed MALA, whose levels target the guided *energy sum* :math:`(1 - w)
f(x, \\beta, \\varnothing) + w f(x, \\beta, c)` exactly under its
Metropolis–Hastings step (Du et al. 2023).

Metrics, judged by a digit classifier trained here (as in
``diffusion_quality.py``): the *hit rate*, the fraction of samples of class
:math:`c` that the classifier labels :math:`c` (the minimum and the mean over
classes; the classifier's own test accuracy is the ceiling), and the Fréchet
distance of all samples against the test digits in the classifier's features
(floor: an equally sized random subset of the training digits). Guidance
trades one for the other: larger :math:`w` makes every sample more
recognisably its class and the set less diverse.

Run as ``python benchmarks/diffusion_guidance.py`` (about 3 minutes on 2 CPU
cores); ``--quick`` is a smoke run. Writes ``results/<backend>/diffusion_guidance.json``,
``.md`` and, with matplotlib, ``.png`` (hit rate and Fréchet distance against
:math:`w`, and a grid of guided samples), or the same beside ``--out``; a
``--quick`` run without ``--out`` writes them under ``out/benchmarks/quick/``.

References:
  Ho & Salimans (2022), *Classifier-free diffusion guidance*, arXiv:2207.12598.
  Du et al. (2023), *Reduce, reuse, recycle*, ICML, arXiv:2302.11552.
  Lu et al. (2022b), *DPM-Solver++*, arXiv:2211.01095.
  Heusel et al. (2017), NeurIPS (the Fréchet Inception distance).
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import environment, out_help, output_path, quick_note, save_figure, write_json

import ebm_jax as ej
from ebm_jax.diffusion import samplers, solvers
from ebm_jax.diffusion.schedule import linear_schedule
from ebm_jax.models import NoiseConditionalEnergy, NoiseConditionalScore, null_label
from ebm_jax.models.classifier import train_digit_classifier

RESULTS_FILE = f"{jax.default_backend()}/diffusion_guidance.json"
NUM_CLASSES = 10
LABEL_DROPOUT = 0.1
GUIDANCE_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0)
NUM_SCHEDULE_STEPS = 1000
BATCH_SIZE = 256
MALA_STEP_SIZE = 1e-4
SAMPLERS = {
    # name: (network, num_steps, steps per level)
    "ancestral": ("score", 100, 0),
    "dpm_solver": ("score", 20, 0),
    "annealed_mala": ("energy", 50, 4),
}


def train_conditional(
    rng_key: jax.Array,
    model: Any,
    images: jax.Array,
    labels: jax.Array,
    *,
    num_steps: int,
    energy: bool,
    learning_rate: float,
) -> tuple[Any, dict[str, Any]]:
    """Fit (11.16) with label dropout; return the parameters and a training log."""
    init_key, fit_key = jax.random.split(rng_key)
    params = model.init(init_key, jnp.zeros(images.shape[1]), 0.5, 0)
    network = {"logdensity_fn" if energy else "score_fn": model.apply}
    loss_fn = ej.diffusion.denoising_loss(
        schedule=linear_schedule(NUM_SCHEDULE_STEPS),
        weighting="epsilon",
        label_dropout=LABEL_DROPOUT,
        null_label=null_label(model),
        **network,
    )
    start = time.perf_counter()
    result = ej.training.fit(
        fit_key,
        loss_fn,
        params,
        optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.05)),
        (images, labels),
        num_steps=num_steps,
        batch_size=BATCH_SIZE,
        chunk_size=min(500, num_steps),
        progress=False,
    )
    log = {
        "num_steps": num_steps,
        "final_loss": float(jnp.mean(result.losses[-min(200, num_steps) :])),
        "seconds": time.perf_counter() - start,
    }
    return result.params, log


def sample(
    name: str,
    model_fn: Any,
    x_T: jax.Array,
    labels: jax.Array,
    guidance_scale: float,
    rng_key: jax.Array,
) -> tuple[jax.Array, int]:
    """Guided samples in [-1, 1] units and their NFE per sample."""
    _, num_steps, steps_per_level = SAMPLERS[name]
    schedule = linear_schedule(NUM_SCHEDULE_STEPS)
    guidance = {
        "class_labels": labels,
        "guidance_scale": guidance_scale,
        "null_label": NUM_CLASSES,
    }
    if name == "ancestral":
        result = samplers.ancestral_sample(
            rng_key, model_fn, schedule, x_T, num_steps=num_steps, **guidance
        )
    elif name == "dpm_solver":
        result = solvers.dpm_solver_sample(model_fn, schedule, x_T, num_steps, **guidance)
    else:
        result = samplers.annealed_mala_sample(
            rng_key,
            model_fn,
            schedule,
            x_T,
            step_size=MALA_STEP_SIZE,
            num_steps=num_steps,
            num_steps_per_level=steps_per_level,
            **guidance,
        )
    return result.samples, result.num_function_evaluations


def judge(classifier: Any, images: jax.Array, labels: np.ndarray, test: jax.Array) -> dict:
    """Per-class hit rates and the Fréchet distance against the test digits."""
    predicted = np.asarray(classifier.predict(images))
    hits = [float(np.mean(predicted[labels == c] == c)) for c in range(NUM_CLASSES)]
    frechet = ej.diagnostics.frechet_distance(
        classifier.features(images), classifier.features(test)
    )
    return {
        "hit_rate_per_class": hits,
        "hit_rate_mean": float(np.mean(hits)),
        "hit_rate_min": float(np.min(hits)),
        "frechet": float(frechet),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Classifier-free guidance on 8×8 digits" + quick_note(report["quick"]),
        "",
        f"{report['environment']['device_kind']} ({report['environment']['backend']}); jax "
        f"{report['environment']['jax']}; {report['environment']['date']}. Command: "
        "`python benchmarks/diffusion_guidance.py`. Networks trained with label dropout "
        f"{report['label_dropout']}: "
        + ", ".join(f"{k} {v['num_steps']} steps" for k, v in report["training"].items())
        + ".",
        "",
        f"{report['samples_per_class']} samples per class; classifier test accuracy "
        f"{report['classifier_test_accuracy']:.3f}; Fréchet floor (train subset vs test) "
        f"{report['frechet_floor']:.2f}. Hit rate: fraction of a class's samples the "
        "classifier labels with that class (mean, min over classes).",
        "",
        "| sampler | NFE | w | hit rate (mean) | hit rate (min) | Fréchet |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['sampler']} | {row['nfe']} | {row['guidance_scale']:g} | "
            f"{row['hit_rate_mean']:.3f} | {row['hit_rate_min']:.3f} | {row['frechet']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def plot(
    report: dict[str, Any], grids: dict[float, np.ndarray], path: Path, *, quick: bool
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    for name in dict.fromkeys(row["sampler"] for row in report["rows"]):
        rows = [row for row in report["rows"] if row["sampler"] == name]
        scales = [row["guidance_scale"] for row in rows]
        label = f"{name} (NFE {rows[0]['nfe']})"
        axes[0].plot(scales, [row["hit_rate_mean"] for row in rows], marker="o", label=label)
        axes[1].plot(scales, [row["frechet"] for row in rows], marker="o", label=label)
    axes[0].axhline(report["classifier_test_accuracy"], color="gray", ls="--", label="classifier")
    axes[0].set(xlabel="guidance scale w", ylabel="hit rate (mean over classes)")
    axes[0].set_title("samples recognised as their class")
    axes[1].axhline(report["frechet_floor"], color="gray", ls="--", label="floor")
    axes[1].set(xlabel="guidance scale w", ylabel="Fréchet distance (classifier features)")
    axes[1].set_title("distance to the test digits")
    for ax in axes[:2]:
        ax.legend(fontsize=8)
    scales = sorted(grids)
    rows = [np.concatenate(list(grids[w]), axis=1) for w in scales]
    axes[2].imshow(np.concatenate(rows, axis=0), cmap="gray_r", vmin=0.0, vmax=1.0)
    axes[2].set_yticks([8 * i + 3.5 for i in range(len(scales))], [f"w={w:g}" for w in scales])
    axes[2].set_xticks([8 * c + 3.5 for c in range(NUM_CLASSES)], list(range(NUM_CLASSES)))
    axes[2].set_xlabel("class label")
    axes[2].set_ylabel("guidance scale w")
    axes[2].set_title(f"{report['grid_sampler']}: one sample per class and w")
    save_figure(figure, path, quick=quick)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny training")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=out_help("JSON results file; the .md and figure go beside it", RESULTS_FILE),
    )
    parser.add_argument("--score-steps", type=int, default=None)
    parser.add_argument("--energy-steps", type=int, default=None, help="0: no energy network")
    parser.add_argument("--classifier-steps", type=int, default=None)
    parser.add_argument("--samples-per-class", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out = output_path(RESULTS_FILE, args.out, quick=args.quick)
    defaults = {
        "score_steps": (200, 4000),
        "energy_steps": (100, 2500),
        "classifier_steps": (300, 3000),
        "samples_per_class": (10, 50),
    }
    for key, (quick_value, full_value) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick_value if args.quick else full_value)

    keys = jax.random.split(jax.random.key(args.seed), 5)
    digits = ej.data.load_digits(scale="unit")
    classifier = train_digit_classifier(
        keys[0],
        digits.train,
        digits.train_labels,
        digits.test,
        digits.test_labels,
        num_steps=args.classifier_steps,
    )
    subset = jax.random.permutation(keys[1], digits.train.shape[0])[: digits.test.shape[0]]
    floor = ej.diagnostics.frechet_distance(
        classifier.features(digits.train[subset]), classifier.features(digits.test)
    )
    images = 2.0 * digits.train - 1.0
    networks: dict[str, Any] = {}
    training: dict[str, Any] = {}
    score_model = NoiseConditionalScore.digits_8x8(num_classes=NUM_CLASSES)
    score_params, training["score"] = train_conditional(
        keys[2],
        score_model,
        images,
        digits.train_labels,
        num_steps=args.score_steps,
        energy=False,
        learning_rate=args.learning_rate,
    )
    networks["score"] = functools.partial(score_model.apply, score_params)
    if args.energy_steps:
        energy_model = NoiseConditionalEnergy.digits_8x8(num_classes=NUM_CLASSES)
        energy_params, training["energy"] = train_conditional(
            keys[3],
            energy_model,
            images,
            digits.train_labels,
            num_steps=args.energy_steps,
            energy=True,
            learning_rate=args.learning_rate,
        )
        networks["energy"] = functools.partial(energy_model.apply, energy_params)
    for name, log in training.items():
        print(f"{name} network: {log['num_steps']} steps, {log['seconds']:.0f} s", flush=True)

    labels = jnp.repeat(jnp.arange(NUM_CLASSES), args.samples_per_class)
    x_T = samplers.initial_noise(keys[4], labels.shape[0], (64,))
    rows = []
    grids: dict[float, np.ndarray] = {}
    grid_sampler = "ancestral"
    print(
        f"{'sampler':<15}{'NFE':>6}{'w':>6}{'hit mean':>10}{'hit min':>9}{'Fréchet':>9}{'s':>6}"
        + quick_note(args.quick)
    )
    for name, (network, _, _) in SAMPLERS.items():
        if network not in networks:
            continue
        for scale in GUIDANCE_SCALES:
            start = time.perf_counter()
            out, nfe = sample(name, networks[network], x_T, labels, scale, jax.random.key(7))
            out = jnp.clip((out + 1.0) / 2.0, 0.0, 1.0)
            seconds = time.perf_counter() - start
            row = {
                "sampler": name,
                "network": network,
                "nfe": int(nfe),
                "guidance_scale": scale,
                "seconds": seconds,
                **judge(classifier, out, np.asarray(labels), digits.test),
            }
            rows.append(row)
            if name == grid_sampler:
                first = np.arange(NUM_CLASSES) * args.samples_per_class
                grids[scale] = np.asarray(out)[first].reshape(NUM_CLASSES, 8, 8)
            print(
                f"{name:<15}{row['nfe']:>6}{scale:>6g}{row['hit_rate_mean']:>10.3f}"
                f"{row['hit_rate_min']:>9.3f}{row['frechet']:>9.2f}{seconds:>6.0f}",
                flush=True,
            )
    report = {
        "environment": environment(),
        "quick": args.quick,
        "classifier_test_accuracy": classifier.test_accuracy,
        "frechet_floor": float(floor),
        "samples_per_class": args.samples_per_class,
        "label_dropout": LABEL_DROPOUT,
        "grid_sampler": grid_sampler,
        "training": training,
        "settings": {name: list(spec) for name, spec in SAMPLERS.items()},
        "rows": rows,
    }
    print(f"Fréchet floor {float(floor):.2f}; classifier accuracy {classifier.test_accuracy:.3f}")
    write_json(args.out, report, quick=args.quick)
    args.out.with_suffix(".md").write_text(markdown(report))
    plot(report, grids, args.out.with_suffix(".png"), quick=args.quick)
    return report


if __name__ == "__main__":
    main()

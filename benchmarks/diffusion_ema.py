"""Sampling a diffusion model with its parameter average against its last iterate: 8×8 digits.

One noise-conditional score network (``NoiseConditionalScore.digits_8x8()``)
is fitted to the denoising objective (11.16) with the ε weighting on the
linear schedule with :math:`T = 1000`, by Adam with a cosine-decayed step
(or, with ``--constant-learning-rate``, a constant one, Ho et al. 2020's
recipe, written to ``diffusion_ema_constant_lr.*``; batch 256), as in
``diffusion_quality.py``, with ``fit(..., ema_decay=λ)``:
besides the last iterate :math:`\\theta_T` it returns the exponential moving
average

.. math::

   \\bar\\theta_0 = \\theta_0, \\qquad
   \\bar\\theta_{t+1} = \\lambda \\bar\\theta_t + (1 - \\lambda)\\, \\theta_{t+1}.

Both parameter sets are sampled by the ancestral sampler (Ho et al. 2020,
Algorithm 2, posterior variance) on a strided sub-sequence of the 1000
levels, from the same :math:`x_T` with the same sampler key, so the two rows
of a seed differ by their parameters only; several seeds (fresh :math:`x_T`
and keys, shared by both rows) show how much of a difference is sampling
noise. Samples are judged as in ``diffusion_quality.py``: the Fréchet
distance between Gaussians fitted to the features of a digit classifier
trained on the unit-scale training images (Heusel et al. 2017's recipe with
``train_digit_classifier`` in place of Inception), as many samples as test
images (359), with MMD² (median-distance bandwidth) and sliced W₂ in unit
pixel space; the floor is an equally sized random subset of the training
images against the test images.

Run as ``python benchmarks/diffusion_ema.py`` (``--steps``, ``--decay``,
``--sample-steps``, ``--num-seeds``); it writes ``diffusion_ema.json`` and
``diffusion_ema.md`` (``diffusion_ema_constant_lr.*`` with
``--constant-learning-rate``) to ``results/<device kind>/`` or to ``--out``.
``--quick`` is a smoke run (tiny training, one seed) that writes under
``out/benchmarks/quick/<device kind>/`` unless ``--out`` is given.

References:
  Polyak & Juditsky (1992), *Acceleration of stochastic approximation by
  averaging*, SIAM J. Control Optim. 30(4).
  Ho, Jain & Abbeel (2020), *Denoising diffusion probabilistic models*,
  NeurIPS, arXiv:2006.11239 (an average with λ = 0.9999).
  Song & Ermon (2020), *Improved techniques for training score-based
  generative models*, NeurIPS, arXiv:2006.09011 (λ = 0.999).
  Heusel, Ramsauer, Unterthiner, Nessler & Hochreiter (2017), *GANs trained by
  a two time-scale update rule converge to a local Nash equilibrium*, NeurIPS.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import environment, out_help, output_path, quick_note, write_json
from diffusion_quality import (
    BATCH_SIZE,
    NUM_CLASSIFIER_STEPS,
    NUM_SCHEDULE_STEPS,
    Judge,
    median_distance,
)

import ebm_jax as ej
from ebm_jax.diffusion import samplers
from ebm_jax.diffusion.schedule import linear_schedule
from ebm_jax.models.classifier import train_digit_classifier
from ebm_jax.models.noise_conditional import NoiseConditionalScore

WEIGHTS = ("params", "ema_params")
METRICS = ("fd", "mmd2", "sw2")


def train(
    rng_key: jax.Array, train_images: jax.Array, args: argparse.Namespace
) -> tuple[NoiseConditionalScore, ej.training.FitResult, float]:
    """The score network fitted to (11.16) with a parameter average; also the seconds it took."""
    schedule = linear_schedule(NUM_SCHEDULE_STEPS)
    model = NoiseConditionalScore.digits_8x8()
    init_key, fit_key = jax.random.split(rng_key)
    params = model.init(init_key, jnp.zeros(train_images.shape[1]), 0.5)
    loss_fn = ej.diffusion.denoising_loss(model.apply, schedule=schedule, weighting="epsilon")
    step_schedule: Any = args.learning_rate
    if not args.constant_learning_rate:
        step_schedule = optax.cosine_decay_schedule(args.learning_rate, args.steps, alpha=0.05)
    start = time.perf_counter()
    result = ej.training.fit(
        fit_key,
        loss_fn,
        params,
        optax.adam(step_schedule),
        train_images,
        num_steps=args.steps,
        batch_size=min(BATCH_SIZE, train_images.shape[0]),
        chunk_size=min(500, args.steps),
        ema_decay=args.decay,
        progress=False,
    )
    jax.block_until_ready(result.ema_params)
    return model, result, time.perf_counter() - start


def sample_rows(
    rng_key: jax.Array,
    model: NoiseConditionalScore,
    result: ej.training.FitResult,
    judge: Judge,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """For each seed, both parameter sets from one x_T with one sampler key, judged alike."""
    schedule = linear_schedule(NUM_SCHEDULE_STEPS)
    num_samples, dimension = judge.test.shape
    # One function object per parameter set: the sampler compiles once for each, not per seed.
    score_fns = {name: functools.partial(model.apply, getattr(result, name)) for name in WEIGHTS}
    rows = []
    for seed in range(args.num_seeds):
        noise_key, sampler_key = jax.random.split(jax.random.fold_in(rng_key, seed))
        initial_positions = samplers.initial_noise(noise_key, num_samples, (dimension,))
        for name in WEIGHTS:
            start = time.perf_counter()
            samples = samplers.ancestral_sample(
                sampler_key,
                score_fns[name],
                schedule,
                initial_positions,
                num_steps=args.sample_steps,
            ).samples
            images = jax.block_until_ready(jnp.clip((samples + 1.0) / 2.0, 0.0, 1.0))
            row = {"weights": name, "seed": seed, "seconds": time.perf_counter() - start}
            row |= judge(images)
            print(
                f"seed {seed}  {name:<11} FD {row['fd']:8.2f}  MMD²×1e3 {1e3 * row['mmd2']:7.2f}  "
                f"SW₂ {row['sw2']:.4f}",
                flush=True,
            )
            rows.append(row)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sd over seeds of each metric per parameter set, and of the paired differences."""
    by_weights = {name: [row for row in rows if row["weights"] == name] for name in WEIGHTS}
    summary: dict[str, Any] = {}
    for name, chosen in by_weights.items():
        summary[name] = {metric: _mean_sd([row[metric] for row in chosen]) for metric in METRICS}
    summary["ema_minus_params"] = {
        metric: _mean_sd(
            [
                ema[metric] - last[metric]
                for ema, last in zip(by_weights["ema_params"], by_weights["params"], strict=True)
            ]
        )
        for metric in METRICS
    }
    return summary


def _mean_sd(values: list[float]) -> dict[str, Any]:
    array = np.asarray(values, np.float64)
    sd = float(array.std(ddof=1)) if array.size > 1 else None
    return {"mean": float(array.mean()), "sd": sd, "values": array.tolist()}


def _cell(entry: dict[str, Any], factor: float = 1.0, digits: int = 2) -> str:
    text = f"{factor * entry['mean']:.{digits}f}"
    if entry["sd"] is not None:
        text += f" ± {factor * entry['sd']:.{digits}f}"
    return text


def table(report: dict[str, Any]) -> str:
    """The results as a markdown table: floor, last iterate, average, paired difference."""
    summary, floor = report["summary"], report["floor"]
    lines = [
        "| weights | FD | MMD² ×1e3 | SW₂ ×1e3 |",
        "|---|---|---|---|",
        f"| floor (train vs test) | {floor['fd']:.2f} | {1e3 * floor['mmd2']:.2f} | "
        f"{1e3 * floor['sw2']:.2f} |",
    ]
    labels = {
        "params": "`result.params` (last iterate)",
        "ema_params": "`result.ema_params` (average)",
        "ema_minus_params": "average − last iterate (paired)",
    }
    for key, label in labels.items():
        entry = summary[key]
        lines.append(
            f"| {label} | {_cell(entry['fd'])} | {_cell(entry['mmd2'], 1e3)} | "
            f"{_cell(entry['sw2'], 1e3)} |"
        )
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    env, settings, training = report["environment"], report["settings"], report["training"]
    versions = (
        f"{env['device_count']} x {env['device_kind']} ({env['backend']}); "
        f"jax {env['jax']}, jaxlib {env['jaxlib']}, flax {env['flax']}, optax {env['optax']}, "
        f"ebm_jax {env['ebm_jax']}; {env['date']}."
    )
    setup = (
        "One `NoiseConditionalScore.digits_8x8()` fitted to eq. (11.16), ε weighting, "
        f"linear schedule T={NUM_SCHEDULE_STEPS}, Adam ("
        + ("constant " if settings.get("constant_learning_rate") else "cosine from ")
        + f"{settings['learning_rate']}), batch {settings['batch_size']}, {settings['steps']} "
        f"steps ({training['seconds']:.0f} s, final loss {training['final_loss']:.4f}), "
        f"`ema_decay={settings['decay']}` (the initial parameters keep the weight "
        f"λ^T = {training['initial_params_weight']:.2g} in the average). Ancestral sampler, "
        f"{settings['sample_steps']} steps, "
        f"{report['num_samples']} samples; each of {settings['num_seeds']} seed(s) gives both "
        "rows the same x_T and sampler key. Mean ± sd over seeds; FD = Fréchet distance of "
        "digit-classifier features (test accuracy "
        f"{report['classifier']['test_accuracy']:.3f}) against the test images."
    )
    title = "# Diffusion sampling with the parameter average (8×8 digits)" + quick_note(
        settings["quick"]
    )
    command = f"Command: `{settings['command']}`"
    return "\n\n".join([title, versions, setup, table(report), command]) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny training, one seed")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps (default 4000)")
    parser.add_argument("--decay", type=float, default=None, help="ema_decay (default 0.999)")
    parser.add_argument("--sample-steps", type=int, default=None, help="ancestral steps (100)")
    parser.add_argument("--num-seeds", type=int, default=None, help="sampling seeds (3)")
    parser.add_argument("--classifier-steps", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--constant-learning-rate",
        action="store_true",
        help="Adam with a constant step (Ho et al.'s recipe) instead of the cosine decay",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=out_help(
            "JSON results file; the .md goes beside it",
            "<device kind>/diffusion_ema[_constant_lr].json",
        ),
    )
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    defaults = {
        "steps": (200, 4000),
        "decay": (0.99, 0.999),
        "sample_steps": (20, 100),
        "num_seeds": (1, 3),
        "classifier_steps": (300, NUM_CLASSIFIER_STEPS),
    }
    for key, (quick_value, full_value) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick_value if args.quick else full_value)

    env = environment("flax", "optax")
    device_dir = re.sub(r"[^A-Za-z0-9_.-]+", "_", env["device_kind"])
    name = "diffusion_ema_constant_lr" if args.constant_learning_rate else "diffusion_ema"
    out = output_path(f"{device_dir}/{name}.json", args.out, quick=args.quick)
    print(
        f"jax {env['jax']} on {env['backend']}; digits, {args.steps} Adam steps with "
        f"ema_decay={args.decay}; ancestral sampler, {args.sample_steps} steps, "
        f"{args.num_seeds} seed(s){quick_note(args.quick)}",
        flush=True,
    )
    wall_start = time.perf_counter()
    classifier_key, train_key, sample_key, projection_key, subset_key = jax.random.split(
        jax.random.fold_in(jax.random.key(args.seed), 1000), 5
    )
    digits = ej.data.load_digits(scale="unit")
    classifier = train_digit_classifier(
        classifier_key,
        digits.train,
        digits.train_labels,
        digits.test,
        digits.test_labels,
        num_steps=args.classifier_steps,
    )
    print(f"digit classifier: test accuracy {classifier.test_accuracy:.3f}", flush=True)
    test = digits.test
    judge = Judge(test, median_distance(np.asarray(test)), None, projection_key, classifier)
    subset = jax.random.permutation(subset_key, digits.train.shape[0])[: test.shape[0]]
    floor = judge(digits.train[subset])
    print(f"floor (train vs test): FD {floor['fd']:.2f}", flush=True)

    model, result, train_seconds = train(train_key, 2.0 * digits.train - 1.0, args)
    final_loss = float(jnp.mean(result.losses[-min(200, args.steps) :]))
    print(f"trained {args.steps} steps in {train_seconds:.0f} s, final loss {final_loss:.4f}")
    rows = sample_rows(sample_key, model, result, judge, args)
    report: dict[str, Any] = {
        "environment": env,
        "settings": {
            "quick": args.quick,
            "steps": args.steps,
            "decay": args.decay,
            "sample_steps": args.sample_steps,
            "num_seeds": args.num_seeds,
            "classifier_steps": args.classifier_steps,
            "learning_rate": args.learning_rate,
            "constant_learning_rate": args.constant_learning_rate,
            "batch_size": BATCH_SIZE,
            "schedule": f"linear_schedule({NUM_SCHEDULE_STEPS})",
            "weighting": "epsilon",
            "sampler": "ancestral (posterior variance)",
            "seed": args.seed,
            "command": " ".join(["python benchmarks/diffusion_ema.py", *argv]),
        },
        "classifier": {"test_accuracy": classifier.test_accuracy},
        "num_samples": int(test.shape[0]),
        "training": {
            "seconds": train_seconds,
            "final_loss": final_loss,
            # The weight the average still gives the initial parameters: λ^T.
            "initial_params_weight": args.decay**args.steps,
        },
        "floor": floor,
        "rows": rows,
        "summary": summarise(rows),
    }
    report["wall_seconds"] = time.perf_counter() - wall_start
    print("\n" + table(report), flush=True)
    print(f"\ntotal {report['wall_seconds']:.0f} s", flush=True)
    write_json(out, report, quick=args.quick)
    out.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {out.with_suffix('.md')}{quick_note(args.quick)}", flush=True)
    return report


if __name__ == "__main__":
    main()

"""Section 2, score matching (§11.2.2–11.2.3): an MLP log-density learned from 2-D data.

The model is trained on two-moons data by sliced score matching; its exact
test NLL takes log Z by quadrature, and MALA chains draw from the learned
model, compared with test data by MMD² beside the train-vs-test floor. Writes
``score_matching.png`` (loss, data, learned density, samples) and
``score_matching.json``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebm_jax import data, diagnostics, losses, models, samplers, training
from ebm_jax.chains import run_chains
from ebm_jax.demo import report


def run_score_matching(
    out_dir: Path,
    *,
    seed: int = 0,
    dataset: str = "two_moons",
    num_train_steps: int = 4000,
    num_chains: int = 2048,
    num_warmup: int = 300,
    num_steps: int = 300,
    resolution: int = 512,
    quick: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Learn a 2-D EBM by sliced score matching, score it exactly, sample it with MALA.

    ``quick`` labels the printout, figure and JSON as quick mode; it changes
    no size (the caller picks them).
    """
    keys = jax.random.split(jax.random.key(seed + 1), 7)
    sampler = data.TOY_DATASETS[dataset]
    train, test = sampler(keys[0], 20_000), sampler(keys[1], 5_000)
    model = models.MLPLogDensity((128, 128), envelope_scale=4.0)
    # Module.apply is typed for every Flax use; this one returns the scalar f_θ(x).
    model_logdensity = cast(Callable[[Any, jax.Array], jax.Array], model.apply)
    initial_params = model.init(keys[2], jnp.zeros(2))
    optimizer = optax.adam(optax.cosine_decay_schedule(2e-3, num_train_steps, alpha=0.01))

    start = time.perf_counter()
    fit = training.fit(
        keys[3],
        losses.sliced_score_matching(model_logdensity),
        initial_params,
        optimizer,
        train,
        num_steps=num_train_steps,
        batch_size=256,
        chunk_size=min(500, num_train_steps),
        progress=False if progress is None else progress,
    )
    train_seconds = time.perf_counter() - start
    logdensity_fn = functools.partial(model_logdensity, fit.params)
    evaluation = diagnostics.nll_2d_quadrature(
        logdensity_fn, test, data.TOY_BOUNDS, resolution=resolution
    )

    (x_min, x_max), (y_min, y_max) = data.TOY_BOUNDS
    initial = jax.random.uniform(
        keys[4], (num_chains, 2), minval=jnp.array([x_min, y_min]), maxval=jnp.array([x_max, y_max])
    )
    warmup = samplers.adapt(keys[5], "mala", logdensity_fn, initial, num_warmup)
    algorithm = samplers.mala(logdensity_fn, **warmup.parameters)
    result = run_chains(
        keys[6], algorithm, warmup.states.position, num_steps, thin=num_steps, progress=progress
    )
    assert result.samples is not None  # collect="samples"
    final = result.samples[:, -1]
    reference = test[: min(2000, num_chains)]
    summary = {
        "quick_mode": quick,
        "dataset": dataset,
        "objective": "sliced score matching (1 Rademacher probe)",
        "num_train_steps": num_train_steps,
        "train_seconds": train_seconds,
        "final_loss": float(jnp.mean(fit.losses[-100:])),
        "test_nll": float(evaluation.nll),
        "log_partition": float(evaluation.log_partition),
        "log_partition_error": float(evaluation.log_partition_error),
        "num_chains": num_chains,
        "step_size": float(warmup.parameters["step_size"]),
        "acceptance_rate": float(jnp.mean(result.acceptance_rate)),
        "num_nonfinite": int(np.sum(np.asarray(result.num_nonfinite))),
        "mmd2_samples_vs_test": float(diagnostics.mmd(final[: len(reference)], reference)),
        "mmd2_train_vs_test": float(diagnostics.mmd(train[: len(reference)], reference)),
        # MALA on the learned model: nothing here has a known answer to fall short of.
        "warnings": [],
    }
    _print_score_matching(summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "score_matching.json").write_text(json.dumps(summary, indent=2))
    _plot_score_matching(
        out_dir / "score_matching.png", fit.losses, train, logdensity_fn, evaluation, final, summary
    )
    return summary


def _print_score_matching(summary: dict[str, Any]) -> None:
    title = f"Score matching: MLP EBM on {summary['dataset']}, {summary['objective']}"
    print(report.header(title, quick=summary["quick_mode"]))
    print(
        f"  training                 {summary['num_train_steps']} Adam steps in "
        f"{summary['train_seconds']:.1f} s, final loss {summary['final_loss']:.4g}"
    )
    print(
        f"  exact test NLL           {summary['test_nll']:.4f} nats  (log Z "
        f"{summary['log_partition']:.4f} ± {summary['log_partition_error']:.1e}, quadrature)"
    )
    print(
        f"  MALA on the learned EBM  {summary['num_chains']} chains, step "
        f"{summary['step_size']:.3g}, acceptance {summary['acceptance_rate']:.3f}, "
        f"rejected NaN/inf {summary['num_nonfinite']}"
    )
    print(
        f"  MMD² samples vs test     {summary['mmd2_samples_vs_test']:.2e}"
        f"  (train vs test {summary['mmd2_train_vs_test']:.2e})"
    )
    report.print_warnings(summary["warnings"])


def _plot_score_matching(
    path: Path,
    loss_history: Any,
    train: Any,
    logdensity_fn: Any,
    evaluation: Any,
    samples: Any,
    summary: dict[str, Any],
) -> None:
    (x_min, x_max), (y_min, y_max) = data.TOY_BOUNDS
    xx, yy = jnp.meshgrid(jnp.linspace(x_min, x_max, 200), jnp.linspace(y_min, y_max, 200))
    points = jnp.stack([xx.ravel(), yy.ravel()], axis=-1)
    density = jnp.exp(jax.vmap(logdensity_fn)(points) - evaluation.log_partition)
    extent = (x_min, x_max, y_min, y_max)

    figure, axes = report.figure(
        f"Score matching: an MLP log-density learned from {summary['dataset']} by sliced "
        f"score matching ({summary['num_train_steps']} Adam steps)",
        quick=summary["quick_mode"],
        ncols=4,
        figsize=(19, 5),
    )
    axes[0].plot(np.asarray(loss_history), linewidth=0.5)
    axes[0].set(
        title="training loss",
        xlabel="Adam step",
        ylabel="sliced score-matching loss (batch mean)",
    )
    *_, counts = axes[1].hist2d(*np.asarray(train).T, bins=120, range=data.TOY_BOUNDS)
    figure.colorbar(counts, ax=axes[1], shrink=0.8, label="training points per bin")
    axes[1].set(title=f"training data ({len(train)} points)")
    image = axes[2].imshow(np.asarray(density.reshape(xx.shape)), origin="lower", extent=extent)
    figure.colorbar(image, ax=axes[2], shrink=0.8, label="learned density p(x)")
    axes[2].set(title=f"learned density (log Z by quadrature)\ntest NLL {evaluation.nll:.3f} nats")
    samples = np.asarray(samples)
    axes[3].scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.4)
    axes[3].set(
        title=f"MALA samples of the learned EBM\n({len(samples)} chains' final states)",
        xlim=(x_min, x_max),
        ylim=(y_min, y_max),
    )
    for ax in axes[1:]:
        ax.set(xlabel="x₁", ylabel="x₂")
        ax.set_aspect("equal")
    report.save(figure, path)

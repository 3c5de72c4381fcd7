"""Section 1, sampling (§11.2.1): thousands of MALA chains on a 2-D Gaussian mixture.

Step size and preconditioner are adapted by warm-up; the chains are then
judged by acceptance, bulk ESS, split R̂, the mean against the exact one in
Monte-Carlo standard errors, the kernel Stein discrepancy (which needs only the
score) and the MMD² against exact samples, each beside its exact-vs-exact
floor. Writes ``sampling.png`` (samples over the density's contours, trace
plots, warm-up acceptance) and ``sampling.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax import densities, diagnostics, samplers
from ebm_jax.chains import run_chains
from ebm_jax.demo import report

MEAN_Z = 4.0
"""A mean further than this many MCSEs from the exact one is a warning (a 4-sigma gate)."""


def demo_mixture() -> densities.Target:
    """Four unequal, anisotropic, overlapping components: MALA mixes between them."""
    return densities.gaussian_mixture(
        weights=jnp.array([0.4, 0.3, 0.2, 0.1]),
        means=jnp.array([[-1.2, -1.0], [1.2, -1.0], [-0.8, 1.4], [1.5, 1.5]]),
        covariances=jnp.array(
            [[[0.8, 0.3], [0.3, 0.5]], [[0.4, 0.0], [0.0, 1.0]], [[0.6, -0.2], [-0.2, 0.4]],
             [[0.3, 0.0], [0.0, 0.3]]]
        ),
    )  # fmt: skip


def run_sampling(
    out_dir: Path,
    *,
    seed: int = 0,
    num_chains: int = 4096,
    num_warmup: int = 500,
    num_steps: int = 2000,
    num_reference: int = 2000,
    quick: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Adapt and run MALA on :func:`demo_mixture`; print and write the summary.

    ``quick`` labels the printout, figure and JSON as quick mode; it changes
    no size (the caller picks them).
    """
    target = demo_mixture()
    keys = jax.random.split(jax.random.key(seed), 5)
    initial = 3.0 * jax.random.normal(keys[0], (num_chains, 2))

    start = time.perf_counter()
    warmup = samplers.adapt(keys[1], "mala", target.logdensity_fn, initial, num_warmup)
    algorithm = samplers.mala(target.logdensity_fn, **warmup.parameters)
    result = run_chains(keys[2], algorithm, warmup.states.position, num_steps, progress=progress)
    jax.block_until_ready(result.samples)
    seconds = time.perf_counter() - start

    samples = result.samples
    assert samples is not None  # collect="samples"
    final = samples[:, -1]
    subset = final[:num_reference]
    exact = target.sample(keys[3], num_reference)
    exact_again = target.sample(keys[4], num_reference)
    summary = {
        "quick_mode": quick,
        "target": target.name,
        "num_chains": num_chains,
        "num_warmup": num_warmup,
        "num_steps": num_steps,
        "seconds_total": seconds,
        "chain_steps_per_second": num_chains * (num_warmup + num_steps) / seconds,
        "step_size": float(warmup.parameters["step_size"]),
        "inverse_mass_matrix": np.asarray(warmup.parameters["inverse_mass_matrix"]).tolist(),
        "acceptance_rate": float(jnp.mean(result.acceptance_rate)),
        "num_nonfinite": int(np.sum(np.asarray(result.num_nonfinite))),
        "ess_bulk": np.asarray(diagnostics.ess(samples)).tolist(),
        "rhat": np.asarray(diagnostics.rhat(samples)).tolist(),
        "mean": np.asarray(jnp.mean(samples, axis=(0, 1))).tolist(),
        "true_mean": np.asarray(target.mean).tolist(),
        "mcse": np.asarray(diagnostics.mcse(samples)).tolist(),
        "ksd_final_states": float(
            jnp.sqrt(diagnostics.kernel_stein_discrepancy(subset, target.score_fn))
        ),
        "ksd_exact_samples": float(
            jnp.sqrt(diagnostics.kernel_stein_discrepancy(exact, target.score_fn))
        ),
        "mmd2_final_states_vs_exact": float(diagnostics.mmd(subset, exact)),
        "mmd2_exact_vs_exact": float(diagnostics.mmd(exact_again, exact)),
    }
    summary["warnings"] = sampling_warnings(summary)
    _print_summary(summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sampling.json").write_text(json.dumps(summary, indent=2))
    _plot_sampling(out_dir / "sampling.png", target, samples, warmup.info.acceptance_rate, summary)
    return summary


def sampling_warnings(summary: dict[str, Any]) -> list[str]:
    """What :func:`run_sampling`'s summary shows to be wrong: unmixed chains, a biased mean.

    Examples:
      >>> sampling_warnings({"rhat": [1.002, 1.003], "mean": [0.0, 1.0],
      ...                    "true_mean": [0.01, 1.0], "mcse": [0.01, 0.01]})
      []
      >>> len(sampling_warnings({"rhat": [1.05, 1.003], "mean": [0.0, 1.0],
      ...                        "true_mean": [0.01, 1.0], "mcse": [0.01, 0.01]}))
      1
    """
    warnings = report.rhat_warnings(summary["rhat"], what="MALA chains")
    for index, (mean, truth, mcse) in enumerate(
        zip(summary["mean"], summary["true_mean"], summary["mcse"], strict=True)
    ):
        if not abs(mean - truth) < MEAN_Z * mcse:
            warnings.append(
                f"MALA chains: mean of coordinate {index} is {mean:.4g}, exact {truth:.4g}: "
                f"off by more than {MEAN_Z:g} MCSE ({mcse:.2g})"
            )
    return warnings


def _print_summary(summary: dict[str, Any]) -> None:
    fmt = lambda values: ", ".join(f"{v:.4g}" for v in values)
    title = f"Sampling: MALA on {summary['target']} ({summary['num_chains']} chains)"
    print(report.header(title, quick=summary["quick_mode"]))
    print(f"  adapted step size        {summary['step_size']:.4g}")
    print(f"  acceptance rate          {summary['acceptance_rate']:.3f}  (target 0.574)")
    print(f"  rejected NaN/inf         {summary['num_nonfinite']}")
    print(f"  bulk ESS (x, y)          {fmt(summary['ess_bulk'])}")
    print(f"  split R-hat (x, y)       {fmt(summary['rhat'])}  (mixed: ≤ {report.RHAT_THRESHOLD})")
    print(f"  mean (x, y)              {fmt(summary['mean'])}  exact {fmt(summary['true_mean'])}")
    print(f"  MCSE of the mean         {fmt(summary['mcse'])}")
    print(
        f"  KSD final states         {summary['ksd_final_states']:.4f}"
        f"  (exact samples {summary['ksd_exact_samples']:.4f})"
    )
    print(
        f"  MMD² vs exact samples    {summary['mmd2_final_states_vs_exact']:.2e}"
        f"  (exact vs exact {summary['mmd2_exact_vs_exact']:.2e})"
    )
    print(
        f"  time                     {summary['seconds_total']:.1f} s "
        f"({summary['chain_steps_per_second']:.3g} chain-steps/s, compile included)"
    )
    report.print_warnings(summary["warnings"])


def _plot_sampling(
    path: Path, target: densities.Target, samples: Any, acceptance: Any, summary: dict[str, Any]
) -> None:
    grid = jnp.linspace(-4.5, 4.5, 200)
    xx, yy = jnp.meshgrid(grid, grid)
    points = jnp.stack([xx.ravel(), yy.ravel()], axis=-1)
    density = jnp.exp(jax.vmap(target.logdensity_fn)(points)).reshape(xx.shape)
    samples = np.asarray(samples)

    figure, axes = report.figure(
        f"Sampling: MALA on a 4-component Gaussian mixture, {summary['num_chains']} chains, "
        f"{summary['num_warmup']} warm-up + {summary['num_steps']} steps",
        quick=summary["quick_mode"],
        ncols=3,
        figsize=(15, 5),
    )
    axes[0].scatter(
        samples[:, -1, 0], samples[:, -1, 1], s=1, alpha=0.3, color="tab:blue",
        label="final state of each chain",
    )  # fmt: skip
    axes[0].contour(
        np.asarray(xx), np.asarray(yy), np.asarray(density), levels=8, colors="k", linewidths=0.8
    )
    axes[0].plot([], [], color="k", linewidth=0.8, label="contours of the exact p(x)")
    axes[0].set(title="final states over the exact density", xlabel="x₁", ylabel="x₂")
    axes[0].set_aspect("equal")
    axes[0].legend(loc="upper left", fontsize=8, markerscale=6)
    for chain in range(4):
        axes[1].plot(samples[chain, :, 0], linewidth=0.6, label=f"chain {chain}")
    axes[1].set(title="trace of x₁, first 4 chains", xlabel="step after warm-up", ylabel="x₁")
    axes[1].legend(loc="upper right", fontsize=8, ncols=2)
    axes[2].plot(np.asarray(acceptance), label="mean over chains")
    axes[2].axhline(0.574, color="k", linestyle="--", linewidth=0.8, label="target 0.574")
    axes[2].set(
        title="warm-up: acceptance rate",
        xlabel="warm-up step",
        ylabel="mean acceptance probability",
        ylim=(0, 1),
    )
    axes[2].legend(loc="lower right", fontsize=8)
    report.save(figure, path)

"""Section 4, diffusion on a 2-D toy (§11.2.4–11.2.5): three samplers of one learned score.

A noise-conditional score is learned by eq. (11.16) on a standardised 2-D toy
and sampled by ancestral sampling, the probability-flow ODE and annealed
Langevin dynamics from the same :math:`x_T \\sim N(0, I)`. Each is compared
with test data beside two references: train data (the floor a perfect model
reaches at this sample size) and the scaled starting points (which already
match the data's mean and covariance).

Three distances, because each is blind to something. MMD² at the median
bandwidth :math:`h` of the pooled sample (about 4 on the eight Gaussians) and
SW₂ see the large-scale layout: a ring through the eight modes scores at the
floor on MMD² (at the quick mode's 500 points the floor's standard deviation
over train subsets is 7e-4, and the quick mode's ring scores −6e-4, below its
floor). MMD² at the fixed *fine* bandwidth :math:`h_{test}/8` (about 0.5, the
width of a mode; as in ``benchmarks/diffusion_quality.py``) sees the modes:
that ring scores 1.3e-2 there, about 14 of the floor's standard deviations
above it. On the eight Gaussians a fourth, readable check counts the samples
within two standard deviations of one of the eight centres (86.5% of exact
samples) and how they share out among the modes; the summary warns when a
sampler falls clearly short of the train data on it. Writes
``diffusion_2d.png``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax import data, diagnostics, diffusion, models
from ebm_jax.demo import report
from ebm_jax.demo.diffusion_fit import fit_noise_conditional_score

# The eight Gaussians of :func:`ebm_jax.data.eight_gaussians`: centres at radius r = 2√2 and
# angles kπ/4, standard deviation s = √2/4.
_ANGLES = np.arange(8) * np.pi / 4
EIGHT_GAUSSIANS_CENTRES = 2.0 * math.sqrt(2.0) * np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], -1)
EIGHT_GAUSSIANS_SCALE = math.sqrt(2.0) / 4.0
MODE_RADIUS = 2.0 * EIGHT_GAUSSIANS_SCALE
"""A sample within this distance of a centre is near that mode (1 − e⁻² = 86.5% of exact ones)."""

MODE_COVERAGE_TOLERANCE = 0.10
"""A sampler whose fraction near the modes is this far below the train data's is warned about.

At 500 samples a fraction's standard error is about 0.016, so the gap is over 4
standard errors of a difference of two; a ring through the modes falls 0.3 short."""

FINE_BANDWIDTH_FRACTION = 1 / 8
"""The fine MMD bandwidth as a fraction of the test set's median pairwise distance."""


def run_toy_2d(
    out_dir: Path,
    noise_schedule: diffusion.NoiseSchedule,
    *,
    seed: int,
    dataset: str,
    num_train_steps: int,
    num_samples: int,
    num_ancestral_steps: int,
    num_ode_steps: int,
    num_langevin_levels: int,
    num_likelihood_points: int,
    quick: bool,
    progress: bool | None,
) -> dict[str, Any]:
    """Learn, sample and judge the 2-D part of :func:`ebm_jax.demo.run_diffusion`; draw it."""
    keys = jax.random.split(jax.random.key(seed + 3), 9)
    sampler = data.TOY_DATASETS[dataset]
    train, test = sampler(keys[0], 20_000), sampler(keys[1], 5_000)
    # One scale for both coordinates: the variance-preserving chain (11.5) expects unit-scale
    # data, and a scalar map changes log-densities by the constant d·log(scale).
    scale = float(jnp.std(train))
    score_fn, fit, train_seconds = fit_noise_conditional_score(
        keys[2],
        models.NoiseConditionalScore.toy_2d(),
        noise_schedule,
        train / scale,
        learning_rate=2e-3,
        num_steps=num_train_steps,
        batch_size=256,
        progress=progress,
    )

    initial = diffusion.initial_noise(keys[3], num_samples, (2,))
    ancestral = diffusion.ancestral_sample(
        keys[4], score_fn, noise_schedule, initial, num_steps=num_ancestral_steps
    )
    flow = diffusion.probability_flow_sample(
        score_fn, noise_schedule, initial, num_steps=num_ode_steps
    )
    # Song & Ermon's ε = 2e-5 for σ_L² = 1e-4 is step_size=1e-5 here (see the sampler).
    langevin = diffusion.annealed_langevin_sample(
        keys[5],
        score_fn,
        noise_schedule,
        initial,
        step_size=1e-5,
        num_steps=num_langevin_levels,
        num_steps_per_level=5,
    )
    generated = {
        "ancestral": (ancestral.samples, ancestral.num_function_evaluations),
        "probability_flow": (flow.positions, flow.num_function_evaluations),
        "annealed_langevin": (langevin.samples, langevin.num_function_evaluations),
    }
    reference = test[:num_samples]
    projection_key = keys[6]
    median_distance = _median_distance(np.asarray(reference))
    fine_bandwidth = FINE_BANDWIDTH_FRACTION * median_distance

    def distances(points: jax.Array) -> dict[str, float]:
        return {
            "mmd2_vs_test": float(diagnostics.mmd(points, reference)),
            "mmd2_fine_vs_test": float(
                diagnostics.mmd(points, reference, bandwidth=fine_bandwidth)
            ),
            "sliced_wasserstein_vs_test": float(
                diagnostics.sliced_wasserstein(projection_key, points, reference)
            ),
        }

    likelihood_points = test[:num_likelihood_points]
    likelihood = diffusion.probability_flow_log_likelihood(
        keys[7], score_fn, noise_schedule, likelihood_points / scale, num_steps=num_ode_steps
    )
    log_scale_correction = train.shape[1] * math.log(scale)
    exact_logdensity = data.TOY_LOGDENSITIES.get(dataset)
    exact_test_nll = (
        None
        if exact_logdensity is None
        else -float(jnp.mean(jax.vmap(exact_logdensity)(likelihood_points)))
    )
    points = {"data": np.asarray(reference)} | {
        name: np.asarray(scale * samples) for name, (samples, _) in generated.items()
    }
    summary: dict[str, Any] = {
        "quick_mode": quick,
        "dataset": dataset,
        "objective": "eq. 11.16, epsilon-weighted",
        "schedule": f"linear, T = {noise_schedule.num_steps}",
        "data_scale": scale,
        "num_train_steps": num_train_steps,
        "train_seconds": train_seconds,
        "final_loss": float(jnp.mean(fit.losses[-100:])),
        "num_samples": num_samples,
        "test_median_distance": median_distance,
        "mmd_fine_bandwidth": fine_bandwidth,
        "samplers": {
            name: {"num_function_evaluations": nfe, **distances(scale * samples)}
            for name, (samples, nfe) in generated.items()
        },
        "train_vs_test": distances(train[:num_samples]),
        "noise_vs_test": distances(scale * initial),
        "probability_flow_test_nll": -float(jnp.mean(likelihood.log_likelihood))
        + log_scale_correction,
        "probability_flow_nll_nfe": likelihood.num_function_evaluations,
        "exact_test_nll": exact_test_nll,
        "num_likelihood_points": int(likelihood_points.shape[0]),
    }
    if dataset == "eight_gaussians":
        summary["mode_coverage"] = {
            "radius": MODE_RADIUS,
            "test": mode_coverage(np.asarray(reference)),
            "train": mode_coverage(np.asarray(train[:num_samples])),
            "noise": mode_coverage(np.asarray(scale * initial)),
        } | {name: mode_coverage(points[name]) for name in generated}
    summary["warnings"] = toy_2d_warnings(summary)
    _print_toy_2d(summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot_toy_2d(out_dir / "diffusion_2d.png", summary, points)
    return summary


def _median_distance(points: np.ndarray) -> float:
    """The median Euclidean distance over all pairs of ``points``."""
    squared = np.sum(points**2, axis=1)
    gram = squared[:, None] + squared[None, :] - 2.0 * points @ points.T
    upper = np.triu_indices(len(points), k=1)
    return float(np.median(np.sqrt(np.clip(gram[upper], 0.0, None))))


def mode_coverage(points: np.ndarray) -> dict[str, Any]:
    """Which of ``points`` lie near one of the eight Gaussians' centres, and near which.

    Args:
      points: shape ``(n, 2)``, in the data's units.

    Returns:
      ``fraction_near_modes``: the fraction within :data:`MODE_RADIUS` of a
      centre (86.5% for exact samples); ``mode_weights``: how those points
      share out among the eight modes (1/8 each for exact samples).

    Examples:
      >>> import numpy as np
      >>> coverage = mode_coverage(EIGHT_GAUSSIANS_CENTRES[[0, 0, 1, 2]] + 0.1)
      >>> coverage["fraction_near_modes"], coverage["mode_weights"][:3]
      (1.0, [0.5, 0.25, 0.25])
      >>> angles = np.linspace(0, 2 * np.pi, 1000, endpoint=False)  # a ring through the modes
      >>> ring = 2 * np.sqrt(2) * np.stack([np.cos(angles), np.sin(angles)], -1)
      >>> mode_coverage(ring)["fraction_near_modes"]  # 8 arcs of 4 asin(1/8) rad: 63.8%
      0.632
    """
    distances = np.linalg.norm(points[:, None, :] - EIGHT_GAUSSIANS_CENTRES[None], axis=-1)
    near = distances.min(axis=1) < MODE_RADIUS
    counts = np.bincount(distances.argmin(axis=1)[near], minlength=8)
    return {
        "fraction_near_modes": float(near.mean()),
        "mode_weights": (counts / max(int(near.sum()), 1)).tolist(),
    }


def toy_2d_warnings(summary: dict[str, Any]) -> list[str]:
    """What the 2-D summary shows to be wrong with each sampler.

    A sampler is warned about when it falls short of the train data on mode
    coverage (fewer samples near the modes, by :data:`MODE_COVERAGE_TOLERANCE`,
    or a mode holding under half its 1/8 share), naming the distances that
    still sit at or below the train-data floor and so hide it; and when any
    distance closed less than half the gap from the starting noise to the
    floor (:func:`~ebm_jax.demo.report.gap_warnings`).

    Args:
      summary: the 2-D summary: ``samplers``, ``train_vs_test`` and
        ``noise_vs_test`` rows of distances, and ``mode_coverage`` (on the
        eight Gaussians only).

    Returns:
      The warnings, one line each.
    """
    floor, noise = summary["train_vs_test"], summary["noise_vs_test"]
    coverage = summary.get("mode_coverage")
    warnings = []
    for name, row in summary["samplers"].items():
        label = f"diffusion 2-D, {name.replace('_', ' ')}"
        if coverage is not None:
            warnings += _mode_warnings(label, row, floor, coverage[name], coverage["train"])
        for key, metric in _METRICS.items():
            warnings += report.gap_warnings(label, metric, row[key], floor[key], noise[key])
    return warnings


_METRICS = {
    "mmd2_vs_test": "MMD² (median bandwidth)",
    "mmd2_fine_vs_test": "MMD² (fine bandwidth)",
    "sliced_wasserstein_vs_test": "SW₂",
}


def _mode_warnings(
    label: str,
    row: dict[str, float],
    floor: dict[str, float],
    coverage: dict[str, Any],
    train_coverage: dict[str, Any],
) -> list[str]:
    fraction, train_fraction = (
        coverage["fraction_near_modes"],
        train_coverage["fraction_near_modes"],
    )
    problems = []
    if fraction < train_fraction - MODE_COVERAGE_TOLERANCE:
        problems.append(
            f"only {fraction:.0%} of its samples lie within {MODE_RADIUS:.2f} (2 sd) of one of "
            f"the eight modes, train data {train_fraction:.0%}"
        )
    smallest = min(coverage["mode_weights"])
    if smallest < 0.5 / 8:
        mode = coverage["mode_weights"].index(smallest)
        problems.append(f"mode {mode} holds {smallest:.1%} of them, not 12.5%")
    if not problems:
        return []
    hidden = [metric for key, metric in _METRICS.items() if row[key] <= floor[key]]
    blind = (
        f"; yet its {' and '.join(hidden)} {'is' if len(hidden) == 1 else 'are'} at or below "
        "the train-data floor: no evidence of success here"
        if hidden
        else ""
    )
    return [f"{label}: {'; '.join(problems)}{blind}"]


def _print_toy_2d(summary: dict[str, Any]) -> None:
    title = f"Diffusion: noise-conditional score on {summary['dataset']}, {summary['objective']}"
    print(report.header(title, quick=summary["quick_mode"]))
    print(
        f"  training                 {summary['num_train_steps']} Adam steps in "
        f"{summary['train_seconds']:.1f} s, final loss {summary['final_loss']:.4g}"
    )
    coverage = summary.get("mode_coverage", {})
    print(
        f"  {summary['num_samples']} samples vs test     NFE      MMD²  MMD² fine      SW₂"
        + ("  near modes" if coverage else "")
    )
    rows = [(name, name.replace("_", " "), row["num_function_evaluations"], row) for name, row in
            summary["samplers"].items()]  # fmt: skip
    rows += [("train", "train data (floor)", 0, summary["train_vs_test"])]
    rows += [("noise", "N(0, I) start", 0, summary["noise_vs_test"])]
    for name, label, nfe, row in rows:
        print(
            f"    {label:<20}{nfe or '':>6}  {row['mmd2_vs_test']:>9.2e}"
            f"  {row['mmd2_fine_vs_test']:>9.2e}  {row['sliced_wasserstein_vs_test']:>7.4f}"
            + (f"  {coverage[name]['fraction_near_modes']:>10.1%}" if coverage else "")
        )
    print(
        f"  MMD² kernel bandwidth    median of each row's pooled pairs (test pairs: "
        f"{summary['test_median_distance']:.2f}); fine: fixed {summary['mmd_fine_bandwidth']:.2f}"
        + (
            f"; near modes: within {MODE_RADIUS:.2f} of a centre (exact samples 86.5%)"
            if coverage
            else ""
        )
    )
    exact = summary["exact_test_nll"]
    print(
        f"  probability-flow NLL     {summary['probability_flow_test_nll']:.4f} nats/point, "
        f"{summary['probability_flow_nll_nfe']} NFE"
        + ("" if exact is None else f"  (exact density {exact:.4f})")
    )
    report.print_warnings(summary["warnings"])


def _plot_toy_2d(path: Path, summary: dict[str, Any], points: dict[str, np.ndarray]) -> None:
    (x_min, x_max), (y_min, y_max) = data.TOY_BOUNDS
    coverage = summary.get("mode_coverage")
    floor = summary["train_vs_test"]
    figure, axes = report.figure(
        f"Diffusion on {summary['dataset']}: one score network ({summary['num_train_steps']} "
        f"Adam steps), three samplers from the same N(0, I) start, {summary['num_samples']} "
        f"points each; train-data floor: MMD² {floor['mmd2_vs_test']:.1e}, fine "
        f"{floor['mmd2_fine_vs_test']:.1e}, SW₂ {floor['sliced_wasserstein_vs_test']:.3f}",
        quick=summary["quick_mode"],
        ncols=len(points),
        figsize=(4.4 * len(points), 5.4),
    )
    for ax, (name, values) in zip(axes, points.items(), strict=True):
        ax.scatter(values[:, 0], values[:, 1], s=1, alpha=0.4, label="points")
        if name == "data":
            title = f"test data ({summary['dataset']})"
        else:
            row = summary["samplers"][name]
            title = (
                f"{name.replace('_', ' ')}, NFE {row['num_function_evaluations']}\n"
                f"MMD² {row['mmd2_vs_test']:.1e}, fine {row['mmd2_fine_vs_test']:.1e}, "
                f"SW₂ {row['sliced_wasserstein_vs_test']:.3f}"
            )
        if coverage is not None:
            near = coverage["test" if name == "data" else name]["fraction_near_modes"]
            title += f"\n{near:.0%} within {MODE_RADIUS:.2f} of a mode"
            for centre in EIGHT_GAUSSIANS_CENTRES:
                ax.add_patch(_circle(centre))
        ax.set(title=title, xlim=(x_min, x_max), ylim=(y_min, y_max), xlabel="x₁", ylabel="x₂")
        ax.set_aspect("equal")
        if coverage is not None and name == "data":
            ax.legend(
                handles=[_circle((0.0, 0.0))],
                labels=[f"radius {MODE_RADIUS:.2f}: 2 sd of a mode"],
                loc="center",
                fontsize=7,
            )
    report.save(figure, path)


def _circle(centre: Any) -> Any:
    from matplotlib.patches import Circle

    return Circle(tuple(centre), MODE_RADIUS, fill=False, color="tab:red", linewidth=0.8)

"""Maximum likelihood by persistent contrastive divergence on the 2-D toys, beside score matching.

On each 2-D dataset of :mod:`ebm_jax.data`, the MLP log-density of
``toy_likelihoods.py`` (``ej.models.MLPLogDensity``, two swish hidden layers,
a Gaussian envelope) is trained from the same initialisations, on the same
minibatches, for the same number of Adam steps by persistent contrastive
divergence (PCD, Tieleman 2008) with MALA negatives and an IGEBM replay buffer
(Du & Mordatch 2019): a buffer of chains started uniformly on
:data:`ebm_jax.data.TOY_BOUNDS`, a batch of them moved a few MALA steps under
the current model at every update, each restarted from uniform noise with a
small probability. Its gradient is the Monte-Carlo gradient of the negative
log-likelihood (lecture §11.1, :mod:`ebm_jax.losses.contrastive`), plus the
energy regulariser :math:`\\alpha (\\overline{f(x^+)^2} + \\overline{f(x^-)^2})`
of Du & Mordatch. Each model is scored by its exact test negative
log-likelihood in nats, log Z by quadrature
(:func:`ebm_jax.diagnostics.nll_2d_quadrature`) with its error estimate, on
:data:`~ebm_jax.data.TOY_BOUNDS` as for score matching ("PCD") and on
:math:`[-40, 40]^2` ("PCD Z±40", the model's own NLL), with the mass outside
TOY_BOUNDS that separates the two. The score-matching models have no mass
outside TOY_BOUNDS (their log Z is the same on :math:`[-80, 80]^2`, checked
for eight Gaussians and rings, seed 0); the PCD models have up to a fifth of
it there, where no chain goes, and their log Z stops growing by
:math:`[-40, 40]^2` (unchanged on :math:`[-80, 80]^2`, same check).

Why: score matching minimises the Fisher divergence, which is blind to the
relative weights of separated pieces of the data (Song & Ermon 2019, §3.2;
Koehler, Heckett & Risteski 2023): on the rings its test NLL varies by nats
from seed to seed (``results/toy_likelihoods.json``). Maximum likelihood sees
the weights through :math:`\\nabla_\\theta \\log Z = E_{p_\\theta}[\\nabla_\\theta
f_\\theta]`, but only as far as the negative chains carry the model's weights:
chains that cannot cross between pieces hold whatever populations their
history gave them, and the restarts from noise refill the pieces in
proportion to their basins, not their weights. Whether PCD gets the rings'
weights right is the thing to observe.

The regulariser is a trade-off, not a detail. The surrogate's derivative in
:math:`f(x^-)` is :math:`1 + 2\\alpha f(x^-)` and in :math:`f(x^+)` it is
:math:`-1 + 2\\alpha f(x^+)`, so the updates stop lowering :math:`f` below
:math:`-1/(2\\alpha)` and raising it above :math:`1/(2\\alpha)`: the model
spans about :math:`1/\\alpha` nats wherever chains or data go. That flattens
the barriers between modes enough for the MALA chains to cross them, so the
chains carry the modes' weights; the price is mass in the gaps and beyond
the box (hence the two NLL columns). With a small :math:`\\alpha` the
barriers are deep, the chains stay in the modes where
they landed, and the weights drift freely (one ring or one Gaussian takes
most of the mass, although the chains look like the data).

The table shows the mean ± sd of the test NLL over ``--seeds`` runs (the
same initialisations and minibatch orders as ``toy_likelihoods.py``), the
score-matching columns read from ``results/toy_likelihoods.json``
(``--score-matching``; a ``--quick`` run reads the quick one under
``out/benchmarks/quick/``) when its settings match (else "–"), and PCD − exact
SM (both with log Z on TOY_BOUNDS) as the mean ± standard error of the paired
(same-seed) differences. The MALA acceptance is that of the last update,
averaged over seeds. ``--methods`` adds plain PCD (one chain per batch element,
all moved every update, never restarted) and CD-k (chains started at the data
batch) as extra columns, at extra cost.

Settings (defaults, from a short single-seed exploration on rings and eight
Gaussians; a smaller :math:`\\alpha` or restarts on a wider box cost the
rings more than they save the Gaussians): MALA drift step 0.02 (acceptance 0.7–0.98 on the trained
models), 5 MALA steps per update, a buffer of 8192 chains, 256 negatives,
restart probability 0.05, :math:`\\alpha = 0.1`, Adam from 5e-3 (the
score-matching runs use 2e-3; at 2e-3 PCD had not sharpened the rings in
5000 steps).

Run as ``python benchmarks/toy_contrastive.py`` (about a quarter of an hour
on two idle CPU cores); ``--quick`` is a smoke run. Writes
``results/toy_contrastive.json`` and, when matplotlib is installed,
``results/toy_contrastive.png`` (data, learned density and final replay buffer
for seed 0), or the same beside ``--out``; a ``--quick`` run without ``--out``
writes them under ``out/benchmarks/quick/``.

References:
  Tieleman (2008), *Training restricted Boltzmann machines using
  approximations to the likelihood gradient*, ICML.
  Du & Mordatch (2019), *Implicit generation and modeling with energy-based
  models*, NeurIPS, arXiv:1903.08689.
  Song & Ermon (2019), *Generative modeling by estimating gradients of the
  data distribution*, NeurIPS, arXiv:1907.05600.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import environment, out_help, output_path, quick_note, save_figure, write_json
from toy_likelihoods import (
    BATCH_SIZE,
    ENVELOPE_SCALE,
    HIDDEN_SIZES,
    NUM_TEST,
    NUM_TRAIN,
    _density_on_grid,
)

import ebm_jax as ej

RESULTS_FILE = "toy_contrastive.json"
SCORE_MATCHING_RESULTS = "toy_likelihoods.json"
SCORE_MATCHING_METHODS = ("exact", "ssm", "dsm")
METHODS = ("pcd", "pcd_plain", "cd")
METHOD_LABELS = {"pcd": "PCD", "pcd_plain": "plain PCD", "cd": "CD-k"}
# The settings under which a score-matching row of toy_likelihoods.json is the
# same experiment: data, model, initialisations, step count and evaluation.
SHARED_SETTINGS = (
    "num_steps",
    "resolution",
    "hidden_sizes",
    "envelope_scale",
    "batch_size",
    "num_train",
    "num_test",
    "seed",
    "seeds",
)
WIDE_BOUNDS = ((-40.0, 40.0), (-40.0, 40.0))
# A spacing of 80 / 2048 at the default resolution still resolves the rings' width 0.08.
WIDE_RESOLUTION_FACTOR = 4
NUM_PLOTTED_NEGATIVES = 4000


def uniform_on_box(rng_key: jax.Array) -> jax.Array:
    """One chain start, uniform on :data:`ebm_jax.data.TOY_BOUNDS`."""
    (x_min, x_max), (y_min, y_max) = ej.data.TOY_BOUNDS
    return jax.random.uniform(
        rng_key, (2,), minval=jnp.array([x_min, y_min]), maxval=jnp.array([x_max, y_max])
    )


class Objective:
    """A CD loss and how to start its chains: ``loss_state(rng_key)`` is None when stateless."""

    def __init__(self, method: str, model: Any, args: argparse.Namespace) -> None:
        common = {
            "step_size": args.step_size,
            "num_steps": args.num_mala_steps,
            "regularization": args.regularization,
        }
        self.num_chains = 0
        self.initial_chains: Any = None
        if method == "pcd":
            pcd = ej.losses.persistent_contrastive_divergence(
                model.apply,
                num_negatives=BATCH_SIZE,
                reinit_probability=args.reinit_probability,
                reinit_fn=uniform_on_box,
                **common,
            )
            self.loss, self.initial_chains, self.num_chains = pcd.loss, pcd.init, args.buffer_size
        elif method == "pcd_plain":
            pcd = ej.losses.persistent_contrastive_divergence(model.apply, **common)
            self.loss, self.initial_chains, self.num_chains = pcd.loss, pcd.init, BATCH_SIZE
        elif method == "cd":
            self.loss = ej.losses.contrastive_divergence(model.apply, **common)
        else:
            raise ValueError(f"unknown method {method!r}")

    def loss_state(self, rng_key: jax.Array) -> Any:
        if self.initial_chains is None:
            return None
        starts = jax.vmap(uniform_on_box)(jax.random.split(rng_key, self.num_chains))
        return self.initial_chains(starts)


def evaluate(
    logdensity_fn: Callable[[jax.Array], jax.Array], test: jax.Array, resolution: int
) -> dict[str, float]:
    """Exact test NLL with log Z on TOY_BOUNDS (as toy_likelihoods.py) and on WIDE_BOUNDS."""
    box = ej.diagnostics.nll_2d_quadrature(
        logdensity_fn, test, ej.data.TOY_BOUNDS, resolution=resolution
    )
    wide = ej.diagnostics.nll_2d_quadrature(
        logdensity_fn, test, WIDE_BOUNDS, resolution=WIDE_RESOLUTION_FACTOR * resolution
    )
    return {
        "test_nll": float(box.nll),
        "log_partition": float(box.log_partition),
        "log_partition_error": float(box.log_partition_error),
        "test_nll_wide": float(wide.nll),
        "log_partition_wide": float(wide.log_partition),
        "log_partition_wide_error": float(wide.log_partition_error),
        "mass_outside_bounds": max(
            0.0, -math.expm1(float(box.log_partition) - float(wide.log_partition))
        ),
    }


def train_and_evaluate(
    name: str,
    args: argparse.Namespace,
    model: Any,
    objectives: dict[str, Objective],
    optimizer: optax.GradientTransformation,
    score_matching: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Every CD method on one dataset, over ``args.seeds`` initialisations and minibatch orders."""
    sample = ej.data.TOY_DATASETS[name]
    # The keys of toy_likelihoods.py, so data, initialisations and batches are the same.
    data_key, test_key, init_root, fit_root = jax.random.split(jax.random.key(args.seed), 4)
    train = sample(data_key, NUM_TRAIN)
    test = sample(test_key, NUM_TEST)
    row: dict[str, Any] = {"dataset": name, "true_nll": None}
    if name in ej.data.TOY_LOGDENSITIES:
        row["true_nll"] = -float(jnp.mean(jax.vmap(ej.data.TOY_LOGDENSITIES[name])(test)))
    plots: dict[str, np.ndarray] = {"data": np.asarray(train[:NUM_PLOTTED_NEGATIVES])}
    runs: dict[str, list[dict[str, Any]]] = {method: [] for method in args.methods}
    for seed in range(args.seeds):
        initial_params = model.init(jax.random.fold_in(init_root, seed), jnp.zeros(2))
        fit_key = jax.random.fold_in(fit_root, seed)
        # A stream of its own (fit splits fit_key), so the batches match toy_likelihoods.py.
        chains_key = jax.random.fold_in(fit_key, 1)
        for method in args.methods:
            objective = objectives[method]
            start = time.perf_counter()
            try:
                result = ej.training.fit(
                    fit_key,
                    objective.loss,
                    initial_params,
                    optimizer,
                    train,
                    num_steps=args.num_steps,
                    batch_size=BATCH_SIZE,
                    chunk_size=min(500, args.num_steps),
                    loss_state=objective.loss_state(chains_key),
                    progress=False,
                )
            except ej.training.NonFiniteLossError as error:
                runs[method].append({"seed": seed, "test_nll": None, "failed": str(error)})
                continue
            seconds = time.perf_counter() - start
            logdensity_fn = lambda x, params=result.params: model.apply(params, x)
            evaluation = evaluate(logdensity_fn, test, args.resolution)
            chains = result.loss_state
            runs[method].append(
                {
                    "seed": seed,
                    **evaluation,
                    "final_loss": float(jnp.mean(result.losses[-100:])),
                    "train_seconds": seconds,
                    "acceptance_rate": None if chains is None else float(chains.acceptance_rate),
                    "num_nonfinite": None if chains is None else int(chains.num_nonfinite),
                    "num_reinitialised": None if chains is None else int(chains.num_reinitialised),
                }
            )
            if seed == 0:
                plots[method] = _density_on_grid(logdensity_fn, evaluation["log_partition"])
                if chains is not None:
                    plots[f"{method}_negatives"] = np.asarray(
                        chains.positions[:NUM_PLOTTED_NEGATIVES]
                    )
    for method in args.methods:
        row[method] = _summarise(runs[method])
    _compare_with_score_matching(row, runs, score_matching)
    print(_line(row, args.methods), flush=True)
    return row, plots


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    finished = [run for run in runs if run["test_nll"] is not None]
    nll = np.array([run["test_nll"] for run in finished])
    nll_wide = np.array([run["test_nll_wide"] for run in finished])

    def mean_of(key: str) -> float | None:
        values = [run[key] for run in finished if run.get(key) is not None]
        return float(np.mean(values)) if values else None

    def max_of(key: str) -> Any:
        values = [run[key] for run in finished if run.get(key) is not None]
        return max(values) if values else None

    return {
        "test_nll": float(nll.mean()) if len(nll) else None,
        "test_nll_sd": float(nll.std(ddof=1)) if len(nll) > 1 else None,
        "test_nll_wide": float(nll_wide.mean()) if len(nll_wide) else None,
        "test_nll_wide_sd": float(nll_wide.std(ddof=1)) if len(nll_wide) > 1 else None,
        "num_failed": len(runs) - len(finished),
        "acceptance_rate": mean_of("acceptance_rate"),
        "num_nonfinite": max_of("num_nonfinite"),
        "max_log_partition_error": max_of("log_partition_error"),
        "max_mass_outside_bounds": max_of("mass_outside_bounds"),
        "train_seconds": mean_of("train_seconds"),
        "runs": runs,
    }


def load_score_matching(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The rows of ``toy_likelihoods.json`` by dataset, if it ran the same experiment."""
    if not path.exists():
        print(f"no {path.name}: score-matching columns left empty", flush=True)
        return None
    report = json.loads(path.read_text())
    theirs = report.get("settings", {})
    differing = [
        key for key in SHARED_SETTINGS if json.dumps(theirs.get(key)) != json.dumps(settings[key])
    ]
    if differing:
        print(
            f"{path.name} has other settings ({', '.join(differing)}): "
            "score-matching columns left empty",
            flush=True,
        )
        return None
    return {row["dataset"]: row for row in report["rows"]}


def _compare_with_score_matching(
    row: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]],
    score_matching: dict[str, Any] | None,
) -> None:
    """Score-matching NLLs beside ours, and PCD − exact SM paired by seed."""
    theirs = (score_matching or {}).get(row["dataset"])
    for method in SCORE_MATCHING_METHODS:
        cell = None if theirs is None else theirs.get(method)
        row[f"sm_{method}"] = (
            None
            if cell is None
            else {"test_nll": cell["test_nll"], "test_nll_sd": cell["test_nll_sd"]}
        )
    row["pcd_minus_exact"] = row["pcd_minus_exact_se"] = None
    if theirs is None or "pcd" not in runs:
        return
    exact_by_seed = {run["seed"]: run["test_nll"] for run in theirs["exact"]["runs"]}
    differences = np.array(
        [
            run["test_nll"] - exact_by_seed[run["seed"]]
            for run in runs["pcd"]
            if run["test_nll"] is not None and run["seed"] in exact_by_seed
        ]
    )
    if len(differences):
        row["pcd_minus_exact"] = float(differences.mean())
    if len(differences) > 1:
        row["pcd_minus_exact_se"] = float(differences.std(ddof=1) / np.sqrt(len(differences)))


def _mean_sd(cell: dict[str, Any] | None, key: str = "test_nll") -> str:
    if cell is None or cell[key] is None:
        return f"{'–':>14}"
    sd = cell[f"{key}_sd"]
    return f"{cell[key]:>7.3f}" + (f" ±{sd:<5.2f}" if sd is not None else " " * 7)


def _header(methods: tuple[str, ...]) -> str:
    first, *others = methods
    return (
        f"{'dataset':<16}{'true':>7}"
        + f"{METHOD_LABELS[first]:>14}{METHOD_LABELS[first] + ' Z±40':>14}"
        + "".join(f"{METHOD_LABELS[m]:>14}" for m in others)
        + "".join(f"{label:>14}" for label in ("exact SM", "SSM", "DSM"))
        + f"  {'PCD − exact SM':>15}"
        + "".join(f"{label:>9}" for label in ("accept", "nonfin", "out", "train s", "logZ err"))
    )


def _line(row: dict[str, Any], methods: tuple[str, ...]) -> str:
    difference = f"{'–':>15}"
    if row["pcd_minus_exact"] is not None:
        se = row["pcd_minus_exact_se"]
        difference = f"{row['pcd_minus_exact']:>+8.3f}" + (
            f" ±{se:<5.2f}" if se is not None else ""
        )
    # Diagnostics of the first method (PCD by default).
    first = row[methods[0]]
    acceptance = first["acceptance_rate"]
    nonfinite = first["num_nonfinite"]
    outside = first["max_mass_outside_bounds"]
    seconds = first["train_seconds"]
    error = first["max_log_partition_error"]
    return (
        f"{row['dataset']:<16}"
        + (f"{row['true_nll']:>7.3f}" if row["true_nll"] is not None else f"{'–':>7}")
        + _mean_sd(row[methods[0]])
        + _mean_sd(row[methods[0]], "test_nll_wide")
        + "".join(_mean_sd(row[m]) for m in methods[1:])
        + "".join(_mean_sd(row[f"sm_{m}"]) for m in SCORE_MATCHING_METHODS)
        + f"  {difference:>15}"
        + (f"{acceptance:>9.3f}" if acceptance is not None else f"{'–':>9}")
        + (f"{nonfinite:>9d}" if nonfinite is not None else f"{'–':>9}")
        + (f"{outside:>9.1e}" if outside is not None else f"{'–':>9}")
        + (f"{seconds:>9.1f}" if seconds is not None else f"{'–':>9}")
        + (f"{error:>9.1e}" if error is not None else f"{'–':>9}")
    )


def plot(
    rows: list[dict[str, Any]],
    grids: list[dict[str, np.ndarray]],
    methods: tuple[str, ...],
    path: Path,
    *,
    quick: bool,
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", flush=True)
        return
    columns = ["data"]
    for method in methods:
        columns.append(method)
        if f"{method}_negatives" in grids[0]:
            columns.append(f"{method}_negatives")
    bounds = ej.data.TOY_BOUNDS
    extent = [*bounds[0], *bounds[1]]
    fig, axes = _common.toy_grid_figure(plt, len(rows), len(columns))
    image = None
    for i, (row, grid) in enumerate(zip(rows, grids, strict=True)):
        for j, column in enumerate(columns):
            ax = axes[i, j]
            if column not in grid:  # the run failed
                ax.text(0.5, 0.5, "failed", transform=ax.transAxes, ha="center", va="center")
                ax.set_aspect("equal")
            elif column == "data" or column.endswith("_negatives"):
                # Points as a histogram, scaled like the densities: each panel to its maximum.
                counts, _, _ = np.histogram2d(*grid[column].T, bins=100, range=bounds)
                image = ax.imshow(counts.T / np.max(counts), origin="lower", extent=extent,
                                  cmap="viridis", vmin=0)  # fmt: skip
            else:
                values = grid[column]
                image = ax.imshow(values / np.max(values), origin="lower", extent=extent,
                                  cmap="viridis", vmin=0)  # fmt: skip
                nll = row[column]["runs"][0]["test_nll"]
                ax.text(0.03, 0.97, f"NLL {nll:.3f}", transform=ax.transAxes, va="top",
                        fontsize=7, color="white")  # fmt: skip
            if i == 0:
                method = column.removesuffix("_negatives")
                label = METHOD_LABELS.get(method, column)
                if column == "data":
                    label = "training data"
                ax.set_title(f"{label} chains" if column.endswith("_negatives") else label)
            if i == len(rows) - 1:
                ax.set_xlabel("x₁")
            if j == 0:
                ax.set_ylabel(f"{row['dataset']}\nx₂")
    if image is not None:
        fig.colorbar(
            image, ax=axes, shrink=0.6, label="density (or points per bin) ÷ panel maximum"
        )
    fig.suptitle(
        "Contrastive divergence on the 2-D toys: learned densities (seed 0) and the "
        "chains' negative samples;\nNLL: exact test negative log-likelihood in nats"
    )
    save_figure(fig, path, quick=quick, dpi=100)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 datasets, 200 steps")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=out_help("JSON results file; the figure goes beside it", RESULTS_FILE),
    )
    parser.add_argument("--num-steps", type=int, default=None, help="Adam steps")
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--resolution", type=int, default=None, help="quadrature grid size")
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--seed", type=int, default=0, help="data and root key")
    parser.add_argument("--seeds", type=int, default=None, help="runs per method (default 3)")
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=["pcd"], help="CD variants to train"
    )
    parser.add_argument("--step-size", type=float, default=0.02, help="MALA drift step τ")
    parser.add_argument("--num-mala-steps", type=int, default=5, help="MALA steps per update")
    parser.add_argument("--buffer-size", type=int, default=8192, help="replay buffer chains")
    parser.add_argument("--reinit-probability", type=float, default=0.05)
    parser.add_argument("--regularization", type=float, default=0.1, help="energy regulariser α")
    parser.add_argument(
        "--score-matching",
        type=Path,
        default=None,
        help=out_help(
            "toy_likelihoods.py's JSON, for the score-matching columns", SCORE_MATCHING_RESULTS
        ),
    )
    args = parser.parse_args(argv)
    args.out = output_path(RESULTS_FILE, args.out, quick=args.quick)
    # Where a quick toy_likelihoods.py run wrote, so that quick runs compare with quick runs.
    args.score_matching = output_path(SCORE_MATCHING_RESULTS, args.score_matching, quick=args.quick)
    if args.num_steps is None:
        args.num_steps = 200 if args.quick else 5000
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    if args.resolution is None:
        args.resolution = 128 if args.quick else 512
    args.methods = tuple(dict.fromkeys(args.methods))
    names = args.datasets or list(ej.data.TOY_DATASETS)[: 2 if args.quick else None]

    settings = {
        "quick": args.quick,
        "num_steps": args.num_steps,
        "learning_rate": args.learning_rate,
        "resolution": args.resolution,
        "hidden_sizes": HIDDEN_SIZES,
        "envelope_scale": ENVELOPE_SCALE,
        "batch_size": BATCH_SIZE,
        "num_train": NUM_TRAIN,
        "num_test": NUM_TEST,
        "seed": args.seed,
        "seeds": args.seeds,
        "methods": args.methods,
        "mala_step_size": args.step_size,
        "num_mala_steps": args.num_mala_steps,
        "buffer_size": args.buffer_size,
        "num_negatives": BATCH_SIZE,
        "reinit_probability": args.reinit_probability,
        "reinit": "uniform on TOY_BOUNDS",
        "regularization": args.regularization,
        "wide_bounds": WIDE_BOUNDS,
        "wide_resolution": WIDE_RESOLUTION_FACTOR * args.resolution,
    }
    env = environment("flax", "optax")
    print(
        f"jax {env['jax']} on {env['backend']}; MLP {HIDDEN_SIZES} swish, envelope "
        f"{ENVELOPE_SCALE}, batch {BATCH_SIZE}, {args.num_steps} Adam steps (cosine from "
        f"{args.learning_rate}); MALA τ={args.step_size} × {args.num_mala_steps} steps per "
        f"update, buffer {args.buffer_size}, restart probability {args.reinit_probability}, "
        f"α={args.regularization}; exact test NLL in nats (log Z by quadrature, "
        f"{args.resolution}² grid){quick_note(args.quick)}",
        flush=True,
    )
    score_matching = load_score_matching(args.score_matching, settings)
    model = ej.models.MLPLogDensity(HIDDEN_SIZES, envelope_scale=ENVELOPE_SCALE)
    # Built once, so each method's training step compiles once for all datasets and seeds.
    objectives = {method: Objective(method, model, args) for method in args.methods}
    schedule = optax.cosine_decay_schedule(args.learning_rate, args.num_steps, alpha=0.01)
    optimizer = optax.adam(schedule)
    print(_header(args.methods), flush=True)
    rows, grids = [], []
    for name in names:
        row, grid = train_and_evaluate(name, args, model, objectives, optimizer, score_matching)
        rows.append(row)
        grids.append(grid)
    print(
        f"\nNLL with log Z on TOY_BOUNDS, as for score matching; Z±40: with log Z on "
        f"{WIDE_BOUNDS}, the model's own NLL.\nOf {METHOD_LABELS[args.methods[0]]}: "
        "accept: MALA acceptance at the last update; nonfin: non-finite proposals "
        "rejected;\nout: largest model mass outside TOY_BOUNDS; train s: mean seconds "
        "per run (the first includes compilation);\nlogZ err: largest quadrature "
        "error estimate on TOY_BOUNDS",
        flush=True,
    )
    report = {
        "environment": env,
        "settings": settings,
        "score_matching_source": None if score_matching is None else args.score_matching.name,
        "rows": rows,
    }
    write_json(args.out, report, quick=args.quick)
    plot(rows, grids, args.methods, args.out.with_suffix(".png"), quick=args.quick)
    return report


if __name__ == "__main__":
    main()

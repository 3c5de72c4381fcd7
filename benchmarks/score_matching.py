"""Score-matching scalability: seconds per training step against the data dimension.

The experiment of Song et al. (2019, "Sliced score matching", §5.1, Fig. 1):
data N(0, I_d), one MLP log-density (``ej.models.MLPLogDensity``, two swish
hidden layers), and one optax Adam step per objective, at
d ∈ {2, 8, 32, 128, 512, 784}:

* ``plain``  — ``value_and_grad`` of ``mean f_θ(x)``: the cost of one
  forward and backward pass of the network, the yardstick;
* ``dsm``    — denoising score matching (Vincent 2011), the score by ``jax.grad``;
* ``ssm``    — sliced score matching, one Rademacher probe;
* ``ssm_vr`` — its variance-reduced form;
* ``exact``  — exact score matching (eq. 11.2), the Jacobian trace from d JVPs.

Every contender is a jitted ``lax.scan`` of whole training steps (fresh data
and probes drawn inside), timed side by side in interleaved rounds.
Targets: an SSM step costs at most 1.6x a DSM step and at most 3.5x a plain
step at every d. Exact SM takes d JVPs, so its cost relative to SSM grows ∝ d
(the log-log slopes over d ≥ 32 of its time and of exact/SSM are reported;
the time itself grows faster than d once the first layer, O(d h) per pass,
dominates), and exact/SSM at d = 784 is reported.

Part 2, **the training loop's cost**: the same objectives (plain, SSM, DSM,
exact) on an MLP 256x256 softplus, batch 64, at d ∈ {2, 32, 784}, through
:func:`ebm_jax.training.fit` (shuffled epochs of a 4096-example dataset, its
default chunks of 100 steps, every guarantee on) against a *bare scan*: one
jitted ``lax.scan`` of (batch slice + ``value_and_grad`` + ``optax.adam``)
on the same loss and data. Target: fit/bare ≤ 1.05 for plain and SSM at d = 2
and 784. The same fit steps are set against the original PyTorch
sliced-score-matching losses (``PYTORCH_MS_PER_STEP``, reference constants
with their source): targets SSM ≥ 1.5x and DSM ≥ 1.2x faster at every d,
exact SM faster.

Run as ``python benchmarks/score_matching.py`` (``make bench``); ``--quick`` is
a fast smoke run. Writes ``results/score_matching.json`` and, when matplotlib
is installed, ``results/score_matching.png`` (or the same beside ``--out``; a
``--quick`` run without ``--out`` writes them under ``out/benchmarks/quick/``).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import (
    environment,
    out_help,
    output_path,
    paired_ratio,
    quick_note,
    save_figure,
    time_side_by_side,
    wall_time,
    write_json,
)

import ebm_jax as ej

RESULTS_FILE = "score_matching.json"
DIMS = (2, 8, 32, 128, 512, 784)
HIDDEN_SIZES = (256, 256)
BATCH_SIZE = 128
DSM_SIGMA = 0.1
LEARNING_RATE = 1e-3
METHODS = ("plain", "dsm", "ssm", "ssm_vr", "exact")
TARGETS = {"ssm_vs_dsm": 1.6, "ssm_vs_plain": 3.5}

# Part 2: fit against a bare scan, and against PyTorch.
FIT_DIMS = (2, 32, 784)
FIT_BATCH_SIZE = 64
FIT_NUM_EXAMPLES = 4096
FIT_CHUNK_SIZE = 100  # fit's default
FIT_METHODS = ("plain", "ssm", "dsm", "exact")
FIT_TARGETS = {"fit_vs_bare": 1.05, "ssm_speedup": 1.5, "dsm_speedup": 1.2, "exact_speedup": 1.0}
# Milliseconds per step of the original PyTorch code (ermongroup/sliced_score_matching,
# Song et al. 2019: its ssm, dsm and exact score-matching losses on an energy network,
# the score by autograd.grad with create_graph=True), loss + backward only, no
# optimizer step; torch 2.13 CPU, 2 threads, MLP 256x256 softplus, batch 64; measured
# alternately with this library's fit on a quiet 2-core x86-64 machine (the machine
# this benchmark's CPU results come from). Constants: torch is not a dependency.
PYTORCH_MS_PER_STEP = {
    "ssm": {2: 1.91, 32: 2.00, 784: 3.47},
    "dsm": {2: 0.94, 32: 1.02, 784: 2.01},
    "exact": {2: 2.98, 32: 38.2, 784: 1729.0},
}
PYTORCH_SOURCE = (
    "ermongroup/sliced_score_matching losses, torch 2.13 CPU (2 threads), MLP 256x256 "
    "softplus, batch 64, loss + backward only; quiet 2-core machine"
)


def make_losses(model: Any) -> dict[str, Callable[..., jax.Array]]:
    """The five per-step objectives, each ``loss_fn(params, rng_key, batch)``."""
    logdensity_fn = model.apply

    def plain(params: Any, rng_key: jax.Array, batch: jax.Array) -> jax.Array:
        del rng_key
        return -jnp.mean(jax.vmap(logdensity_fn, in_axes=(None, 0))(params, batch))

    return {
        "plain": plain,
        "dsm": ej.losses.denoising_score_matching(ej.score(logdensity_fn, argnum=1), DSM_SIGMA),
        "ssm": ej.losses.sliced_score_matching(logdensity_fn),
        "ssm_vr": ej.losses.sliced_score_matching(logdensity_fn, variance_reduction=True),
        "exact": ej.losses.score_matching(logdensity_fn),
    }


def make_training_run(
    loss_fn: Callable[..., jax.Array], optimizer: optax.GradientTransformation, dim: int
) -> Callable[[Any, Any, jax.Array, int], Any]:
    """A jitted scan of ``num_steps`` Adam steps on fresh N(0, I_d) batches."""

    @functools.partial(jax.jit, static_argnums=3)
    def run(params: Any, opt_state: Any, rng_key: jax.Array, num_steps: int) -> Any:
        def one_step(carry: Any, step_key: jax.Array) -> Any:
            params, opt_state = carry
            data_key, loss_key = jax.random.split(step_key)
            batch = jax.random.normal(data_key, (BATCH_SIZE, dim))
            loss, grads = jax.value_and_grad(loss_fn)(params, loss_key, batch)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            one_step, (params, opt_state), jax.random.split(rng_key, num_steps)
        )
        return params, opt_state, losses

    return run


def _steps_for(
    run: Callable[[int], Any], target_s: float, max_steps: int = 200
) -> tuple[int, float]:
    """Steps per timed call (about ``target_s`` long) and the probe's seconds per step."""
    jax.block_until_ready(run(1))
    per_step = min(wall_time(lambda: run(1)) for _ in range(2))
    return max(1, min(max_steps, int(target_s / max(per_step, 1e-9)))), per_step


def bench_dimension(dim: int, args: argparse.Namespace) -> dict[str, Any]:
    model = ej.models.MLPLogDensity(HIDDEN_SIZES)
    params = model.init(jax.random.key(0), jnp.zeros(dim))
    optimizer = optax.adam(LEARNING_RATE)
    opt_state = optimizer.init(params)
    rng_key = jax.random.key(1)
    losses = make_losses(model)
    methods = [m for m in METHODS if m != "exact" or dim <= args.max_exact_dim]

    contenders: dict[str, Callable[[], Any]] = {}
    num_steps: dict[str, int] = {}
    for method in methods:
        run = make_training_run(losses[method], optimizer, dim)
        steps, _ = _steps_for(lambda n, run=run: run(params, opt_state, rng_key, n), args.target)
        num_steps[method] = steps
        contenders[method] = functools.partial(run, params, opt_state, rng_key, steps)
    repeats = args.repeats
    timings = time_side_by_side(contenders, repeats)

    per_step = {m: np.asarray(timings[m]["times_s"]) / num_steps[m] for m in methods}
    seconds = {m: float(np.median(per_step[m])) for m in methods}

    def ratio(numerator: str, denominator: str) -> float | None:
        if numerator not in per_step or denominator not in per_step:
            return None
        return float(np.median(per_step[numerator] / per_step[denominator]))

    row: dict[str, Any] = {
        "dim": dim,
        "num_steps": num_steps,
        "seconds_per_step": seconds,
        "compile_s": {m: timings[m]["compile_s"] for m in methods},
        "ssm_vs_dsm": ratio("ssm", "dsm"),
        "ssm_vs_plain": ratio("ssm", "plain"),
        "ssm_vr_vs_dsm": ratio("ssm_vr", "dsm"),
        "ssm_vr_vs_plain": ratio("ssm_vr", "plain"),
        "exact_vs_ssm": ratio("exact", "ssm"),
        "timings": timings,
    }
    print(_line(row), flush=True)
    return row


# --- part 2: fit against a bare scan and against PyTorch ------------------------------------


def make_bare_scan(
    loss_fn: Callable[..., jax.Array], optimizer: optax.GradientTransformation
) -> Callable[[Any, Any, jax.Array, jax.Array, int], Any]:
    """The least a training loop does: a jitted scan of batch slice, ``value_and_grad``, Adam."""

    @functools.partial(jax.jit, static_argnums=4)
    def run(params: Any, opt_state: Any, dataset: jax.Array, rng_key: jax.Array, n: int) -> Any:
        steps_per_epoch = dataset.shape[0] // FIT_BATCH_SIZE

        def one_step(carry: Any, step: jax.Array) -> Any:
            params, opt_state = carry
            start = (step % steps_per_epoch) * FIT_BATCH_SIZE
            batch = jax.lax.dynamic_slice_in_dim(dataset, start, FIT_BATCH_SIZE)
            step_key = jax.random.fold_in(rng_key, step)
            loss, grads = jax.value_and_grad(loss_fn)(params, step_key, batch)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(one_step, (params, opt_state), jnp.arange(n))
        return params, opt_state, losses

    return run


def bench_fit(dim: int, args: argparse.Namespace) -> dict[str, Any]:
    """fit and the bare scan side by side for each objective; fit against PyTorch's figures."""
    model = ej.models.MLPLogDensity(HIDDEN_SIZES, activation=jax.nn.softplus)
    params = model.init(jax.random.key(0), jnp.zeros(dim))
    optimizer = optax.adam(LEARNING_RATE)
    opt_state = optimizer.init(params)
    dataset = jax.random.normal(jax.random.key(2), (FIT_NUM_EXAMPLES, dim))
    losses = make_losses(model)
    methods = [m for m in FIT_METHODS if m != "exact" or dim <= args.max_exact_dim]
    rows: dict[str, Any] = {}
    for method in methods:
        bare = make_bare_scan(losses[method], optimizer)
        probe = functools.partial(bare, params, opt_state, dataset, jax.random.key(1))
        num_steps, _ = _steps_for(probe, args.fit_target, max_steps=10_000)
        if num_steps > FIT_CHUNK_SIZE:  # whole chunks: one compiled chunk, no shorter tail
            num_steps -= num_steps % FIT_CHUNK_SIZE
        fit = functools.partial(
            ej.training.fit,
            jax.random.key(1),
            losses[method],
            params,
            optimizer,
            dataset,
            num_steps=num_steps,
            batch_size=FIT_BATCH_SIZE,
            progress=False,
        )
        timings = time_side_by_side(
            {"bare": functools.partial(probe, num_steps), "fit": lambda fit=fit: fit().params},
            args.repeats,
        )
        fit_ms = timings["fit"]["median_s"] / num_steps * 1e3
        pytorch_ms = PYTORCH_MS_PER_STEP.get(method, {}).get(dim)
        rows[method] = {
            "num_steps": num_steps,
            "fit_ms_per_step": fit_ms,
            "bare_ms_per_step": timings["bare"]["median_s"] / num_steps * 1e3,
            "fit_vs_bare": paired_ratio(timings["fit"], timings["bare"]),
            "pytorch_ms_per_step": pytorch_ms,
            "speedup_vs_pytorch": None if pytorch_ms is None else pytorch_ms / fit_ms,
            "timings": timings,
        }
    print(_fit_line(dim, rows), flush=True)
    return {"dim": dim, "methods": rows}


FIT_HEADER = f"{'d':>4}  " + "  ".join(
    f"{m + ' fit/bare':>14} {'vs torch':>8}" for m in FIT_METHODS
)


def _fit_line(dim: int, rows: dict[str, Any]) -> str:
    cells = []
    for method in FIT_METHODS:
        row = rows.get(method)
        if row is None:
            cells.append(f"{'-':>14} {'-':>8}")
            continue
        speedup = row["speedup_vs_pytorch"]
        cells.append(
            f"{row['fit_ms_per_step']:>6.3f}ms {row['fit_vs_bare']:>5.3f}"
            f" {'-' if speedup is None else f'{speedup:.2f}x':>8}"
        )
    return f"{dim:>4}  " + "  ".join(cells)


def _fit_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def worst(method: str, key: str, dims: tuple[int, ...] | None = None) -> float | None:
        values = [
            row["methods"][method][key]
            for row in rows
            if method in row["methods"]
            and row["methods"][method][key] is not None
            and (dims is None or row["dim"] in dims)
        ]
        return None if not values else (max(values) if key == "fit_vs_bare" else min(values))

    summary = {
        "worst_fit_vs_bare_plain_ssm_d2_d784": max(
            (v for m in ("plain", "ssm") if (v := worst(m, "fit_vs_bare", (2, 784))) is not None),
            default=None,
        ),
        "worst_fit_vs_bare": {m: worst(m, "fit_vs_bare") for m in FIT_METHODS},
        "least_speedup_vs_pytorch": {
            m: worst(m, "speedup_vs_pytorch") for m in PYTORCH_MS_PER_STEP
        },
        "targets": FIT_TARGETS,
        "pytorch_source": PYTORCH_SOURCE,
    }
    least = summary["least_speedup_vs_pytorch"]
    overhead = summary["worst_fit_vs_bare_plain_ssm_d2_d784"]
    summary["met"] = {
        "fit_vs_bare": overhead is not None and overhead <= FIT_TARGETS["fit_vs_bare"],
        **{
            f"{m}_speedup": least[m] is not None and least[m] >= FIT_TARGETS[f"{m}_speedup"]
            for m in PYTORCH_MS_PER_STEP
        },
    }
    return summary


def _cell(value: float | None, width: int = 7, fmt: str = ".2f") -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"


HEADER = (
    f"{'d':>4}  "
    + " ".join(f"{m:>9}" for m in METHODS)
    + f"  {'SSM/DSM':>7} {'SSM/plain':>9} {'VR/DSM':>7} {'VR/plain':>8} {'exact/SSM':>9}"
)


def _line(row: dict[str, Any]) -> str:
    seconds = row["seconds_per_step"]
    return (
        f"{row['dim']:>4}  "
        + " ".join(f"{seconds[m] * 1e3:>7.2f}ms" if m in seconds else f"{'-':>9}" for m in METHODS)
        + f"  {_cell(row['ssm_vs_dsm'])} {_cell(row['ssm_vs_plain'], 9)}"
        + f" {_cell(row['ssm_vr_vs_dsm'])} {_cell(row['ssm_vr_vs_plain'], 8)}"
        + f" {_cell(row['exact_vs_ssm'], 9, '.1f')}"
    )


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    worst_dsm = max(row["ssm_vs_dsm"] for row in rows)
    worst_plain = max(row["ssm_vs_plain"] for row in rows)
    exact_rows = [row for row in rows if "exact" in row["seconds_per_step"] and row["dim"] >= 32]
    slope = ratio_slope = None
    if len(exact_rows) >= 2:
        dims = np.log([row["dim"] for row in exact_rows])
        times = np.log([row["seconds_per_step"]["exact"] for row in exact_rows])
        slope = float(np.polyfit(dims, times, 1)[0])
        ratios = np.log([row["exact_vs_ssm"] for row in exact_rows])
        ratio_slope = float(np.polyfit(dims, ratios, 1)[0])
    largest = max(rows, key=lambda row: row["dim"])
    return {
        "worst_ssm_vs_dsm": worst_dsm,
        "worst_ssm_vs_plain": worst_plain,
        "worst_ssm_vr_vs_dsm": max(row["ssm_vr_vs_dsm"] for row in rows),
        "worst_ssm_vr_vs_plain": max(row["ssm_vr_vs_plain"] for row in rows),
        "exact_loglog_slope_d_ge_32": slope,
        "exact_vs_ssm_loglog_slope_d_ge_32": ratio_slope,
        "exact_vs_ssm_at_largest_d": {"dim": largest["dim"], "ratio": largest["exact_vs_ssm"]},
        "targets": TARGETS,
        "met": {
            "ssm_vs_dsm": worst_dsm <= TARGETS["ssm_vs_dsm"],
            "ssm_vs_plain": worst_plain <= TARGETS["ssm_vs_plain"],
        },
    }


def plot(rows: list[dict[str, Any]], path: Path, *, quick: bool) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", flush=True)
        return
    fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
    for method in METHODS:
        points = [
            (row["dim"], row["seconds_per_step"][method])
            for row in rows
            if method in row["seconds_per_step"]
        ]
        if points:
            dims, seconds = zip(*points, strict=True)
            ax.plot(dims, np.asarray(seconds) * 1e3, "o-", label=method)
    ax.set(xscale="log", yscale="log", xlabel="data dimension d", ylabel="ms per training step")
    ax.set_title(f"MLP {HIDDEN_SIZES}, batch {BATCH_SIZE}, {jax.default_backend()}")
    ax.legend(title="objective")
    save_figure(fig, path, quick=quick, dpi=120)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run (d ≤ 32)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=out_help("JSON results file; the figure goes beside it", RESULTS_FILE),
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7)")
    parser.add_argument("--target", type=float, default=None, help="seconds per timed call")
    parser.add_argument("--max-exact-dim", type=int, default=max(DIMS))
    parser.add_argument("--dims", type=int, nargs="+", default=None)
    parser.add_argument(
        "--fit-dims", type=int, nargs="*", default=None, help="part 2's d (none: skip part 2)"
    )
    args = parser.parse_args(argv)
    args.out = output_path(RESULTS_FILE, args.out, quick=args.quick)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.target is None:
        args.target = 0.05 if args.quick else 0.3
    # Long enough that fit's per-call checks (a few ms) weigh as in a real run.
    args.fit_target = 0.1 if args.quick else 1.0
    if args.fit_dims is None:
        args.fit_dims = [2] if args.quick else list(FIT_DIMS)
    dims = args.dims or ([d for d in DIMS if d <= 32] if args.quick else list(DIMS))

    env = environment("flax", "optax")
    print(
        f"jax {env['jax']} on {env['backend']} ({env['device_kind']}); MLP {HIDDEN_SIZES} swish, "
        f"batch {BATCH_SIZE}, Adam; median seconds per step over {args.repeats} interleaved rounds"
        + quick_note(args.quick),
        flush=True,
    )
    print(HEADER, flush=True)
    rows = [bench_dimension(dim, args) for dim in dims]
    summary = _summary(rows)
    print(
        f"\nworst SSM/DSM {summary['worst_ssm_vs_dsm']:.2f} (target ≤ {TARGETS['ssm_vs_dsm']}), "
        f"worst SSM/plain {summary['worst_ssm_vs_plain']:.2f} "
        f"(target ≤ {TARGETS['ssm_vs_plain']}); SSM-VR: "
        f"{summary['worst_ssm_vr_vs_dsm']:.2f} / {summary['worst_ssm_vr_vs_plain']:.2f}",
        flush=True,
    )
    if summary["exact_loglog_slope_d_ge_32"] is not None:
        largest = summary["exact_vs_ssm_at_largest_d"]
        time_slope = summary["exact_loglog_slope_d_ge_32"]
        ratio_slope = summary["exact_vs_ssm_loglog_slope_d_ge_32"]
        print(
            f"exact SM, log-log slopes over d ≥ 32: time {time_slope:.2f}, exact/SSM "
            f"{ratio_slope:.2f} (d JVPs, each O(d h + h²)); exact/SSM at d = {largest['dim']}: "
            f"{largest['ratio']:.0f}x",
            flush=True,
        )
    fit_rows, fit_summary = [], None
    if args.fit_dims:
        print(
            f"\nfit against a bare scan (MLP {HIDDEN_SIZES} softplus, batch {FIT_BATCH_SIZE}, "
            f"Adam): ms per fit step, fit/bare, and PyTorch ms / fit ms ({PYTORCH_SOURCE})",
            flush=True,
        )
        print(FIT_HEADER, flush=True)
        fit_rows = [bench_fit(dim, args) for dim in args.fit_dims]
        fit_summary = _fit_summary(fit_rows)
        print(
            f"\nworst fit/bare, plain and SSM at d = 2 and 784: "
            f"{fit_summary['worst_fit_vs_bare_plain_ssm_d2_d784']} "
            f"(target ≤ {FIT_TARGETS['fit_vs_bare']}); least speed-up over PyTorch: "
            + ", ".join(
                f"{m} {v:.2f}x" if v is not None else f"{m} -"
                for m, v in fit_summary["least_speedup_vs_pytorch"].items()
            ),
            flush=True,
        )
    report = {
        "environment": env,
        "settings": {
            "quick": args.quick,
            "repeats": args.repeats,
            "dims": dims,
            "hidden_sizes": HIDDEN_SIZES,
            "batch_size": BATCH_SIZE,
            "dsm_sigma": DSM_SIGMA,
            "learning_rate": LEARNING_RATE,
        },
        "rows": rows,
        "summary": summary,
        "fit": {
            "settings": {
                "dims": args.fit_dims,
                "hidden_sizes": HIDDEN_SIZES,
                "activation": "softplus",
                "batch_size": FIT_BATCH_SIZE,
                "num_examples": FIT_NUM_EXAMPLES,
                "chunk_size": FIT_CHUNK_SIZE,
            },
            "rows": fit_rows,
            "summary": fit_summary,
            "pytorch_ms_per_step": PYTORCH_MS_PER_STEP,
        },
    }
    write_json(args.out, report, quick=args.quick)
    plot(rows, args.out.with_suffix(".png"), quick=args.quick)
    return report


if __name__ == "__main__":
    main()

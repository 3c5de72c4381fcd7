"""Sampler benchmarks: MALA throughput, statistical efficiency and memory.

Run as ``python benchmarks/samplers.py`` (``make bench``); ``--quick`` is a
fast smoke run, ``--out PATH`` chooses the JSON file (default
``results/samplers.json``; under ``out/benchmarks/quick/`` for ``--quick``).
Everything is measured in one process, side by side: the contenders of a
configuration are timed in interleaved rounds (the order rotating each round);
rates use the median time, ratios the median of the per-round ratios, so a
shared or throttled machine slows all contenders alike. Compile time is
reported separately (first call minus the steady-state median).

1. **Throughput** on an MLP log-density (two hidden softplus layers, a scalar
   output, a small Gaussian envelope): :func:`ebm_jax.run_chains` with MALA
   (one position kept per chain, and a ``thin=1`` row that keeps them all)
   against BlackJAX MALA run the idiomatic way (``jit`` of ``lax.scan`` over
   steps of ``vmap(alg.step)`` over chains) and against the *floor*, the same
   scan whose step is only what MALA cannot avoid: one batched
   ``vmap(value_and_grad)``, the normal and uniform draws, and a select.
   Targets: ebm_jax at least as fast as BlackJAX, and within 3% of the floor.
   A ``dict vs flat`` column runs the same chains with a pytree position (a
   dict of two leaves splitting x): target at least 0.97x the flat speed.
2. **Statistical efficiency**: ESS per second (bulk ESS, min over
   coordinates) on a 50-d Gaussian with condition number 1000, axis-aligned
   and randomly rotated: ebm_jax MALA with an adapted diagonal (dense, when
   rotated) preconditioner, its warm-up charged to it, against BlackJAX MALA at
   its best step size from a grid (the search is free). Both start from exact
   draws, so BlackJAX needs no burn-in. Target: 5x.
3. **Memory**: 10,000 chains x 100,000 steps of MALA on a 2-D Gaussian mixture
   with ``collect="stats"`` in a fresh subprocess, started before anything
   else runs (on Linux a child's ``ru_maxrss`` starts from its parent's RSS);
   peak RSS must stay below 1 GB. Full run only.

Nothing here is CPU-specific; the same script runs on GPU and TPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _common import environment as common_environment
from _common import (
    mala_floor_step,
    optional_blackjax,
    out_help,
    output_path,
    paired_ratio,
    quick_note,
    time_side_by_side,
    wall_time,
    write_json,
)

import ebm_jax as ej

RESULTS_FILE = "samplers.json"

# (event dim, hidden width, chains, MALA step size); the step sizes give
# acceptance rates of roughly 0.6-0.9, so both branches of the MH select are hot.
THROUGHPUT_CONFIGS = [
    (2, 128, 1024, 5.0),
    (2, 128, 4096, 5.0),
    (64, 256, 256, 1.5),
    (784, 512, 64, 0.5),
]
ENVELOPE_PRECISION = 0.1  # the small Gaussian envelope, -0.5 * 0.1 * |x|^2

TARGETS = {
    "speed_vs_blackjax": 1.0,
    "time_vs_floor": 1.03,
    "ess_per_s_vs_blackjax": 5.0,
    "pytree_speed_vs_flat": 0.97,
}
MEMORY_LIMIT_BYTES = 1e9


# --------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# 1. throughput
# --------------------------------------------------------------------------------------


def mlp_logdensity(rng_key: jax.Array, dim: int, hidden: int) -> Callable[[jax.Array], jax.Array]:
    """A plain-JAX 2-hidden-layer softplus MLP with fixed random weights, plus an envelope."""
    keys = jax.random.split(rng_key, 5)
    w1 = jax.random.normal(keys[0], (dim, hidden)) / math.sqrt(dim)
    b1 = 0.1 * jax.random.normal(keys[1], (hidden,))
    w2 = jax.random.normal(keys[2], (hidden, hidden)) / math.sqrt(hidden)
    b2 = 0.1 * jax.random.normal(keys[3], (hidden,))
    w3 = 3.0 * jax.random.normal(keys[4], (hidden,)) / math.sqrt(hidden)

    def logdensity_fn(x: jax.Array) -> jax.Array:
        h = jax.nn.softplus(x @ w1 + b1)
        h = jax.nn.softplus(h @ w2 + b2)
        return h @ w3 - 0.5 * ENVELOPE_PRECISION * jnp.sum(x**2)

    return logdensity_fn


def make_blackjax_run(logdensity_fn: Callable, step_size: float, num_chains: int, num_steps: int):
    """BlackJAX MALA, the idiomatic way: jit(scan over steps of vmap(step) over chains)."""
    algorithm = optional_blackjax().mala(logdensity_fn, step_size)

    @jax.jit
    def run(rng_key: jax.Array, initial_positions: jax.Array) -> jax.Array:
        states = jax.vmap(algorithm.init)(initial_positions)

        def one_step(states, step_key):
            keys = jax.random.split(step_key, num_chains)
            states, _ = jax.vmap(algorithm.step)(keys, states)
            return states, None

        states, _ = jax.lax.scan(one_step, states, jax.random.split(rng_key, num_steps))
        return states.position

    return run


def make_floor_run(logdensity_fn: Callable, step_size: float, num_chains: int, num_steps: int):
    """The least a MALA step can do (``_common.mala_floor_step``), scanned and jitted."""
    step, init = mala_floor_step(logdensity_fn, step_size, num_chains)

    @jax.jit
    def run(rng_key: jax.Array, initial_positions: jax.Array) -> jax.Array:
        carry = init(initial_positions)
        keys = jax.random.split(rng_key, num_steps)
        (position, _, _), _ = jax.lax.scan(lambda c, k: (step(c, k), None), carry, keys)
        return position

    return run


def _fresh(logdensity_fn: Callable) -> Callable:
    """The same log-density as a new function object (so its first run compiles anew)."""
    return lambda x: logdensity_fn(x)


def _on_dict(logdensity_fn: Callable) -> Callable:
    """``logdensity_fn`` on a dict position ``{"a": x[:k], "b": x[k:]}``."""
    return lambda x: logdensity_fn(jnp.concatenate([x["a"], x["b"]]))


def _keep_last(rng_key: jax.Array, algorithm: Any, positions: jax.Array, num_steps: int) -> Any:
    return ej.run_chains(rng_key, algorithm, positions, num_steps, thin=num_steps)


def _choose_num_steps(run: Callable[[int], Any], target_s: float, probe_steps: int = 20) -> int:
    """Steps for a run of about ``target_s``, from a timed (compiled) run of ``probe_steps``."""
    jax.block_until_ready(run(probe_steps))
    per_step = min(wall_time(lambda: run(probe_steps)) for _ in range(3)) / probe_steps
    num_steps = int(target_s / max(per_step, 1e-9))
    return int(np.clip(round(num_steps, -1 if num_steps < 1000 else -2), 20, 1_000_000))


def bench_throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    configs = THROUGHPUT_CONFIGS[:2] if args.quick else THROUGHPUT_CONFIGS
    for dim, hidden, num_chains, step_size in configs:
        logdensity_fn = mlp_logdensity(jax.random.key(1), dim, hidden)
        positions = jax.random.normal(jax.random.key(2), (num_chains, dim))
        rng_key = jax.random.key(0)
        probe_algorithm = ej.samplers.mala(logdensity_fn, step_size)
        probe = functools.partial(_keep_last, rng_key, probe_algorithm, positions)
        num_steps = _choose_num_steps(probe, args.target_seconds)
        if args.quick:
            num_steps = min(num_steps, 200)
        # A fresh log-density function, so the first call compiles everything again (a new
        # kernel over the same function would reuse the compiled program).
        algorithm = ej.samplers.mala(_fresh(logdensity_fn), step_size)
        # thin=num_steps keeps one position per chain, so storage does not dominate.
        ebm_jax_run = functools.partial(ej.run_chains, rng_key, algorithm, positions, num_steps)
        # The same chains with a pytree position: a dict of two leaves splitting x.
        dict_logdensity_fn = _on_dict(logdensity_fn)
        dict_positions = {"a": positions[:, : dim // 2], "b": positions[:, dim // 2 :]}
        contenders: dict[str, Callable[[], Any]] = {
            "ebm_jax": functools.partial(ebm_jax_run, thin=num_steps),
            "ebm_jax_pytree": functools.partial(
                ej.run_chains,
                rng_key,
                ej.samplers.mala(dict_logdensity_fn, step_size),
                dict_positions,
                num_steps,
                thin=num_steps,
            ),
            "floor": functools.partial(
                make_floor_run(logdensity_fn, step_size, num_chains, num_steps), rng_key, positions
            ),
        }
        stored_bytes = num_chains * num_steps * dim * positions.dtype.itemsize
        if stored_bytes <= args.max_stored_bytes:
            contenders["ebm_jax_thin1"] = functools.partial(ebm_jax_run, thin=1)
        if optional_blackjax() is not None:
            contenders["blackjax"] = functools.partial(
                make_blackjax_run(logdensity_fn, step_size, num_chains, num_steps),
                rng_key,
                positions,
            )
        timings = time_side_by_side(contenders, args.repeats)
        acceptance = float(jnp.mean(contenders["ebm_jax"]().acceptance_rate))

        chain_steps = num_chains * num_steps
        row: dict[str, Any] = {
            "dim": dim,
            "hidden": hidden,
            "num_chains": num_chains,
            "num_steps": num_steps,
            "step_size": step_size,
            "acceptance_rate": acceptance,
            "timings": timings,
            "chain_steps_per_s": {
                name: chain_steps / timing["median_s"] for name, timing in timings.items()
            },
        }
        ratios = {
            "time_vs_floor": ("ebm_jax", "floor"),
            "speed_vs_blackjax": ("blackjax", "ebm_jax"),
            "thin1_time_vs_floor": ("ebm_jax_thin1", "floor"),
            "pytree_speed_vs_flat": ("ebm_jax", "ebm_jax_pytree"),
        }
        for key, (numerator, denominator) in ratios.items():
            if numerator in timings:
                row[key] = paired_ratio(timings[numerator], timings[denominator])
                row[key + "_of_minimums"] = (
                    timings[numerator]["min_s"] / timings[denominator]["min_s"]
                )
        rows.append(row)
        print(_throughput_line(row), flush=True)
    return rows


# --------------------------------------------------------------------------------------
# 2. statistical efficiency
# --------------------------------------------------------------------------------------


def ill_conditioned_gaussian(dim: int, condition_number: float, rotated: bool) -> dict[str, Any]:
    """N(0, Σ) with eigenvalues log-spaced in [1, condition_number], axis-aligned or rotated."""
    variances = np.logspace(0.0, math.log10(condition_number), dim)
    if rotated:
        rotation, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, dim)))
    else:
        rotation = np.eye(dim)
    precision = jnp.asarray((rotation / variances) @ rotation.T, jnp.float32)
    factor = jnp.asarray(rotation * np.sqrt(variances), jnp.float32)  # Σ = factor factorᵀ

    if rotated:

        def logdensity_fn(x: jax.Array) -> jax.Array:
            return -0.5 * x @ precision @ x

    else:
        inverse_variances = jnp.asarray(1.0 / variances, jnp.float32)

        def logdensity_fn(x: jax.Array) -> jax.Array:
            return -0.5 * jnp.sum(inverse_variances * x**2)

    def sample(rng_key: jax.Array, num_samples: int) -> jax.Array:
        return jax.random.normal(rng_key, (num_samples, dim)) @ factor.T

    name = f"gaussian{dim}d_cond{condition_number:g}" + ("_rotated" if rotated else "")
    return {"name": name, "logdensity_fn": logdensity_fn, "sample": sample}


def _min_ess(samples: jax.Array) -> float:
    """Bulk ESS (ArviZ's definition), minimum over coordinates."""
    try:
        from ebm_jax.diagnostics import ess
    except ImportError:
        import arviz

        values = arviz.ess(np.asarray(samples, np.float64), method="bulk")
    else:
        values = ess(samples)
    return float(np.min(np.asarray(values)))


def make_blackjax_sampler(logdensity_fn: Callable, num_chains: int, num_steps: int, thin: int):
    """BlackJAX MALA keeping every ``thin``-th position; ``step_size`` is traced (one compile)."""

    @jax.jit
    def run(rng_key: jax.Array, initial_positions: jax.Array, step_size: jax.Array):
        algorithm = optional_blackjax().mala(logdensity_fn, step_size)
        states = jax.vmap(algorithm.init)(initial_positions)

        def one_step(states, step_key):
            keys = jax.random.split(step_key, num_chains)
            states, info = jax.vmap(algorithm.step)(keys, states)
            return states, jnp.mean(info.acceptance_rate)

        def one_block(states, block_key):
            states, acceptance = jax.lax.scan(one_step, states, jax.random.split(block_key, thin))
            return states, (states.position, jnp.mean(acceptance))

        block_keys = jax.random.split(rng_key, num_steps // thin)
        _, (positions, acceptance) = jax.lax.scan(one_block, states, block_keys)
        return jnp.swapaxes(positions, 0, 1), jnp.mean(acceptance)

    return run


def bench_efficiency_one(target: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    num_chains = args.ess_chains
    logdensity_fn = target["logdensity_fn"]
    preconditioner = "dense" if target["name"].endswith("rotated") else "diagonal"
    # Exact draws as initial positions: BlackJAX needs no burn-in (the most generous start).
    initial_positions = target["sample"](jax.random.key(10), num_chains)
    repeats = args.repeats

    # ebm_jax: warm-up (adaptation) + sampling, both charged; compile excluded for both.
    num_warmup, num_samples = (300, 500) if args.quick else (1000, 2000)
    warmup_key, sample_key = jax.random.split(jax.random.key(11))
    warm_up = functools.partial(
        ej.samplers.adapt,
        warmup_key,
        "mala",
        logdensity_fn,
        initial_positions,
        num_warmup,
        preconditioner=preconditioner,
    )
    first_start = time.perf_counter()
    adapted = jax.block_until_ready(warm_up())
    # The warm-up is deterministic given its key, so every repeat adapts the same
    # parameters: build the kernel once and reuse its compiled run.
    algorithm = ej.samplers.mala(logdensity_fn, **adapted.parameters)
    sample = functools.partial(ej.run_chains, sample_key, algorithm, num_steps=num_samples)
    chains = jax.block_until_ready(sample(adapted.states.position))
    first = time.perf_counter() - first_start
    warmup_times, sampling_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = jax.block_until_ready(warm_up())
        middle = time.perf_counter()
        chains = jax.block_until_ready(sample(result.states.position))
        warmup_times.append(middle - start)
        sampling_times.append(time.perf_counter() - middle)
    for name, value in result.parameters.items():
        np.testing.assert_array_equal(value, adapted.parameters[name])
    times = [sum(pair) for pair in zip(warmup_times, sampling_times, strict=True)]
    ebm_time = float(np.median(times))
    ebm_ess = _min_ess(chains.samples)
    ebm = {
        "num_warmup": num_warmup,
        "num_samples": num_samples,
        "preconditioner": preconditioner,
        "step_size": float(adapted.parameters["step_size"]),
        "acceptance_rate": float(jnp.mean(chains.acceptance_rate)),
        "median_s": ebm_time,
        "warmup_median_s": float(np.median(warmup_times)),
        "sampling_median_s": float(np.median(sampling_times)),
        "times_s": times,
        "compile_s": max(0.0, first - ebm_time),
        "min_ess": ebm_ess,
        "ess_per_s": ebm_ess / ebm_time,
    }

    # BlackJAX: grid search over the step size (free), then time the best.
    blackjax_row: dict[str, Any] | None = None
    if optional_blackjax() is not None:
        bj_steps, bj_thin = (4000, 4) if args.quick else (20000, 10)
        grid = np.logspace(-1.5, 0.5, 5 if args.quick else 11)
        run = make_blackjax_sampler(logdensity_fn, num_chains, bj_steps, bj_thin)
        bj_key = jax.random.key(12)
        compile_s = wall_time(lambda: run(bj_key, initial_positions, jnp.float32(grid[0])))
        search = []
        for step_size in grid:
            step = jnp.float32(step_size)
            elapsed = wall_time(lambda step=step: run(bj_key, initial_positions, step))
            positions, acceptance = run(bj_key, initial_positions, step)
            min_ess = _min_ess(positions)
            search.append(
                {
                    "step_size": float(step_size),
                    "acceptance_rate": float(acceptance),
                    "seconds": elapsed,
                    "min_ess": min_ess,
                    "ess_per_s": min_ess / elapsed,
                }
            )
        best = max(search, key=lambda row: row["ess_per_s"])
        step = jnp.float32(best["step_size"])
        times = [wall_time(lambda: run(bj_key, initial_positions, step)) for _ in range(repeats)]
        bj_time = float(np.median(times))
        blackjax_row = {
            "num_steps": bj_steps,
            "thin": bj_thin,
            "step_size": best["step_size"],
            "acceptance_rate": best["acceptance_rate"],
            "median_s": bj_time,
            "times_s": times,
            "compile_s": max(0.0, compile_s - bj_time),
            "min_ess": best["min_ess"],
            "ess_per_s": best["min_ess"] / bj_time,
            "grid_search": search,
        }

    row: dict[str, Any] = {
        "target": target["name"],
        "num_chains": num_chains,
        "ebm_jax": ebm,
        "blackjax": blackjax_row,
    }
    if blackjax_row is not None:
        row["ess_per_s_vs_blackjax"] = ebm["ess_per_s"] / blackjax_row["ess_per_s"]
    print(_efficiency_line(row), flush=True)
    return row


def bench_efficiency(args: argparse.Namespace) -> list[dict[str, Any]]:
    targets = [ill_conditioned_gaussian(50, 1000.0, rotated=False)]
    if not args.quick:
        targets.append(ill_conditioned_gaussian(50, 1000.0, rotated=True))
    return [bench_efficiency_one(target, args) for target in targets]


# --------------------------------------------------------------------------------------
# 3. memory (in a fresh subprocess, so the other benchmarks do not inflate the peak)
# --------------------------------------------------------------------------------------

MIXTURE_MEANS = [[-2.0, 0.0], [2.0, 0.0]]
MIXTURE_VARIANCE = 0.5


def _mixture_logdensity() -> Callable[[jax.Array], jax.Array]:
    means = jnp.asarray(MIXTURE_MEANS)
    try:
        from ebm_jax.densities import gaussian_mixture
    except ImportError:

        def logdensity_fn(x: jax.Array) -> jax.Array:
            squared = jnp.sum((x - means) ** 2, axis=-1)
            return jax.nn.logsumexp(-0.5 * squared / MIXTURE_VARIANCE) - jnp.log(2.0)

        return logdensity_fn
    return gaussian_mixture(jnp.ones(2), means, MIXTURE_VARIANCE).logdensity_fn


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def _high_water_mark_bytes() -> int | None:
    """Linux's VmHWM: the peak RSS of this process image alone (not inherited at exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_child(num_chains: int, num_steps: int) -> dict[str, Any]:
    """Run in the subprocess: MALA with collect="stats", then report the peak RSS."""
    rss_at_start = _peak_rss_bytes()
    logdensity_fn = _mixture_logdensity()
    algorithm = ej.samplers.mala(logdensity_fn, 0.3)
    positions = 2.0 * jax.random.normal(jax.random.key(0), (num_chains, 2))
    start = time.perf_counter()
    result = ej.run_chains(
        jax.random.key(1), algorithm, positions, num_steps, collect="stats", progress=False
    )
    jax.block_until_ready(result)
    wall = time.perf_counter() - start
    return {
        "num_chains": num_chains,
        "num_steps": num_steps,
        "chain_steps": num_chains * num_steps,
        "wall_s": wall,
        "peak_rss_bytes": _peak_rss_bytes(),
        "peak_rss_after_imports_bytes": rss_at_start,
        "vm_hwm_bytes": _high_water_mark_bytes(),
        "acceptance_rate": float(jnp.mean(result.acceptance_rate)),
        # Exact: mean (0, 0), variance (0.5 + 4, 0.5).
        "pooled_mean": np.asarray(jnp.mean(result.mean, axis=0)).tolist(),
        "pooled_variance": np.asarray(
            jnp.mean(result.variance + result.mean**2, axis=0) - jnp.mean(result.mean, axis=0) ** 2
        ).tolist(),
    }


def bench_memory(args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--memory-child",
        "--memory-chains",
        str(args.memory_chains),
        "--memory-steps",
        str(args.memory_steps),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if completed.returncode != 0:
        raise RuntimeError(f"memory subprocess failed:\n{completed.stderr[-4000:]}")
    row = json.loads(completed.stdout.strip().splitlines()[-1])
    row["limit_bytes"] = MEMORY_LIMIT_BYTES
    row["meets_target"] = row["peak_rss_bytes"] < MEMORY_LIMIT_BYTES
    print(_memory_line(row), flush=True)
    return row


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def _rate(value: float) -> str:
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k"


def _ratio_cell(row: dict[str, Any], key: str) -> str:
    if key not in row:
        return f"{'-':>13}"
    return f"{row[key]:>6.3f} ({row[key + '_of_minimums']:.3f})"


def _throughput_line(row: dict[str, Any]) -> str:
    rates = row["chain_steps_per_s"]
    compile_s = {name: timing["compile_s"] for name, timing in row["timings"].items()}
    cells = [
        f"{row['dim']:>4} {row['hidden']:>6} {row['num_chains']:>6} {row['num_steps']:>7}",
        f"{row['acceptance_rate']:>4.2f}",
        " ".join(
            f"{_rate(rates[name]) if name in rates else '-':>8}"
            for name in ("ebm_jax", "blackjax", "floor")
        ),
        _ratio_cell(row, "speed_vs_blackjax"),
        _ratio_cell(row, "time_vs_floor"),
        _ratio_cell(row, "thin1_time_vs_floor"),
        _ratio_cell(row, "pytree_speed_vs_flat"),
        f"{compile_s['ebm_jax']:>5.2f} {compile_s.get('blackjax', float('nan')):>5.2f} "
        f"{compile_s['floor']:>5.2f}",
    ]
    return "  ".join(cells)


THROUGHPUT_HEADER = "\n".join(
    [
        f"{'':<29}  {'chain-steps/s (median)':^26}  "
        f"{'ratios: median of per-round (of minimums)':^60}  {'compile s':^17}",
        f"{'dim':>4} {'hidden':>6} {'chains':>6} {'steps':>7}  {'acc':>4}  "
        f"{'ebm_jax':>8} {'blackjax':>8} {'floor':>8}  "
        f"{'speed vs BJ':>13}  {'t / floor':>13}  {'thin=1 t/floor':>13}  "
        f"{'dict vs flat':>13}  "
        f"{'ej':>5} {'bj':>5} {'floor':>5}",
    ]
)


def _efficiency_line(row: dict[str, Any]) -> str:
    ebm, bj = row["ebm_jax"], row["blackjax"]

    def line(name: str, cells: dict[str, Any], warmup: int, steps: int) -> str:
        return (
            f"  {name:<9} step {cells['step_size']:<7.3g} acc {cells['acceptance_rate']:.2f}  "
            f"{warmup:>5} + {steps:>5} steps  {cells['median_s']:7.3f} s  "
            f"min ESS {cells['min_ess']:8.1f}  ESS/s {cells['ess_per_s']:9.1f}"
        )

    lines = [
        f"{row['target']} ({row['num_chains']} chains; warm-up + sampling steps, time charged)",
        line("ebm_jax", ebm, ebm["num_warmup"], ebm["num_samples"]),
    ]
    if bj is not None:
        lines.append(line("blackjax", bj, 0, bj["num_steps"]))
        lines.append(f"  ESS/s ebm_jax / blackjax = {row['ess_per_s_vs_blackjax']:.1f}x")
    return "\n".join(lines)


def _memory_line(row: dict[str, Any]) -> str:
    hwm = row.get("vm_hwm_bytes")
    return (
        f"{row['num_chains']} chains x {row['num_steps']} steps (collect='stats'): "
        f"wall {row['wall_s']:.1f} s ({row['chain_steps'] / row['wall_s'] / 1e6:.1f}M "
        f"chain-steps/s, compile included), peak RSS (ru_maxrss) "
        f"{row['peak_rss_bytes'] / 2**20:.0f} MiB"
        + (f", VmHWM {hwm / 2**20:.0f} MiB" if hwm else "")
        + f" (after imports {row['peak_rss_after_imports_bytes'] / 2**20:.0f} MiB); "
        f"limit {row['limit_bytes'] / 1e9:.0f} GB: {'met' if row['meets_target'] else 'MISSED'}"
    )


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    rows = report["throughput"]
    summary: dict[str, Any] = {
        "worst_speed_vs_blackjax": min(
            (row["speed_vs_blackjax"] for row in rows if "speed_vs_blackjax" in row),
            default=None,
        ),
        "worst_time_vs_floor": max(row["time_vs_floor"] for row in rows),
        "worst_pytree_speed_vs_flat": min(row["pytree_speed_vs_flat"] for row in rows),
    }
    ratios = [row["ess_per_s_vs_blackjax"] for row in report["efficiency"] if row["blackjax"]]
    summary["worst_ess_per_s_vs_blackjax"] = min(ratios, default=None)
    met = {
        "speed_vs_blackjax": summary["worst_speed_vs_blackjax"] is not None
        and summary["worst_speed_vs_blackjax"] >= TARGETS["speed_vs_blackjax"],
        "time_vs_floor": summary["worst_time_vs_floor"] <= TARGETS["time_vs_floor"],
        "pytree_speed_vs_flat": summary["worst_pytree_speed_vs_flat"]
        >= TARGETS["pytree_speed_vs_flat"],
        "ess_per_s_vs_blackjax": summary["worst_ess_per_s_vs_blackjax"] is not None
        and summary["worst_ess_per_s_vs_blackjax"] >= TARGETS["ess_per_s_vs_blackjax"],
    }
    if report["memory"] is not None:
        met["memory"] = report["memory"]["meets_target"]
    summary["targets"] = TARGETS | {"memory_bytes": MEMORY_LIMIT_BYTES}
    summary["met"] = met
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run (no memory run)")
    parser.add_argument(
        "--out", type=Path, default=None, help=out_help("JSON results file", RESULTS_FILE)
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 9)")
    parser.add_argument(
        "--target-seconds", type=float, default=None, help="length of one throughput run"
    )
    parser.add_argument("--ess-chains", type=int, default=64)
    parser.add_argument("--max-stored-bytes", type=float, default=2.5e8, help="thin=1 row cap")
    parser.add_argument("--memory-chains", type=int, default=10_000)
    parser.add_argument("--memory-steps", type=int, default=100_000)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out = output_path(RESULTS_FILE, args.out, quick=args.quick)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_chains, args.memory_steps)))
        return None
    if args.repeats is None:
        args.repeats = 3 if args.quick else 9
    if args.target_seconds is None:
        args.target_seconds = 0.1 if args.quick else 0.6

    environment = common_environment("blackjax")
    print(
        f"jax {environment['jax']} on {environment['backend']} ({environment['device_kind']}, "
        f"{environment['device_count']} device(s)); blackjax {environment['blackjax']}; "
        f"medians of {args.repeats} interleaved rounds{quick_note(args.quick)}",
        flush=True,
    )
    memory = None
    if not args.quick:  # first, while this process is small (see the module docstring)
        print("\n3. Memory (run first, in a subprocess)", flush=True)
        memory = bench_memory(args)
    print("\n1. MALA throughput, chain-steps/s (MLP log-density)", flush=True)
    print(THROUGHPUT_HEADER, flush=True)
    throughput = bench_throughput(args)
    print("\n2. ESS/s (min over coordinates), ill-conditioned Gaussian", flush=True)
    efficiency = bench_efficiency(args)

    report: dict[str, Any] = {
        "environment": environment,
        "settings": {
            "quick": args.quick,
            "repeats": args.repeats,
            "target_seconds": args.target_seconds,
            "throughput_configs": [
                dict(zip(("dim", "hidden", "num_chains", "step_size"), config, strict=True))
                for config in THROUGHPUT_CONFIGS
            ],
            "envelope_precision": ENVELOPE_PRECISION,
        },
        "throughput": throughput,
        "efficiency": efficiency,
        "memory": memory,
    }
    report["summary"] = _summary(report)
    note = " (quick run: too short to judge the speed targets)" if args.quick else ""
    print(f"\nTargets{note}:", flush=True)
    for name, met in report["summary"]["met"].items():
        print(f"  {name:<24} {'met' if met else 'MISSED'}", flush=True)
    write_json(args.out, report, quick=args.quick)
    return report


if __name__ == "__main__":
    main()

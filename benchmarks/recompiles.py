"""What a new value costs: parameter sweeps and per-chain parameters, compiles counted.

Run as ``python benchmarks/recompiles.py`` (``make bench``); ``--quick`` is a
fast smoke run, ``--out PATH`` chooses the JSON file (default
``results/recompiles.json``; under ``out/benchmarks/quick/`` for ``--quick``).
Every XLA compilation is counted with a :mod:`jax.monitoring` listener, so the
compile counts are exact whatever the machine's load; times are wall-clock
medians.

1. **Step-size sweep**: ``run_chains(mala(f, s))`` for ten step sizes and the
   same ``f`` (an MLP log-density), each call building a new kernel object,
   against reusing one object. A kernel's numbers are traced leaves, so the
   sweep should compile once and a new value cost what a reuse costs.
2. **Learning-rate sweep through** ``fit``: five rates with
   ``optax.inject_hyperparams(optax.adam)`` (one compile expected) and with
   plain ``optax.adam(rate)`` (one per rate: optax bakes the float into the
   program).
3. **Per-chain step sizes** on a 100-d correlated Gaussian with a dense
   preconditioner, timed side by side in interleaved rounds: one shared
   kernel; per-chain step sizes with the matrix bound in the factory (one
   shared copy and Cholesky factor); per-chain step sizes and per-chain copies
   of the matrix. Target: the bound-matrix row within 1.05x of the shared one.

Nothing here is CPU-specific; the same script runs on GPU and TPU.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import environment as common_environment
from _common import out_help, output_path, paired_ratio, quick_note, time_side_by_side, write_json

import ebm_jax as ej

RESULTS_FILE = "recompiles.json"
TARGETS = {"adapt_per_chain_vs_shared": 1.05, "per_chain_bound_matrix_vs_shared": 1.05}


@contextmanager
def counted_compiles() -> Iterator[list[float]]:
    """A list that receives one entry (its duration) per XLA compilation inside the block."""
    events: list[float] = []

    def listener(event: str, duration: float, **kwargs: Any) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def mlp_logdensity(dim: int, hidden: int) -> Callable[[jax.Array], jax.Array]:
    keys = jax.random.split(jax.random.key(1), 3)
    w1 = jax.random.normal(keys[0], (dim, hidden)) / math.sqrt(dim)
    w2 = jax.random.normal(keys[1], (hidden, hidden)) / math.sqrt(hidden)
    w3 = jax.random.normal(keys[2], (hidden,)) / math.sqrt(hidden)

    def logdensity_fn(x: jax.Array) -> jax.Array:
        h = jax.nn.softplus(jax.nn.softplus(x @ w1) @ w2)
        return h @ w3 - 0.05 * jnp.sum(x**2)

    return logdensity_fn


def bench_step_size_sweep(args: argparse.Namespace) -> dict[str, Any]:
    logdensity_fn = mlp_logdensity(2, 128)
    num_chains, num_steps = (64, 200) if args.quick else (256, 1000)
    positions = jax.random.normal(jax.random.key(2), (num_chains, 2))
    step_sizes = np.linspace(0.05, 0.5, 10)

    def run(algorithm: Any) -> Any:
        return ej.run_chains(jax.random.key(0), algorithm, positions, num_steps, thin=10).samples

    with counted_compiles() as first_compiles:
        new_object_s = [_timed(lambda: run(ej.samplers.mala(logdensity_fn, float(step_sizes[0]))))]
    with counted_compiles() as later_compiles:
        new_object_s += [
            _timed(lambda s=s: run(ej.samplers.mala(logdensity_fn, float(s))))
            for s in step_sizes[1:]
        ]
    reused = ej.samplers.mala(logdensity_fn, float(step_sizes[0]))
    reuse_s = [_timed(lambda: run(reused)) for _ in range(5)]
    row = {
        "num_chains": num_chains,
        "num_steps": num_steps,
        "num_values": len(step_sizes),
        "total_s": sum(new_object_s),
        "first_s": new_object_s[0],
        "median_new_value_s": float(np.median(new_object_s[1:])),
        "median_reuse_s": float(np.median(reuse_s)),
        "compiles_first_value": len(first_compiles),
        "compiles_later_values": len(later_compiles),
    }
    print(
        f"  {len(step_sizes)} step sizes, {num_chains} chains x {num_steps} steps: total "
        f"{row['total_s']:.2f} s (first {row['first_s']:.2f} s), a new value "
        f"{row['median_new_value_s']:.3f} s vs reusing the object {row['median_reuse_s']:.3f} s; "
        f"compiles: {len(first_compiles)} for the first value, {len(later_compiles)} for the "
        f"other {len(step_sizes) - 1}",
        flush=True,
    )
    return row


def bench_learning_rate_sweep(args: argparse.Namespace) -> dict[str, Any]:
    data = jax.random.normal(jax.random.key(3), (512, 8))
    params = {"w": jnp.zeros((8, 8)), "b": jnp.zeros(8)}

    def score_fn(params: Any, x: jax.Array) -> jax.Array:
        return -(x @ params["w"] + params["b"]) - x

    loss = ej.losses.denoising_score_matching(score_fn, 0.1)
    rates = [1e-3, 2e-3, 5e-3, 1e-2, 2e-2]
    num_steps = 50 if args.quick else 200
    rows = {}
    builders = {
        "inject_hyperparams(adam)": lambda rate: optax.inject_hyperparams(optax.adam)(
            learning_rate=rate
        ),
        "adam(rate)": optax.adam,
    }
    for name, build in builders.items():

        def train(rate: float, build: Callable[[float], Any] = build) -> Any:
            return ej.training.fit(
                jax.random.key(4), loss, params, build(rate), data,
                num_steps=num_steps, batch_size=32, chunk_size=num_steps, progress=False,
            ).params  # fmt: skip

        with counted_compiles() as first_compiles:
            times = [_timed(lambda: train(rates[0]))]
        with counted_compiles() as later_compiles:
            times += [_timed(lambda rate=rate: train(rate)) for rate in rates[1:]]
        rows[name] = {
            "times_s": times,
            "total_s": sum(times),
            "compiles_first_rate": len(first_compiles),
            "compiles_later_rates": len(later_compiles),
        }
        print(
            f"  fit, {len(rates)} rates with {name:<26} total {sum(times):6.2f} s "
            f"(first {times[0]:.2f} s); compiles: {len(first_compiles)} for the first rate, "
            f"{len(later_compiles)} for the other {len(rates) - 1}",
            flush=True,
        )
    return {"num_steps": num_steps, "rates": rates, "optimizers": rows}


def bench_per_chain(args: argparse.Namespace) -> dict[str, Any]:
    dim, num_chains = 100, 256
    num_steps = 100 if args.quick else 500
    factor = np.random.default_rng(0).standard_normal((dim, dim))
    covariance = jnp.asarray(factor @ factor.T / dim + np.eye(dim), jnp.float32)
    precision = jnp.linalg.inv(covariance)

    def logdensity_fn(x: jax.Array) -> jax.Array:
        return -0.5 * x @ precision @ x

    positions = jax.random.normal(jax.random.key(5), (num_chains, dim))
    step_sizes = jnp.full(num_chains, 0.3)
    run = functools.partial(ej.run_chains, jax.random.key(6), num_steps=num_steps, thin=num_steps)
    factory = functools.partial(ej.samplers.mala, logdensity_fn)
    # What adapt(per_chain=True) returns: per-chain step sizes, one dense matrix.
    adapted = ej.samplers.adapt(
        jax.random.key(7),
        "mala",
        logdensity_fn,
        positions,
        200,
        per_chain=True,
        preconditioner="dense",
    )
    shared_step = jnp.median(adapted.chain_parameters["step_size"])
    contenders = {
        "shared": lambda: (
            run(
                ej.samplers.mala(logdensity_fn, shared_step, **adapted.parameters),
                initial_positions=positions,
            ).samples
        ),
        "adapt_per_chain": lambda: (
            run(
                functools.partial(factory, **adapted.parameters),
                initial_positions=positions,
                chain_parameters=adapted.chain_parameters,
            ).samples
        ),
        "per_chain_bound_matrix": lambda: (
            run(
                functools.partial(factory, inverse_mass_matrix=covariance),
                initial_positions=positions,
                chain_parameters={"step_size": step_sizes},
            ).samples
        ),
        "per_chain_matrices": lambda: (
            run(
                factory,
                initial_positions=positions,
                chain_parameters={
                    "step_size": step_sizes,
                    "inverse_mass_matrix": jnp.broadcast_to(covariance, (num_chains, dim, dim)),
                },
            ).samples
        ),
    }
    timings = time_side_by_side(contenders, args.repeats)
    row = {
        "dim": dim,
        "num_chains": num_chains,
        "num_steps": num_steps,
        "timings": timings,
        "adapt_per_chain_vs_shared": paired_ratio(timings["adapt_per_chain"], timings["shared"]),
        "per_chain_bound_matrix_vs_shared": paired_ratio(
            timings["per_chain_bound_matrix"], timings["shared"]
        ),
        "per_chain_matrices_vs_shared": paired_ratio(
            timings["per_chain_matrices"], timings["shared"]
        ),
    }
    for name, timing in timings.items():
        print(f"  {name:<24} median {timing['median_s']:.3f} s", flush=True)
    print(
        f"  time ratio to shared: adapt(per_chain=True) {row['adapt_per_chain_vs_shared']:.2f}, "
        f"bound matrix {row['per_chain_bound_matrix_vs_shared']:.2f}, "
        f"per-chain matrices {row['per_chain_matrices_vs_shared']:.2f}",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run")
    parser.add_argument(
        "--out", type=Path, default=None, help=out_help("JSON results file", RESULTS_FILE)
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7)")
    args = parser.parse_args(argv)
    args.out = output_path(RESULTS_FILE, args.out, quick=args.quick)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7

    environment = common_environment("optax")
    print(
        f"jax {environment['jax']} on {environment['backend']} ({environment['device_kind']}, "
        f"{environment['device_count']} device(s)); optax {environment['optax']}"
        + quick_note(args.quick),
        flush=True,
    )
    print("\n1. run_chains: a step-size sweep with the same logdensity_fn", flush=True)
    sweep = bench_step_size_sweep(args)
    print("\n2. fit: a learning-rate sweep", flush=True)
    rates = bench_learning_rate_sweep(args)
    print("\n3. Per-chain step sizes, 100-d Gaussian, dense preconditioner", flush=True)
    per_chain = bench_per_chain(args)
    met = {
        **{name: per_chain[name] <= TARGETS[name] for name in TARGETS},
        "one_compile_per_step_size_sweep": sweep["compiles_later_values"] == 0,
        "one_compile_per_injected_rate_sweep": rates["optimizers"]["inject_hyperparams(adam)"][
            "compiles_later_rates"
        ]
        == 0,
    }
    print(f"\nTargets:{quick_note(args.quick)}", flush=True)
    for name, value in met.items():
        print(f"  {name:<36} {'met' if value else 'MISSED'}", flush=True)
    report = {
        "environment": environment,
        "settings": {"quick": args.quick, "repeats": args.repeats},
        "step_size_sweep": sweep,
        "learning_rate_sweep": rates,
        "per_chain": per_chain,
        "summary": {"targets": TARGETS, "met": met},
    }
    write_json(args.out, report, quick=args.quick)
    return report


if __name__ == "__main__":
    main()

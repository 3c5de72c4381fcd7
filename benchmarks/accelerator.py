"""Accelerator benchmark: the library's hot paths on whatever ``jax.devices()`` offers.

One command, one process, every contender timed side by side on the default
device (``benchmarks/_common.py``: interleaved rounds, medians, compile time
reported apart from run time):

1. **MALA chain-steps/s** on MLP log-densities
   (:class:`~ebm_jax.models.MLPLogDensity`, two hidden swish layers, a
   Gaussian envelope) at :math:`d \\in \\{2, 64, 784\\}` and
   :math:`10^3 \\dots 10^6` chains: :func:`ebm_jax.run_chains` with
   :func:`ebm_jax.samplers.mala` against BlackJAX MALA (a jitted
   ``vmap(alg.init)``, then ``vmap(alg.step)`` in a jitted loop) and against
   the *floor*, the same loop whose step is only one batched
   ``value_and_grad``, the draws and a select. All three go from the same
   initial positions to the final ones, the initial gradient included; the
   loops alone, from an initialised state, are timed as well (per-step
   ratio). Sizes whose
   working set would not fit the device memory, or whose run would not fit
   the time budget, are skipped (and say so).
2. **Roofline**: FLOPs and bytes of one step of each contender (all chains)
   from XLA's cost analysis of the compiled step, against the device's peak
   FLOP/s and memory bandwidth: a table of vendor peaks per device kind, and
   on a CPU (or an unknown kind) a matmul FLOP/s and a copy bandwidth
   measured here. The fraction reported is the lower bound on the step time
   (``max(flops / peak_flops, bytes / peak_bandwidth)``, the binding bound
   named) over the measured step time.
3. **Training steps/s** through :func:`ebm_jax.training.fit` for the
   plain ``-mean f(x)`` (one forward and backward pass, the yardstick), score
   matching with the exact trace (eq. 11.2) of a score network and of an
   energy network (the Hessian trace), sliced score matching, denoising
   score matching (Vincent 2011) and the diffusion denoising loss of
   eq. (11.16) on a noise-conditional score network.
4. **Samples/s** of ancestral sampling, the probability-flow ODE (Heun) and
   annealed MALA at NFE = 100 (``benchmarks/diffusion_speed.py``'s
   samplers), and of annealed importance sampling on a Bernoulli RBM of
   the 8x8 digits' size (:func:`ebm_jax.partition.annealed_importance_sampling`,
   its default single-site Gibbs transitions).

Run as ``python benchmarks/accelerator.py``: a few minutes on one GPU;
``--quick`` (10^3 chains, d = 2, tiny models; under a minute on a CPU) is the
smoke run the test suite executes. Writes ``accelerator.json`` and
``accelerator.md`` to ``--out-dir``, by default ``results/<device kind>/``
(``out/benchmarks/quick/<device kind>/`` for ``--quick``).

References:
  Roberts & Tweedie (1996), *Exponential convergence of Langevin
  distributions*, Bernoulli 2(4); Williams, Waterman & Patterson (2009),
  *Roofline*, CACM 52(4); Hyvärinen (2005), JMLR 6; Song et al. (2019),
  *Sliced score matching*, arXiv:1905.07088; Vincent (2011), Neural
  Computation 23(7); Ho, Jain & Abbeel (2020), arXiv:2006.11239; Neal (2001),
  *Annealed importance sampling*, Stat. Comput. 11(2).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import (
    compile_and_probe,
    environment,
    iterations_per_call,
    loop_from,
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
from diffusion_speed import make_workload, sampler_specs, sampling_contenders, time_group

import ebm_jax as ej
from ebm_jax.diffusion.objective import denoising_loss
from ebm_jax.diffusion.schedule import linear_schedule
from ebm_jax.models.noise_conditional import NoiseConditionalScore

FULL = {
    "dims": (2, 64, 784),
    "num_chains": (10**3, 10**4, 10**5, 10**6),
    "hidden_sizes": (256, 256),
    "target_s": 0.2,
    "repeats": 5,
    "max_config_s": 60.0,  # skip a size whose timed rounds would take longer
    "train_dim": 64,
    "train_hidden_sizes": (256, 256),
    "train_batch_size": 1024,
    "train_chunk_size": 50,
    "size_chunks": True,  # fewer steps per chunk for a slow loss
    "fit_call_s": 1.0,
    "diffusion_models": ("toy_2d", "digits"),
    "sample_batch_size": 16384,
    "sample_call_s": 2.0,  # a smaller batch where one call would take longer
    # Digits-sized (8x8 binary images, as benchmarks/rbm_digits.py); the default transition
    # is single-site Gibbs, num_visible sequential updates per temperature.
    "rbm": {"num_visible": 64, "num_hidden": 100, "num_chains": 10**4, "temperatures": 1000},
    "ais_call_s": 10.0,  # fewer chains where a call would take longer
}
QUICK = {
    "dims": (2,),
    "num_chains": (10**3,),
    "hidden_sizes": (32, 32),
    "target_s": 0.02,
    "repeats": 2,
    "max_config_s": 5.0,
    "train_dim": 2,
    "train_hidden_sizes": (32, 32),
    "train_batch_size": 128,
    "train_chunk_size": 10,
    "size_chunks": False,
    "fit_call_s": 0.1,
    "diffusion_models": ("toy_2d",),
    "sample_batch_size": 64,
    "sample_call_s": 1.0,
    "rbm": {"num_visible": 16, "num_hidden": 8, "num_chains": 64, "temperatures": 50},
    "ais_call_s": 1.0,
}
MALA_STEP_SIZES = {2: 5.0, 64: 2.0, 784: 0.4}  # they set acceptance, not cost
# Steps per timed call at least: the initial gradient and the per-call costs of every
# contender then weigh at most a fifth of a call.
MIN_MALA_STEPS = 4
ENVELOPE_SCALE = 3.0
NFE = 100
PROBE_SAMPLE_BATCH = 256
PROBE_AIS_CHAINS = 1000
DSM_SIGMA = 0.1
LEARNING_RATE = 1e-3
# Fraction of the device memory a MALA configuration may plan to use.
MEMORY_FRACTION = 0.5

# Vendor peaks (dense, no sparsity): float32 FLOP/s on the vector units, float32
# matmul FLOP/s at JAX's default precision (TF32 tensor cores on NVIDIA since
# Ampere, bf16 passes on TPU), and memory bandwidth in bytes/s. First match
# of the substring in ``device_kind`` wins, so specific names come first.
KNOWN_PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"fp32_flops": 67e12, "matmul_flops": 494.7e12, "bandwidth": 4.8e12}),
    ("H100 PCIe", {"fp32_flops": 51e12, "matmul_flops": 378e12, "bandwidth": 2.0e12}),
    ("H100 NVL", {"fp32_flops": 60e12, "matmul_flops": 417.5e12, "bandwidth": 3.9e12}),
    ("H100", {"fp32_flops": 67e12, "matmul_flops": 494.7e12, "bandwidth": 3.35e12}),
    ("A100-SXM4-40GB", {"fp32_flops": 19.5e12, "matmul_flops": 156e12, "bandwidth": 1.555e12}),
    ("A100-PCIE-40GB", {"fp32_flops": 19.5e12, "matmul_flops": 156e12, "bandwidth": 1.555e12}),
    ("A100 80GB PCIe", {"fp32_flops": 19.5e12, "matmul_flops": 156e12, "bandwidth": 1.935e12}),
    ("A100", {"fp32_flops": 19.5e12, "matmul_flops": 156e12, "bandwidth": 2.039e12}),
    ("L4", {"fp32_flops": 30.3e12, "matmul_flops": 60e12, "bandwidth": 0.3e12}),
    ("TPU v4", {"fp32_flops": 275e12, "matmul_flops": 275e12, "bandwidth": 1.2e12}),
    ("TPU v5 lite", {"fp32_flops": 197e12, "matmul_flops": 197e12, "bandwidth": 0.819e12}),
    ("TPU v5", {"fp32_flops": 459e12, "matmul_flops": 459e12, "bandwidth": 2.765e12}),
)


# --------------------------------------------------------------------------------------
# the device: peaks and memory
# --------------------------------------------------------------------------------------


def measure_peaks(quick: bool) -> dict[str, float]:
    """Matmul FLOP/s and copy bandwidth measured on the default device (best of a few)."""
    size = 512 if quick else 4096
    matrix = jax.random.normal(jax.random.key(0), (size, size))
    matmul = jax.jit(lambda a: a @ a)
    jax.block_until_ready(matmul(matrix))
    matmul_s = min(wall_time(lambda: matmul(matrix)) for _ in range(3 if quick else 10))
    # A buffer far larger than the caches, updated in place by a loop: each pass reads
    # it once and writes it once (fresh output buffers would time page faults instead).
    vector = jnp.ones((2**23 if quick else 2**28,), jnp.float32)
    num_passes = 10
    copy = jax.jit(lambda v: jax.lax.fori_loop(0, num_passes, lambda _, w: w * 0.5 + 1.0, v))
    jax.block_until_ready(copy(vector))
    copy_s = min(wall_time(lambda: copy(vector)) for _ in range(3 if quick else 10)) / num_passes
    return {
        "matmul_flops": 2 * size**3 / matmul_s,
        "bandwidth": 2 * vector.nbytes / copy_s,
        "matmul_size": size,
        "copy_bytes": 2 * vector.nbytes,
    }


def device_peaks(quick: bool) -> dict[str, Any]:
    """The peaks the roofline uses: the vendor table where the kind is known, else measured."""
    kind = jax.devices()[0].device_kind
    measured = measure_peaks(quick)
    for name, peaks in KNOWN_PEAKS:
        if jax.default_backend() != "cpu" and name.lower() in kind.lower():
            return {"source": f"vendor table ({name})", **peaks, "measured": measured}
    return {
        "source": "measured in this run",
        "fp32_flops": measured["matmul_flops"],
        "matmul_flops": measured["matmul_flops"],
        "bandwidth": measured["bandwidth"],
        "measured": measured,
    }


def device_memory_bytes() -> float:
    """Memory the default device may allocate: the allocator's limit, or half the host RAM."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return float(stats["bytes_limit"])
    return 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cost_of(step: Callable[..., Any], *args: Any) -> dict[str, float]:
    """FLOPs and bytes accessed of one call of ``step``, from XLA's cost analysis."""
    analysis = jax.jit(step).lower(*args).compile().cost_analysis()
    if isinstance(analysis, list):  # older jaxlibs: one dict per program
        analysis = analysis[0] if analysis else {}
    analysis = analysis or {}
    return {
        "flops": float(analysis.get("flops", float("nan"))),
        "bytes": float(analysis.get("bytes accessed", float("nan"))),
        "transcendentals": float(analysis.get("transcendentals", 0.0)),
    }


def roofline(cost: dict[str, float], step_s: float, peaks: dict[str, Any]) -> dict[str, Any]:
    """Achieved fraction of the binding roofline bound, FLOP/s and bytes/s of one step."""
    compute_s = cost["flops"] / peaks["matmul_flops"]
    memory_s = cost["bytes"] / peaks["bandwidth"]
    bound = "compute" if compute_s >= memory_s else "bandwidth"
    return {
        **cost,
        "flops_per_s": cost["flops"] / step_s,
        "bytes_per_s": cost["bytes"] / step_s,
        "arithmetic_intensity": cost["flops"] / max(cost["bytes"], 1.0),
        "binding_bound": bound,
        "fraction_of_bound": max(compute_s, memory_s) / step_s,
    }


# --------------------------------------------------------------------------------------
# 1-2. MALA throughput and roofline
# --------------------------------------------------------------------------------------


def mlp_logdensity(dim: int, hidden_sizes: tuple[int, ...]) -> Callable[[jax.Array], jax.Array]:
    """An :class:`~ebm_jax.models.MLPLogDensity` at random initial parameters, of one sample."""
    model = ej.models.MLPLogDensity(hidden_sizes, envelope_scale=ENVELOPE_SCALE)
    params = jax.jit(model.init)(jax.random.key(1), jnp.zeros(dim))
    apply: Callable[..., Any] = model.apply  # flax types apply's result loosely
    return lambda x: apply(params, x)


def mala_step_bodies(
    logdensity_fn: Callable[[jax.Array], jax.Array], step_size: float, num_chains: int
) -> dict[str, tuple[Callable[[Any, jax.Array], Any], Callable[[Any], Any]]]:
    """``(step(states, rng_key), init(positions))`` for all chains, per contender."""
    algorithm = ej.samplers.mala(logdensity_fn, step_size)

    def ebm_jax_step(states: Any, rng_key: jax.Array) -> Any:
        return jax.vmap(algorithm.step)(jax.random.split(rng_key, num_chains), states)[0]

    floor_step, floor_init = mala_floor_step(logdensity_fn, step_size, num_chains)

    bodies: dict[str, tuple[Callable[[Any, jax.Array], Any], Callable[[Any], Any]]] = {
        "ebm_jax": (ebm_jax_step, jax.vmap(algorithm.init)),
        "floor": (floor_step, floor_init),
    }
    blackjax = optional_blackjax()
    if blackjax is not None:
        bj_algorithm = blackjax.mala(logdensity_fn, step_size)

        def blackjax_step(states: Any, rng_key: jax.Array) -> Any:
            return jax.vmap(bj_algorithm.step)(jax.random.split(rng_key, num_chains), states)[0]

        bodies["blackjax"] = (blackjax_step, jax.vmap(bj_algorithm.init))
    return bodies


def mala_working_set_bytes(dim: int, hidden_sizes: tuple[int, ...], num_chains: int) -> float:
    """An estimate of the live memory of one configuration (states, proposals, activations)."""
    # Three contenders' states (position, gradient) stay alive while one steps.
    per_chain = 14 * dim + 6 * sum(hidden_sizes)
    return 4.0 * per_chain * num_chains  # float32


def bench_mala_config(
    dim: int, num_chains: int, settings: dict[str, Any], peaks: dict[str, Any], repeats: int
) -> dict[str, Any]:
    """One (d, chains) point: the three contenders timed side by side, with their rooflines."""
    logdensity_fn = mlp_logdensity(dim, settings["hidden_sizes"])
    step_size = MALA_STEP_SIZES.get(dim, 0.5 / dim)
    positions = jax.random.normal(jax.random.key(2), (num_chains, dim))
    bodies = mala_step_bodies(logdensity_fn, step_size, num_chains)
    inits, runs, compile_s, one_step_s, costs = {}, {}, {}, {}, {}
    for name, (step, init) in bodies.items():
        inits[name] = jax.jit(init)
        initial_state = inits[name](positions)
        runs[name] = loop_from(step)
        compile_s[name], one_step_s[name] = compile_and_probe(
            functools.partial(runs[name], initial_state)
        )
        costs[name] = cost_of(step, initial_state, jax.random.key(0))
    floor_state = inits["floor"](positions)
    num_steps = max(
        MIN_MALA_STEPS,
        iterations_per_call(
            functools.partial(runs["floor"], floor_state), one_step_s["floor"], settings["target_s"]
        ),
    )
    # ej.run_chains, the public path: one kept position per chain (thin=num_steps).
    algorithm = ej.samplers.mala(logdensity_fn, step_size)
    contenders: dict[str, Callable[[], Any]] = {
        "ebm_jax": functools.partial(
            ej.run_chains, jax.random.key(0), algorithm, positions, num_steps, thin=num_steps
        )
    }
    # Every contender starts from the positions, as run_chains does: init, then the loop.
    for name in bodies:
        if name != "ebm_jax":
            contenders[name] = functools.partial(
                _from_positions, inits[name], runs[name], positions, num_steps
            )
    # The steps alone, from an initialised state: the per-step comparison.
    for name in ("ebm_jax", "blackjax"):
        if name in bodies:
            state = inits[name](positions)
            contenders[f"{name}_steps"] = functools.partial(runs[name], state, num_steps)
    timings = time_side_by_side(contenders, repeats)
    compile_s["ebm_jax_run_chains"] = timings["ebm_jax"]["compile_s"]
    acceptance = float(jnp.mean(contenders["ebm_jax"]().acceptance_rate))
    chain_steps = num_chains * num_steps
    step_s = {name: timing["median_s"] / num_steps for name, timing in timings.items()}
    rooflines = {
        name: roofline(costs[name.removesuffix("_steps")], step_s[name], peaks)
        for name in timings
        if name.endswith("_steps") or name == "floor"
    }
    row: dict[str, Any] = {
        "dim": dim,
        "num_chains": num_chains,
        "hidden_sizes": list(settings["hidden_sizes"]),
        "step_size": step_size,
        "num_steps": num_steps,
        "acceptance_rate": acceptance,
        "chain_steps_per_s": {
            name: chain_steps / timing["median_s"] for name, timing in timings.items()
        },
        "compile_s": compile_s,
        "roofline": rooflines,
        "time_vs_floor": paired_ratio(timings["ebm_jax"], timings["floor"]),
        "timings": timings,
    }
    if "blackjax" in timings:
        row["speed_vs_blackjax"] = paired_ratio(timings["blackjax"], timings["ebm_jax"])
        row["step_speed_vs_blackjax"] = paired_ratio(
            timings["blackjax_steps"], timings["ebm_jax_steps"]
        )
    return row


def _from_positions(
    init: Callable[[jax.Array], Any],
    run: Callable[[Any, int], Any],
    positions: jax.Array,
    num_steps: int,
) -> Any:
    return run(init(positions), num_steps)


def bench_mala(settings: dict[str, Any], peaks: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Every (d, chains) point that fits the memory and the time budget; the rest, skipped."""
    memory = device_memory_bytes()
    rows, skipped = [], []
    for dim in settings["dims"]:
        seconds_per_chain_step = 0.0
        for num_chains in settings["num_chains"]:
            needed = mala_working_set_bytes(dim, settings["hidden_sizes"], num_chains)
            # Calls last max(target, init + the fewest steps); five contenders, repeats + ~4
            # calls each.
            step_s = (MIN_MALA_STEPS + 1) * seconds_per_chain_step * num_chains
            predicted_s = max(settings["target_s"], step_s) * 5 * (repeats + 4)
            reason = None
            if needed > MEMORY_FRACTION * memory:
                reason = f"needs ~{needed / 2**30:.1f} GiB of {memory / 2**30:.1f} GiB"
            elif predicted_s > settings["max_config_s"]:
                reason = f"predicted {predicted_s:.0f} s > {settings['max_config_s']:.0f} s budget"
            else:
                try:
                    row = bench_mala_config(dim, num_chains, settings, peaks, repeats)
                except jax.errors.JaxRuntimeError as error:
                    if "RESOURCE_EXHAUSTED" not in str(error):
                        raise
                    reason = "out of device memory"
            if reason is not None:
                skipped.append({"dim": dim, "num_chains": num_chains, "reason": reason})
                print(f"  d={dim:<4} chains={num_chains:<8} skipped: {reason}", flush=True)
                continue
            # Per chain-step cost never falls once the device is full: a safe predictor.
            seconds_per_chain_step = 1.0 / row["chain_steps_per_s"]["ebm_jax_steps"]
            rows.append(row)
            print(_mala_line(row), flush=True)
    return {"rows": rows, "skipped": skipped}


def _rate(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.2f}{suffix}"
    return f"{value:.1f}"


MALA_COLUMNS = (
    "d",
    "chains",
    "steps",
    "acc",
    "ebm_jax",
    "blackjax",
    "floor",
    "t/floor",
    "vs BJ",
    "step vs BJ",
    "GFLOP/step",
    "MB/step",
    "roofline (bound)",
    "compile ej/bj/floor s",
)


def _mala_cells(row: dict[str, Any]) -> list[str]:
    rates = row["chain_steps_per_s"]
    ebm = row["roofline"]["ebm_jax_steps"]
    compile_s = row["compile_s"]
    return [
        str(row["dim"]),
        f"{row['num_chains']:.0e}",
        str(row["num_steps"]),
        f"{row['acceptance_rate']:.2f}",
        _rate(rates["ebm_jax"]),
        _rate(rates["blackjax"]) if "blackjax" in rates else "-",
        _rate(rates["floor"]),
        f"{row['time_vs_floor']:.3f}",
        f"{row['speed_vs_blackjax']:.2f}x" if "speed_vs_blackjax" in row else "-",
        f"{row['step_speed_vs_blackjax']:.2f}x" if "step_speed_vs_blackjax" in row else "-",
        f"{ebm['flops'] / 1e9:.3g}",
        f"{ebm['bytes'] / 1e6:.3g}",
        f"{ebm['fraction_of_bound']:.1%} ({ebm['binding_bound']})",
        f"{compile_s['ebm_jax_run_chains']:.2f}/{compile_s.get('blackjax', float('nan')):.2f}/"
        f"{compile_s['floor']:.2f}",
    ]


def _mala_line(row: dict[str, Any]) -> str:
    return "  " + "  ".join(
        f"{name}={cell}" for name, cell in zip(MALA_COLUMNS, _mala_cells(row), strict=True)
    )


# --------------------------------------------------------------------------------------
# 3. training through ej.training.fit
# --------------------------------------------------------------------------------------


def training_losses(settings: dict[str, Any]) -> dict[str, tuple[Callable[..., Any], Any]]:
    """``(loss_fn, initial params)`` per objective, at the training dimension."""
    dim, hidden_sizes = settings["train_dim"], settings["train_hidden_sizes"]
    sample = jnp.zeros(dim)
    energy = ej.models.MLPLogDensity(hidden_sizes, envelope_scale=ENVELOPE_SCALE)
    score = ej.models.MLPScore(hidden_sizes)
    energy_params = jax.jit(energy.init)(jax.random.key(3), sample)
    score_params = jax.jit(score.init)(jax.random.key(4), sample)
    noise_conditional = NoiseConditionalScore(hidden_sizes=hidden_sizes)
    noise_conditional_params = jax.jit(noise_conditional.init)(
        jax.random.key(5), sample, jnp.float32(0.5)
    )
    # (params, x[, beta]) -> array; flax types apply's result loosely.
    energy_fn: Callable[..., Any] = energy.apply
    score_fn: Callable[..., Any] = score.apply
    noise_conditional_fn: Callable[..., Any] = noise_conditional.apply

    def plain(params: Any, rng_key: jax.Array, batch: jax.Array) -> jax.Array:
        # The yardstick: one forward and backward pass of the network, -mean f(x).
        del rng_key
        return -jnp.mean(jax.vmap(energy_fn, in_axes=(None, 0))(params, batch))

    return {
        "plain": (plain, energy_params),
        "sm_score_network": (ej.losses.score_matching(score_fn=score_fn), score_params),
        "sm_exact_energy": (ej.losses.score_matching(energy_fn), energy_params),
        "ssm": (ej.losses.sliced_score_matching(energy_fn), energy_params),
        "dsm": (ej.losses.denoising_score_matching(score_fn, DSM_SIGMA), score_params),
        "diffusion_11_16": (
            denoising_loss(noise_conditional_fn, schedule=linear_schedule(1000)),
            noise_conditional_params,
        ),
    }


def bench_training(settings: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Optimizer steps/s of :func:`ebm_jax.training.fit` (Adam), chunks of a fixed length."""
    shape = (4 * settings["train_batch_size"], settings["train_dim"])
    dataset = jax.random.normal(jax.random.key(6), shape)
    optimizer = optax.adam(LEARNING_RATE)
    max_chunk = settings["train_chunk_size"]

    def fit(loss_fn: Callable[..., Any], params: Any, num_steps: int, chunk_size: int) -> Any:
        return ej.training.fit(
            jax.random.key(7),
            loss_fn,
            params,
            optimizer,
            dataset,
            num_steps=num_steps,
            batch_size=settings["train_batch_size"],
            chunk_size=chunk_size,
            progress=False,
        ).params

    rows = {}
    for name, (loss_fn, params) in training_losses(settings).items():
        # A one-step probe sizes the chunk (not in --quick), so that a slow loss (the exact
        # trace at a large d on a CPU) still fits the time budget; num_steps is a multiple
        # of chunk_size, so one compiled chunk serves every run length.
        chunk_size = max_chunk
        if settings["size_chunks"]:
            probe = functools.partial(fit, loss_fn, params, 1, 1)
            wall_time(probe)
            step_s = min(wall_time(probe) for _ in range(2))
            chunk_size = int(np.clip(settings["fit_call_s"] / step_s, 1, max_chunk))
        one_chunk = functools.partial(fit, loss_fn, params, chunk_size, chunk_size)
        first_s = wall_time(one_chunk)
        chunk_s = min(wall_time(one_chunk) for _ in range(2))
        num_chunks = int(np.clip(round(settings["fit_call_s"] / chunk_s), 1, 1000))
        num_steps = num_chunks * chunk_size
        run = functools.partial(fit, loss_fn, params, num_steps, chunk_size)
        timing = time_side_by_side({name: run}, repeats)
        rows[name] = {
            "num_steps": num_steps,
            "chunk_size": chunk_size,
            "steps_per_s": num_steps / timing[name]["median_s"],
            "compile_s": max(0.0, first_s - chunk_s),
            "timing": timing[name],
        }
        print(
            f"  {name:<18} {rows[name]['steps_per_s']:>10.1f} steps/s "
            f"(compile {rows[name]['compile_s']:.2f} s)",
            flush=True,
        )
    return {
        "dim": settings["train_dim"],
        "hidden_sizes": list(settings["train_hidden_sizes"]),
        "batch_size": settings["train_batch_size"],
        "max_chunk_size": max_chunk,
        "optimizer": f"adam({LEARNING_RATE})",
        "losses": rows,
    }


# --------------------------------------------------------------------------------------
# 4. sampling: diffusion samplers at NFE 100, AIS on an RBM
# --------------------------------------------------------------------------------------


def bench_diffusion_sampling(settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Samples/s of ancestral, probability-flow (Heun) and annealed MALA sampling at NFE 100."""
    specs = {
        name: spec
        for name, spec in sampler_specs().items()
        if name in ("ancestral", "probability_flow", "annealed_mala")
    }
    results = {}
    for model_name in settings["diffusion_models"]:
        requested = settings["sample_batch_size"]
        batch_size = _sample_batch_size(model_name, specs, settings, args)
        workload = make_workload(model_name, args.quick)._replace(sample_batch_size=batch_size)
        contenders, nfe = sampling_contenders(workload, specs)
        timings, compile_s, num_batches = time_group(contenders, "ancestral", args)
        rows = {}
        for name in specs:
            batch_s = timings[name]["median_s"] / num_batches
            rows[name] = {
                "num_function_evaluations": nfe[name],
                "samples_per_s": workload.sample_batch_size / batch_s,
                "us_per_nfe": batch_s / nfe[name] * 1e6,
                "compile_s": compile_s[name],
            }
            print(
                f"  {model_name:<7} {name:<17} NFE {nfe[name]:>3}  "
                f"{rows[name]['samples_per_s']:>12.0f} samples/s  "
                f"(compile {compile_s[name]:.2f} s)",
                flush=True,
            )
        results[model_name] = {
            "description": workload.description,
            "batch_size": workload.sample_batch_size,
            "requested_batch_size": requested,
            "batches_per_call": num_batches,
            "samplers": rows,
        }
    return results


def _sample_batch_size(
    model_name: str, specs: dict[str, Any], settings: dict[str, Any], args: argparse.Namespace
) -> int:
    """The requested batch, halved until the slowest sampler's call fits the time budget.

    A probe at a small batch (compiled and timed once per sampler) predicts
    the call time, which grows linearly with the batch once it fills the device.
    """
    requested = settings["sample_batch_size"]
    if requested <= PROBE_SAMPLE_BATCH:  # nothing to cut: spare the probe's compilations
        return requested
    probe_batch = PROBE_SAMPLE_BATCH
    workload = make_workload(model_name, args.quick)._replace(sample_batch_size=probe_batch)
    contenders, _ = sampling_contenders(workload, specs)
    slowest_s = max(compile_and_probe(run)[1] for run in contenders.values())
    batch_size = requested
    while (
        batch_size > probe_batch
        and slowest_s * batch_size / probe_batch > settings["sample_call_s"]
    ):
        batch_size //= 2
    if batch_size != requested:
        print(
            f"  {model_name}: batch cut from {requested} to {batch_size} to fit "
            f"{settings['sample_call_s']:.0f} s per call",
            flush=True,
        )
    return batch_size


def bench_ais(settings: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Annealed importance sampling of a Bernoulli RBM's log Z, single-site Gibbs transitions.

    The chain count is cut (and the cut recorded) where one call would take
    longer than ``settings["ais_call_s"]``.
    """
    config = settings["rbm"]
    rbm = ej.models.BernoulliRBM(num_hidden=config["num_hidden"])
    params = jax.jit(rbm.init)(jax.random.key(8), jnp.zeros(config["num_visible"]))
    # Weights of a trained model's scale; the cost does not depend on the values.
    params = jax.tree.map(lambda leaf: 10.0 * leaf, params)
    base = ej.partition.bernoulli_base(jnp.full(config["num_visible"], 0.5))

    def logdensity_fn(visible: jax.Array) -> Any:
        return rbm.apply(params, visible)

    def run(num_chains: int, num_temperatures: int) -> Any:
        return ej.partition.annealed_importance_sampling(
            jax.random.key(9),
            logdensity_fn,
            base,
            num_chains=num_chains,
            num_temperatures=num_temperatures,
        ).log_partition

    # A short probe (a tenth of the temperatures, at most PROBE_AIS_CHAINS chains)
    # predicts a call, linearly in both (an underestimate on a device the probe does
    # not fill, where the call is fast anyway); chains are cut, never temperatures,
    # where a call would overrun the time budget.
    # Up to PROBE_AIS_CHAINS chains nothing is cut (nor probed).
    num_chains, num_temperatures = config["num_chains"], config["temperatures"]
    reduced = False
    if num_chains > PROBE_AIS_CHAINS:
        probe_temperatures = max(2, num_temperatures // 10)
        probe = functools.partial(run, PROBE_AIS_CHAINS, probe_temperatures)
        wall_time(probe)
        predicted_s = (
            wall_time(probe)
            * (num_temperatures / probe_temperatures)
            * (num_chains / PROBE_AIS_CHAINS)
        )
        reduced = predicted_s > settings["ais_call_s"]
    if reduced:
        fraction = settings["ais_call_s"] / predicted_s
        num_chains = max(64, int(num_chains * fraction) // 64 * 64)
    timing = time_side_by_side(
        {"ais": functools.partial(run, num_chains, num_temperatures)}, repeats
    )["ais"]
    samples_per_s = num_chains / timing["median_s"]
    row = {
        **config,
        "num_chains": num_chains,
        "requested_num_chains": config["num_chains"],
        "samples_per_s": samples_per_s,
        "chain_temperatures_per_s": samples_per_s * num_temperatures,
        "compile_s": timing["compile_s"],
        "timing": timing,
    }
    cut = (
        f" (cut from {config['num_chains']} to fit {settings['ais_call_s']:.0f} s)"
        if reduced
        else ""
    )
    print(
        f"  RBM {config['num_visible']}x{config['num_hidden']}, {num_chains} chains{cut} x "
        f"{num_temperatures} temperatures: {samples_per_s:.1f} samples/s "
        f"(compile {timing['compile_s']:.2f} s)",
        flush=True,
    )
    return row


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def _table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown: the environment, then one table per measured family."""
    env, peaks = report["environment"], report["peaks"]
    lines = [
        f"# Accelerator benchmark: {env['device_kind']}{quick_note(report['settings']['quick'])}",
        "",
        f"{env['device_count']} x {env['device_kind']} ({env['backend']}); jax {env['jax']}, "
        f"jaxlib {env['jaxlib']}, blackjax {env['blackjax']}, ebm_jax {env['ebm_jax']}; "
        f"{env['date']}.",
        "",
        f"Peaks ({peaks['source']}): matmul {peaks['matmul_flops'] / 1e12:.3g} TFLOP/s, "
        f"fp32 {peaks['fp32_flops'] / 1e12:.3g} TFLOP/s, bandwidth "
        f"{peaks['bandwidth'] / 1e9:.3g} GB/s; measured here: matmul "
        f"{peaks['measured']['matmul_flops'] / 1e12:.3g} TFLOP/s, copy "
        f"{peaks['measured']['bandwidth'] / 1e9:.3g} GB/s.",
        "",
        "## MALA chain-steps/s (MLP log-density)",
        "",
        "ebm_jax = `ej.run_chains` + `ej.samplers.mala`, from the positions to the kept draws; "
        "blackjax and floor = a jitted `vmap(init)`, then a jitted loop of `vmap(step)`, from the "
        "same positions (the init's gradient counts for all three). t/floor, vs BJ and step vs BJ "
        "(the loops alone, from an initialised state) are medians of per-round ratios. roofline "
        "= the ebm_jax step's lower bound from XLA's cost analysis over its measured time. "
        "XLA counts the bytes every fused op reads and writes, so a working set that stays in "
        "cache can exceed 100% of the memory bound (small configurations, CPUs).",
        "",
        *_table(MALA_COLUMNS, [_mala_cells(row) for row in report["mala"]["rows"]]),
    ]
    for skipped in report["mala"]["skipped"]:
        lines.append(
            f"\nskipped d={skipped['dim']}, {skipped['num_chains']:.0e} chains: {skipped['reason']}"
        )
    training = report["training"]
    lines += [
        "",
        f"## Training steps/s (`ej.training.fit`, d={training['dim']}, batch "
        f"{training['batch_size']}, {training['optimizer']})",
        "",
        *_table(
            ("loss", "steps/s", "steps per chunk", "compile s"),
            [
                [
                    name,
                    f"{row['steps_per_s']:.1f}",
                    str(row["chunk_size"]),
                    f"{row['compile_s']:.2f}",
                ]
                for name, row in training["losses"].items()
            ],
        ),
        "",
        f"## Diffusion sampling at NFE {NFE}",
        "",
        *_table(
            ("model", "batch", "sampler", "NFE", "samples/s", "µs/NFE", "compile s"),
            [
                [
                    model,
                    str(result["batch_size"])
                    + (
                        f" (of {result['requested_batch_size']})"
                        if result["batch_size"] != result["requested_batch_size"]
                        else ""
                    ),
                    name,
                    str(row["num_function_evaluations"]),
                    f"{row['samples_per_s']:.0f}",
                    f"{row['us_per_nfe']:.1f}",
                    f"{row['compile_s']:.2f}",
                ]
                for model, result in report["diffusion_sampling"].items()
                for name, row in result["samplers"].items()
            ],
        ),
        "",
        "## AIS on a Bernoulli RBM (single-site Gibbs transitions, the default)",
        "",
    ]
    ais = report["ais"]
    lines += _table(
        ("visible x hidden", "chains", "temperatures", "samples/s", "chain-temps/s", "compile s"),
        [
            [
                f"{ais['num_visible']}x{ais['num_hidden']}",
                str(ais["num_chains"])
                + (
                    f" (of {ais['requested_num_chains']})"
                    if ais["num_chains"] != ais["requested_num_chains"]
                    else ""
                ),
                str(ais["temperatures"]),
                f"{ais['samples_per_s']:.1f}",
                _rate(ais["chain_temperatures_per_s"]),
                f"{ais['compile_s']:.2f}",
            ]
        ],
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 10^3 chains, d = 2")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help=out_help("folder of the .json and .md", "<device kind>/"),
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    # The names diffusion_speed.time_group reads.
    args.repeats, args.target = settings["repeats"], settings["target_s"]
    env = environment("blackjax", "flax", "optax")
    device_dir = re.sub(r"[^A-Za-z0-9_.-]+", "_", env["device_kind"])
    out_dir = output_path(device_dir, args.out_dir, quick=args.quick)
    started = time.perf_counter()
    print(
        f"jax {env['jax']} on {env['backend']} ({env['device_kind']}, {env['device_count']} "
        f"device(s)); medians of {args.repeats} interleaved rounds{quick_note(args.quick)}",
        flush=True,
    )
    peaks = device_peaks(args.quick)
    print("\n1-2. MALA chain-steps/s and roofline", flush=True)
    mala = bench_mala(settings, peaks, args.repeats)
    print("\n3. Training steps/s (ej.training.fit)", flush=True)
    training = bench_training(settings, args.repeats)
    print(f"\n4. Samples/s: diffusion samplers at NFE {NFE}, AIS on an RBM", flush=True)
    diffusion_sampling = bench_diffusion_sampling(settings, args)
    ais = bench_ais(settings, args.repeats)
    report: dict[str, Any] = {
        "environment": env,
        "settings": {"quick": args.quick, **settings, "mala_step_sizes": MALA_STEP_SIZES},
        "peaks": peaks,
        "mala": mala,
        "training": training,
        "diffusion_sampling": diffusion_sampling,
        "ais": ais,
        "wall_s": time.perf_counter() - started,
    }
    table = markdown(report)
    print("\n" + table, flush=True)
    write_json(out_dir / "accelerator.json", report, quick=args.quick)
    (out_dir / "accelerator.md").write_text(table)
    print(
        f"wrote {out_dir / 'accelerator.md'} ({report['wall_s']:.0f} s){quick_note(args.quick)}",
        flush=True,
    )
    return report


if __name__ == "__main__":
    main()

"""Contrastive divergence speed: updates per second and the share spent sampling negatives.

The likelihood gradient of an EBM (§11.1) is a difference of a data
expectation and a model expectation of :math:`\\nabla_\\theta f_\\theta`; CD-k
and persistent CD estimate the second one from negatives drawn by ``k``
Markov-kernel steps (:mod:`ebm_jax.losses.contrastive`). One update therefore
costs ``k`` kernel steps on every chain plus one forward and backward pass
over the data and the negatives, and as ``k`` grows the chains dominate.
PCD (Tieleman 2008) costs the same per update as CD-k, since both run ``k``
steps on as many chains as the batch; what PCD buys is chains that keep
mixing across updates, not a cheaper update. This benchmark measures both.

Three models, each with its natural sampler:

* ``rbm``   — ``ej.models.BernoulliRBM(16)`` on the binarised 8×8 digits
  (64 visible units), exact block Gibbs (``rbm.block_gibbs``), batch 100;
* ``mlp2d`` — ``MLPLogDensity((128, 128), envelope_scale=4.0)`` on two moons,
  MALA negatives (step size 0.02), batch 256;
* ``mlp64`` — ``MLPLogDensity((256, 256), envelope_scale=4.0)`` on the
  standardised digits, MALA negatives (step size 0.02), batch 100.

For each model and ``k`` (default 1, 10, 50) four contenders are timed side
by side in interleaved rounds, each a jitted loop of updates (a
``lax.fori_loop`` whose trip count is calibrated so that a CD call lasts about
``--target`` seconds, amortising dispatch; every contender of a row runs the
same count, and a fresh data batch is drawn inside every iteration of each):

* ``cd``       — one full training update: ``value_and_grad`` of the CD-k
  loss and an ``optax.adam`` step;
* ``pcd``      — the same with PCD-k, as many persistent chains as the batch,
  the chain state carried from update to update;
* ``sampling`` — the sampling alone: ``run_negative_chains`` with the same
  sampler, ``k`` and number of chains, started at the data batch, only its
  positions kept (as in the CD loss; PCD also keeps the chains' acceptance and
  non-finite counters, a per-step reduction the CD loss lets the compiler drop);
* ``gradient`` — the update without sampling (``k = 0``): ``value_and_grad``
  of the same surrogate with a second data batch as fixed negatives, and the
  Adam step.

Reported per update: updates/s, update, sampling and gradient-only
milliseconds, the share of the update spent sampling (the median over rounds
of the per-round ratio sampling / update, so machine load cancels), and, per
model, the cost of one extra kernel step (the slope of a least-squares line
of time against ``k``), and the mean acceptance of the PCD chains at their
last update. Compile time (first call minus the steady-state median, of one
update) is reported separately.

Run as ``python benchmarks/contrastive_speed.py`` (a few minutes on two
cores, mostly compilation); ``--quick`` is a fast smoke run (k ∈ {1, 10}, the
``rbm`` and ``mlp2d`` models). Writes ``results/contrastive_speed.json`` (or
``--out``; a ``--quick`` run without ``--out`` writes under ``out/benchmarks/quick/``).

References:
  Hinton (2002), *Training products of experts by minimizing contrastive
  divergence*, Neural Computation 14(8); Tieleman (2008), *Training
  restricted Boltzmann machines using approximations to the likelihood
  gradient*, ICML.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import (
    compile_and_probe,
    digits_train,
    environment,
    iterations_per_call,
    looped,
    out_help,
    output_path,
    paired_ratio,
    quick_note,
    time_side_by_side,
    write_json,
)

import ebm_jax as ej
from ebm_jax.losses.contrastive import (
    SamplerFactory,
    contrastive_divergence,
    persistent_contrastive_divergence,
    run_negative_chains,
)

RESULTS_FILE = "contrastive_speed.json"
NUM_STEPS = (1, 10, 50)
QUICK_NUM_STEPS = (1, 10)
MODEL_NAMES = ("rbm", "mlp2d", "mlp64")
# Each (model, k) compiles three loops of ~1.5 s CPU each: the smoke run keeps
# one model per kernel (Gibbs, MALA) to stay well under a minute.
QUICK_MODEL_NAMES = ("rbm", "mlp2d")
MALA_STEP_SIZE = 0.02
LEARNING_RATE = 1e-3
NUM_TWO_MOONS = 10_000
CONTENDERS = ("cd", "pcd", "sampling", "gradient")


class Workload(NamedTuple):
    """A model, its sampler and its data: everything one table row depends on but ``k``."""

    name: str
    description: str
    logdensity_fn: Callable[..., Any]
    sampler: SamplerFactory
    params: Any
    dataset: jax.Array
    batch_size: int


def _mala_sampler(logdensity_fn: Callable[..., Any]) -> SamplerFactory:
    """MALA with the benchmark's step size on ``logdensity_fn(params, .)``."""

    def sampler(params: Any) -> ej.samplers.SamplingAlgorithm:
        return ej.samplers.mala(functools.partial(logdensity_fn, params), MALA_STEP_SIZE)

    return sampler


def make_workload(name: str) -> Workload:
    init_key = jax.random.key(0)
    if name == "rbm":
        rbm = ej.models.BernoulliRBM(16)
        dataset, source = digits_train("binary")
        return Workload(
            name,
            f"BernoulliRBM(16), 64 binary visible units ({source}), exact block Gibbs, batch 100",
            rbm.apply,
            rbm.block_gibbs,
            rbm.init(init_key, dataset[0]),
            dataset,
            100,
        )
    if name == "mlp2d":
        model = ej.models.MLPLogDensity((128, 128), envelope_scale=4.0)
        dataset = ej.data.two_moons(jax.random.key(3), NUM_TWO_MOONS)
        return Workload(
            name,
            f"MLPLogDensity((128, 128), envelope 4), 2-D two moons, MALA step "
            f"{MALA_STEP_SIZE}, batch 256",
            model.apply,
            _mala_sampler(model.apply),
            model.init(init_key, dataset[0]),
            dataset,
            256,
        )
    if name == "mlp64":
        model = ej.models.MLPLogDensity((256, 256), envelope_scale=4.0)
        dataset, source = digits_train("standardize")
        return Workload(
            name,
            f"MLPLogDensity((256, 256), envelope 4), 64-D standardised {source}, MALA step "
            f"{MALA_STEP_SIZE}, batch 100",
            model.apply,
            _mala_sampler(model.apply),
            model.init(init_key, dataset[0]),
            dataset,
            100,
        )
    raise ValueError(f"model must be one of {MODEL_NAMES}, got {name!r}")


class Steps(NamedTuple):
    """The parts every contender of a model shares: data batches and the Adam step."""

    draw_batch: Callable[[jax.Array], jax.Array]
    adam_step: Callable[[Any, Any, Any], tuple[Any, Any]]
    opt_state: Any


def _steps(workload: Workload) -> Steps:
    optimizer = optax.adam(LEARNING_RATE)
    dataset, batch_size = workload.dataset, workload.batch_size

    def draw_batch(rng_key: jax.Array) -> jax.Array:
        return dataset[jax.random.randint(rng_key, (batch_size,), 0, dataset.shape[0])]

    def adam_step(params: Any, opt_state: Any, grads: Any) -> tuple[Any, Any]:
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return Steps(draw_batch, adam_step, optimizer.init(workload.params))


def gradient_contender(workload: Workload) -> Callable[[int], Any]:
    """The update without sampling (``k = 0``): the surrogate with fixed negatives, and Adam."""
    logdensity_fn = workload.logdensity_fn
    draw_batch, adam_step, opt_state = _steps(workload)

    def surrogate(params: Any, positives: jax.Array, negatives: jax.Array) -> jax.Array:
        values = jax.vmap(logdensity_fn, in_axes=(None, 0))
        return jnp.mean(values(params, negatives)) - jnp.mean(values(params, positives))

    def gradient_only(carry: Any, rng_key: jax.Array) -> Any:
        params, opt_state = carry
        positive_key, negative_key = jax.random.split(rng_key)
        _, grads = jax.value_and_grad(surrogate)(
            params, draw_batch(positive_key), draw_batch(negative_key)
        )
        return adam_step(params, opt_state, grads)

    return looped(gradient_only, (workload.params, opt_state))


def sampling_contenders(workload: Workload, num_steps: int) -> dict[str, Callable[[int], Any]]:
    """CD-k and PCD-k updates and the sampling alone, each ``run(num_iterations)``."""
    logdensity_fn, sampler, params = workload.logdensity_fn, workload.sampler, workload.params
    draw_batch, adam_step, opt_state = _steps(workload)

    cd_loss = contrastive_divergence(logdensity_fn, sampler=sampler, num_steps=num_steps)

    def cd_update(carry: Any, rng_key: jax.Array) -> Any:
        params, opt_state = carry
        data_key, loss_key = jax.random.split(rng_key)
        _, grads = jax.value_and_grad(cd_loss)(params, loss_key, draw_batch(data_key))
        return adam_step(params, opt_state, grads)

    pcd = persistent_contrastive_divergence(logdensity_fn, sampler=sampler, num_steps=num_steps)

    def pcd_update(carry: Any, rng_key: jax.Array) -> Any:
        params, opt_state, chains = carry
        data_key, loss_key = jax.random.split(rng_key)
        (_, chains), grads = jax.value_and_grad(pcd.loss, has_aux=True)(
            params, loss_key, draw_batch(data_key), chains
        )
        return (*adam_step(params, opt_state, grads), chains)

    def sampling_only(carry: Any, rng_key: jax.Array) -> Any:
        # A fresh start every iteration, as in CD-k: with a loop-invariant start
        # the compiler could hoist the kernel's initialisation out of the loop.
        params, checksum = carry
        data_key, chain_key = jax.random.split(rng_key)
        negatives = run_negative_chains(chain_key, sampler(params), draw_batch(data_key), num_steps)
        # Only the positions are kept live, as in the CD loss: the chains'
        # acceptance and non-finite counters are dead code there, and removed.
        return params, checksum + jnp.sum(negatives.positions)

    initial_chains = pcd.init(draw_batch(jax.random.key(4)))
    return {
        "cd": looped(cd_update, (params, opt_state)),
        "pcd": looped(pcd_update, (params, opt_state, initial_chains)),
        "sampling": looped(sampling_only, (params, jnp.zeros(()))),
    }


def bench_config(
    workload: Workload,
    num_steps: int,
    gradient: Callable[[int], Any],
    gradient_compile_s: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    contenders = {**sampling_contenders(workload, num_steps), "gradient": gradient}
    compile_s = {"gradient": gradient_compile_s}
    one_call_s = {}
    for name in ("cd", "pcd", "sampling"):
        compile_s[name], one_call_s[name] = compile_and_probe(contenders[name])
    num_iterations = max(
        args.min_updates_per_call,
        iterations_per_call(contenders["cd"], one_call_s["cd"], args.target),
    )
    timings = time_side_by_side(
        {name: functools.partial(run, num_iterations) for name, run in contenders.items()},
        args.repeats,
    )
    per_update_ms = {name: timings[name]["median_s"] / num_iterations * 1e3 for name in CONTENDERS}
    # The PCD chains' mean acceptance at the last update of one more call.
    acceptance = contenders["pcd"](num_iterations)[2].acceptance_rate
    return {
        "model": workload.name,
        "num_steps": num_steps,
        "updates_per_call": num_iterations,
        "update_ms": {"cd": per_update_ms["cd"], "pcd": per_update_ms["pcd"]},
        "updates_per_s": {
            "cd": 1e3 / per_update_ms["cd"],
            "pcd": 1e3 / per_update_ms["pcd"],
        },
        "sampling_ms": per_update_ms["sampling"],
        "gradient_ms": per_update_ms["gradient"],
        "sampling_share": {
            "cd": paired_ratio(timings["sampling"], timings["cd"]),
            "pcd": paired_ratio(timings["sampling"], timings["pcd"]),
        },
        "compile_s": compile_s,
        "pcd_acceptance_rate": float(acceptance),
        # Every loop was compiled before these rounds: compile_s is above.
        "timings": {
            name: {key: value for key, value in timing.items() if key != "compile_s"}
            for name, timing in timings.items()
        },
    }


def _fit_per_step(configs: list[dict[str, Any]], times_ms: list[float]) -> dict[str, float]:
    """Least-squares line of milliseconds per update against ``k``."""
    slope, intercept = np.polyfit([config["num_steps"] for config in configs], times_ms, 1)
    return {"ms_per_step": float(slope), "intercept_ms": float(intercept)}


def per_step_cost(workload: Workload, configs: list[dict[str, Any]]) -> dict[str, Any]:
    fits = {
        method: _fit_per_step(configs, [config["update_ms"][method] for config in configs])
        for method in ("cd", "pcd")
    }
    fits["sampling"] = _fit_per_step(configs, [config["sampling_ms"] for config in configs])
    for fit in fits.values():
        fit["us_per_chain_step"] = fit["ms_per_step"] / workload.batch_size * 1e3
    return fits


HEADER = (
    f"{'method':<6} {'k':>3} {'updates/s':>10} {'update ms':>10} {'sampling ms':>12} "
    f"{'gradient ms':>12} {'sampling share':>15} {'compile s':>10} {'PCD accept':>11}"
)


def print_table(
    workload: Workload, configs: list[dict[str, Any]], fits: dict[str, Any] | None
) -> None:
    print(f"\n{workload.name}: {workload.description}", flush=True)
    print(HEADER)
    for method in ("cd", "pcd"):
        for config in configs:
            print(
                f"{method.upper():<6} {config['num_steps']:>3} "
                f"{config['updates_per_s'][method]:>10.1f} {config['update_ms'][method]:>10.3f} "
                f"{config['sampling_ms']:>12.3f} {config['gradient_ms']:>12.3f} "
                f"{config['sampling_share'][method]:>15.2f} "
                f"{config['compile_s'][method]:>10.2f} {config['pcd_acceptance_rate']:>11.3f}"
            )
    if fits is None:
        return
    ks = ", ".join(str(config["num_steps"]) for config in configs)
    gradient_ms = float(np.median([config["gradient_ms"] for config in configs]))
    print(
        f"per extra kernel step (least squares over k = {ks}): "
        f"CD {fits['cd']['ms_per_step']:.4f} ms, PCD {fits['pcd']['ms_per_step']:.4f} ms, "
        f"sampling alone {fits['sampling']['ms_per_step']:.4f} ms "
        f"({fits['sampling']['us_per_chain_step']:.3f} µs per chain-step); "
        f"CD line at k = 0: {fits['cd']['intercept_ms']:.3f} ms vs gradient-only "
        f"{gradient_ms:.3f} ms",
        flush=True,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fast smoke run (k ∈ {1, 10}; rbm and mlp2d)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=out_help("JSON results file", RESULTS_FILE)
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 9)")
    parser.add_argument(
        "--target", type=float, default=None, help="seconds per timed call of a CD update loop"
    )
    parser.add_argument(
        "--min-updates-per-call", type=int, default=None, help="fewest updates per timed call"
    )
    parser.add_argument("--num-steps", type=int, nargs="+", default=None, help="values of k")
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=None)
    args = parser.parse_args(argv)
    args.out = output_path(RESULTS_FILE, args.out, quick=args.quick)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 9
    if args.target is None:
        args.target = 0.03 if args.quick else 0.2
    if args.min_updates_per_call is None:
        args.min_updates_per_call = 1 if args.quick else 5
    num_steps_values = args.num_steps or list(QUICK_NUM_STEPS if args.quick else NUM_STEPS)
    if args.models is None:
        args.models = list(QUICK_MODEL_NAMES if args.quick else MODEL_NAMES)
    if min(num_steps_values) < 1 or args.repeats < 1 or args.min_updates_per_call < 1:
        parser.error("--num-steps, --repeats and --min-updates-per-call must be >= 1")

    env = environment("flax", "optax")
    print(
        f"jax {env['jax']} on {env['backend']} ({env['device_kind']}); Adam; milliseconds per "
        f"update, median over {args.repeats} interleaved rounds of calls of about "
        f"{args.target} s (jitted loops of updates); sampling share = median per-round ratio "
        f"sampling / update{quick_note(args.quick)}",
        flush=True,
    )
    models = []
    for name in args.models:
        workload = make_workload(name)
        gradient = gradient_contender(workload)
        gradient_compile_s, _ = compile_and_probe(gradient)
        configs = [
            bench_config(workload, k, gradient, gradient_compile_s, args) for k in num_steps_values
        ]
        fits = per_step_cost(workload, configs) if len(configs) >= 2 else None
        print_table(workload, configs, fits)
        models.append(
            {
                "model": name,
                "description": workload.description,
                "batch_size": workload.batch_size,
                "num_chains": workload.batch_size,
                "per_step_cost": fits,
                "rows": configs,
            }
        )
    report = {
        "environment": env,
        "settings": {
            "quick": args.quick,
            "repeats": args.repeats,
            "target_s": args.target,
            "min_updates_per_call": args.min_updates_per_call,
            "num_steps": num_steps_values,
            "models": args.models,
            "mala_step_size": MALA_STEP_SIZE,
            "learning_rate": LEARNING_RATE,
        },
        "models": models,
    }
    write_json(args.out, report, quick=args.quick)
    return report


if __name__ == "__main__":
    main()

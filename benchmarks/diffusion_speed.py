"""Diffusion speed: training steps/s of score and energy networks, and samples/s per sampler.

The lecture's diffusion model (§11.2.4–11.2.5) is a noise-conditional score
:math:`S_w(x', \\beta)` trained by the denoising objective (11.16). It can be a
score network (:class:`~ebm_jax.models.NoiseConditionalScore`) or the gradient
of an energy network (:class:`~ebm_jax.models.NoiseConditionalEnergy`,
:math:`S_w = \\nabla_{x'} f_w`, eq. 11.1). The energy form buys an unnormalised
log-density at every level, hence Metropolis-Hastings corrected samplers, at a
price paid twice: every evaluation of its score is a backward pass, and its
training step differentiates that gradient again. This benchmark measures the
price, and what each sampler costs per sample at the same number of network
evaluations (NFE), so samplers are compared at equal work and the difference
in their cost per evaluation is the overhead they add outside the network.

Two model sizes, both with random initial parameters (timings depend on
shapes, not on values):

* ``toy_2d`` — ``NoiseConditionalScore.toy_2d()`` / ``NoiseConditionalEnergy.toy_2d()``
  (three FiLM-conditioned layers of 128) on 2-D two moons; training batch
  256, sampling batch 1024;
* ``digits`` — the ``digits_8x8()`` settings (three pre-norm residual blocks
  of width 256) on the standardised 8×8 digits (64-D); training batch 128,
  sampling batch 256.

Timed side by side, per model, in interleaved rounds (``benchmarks/_common.py``),
each contender a jitted ``lax.fori_loop`` whose run-time trip count makes one
call last about ``--target`` seconds (every contender of a group runs the same
count, a fresh key and fresh data or starting noise in every iteration):

1. **Training** — one Adam step of eq. (11.16) (``denoising_loss``, linear
   schedule with :math:`T = 1000`, the default :math:`\\varepsilon` weighting)
   for the score network and for the energy network; steps/s and the
   energy/score time ratio (median of per-round ratios).
2. **Sampling** at NFE = 100 on the linear schedule with :math:`T = 1000`:
   ancestral (100 steps), predictor-corrector (50 steps × (1 predictor + 1
   corrector)), annealed Langevin (11 levels × 9 steps + the final Tweedie
   denoising step) and the probability-flow ODE (Heun, 50 steps × 2 stages)
   with the score network; ancestral (100 steps, score by ``jax.grad``) and
   annealed MALA (10 levels × (1 + 9 MALA steps), one ``value_and_grad`` each)
   with the energy network. Samples/s, µs per NFE (one network evaluation on
   the whole batch) and the time relative to ancestral sampling with the
   score network.
3. **Probability-flow log-likelihood** (Heun, 50 steps, NFE = 100, score
   network) with the exact divergence (:math:`d` JVPs per stage) and with
   Hutchinson's estimate (one Rademacher probe, one JVP): ms per sample and
   the exact/Hutchinson ratio, which grows with :math:`d`.

Compile time (first call minus the steady-state median, of one iteration) is
reported separately. Run as ``python benchmarks/diffusion_speed.py`` (a few
minutes on two cores); ``--quick`` is a smoke run (the 2-D model only, smaller
batches). Writes ``results/diffusion_speed.json`` (or ``--out``; a ``--quick`` run
without ``--out`` writes under ``out/benchmarks/quick/``).

References:
  Ho, Jain & Abbeel (2020), *Denoising diffusion probabilistic models*,
  arXiv:2006.11239; Song & Ermon (2019), *Generative modeling by estimating
  gradients of the data distribution*, arXiv:1907.05600; Song et al. (2021),
  *Score-based generative modeling through stochastic differential
  equations*, arXiv:2011.13456; Du et al. (2023), *Reduce, reuse, recycle*,
  arXiv:2302.11552; Salimans & Ho (2021), *Should EBMs model the energy or the
  score?*; Grathwohl et al. (2019), *FFJORD*, arXiv:1810.01367.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
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
from ebm_jax.diffusion import ode, samplers
from ebm_jax.diffusion.objective import denoising_loss
from ebm_jax.diffusion.schedule import linear_schedule
from ebm_jax.models.noise_conditional import NoiseConditionalEnergy, NoiseConditionalScore

RESULTS_FILE = "diffusion_speed.json"
MODEL_NAMES = ("toy_2d", "digits")
QUICK_MODEL_NAMES = ("toy_2d",)
SCHEDULE_STEPS = 1000
LEARNING_RATE = 1e-3
NUM_TWO_MOONS = 10_000
# Step sizes at the smallest visited level; they set the chains' values, not their cost.
LANGEVIN_STEP_SIZE = 1e-5
MALA_STEP_SIZE = 1e-5
PROBABILITY_FLOW_STEPS = 50


class Workload(NamedTuple):
    """The two networks of one model size, their data and the batch sizes."""

    name: str
    description: str
    event_size: int
    score_fn: Callable[..., Any]  # (params, x, beta) -> S_w(x, beta)
    logdensity_fn: Callable[..., Any]  # (params, x, beta) -> f_w(x, beta)
    score_params: Any
    energy_params: Any
    dataset: jax.Array
    train_batch_size: int
    sample_batch_size: int
    likelihood_batch_size: int


class SamplerSpec(NamedTuple):
    """One sampling contender: which network, how the NFE = 100 are spent, and the call."""

    network: str
    layout: str
    run: Callable[[jax.Array, Callable[..., Any], jax.Array], tuple[jax.Array, int]]


def make_workload(name: str, quick: bool) -> Workload:
    init_key = jax.random.key(0)
    if name == "toy_2d":
        score_model: NoiseConditionalScore = NoiseConditionalScore.toy_2d()
        energy_model: NoiseConditionalEnergy = NoiseConditionalEnergy.toy_2d()
        dataset = ej.data.two_moons(jax.random.key(3), NUM_TWO_MOONS)
        source = "2-D two moons"
        batch_sizes = (256, 256, 128) if quick else (256, 1024, 256)
        architecture = "toy_2d(): 3 FiLM layers of 128"
    elif name == "digits":
        score_model = NoiseConditionalScore.digits_8x8()
        energy_model = NoiseConditionalEnergy.digits_8x8()
        dataset, source = digits_train("standardize")
        source = f"64-D standardised {source}"
        batch_sizes = (128, 64, 8) if quick else (128, 256, 16)
        architecture = "digits_8x8(): 3 residual blocks of 256"
    else:
        raise ValueError(f"model must be one of {MODEL_NAMES}, got {name!r}")
    beta = jnp.float32(0.5)
    train_batch_size, sample_batch_size, likelihood_batch_size = batch_sizes
    return Workload(
        name,
        f"NoiseConditionalScore / NoiseConditionalEnergy.{architecture}, random init, {source}; "
        f"batches: training {train_batch_size}, sampling {sample_batch_size}, "
        f"log-likelihood {likelihood_batch_size}",
        int(dataset.shape[1]),
        score_model.apply,
        energy_model.apply,
        # Jitted: one compiled program starts faster than the init's op-by-op dispatch.
        jax.jit(score_model.init)(init_key, dataset[0], beta),
        jax.jit(energy_model.init)(init_key, dataset[0], beta),
        dataset,
        train_batch_size,
        sample_batch_size,
        likelihood_batch_size,
    )


# --- timing ---------------------------------------------------------------------------------


def time_group(
    contenders: dict[str, Callable[[int], Any]], reference: str, args: argparse.Namespace
) -> tuple[dict[str, dict[str, Any]], dict[str, float], int]:
    """Compile each contender, calibrate one trip count on ``reference``, time side by side."""
    compile_s, one_call_s = {}, {}
    for name, run in contenders.items():
        compile_s[name], one_call_s[name] = compile_and_probe(run)
    num_iterations = iterations_per_call(contenders[reference], one_call_s[reference], args.target)
    timings = time_side_by_side(
        {name: functools.partial(run, num_iterations) for name, run in contenders.items()},
        args.repeats,
    )
    return timings, compile_s, num_iterations


def _strip_compile(timing: dict[str, Any]) -> dict[str, Any]:
    # Every loop was compiled before the timed rounds: compile_s is reported on its own.
    return {key: value for key, value in timing.items() if key != "compile_s"}


# --- 1. training ------------------------------------------------------------------------------


def training_contenders(workload: Workload) -> dict[str, Callable[[int], Any]]:
    """One Adam step of eq. (11.16) for each network, as ``run(num_iterations)``."""
    optimizer = optax.adam(LEARNING_RATE)
    schedule = linear_schedule(SCHEDULE_STEPS)
    dataset, batch_size = workload.dataset, workload.train_batch_size
    losses = {
        "score": (
            denoising_loss(workload.score_fn, schedule=schedule),
            workload.score_params,
        ),
        "energy": (
            denoising_loss(logdensity_fn=workload.logdensity_fn, schedule=schedule),
            workload.energy_params,
        ),
    }

    def contender(loss_fn: Callable[..., jax.Array], params: Any) -> Callable[[int], Any]:
        def update(carry: Any, rng_key: jax.Array) -> Any:
            params, opt_state = carry
            data_key, loss_key = jax.random.split(rng_key)
            indices = jax.random.randint(data_key, (batch_size,), 0, dataset.shape[0])
            grads = jax.grad(loss_fn)(params, loss_key, dataset[indices])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        return looped(update, (params, optimizer.init(params)))

    return {name: contender(*loss) for name, loss in losses.items()}


def bench_training(workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    timings, compile_s, num_iterations = time_group(training_contenders(workload), "score", args)
    step_ms = {name: timing["median_s"] / num_iterations * 1e3 for name, timing in timings.items()}
    best_step_ms = {
        name: timing["min_s"] / num_iterations * 1e3 for name, timing in timings.items()
    }
    return {
        "batch_size": workload.train_batch_size,
        "steps_per_call": num_iterations,
        "step_ms": step_ms,
        "best_step_ms": best_step_ms,
        "steps_per_s": {name: 1e3 / value for name, value in step_ms.items()},
        "energy_over_score": paired_ratio(timings["energy"], timings["score"]),
        "compile_s": compile_s,
        "timings": {name: _strip_compile(timing) for name, timing in timings.items()},
    }


# --- 2. sampling ------------------------------------------------------------------------------


def sampler_specs() -> dict[str, SamplerSpec]:
    """The samplers at NFE = 100 each, on the linear schedule with T = 1000."""
    schedule = linear_schedule(SCHEDULE_STEPS)

    def ancestral(rng_key: jax.Array, score_fn: Any, x_T: jax.Array) -> tuple[jax.Array, int]:
        return samplers.ancestral_sample(rng_key, score_fn, schedule, x_T, num_steps=100)

    def predictor_corrector(
        rng_key: jax.Array, score_fn: Any, x_T: jax.Array
    ) -> tuple[jax.Array, int]:
        return samplers.predictor_corrector_sample(
            rng_key, score_fn, schedule, x_T, num_steps=50, num_corrector_steps=1
        )

    def annealed_langevin(
        rng_key: jax.Array, score_fn: Any, x_T: jax.Array
    ) -> tuple[jax.Array, int]:
        return samplers.annealed_langevin_sample(
            rng_key,
            score_fn,
            schedule,
            x_T,
            step_size=LANGEVIN_STEP_SIZE,
            num_steps=11,
            num_steps_per_level=9,
        )

    def probability_flow(
        rng_key: jax.Array, score_fn: Any, x_T: jax.Array
    ) -> tuple[jax.Array, int]:
        del rng_key  # deterministic
        return ode.probability_flow_sample(
            score_fn, schedule, x_T, num_steps=PROBABILITY_FLOW_STEPS, method="heun"
        )

    def annealed_mala(
        rng_key: jax.Array, logdensity_fn: Any, x_T: jax.Array
    ) -> tuple[jax.Array, int]:
        result = samplers.annealed_mala_sample(
            rng_key,
            logdensity_fn,
            schedule,
            x_T,
            step_size=MALA_STEP_SIZE,
            num_steps=10,
            num_steps_per_level=9,
        )
        return result.samples, result.num_function_evaluations

    return {
        "ancestral": SamplerSpec("score", "100 steps", ancestral),
        "predictor_corrector": SamplerSpec("score", "50 × (1 P + 1 C)", predictor_corrector),
        "annealed_langevin": SamplerSpec("score", "11 × 9 + Tweedie", annealed_langevin),
        "probability_flow": SamplerSpec("score", "Heun, 50 × 2", probability_flow),
        "ancestral_energy": SamplerSpec("∇ energy", "100 steps", ancestral),
        "annealed_mala": SamplerSpec("energy", "10 × (1 + 9 MALA)", annealed_mala),
    }


def _model_fn(workload: Workload, network: str, params: Any) -> Callable[..., Any]:
    """The callable a sampler takes: a score ``(x, beta) -> S`` or a log-density."""
    if network == "score":
        return functools.partial(workload.score_fn, params)
    if network == "energy":
        return functools.partial(workload.logdensity_fn, params)
    return functools.partial(ej.score(workload.logdensity_fn, argnum=1), params)


def sampling_contenders(
    workload: Workload, specs: dict[str, SamplerSpec]
) -> tuple[dict[str, Callable[[int], Any]], dict[str, int]]:
    """Each sampler, one batch per iteration, as ``run(num_iterations)``; and its NFE.

    The NFE dictionary is filled when the loops are first traced (compiled).
    """
    event_shape = (workload.event_size,)
    batch_size = workload.sample_batch_size
    contenders: dict[str, Callable[[int], Any]] = {}
    nfe: dict[str, int] = {}
    for name, spec in specs.items():
        params = workload.score_params if spec.network == "score" else workload.energy_params

        def draw(carry: Any, rng_key: jax.Array, name: str = name, spec: SamplerSpec = spec) -> Any:
            params, checksum = carry
            noise_key, sampler_key = jax.random.split(rng_key)
            x_T = samplers.initial_noise(noise_key, batch_size, event_shape)
            samples, num_evaluations = spec.run(
                sampler_key, _model_fn(workload, spec.network, params), x_T
            )
            # The sampler's own count, a Python int known once the loop is traced.
            nfe[name] = num_evaluations
            # Summing the samples keeps the whole chain live without keeping the batch.
            return params, checksum + jnp.sum(samples)

        contenders[name] = looped(draw, (params, jnp.zeros(())))
    return contenders, nfe


def bench_sampling(workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    specs = sampler_specs()
    contenders, nfe = sampling_contenders(workload, specs)
    timings, compile_s, num_iterations = time_group(contenders, "ancestral", args)
    batch_size = workload.sample_batch_size
    rows = {}
    for name, spec in specs.items():
        batch_s = timings[name]["median_s"] / num_iterations
        rows[name] = {
            "network": spec.network,
            "layout": spec.layout,
            "num_function_evaluations": nfe[name],
            "samples_per_s": batch_size / batch_s,
            "batch_ms": batch_s * 1e3,
            "best_batch_ms": timings[name]["min_s"] / num_iterations * 1e3,
            "us_per_nfe": batch_s / nfe[name] * 1e6,
            "ns_per_sample_nfe": batch_s / nfe[name] / batch_size * 1e9,
            "vs_ancestral": paired_ratio(timings[name], timings["ancestral"]),
            "compile_s": compile_s[name],
        }
    return {
        "batch_size": batch_size,
        "batches_per_call": num_iterations,
        "samplers": rows,
        "timings": {name: _strip_compile(timing) for name, timing in timings.items()},
    }


# --- 3. probability-flow log-likelihood -------------------------------------------------------


def likelihood_contenders(workload: Workload) -> dict[str, Callable[[int], Any]]:
    """The PF log-likelihood of one data batch per iteration, exact and Hutchinson."""
    schedule = linear_schedule(SCHEDULE_STEPS)
    dataset, batch_size = workload.dataset, workload.likelihood_batch_size

    def contender(divergence: str) -> Callable[[int], Any]:
        def log_likelihood(carry: Any, rng_key: jax.Array) -> Any:
            params, checksum = carry
            data_key, probe_key = jax.random.split(rng_key)
            indices = jax.random.randint(data_key, (batch_size,), 0, dataset.shape[0])
            result = ode.probability_flow_log_likelihood(
                probe_key,
                functools.partial(workload.score_fn, params),
                schedule,
                dataset[indices],
                num_steps=PROBABILITY_FLOW_STEPS,
                method="heun",
                divergence=divergence,
                num_probes=1,
            )
            return params, checksum + jnp.sum(result.log_likelihood)

        return looped(log_likelihood, (workload.score_params, jnp.zeros(())))

    return {divergence: contender(divergence) for divergence in ode.DIVERGENCES}


def bench_likelihood(workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    timings, compile_s, num_iterations = time_group(
        # Calibrated on the slower contender, so that its calls stay near the target.
        likelihood_contenders(workload),
        "exact",
        args,
    )
    batch_size = workload.likelihood_batch_size
    sample_ms = {
        name: timing["median_s"] / num_iterations / batch_size * 1e3
        for name, timing in timings.items()
    }
    best_sample_ms = {
        name: timing["min_s"] / num_iterations / batch_size * 1e3
        for name, timing in timings.items()
    }
    return {
        "batch_size": batch_size,
        "num_function_evaluations": 2 * PROBABILITY_FLOW_STEPS,
        "batches_per_call": num_iterations,
        "jvps_per_stage": {"exact": workload.event_size, "hutchinson": 1},
        "sample_ms": sample_ms,
        "best_sample_ms": best_sample_ms,
        "samples_per_s": {name: 1e3 / value for name, value in sample_ms.items()},
        "exact_over_hutchinson": paired_ratio(timings["exact"], timings["hutchinson"]),
        "compile_s": compile_s,
        "timings": {name: _strip_compile(timing) for name, timing in timings.items()},
    }


# --- report -----------------------------------------------------------------------------------


def print_tables(workload: Workload, result: dict[str, Any]) -> None:
    """One table per benchmark; rates from medians, "best" from the fastest round."""
    print(f"\n{workload.name}: {workload.description}", flush=True)

    training = result["training"]
    print(
        f"\ntraining: one Adam step of eq. (11.16), batch {training['batch_size']}, "
        f"{training['steps_per_call']} steps per timed call"
    )
    print(
        f"{'network':<8} {'steps/s':>9} {'ms/step':>9} {'best ms':>9} {'vs score':>9} "
        f"{'compile s':>10}"
    )
    for name in ("score", "energy"):
        ratio = 1.0 if name == "score" else training["energy_over_score"]
        print(
            f"{name:<8} {training['steps_per_s'][name]:>9.1f} {training['step_ms'][name]:>9.3f} "
            f"{training['best_step_ms'][name]:>9.3f} {ratio:>8.2f}x "
            f"{training['compile_s'][name]:>10.2f}"
        )

    sampling = result["sampling"]
    print(
        f"\nsampling: batch {sampling['batch_size']}, linear schedule T = {SCHEDULE_STEPS}, "
        f"{sampling['batches_per_call']} batch(es) per timed call; µs/NFE = one network "
        "evaluation on the whole batch"
    )
    print(
        f"{'sampler':<20} {'network':<9} {'layout':<18} {'NFE':>4} {'samples/s':>10} "
        f"{'ms/batch':>9} {'best ms':>9} {'µs/NFE':>8} {'vs ancestral':>13} {'compile s':>10}"
    )
    for name, row in sampling["samplers"].items():
        print(
            f"{name:<20} {row['network']:<9} {row['layout']:<18} "
            f"{row['num_function_evaluations']:>4} {row['samples_per_s']:>10.0f} "
            f"{row['batch_ms']:>9.2f} {row['best_batch_ms']:>9.2f} {row['us_per_nfe']:>8.1f} "
            f"{row['vs_ancestral']:>12.2f}x {row['compile_s']:>10.2f}"
        )

    likelihood = result["likelihood"]
    print(
        f"\nprobability-flow log-likelihood: Heun, {PROBABILITY_FLOW_STEPS} steps "
        f"(NFE {likelihood['num_function_evaluations']}), score network, batch "
        f"{likelihood['batch_size']}, {likelihood['batches_per_call']} batch(es) per timed call"
    )
    print(
        f"{'divergence':<11} {'JVPs/stage':>10} {'ms/sample':>10} {'best ms':>9} "
        f"{'samples/s':>10} {'vs hutchinson':>14} {'compile s':>10}"
    )
    for name in ("exact", "hutchinson"):
        ratio = 1.0 if name == "hutchinson" else likelihood["exact_over_hutchinson"]
        print(
            f"{name:<11} {likelihood['jvps_per_stage'][name]:>10} "
            f"{likelihood['sample_ms'][name]:>10.3f} {likelihood['best_sample_ms'][name]:>9.3f} "
            f"{likelihood['samples_per_s'][name]:>10.1f} {ratio:>13.2f}x "
            f"{likelihood['compile_s'][name]:>10.2f}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fast smoke run (toy_2d only, smaller batches)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=out_help("JSON results file", RESULTS_FILE)
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 9)")
    parser.add_argument(
        "--target", type=float, default=None, help="seconds per timed call of a reference loop"
    )
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=None)
    args = parser.parse_args(argv)
    args.out = output_path(RESULTS_FILE, args.out, quick=args.quick)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 9
    if args.target is None:
        args.target = 0.02 if args.quick else 0.25
    if args.models is None:
        args.models = list(QUICK_MODEL_NAMES if args.quick else MODEL_NAMES)
    if args.repeats < 1 or args.target <= 0:
        parser.error("--repeats must be >= 1 and --target > 0")

    env = environment("flax", "optax")
    print(
        f"jax {env['jax']} on {env['backend']} ({env['device_kind']}); medians over "
        f"{args.repeats} interleaved rounds of jitted loops of about {args.target} s; ratios "
        f"are medians of per-round ratios{quick_note(args.quick)}",
        flush=True,
    )
    models = []
    for name in args.models:
        workload = make_workload(name, args.quick)
        result = {
            "model": name,
            "description": workload.description,
            "event_size": workload.event_size,
            "training": bench_training(workload, args),
            "sampling": bench_sampling(workload, args),
            "likelihood": bench_likelihood(workload, args),
        }
        print_tables(workload, result)
        models.append(result)
    report = {
        "environment": env,
        "settings": {
            "quick": args.quick,
            "repeats": args.repeats,
            "target_s": args.target,
            "models": args.models,
            "schedule": f"linear_schedule({SCHEDULE_STEPS})",
            "learning_rate": LEARNING_RATE,
            "langevin_step_size": LANGEVIN_STEP_SIZE,
            "mala_step_size": MALA_STEP_SIZE,
            "probability_flow_steps": PROBABILITY_FLOW_STEPS,
        },
        "models": models,
    }
    write_json(args.out, report, quick=args.quick)
    return report


if __name__ == "__main__":
    main()

"""Sample quality against network evaluations for every diffusion sampler: 2-D toys and 8×8 digits.

A diffusion model is trained once per dataset and then sampled by every
sampler of :mod:`ebm_jax.diffusion` at several step counts, so that each
sampler traces a curve of quality against the number of network evaluations
(NFE) per sample, the currency in which diffusion samplers are compared
(Song et al. 2021; Karras et al. 2022).

Models. On every dataset a noise-conditional score network
(``NoiseConditionalScore``, :math:`S_w = -\\hat\\varepsilon_w / \\sqrt\\beta`)
and, on the toys, a noise-conditional energy network
(``NoiseConditionalEnergy``, :math:`S_w = \\nabla_x f_w`, the lecture's EBM
view) are fitted to the denoising objective (11.16) with the ε weighting (Ho
et al. 2020's loss) on the linear schedule with :math:`T = 1000`
(:math:`\\bar\\beta_1 = 10^{-4}`), by Adam with a cosine-decayed step (batch
256; 3000 steps for the toys' score networks, 2500 for their energy networks,
4000 for the digits' score network, 2500 for their energy network, whose
loss differentiates through a gradient; ``--digits-energy-steps 0`` skips it).
The networks expect unit-scale data: a toy
is standardised (its train mean subtracted, divided by one scalar standard
deviation, so its shape is kept), digits are mapped from [0, 1] to [-1, 1];
samples are mapped back (digits clipped to [0, 1]) before they are judged.

Samplers (score network unless marked), each on a strided sub-sequence of the
1000 levels (``num_steps``):

- ``ancestral``: Ho et al. (2020), Algorithm 2, posterior variance; NFE = steps;
- ``pc``: predictor-corrector (Song et al. 2021): the ancestral predictor plus
  one Langevin corrector step at signal-to-noise ratio :data:`PC_SNR`;
  NFE = 2 × steps;
- ``annealed_langevin``: Song & Ermon (2019), Algorithm 1, written for the
  variance-preserving levels: ``levels × K`` unadjusted Langevin steps, step
  :math:`\\epsilon\\, \\bar\\beta_i / \\bar\\beta_1` with
  :math:`\\epsilon` = :data:`LANGEVIN_STEP_SIZE`, then the Tweedie denoiser;
  NFE = levels · K + 1;
- ``pf_ode``: the probability-flow ODE (Song et al. 2021), Heun's method on a
  log-SNR grid; NFE = 2 × steps; deterministic;
- ``ddim``: DDIM with :math:`\\eta = 0` (Song, Meng & Ermon 2021) on the
  levels strided evenly in :math:`t`; NFE = steps; deterministic;
- ``dpm_solver``: DPM-Solver++(2M) (Lu et al. 2022b) on levels evenly spaced
  in log-SNR; NFE = steps; deterministic;
- ``ancestral_energy``: ancestral sampling with the energy network's score
  :math:`\\nabla_x f_w` (each evaluation a gradient): ``annealed_mala``
  without its MCMC, to tell the network's share from the sampler's;
- ``annealed_mala``: Du et al. (2023): ``K`` MALA steps (with the
  Metropolis–Hastings correction of §11.2.1, step :math:`\\epsilon\\,
  \\bar\\beta_i / \\bar\\beta_1`, :math:`\\epsilon` =
  :data:`MALA_STEP_SIZE`) at each visited level of the energy network, then
  the ancestral step to the next; NFE = levels · (K + 1).

Metrics. On the 2-D toys, against a held-out test set of the same size as the
sample: the unbiased squared maximum mean discrepancy (Gretton et al. 2012)
with a Gaussian kernel whose bandwidth is fixed per dataset, the same for
every row: the median pairwise distance :math:`h` within the test set (the
usual heuristic), and a *fine* bandwidth :math:`h/8` (about 0.3–0.6, the width
of a toy's modes, rings and squares); and the sliced Wasserstein-2 distance
(Bonneel et al. 2015; the same projections for every row). At :math:`h` MMD²
sees the large-scale layout of a toy but hardly its fine structure, and SW₂,
an average over 1-D projections, blurs it too: a sampler that fills the disc
of the four rings scores near the floor on both; the fine MMD² and the
likelihoods below see it. Every row starts from the same
:math:`x_T`, so rows differ by their samplers, not by their noise. The
*floor* row is the same metric between an equally sized subset of the
training set and the test set: what a perfect sampler of a perfect model would
score at this sample size. Each toy also gets the probability-flow test
negative log-likelihood in nats (Song et al. 2021, App. D; exact divergence,
:data:`NLL_STEPS` Heun steps) of both networks, in the data's own units (the
standardisation's log-Jacobian added back), beside the data's exact NLL where
:data:`ebm_jax.data.TOY_LOGDENSITIES` knows it. It is the likelihood of
:math:`p_{\\bar\\beta_1}`, the data perturbed by noise of standard deviation
:math:`\\sqrt{\\bar\\beta_1}` = 0.01 in standardised units.

On the digits (1438 train, 359 test images), the Fréchet distance between
Gaussians fitted to the features of a digit classifier trained here on the
unit-scale training images (Heusel et al. 2017's FID recipe with
``ej.models.classifier.train_digit_classifier`` instead of Inception), with the
classifier's test accuracy; samples as many as the test images; floor = an
equally sized random subset of the training images against the test images.
MMD² and SW₂ in unit pixel space are reported too. A grid of samples of each
sampler, at its best setting by the Fréchet distance, is drawn beside real
test digits (and on the toys a scatter plot of each sampler at its best
setting by the fine MMD²).

Run as ``python benchmarks/diffusion_quality.py`` (about 7 minutes on 2 CPU
cores, 20 when they are heavily shared); ``--quick`` is a smoke run (one toy, tiny
training, two settings per sampler). Writes ``results/diffusion_quality.json``
and, when matplotlib is installed, ``results/diffusion_quality_curves.png``
(metric vs NFE, one line per sampler, the floor dashed),
``results/diffusion_quality_scatter.png`` (test points and each sampler's best
samples on every toy) and ``results/diffusion_quality_digits.png`` (digit
samples of each sampler), or the same beside ``--out``; a ``--quick`` run
without ``--out`` writes them under ``out/benchmarks/quick/``. The seconds are
sampling wall time, compilation included.

References:
  Song & Ermon (2019), *Generative modeling by estimating gradients of the
  data distribution*, NeurIPS, arXiv:1907.05600.
  Ho, Jain & Abbeel (2020), *Denoising diffusion probabilistic models*,
  NeurIPS, arXiv:2006.11239.
  Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole (2021), *Score-based
  generative modeling through stochastic differential equations*, ICLR,
  arXiv:2011.13456.
  Du, Durkan, Strudel, Tenenbaum, Dieleman, Fergus, Sohl-Dickstein, Doucet &
  Grathwohl (2023), *Reduce, reuse, recycle: compositional generation with
  energy-based diffusion models and MCMC*, ICML, arXiv:2302.11552.
  Heusel, Ramsauer, Unterthiner, Nessler & Hochreiter (2017), *GANs trained by
  a two time-scale update rule converge to a local Nash equilibrium*, NeurIPS
  (the Fréchet Inception distance).
  Gretton, Borgwardt, Rasch, Schölkopf & Smola (2012), *A kernel two-sample
  test*, JMLR 13; Bonneel, Rabin, Peyré & Pfister (2015), *Sliced and Radon
  Wasserstein barycenters of measures*, JMIV 51.
  Karras, Aittala, Aila & Laine (2022), *Elucidating the design space of
  diffusion-based generative models*, NeurIPS, arXiv:2206.00364.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import environment, out_help, output_path, quick_note, save_figure, write_json

import ebm_jax as ej
from ebm_jax.diffusion import ode, samplers, solvers
from ebm_jax.diffusion.schedule import NoiseSchedule, linear_schedule
from ebm_jax.models.classifier import TrainedClassifier, train_digit_classifier
from ebm_jax.models.noise_conditional import NoiseConditionalEnergy, NoiseConditionalScore

RESULTS_FILE = "diffusion_quality.json"
TOYS = ("eight_gaussians", "two_moons", "rings", "checkerboard", "swiss_roll")
NUM_SCHEDULE_STEPS = 1000
BATCH_SIZE = 256
NUM_TRAIN_TOY = 20_000
NUM_TEST_TOY = 2_000
PC_SNR = 0.16
LANGEVIN_STEP_SIZE = 2e-5
MALA_STEP_SIZE = 1e-4
NLL_STEPS = 100
NUM_PROJECTIONS = 256
FINE_BANDWIDTH_FRACTION = 1 / 8
NUM_CLASSIFIER_STEPS = 3000


class SamplerSpec(NamedTuple):
    """One sampler: the network it needs and its settings ``(num_steps, steps_per_level)``."""

    network: str
    settings: tuple[tuple[int, int], ...]


# steps_per_level is 0 for the samplers that have none.
SAMPLERS: dict[str, SamplerSpec] = {
    "ancestral": SamplerSpec("score", ((10, 0), (50, 0), (250, 0), (1000, 0))),
    "pc": SamplerSpec("score", ((10, 0), (50, 0), (200, 0), (500, 0))),
    "annealed_langevin": SamplerSpec("score", ((10, 5), (20, 10), (50, 10), (100, 10))),
    "pf_ode": SamplerSpec("score", ((10, 0), (25, 0), (50, 0), (100, 0))),
    "ddim": SamplerSpec("score", ((10, 0), (20, 0), (50, 0), (100, 0))),
    "dpm_solver": SamplerSpec("score", ((10, 0), (20, 0), (50, 0))),
    "ancestral_energy": SamplerSpec("energy", ((10, 0), (50, 0), (200, 0))),
    "annealed_mala": SamplerSpec("energy", ((10, 5), (50, 5), (200, 5))),
}


class Networks(NamedTuple):
    """Trained networks as the samplers take them: ``(x, beta) -> ...`` of one sample.

    Each is built once per dataset: the samplers' jitted loops take them as
    static arguments, so a fresh ``partial`` would compile again.
    """

    score_fn: Callable[[Any, Any], Any]
    energy_score_fn: Callable[[Any, Any], Any] | None
    energy_logdensity_fn: Callable[[Any, Any], Any] | None


def train_networks(
    rng_key: jax.Array,
    train: jax.Array,
    schedule: NoiseSchedule,
    *,
    digits: bool,
    num_score_steps: int,
    num_energy_steps: int,
    learning_rate: float,
) -> tuple[Networks, dict[str, Any]]:
    """Fit the score network and, unless ``num_energy_steps == 0``, the energy network (11.16)."""
    dimension = train.shape[1]
    score_model = NoiseConditionalScore.digits_8x8() if digits else NoiseConditionalScore.toy_2d()
    energy_model = (
        NoiseConditionalEnergy.digits_8x8() if digits else NoiseConditionalEnergy.toy_2d()
    )
    score_key, energy_key = jax.random.split(rng_key)
    log: dict[str, Any] = {}

    def fit(model: Any, key: jax.Array, num_steps: int, **network: Any) -> Any:
        init_key, fit_key = jax.random.split(key)
        params = model.init(init_key, jnp.zeros(dimension), 0.5)
        loss_fn = ej.diffusion.denoising_loss(schedule=schedule, weighting="epsilon", **network)
        step_schedule = optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.05)
        start = time.perf_counter()
        result = ej.training.fit(
            fit_key,
            loss_fn,
            params,
            optax.adam(step_schedule),
            train,
            num_steps=num_steps,
            batch_size=min(BATCH_SIZE, train.shape[0]),
            chunk_size=min(500, num_steps),
            progress=False,
        )
        seconds = time.perf_counter() - start
        final_loss = float(jnp.mean(result.losses[-min(200, num_steps) :]))
        return result.params, {"num_steps": num_steps, "final_loss": final_loss, "seconds": seconds}

    score_params, log["score"] = fit(
        score_model, score_key, num_score_steps, score_fn=score_model.apply
    )
    score_fn = functools.partial(score_model.apply, score_params)
    if num_energy_steps == 0:
        return Networks(score_fn, None, None), log
    energy_params, log["energy"] = fit(
        energy_model, energy_key, num_energy_steps, logdensity_fn=energy_model.apply
    )
    return (
        Networks(
            score_fn,
            functools.partial(ej.score(energy_model.apply, argnum=1), energy_params),  # type: ignore[arg-type]
            functools.partial(energy_model.apply, energy_params),
        ),
        log,
    )


def run_sampler(
    name: str,
    rng_key: jax.Array,
    networks: Networks,
    schedule: NoiseSchedule,
    initial_positions: jax.Array,
    setting: tuple[int, int],
) -> tuple[jax.Array, int, float | None]:
    """Samples, NFE per sample and (for annealed MALA) the mean acceptance rate."""
    num_steps, steps_per_level = setting
    if name == "ancestral":
        result = samplers.ancestral_sample(
            rng_key, networks.score_fn, schedule, initial_positions, num_steps=num_steps
        )
    elif name == "pc":
        result = samplers.predictor_corrector_sample(
            rng_key,
            networks.score_fn,
            schedule,
            initial_positions,
            num_steps=num_steps,
            num_corrector_steps=1,
            snr=PC_SNR,
        )
    elif name == "annealed_langevin":
        result = samplers.annealed_langevin_sample(
            rng_key,
            networks.score_fn,
            schedule,
            initial_positions,
            step_size=LANGEVIN_STEP_SIZE,
            num_steps=num_steps,
            num_steps_per_level=steps_per_level,
        )
    elif name == "ddim":
        result = solvers.ddim_sample(
            rng_key, networks.score_fn, schedule, initial_positions, num_steps
        )
    elif name == "dpm_solver":
        result = solvers.dpm_solver_sample(
            networks.score_fn, schedule, initial_positions, num_steps, order=2
        )
    elif name == "pf_ode":
        flow = ode.probability_flow_sample(
            networks.score_fn, schedule, initial_positions, num_steps=num_steps, method="heun"
        )
        return flow.positions, flow.num_function_evaluations, None
    elif name == "ancestral_energy":
        assert networks.energy_score_fn is not None
        result = samplers.ancestral_sample(
            rng_key, networks.energy_score_fn, schedule, initial_positions, num_steps=num_steps
        )
    elif name == "annealed_mala":
        assert networks.energy_logdensity_fn is not None
        mala = samplers.annealed_mala_sample(
            rng_key,
            networks.energy_logdensity_fn,
            schedule,
            initial_positions,
            step_size=MALA_STEP_SIZE,
            num_steps=num_steps,
            num_steps_per_level=steps_per_level,
        )
        return mala.samples, mala.num_function_evaluations, float(jnp.mean(mala.acceptance_rate))
    else:
        raise ValueError(f"unknown sampler {name!r}")
    return result.samples, result.num_function_evaluations, None


def median_distance(points: np.ndarray) -> float:
    """The median Euclidean distance over all pairs of ``points``: the fixed MMD bandwidth."""
    points = np.asarray(points, np.float64)
    squared = np.sum(points**2, axis=1)
    gram = squared[:, None] + squared[None, :] - 2.0 * points @ points.T
    upper = np.triu_indices(points.shape[0], k=1)
    return float(np.median(np.sqrt(np.clip(gram[upper], 0.0, None))))


class Judge(NamedTuple):
    """The metrics of one dataset, every row judged against the same test set the same way."""

    test: jax.Array
    bandwidth: float
    fine_bandwidth: float | None
    projection_key: jax.Array
    classifier: TrainedClassifier | None

    def __call__(self, samples: jax.Array) -> dict[str, float]:
        metrics = {
            "mmd2": float(ej.diagnostics.mmd(samples, self.test, bandwidth=self.bandwidth)),
        }
        if self.fine_bandwidth is not None:
            metrics["mmd2_fine"] = float(
                ej.diagnostics.mmd(samples, self.test, bandwidth=self.fine_bandwidth)
            )
        metrics |= {
            "sw2": float(
                ej.diagnostics.sliced_wasserstein(
                    self.projection_key, samples, self.test, num_projections=NUM_PROJECTIONS
                )
            ),
        }
        if self.classifier is not None:
            metrics["fd"] = ej.diagnostics.frechet_distance(
                np.asarray(self.classifier.features(samples)),
                np.asarray(self.classifier.features(self.test)),
            )
        return metrics


def sampler_rows(
    dataset: str,
    rng_key: jax.Array,
    networks: Networks,
    schedule: NoiseSchedule,
    judge: Judge,
    to_data: Callable[[jax.Array], jax.Array],
    sampler_settings: dict[str, SamplerSpec],
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Every sampler at every setting; also each sampler's best samples (lowest FD or fine MMD²)."""
    num_samples, dimension = judge.test.shape
    noise_key, sampler_root = jax.random.split(rng_key)
    # The same x_T for every row: differences between rows are the samplers', not the noise's.
    initial_positions = samplers.initial_noise(noise_key, num_samples, (dimension,))
    rows: list[dict[str, Any]] = []
    best: dict[str, np.ndarray] = {}
    for sampler_index, (name, spec) in enumerate(sampler_settings.items()):
        if spec.network == "energy" and networks.energy_logdensity_fn is None:
            continue
        best_value = math.inf
        for setting_index, (num_steps, steps_per_level) in enumerate(spec.settings):
            key = jax.random.fold_in(jax.random.fold_in(sampler_root, sampler_index), setting_index)
            start = time.perf_counter()
            samples, nfe, acceptance = run_sampler(
                name, key, networks, schedule, initial_positions, (num_steps, steps_per_level)
            )
            samples = jax.block_until_ready(to_data(samples))
            seconds = time.perf_counter() - start
            row: dict[str, Any] = {
                "dataset": dataset,
                "sampler": name,
                "num_steps": num_steps,
                "steps_per_level": steps_per_level or None,
                "nfe": nfe,
                "acceptance_rate": acceptance,
                "seconds": seconds,
                "finite": bool(jnp.all(jnp.isfinite(samples))),
            }
            if row["finite"]:
                row.update(judge(samples))
                # MMD² at the median bandwidth and SW₂ barely see a blurred or
                # misplaced fine structure; the fine MMD² and the FD do.
                value = row["fd"] if "fd" in row else row["mmd2_fine"]
                if value < best_value:
                    best_value, best[name] = value, np.asarray(samples)
            print(_row_line(row), flush=True)
            rows.append(row)
    return rows, best


def evaluate_toy(
    name: str, args: argparse.Namespace, sampler_settings: dict[str, SamplerSpec]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Train on one 2-D toy, then run and judge every sampler."""
    data_key, test_key, train_key, sample_key, projection_key, nll_key = jax.random.split(
        jax.random.fold_in(jax.random.key(args.seed), list(ej.data.TOY_DATASETS).index(name)), 6
    )
    draw = ej.data.TOY_DATASETS[name]
    train = draw(data_key, args.num_train)
    test = draw(test_key, args.num_test)
    # One scalar scale keeps the toy's shape; the networks want unit-scale data.
    shift = jnp.mean(train, axis=0)
    scale = float(jnp.sqrt(jnp.mean(jnp.var(train, axis=0))))
    schedule = linear_schedule(NUM_SCHEDULE_STEPS)
    networks, training = train_networks(
        train_key,
        (train - shift) / scale,
        schedule,
        digits=False,
        num_score_steps=args.toy_steps,
        num_energy_steps=args.toy_energy_steps,
        learning_rate=args.learning_rate,
    )
    bandwidth = median_distance(np.asarray(test))
    judge = Judge(
        test, bandwidth, FINE_BANDWIDTH_FRACTION * bandwidth, projection_key, classifier=None
    )
    floor = judge(train[: args.num_test])
    print(_row_line({"dataset": name, "sampler": "floor (train)", **floor}), flush=True)
    rows, best = sampler_rows(
        name,
        sample_key,
        networks,
        schedule,
        judge,
        lambda z: z * scale + shift,
        sampler_settings,
    )
    nll: dict[str, float | None] = {"true": None, "score": None, "energy": None}
    if name in ej.data.TOY_LOGDENSITIES:
        nll["true"] = -float(jnp.mean(jax.vmap(ej.data.TOY_LOGDENSITIES[name])(test)))
    standardised_test = (test - shift) / scale
    log_jacobian = test.shape[1] * math.log(scale)  # p_x(x) = p_z((x - shift)/scale) / scale^d
    for network, score_fn in (("score", networks.score_fn), ("energy", networks.energy_score_fn)):
        if score_fn is None:
            continue
        likelihood = ode.probability_flow_log_likelihood(
            nll_key, score_fn, schedule, standardised_test, num_steps=args.nll_steps
        )
        nll[network] = -float(jnp.mean(likelihood.log_likelihood)) + log_jacobian
    report = {
        "dataset": name,
        "num_train": args.num_train,
        "num_test": args.num_test,
        "standardisation": {"shift": np.asarray(shift).tolist(), "scale": scale},
        "mmd_bandwidth": judge.bandwidth,
        "mmd_fine_bandwidth": judge.fine_bandwidth,
        "training": training,
        "floor": floor,
        "pf_nll": nll,
        "rows": rows,
    }
    best["test"] = np.asarray(test)
    return report, best


def evaluate_digits(
    args: argparse.Namespace, sampler_settings: dict[str, SamplerSpec]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Train on the 8×8 digits in [-1, 1], then run and judge every sampler."""
    classifier_key, train_key, sample_key, projection_key, subset_key = jax.random.split(
        jax.random.fold_in(jax.random.key(args.seed), 1000), 5
    )
    digits = ej.data.load_digits(scale="unit")
    start = time.perf_counter()
    classifier = train_digit_classifier(
        classifier_key,
        digits.train,
        digits.train_labels,
        digits.test,
        digits.test_labels,
        num_steps=args.classifier_steps,
    )
    classifier_seconds = time.perf_counter() - start
    print(
        f"digit classifier: test accuracy {classifier.test_accuracy:.3f} "
        f"({args.classifier_steps} steps, {classifier_seconds:.0f} s)",
        flush=True,
    )
    schedule = linear_schedule(NUM_SCHEDULE_STEPS)
    networks, training = train_networks(
        train_key,
        2.0 * digits.train - 1.0,
        schedule,
        digits=True,
        num_score_steps=args.digits_steps,
        num_energy_steps=args.digits_energy_steps,
        learning_rate=args.learning_rate,
    )
    test = digits.test
    # No fine bandwidth in 64-D: there every pairwise distance is many times an eighth of
    # the median, so that kernel vanishes between distinct images.
    judge = Judge(test, median_distance(np.asarray(test)), None, projection_key, classifier)
    subset = jax.random.permutation(subset_key, digits.train.shape[0])[: test.shape[0]]
    floor = judge(digits.train[subset])
    print(_row_line({"dataset": "digits", "sampler": "floor (train)", **floor}), flush=True)
    rows, best = sampler_rows(
        "digits",
        sample_key,
        networks,
        schedule,
        judge,
        lambda z: jnp.clip((z + 1.0) / 2.0, 0.0, 1.0),
        sampler_settings,
    )
    report = {
        "dataset": "digits",
        "num_train": int(digits.train.shape[0]),
        "num_test": int(test.shape[0]),
        "classifier": {
            "test_accuracy": classifier.test_accuracy,
            "num_steps": args.classifier_steps,
            "seconds": classifier_seconds,
        },
        "mmd_bandwidth": judge.bandwidth,
        "training": training,
        "floor": floor,
        "rows": rows,
    }
    best["test"] = np.asarray(test)
    return report, best


# --- printing ---------------------------------------------------------------------------

HEADER = (
    f"{'dataset':<16}{'sampler':<19}{'steps':>8}{'NFE':>6}{'MMD²×1e3':>10}{'fine×1e3':>10}{'SW₂':>8}"
    f"{'FD':>8}{'acc':>6}{'sec':>6}"
)


def _steps(row: dict[str, Any]) -> str:
    if "num_steps" not in row:
        return ""
    per_level = row.get("steps_per_level")
    return f"{row['num_steps']}×{per_level}" if per_level else str(row["num_steps"])


def _row_line(row: dict[str, Any]) -> str:
    def number(key: str, width: int, spec: str, factor: float = 1.0) -> str:
        value = row.get(key)
        if value is not None and factor != 1.0:
            value = value * factor
        return f"{value:>{width}{spec}}" if value is not None else f"{'':>{width}}"

    if row.get("finite") is False:
        metrics = f"{'non-finite samples':>32}"
    else:
        metrics = (
            number("mmd2", 10, ".3f", 1e3)
            + number("mmd2_fine", 10, ".3f", 1e3)
            + number("sw2", 8, ".3f")
            + number("fd", 8, ".2f")
        )
    return (
        f"{row['dataset']:<16}{row['sampler']:<19}{_steps(row):>8}"
        + number("nfe", 6, "d")
        + metrics
        + number("acceptance_rate", 6, ".2f")
        + number("seconds", 6, ".0f")
    )


def markdown(report: dict[str, Any]) -> str:
    """The tables as printed, in a Markdown file beside the JSON."""
    env, settings = report["environment"], report["settings"]
    lines = [
        "# Diffusion sample quality against network evaluations" + quick_note(settings["quick"]),
        "",
        f"{env['device_kind']} ({env['backend']}); jax {env['jax']}; {env['date']}. "
        "Command: `python benchmarks/diffusion_quality.py --datasets "
        f"{' '.join(settings['datasets'])}` (its docstring defines the metrics).",
        "",
        "```",
        HEADER,
    ]
    for dataset in report["datasets"]:
        floor = {"dataset": dataset["dataset"], "sampler": "floor (train)", **dataset["floor"]}
        lines.append(_row_line(floor))
        lines.extend(_row_line(row) for row in dataset["rows"])
    lines.append("```")
    return "\n".join(lines) + "\n"


def _nll_table(reports: list[dict[str, Any]], nll_steps: int) -> str:
    lines = [
        f"\nprobability-flow test NLL in nats ({nll_steps} Heun steps, exact divergence), "
        "and the data's own where known",
        f"{'dataset':<16}{'score net':>10}{'energy net':>11}{'true':>8}",
    ]
    for report in reports:
        if "pf_nll" not in report:
            continue
        nll = report["pf_nll"]
        cells = "".join(
            f"{nll[key]:>{width}.3f}" if nll[key] is not None else f"{'-':>{width}}"
            for key, width in (("score", 10), ("energy", 11), ("true", 8))
        )
        lines.append(f"{report['dataset']:<16}{cells}")
    return "\n".join(lines)


# --- plots --------------------------------------------------------------------------------


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots", flush=True)
        return None
    return plt


def plot_curves(reports: list[dict[str, Any]], path: Path, *, quick: bool) -> None:
    plt = _pyplot()
    if plt is None:
        return
    metrics = (
        ("mmd2", "MMD², median bandwidth"),
        ("mmd2_fine", "MMD², fine bandwidth"),
        ("sw2", "SW₂"),
        ("fd", "Fréchet distance"),
    )
    columns = [metric for metric in metrics if any(metric[0] in r["floor"] for r in reports)]
    fig, axes = plt.subplots(
        len(reports),
        len(columns),
        figsize=(4.2 * len(columns), 3.0 * len(reports) + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for i, report in enumerate(reports):
        for j, (key, label) in enumerate(columns):
            ax = axes[i, j]
            if key not in report["floor"]:
                ax.axis("off")
                continue
            samplers_seen = dict.fromkeys(row["sampler"] for row in report["rows"])
            for name in samplers_seen:
                points = [
                    (row["nfe"], row[key])
                    for row in report["rows"]
                    if row["sampler"] == name and key in row
                ]
                if points:
                    ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=name)
            ax.axhline(report["floor"][key], color="k", linestyle="--", label="floor (train)")
            ax.set_xscale("log")
            if key.startswith("mmd2"):
                ax.set_yscale("symlog", linthresh=1e-4)
            else:
                ax.set_yscale("log")
            ax.set_title(f"{report['dataset']}: {label}", fontsize=9)
            ax.set_xlabel("network evaluations (NFE) per sample", fontsize=8)
            ax.set_ylabel(f"{label} to test data", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Diffusion samplers: sample quality against cost (lower is better)")
    save_figure(fig, path, quick=quick, dpi=100)


def _best_row(report: dict[str, Any], sampler: str, key: str) -> dict[str, Any]:
    """The row of ``sampler`` with the lowest ``key``: the setting whose samples are drawn."""
    rows = [row for row in report["rows"] if row["sampler"] == sampler and key in row]
    return min(rows, key=lambda row: row[key])


def plot_scatter(
    reports: list[dict[str, Any]], best: list[dict[str, np.ndarray]], path: Path, *, quick: bool
) -> None:
    plt = _pyplot()
    if plt is None or not reports:
        return
    columns = ["test", *dict.fromkeys(name for panels in best for name in panels if name != "test")]
    fig, axes = plt.subplots(
        len(reports),
        len(columns),
        figsize=(2.0 * len(columns), 2.0 * len(reports) + 0.8),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    for i, (report, panels) in enumerate(zip(reports, best, strict=True)):
        for j, column in enumerate(columns):
            ax = axes[i, j]
            if column in panels:
                points = panels[column][:2000]
                ax.scatter(points[:, 0], points[:, 1], s=0.5, alpha=0.5, linewidths=0)
                if column != "test":
                    row = _best_row(report, column, "mmd2_fine")
                    ax.text(0.03, 0.97, f"{_steps(row)} steps\nNFE {row['nfe']}",
                            transform=ax.transAxes, va="top", fontsize=6)  # fmt: skip
            ax.set_xlim(*ej.data.TOY_BOUNDS[0])
            ax.set_ylim(*ej.data.TOY_BOUNDS[1])
            ax.tick_params(labelsize=6)
            ax.set_aspect("equal")
            if i == 0:
                ax.set_title("test data" if column == "test" else column, fontsize=8)
            if i == len(reports) - 1:
                ax.set_xlabel("x₁", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{report['dataset']}\nx₂", fontsize=8)
    fig.suptitle(
        "Each sampler at its best setting by the fine-bandwidth MMD² (up to 2000 points)",
        fontsize=10,
    )
    save_figure(fig, path, quick=quick, dpi=100)


def _mosaic(images: np.ndarray, columns: int) -> np.ndarray:
    """``(n, 64)`` images as one picture of 8×8 tiles, ``columns`` per row, 1-pixel grey gaps."""
    rows = math.ceil(images.shape[0] / columns)
    canvas = np.full((rows * 9 + 1, columns * 9 + 1), 0.3)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        canvas[1 + 9 * row : 9 * (row + 1), 1 + 9 * column : 9 * (column + 1)] = image.reshape(8, 8)
    return canvas


def plot_digits(
    report: dict[str, Any], panels: dict[str, np.ndarray], path: Path, *, quick: bool
) -> None:
    plt = _pyplot()
    if plt is None:
        return
    names = ["test", *(name for name in panels if name != "test")]
    fig, axes = plt.subplots(
        1, len(names), figsize=(2.4 * len(names) + 1.0, 3.4), squeeze=False, layout="constrained"
    )
    axes = axes[0]
    best_rows = {name: _best_row(report, name, "fd") for name in names if name != "test"}
    for ax, name in zip(axes, names, strict=True):
        # Ink dark on white, as the digits are drawn.
        image = ax.imshow(_mosaic(panels[name][:64], 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if name == "test":
            ax.set_title("test images", fontsize=8)
        else:
            row = best_rows[name]
            ax.set_title(f"{name}\n{_steps(row)} steps, FD {row['fd']:.1f}", fontsize=8)
        ax.set_xlabel("64 images, 8×8 pixels each", fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.8, label="pixel intensity (1 = ink)")
    fig.suptitle(
        "Digits from each sampler at its best setting\nby the Fréchet distance (FD) "
        "to the test images",
        fontsize=10,
    )
    save_figure(fig, path, quick=quick)


# --- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: one toy, tiny training, two settings"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=out_help("JSON results file; the .md and figures go beside it", RESULTS_FILE),
    )
    parser.add_argument(
        "--datasets", nargs="+", default=None, help="toy names and/or 'digits' (default: all)"
    )
    parser.add_argument("--toy-steps", type=int, default=None, help="Adam steps, score net")
    parser.add_argument("--toy-energy-steps", type=int, default=None, help="0: no energy net")
    parser.add_argument("--digits-steps", type=int, default=None)
    parser.add_argument("--digits-energy-steps", type=int, default=None, help="0: no energy net")
    parser.add_argument("--classifier-steps", type=int, default=None)
    parser.add_argument("--num-train", type=int, default=NUM_TRAIN_TOY, help="toy train size")
    parser.add_argument("--num-test", type=int, default=None, help="toy test = sample size")
    parser.add_argument("--nll-steps", type=int, default=NLL_STEPS)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out = output_path(RESULTS_FILE, args.out, quick=args.quick)
    quick = args.quick
    defaults = {
        "toy_steps": (300, 3000),
        "toy_energy_steps": (300, 2500),
        "digits_steps": (200, 4000),
        "digits_energy_steps": (0, 2500),
        "classifier_steps": (300, NUM_CLASSIFIER_STEPS),
        "num_test": (500, NUM_TEST_TOY),
    }
    for key, (quick_value, full_value) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick_value if quick else full_value)
    if quick:
        args.nll_steps = min(args.nll_steps, 20)
    names = args.datasets or (["two_moons"] if quick else [*TOYS, "digits"])
    unknown = [name for name in names if name != "digits" and name not in ej.data.TOY_DATASETS]
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose from {[*ej.data.TOY_DATASETS, 'digits']}")
    sampler_settings = {
        name: spec._replace(settings=spec.settings[:2]) if quick else spec
        for name, spec in SAMPLERS.items()
    }

    env = environment("flax", "optax")
    print(
        f"jax {env['jax']} on {env['backend']}; linear schedule T={NUM_SCHEDULE_STEPS}, "
        f"eq. 11.16 with ε weighting, batch {BATCH_SIZE}, Adam (cosine from "
        f"{args.learning_rate}): toys {args.toy_steps} steps (energy net "
        f"{args.toy_energy_steps}), digits {args.digits_steps} (energy net "
        f"{args.digits_energy_steps}); toys {args.num_test} samples vs {args.num_test} test "
        f"points; PC snr {PC_SNR}, annealed Langevin ε {LANGEVIN_STEP_SIZE}, annealed MALA "
        f"ε {MALA_STEP_SIZE}{quick_note(quick)}",
        flush=True,
    )
    print(HEADER, flush=True)
    wall_start = time.perf_counter()
    reports, toy_reports, toy_best = [], [], []
    digits_best: dict[str, np.ndarray] | None = None
    for name in names:
        if name == "digits":
            report, digits_best = evaluate_digits(args, sampler_settings)
        else:
            report, best = evaluate_toy(name, args, sampler_settings)
            toy_reports.append(report)
            toy_best.append(best)
        reports.append(report)
    print(_nll_table(reports, args.nll_steps), flush=True)
    wall_seconds = time.perf_counter() - wall_start
    print(f"\ntotal {wall_seconds:.0f} s", flush=True)
    report_json = {
        "environment": env,
        "settings": {
            "quick": quick,
            "datasets": names,
            "schedule": f"linear_schedule({NUM_SCHEDULE_STEPS})",
            "weighting": "epsilon",
            "batch_size": BATCH_SIZE,
            "learning_rate": args.learning_rate,
            "toy_steps": args.toy_steps,
            "toy_energy_steps": args.toy_energy_steps,
            "digits_steps": args.digits_steps,
            "digits_energy_steps": args.digits_energy_steps,
            "classifier_steps": args.classifier_steps,
            "num_train_toy": args.num_train,
            "num_test_toy": args.num_test,
            "pc_snr": PC_SNR,
            "langevin_step_size": LANGEVIN_STEP_SIZE,
            "mala_step_size": MALA_STEP_SIZE,
            "nll_steps": args.nll_steps,
            "num_projections": NUM_PROJECTIONS,
            "fine_bandwidth_fraction": FINE_BANDWIDTH_FRACTION,
            "samplers": {
                name: {"network": spec.network, "settings": spec.settings}
                for name, spec in sampler_settings.items()
            },
            "seed": args.seed,
        },
        "datasets": reports,
        "wall_seconds": wall_seconds,
    }
    write_json(args.out, report_json, quick=quick)
    args.out.with_suffix(".md").write_text(markdown(report_json))
    stem = args.out.with_suffix("")
    plot_curves(reports, Path(f"{stem}_curves.png"), quick=quick)
    if toy_reports:
        plot_scatter(toy_reports, toy_best, Path(f"{stem}_scatter.png"), quick=quick)
    if digits_best is not None:
        digits_report = reports[names.index("digits")]
        plot_digits(digits_report, digits_best, Path(f"{stem}_digits.png"), quick=quick)
    return report_json


if __name__ == "__main__":
    main()

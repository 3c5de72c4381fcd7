"""RBMs on binarised 8×8 digits: CD-1 vs CD-10 vs PCD-1, judged by exact likelihoods.

A binary RBM with 16 hidden units (``ej.models.BernoulliRBM``) is trained on
scikit-learn's 8×8 digits, thresholded at 0.5 (``ej.data.load_digits(scale=
"binary")``: 1438 train, 359 test images of 64 pixels) by three estimators of
the likelihood gradient, all with the exact block-Gibbs kernel
(``rbm.block_gibbs``) as sampler:

- **CD-1** and **CD-10** (Hinton 2002): negatives from 1 or 10 Gibbs steps
  started at the minibatch; cheap, but biased towards the data for small k
  (Carreira-Perpiñán & Hinton 2005);
- **PCD-1** (Tieleman 2008): one Gibbs step per update of persistent chains,
  as many as the batch, started from the base-rate model (the initial RBM's
  own distribution, since its weights start near 0), so the negatives track
  the current model and the gradient approaches the likelihood gradient.

Every method gets the same initialisation (weights N(0, 0.01²), hidden biases
0, visible biases at the log-odds of the training pixel means, clipped to
[1e-3, 1 − 1e-3]: Hinton 2010, §8), the same minibatches, and the same number
of Adam updates with a cosine-decayed step (batch 100; 10 000 updates, about
700 epochs). Adam rather than SGD with momentum: with SGD, momentum 0.9 and a
step (0.05, decayed linearly) at which CD-1 reaches the test likelihood it
reaches with Adam, PCD-1's persistent chains fall behind the fast-moving model
and it ends about 1.2 nats worse, while a smaller step leaves every method
under-trained; Adam's per-parameter steps trained all three well with one
shared schedule. PCD still needs the step to shrink: early in training its
likelihood oscillates while CD's rises smoothly, and it catches up as the
cosine schedule decays (Tieleman 2008 and Tieleman & Hinton 2009 on PCD's
need for small learning rates).

With 16 hidden units :math:`\\log Z` is an exact sum over :math:`2^{16}`
hidden configurations (``rbm.exact_log_partition``), so the table reports the
exact train and test log-likelihood, :math:`\\log p(v) = f(v) - \\log Z` in
nats per image, where papers on larger RBMs must rely on estimates. Beside the
exact :math:`\\log Z` it shows the estimates one would have used instead:
annealed importance sampling (Neal 2001; Salakhutdinov & Murray 2008;
``ej.partition.annealed_importance_sampling``, default settings: 256 chains,
1000 sigmoid-spaced temperatures, Gibbs sweeps, base = independent Bernoulli
at the training pixel means), a stochastic *lower* bound, and reverse AIS
(Burda, Grosse & Salakhutdinov 2015) started from *exact* model samples, a
stochastic *upper* bound. The exact samples come from the hidden layer's
marginal :math:`p(h) \\propto e^{c^\\top h} \\prod_i (1 + e^{b_i + (Wh)_i})`,
enumerated like :math:`Z`, then :math:`v \\sim p(v \\mid h)`. For scale, the
table also shows the base-rate model (independent Bernoulli pixels at the
training means, the RBM's starting point) and, unless ``--ml-steps 0``, a
reference RBM trained for ``--ml-steps`` full-batch Adam steps on the exact
likelihood gradient (differentiating the enumerated :math:`\\log Z`): what
maximum likelihood reaches, not a same-budget contender.

The exact train and test log-likelihoods are also recorded every
``--eval-every`` updates (a learning curve; training resumes exactly from a
checkpoint between segments), which shows how each estimator gets there.
Each method runs from ``--seeds`` initialisations and minibatch orders
(shared by the methods); the summary shows mean ± sd over seeds and the test
log-likelihood minus PCD-1's, paired by seed (mean ± SE).

Run as ``python benchmarks/rbm_digits.py`` (about 7 minutes on 2 shared CPU cores);
``--quick`` is a smoke run. Writes ``results/rbm_digits.json`` and, when
matplotlib is installed, ``results/rbm_digits_filters.png`` (the 16 learned
weight vectors of each method as 8×8 images), ``results/rbm_digits_samples.png``
(64 exact samples of each model, shown as :math:`E[v \\mid h]`) and
``results/rbm_digits_curves.png`` (the learning curves), or the same beside
``--out``; a ``--quick`` run without ``--out`` writes them under
``out/benchmarks/quick/``. The seconds are training wall time (the first
seed's include compilation; the summary gives the median over seeds); exact
ML's are for its full-batch steps.

References:
  Hinton (2002), *Training products of experts by minimizing contrastive
  divergence*, Neural Computation 14(8); Carreira-Perpiñán & Hinton (2005),
  *On contrastive divergence learning*, AISTATS; Tieleman (2008), *Training
  restricted Boltzmann machines using approximations to the likelihood
  gradient*, ICML; Salakhutdinov & Murray (2008), *On the quantitative
  analysis of deep belief networks*, ICML; Hinton (2010), *A practical guide
  to training restricted Boltzmann machines*, UTML TR 2010-003; Neal (2001),
  *Annealed importance sampling*, Statistics and Computing 11(2); Burda,
  Grosse & Salakhutdinov (2015), *Accurate and conservative estimates of MRF
  log-likelihood using reverse annealing*, AISTATS, arXiv:1412.8566;
  Tieleman & Hinton (2009), *Using fast weights to improve persistent
  contrastive divergence*, ICML.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import environment, out_help, output_path, quick_note, save_figure, write_json

import ebm_jax as ej
from ebm_jax import partition
from ebm_jax.losses import contrastive
from ebm_jax.models import BernoulliRBM

RESULTS_FILE = "rbm_digits.json"
NUM_HIDDEN = 16
BATCH_SIZE = 100
# CD-k's k, or the Gibbs steps per update of the persistent chains.
METHODS = {"CD-1": 1, "CD-10": 10, "PCD-1": 1}
PERSISTENT = "PCD-1"
# Hinton (2010), §8: visible biases at the data's log-odds; the clip keeps the
# always-off corner pixels finite (and matches partition.bernoulli_base's clip).
MIN_PROBABILITY = 1e-3
ML_LEARNING_RATE = 0.03
NUM_SAMPLE_IMAGES = 64


# --------------------------------------------------------------------------------------
# Model pieces
# --------------------------------------------------------------------------------------


def pixel_probabilities(images: jax.Array) -> jax.Array:
    """Per-pixel means of the training images, clipped away from 0 and 1."""
    return jnp.clip(jnp.mean(images, axis=0), MIN_PROBABILITY, 1.0 - MIN_PROBABILITY)


def initial_params(rbm: BernoulliRBM, rng_key: jax.Array, probabilities: jax.Array) -> Any:
    """Weights N(0, 0.01²), hidden biases 0, visible biases at the data's log-odds."""
    params = rbm.init(rng_key, jnp.zeros_like(probabilities))
    visible_bias = jnp.log(probabilities) - jnp.log1p(-probabilities)
    return {"params": {**params["params"], "visible_bias": visible_bias}}


def bernoulli_log_likelihood(images: jax.Array, probabilities: jax.Array) -> float:
    """Mean log-likelihood (nats per image) of independent Bernoulli pixels."""
    pixels, means = np.asarray(images, np.float64), np.asarray(probabilities, np.float64)
    log_probabilities = pixels * np.log(means) + (1 - pixels) * np.log1p(-means)
    return float(np.mean(np.sum(log_probabilities, axis=-1)))


def all_hidden_configurations(num_hidden: int) -> jax.Array:
    """The :math:`2^H` binary hidden vectors, row k holding the bits of k."""
    indices = jnp.arange(2**num_hidden, dtype=jnp.int32)
    return ((indices[:, None] >> jnp.arange(num_hidden, dtype=jnp.int32)) & 1).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames="num_samples")
def exact_samples(
    rng_key: jax.Array, params: Any, hidden_configurations: jax.Array, num_samples: int
) -> tuple[jax.Array, jax.Array]:
    """Exact draws of the RBM: :math:`h` from its enumerated marginal, then :math:`v \\mid h`.

    :math:`\\log p(h) = c^\\top h + \\sum_i \\operatorname{softplus}(b_i + (Wh)_i) - \\log Z`.
    Returns the binary samples :math:`v` and the means :math:`E[v \\mid h]`.
    """
    weights = params["params"]["weights"]
    visible_bias = params["params"]["visible_bias"]
    hidden_bias = params["params"]["hidden_bias"]
    log_weights = hidden_configurations @ hidden_bias + jnp.sum(
        jax.nn.softplus(visible_bias + hidden_configurations @ weights.T), axis=-1
    )
    hidden_key, visible_key = jax.random.split(rng_key)
    rows = jax.random.categorical(hidden_key, log_weights, shape=(num_samples,))
    means = jax.nn.sigmoid(visible_bias + hidden_configurations[rows] @ weights.T)
    visible = (jax.random.uniform(visible_key, means.shape) < means).astype(means.dtype)
    return visible, means


class Evaluator:
    """Exact log-likelihoods and AIS estimates for any params of one RBM, compiled once."""

    def __init__(
        self,
        rbm: BernoulliRBM,
        train: jax.Array,
        test: jax.Array,
        base: partition.Base,
        num_chains: int,
        num_temperatures: int,
    ) -> None:
        self.rbm, self.train, self.test = rbm, train, test
        self.hidden_configurations = all_hidden_configurations(rbm.num_hidden)
        self.num_chains = num_chains

        # Jitting over params traces AIS once: its own cache is keyed on the
        # logdensity_fn object, a fresh closure for every trained model.
        def forward(rng_key: jax.Array, params: Any) -> partition.AISResult:
            return partition.annealed_importance_sampling(
                rng_key,
                lambda visible: rbm.apply(params, visible),
                base,
                num_chains=num_chains,
                num_temperatures=num_temperatures,
            )

        def reverse(rng_key: jax.Array, params: Any, samples: jax.Array) -> partition.AISResult:
            return partition.reverse_annealed_importance_sampling(
                rng_key,
                lambda visible: rbm.apply(params, visible),
                base,
                samples,
                num_temperatures=num_temperatures,
            )

        self._forward = jax.jit(forward)
        self._reverse = jax.jit(reverse)

    def log_likelihoods(self, params: Any) -> dict[str, float]:
        """Exact mean train and test log-likelihood (nats per image) and :math:`\\log Z`."""
        log_partition = self.rbm.exact_log_partition(params)
        return {
            "train_ll": float(jnp.mean(self.rbm.log_likelihood(params, self.train, log_partition))),
            "test_ll": float(jnp.mean(self.rbm.log_likelihood(params, self.test, log_partition))),
            "log_partition": float(log_partition),
        }

    def estimates(self, rng_key: jax.Array, params: Any) -> dict[str, Any]:
        """Forward AIS, and reverse AIS from exact samples, beside the exact :math:`\\log Z`."""
        sample_key, forward_key, reverse_key = jax.random.split(rng_key, 3)
        start = time.perf_counter()
        samples, _ = exact_samples(sample_key, params, self.hidden_configurations, self.num_chains)
        forward = jax.block_until_ready(self._forward(forward_key, params))
        reverse = jax.block_until_ready(self._reverse(reverse_key, params, samples))
        seconds = time.perf_counter() - start
        return {
            "ais_log_partition": float(forward.log_partition),
            "ais_standard_error": float(forward.standard_error),
            "ais_ess": float(forward.ess),
            "ais_num_nonfinite": int(jnp.sum(forward.num_nonfinite)),
            "reverse_ais_log_partition": float(reverse.log_partition),
            "reverse_ais_standard_error": float(reverse.standard_error),
            "reverse_ais_ess": float(reverse.ess),
            "reverse_ais_num_nonfinite": int(jnp.sum(reverse.num_nonfinite)),
            "ais_seconds": seconds,
        }


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def train_with_curve(
    rng_key: jax.Array,
    loss_fn: Any,
    params: Any,
    optimizer: optax.GradientTransformation,
    loss_state: Any,
    evaluator: Evaluator,
    args: argparse.Namespace,
) -> tuple[Any, list[dict[str, float]], float]:
    """``fit`` in segments of ``eval_every`` updates with exact likelihoods between them.

    Each segment resumes ``fit`` from the checkpoint of the previous one, so
    the run is bitwise that of a single ``fit`` call. Returns the final
    params, the curve and the training seconds (evaluations excluded).
    """
    curve = [{"step": 0, **evaluator.log_likelihoods(params)}]
    seconds = 0.0
    with tempfile.TemporaryDirectory() as directory:
        checkpoint_path = Path(directory) / "checkpoint.msgpack"
        done = 0
        while done < args.num_updates:
            done = min(done + args.eval_every, args.num_updates)
            start = time.perf_counter()
            result = ej.training.fit(
                rng_key,
                loss_fn,
                params,
                optimizer,
                evaluator.train,
                num_steps=done,
                batch_size=BATCH_SIZE,
                chunk_size=args.eval_every,
                loss_state=loss_state,
                checkpoint_path=checkpoint_path,
                progress=False,
            )
            jax.block_until_ready(result.params)
            seconds += time.perf_counter() - start
            curve.append({"step": done, **evaluator.log_likelihoods(result.params)})
    return result.params, curve, seconds


def train_exact_ml(
    rbm: BernoulliRBM, params: Any, train: jax.Array, num_steps: int
) -> tuple[Any, float]:
    """Full-batch Adam on the exact negative log-likelihood (the enumerated log Z included)."""

    def loss_fn(params: Any, rng_key: jax.Array, batch: jax.Array) -> jax.Array:
        return -jnp.mean(rbm.log_likelihood(params, batch))

    optimizer = optax.adam(optax.cosine_decay_schedule(ML_LEARNING_RATE, num_steps, alpha=0.01))
    start = time.perf_counter()
    result = ej.training.fit(
        jax.random.key(0),
        loss_fn,
        params,
        optimizer,
        train,
        num_steps=num_steps,
        batch_size=train.shape[0],
        chunk_size=num_steps,
        progress=False,
    )
    jax.block_until_ready(result.params)
    return result.params, time.perf_counter() - start


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------

RUN_HEADER = (
    f"{'method':<10}{'seed':>4}{'train LL':>10}{'test LL':>10}{'exact log Z':>13}"
    f"{'AIS log Z ± SE':>19}{'reverse AIS ± SE':>19}{'AIS − exact':>13}"
    f"{'rev − exact':>13}{'seconds':>9}"
)


def _run_line(name: str, seed: Any, run: dict[str, Any]) -> str:
    log_partition = run["log_partition"]
    line = f"{name:<10}{seed!s:>4}{run['train_ll']:>10.3f}{run['test_ll']:>10.3f}" + (
        f"{log_partition:>13.3f}" if log_partition is not None else f"{'(normalised)':>13}"
    )
    if "ais_log_partition" not in run:
        return line
    return line + (
        f"{run['ais_log_partition']:>12.3f} ±{run['ais_standard_error']:<5.3f}"
        f"{run['reverse_ais_log_partition']:>12.3f} ±{run['reverse_ais_standard_error']:<5.3f}"
        f"{run['ais_minus_exact']:>+13.3f}{run['reverse_minus_exact']:>+13.3f}"
        f"{run['train_seconds']:>9.1f}"
    )


SUMMARY_HEADER = (
    f"{'method':<10}{'train LL':>16}{'test LL':>16}{'test − PCD-1':>17}"
    f"{'AIS − exact':>17}{'rev − exact':>17}{'seconds':>9}"
)


def _mean_sd(values: list[float], width: int = 16, sign: str = "") -> str:
    array = np.asarray(values)
    text = f"{array.mean():{sign}.3f}" + (f" ±{array.std(ddof=1):.3f}" if len(array) > 1 else "")
    return f"{text:>{width}}"


def summarise(name: str, runs: list[dict[str, Any]], reference: list[dict[str, Any]]) -> dict:
    """Mean ± sd over seeds, and the test log-likelihood minus PCD-1's paired by seed."""
    differences = np.array(
        [a["test_ll"] - b["test_ll"] for a, b in zip(runs, reference, strict=True)]
    )
    summary: dict[str, Any] = {"method": name}
    for key in ("train_ll", "test_ll", "log_partition", "ais_minus_exact", "reverse_minus_exact"):
        values = np.array([run[key] for run in runs])
        summary[key] = float(values.mean())
        summary[f"{key}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else None
    summary["test_minus_persistent"] = float(differences.mean())
    summary["test_minus_persistent_se"] = (
        float(differences.std(ddof=1) / np.sqrt(len(differences))) if len(differences) > 1 else None
    )
    summary["train_seconds_median"] = float(np.median([run["train_seconds"] for run in runs]))
    return summary


def _summary_line(summary: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    se = summary["test_minus_persistent_se"]
    paired = f"{summary['test_minus_persistent']:+.3f}" + (f" ±{se:.3f}" if se is not None else "")
    if summary["method"] == PERSISTENT:
        paired = "(reference)"
    return (
        f"{summary['method']:<10}"
        + _mean_sd([run["train_ll"] for run in runs])
        + _mean_sd([run["test_ll"] for run in runs])
        + f"{paired:>17}"
        + _mean_sd([run["ais_minus_exact"] for run in runs], 17, "+")
        + _mean_sd([run["reverse_minus_exact"] for run in runs], 17, "+")
        + f"{summary['train_seconds_median']:>9.1f}"
    )


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _mosaic(images: np.ndarray, columns: int) -> np.ndarray:
    """8×8 images tiled ``columns`` wide, separated by NaN (blank) lines."""
    rows = -(-len(images) // columns)
    mosaic = np.full((rows * 9 + 1, columns * 9 + 1), np.nan)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        mosaic[1 + 9 * row : 9 * row + 9, 1 + 9 * column : 9 * column + 9] = image.reshape(8, 8)
    return mosaic


def plot_filters(models: dict[str, Any], path: Path, *, quick: bool) -> None:
    plt = _pyplot()
    if plt is None:
        print("matplotlib not installed: no plots", flush=True)
        return
    fig, axes = plt.subplots(
        1, len(models), figsize=(2.8 * len(models) + 1.0, 3.6), squeeze=False, layout="constrained"
    )
    for ax, (name, params) in zip(axes[0], models.items(), strict=True):
        weights = np.asarray(params["params"]["weights"]).T  # (16, 64): one filter per row
        # Each filter on its own symmetric scale: their norms differ a lot.
        scaled = weights / np.max(np.abs(weights), axis=1, keepdims=True)
        image = ax.imshow(_mosaic(scaled, 4), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(name)
        ax.set_xlabel(f"{len(weights)} hidden units, 8×8 pixels each", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes, shrink=0.8, label="W[i, j] ÷ max |W[:, j]| (0 is white)")
    fig.suptitle("RBM filters W[:, j], one 8×8 image per hidden unit j (seed 0)")
    save_figure(fig, path, quick=quick)


def plot_samples(panels: dict[str, np.ndarray], path: Path, *, quick: bool) -> None:
    plt = _pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(
        1, len(panels), figsize=(2.8 * len(panels) + 1.0, 3.6), squeeze=False, layout="constrained"
    )
    for ax, (name, images) in zip(axes[0], panels.items(), strict=True):
        image = ax.imshow(_mosaic(images, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title("training data" if name == "data" else name)
        ax.set_xlabel(f"{len(images)} images, 8×8 pixels each", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes, shrink=0.8, label="pixel value; for samples P(on | h) = E[v | h]")
    fig.suptitle("Training data and exact model samples, shown as E[v | h] (seed 0)")
    save_figure(fig, path, quick=quick)


def plot_curves(report: dict[str, Any], path: Path, *, quick: bool) -> None:
    plt = _pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), layout="constrained")
    colours = dict(zip(METHODS, ("tab:blue", "tab:orange", "tab:green"), strict=True))
    finals = [report["methods"][name]["summary"]["test_ll"] for name in METHODS]
    panels = (
        (axes[0], "train_ll", "train set", False),
        (axes[1], "test_ll", "test set", False),
        (axes[2], "test_ll", "test set, second half (zoom)", True),
    )
    for ax, key, title, zoom in panels:
        for name in METHODS:
            runs = report["methods"][name]["runs"]
            steps = np.array([point["step"] for point in runs[0]["curve"]])
            values = np.array([[point[key] for point in run["curve"]] for run in runs])
            keep = steps >= steps[-1] / 2 if zoom else np.ones(len(steps), bool)
            for seed_values in values:
                ax.plot(steps[keep], seed_values[keep], color=colours[name], alpha=0.3, lw=0.8)
            ax.plot(steps[keep], values.mean(axis=0)[keep], color=colours[name], label=name)
        if report["exact_ml"] is not None:
            ax.axhline(report["exact_ml"][key], color="black", linestyle="--", label="exact ML")
        if zoom:
            ax.set_ylim(min(finals) - 0.4, max(finals) + 0.4)
        else:
            ax.axhline(report["base_rate"][key], color="grey", linestyle=":", label="base rate")
        ax.set_xlabel("parameter updates")
        ax.set_ylabel("exact log-likelihood (nats / image)")
        ax.set_title(f"{title} (thin: seeds, thick: mean)", fontsize=10)
    axes[2].legend(fontsize=8)
    axes[0].legend(fontsize=8)
    fig.suptitle("RBMs on binarised 8×8 digits: exact log-likelihood during training")
    save_figure(fig, path, quick=quick)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few updates, small AIS")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=out_help("JSON results file; the figures go beside it", RESULTS_FILE),
    )
    parser.add_argument("--num-updates", type=int, default=None, help="updates per method")
    parser.add_argument("--eval-every", type=int, default=None, help="learning-curve spacing")
    parser.add_argument("--learning-rate", type=float, default=0.01, help="Adam's initial step")
    parser.add_argument("--adam-b1", type=float, default=0.9, help="Adam's momentum decay")
    parser.add_argument("--ml-steps", type=int, default=None, help="exact-ML reference; 0: none")
    parser.add_argument("--ais-chains", type=int, default=256)
    parser.add_argument("--ais-temperatures", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="root key")
    parser.add_argument("--seeds", type=int, default=None, help="runs per method (default 3)")
    args = parser.parse_args(argv)
    args.out = output_path(RESULTS_FILE, args.out, quick=args.quick)
    if args.num_updates is None:
        args.num_updates = 200 if args.quick else 10_000
    if args.eval_every is None:
        args.eval_every = max(1, args.num_updates // (2 if args.quick else 20))
    if args.ml_steps is None:
        args.ml_steps = 10 if args.quick else 1500
    if args.ais_temperatures is None:
        args.ais_temperatures = 50 if args.quick else 1000
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    if args.quick:
        args.ais_chains = min(args.ais_chains, 32)
    for name in ("num_updates", "eval_every", "seeds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.ml_steps < 0 or args.ais_temperatures < 1 or args.ais_chains < 2:
        parser.error("--ml-steps must be >= 0, --ais-temperatures >= 1, --ais-chains >= 2")

    digits = ej.data.load_digits(scale="binary")
    train, test = jnp.asarray(digits.train), jnp.asarray(digits.test)
    probabilities = pixel_probabilities(train)
    rbm = BernoulliRBM(NUM_HIDDEN)
    base = partition.bernoulli_base(probabilities, min_probability=MIN_PROBABILITY)
    evaluator = Evaluator(rbm, train, test, base, args.ais_chains, args.ais_temperatures)
    schedule = optax.cosine_decay_schedule(args.learning_rate, args.num_updates, alpha=0.01)
    optimizer = optax.adam(
        schedule, b1=args.adam_b1
    )  # one object: every loss compiles once across seeds
    losses = {
        name: contrastive.contrastive_divergence(
            rbm.apply, sampler=rbm.block_gibbs, num_steps=num_steps
        )
        for name, num_steps in METHODS.items()
        if name != PERSISTENT
    }
    persistent = contrastive.persistent_contrastive_divergence(
        rbm.apply, sampler=rbm.block_gibbs, num_steps=METHODS[PERSISTENT]
    )
    losses[PERSISTENT] = persistent.loss

    env = environment("flax", "optax", "scikit-learn")
    print(
        f"jax {env['jax']} on {env['backend']}; BernoulliRBM({NUM_HIDDEN}) on binarised digits "
        f"({train.shape[0]} train, {test.shape[0]} test); {args.num_updates} Adam updates "
        f"(cosine from {args.learning_rate}), batch {BATCH_SIZE}, {args.seeds} seed(s); "
        f"exact log-likelihoods in nats per image; AIS {args.ais_chains} chains × "
        f"{args.ais_temperatures} temperatures{quick_note(args.quick)}",
        flush=True,
    )
    base_rate = {
        "train_ll": bernoulli_log_likelihood(train, probabilities),
        "test_ll": bernoulli_log_likelihood(test, probabilities),
        "log_partition": None,
    }
    print("\n" + RUN_HEADER, flush=True)
    print(_run_line("base rate", "-", base_rate), flush=True)

    root = jax.random.key(args.seed)
    init_root, fit_root, chain_root, ais_root, sample_root, ml_key = jax.random.split(root, 6)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in METHODS}
    seed0_params: dict[str, Any] = {}
    for seed in range(args.seeds):
        params = initial_params(rbm, jax.random.fold_in(init_root, seed), probabilities)
        # The initial RBM is the base-rate model (W ≈ 0), so base-rate draws start
        # the persistent chains near its equilibrium.
        chains = jax.vmap(base.sample)(
            jax.random.split(jax.random.fold_in(chain_root, seed), BATCH_SIZE)
        )
        for index, name in enumerate(METHODS):
            loss_state = persistent.init(chains) if name == PERSISTENT else None
            trained, curve, seconds = train_with_curve(
                jax.random.fold_in(fit_root, seed),
                losses[name],
                params,
                optimizer,
                loss_state,
                evaluator,
                args,
            )
            run: dict[str, Any] = {"seed": seed, **curve[-1]}
            run.pop("step")
            ais_key = jax.random.fold_in(jax.random.fold_in(ais_root, seed), index)
            run.update(evaluator.estimates(ais_key, trained))
            run["ais_minus_exact"] = run["ais_log_partition"] - run["log_partition"]
            run["reverse_minus_exact"] = run["reverse_ais_log_partition"] - run["log_partition"]
            run["train_seconds"] = seconds
            run["curve"] = curve
            runs[name].append(run)
            print(_run_line(name, seed, run), flush=True)
            if seed == 0:
                seed0_params[name] = trained

    exact_ml = None
    if args.ml_steps > 0:
        ml_params, ml_seconds = train_exact_ml(
            rbm,
            initial_params(rbm, jax.random.fold_in(init_root, 0), probabilities),
            train,
            args.ml_steps,
        )
        exact_ml = {"num_steps": args.ml_steps, **evaluator.log_likelihoods(ml_params)}
        exact_ml.update(evaluator.estimates(ml_key, ml_params))
        exact_ml["ais_minus_exact"] = exact_ml["ais_log_partition"] - exact_ml["log_partition"]
        exact_ml["reverse_minus_exact"] = (
            exact_ml["reverse_ais_log_partition"] - exact_ml["log_partition"]
        )
        exact_ml["train_seconds"] = ml_seconds
        seed0_params["exact ML"] = ml_params
        print(_run_line("exact ML", 0, exact_ml), flush=True)

    summaries = {name: summarise(name, runs[name], runs[PERSISTENT]) for name in METHODS}
    print(f"\nover {args.seeds} seed(s): mean ± sd (test − PCD-1: paired mean ± SE)", flush=True)
    print(SUMMARY_HEADER, flush=True)
    for name in METHODS:
        print(_summary_line(summaries[name], runs[name]), flush=True)
    every = [run for name in METHODS for run in runs[name]] + ([exact_ml] if exact_ml else [])
    worst_z = max(abs(run["ais_minus_exact"]) / run["ais_standard_error"] for run in every)
    worst_reverse_z = max(
        abs(run["reverse_minus_exact"]) / run["reverse_ais_standard_error"] for run in every
    )
    worst_gap = max(run["reverse_ais_log_partition"] - run["ais_log_partition"] for run in every)
    print(
        f"\nAIS beside exact log Z: worst |AIS − exact| = {worst_z:.1f} SE, worst "
        f"|reverse − exact| = {worst_reverse_z:.1f} SE; widest reverse − forward gap "
        f"{worst_gap:+.3f} nats",
        flush=True,
    )

    report: dict[str, Any] = {
        "environment": env,
        "settings": {
            "quick": args.quick,
            "num_hidden": NUM_HIDDEN,
            "batch_size": BATCH_SIZE,
            "num_updates": args.num_updates,
            "eval_every": args.eval_every,
            "optimizer": "adam",
            "learning_rate": args.learning_rate,
            "adam_b1": args.adam_b1,
            "schedule": "cosine decay to 1% over num_updates",
            "methods": METHODS,
            "persistent_chains": BATCH_SIZE,
            "persistent_init": "base-rate Bernoulli samples",
            "min_probability": MIN_PROBABILITY,
            "ais_chains": args.ais_chains,
            "ais_temperatures": args.ais_temperatures,
            "ais_base": "bernoulli_base(training pixel means)",
            "reverse_ais_start": "exact samples (hidden marginal enumerated)",
            "ml_steps": args.ml_steps,
            "ml_learning_rate": ML_LEARNING_RATE,
            "num_train": int(train.shape[0]),
            "num_test": int(test.shape[0]),
            "seed": args.seed,
            "seeds": args.seeds,
        },
        "base_rate": base_rate,
        "exact_ml": exact_ml,
        "methods": {name: {"summary": summaries[name], "runs": runs[name]} for name in METHODS},
        "summary": {
            "worst_ais_abs_z": worst_z,
            "worst_reverse_ais_abs_z": worst_reverse_z,
            "widest_reverse_minus_forward": worst_gap,
        },
    }
    write_json(args.out, report, quick=args.quick)

    stem = args.out.with_suffix("")
    plot_filters(seed0_params, Path(f"{stem}_filters.png"), quick=args.quick)
    sample_panels = {"data": np.asarray(train[:NUM_SAMPLE_IMAGES])}
    for index, (name, params) in enumerate(seed0_params.items()):
        _, means = exact_samples(
            jax.random.fold_in(sample_root, index),
            params,
            evaluator.hidden_configurations,
            NUM_SAMPLE_IMAGES,
        )
        sample_panels[name] = np.asarray(means)
    plot_samples(sample_panels, Path(f"{stem}_samples.png"), quick=args.quick)
    plot_curves(report, Path(f"{stem}_curves.png"), quick=args.quick)
    return report


if __name__ == "__main__":
    main()

"""The main job: ``python -m ebm_jax demo`` (what ``make demo`` runs).

Section 1, sampling (§11.2.1): thousands of MALA chains on a 2-D Gaussian
mixture, step size and preconditioner adapted by warm-up, then judged by
acceptance, bulk ESS, split R̂, the kernel Stein discrepancy (which needs only
the score) and the MMD against exact samples. Writes ``sampling.png``
(samples over the density's contours, trace plots) and ``sampling.json``.

Section 2, score matching (§11.2.2–11.2.3): an MLP log-density learned from
two-moons data by sliced score matching, its exact test NLL (log Z by
quadrature), and MALA chains drawn from the learned model. Writes
``score_matching.png`` (loss, data, learned density, samples) and
``score_matching.json``.

Section 3, contrastive divergence (§11.1): a binary RBM with 16 hidden units
learned from binarised 8×8 digits by persistent contrastive divergence with
its exact block-Gibbs sampler; exact train/test log-likelihoods (log Z by
enumerating the hidden layer) beside annealed importance sampling's estimate.
Writes ``rbm.png`` (learned filters, Gibbs samples) and ``rbm.json``.

Section 4, diffusion (§11.2.4–11.2.5): noise-conditional scores
:math:`S_w(x', \\beta)` learned by the denoising objective (eq. 11.16) on a
standardised 2-D toy and on 8×8 digits, then sampled by reversing the forward
chain of eqs. (11.4)–(11.5): ancestral sampling (the Tweedie mean of eq. 11.13
per step), the probability-flow ODE and annealed Langevin dynamics, judged by
MMD² and sliced Wasserstein distances to test data beside the train-vs-test
floor, the probability-flow test NLL beside the exact one, and, for digits, the
Fréchet distance in the features of a trained digit classifier. Writes
``diffusion_2d.png`` (data and each sampler's samples), ``diffusion_digits.png``
(generated and real digits) and ``diffusion.json``.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebm_jax import (
    data,
    densities,
    diagnostics,
    diffusion,
    losses,
    models,
    partition,
    samplers,
    training,
)
from ebm_jax.chains import run_chains


def demo_mixture() -> densities.Target:
    """Four unequal, anisotropic, overlapping components: MALA mixes between them."""
    return densities.gaussian_mixture(
        weights=jnp.array([0.4, 0.3, 0.2, 0.1]),
        means=jnp.array([[-1.2, -1.0], [1.2, -1.0], [-0.8, 1.4], [1.5, 1.5]]),
        covariances=jnp.array(
            [[[0.8, 0.3], [0.3, 0.5]], [[0.4, 0.0], [0.0, 1.0]], [[0.6, -0.2], [-0.2, 0.4]],
             [[0.3, 0.0], [0.0, 0.3]]]
        ),
    )  # fmt: skip


def run_sampling(
    out_dir: Path,
    *,
    seed: int = 0,
    num_chains: int = 4096,
    num_warmup: int = 500,
    num_steps: int = 1000,
    num_reference: int = 2000,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Adapt and run MALA on :func:`demo_mixture`; print and write the summary."""
    target = demo_mixture()
    keys = jax.random.split(jax.random.key(seed), 5)
    initial = 3.0 * jax.random.normal(keys[0], (num_chains, 2))

    start = time.perf_counter()
    warmup = samplers.adapt(keys[1], "mala", target.logdensity_fn, initial, num_warmup)
    algorithm = samplers.mala(target.logdensity_fn, **warmup.parameters)
    result = run_chains(keys[2], algorithm, warmup.states.position, num_steps, progress=progress)
    jax.block_until_ready(result.samples)
    seconds = time.perf_counter() - start

    samples = result.samples
    assert samples is not None  # collect="samples"
    final = samples[:, -1]
    subset = final[:num_reference]
    exact = target.sample(keys[3], num_reference)
    exact_again = target.sample(keys[4], num_reference)
    summary = {
        "target": target.name,
        "num_chains": num_chains,
        "num_warmup": num_warmup,
        "num_steps": num_steps,
        "seconds_total": seconds,
        "chain_steps_per_second": num_chains * (num_warmup + num_steps) / seconds,
        "step_size": float(warmup.parameters["step_size"]),
        "inverse_mass_matrix": np.asarray(warmup.parameters["inverse_mass_matrix"]).tolist(),
        "acceptance_rate": float(jnp.mean(result.acceptance_rate)),
        "num_nonfinite": int(np.sum(np.asarray(result.num_nonfinite))),
        "ess_bulk": np.asarray(diagnostics.ess(samples)).tolist(),
        "rhat": np.asarray(diagnostics.rhat(samples)).tolist(),
        "mean": np.asarray(jnp.mean(samples, axis=(0, 1))).tolist(),
        "true_mean": np.asarray(target.mean).tolist(),
        "mcse": np.asarray(diagnostics.mcse(samples)).tolist(),
        "ksd_final_states": float(
            jnp.sqrt(diagnostics.kernel_stein_discrepancy(subset, target.score_fn))
        ),
        "ksd_exact_samples": float(
            jnp.sqrt(diagnostics.kernel_stein_discrepancy(exact, target.score_fn))
        ),
        "mmd2_final_states_vs_exact": float(diagnostics.mmd(subset, exact)),
        "mmd2_exact_vs_exact": float(diagnostics.mmd(exact_again, exact)),
    }
    _print_summary(summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sampling.json").write_text(json.dumps(summary, indent=2))
    _plot_sampling(out_dir / "sampling.png", target, samples, warmup.info.acceptance_rate)
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    fmt = lambda values: ", ".join(f"{v:.4g}" for v in values)
    print(f"== Sampling: MALA on {summary['target']} ({summary['num_chains']} chains)")
    print(f"  adapted step size        {summary['step_size']:.4g}")
    print(f"  acceptance rate          {summary['acceptance_rate']:.3f}  (target 0.574)")
    print(f"  rejected NaN/inf         {summary['num_nonfinite']}")
    print(f"  bulk ESS (x, y)          {fmt(summary['ess_bulk'])}")
    print(f"  split R-hat (x, y)       {fmt(summary['rhat'])}")
    print(f"  mean (x, y)              {fmt(summary['mean'])}  exact {fmt(summary['true_mean'])}")
    print(f"  MCSE of the mean         {fmt(summary['mcse'])}")
    print(
        f"  KSD final states         {summary['ksd_final_states']:.4f}"
        f"  (exact samples {summary['ksd_exact_samples']:.4f})"
    )
    print(
        f"  MMD² vs exact samples    {summary['mmd2_final_states_vs_exact']:.2e}"
        f"  (exact vs exact {summary['mmd2_exact_vs_exact']:.2e})"
    )
    print(
        f"  time                     {summary['seconds_total']:.1f} s "
        f"({summary['chain_steps_per_second']:.3g} chain-steps/s, compile included)"
    )


def _plot_sampling(path: Path, target: densities.Target, samples: Any, acceptance: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = jnp.linspace(-4.5, 4.5, 200)
    xx, yy = jnp.meshgrid(grid, grid)
    points = jnp.stack([xx.ravel(), yy.ravel()], axis=-1)
    density = jnp.exp(jax.vmap(target.logdensity_fn)(points)).reshape(xx.shape)
    samples = np.asarray(samples)

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    axes[0].scatter(samples[:, -1, 0], samples[:, -1, 1], s=1, alpha=0.3, color="tab:blue")
    axes[0].contour(np.asarray(xx), np.asarray(yy), np.asarray(density), levels=8, colors="k")
    axes[0].set(title="final states of all chains over p(x)", xlabel="x₁", ylabel="x₂")
    axes[0].set_aspect("equal")
    for chain in range(4):
        axes[1].plot(samples[chain, :, 0], linewidth=0.6)
    axes[1].set(title="trace of x₁ (4 chains)", xlabel="step")
    axes[2].plot(np.asarray(acceptance))
    axes[2].axhline(0.574, color="k", linestyle="--", linewidth=0.8)
    axes[2].set(title="warm-up: mean acceptance", xlabel="warm-up step", ylim=(0, 1))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run_score_matching(
    out_dir: Path,
    *,
    seed: int = 0,
    dataset: str = "two_moons",
    num_train_steps: int = 4000,
    num_chains: int = 2048,
    num_warmup: int = 300,
    num_steps: int = 300,
    resolution: int = 512,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Learn a 2-D EBM by sliced score matching, score it exactly, sample it with MALA."""
    keys = jax.random.split(jax.random.key(seed + 1), 7)
    sampler = data.TOY_DATASETS[dataset]
    train, test = sampler(keys[0], 20_000), sampler(keys[1], 5_000)
    model = models.MLPLogDensity((128, 128), envelope_scale=4.0)
    # Module.apply is typed for every Flax use; this one returns the scalar f_θ(x).
    model_logdensity = cast(Callable[[Any, jax.Array], jax.Array], model.apply)
    initial_params = model.init(keys[2], jnp.zeros(2))
    optimizer = optax.adam(optax.cosine_decay_schedule(2e-3, num_train_steps, alpha=0.01))

    start = time.perf_counter()
    fit = training.fit(
        keys[3],
        losses.sliced_score_matching(model_logdensity),
        initial_params,
        optimizer,
        train,
        num_steps=num_train_steps,
        batch_size=256,
        chunk_size=min(500, num_train_steps),
        progress=False if progress is None else progress,
    )
    train_seconds = time.perf_counter() - start
    logdensity_fn = functools.partial(model_logdensity, fit.params)
    evaluation = diagnostics.nll_2d_quadrature(
        logdensity_fn, test, data.TOY_BOUNDS, resolution=resolution
    )

    (x_min, x_max), (y_min, y_max) = data.TOY_BOUNDS
    initial = jax.random.uniform(
        keys[4], (num_chains, 2), minval=jnp.array([x_min, y_min]), maxval=jnp.array([x_max, y_max])
    )
    warmup = samplers.adapt(keys[5], "mala", logdensity_fn, initial, num_warmup)
    algorithm = samplers.mala(logdensity_fn, **warmup.parameters)
    result = run_chains(
        keys[6], algorithm, warmup.states.position, num_steps, thin=num_steps, progress=progress
    )
    assert result.samples is not None  # collect="samples"
    final = result.samples[:, -1]
    reference = test[: min(2000, num_chains)]
    summary = {
        "dataset": dataset,
        "objective": "sliced score matching (1 Rademacher probe)",
        "num_train_steps": num_train_steps,
        "train_seconds": train_seconds,
        "final_loss": float(jnp.mean(fit.losses[-100:])),
        "test_nll": float(evaluation.nll),
        "log_partition": float(evaluation.log_partition),
        "log_partition_error": float(evaluation.log_partition_error),
        "num_chains": num_chains,
        "step_size": float(warmup.parameters["step_size"]),
        "acceptance_rate": float(jnp.mean(result.acceptance_rate)),
        "num_nonfinite": int(np.sum(np.asarray(result.num_nonfinite))),
        "mmd2_samples_vs_test": float(diagnostics.mmd(final[: len(reference)], reference)),
        "mmd2_train_vs_test": float(diagnostics.mmd(train[: len(reference)], reference)),
    }
    _print_score_matching(summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "score_matching.json").write_text(json.dumps(summary, indent=2))
    _plot_score_matching(
        out_dir / "score_matching.png", fit.losses, train, logdensity_fn, evaluation, final
    )
    return summary


def _print_score_matching(summary: dict[str, Any]) -> None:
    print(f"== Score matching: MLP EBM on {summary['dataset']}, {summary['objective']}")
    print(
        f"  training                 {summary['num_train_steps']} Adam steps in "
        f"{summary['train_seconds']:.1f} s, final loss {summary['final_loss']:.4g}"
    )
    print(
        f"  exact test NLL           {summary['test_nll']:.4f} nats  (log Z "
        f"{summary['log_partition']:.4f} ± {summary['log_partition_error']:.1e}, quadrature)"
    )
    print(
        f"  MALA on the learned EBM  {summary['num_chains']} chains, step "
        f"{summary['step_size']:.3g}, acceptance {summary['acceptance_rate']:.3f}, "
        f"rejected NaN/inf {summary['num_nonfinite']}"
    )
    print(
        f"  MMD² samples vs test     {summary['mmd2_samples_vs_test']:.2e}"
        f"  (train vs test {summary['mmd2_train_vs_test']:.2e})"
    )


def _plot_score_matching(
    path: Path, loss_history: Any, train: Any, logdensity_fn: Any, evaluation: Any, samples: Any
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (x_min, x_max), (y_min, y_max) = data.TOY_BOUNDS
    xx, yy = jnp.meshgrid(jnp.linspace(x_min, x_max, 200), jnp.linspace(y_min, y_max, 200))
    points = jnp.stack([xx.ravel(), yy.ravel()], axis=-1)
    density = jnp.exp(jax.vmap(logdensity_fn)(points) - evaluation.log_partition)
    extent = (x_min, x_max, y_min, y_max)

    figure, axes = plt.subplots(1, 4, figsize=(18, 4.3))
    axes[0].plot(np.asarray(loss_history), linewidth=0.5)
    axes[0].set(title="SSM loss", xlabel="step")
    axes[1].hist2d(*np.asarray(train).T, bins=120, range=data.TOY_BOUNDS)
    axes[1].set(title="training data")
    axes[2].imshow(np.asarray(density.reshape(xx.shape)), origin="lower", extent=extent)
    axes[2].set(title=f"learned density, test NLL {float(evaluation.nll):.3f}")
    samples = np.asarray(samples)
    axes[3].scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.4)
    axes[3].set(title="MALA samples of the learned EBM", xlim=(x_min, x_max), ylim=(y_min, y_max))
    for ax in axes[1:]:
        ax.set_aspect("equal")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run_rbm(
    out_dir: Path,
    *,
    seed: int = 0,
    num_hidden: int = 16,
    num_train_steps: int = 3000,
    num_temperatures: int = 1000,
    num_sample_sweeps: int = 1000,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Learn a binary RBM on digits by PCD; exact log-likelihoods, AIS beside them."""
    digits = data.load_digits(scale="binary")
    train, test = jnp.asarray(digits.train), jnp.asarray(digits.test)
    keys = jax.random.split(jax.random.key(seed + 2), 6)
    rbm = models.BernoulliRBM(num_hidden)
    rbm_logdensity = cast(Callable[[Any, jax.Array], jax.Array], rbm.apply)
    params = rbm.init(keys[0], train[0])
    # Hinton (2010), section 8: visible biases at the log-odds of the pixel means.
    pixel_mean = jnp.clip(jnp.mean(train, axis=0), 1e-3, 1 - 1e-3)
    params["params"]["visible_bias"] = jnp.log(pixel_mean) - jnp.log1p(-pixel_mean)
    batch_size = 100
    pcd = losses.persistent_contrastive_divergence(rbm_logdensity, sampler=rbm.block_gibbs)
    initial_chains = jax.random.bernoulli(keys[1], pixel_mean, (batch_size, train.shape[1]))
    optimizer = optax.adam(optax.cosine_decay_schedule(1e-2, num_train_steps, alpha=0.05))

    start = time.perf_counter()
    fit = training.fit(
        keys[2],
        pcd.loss,
        params,
        optimizer,
        train,
        num_steps=num_train_steps,
        batch_size=batch_size,
        chunk_size=min(500, num_train_steps),
        loss_state=pcd.init(initial_chains.astype(train.dtype)),
        progress=False if progress is None else progress,
    )
    train_seconds = time.perf_counter() - start
    log_partition = rbm.exact_log_partition(fit.params)
    ais = partition.annealed_importance_sampling(
        keys[3],
        functools.partial(rbm_logdensity, fit.params),
        partition.bernoulli_base(pixel_mean),
        num_temperatures=num_temperatures,
    )
    base_rate = jnp.sum(test * jnp.log(pixel_mean) + (1 - test) * jnp.log1p(-pixel_mean), axis=1)

    gibbs = rbm.block_gibbs(fit.params)
    starts = jax.random.bernoulli(keys[4], 0.5, (64, train.shape[1])).astype(train.dtype)
    chains = run_chains(
        keys[5], gibbs, starts, num_sample_sweeps, thin=num_sample_sweeps, progress=progress
    )
    assert chains.samples is not None  # collect="samples"
    hidden = jax.vmap(rbm.hidden_probabilities, in_axes=(None, 0))(
        fit.params, chains.samples[:, -1]
    )
    sample_means = jax.vmap(rbm.visible_mean, in_axes=(None, 0))(fit.params, hidden)
    summary = {
        "dataset": "8x8 digits, binarised (1438 train / 359 test)",
        "objective": f"persistent contrastive divergence (PCD-1, {batch_size} chains)",
        "num_hidden": num_hidden,
        "num_train_steps": num_train_steps,
        "train_seconds": train_seconds,
        "train_log_likelihood": float(
            jnp.mean(rbm.log_likelihood(fit.params, train, log_partition))
        ),
        "test_log_likelihood": float(jnp.mean(rbm.log_likelihood(fit.params, test, log_partition))),
        "base_rate_test_log_likelihood": float(jnp.mean(base_rate)),
        "exact_log_partition": float(log_partition),
        "ais_log_partition": float(ais.log_partition),
        "ais_standard_error": float(ais.standard_error),
        "ais_ess": float(ais.ess),
        "ais_num_temperatures": num_temperatures,
    }
    _print_rbm(summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rbm.json").write_text(json.dumps(summary, indent=2))
    _plot_rbm(out_dir / "rbm.png", fit.params["params"]["weights"], sample_means)
    return summary


def _print_rbm(summary: dict[str, Any]) -> None:
    print(f"== Contrastive divergence: binary RBM ({summary['num_hidden']} hidden) on digits")
    print(
        f"  training                 {summary['num_train_steps']} Adam steps of "
        f"{summary['objective']} in {summary['train_seconds']:.1f} s"
    )
    print(
        f"  exact log-likelihood     train {summary['train_log_likelihood']:.3f}, test "
        f"{summary['test_log_likelihood']:.3f} nats/image  (independent pixels: test "
        f"{summary['base_rate_test_log_likelihood']:.3f})"
    )
    print(
        f"  log Z                    exact {summary['exact_log_partition']:.4f}, AIS "
        f"{summary['ais_log_partition']:.4f} ± {summary['ais_standard_error']:.4f} "
        f"({summary['ais_num_temperatures']} temperatures, ESS {summary['ais_ess']:.0f})"
    )


def _tile_digits(images: Any, columns: int) -> np.ndarray:
    """8×8 images side by side on a NaN background (blank in ``imshow``), one pixel apart."""
    images = np.asarray(images).reshape(-1, 8, 8)
    rows = -(-len(images) // columns)
    canvas = np.full((rows * 9 + 1, columns * 9 + 1), np.nan)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        canvas[row * 9 + 1 : row * 9 + 9, column * 9 + 1 : column * 9 + 9] = image
    return canvas


def _plot_rbm(path: Path, weights: Any, sample_means: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 5))
    axes[0].imshow(_tile_digits(np.asarray(weights).T, 4), cmap="RdBu_r")
    axes[0].set(title="learned filters (columns of W)")
    axes[1].imshow(_tile_digits(sample_means, 8), cmap="gray_r", vmin=0, vmax=1)
    axes[1].set(title="block-Gibbs samples (visible means)")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


_NoiseConditionalApply = Callable[[Any, jax.Array, jax.Array], jax.Array]


def run_diffusion(
    out_dir: Path,
    *,
    seed: int = 0,
    dataset: str = "eight_gaussians",
    num_train_steps: int = 4000,
    num_samples: int = 2000,
    num_ancestral_steps: int = 250,
    num_ode_steps: int = 50,
    num_langevin_levels: int = 100,
    num_likelihood_points: int = 1000,
    num_digits_train_steps: int = 6000,
    num_digit_samples: int = 1000,
    num_classifier_steps: int = 2000,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Learn noise-conditional scores by eq. (11.16) on a 2-D toy and on digits; sample them.

    Both models are :class:`~ebm_jax.models.NoiseConditionalScore` networks on
    the linear schedule with :math:`T = 1000` (Ho et al. 2020), trained by the
    ε-weighted denoising loss :math:`\\|\\varepsilon + \\sqrt\\beta S_w(x',
    \\beta)\\|^2` (eq. 11.16 divided by :math:`\\beta`, same minimiser) with Adam
    on a cosine-decayed step size.

    2-D: the toy is divided by its standard deviation for training and the
    samples multiplied back. Ancestral sampling, the probability-flow ODE (Heun)
    and annealed Langevin dynamics start from the same :math:`x_T \\sim N(0, I)`;
    each is compared with test data by MMD² and SW₂, beside two references: train
    data (the floor a perfect model reaches at this sample size) and the scaled
    starting points (which already match the data's mean and covariance). The
    probability-flow test NLL is that of :math:`p_{\\bar\\beta_1}`, the data
    perturbed by :math:`\\bar\\beta_1 = 10^{-4}` (negligible here), in the
    data's units, beside the exact NLL of the true density where the toy has one.

    Digits: pixels scaled to [-1, 1]; ancestral samples clipped back to [0, 1]
    and compared with the test digits by the Fréchet distance in the features of
    a classifier trained on the train digits, beside train digits (the floor)
    and the starting noise.

    Args:
      out_dir: where ``diffusion.json``, ``diffusion_2d.png`` and
        ``diffusion_digits.png`` are written.
      seed: seeds every key of the section.
      dataset: a key of :data:`ebm_jax.data.TOY_DATASETS`.
      num_train_steps: Adam steps on the toy (batch 256).
      num_samples: 2-D samples per sampler, and test points they are compared with.
      num_ancestral_steps: levels visited by ancestral sampling (its NFE), both parts.
      num_ode_steps: Heun steps of the probability-flow ODE (NFE twice that),
        for sampling and for the likelihood.
      num_langevin_levels: levels of annealed Langevin, 5 steps each.
      num_likelihood_points: test points of the probability-flow NLL.
      num_digits_train_steps: Adam steps on the digits (batch 128).
      num_digit_samples: generated digits, and train digits for the floor.
      num_classifier_steps: training steps of the feature classifier.
      progress: training progress bars; default off.

    Returns:
      The summary written to ``diffusion.json``: ``{"toy_2d": ..., "digits": ...}``.
    """
    noise_schedule = diffusion.linear_schedule(1000)
    toy = _diffusion_toy_2d(
        noise_schedule,
        seed=seed,
        dataset=dataset,
        num_train_steps=num_train_steps,
        num_samples=num_samples,
        num_ancestral_steps=num_ancestral_steps,
        num_ode_steps=num_ode_steps,
        num_langevin_levels=num_langevin_levels,
        num_likelihood_points=num_likelihood_points,
        progress=progress,
    )
    digits = _diffusion_digits(
        noise_schedule,
        seed=seed,
        num_train_steps=num_digits_train_steps,
        num_samples=num_digit_samples,
        num_ancestral_steps=num_ancestral_steps,
        num_classifier_steps=num_classifier_steps,
        progress=progress,
    )
    summary = {"toy_2d": toy.summary, "digits": digits.summary}
    _print_diffusion(summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "diffusion.json").write_text(json.dumps(summary, indent=2))
    _plot_diffusion_2d(out_dir / "diffusion_2d.png", toy.summary, toy.points)
    _plot_diffusion_digits(out_dir / "diffusion_digits.png", digits.points)
    return summary


class _SectionResult(NamedTuple):
    """A part's JSON summary and the arrays its figure draws."""

    summary: dict[str, Any]
    points: dict[str, np.ndarray]


def _fit_noise_conditional_score(
    rng_key: jax.Array,
    model: models.NoiseConditionalScore,
    noise_schedule: diffusion.NoiseSchedule,
    train: jax.Array,
    *,
    learning_rate: float,
    num_steps: int,
    batch_size: int,
    progress: bool | None,
) -> tuple[Callable[[jax.Array, jax.Array], jax.Array], training.FitResult, float]:
    """Fit ``model`` by the ε-weighted eq. (11.16); return ``S_w(x, β)``, the fit and seconds."""
    # Module.apply is typed for every Flax use; this one returns S_w(x, β) of one sample.
    score_apply = cast(_NoiseConditionalApply, model.apply)
    init_key, fit_key = jax.random.split(rng_key)
    start = time.perf_counter()
    fit = training.fit(
        fit_key,
        diffusion.denoising_loss(score_apply, schedule=noise_schedule),
        model.init(init_key, train[0], 0.5),
        optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.01)),
        train,
        num_steps=num_steps,
        batch_size=batch_size,
        chunk_size=min(500, num_steps),
        progress=False if progress is None else progress,
    )
    seconds = time.perf_counter() - start
    return functools.partial(score_apply, fit.params), fit, seconds


def _diffusion_toy_2d(
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
    progress: bool | None,
) -> _SectionResult:
    keys = jax.random.split(jax.random.key(seed + 3), 9)
    sampler = data.TOY_DATASETS[dataset]
    train, test = sampler(keys[0], 20_000), sampler(keys[1], 5_000)
    # One scale for both coordinates: the variance-preserving chain (11.5) expects unit-scale
    # data, and a scalar map changes log-densities by the constant d·log(scale).
    scale = float(jnp.std(train))
    score_fn, fit, train_seconds = _fit_noise_conditional_score(
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

    def distances(points: jax.Array) -> dict[str, float]:
        return {
            "mmd2_vs_test": float(diagnostics.mmd(points, reference)),
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
    summary = {
        "dataset": dataset,
        "objective": "eq. 11.16, epsilon-weighted",
        "schedule": f"linear, T = {noise_schedule.num_steps}",
        "data_scale": scale,
        "num_train_steps": num_train_steps,
        "train_seconds": train_seconds,
        "final_loss": float(jnp.mean(fit.losses[-100:])),
        "num_samples": num_samples,
        "samplers": {
            name: {"num_function_evaluations": nfe, **distances(scale * points)}
            for name, (points, nfe) in generated.items()
        },
        "train_vs_test": distances(train[:num_samples]),
        "noise_vs_test": distances(scale * initial),
        "probability_flow_test_nll": -float(jnp.mean(likelihood.log_likelihood))
        + log_scale_correction,
        "probability_flow_nll_nfe": likelihood.num_function_evaluations,
        "exact_test_nll": exact_test_nll,
        "num_likelihood_points": int(likelihood_points.shape[0]),
    }
    points = {"data": np.asarray(reference)} | {
        name: np.asarray(scale * samples) for name, (samples, _) in generated.items()
    }
    return _SectionResult(summary, points)


def _diffusion_digits(
    noise_schedule: diffusion.NoiseSchedule,
    *,
    seed: int,
    num_train_steps: int,
    num_samples: int,
    num_ancestral_steps: int,
    num_classifier_steps: int,
    progress: bool | None,
) -> _SectionResult:
    digits = data.load_digits()
    # Pixels in [-1, 1], as Ho et al. (2020) scale images: x_T ~ N(0, I) is then on their scale.
    train = 2.0 * jnp.asarray(digits.train) - 1.0
    keys = jax.random.split(jax.random.key(seed + 4), 5)
    score_fn, fit, train_seconds = _fit_noise_conditional_score(
        keys[0],
        models.NoiseConditionalScore.digits_8x8(),
        noise_schedule,
        train,
        learning_rate=2e-3,
        num_steps=num_train_steps,
        batch_size=128,
        progress=progress,
    )
    initial = diffusion.initial_noise(keys[1], num_samples, (train.shape[1],))
    ancestral = diffusion.ancestral_sample(
        keys[2], score_fn, noise_schedule, initial, num_steps=num_ancestral_steps
    )
    as_images = lambda points: jnp.clip((points + 1.0) / 2.0, 0.0, 1.0)
    samples = as_images(ancestral.samples)

    classifier = models.train_digit_classifier(
        keys[3],
        digits.train,
        digits.train_labels,
        digits.test,
        digits.test_labels,
        num_steps=num_classifier_steps,
    )
    test_features = np.asarray(classifier.features(digits.test))

    def frechet_to_test(images: jax.Array) -> float:
        return diagnostics.frechet_distance(np.asarray(classifier.features(images)), test_features)

    predicted = np.bincount(np.asarray(classifier.predict(samples)), minlength=10)
    summary = {
        "dataset": "8x8 digits, pixels scaled to [-1, 1] (1438 train / 359 test)",
        "objective": "eq. 11.16, epsilon-weighted",
        "schedule": f"linear, T = {noise_schedule.num_steps}",
        "num_train_steps": num_train_steps,
        "train_seconds": train_seconds,
        "final_loss": float(jnp.mean(fit.losses[-100:])),
        "num_samples": num_samples,
        "sampler": "ancestral",
        "num_function_evaluations": ancestral.num_function_evaluations,
        "classifier_test_accuracy": classifier.test_accuracy,
        "frechet_samples_vs_test": frechet_to_test(samples),
        "frechet_train_vs_test": frechet_to_test(digits.train[:num_samples]),
        "frechet_noise_vs_test": frechet_to_test(as_images(initial)),
        "predicted_digit_counts": predicted.tolist(),
    }
    points = {"samples": np.asarray(samples[:64]), "test": np.asarray(digits.test[:64])}
    return _SectionResult(summary, points)


def _print_diffusion(summary: dict[str, Any]) -> None:
    toy, digits = summary["toy_2d"], summary["digits"]
    print(f"== Diffusion: noise-conditional score on {toy['dataset']}, {toy['objective']}")
    print(
        f"  training                 {toy['num_train_steps']} Adam steps in "
        f"{toy['train_seconds']:.1f} s, final loss {toy['final_loss']:.4g}"
    )
    print(f"  {toy['num_samples']} samples vs test     NFE      MMD²      SW₂")
    rows = [(name.replace("_", " "), row["num_function_evaluations"], row) for name, row in
            toy["samplers"].items()]  # fmt: skip
    rows += [("train data (floor)", 0, toy["train_vs_test"])]
    rows += [("N(0, I) start", 0, toy["noise_vs_test"])]
    for label, nfe, row in rows:
        print(
            f"    {label:<20}{nfe or '':>6}  {row['mmd2_vs_test']:>9.2e}"
            f"  {row['sliced_wasserstein_vs_test']:>7.4f}"
        )
    exact = toy["exact_test_nll"]
    print(
        f"  probability-flow NLL     {toy['probability_flow_test_nll']:.4f} nats/point, "
        f"{toy['probability_flow_nll_nfe']} NFE"
        + ("" if exact is None else f"  (exact density {exact:.4f})")
    )
    print("== Diffusion: noise-conditional score on 8x8 digits, ancestral sampling")
    print(
        f"  training                 {digits['num_train_steps']} Adam steps in "
        f"{digits['train_seconds']:.1f} s, final loss {digits['final_loss']:.4g}"
    )
    print(
        f"  Fréchet distance         samples {digits['frechet_samples_vs_test']:.3g}, "
        f"train {digits['frechet_train_vs_test']:.3g} (floor), "
        f"noise {digits['frechet_noise_vs_test']:.3g}  ({digits['num_samples']} vs test, "
        f"NFE {digits['num_function_evaluations']})"
    )
    print(f"  classifier features      test accuracy {digits['classifier_test_accuracy']:.3f}")
    print(f"  predicted digits 0-9     {digits['predicted_digit_counts']}")


def _plot_diffusion_2d(path: Path, summary: dict[str, Any], points: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (x_min, x_max), (y_min, y_max) = data.TOY_BOUNDS
    figure, axes = plt.subplots(1, len(points), figsize=(4.3 * len(points), 4.9))
    for ax, (name, values) in zip(axes, points.items(), strict=True):
        ax.scatter(values[:, 0], values[:, 1], s=1, alpha=0.4)
        if name == "data":
            title = f"test data ({summary['dataset']})"
        else:
            row = summary["samplers"][name]
            title = (
                f"{name.replace('_', ' ')}, NFE {row['num_function_evaluations']}\n"
                f"MMD² {row['mmd2_vs_test']:.1e}, SW₂ {row['sliced_wasserstein_vs_test']:.3f}"
            )
        ax.set(title=title, xlim=(x_min, x_max), ylim=(y_min, y_max))
        ax.set_aspect("equal")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_diffusion_digits(path: Path, points: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    for ax, (name, title) in zip(
        axes, [("samples", "ancestral samples"), ("test", "test digits")], strict=True
    ):
        ax.imshow(_tile_digits(points[name], 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set(title=title, xticks=[], yticks=[])
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(out_dir: str = "out", *, quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Run every demo section; ``quick`` shrinks them to a smoke test."""
    if quick:
        sampling = run_sampling(
            Path(out_dir), seed=seed, num_chains=256, num_warmup=100, num_steps=100,
            num_reference=256,
        )  # fmt: skip
    else:
        sampling = run_sampling(Path(out_dir), seed=seed)
    if quick:
        score_matching = run_score_matching(
            Path(out_dir), seed=seed, num_train_steps=200, num_chains=256, num_warmup=50,
            num_steps=50, resolution=128,
        )  # fmt: skip
    else:
        score_matching = run_score_matching(Path(out_dir), seed=seed)
    if quick:
        rbm = run_rbm(
            Path(out_dir), seed=seed, num_train_steps=100, num_temperatures=100,
            num_sample_sweeps=20,
        )  # fmt: skip
    else:
        rbm = run_rbm(Path(out_dir), seed=seed)
    if quick:
        diffusion_summary = run_diffusion(
            Path(out_dir), seed=seed, num_train_steps=300, num_samples=500,
            num_ancestral_steps=50, num_ode_steps=10, num_langevin_levels=50,
            num_likelihood_points=200, num_digits_train_steps=200, num_digit_samples=128,
            num_classifier_steps=200,
        )  # fmt: skip
    else:
        diffusion_summary = run_diffusion(Path(out_dir), seed=seed)
    return {
        "sampling": sampling,
        "score_matching": score_matching,
        "rbm": rbm,
        "diffusion": diffusion_summary,
    }

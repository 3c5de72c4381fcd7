"""Section 3, contrastive divergence (§11.1): a binary RBM learned from binarised digits.

A Bernoulli RBM with 16 hidden units is learned from binarised 8×8 digits by
persistent contrastive divergence with its exact block-Gibbs sampler; its
exact train/test log-likelihoods (log Z by enumerating the hidden layer) are
printed beside those of independent pixels, and annealed importance
sampling's log Z beside the exact one. Writes ``rbm.png`` (learned filters,
Gibbs samples) and ``rbm.json``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebm_jax import data, losses, models, partition, training
from ebm_jax.chains import run_chains
from ebm_jax.demo import report


def run_rbm(
    out_dir: Path,
    *,
    seed: int = 0,
    num_hidden: int = 16,
    num_train_steps: int = 3000,
    num_temperatures: int = 1000,
    num_sample_sweeps: int = 1000,
    quick: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Learn a binary RBM on digits by PCD; exact log-likelihoods, AIS beside them.

    ``quick`` labels the printout, figure and JSON as quick mode; it changes
    no size (the caller picks them).
    """
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
        "quick_mode": quick,
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
        "num_sample_sweeps": num_sample_sweeps,
    }
    summary["warnings"] = rbm_warnings(summary)
    _print_rbm(summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rbm.json").write_text(json.dumps(summary, indent=2))
    _plot_rbm(out_dir / "rbm.png", fit.params["params"]["weights"], sample_means, summary)
    return summary


def rbm_warnings(summary: dict[str, Any]) -> list[str]:
    """A warning when the RBM's exact test log-likelihood does not beat independent pixels.

    Examples:
      >>> rbm_warnings({"test_log_likelihood": -20.1, "base_rate_test_log_likelihood": -24.7})
      []
      >>> print(*rbm_warnings({"test_log_likelihood": -24.8,
      ...                       "base_rate_test_log_likelihood": -24.7}))
      RBM: exact test log-likelihood -24.800 nats/image is not above independent pixels' -24.700
    """
    model, base = summary["test_log_likelihood"], summary["base_rate_test_log_likelihood"]
    if model > base:
        return []
    return [
        f"RBM: exact test log-likelihood {model:.3f} nats/image is not above "
        f"independent pixels' {base:.3f}"
    ]


def _print_rbm(summary: dict[str, Any]) -> None:
    title = f"Contrastive divergence: binary RBM ({summary['num_hidden']} hidden) on digits"
    print(report.header(title, quick=summary["quick_mode"]))
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
    report.print_warnings(summary["warnings"])


def _plot_rbm(path: Path, weights: Any, sample_means: Any, summary: dict[str, Any]) -> None:
    filters = np.asarray(weights).T  # (num_hidden, 64): one filter per hidden unit
    largest = float(np.max(np.abs(filters)))
    figure, axes = report.figure(
        f"Binary RBM ({summary['num_hidden']} hidden units) learned from 8×8 digits by PCD, "
        f"{summary['num_train_steps']} Adam steps; exact test log-likelihood "
        f"{summary['test_log_likelihood']:.2f} nats/image",
        quick=summary["quick_mode"],
        ncols=2,
        figsize=(11, 5.8),
    )
    filter_image = axes[0].imshow(
        report.tile_digits(filters, 4), cmap="RdBu_r", vmin=-largest, vmax=largest
    )
    figure.colorbar(filter_image, ax=axes[0], shrink=0.8, label="weight $W_{ij}$ (0 is white)")
    axes[0].set(
        title="learned filters: column j of W as an 8×8 image",
        xlabel=f"{len(filters)} hidden units, 4 per row",
    )
    sample_image = axes[1].imshow(
        report.tile_digits(sample_means, 8), cmap="gray_r", vmin=0, vmax=1
    )
    figure.colorbar(sample_image, ax=axes[1], shrink=0.8, label="P(pixel on | h) = E[v | h]")
    axes[1].set(
        title=f"block-Gibbs samples after {summary['num_sample_sweeps']} sweeps",
        xlabel=f"{len(sample_means)} independent chains from uniform random pixels",
    )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    report.save(figure, path)

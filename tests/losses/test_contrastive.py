"""Contrastive divergence: the surrogate, its gradient, persistent chains and replay buffers."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ebm_jax.losses as losses
from ebm_jax import training
from ebm_jax.samplers.base import SamplingAlgorithm
from ebm_jax.samplers.gibbs import GibbsState
from ebm_jax.samplers.proposal import MHInfo
from tests.helpers import Z


def gaussian_logdensity(mean, x):
    """Unit-variance Gaussian with a learnable mean: grad_mean f = x - mean."""
    return -0.5 * jnp.sum((x - mean) ** 2)


def shift_sampler(params):
    """A deterministic 'kernel' x -> x + params that depends on the parameters."""

    def step(rng_key, state):
        del rng_key
        info = MHInfo(jnp.ones(()), jnp.array(True), jnp.array(False))
        return GibbsState(state.position + params), info

    return SamplingAlgorithm(GibbsState, step)


def test_surrogate_value_and_stopped_gradient_with_known_negatives():
    """With x⁻ = x⁺ + kμ the value is closed-form and ∇μ L = mean x⁻ − mean x⁺ = kμ.

    Without the stop-gradient through the chains, the gradient would also
    carry ∂x⁻/∂μ = k and differ.
    """
    num_steps, alpha = 3, 0.2
    mean = jnp.array([0.5, -1.0])
    batch = jnp.asarray(np.random.default_rng(0).normal(size=(16, 2)), jnp.float32)
    loss_fn = losses.contrastive_divergence(
        gaussian_logdensity, sampler=shift_sampler, num_steps=num_steps, regularization=alpha
    )
    negatives = batch + num_steps * mean
    f_pos = -0.5 * np.sum((np.asarray(batch) - np.asarray(mean)) ** 2, axis=1)
    f_neg = -0.5 * np.sum((np.asarray(negatives) - np.asarray(mean)) ** 2, axis=1)
    expected = f_neg.mean() - f_pos.mean() + alpha * (np.mean(f_pos**2) + np.mean(f_neg**2))
    value, gradient = jax.value_and_grad(loss_fn)(mean, jax.random.key(0), batch)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    pos, neg, mu = np.asarray(batch), np.asarray(negatives), np.asarray(mean)
    expected_gradient = (neg.mean(0) - pos.mean(0)) + 2 * alpha * (
        np.mean(f_pos[:, None] * (pos - mu), axis=0) + np.mean(f_neg[:, None] * (neg - mu), axis=0)
    )
    np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-4, atol=1e-5)

    plain = losses.contrastive_divergence(gaussian_logdensity, sampler=shift_sampler, num_steps=3)
    np.testing.assert_allclose(
        jax.grad(plain)(mean, jax.random.key(0), batch), num_steps * mean, rtol=1e-5
    )


def test_long_cd_chains_give_the_likelihood_gradient():
    """CD-k with mixed MALA chains: E[∇L] = μ − mean(x⁺), the gradient of the mean NLL.

    Each of the N chains contributes one independent draw of x⁻ ~ N(μ, I), so
    the estimate's standard error is 1/√N per coordinate.
    """
    num_chains = 1024
    mean = jnp.array([0.3, -0.2])
    batch = jax.random.normal(jax.random.key(1), (num_chains, 2)) + jnp.array([1.0, -1.0])
    loss_fn = losses.contrastive_divergence(gaussian_logdensity, step_size=0.5, num_steps=60)
    gradient = jax.jit(jax.grad(loss_fn))(mean, jax.random.key(2), batch)
    exact = mean - jnp.mean(batch, axis=0)
    assert np.all(np.abs(np.asarray(gradient - exact)) < Z / np.sqrt(num_chains))

    # CD-1 with a tiny step barely moves the chains: the gradient collapses to ~0.
    short = losses.contrastive_divergence(gaussian_logdensity, step_size=1e-4, num_steps=1)
    tiny = jax.grad(short)(mean, jax.random.key(2), batch)
    assert float(jnp.max(jnp.abs(tiny))) < 0.1 * float(jnp.max(jnp.abs(exact)))


def test_replay_buffer_keeps_the_reinitialisation_fraction():
    buffer_size, num_negatives, probability, num_updates = 2000, 100, 0.05, 60
    pcd = losses.persistent_contrastive_divergence(
        gaussian_logdensity,
        sampler=shift_sampler,
        num_negatives=num_negatives,
        reinit_probability=probability,
        reinit_fn=lambda key: jnp.full((2,), 100.0),
    )
    chains = pcd.init(jnp.zeros((buffer_size, 2)))
    batch = jnp.zeros((8, 2))

    # One update with a zero shift: only restarted chains change, and only picked ones.
    _, one = pcd.loss(jnp.zeros(2), jax.random.key(0), batch, chains)
    changed = np.any(np.asarray(one.positions) != 0.0, axis=1)
    assert changed.sum() == int(one.num_reinitialised) <= num_negatives
    assert np.all(np.asarray(one.positions)[changed] == 100.0)

    @jax.jit
    def run(chains):
        def body(chains, key):
            return pcd.loss(jnp.zeros(2), key, batch, chains)[1], None

        keys = jax.random.split(jax.random.key(1), num_updates)
        return jax.lax.scan(body, chains, keys)[0]

    final = run(chains)
    draws = num_updates * num_negatives
    fraction = int(final.num_reinitialised) / draws
    binomial_se = np.sqrt(probability * (1 - probability) / draws)
    assert abs(fraction - probability) < Z * binomial_se
    assert int(final.num_updates) == num_updates


def test_pcd_moves_all_chains_and_counts_nonfinite_proposals():
    """Plain PCD moves every chain; NaN regions of f are rejected and counted, never stored."""

    def nan_beyond_two(mean, x):
        return jnp.where(x[0] > 2.0, jnp.nan, gaussian_logdensity(mean, x))

    pcd = losses.persistent_contrastive_divergence(nan_beyond_two, step_size=1.0, num_steps=5)
    chains = pcd.init(jnp.full((64, 2), 1.9))
    loss, chains = jax.jit(pcd.loss)(jnp.zeros(2), jax.random.key(0), jnp.ones((4, 2)), chains)
    positions = np.asarray(chains.positions)
    assert np.isfinite(float(loss))
    assert np.all(np.isfinite(positions)) and np.all(positions[:, 0] <= 2.0)
    assert np.all(np.any(positions != 1.9, axis=1))
    assert int(chains.num_nonfinite) > 0
    assert 0.0 < float(chains.acceptance_rate) < 1.0


def log_scale_gaussian(params, x):
    """N(μ, σ²I) up to its normaliser, σ = exp(log_scale): PCD must learn Z's dependence on σ."""
    return -0.5 * jnp.exp(-2.0 * params["log_scale"]) * jnp.sum((x - params["mean"]) ** 2)


def test_pcd_trained_with_fit_reaches_the_maximum_likelihood_estimate():
    """The MLE of an isotropic Gaussian is the sample mean and the pooled sample sd."""
    data = jax.random.normal(jax.random.key(0), (4000, 2)) * 0.5 + jnp.array([2.0, -1.0])
    pcd = losses.persistent_contrastive_divergence(log_scale_gaussian, step_size=0.05, num_steps=2)
    params = {"mean": jnp.zeros(2), "log_scale": jnp.zeros(())}
    optimizer = optax.adam(optax.cosine_decay_schedule(0.05, 1500, alpha=0.02))
    result = training.fit(
        jax.random.key(1),
        pcd.loss,
        params,
        optimizer,
        data,
        num_steps=1500,
        batch_size=200,
        chunk_size=500,
        loss_state=pcd.init(jnp.zeros((500, 2))),
    )
    mle_mean = np.asarray(jnp.mean(data, axis=0))
    mle_scale = float(jnp.sqrt(jnp.mean((data - mle_mean) ** 2)))
    np.testing.assert_allclose(result.params["mean"], mle_mean, atol=0.02)
    np.testing.assert_allclose(np.exp(float(result.params["log_scale"])), mle_scale, rtol=0.02)
    assert int(result.loss_state.num_updates) == 1500
    assert 0.5 < float(result.loss_state.acceptance_rate) <= 1.0


def test_persistent_errors_are_named():
    pcd = losses.persistent_contrastive_divergence(
        gaussian_logdensity, step_size=0.1, num_negatives=10
    )
    with pytest.raises(ValueError, match="num_negatives"):
        pcd.init(jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match="initial_positions"):
        pcd.init(jnp.full((20, 2), jnp.nan))
    chains = pcd.init(jnp.zeros((20, 2)))
    with pytest.raises(ValueError, match="event shape"):
        pcd.loss(jnp.zeros(3), jax.random.key(0), jnp.zeros((4, 3)), chains)
    bad_reinit = losses.persistent_contrastive_divergence(
        gaussian_logdensity,
        step_size=0.1,
        reinit_probability=0.1,
        reinit_fn=lambda key: jnp.zeros(3),
    )
    with pytest.raises(ValueError, match="reinit_fn"):
        bad_reinit.loss(jnp.zeros(2), jax.random.key(0), jnp.zeros((4, 2)), chains)


def test_pcd_gradient_on_a_tiny_rbm_is_the_exact_likelihood_gradient():
    """PCD with exact block Gibbs vs ∇θ[log Z − mean f(x⁺)], log Z by enumeration.

    The chains run 40 updates at fixed parameters (burn-in), then the gradient
    of the next update is compared with the exact gradient within z standard
    errors of its negative-phase mean, sd(∇θ f(x⁻_n)) / √N over N independent chains.
    """
    from ebm_jax.models import BernoulliRBM

    rbm = BernoulliRBM(num_hidden=4)
    num_visible, num_chains = 6, 4096
    rng = np.random.default_rng(0)
    params = {
        "params": {
            "weights": jnp.asarray(rng.normal(0, 0.7, (num_visible, 4)), jnp.float32),
            "visible_bias": jnp.asarray(rng.normal(0, 0.5, num_visible), jnp.float32),
            "hidden_bias": jnp.asarray(rng.normal(0, 0.5, 4), jnp.float32),
        }
    }
    batch = jnp.asarray(rng.integers(0, 2, (64, num_visible)), jnp.float32)
    pcd = losses.persistent_contrastive_divergence(rbm.apply, sampler=rbm.block_gibbs)
    chains = pcd.init(jnp.asarray(rng.integers(0, 2, (num_chains, num_visible)), jnp.float32))

    @jax.jit
    def burn_in(chains):
        def body(chains, key):
            return pcd.loss(params, key, batch, chains)[1], None

        return jax.lax.scan(body, chains, jax.random.split(jax.random.key(1), 40))[0]

    chains = burn_in(chains)
    gradient, new_chains = jax.grad(pcd.loss, has_aux=True)(
        params, jax.random.key(2), batch, chains
    )

    def negative_log_likelihood(params):
        mean_f = jnp.mean(jax.vmap(rbm.apply, in_axes=(None, 0))(params, batch))
        return rbm.exact_log_partition(params) - mean_f

    exact = jax.grad(negative_log_likelihood)(params)
    per_chain = jax.vmap(jax.grad(rbm.apply), in_axes=(None, 0))(params, new_chains.positions)
    standard_error = jax.tree.map(lambda g: jnp.std(g, axis=0) / np.sqrt(num_chains), per_chain)
    for estimate, truth, se in zip(
        jax.tree.leaves(gradient),
        jax.tree.leaves(exact),
        jax.tree.leaves(standard_error),
        strict=True,
    ):
        assert np.all(np.abs(np.asarray(estimate - truth)) < Z * np.asarray(se) + 1e-6)
    assert max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(exact)) > 0.05


# ------------------------------------------------------------------ pytree samples, foreign kernels

DICT_MEAN = {"scalar": jnp.array(2.0), "vector": jnp.array([-1.0, 0.5, 1.5])}


def dict_gaussian_logdensity(mean, x):
    """N(mean, I) over a dict sample {"scalar": (), "vector": (3,)}; grad_mean f = x - mean."""
    return -0.5 * sum(jnp.sum((x[name] - mean[name]) ** 2) for name in x)


def dict_data(rng_key, num_examples):
    scalar_key, vector_key = jax.random.split(rng_key)
    return {
        "scalar": DICT_MEAN["scalar"] + jax.random.normal(scalar_key, (num_examples,)),
        "vector": DICT_MEAN["vector"] + jax.random.normal(vector_key, (num_examples, 3)),
    }


def blackjax_mala_sampler(step_size):
    blackjax = pytest.importorskip("blackjax")

    def sampler(mean):
        return blackjax.mala(lambda x: dict_gaussian_logdensity(mean, x), step_size)

    return sampler


def zeros_like_mean(num_chains=None):
    shape = () if num_chains is None else (num_chains,)
    return jax.tree.map(lambda leaf: jnp.zeros(shape + leaf.shape), DICT_MEAN)


@pytest.mark.parametrize("kernel", ["ebm_jax", "blackjax"])
def test_long_cd_chains_on_dict_samples_give_the_likelihood_gradient(kernel):
    """E[∇L] = mean − mean(x⁺) leaf by leaf, within z/√N, for ej.samplers.mala and blackjax.mala."""
    num_chains = 1024
    batch = dict_data(jax.random.key(1), num_chains)
    if kernel == "ebm_jax":
        loss_fn = losses.contrastive_divergence(
            dict_gaussian_logdensity, step_size=0.5, num_steps=60
        )
    else:
        loss_fn = losses.contrastive_divergence(
            dict_gaussian_logdensity, sampler=blackjax_mala_sampler(0.5), num_steps=60
        )
    mean = {"scalar": jnp.array(0.5), "vector": jnp.array([0.3, -0.2, 0.0])}
    gradient = jax.jit(jax.grad(loss_fn))(mean, jax.random.key(2), batch)
    exact = jax.tree.map(lambda m, x: m - jnp.mean(x, axis=0), mean, batch)
    assert jax.tree.structure(gradient) == jax.tree.structure(mean)
    for estimate, truth in zip(jax.tree.leaves(gradient), jax.tree.leaves(exact), strict=True):
        assert np.all(np.abs(np.asarray(estimate - truth)) < Z / np.sqrt(num_chains))
        assert np.all(np.abs(np.asarray(truth)) > 4 * Z / np.sqrt(num_chains))  # not ~0


def test_pcd_on_dict_samples_fits_the_mean_of_every_leaf():
    """A short PCD fit of N(mean, I) over dict samples reaches the sample mean (the MLE)."""
    data = dict_data(jax.random.key(0), 2000)
    pcd = losses.persistent_contrastive_divergence(
        dict_gaussian_logdensity, step_size=0.5, num_steps=2
    )
    chains = pcd.init(zeros_like_mean(256))
    result = training.fit(
        jax.random.key(1),
        pcd.loss,
        zeros_like_mean(),
        optax.adam(optax.cosine_decay_schedule(0.1, 400, alpha=0.05)),
        data,
        num_steps=400,
        batch_size=200,
        loss_state=chains,
    )
    mle = jax.tree.map(lambda x: jnp.mean(x, axis=0), data)
    for name in DICT_MEAN:
        np.testing.assert_allclose(result.params[name], mle[name], atol=0.05)
    positions = result.loss_state.positions
    assert jax.tree.map(jnp.shape, positions) == {"scalar": (256,), "vector": (256, 3)}
    assert int(result.loss_state.num_updates) == 400
    assert 0.5 < float(result.loss_state.acceptance_rate) <= 1.0


def test_pcd_replay_buffer_with_blackjax_mala_on_dict_samples():
    """blackjax.mala as the sampler: chains move, restarts hit every leaf, no non-finite flag."""
    buffer_size, num_negatives = 500, 100
    pcd = losses.persistent_contrastive_divergence(
        dict_gaussian_logdensity,
        sampler=blackjax_mala_sampler(0.05),
        num_steps=3,
        num_negatives=num_negatives,
        reinit_probability=0.5,
        reinit_fn=lambda key: {"scalar": jnp.array(100.0), "vector": jnp.full((3,), 100.0)},
    )
    chains = pcd.init(zeros_like_mean(buffer_size))
    batch = dict_data(jax.random.key(0), 32)
    loss, new = jax.jit(pcd.loss)(DICT_MEAN, jax.random.key(1), batch, chains)
    assert np.isfinite(float(loss))
    scalar, vector = np.asarray(new.positions["scalar"]), np.asarray(new.positions["vector"])
    moved = scalar != 0.0
    assert moved.sum() == num_negatives  # a continuous kernel moves every picked chain
    assert np.all(np.all(vector != 0.0, axis=1) == moved)
    # Three steps with tau = 0.05 move a chain restarted at 100 to about 100 (1 - tau)^3 = 86.
    restarted = scalar > 50.0
    assert restarted.sum() == int(new.num_reinitialised) > 0
    assert np.all(vector[restarted] > 50.0) and np.all(vector[moved & ~restarted] < 50.0)
    assert int(new.num_nonfinite) == 0  # BlackJAX's info has no is_nonfinite
    assert 0.0 < float(new.acceptance_rate) <= 1.0


def test_default_reinit_noise_follows_the_sample_pytree():
    pcd = losses.persistent_contrastive_divergence(
        dict_gaussian_logdensity, sampler=shift_dict_sampler, reinit_probability=0.9
    )
    chains = pcd.init(zeros_like_mean(400))
    _, new = pcd.loss(zeros_like_mean(), jax.random.key(0), dict_data(jax.random.key(1), 8), chains)
    restarted = np.asarray(new.positions["scalar"]) != 0.0
    assert restarted.sum() == int(new.num_reinitialised)
    vector = np.asarray(new.positions["vector"])
    assert np.all(np.all(vector[restarted] != 0.0, axis=1)) and np.all(vector[~restarted] == 0.0)
    noise = np.concatenate([np.asarray(new.positions["scalar"])[restarted], vector[restarted, 0]])
    assert abs(noise.std() - 1.0) < 0.1  # standard Gaussian restarts on every leaf


class BareInfo(NamedTuple):
    """An info with neither acceptance_rate nor is_nonfinite."""

    is_accepted: jax.Array


def shift_dict_sampler(params):
    """A deterministic kernel x -> x + params on dict samples, whose info lacks the counters."""

    def step(rng_key, state):
        del rng_key
        return GibbsState(jax.tree.map(jnp.add, state.position, params)), BareInfo(jnp.array(True))

    return SamplingAlgorithm(GibbsState, step)


def test_missing_info_fields_give_nan_acceptance_and_no_nonfinite_count():
    pcd = losses.persistent_contrastive_divergence(
        dict_gaussian_logdensity, sampler=shift_dict_sampler, num_steps=2
    )
    chains = pcd.init(zeros_like_mean(16))
    _, new = pcd.loss(DICT_MEAN, jax.random.key(0), dict_data(jax.random.key(1), 8), chains)
    assert np.isnan(float(new.acceptance_rate)) and int(new.num_nonfinite) == 0
    np.testing.assert_allclose(new.positions["vector"], np.tile(2 * DICT_MEAN["vector"], (16, 1)))


def test_pytree_batches_fail_with_named_errors():
    pcd = losses.persistent_contrastive_divergence(
        dict_gaussian_logdensity,
        step_size=0.1,
        reinit_probability=0.1,
        reinit_fn=lambda key: {"scalar": jnp.zeros(()), "vector": jnp.zeros(2)},
    )
    with pytest.raises(ValueError, match="same leading batch size"):
        pcd.init({"scalar": jnp.zeros(4), "vector": jnp.zeros((5, 3))})
    with pytest.raises(ValueError, match="initial_positions"):
        pcd.init({"scalar": jnp.full(4, jnp.nan), "vector": jnp.zeros((4, 3))})
    chains = pcd.init(zeros_like_mean(10))
    with pytest.raises(ValueError, match="event shape"):
        pcd.loss(DICT_MEAN, jax.random.key(0), {"vector": jnp.zeros((4, 3))}, chains)
    with pytest.raises(ValueError, match="reinit_fn"):
        pcd.loss(DICT_MEAN, jax.random.key(0), dict_data(jax.random.key(1), 4), chains)
    not_a_kernel = losses.contrastive_divergence(
        dict_gaussian_logdensity, sampler=lambda params: object()
    )
    with pytest.raises(TypeError, match="init"):
        not_a_kernel(DICT_MEAN, jax.random.key(0), dict_data(jax.random.key(1), 4))

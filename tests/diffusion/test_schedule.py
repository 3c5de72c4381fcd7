"""Noise schedules and the forward chain: closed forms of ᾱ_t, and the chain's x_t | x_0 law.

x_t | x_0 ~ N(√ᾱ_t x_0, (1 − ᾱ_t) I) for the chain of eq. (11.4), and being a
Markov chain, Cov(x_s, x_t | x_0) = √(ᾱ_t/ᾱ_s)(1 − ᾱ_s) I for s ≤ t.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.diffusion import forward, schedule
from tests.helpers import assert_mean_within_mcse


def test_linear_schedule_endpoints_and_spacing():
    noise_schedule = schedule.linear_schedule(1000)
    betas = np.asarray(noise_schedule.betas, dtype=np.float64)
    assert noise_schedule.num_steps == 1000
    np.testing.assert_allclose([betas[0], betas[-1]], [1e-4, 0.02], rtol=1e-6)
    np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999, rtol=1e-3)


@pytest.mark.parametrize(
    "make_schedule, float64_betas",
    [
        (lambda: schedule.linear_schedule(1000), np.linspace(1e-4, 0.02, 1000)),
        (
            lambda: schedule.from_betas(np.random.default_rng(0).uniform(1e-5, 0.5, 50)),
            np.random.default_rng(0).uniform(1e-5, 0.5, 50),
        ),
    ],
    ids=["linear", "random"],
)
def test_alphas_cumprod_is_the_cumulative_product(make_schedule, float64_betas):
    """ᾱ_t = Π(1 − β_s) and β̄_t = 1 − ᾱ_t to float32 precision, relative even at β̄_1 = β_1."""
    noise_schedule = make_schedule()
    alphas_cumprod = np.cumprod(1.0 - float64_betas)
    np.testing.assert_allclose(noise_schedule.alphas_cumprod, alphas_cumprod, rtol=2e-6)
    # A float32 1 − ᾱ would be off by ~1e-3 relative at β̄_1 = 1e-4.
    np.testing.assert_allclose(noise_schedule.marginal_betas, 1.0 - alphas_cumprod, rtol=2e-6)
    np.testing.assert_allclose(noise_schedule.marginal_betas[0], float64_betas[0], rtol=1e-6)


def test_cosine_schedule_matches_its_closed_form_where_unclipped():
    num_steps, offset, max_beta = 100, 0.008, 0.999
    noise_schedule = schedule.cosine_schedule(num_steps, offset, max_beta)

    def g(t):
        return math.cos((t / num_steps + offset) / (1 + offset) * math.pi / 2) ** 2

    closed_form = np.array([g(t) / g(0) for t in range(1, num_steps + 1)])
    per_step = 1.0 - closed_form / np.concatenate([[1.0], closed_form[:-1]])
    unclipped = np.cumprod(per_step < max_beta).astype(bool)
    assert unclipped.sum() == num_steps - 1  # only β_T = 1 − g(T)/g(T−1) = 1 is clipped
    np.testing.assert_allclose(
        noise_schedule.alphas_cumprod[unclipped], closed_form[unclipped], rtol=1e-5
    )
    np.testing.assert_allclose(noise_schedule.betas[-1], max_beta, rtol=1e-6)


def test_forward_chain_marginals_and_markov_covariance_match_the_closed_form():
    """x_t | x_0 moments within 4 MCSE at every t (4000 chains), and the lag covariance."""
    noise_schedule = schedule.linear_schedule(20, beta_start=0.01, beta_end=0.2)
    x0 = jnp.array([1.5, -2.0])
    keys = jax.random.split(jax.random.key(0), 4000)
    paths = np.asarray(
        jax.jit(jax.vmap(forward.forward_chain, in_axes=(0, None, None)))(keys, x0, noise_schedule),
        dtype=np.float64,
    )
    assert paths.shape == (4000, 20, 2)
    alphas_cumprod = np.asarray(noise_schedule.alphas_cumprod, dtype=np.float64)
    means = np.sqrt(alphas_cumprod)[:, None] * np.asarray(x0)
    assert_mean_within_mcse(paths.reshape(4000, -1), means.reshape(-1), what="E[x_t | x_0]")
    centred = paths - means
    variances = np.repeat(1.0 - alphas_cumprod, 2)
    assert_mean_within_mcse((centred**2).reshape(4000, -1), variances, what="Var[x_t | x_0]")

    early, late = 4, 14  # steps s = 5 and t = 15
    lag = np.sqrt(alphas_cumprod[late] / alphas_cumprod[early]) * (1.0 - alphas_cumprod[early])
    products = centred[:, early] * centred[:, late]  # (chains, 2): per coordinate
    cross = centred[:, early, 0] * centred[:, late, 1]
    assert_mean_within_mcse(
        np.column_stack([products, cross]), [lag, lag, 0.0], what="Cov(x_s, x_t | x_0)"
    )


BAD_CALLS = [
    (lambda: schedule.from_betas([]), ValueError, "betas"),
    (lambda: schedule.from_betas([[0.1, 0.2]]), ValueError, "betas"),
    (lambda: schedule.from_betas([0.5, 1.0]), ValueError, "betas"),
    (lambda: schedule.from_betas([0.5, float("nan")]), ValueError, "betas"),
    (lambda: schedule.linear_schedule(0), ValueError, "num_steps"),
    (lambda: schedule.linear_schedule(10.0), TypeError, "num_steps"),
    (lambda: schedule.linear_schedule(10, beta_start=-1e-4), ValueError, "beta_start"),
    (lambda: schedule.linear_schedule(10, beta_end=1.0), ValueError, "beta_end"),
    (lambda: schedule.cosine_schedule(10, offset=0.0), ValueError, "offset"),
    (lambda: schedule.cosine_schedule(10, max_beta=1.0), ValueError, "max_beta"),
    (
        lambda: forward.forward_chain(jax.random.key(0), jnp.zeros(2), jnp.full(3, 0.1)),
        TypeError,
        "schedule",
    ),
    (
        lambda: forward.forward_chain(
            jax.random.key(0), jnp.array([0.0, jnp.nan]), schedule.linear_schedule(3)
        ),
        ValueError,
        "x0",
    ),
    (
        lambda: forward.forward_chain(0, jnp.zeros(2), schedule.linear_schedule(3)),
        TypeError,
        "rng_key",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), BAD_CALLS)
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()

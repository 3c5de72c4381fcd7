"""Denoising score matching (Vincent 2011): closed forms on a Gaussian model.

For f(x) = −½(x−μ)ᵀP(x−μ), data with mean x̄ and ML covariance S, and
x̃ = x + σε,

    E_ε[J_σ] = ½ tr(P² (S + (x̄−μ)(x̄−μ)ᵀ + σ² I)) − tr P + d / (2σ²),

the exact score-matching objective of the σ-smoothed data plus a constant,
minimised at P = (S + σ² I)⁻¹, not S⁻¹.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej
import ebm_jax.losses as losses
from tests.helpers import assert_mean_within_mcse
from tests.losses.test_score_matching import (
    DIMENSION,
    TRIANGLE,
    assert_precision_within_mcse,
    gaussian_data,
    gaussian_logdensity,
    gaussian_score,
    sample_moments,
)

SIGMA = 0.5


def test_expected_loss_equals_closed_form():
    """Mean over 4000 noise draws within 4 SE; an EBM's score (ej.score) gives the same values."""
    with jax.enable_x64(True):
        data = jnp.asarray(gaussian_data())
        sample_mean, covariance = sample_moments(np.asarray(data))
        rng = np.random.default_rng(3)
        mean = rng.normal(size=DIMENSION)
        asymmetric = rng.normal(size=(DIMENSION, DIMENSION)) + 3.0 * np.eye(DIMENSION)
        precision = 0.5 * (asymmetric + asymmetric.T)
        params = {"mean": jnp.asarray(mean), "precision": jnp.asarray(asymmetric)}
        network = losses.denoising_score_matching(gaussian_score, SIGMA)
        energy_based = losses.denoising_score_matching(
            ej.score(gaussian_logdensity, argnum=1), SIGMA
        )
        keys = jax.random.split(jax.random.key(1), 4000)
        from_network, from_ebm = jax.jit(
            jax.vmap(lambda key: (network(params, key, data), energy_based(params, key, data)))
        )(keys)
        np.testing.assert_allclose(from_network, from_ebm, rtol=1e-12)

        offset = sample_mean - mean
        smoothed = covariance + np.outer(offset, offset) + SIGMA**2 * np.eye(DIMENSION)
        expected = (
            0.5 * np.trace(precision @ precision @ smoothed)
            - np.trace(precision)
            + DIMENSION / (2.0 * SIGMA**2)
        )
        assert_mean_within_mcse(from_network, expected, what="E[DSM loss]")


def test_minimiser_is_smoothed_precision_and_biased():
    """50 noise draws per sample: the minimiser is (S + σ²I)⁻¹ within MC error, and not S⁻¹."""
    with jax.enable_x64(True):
        data = jnp.asarray(gaussian_data())
        sample_mean, covariance = sample_moments(np.asarray(data))
        loss_fn = losses.denoising_score_matching(gaussian_score, SIGMA)
        batch = jnp.tile(data, (50, 1))
        smoothed_precision = np.linalg.inv(covariance + SIGMA**2 * np.eye(DIMENSION))
        minimisers = assert_precision_within_mcse(
            loss_fn, batch, jnp.asarray(sample_mean), smoothed_precision
        )
        with pytest.raises(AssertionError):
            assert_mean_within_mcse(minimisers, np.linalg.inv(covariance)[TRIANGLE])

"""RWMH: MCSE-gated moments for isotropic, diagonal and full-covariance proposals."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej
from tests.helpers import assert_mean_within_mcse
from tests.samplers.test_langevin import (
    COVARIANCE,
    MEAN,
    MIXTURE_MEAN,
    MIXTURE_SECOND_MOMENT,
    correlated_gaussian,
    gaussian_mixture,
)


@pytest.mark.parametrize(
    "algorithm",
    [
        ej.samplers.rwmh(correlated_gaussian, 1.2),
        ej.samplers.rwmh(correlated_gaussian, 1.2, inverse_mass_matrix=jnp.diag(COVARIANCE)),
        ej.samplers.rwmh(correlated_gaussian, 1.7, inverse_mass_matrix=COVARIANCE),
    ],
    ids=["isotropic", "diagonal", "full"],
)
def test_rwmh_moments_correlated_gaussian(algorithm):
    initial = jax.random.normal(jax.random.key(1), (256, 2)) * 2.0
    result = ej.run_chains(jax.random.key(0), algorithm, initial, 600, num_burnin=300)
    samples = np.asarray(result.samples, dtype=np.float64)
    assert_mean_within_mcse(samples.mean(axis=1), MEAN)
    centred = samples - np.asarray(MEAN)
    outer = np.einsum("cti,ctj->cij", centred, centred) / samples.shape[1]
    assert_mean_within_mcse(outer.reshape(256, 4), COVARIANCE.reshape(4), what="covariance")


def test_rwmh_moments_gaussian_mixture():
    initial = jax.random.normal(jax.random.key(2), (512, 2)) * 2.0
    algorithm = ej.samplers.rwmh(gaussian_mixture, 2.0)
    result = ej.run_chains(jax.random.key(3), algorithm, initial, 800, num_burnin=300)
    samples = np.asarray(result.samples, dtype=np.float64)
    assert_mean_within_mcse(samples.mean(axis=1), MIXTURE_MEAN)
    assert_mean_within_mcse((samples**2).mean(axis=1), MIXTURE_SECOND_MOMENT)


def test_rwmh_bad_scale_is_named():
    for scale in (0.0, -2.0, float("nan")):
        with pytest.raises(ValueError, match="scale"):
            ej.samplers.rwmh(correlated_gaussian, scale)

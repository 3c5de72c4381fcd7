"""MALA and ULA: MCSE-gated moments and the closed forms of DESIGN.md."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej
from tests.helpers import assert_mean_within_mcse

COVARIANCE = np.array([[1.0, 0.8], [0.8, 2.0]])
PRECISION = jnp.asarray(np.linalg.inv(COVARIANCE))
MEAN = jnp.array([1.0, -1.0])


def correlated_gaussian(x):
    centred = x - MEAN
    return -0.5 * centred @ PRECISION @ centred


MIXTURE_MEANS = jnp.array([[-1.5, 0.0], [1.5, 0.0]])
MIXTURE_WEIGHTS = jnp.array([0.3, 0.7])


def gaussian_mixture(x):
    """0.3 N((-1.5, 0), I) + 0.7 N((1.5, 0), I): mean (0.6, 0), Var x0 = 1 + 0.84·2.25."""
    squared = jnp.sum((x - MIXTURE_MEANS) ** 2, axis=-1)
    return jax.scipy.special.logsumexp(-0.5 * squared, b=MIXTURE_WEIGHTS)


MIXTURE_MEAN = np.array([0.6, 0.0])
MIXTURE_SECOND_MOMENT = np.array([1.0 + 2.25, 1.0])  # E[x_i^2]


def run(algorithm, initial, num_steps=400, num_burnin=200, seed=0):
    return ej.run_chains(jax.random.key(seed), algorithm, initial, num_steps, num_burnin=num_burnin)


@pytest.mark.parametrize(
    "algorithm",
    [
        ej.samplers.mala(correlated_gaussian, 0.5),
        ej.samplers.mala(correlated_gaussian, 0.5, noise_variance=0.5),  # the lecture's (η, η)
        ej.samplers.mala(correlated_gaussian, 1.0, inverse_mass_matrix=COVARIANCE),
    ],
    ids=["standard", "lecture_pair", "dense_preconditioned"],
)
def test_mala_moments_correlated_gaussian(algorithm):
    initial = jax.random.normal(jax.random.key(1), (256, 2)) * 2.0
    samples = np.asarray(run(algorithm, initial).samples, dtype=np.float64)
    assert_mean_within_mcse(samples.mean(axis=1), MEAN, what="mean")
    centred = samples - np.asarray(MEAN)
    outer = np.einsum("cti,ctj->cij", centred, centred) / samples.shape[1]
    assert_mean_within_mcse(outer.reshape(256, 4), COVARIANCE.reshape(4), what="covariance")


def test_mala_moments_gaussian_mixture():
    algorithm = ej.samplers.mala(gaussian_mixture, 0.8)
    initial = jax.random.normal(jax.random.key(2), (512, 2)) * 2.0
    samples = np.asarray(run(algorithm, initial, num_steps=600).samples, dtype=np.float64)
    assert_mean_within_mcse(samples.mean(axis=1), MIXTURE_MEAN, what="mixture mean")
    assert_mean_within_mcse(
        (samples**2).mean(axis=1), MIXTURE_SECOND_MOMENT, what="mixture second moment"
    )


def _stationary_variance(algorithm, sigma2, seed):
    initial = jnp.sqrt(sigma2) * jax.random.normal(jax.random.key(seed), (1024, 1))
    samples = run(algorithm, initial, num_steps=300, num_burnin=100, seed=seed).samples
    return np.asarray(samples, dtype=np.float64)[..., 0] ** 2  # the mean is 0


@pytest.mark.parametrize("step_size", [0.4, 1.0])
def test_ula_stationary_variance_closed_form(step_size):
    """ULA on N(0, s²) has stationary variance s² / (1 - τ / (2 s²))."""
    sigma2 = 1.0
    algorithm = ej.samplers.ula(lambda x: -0.5 * jnp.sum(x**2) / sigma2, step_size)
    squares = _stationary_variance(algorithm, sigma2, seed=3)
    expected = sigma2 / (1.0 - step_size / (2.0 * sigma2))
    assert_mean_within_mcse(squares.mean(axis=1), expected, what="ULA variance")


def test_mala_exact_where_ula_is_biased():
    """At τ = 1 on N(0, 1), ULA's variance is 2 while MALA stays exactly 1."""
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2)
    assert_mean_within_mcse(
        _stationary_variance(ej.samplers.mala(logdensity_fn, 1.0), 1.0, seed=4).mean(axis=1),
        1.0,
        what="MALA variance",
    )
    ula_squares = _stationary_variance(ej.samplers.ula(logdensity_fn, 1.0), 1.0, seed=4)
    ula_var = ula_squares.mean()
    ula_se = ula_squares.mean(axis=1).std(ddof=1) / np.sqrt(ula_squares.shape[0])
    assert abs(ula_var - 1.0) > 10 * ula_se  # ULA is visibly biased
    assert abs(ula_var - 2.0) < 4 * ula_se  # ... by exactly the closed form


def test_uncorrected_lecture_pair_targets_p_squared():
    """Without MH, the lecture's (η, η) step has variance s²/(2 - η/s²) → s²/2: p², not p."""
    step_size = 0.2
    algorithm = ej.samplers.ula(lambda x: -0.5 * jnp.sum(x**2), step_size, noise_variance=step_size)
    squares = _stationary_variance(algorithm, 1.0, seed=5)
    assert_mean_within_mcse(squares.mean(axis=1), 1.0 / (2.0 - step_size), what="(η, η) ULA")


def test_mala_acceptance_is_one_for_tiny_steps_and_small_for_huge():
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2)
    initial = jnp.zeros((64, 4))
    tiny = ej.run_chains(jax.random.key(0), ej.samplers.mala(logdensity_fn, 1e-4), initial, 20)
    huge = ej.run_chains(jax.random.key(0), ej.samplers.mala(logdensity_fn, 50.0), initial, 20)
    assert float(tiny.acceptance_rate.mean()) > 0.99
    assert float(huge.acceptance_rate.mean()) < 0.05


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"step_size": 0.0}, "step_size"),
        ({"step_size": -1.0}, "step_size"),
        ({"step_size": float("nan")}, "step_size"),
        ({"step_size": float("inf")}, "step_size"),
        ({"step_size": "big"}, "step_size"),
        ({"step_size": 0.1, "noise_variance": 0.0}, "noise_variance"),
        ({"step_size": 0.1, "inverse_mass_matrix": jnp.array([1.0, -1.0])}, "inverse_mass_matrix"),
        ({"step_size": 0.1, "inverse_mass_matrix": jnp.ones((2, 3))}, "inverse_mass_matrix"),
        ({"step_size": 0.1, "inverse_mass_matrix": jnp.array([[1.0, 2], [2, 1]])}, "positive"),
    ],
)
@pytest.mark.parametrize("factory", [ej.samplers.mala, ej.samplers.ula])
def test_bad_parameters_are_named(factory, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        factory(correlated_gaussian, **kwargs)


def test_bad_logdensity_and_positions_are_named():
    with pytest.raises(TypeError, match="logdensity_fn"):
        ej.samplers.mala("not a function", 0.1)
    vector_valued = ej.samplers.mala(lambda x: -0.5 * x**2, 0.1)
    with pytest.raises(ValueError, match="logdensity_fn must return a scalar"):
        vector_valued.init(jnp.zeros(2))
    with pytest.raises(ValueError, match="position"):
        ej.samplers.mala(correlated_gaussian, 0.1).init(jnp.array([jnp.nan, 0.0]))
    preconditioned = ej.samplers.mala(correlated_gaussian, 0.1, inverse_mass_matrix=jnp.ones(3))
    with pytest.raises(ValueError, match="inverse_mass_matrix"):
        preconditioned.init(jnp.zeros(2))

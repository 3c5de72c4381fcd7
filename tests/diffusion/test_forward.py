"""The forward perturbation (11.4–11.5) and the closed-form perturbed densities (11.6).

x' | x ~ N(√(1−β) x, β I); Gaussian data gives p_β = N(√(1−β)μ, (1−β)Σ + βI)
and a Gaussian mixture is perturbed component by component. The Targets are
checked against an independent SciPy density in float64 and, as laws, against
perturbed exact data samples (paired differences of test functions, 4 MCSE).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from ebm_jax import densities
from ebm_jax.diffusion import forward
from tests.helpers import assert_mean_within_mcse

MEAN = np.array([1.0, -0.5])
COVARIANCE = np.array([[1.5, 0.4], [0.4, 0.6]])

MIXTURE_WEIGHTS = np.array([0.2, 0.5, 0.3])
MIXTURE_MEANS = np.array([[-2.0, 0.0], [1.5, 1.0], [0.5, -2.0]])
MIXTURE_COVARIANCES = np.array(
    [[[0.3, 0.1], [0.1, 0.2]], [[0.5, -0.2], [-0.2, 0.4]], [[0.1, 0.0], [0.0, 0.8]]]
)


def scipy_perturbed_mixture_logpdf(points, beta):
    """log Σ_k w_k N(x'; √(1−β)μ_k, (1−β)Σ_k + βI), independently of the library."""
    log_components = [
        np.log(weight)
        + stats.multivariate_normal(
            np.sqrt(1 - beta) * mean, (1 - beta) * covariance + beta * np.eye(2)
        ).logpdf(points)
        for weight, mean, covariance in zip(
            MIXTURE_WEIGHTS, MIXTURE_MEANS, MIXTURE_COVARIANCES, strict=True
        )
    ]
    return np.logaddexp.reduce(np.stack(log_components), axis=0)


def test_perturb_moments_and_returned_noise():
    """E[x'|x] = √(1−β)x and Var[x'|x] = β within 4 MCSE; x' is rebuilt exactly from ε."""
    x, beta = jnp.array([2.0, -1.0, 0.5]), 0.3
    keys = jax.random.split(jax.random.key(0), 20000)
    x_prime, noise = jax.vmap(forward.perturb_with_noise, in_axes=(0, None, None))(keys, x, beta)
    np.testing.assert_allclose(x_prime, np.sqrt(0.7) * x + np.sqrt(0.3) * noise, atol=1e-6)
    np.testing.assert_array_equal(
        jax.vmap(forward.perturb, in_axes=(0, None, None))(keys, x, beta), x_prime
    )
    np.testing.assert_array_equal(
        jax.vmap(forward.forward_step, in_axes=(0, None, None))(keys, x, beta), x_prime
    )
    samples = np.asarray(x_prime, dtype=np.float64)
    expected_mean = np.sqrt(1 - beta) * np.asarray(x)
    assert_mean_within_mcse(samples, expected_mean, what="E[x' | x]")
    assert_mean_within_mcse((samples - expected_mean) ** 2, np.full(3, beta), what="Var[x' | x]")


def test_perturb_traces_beta_under_jit_and_vmap():
    x = jnp.ones((4, 2))
    betas = jnp.array([0.1, 0.4, 0.7, 0.9])
    keys = jax.random.split(jax.random.key(1), 4)
    batched = jax.jit(jax.vmap(forward.perturb))(keys, x, betas)
    eager = np.stack([forward.perturb(k, row, b) for k, row, b in zip(keys, x, betas, strict=True)])
    np.testing.assert_allclose(batched, eager, rtol=1e-6)


def test_perturbed_gaussian_density_and_score_are_the_closed_form():
    with jax.enable_x64(True):
        beta = 0.35
        target = forward.perturbed_gaussian(jnp.asarray(MEAN), jnp.asarray(COVARIANCE), beta)
        perturbed_mean = np.sqrt(1 - beta) * MEAN
        perturbed_covariance = (1 - beta) * COVARIANCE + beta * np.eye(2)
        np.testing.assert_allclose(target.mean, perturbed_mean, rtol=1e-14)
        np.testing.assert_allclose(target.covariance, perturbed_covariance, rtol=1e-14)
        assert target.name == "perturbed_gaussian" and target.parameters["beta"] == beta
        points = np.random.default_rng(0).normal(size=(6, 2)) * 2.0
        logdensities = jax.vmap(target.logdensity_fn)(jnp.asarray(points))
        reference = stats.multivariate_normal(perturbed_mean, perturbed_covariance).logpdf(points)
        np.testing.assert_allclose(logdensities, reference, rtol=1e-12)
        scores = jax.vmap(target.score_fn)(jnp.asarray(points))
        closed_form = -np.linalg.solve(perturbed_covariance, (points - perturbed_mean).T).T
        np.testing.assert_allclose(scores, closed_form, rtol=1e-12, atol=1e-12)


def test_perturbed_gaussian_mixture_density_matches_scipy_and_the_noise_conditional_form():
    with jax.enable_x64(True):
        args = tuple(jnp.asarray(a) for a in (MIXTURE_WEIGHTS, MIXTURE_MEANS, MIXTURE_COVARIANCES))
        noise_conditional = forward.perturbed_gaussian_mixture_logdensity(*args)
        values_and_scores = jax.jit(
            jax.vmap(jax.value_and_grad(noise_conditional), in_axes=(0, None))
        )
        points = jnp.asarray(np.random.default_rng(1).normal(size=(6, 2)) * 2.0)
        for beta in (0.01, 0.9):
            target = forward.perturbed_gaussian_mixture(*args, beta)
            reference = scipy_perturbed_mixture_logpdf(np.asarray(points), beta)
            from_target = jax.vmap(jax.value_and_grad(target.logdensity_fn))(points)
            from_conditional = values_and_scores(points, beta)
            np.testing.assert_allclose(from_target[0], reference, rtol=1e-12)
            np.testing.assert_allclose(from_conditional[0], reference, rtol=1e-12)
            np.testing.assert_allclose(from_conditional[1], from_target[1], rtol=1e-10, atol=1e-12)


def smooth_statistics(points):
    """Test functions whose expectations tell the perturbed laws apart (first, second moments,
    and nonlinear ones a moment-matched Gaussian would get wrong)."""
    first, second = points[:, 0], points[:, 1]
    return np.column_stack(
        [first, second, first**2, second**2, first * second, np.sin(first + second), np.tanh(first)]
    )


def assert_same_law(exact_samples, perturbed_samples, what):
    """Paired differences of iid draws from two laws have mean zero iff the expectations agree."""
    differences = smooth_statistics(exact_samples) - smooth_statistics(perturbed_samples)
    assert_mean_within_mcse(differences, np.zeros(differences.shape[1]), what=what)


def test_perturbed_gaussian_is_the_law_of_perturbed_data():
    beta, num_samples = 0.35, 40000
    data = densities.gaussian(jnp.asarray(MEAN), jnp.asarray(COVARIANCE))
    target = forward.perturbed_gaussian(jnp.asarray(MEAN), jnp.asarray(COVARIANCE), beta)
    data_key, noise_key, exact_key = jax.random.split(jax.random.key(2), 3)
    perturbed = forward.perturb(noise_key, data.sample(data_key, num_samples), beta)
    exact = target.sample(exact_key, num_samples)
    assert_same_law(np.asarray(exact, np.float64), np.asarray(perturbed, np.float64), "gaussian")


def test_perturbed_gaussian_mixture_is_the_law_of_perturbed_data():
    """And the check has power: data perturbed at a different β is told apart."""
    beta, num_samples = 0.3, 40000
    args = (MIXTURE_WEIGHTS, MIXTURE_MEANS, MIXTURE_COVARIANCES)
    data_key, noise_key, exact_key = jax.random.split(jax.random.key(3), 3)
    data = densities.gaussian_mixture(*args).sample(data_key, num_samples)
    exact = forward.perturbed_gaussian_mixture(*args, beta).sample(exact_key, num_samples)
    exact = np.asarray(exact, np.float64)
    perturbed = forward.perturb(noise_key, data, beta)
    assert_same_law(exact, np.asarray(perturbed, np.float64), "mixture")
    wrong = forward.perturb(noise_key, data, 0.4)
    with pytest.raises(AssertionError):
        assert_same_law(exact, np.asarray(wrong, np.float64), "mixture perturbed at another beta")


BAD_CALLS = [
    (lambda: forward.perturb(jax.random.key(0), jnp.zeros(2), 0.0), ValueError, "beta"),
    (lambda: forward.perturb(jax.random.key(0), jnp.zeros(2), 1.0), ValueError, "beta"),
    (lambda: forward.perturb(jax.random.key(0), jnp.zeros(2), -0.1), ValueError, "beta"),
    (lambda: forward.perturb(jax.random.key(0), jnp.zeros(2), float("nan")), ValueError, "beta"),
    (lambda: forward.perturb(jax.random.key(0), jnp.zeros(2), "0.5"), TypeError, "beta"),
    (lambda: forward.perturb(jax.random.key(0), jnp.zeros(2), True), TypeError, "beta"),
    (
        lambda: forward.perturb(jax.random.key(0), jnp.zeros(2), jnp.full(2, 0.5)),
        ValueError,
        "beta",
    ),
    (lambda: forward.perturb(jax.random.key(0), jnp.array([jnp.inf]), 0.5), ValueError, "x"),
    (lambda: forward.perturb(jax.random.key(0), None, 0.5), TypeError, "x"),
    (lambda: forward.perturb(1, jnp.zeros(2), 0.5), TypeError, "rng_key"),
    (lambda: forward.forward_step(jax.random.key(0), jnp.zeros(2), 1.5), ValueError, "beta"),
    (lambda: forward.perturbed_gaussian(jnp.zeros(2), jnp.eye(2), 1.0), ValueError, "beta"),
    (
        lambda: forward.perturbed_gaussian(jnp.zeros(2), jnp.array([[1.0, 2.0], [2.0, 1.0]]), 0.5),
        ValueError,
        "covariance",
    ),
    (lambda: forward.perturbed_gaussian(jnp.zeros(2), jnp.eye(3), 0.5), ValueError, "covariance"),
    (
        lambda: jax.jit(lambda b: forward.perturbed_gaussian(jnp.zeros(2), jnp.eye(2), b).mean)(
            0.5
        ),
        ValueError,
        "concrete",
    ),
    (
        lambda: forward.perturbed_gaussian_mixture(jnp.ones(3), jnp.zeros((2, 2)), 1.0, 0.5),
        ValueError,
        "weights",
    ),
    (
        lambda: forward.perturbed_gaussian_mixture(jnp.ones(2), jnp.zeros((2, 2)), -1.0, 0.5),
        ValueError,
        "covariances",
    ),
    (
        lambda: forward.perturbed_gaussian_mixture(jnp.ones(2), jnp.zeros((2, 2)), 1.0, 0.0),
        ValueError,
        "beta",
    ),
    (
        lambda: forward.perturbed_gaussian_mixture_logdensity(jnp.ones(2), jnp.zeros(2), 1.0),
        ValueError,
        "means",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), BAD_CALLS)
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()

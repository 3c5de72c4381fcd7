"""Tweedie's formula (11.12–11.13), exact for a Gaussian mixture, in float64.

For p = Σ_k w_k N(μ_k, Σ_k) the posterior of x given x' = √(1−β)x + √βε is
again a mixture: component k has posterior weight ∝ w_k N(x'; √(1−β)μ_k, C_k),
C_k = (1−β)Σ_k + βI, and Gaussian conditioning gives
E[x | x', k] = μ_k + √(1−β) Σ_k C_k⁻¹ (x' − √(1−β)μ_k). That E[x | x'],
computed here with NumPy/SciPy, must equal (x' + β∇log p_β(x')) / √(1−β).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from ebm_jax.diffusion import forward, tweedie
from tests.diffusion.test_forward import MIXTURE_COVARIANCES, MIXTURE_MEANS, MIXTURE_WEIGHTS


def posterior_mean_by_conditioning(x_prime, beta):
    """E[x | x'] for mixture data, by Bayes over components and Gaussian conditioning."""
    scale = np.sqrt(1.0 - beta)
    log_posteriors, conditional_means = [], []
    for weight, mean, covariance in zip(
        MIXTURE_WEIGHTS, MIXTURE_MEANS, MIXTURE_COVARIANCES, strict=True
    ):
        perturbed_covariance = (1.0 - beta) * covariance + beta * np.eye(2)
        log_posteriors.append(
            np.log(weight)
            + stats.multivariate_normal(scale * mean, perturbed_covariance).logpdf(x_prime)
        )
        gain = scale * covariance @ np.linalg.inv(perturbed_covariance)  # Cov(x, x') Cov(x')⁻¹
        conditional_means.append(mean + gain @ (x_prime - scale * mean))
    log_posteriors = np.array(log_posteriors)
    posteriors = np.exp(log_posteriors - np.logaddexp.reduce(log_posteriors))
    return posteriors @ np.array(conditional_means)


@functools.cache
def exact_score_fn():
    logdensity_fn = forward.perturbed_gaussian_mixture_logdensity(
        jnp.asarray(MIXTURE_WEIGHTS), jnp.asarray(MIXTURE_MEANS), jnp.asarray(MIXTURE_COVARIANCES)
    )
    return jax.grad(logdensity_fn)


@jax.jit
def tweedie_mean_and_noise(points, beta):
    """Both posterior means at a batch of points, β traced (one compilation for every β)."""
    score_fn = exact_score_fn()
    mean = jax.vmap(tweedie.tweedie_mean, (None, 0, None))(score_fn, points, beta)
    noise = jax.vmap(tweedie.tweedie_noise, (None, 0, None))(score_fn, points, beta)
    return mean, noise


@pytest.mark.parametrize("beta", [0.02, 0.3, 0.7, 0.98])
def test_tweedie_mean_is_the_posterior_mean_of_a_gaussian_mixture(beta):
    """At 5 points, near the modes and far out, to float64 precision."""
    with jax.enable_x64(True):
        points = np.array([[0.0, 0.0], [-1.6, 0.1], [1.2, 0.8], [4.0, -3.0], [-0.5, -1.7]])
        means, noises = tweedie_mean_and_noise(jnp.asarray(points), beta)
        expected = np.array([posterior_mean_by_conditioning(p, beta) for p in points])
        np.testing.assert_allclose(means, expected, rtol=1e-10, atol=1e-12)
        # x' = √(1−β) E[x|x'] + √β E[ε|x']: the conditional mean of eq. (11.5).
        np.testing.assert_allclose(
            np.sqrt(1 - beta) * expected + np.sqrt(beta) * np.asarray(noises),
            points,
            rtol=1e-10,
            atol=1e-12,
        )


def test_tweedie_mean_with_a_target_score_and_a_parametric_model():
    """The Target's score at a fixed β, and functools.partial(model, params), give the same."""
    with jax.enable_x64(True):
        beta = 0.4
        target = forward.perturbed_gaussian_mixture(
            MIXTURE_WEIGHTS, MIXTURE_MEANS, MIXTURE_COVARIANCES, beta
        )
        point = np.array([0.7, -0.2])
        from_target = tweedie.tweedie_mean(
            lambda x, b: target.score_fn(x), jnp.asarray(point), beta
        )
        np.testing.assert_allclose(
            from_target, posterior_mean_by_conditioning(point, beta), rtol=1e-10
        )

        def linear_model(params, x, b):  # the exact score of N(0, I) data at every β
            return -params * x

        from_model = tweedie.tweedie_mean(
            functools.partial(linear_model, 1.0), jnp.asarray(point), beta
        )
        np.testing.assert_allclose(from_model, np.sqrt(1 - beta) * point, rtol=1e-14)


BAD_CALLS = [
    (lambda: tweedie.tweedie_mean(None, jnp.zeros(2), 0.5), TypeError, "score_fn"),
    (lambda: tweedie.tweedie_mean(lambda x, b: x[:1], jnp.zeros(2), 0.5), ValueError, "score_fn"),
    (lambda: tweedie.tweedie_mean(lambda x: x, jnp.zeros(2), 0.5), ValueError, "score_fn"),
    (lambda: tweedie.tweedie_mean(lambda x, b: -x, jnp.zeros(2), 1.0), ValueError, "beta"),
    (lambda: tweedie.tweedie_mean(lambda x, b: -x, jnp.zeros(2), 0.0), ValueError, "beta"),
    (lambda: tweedie.tweedie_mean(lambda x, b: -x, "x", 0.5), TypeError, "x_prime"),
    (lambda: tweedie.tweedie_noise(lambda x, b: -x, jnp.zeros(2), jnp.ones(2)), ValueError, "beta"),
]


@pytest.mark.parametrize(("call", "error", "match"), BAD_CALLS)
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()

"""The probability-flow ODE against closed forms: Gaussian data, a point mass, a mixture.

For x ~ N(mu, Sigma) the perturbed densities are p_beta = N(m(beta), C(beta)) with
m = sqrt(1 - beta) mu and C = (1 - beta) Sigma + beta I (eq. 11.6 in closed form).
All C(beta) commute, so the flow from level a to level b is the affine map
x -> m(b) + C(b)^{1/2} C(a)^{-1/2} (x - m(a)), and log p_beta is known exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej
from ebm_jax.diffusion import ode, samplers, schedule
from tests.helpers import assert_mean_within_mcse

# Tuples, not NumPy arrays: a NumPy constant first used under jax.enable_x64 is
# cached by JAX as float64 and then fed to float32 programs.
MEAN = (1.0, -0.5)
COVARIANCE = ((1.5, 0.6), (0.6, 0.5))
SCHEDULE = schedule.linear_schedule(1000)
SMALLEST = float(SCHEDULE.marginal_betas[0])
LARGEST = float(SCHEDULE.marginal_betas[-1])
DATA = ((0.3, 0.2), (2.0, -1.0), (-1.0, 0.5))


def perturbed_mean(beta):
    return jnp.sqrt(1.0 - beta) * jnp.asarray(MEAN)


def perturbed_covariance(beta):
    return (1.0 - beta) * jnp.asarray(COVARIANCE) + beta * jnp.eye(2)


_eigenvalues, _eigenvectors = np.linalg.eigh(np.array(COVARIANCE))
EIGENVALUES = tuple(_eigenvalues.tolist())
EIGENVECTORS = tuple(map(tuple, _eigenvectors.tolist()))


def gaussian_logdensity(x, beta):
    """log p_beta in the eigenbasis of Sigma, where every C(beta) is diagonal."""
    variances = (1.0 - beta) * jnp.asarray(EIGENVALUES) + beta
    coordinates = jnp.asarray(EIGENVECTORS).T @ (x - perturbed_mean(beta))
    return -0.5 * jnp.sum(coordinates**2 / variances + jnp.log(2 * jnp.pi * variances))


gaussian_score = jax.grad(gaussian_logdensity)

MIXTURE_WEIGHTS = (0.3, 0.7)
MIXTURE_MEANS = ((-1.0, 0.5), (1.0, 0.0))
MIXTURE_VARIANCE = 0.3


def mixture_logdensity(x, beta):
    """A mixture whose perturbed flow is nonlinear (isotropic components, variance 0.3)."""
    variance = (1.0 - beta) * MIXTURE_VARIANCE + beta
    squared = jnp.sum((x - jnp.sqrt(1.0 - beta) * jnp.asarray(MIXTURE_MEANS)) ** 2, axis=1)
    log_components = -0.5 * squared / variance - jnp.log(2 * jnp.pi * variance)
    return jax.nn.logsumexp(log_components + jnp.log(jnp.asarray(MIXTURE_WEIGHTS)))


def test_closed_forms_match_the_library_densities():
    beta, x = 0.37, jnp.array([0.4, -0.9])
    gaussian = ej.densities.gaussian(perturbed_mean(beta), perturbed_covariance(beta))
    np.testing.assert_allclose(gaussian_logdensity(x, beta), gaussian.logdensity_fn(x), rtol=1e-5)
    mixture = ej.densities.gaussian_mixture(
        jnp.asarray(MIXTURE_WEIGHTS),
        jnp.sqrt(1.0 - beta) * jnp.asarray(MIXTURE_MEANS),
        (1.0 - beta) * MIXTURE_VARIANCE + beta,
    )
    np.testing.assert_allclose(mixture_logdensity(x, beta), mixture.logdensity_fn(x), rtol=1e-5)


mixture_score = jax.grad(mixture_logdensity)


def _flow_map(x, start, end):
    """The exact Gaussian flow from level ``start`` to level ``end``, in float64."""
    eigenvalues, eigenvectors = np.linalg.eigh(np.array(COVARIANCE))

    def power(beta, exponent):
        variances = (1.0 - beta) * eigenvalues + beta
        return (eigenvectors * variances**exponent) @ eigenvectors.T

    matrix = power(end, 0.5) @ power(start, -0.5)
    start_mean, end_mean = (
        np.sqrt(1.0 - start) * np.array(MEAN),
        np.sqrt(1.0 - end) * np.array(MEAN),
    )
    return end_mean + (np.asarray(x, np.float64) - start_mean) @ matrix.T


def test_point_mass_flow_is_sqrt_beta():
    """Data at 0: S = -x / beta and dx/dbeta = x / (2 beta), so x(beta) is prop. to sqrt(beta)."""
    point_mass_score = lambda x, beta: -x / beta
    np.testing.assert_allclose(
        ode.probability_flow_drift(point_mass_score, jnp.array([1.0, -2.0]), 0.25),
        [2.0, -4.0],
        rtol=1e-6,
    )
    x_T = samplers.initial_noise(jax.random.key(0), 5, (3,))
    result = ode.probability_flow_sample(
        point_mass_score, SCHEDULE, x_T, num_steps=50, method="rk4"
    )
    np.testing.assert_allclose(result.positions, x_T * np.sqrt(SMALLEST / LARGEST), rtol=1e-4)
    assert result.num_function_evaluations == 50 * 4


@pytest.mark.parametrize(("method", "order"), [("heun", 2), ("rk4", 4)])
def test_gaussian_log_likelihood_converges_at_the_method_order(method, order):
    """Exact score + exact prior p_{beta_T}: the only error is the integrator's, O(h^order)."""
    with jax.enable_x64(True):
        exact = jax.vmap(lambda x: gaussian_logdensity(x, SMALLEST))(jnp.asarray(DATA))
        prior = lambda z: gaussian_logdensity(z, LARGEST)
        errors = []
        for num_steps in (16, 32):
            result = ode.probability_flow_log_likelihood(
                jax.random.key(0),
                gaussian_score,
                SCHEDULE,
                jnp.asarray(DATA),
                num_steps=num_steps,
                method=method,
                prior_logdensity_fn=prior,
            )
            assert result.log_likelihood.dtype == jnp.float64
            errors.append(float(jnp.max(jnp.abs(result.log_likelihood - exact))))
    observed_orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(observed_orders - order) < 0.5), (errors, observed_orders)
    if method == "rk4":
        assert errors[-1] < 1e-4


def test_mixture_log_likelihood_is_exact():
    """A nonlinear flow: log p_{beta_1} of a Gaussian mixture, to RK4 accuracy (float64)."""
    with jax.enable_x64(True):
        data = jnp.asarray(DATA)
        exact = jax.vmap(lambda x: mixture_logdensity(x, SMALLEST))(data)
        result = ode.probability_flow_log_likelihood(
            jax.random.key(0),
            mixture_score,
            SCHEDULE,
            data,
            num_steps=64,
            method="rk4",
            prior_logdensity_fn=lambda z: mixture_logdensity(z, LARGEST),
        )
        np.testing.assert_allclose(result.log_likelihood, exact, atol=1e-4)
        np.testing.assert_allclose(
            result.log_likelihood, result.prior_logdensity + result.divergence_integral
        )


def test_float32_default_prior_and_unbiased_hutchinson():
    """Float32 with the N(0, I) prior, and Hutchinson's estimate with probes fixed per path.

    The exact-divergence log-likelihood is off only by the prior: N(0, I) instead
    of p_{beta_T} (sqrt(alpha_bar_T) ~ 0.006), evaluated at the exact latents. The
    Hutchinson estimates of one point, over independent probes, average to it.
    """
    data = jnp.asarray(DATA, jnp.float32)
    result = ode.probability_flow_log_likelihood(
        jax.random.key(0), gaussian_score, SCHEDULE, data, num_steps=32, method="rk4"
    )
    assert result.log_likelihood.dtype == jnp.float32
    latents = _flow_map(DATA, SMALLEST, LARGEST)
    np.testing.assert_allclose(result.latents, latents, atol=1e-3)
    exact = jax.vmap(lambda x: gaussian_logdensity(x, SMALLEST))(data)
    prior_mismatch = jax.vmap(lambda z: gaussian_logdensity(z, LARGEST))(latents) - (
        -0.5 * np.sum(latents**2, axis=1) - np.log(2 * np.pi)
    )
    np.testing.assert_allclose(result.log_likelihood - exact, -prior_mismatch, atol=2e-3)

    replicas = jnp.broadcast_to(data[1], (2048, 2))
    estimates = ode.probability_flow_log_likelihood(
        jax.random.key(1),
        gaussian_score,
        SCHEDULE,
        replicas,
        num_steps=32,
        method="rk4",
        divergence="hutchinson",
    ).log_likelihood
    assert float(jnp.std(estimates)) > 1e-3  # the probes do matter
    assert_mean_within_mcse(
        np.asarray(estimates)[:, None], [float(result.log_likelihood[1])], what="Hutchinson"
    )


def test_flow_sampling_gaussian_moments_and_map():
    """Samples of p_{beta_T}, flowed to beta_1: the exact affine map, so N(m, C) at beta_1."""
    num_samples = 2048
    start_cholesky = np.linalg.cholesky(np.asarray(perturbed_covariance(LARGEST)))
    noise = np.asarray(samplers.initial_noise(jax.random.key(2), num_samples, (2,)))
    x_T = np.asarray(perturbed_mean(LARGEST)) + noise @ start_cholesky.T
    result = ode.probability_flow_sample(gaussian_score, SCHEDULE, x_T, num_steps=32, method="rk4")
    samples = np.asarray(result.positions, np.float64)
    np.testing.assert_allclose(samples, _flow_map(x_T, LARGEST, SMALLEST), atol=1e-3)
    target_mean = np.asarray(perturbed_mean(SMALLEST))
    assert_mean_within_mcse(samples, target_mean, what="mean")
    centred = samples - target_mean
    outer = np.einsum("ni,nj->nij", centred, centred).reshape(num_samples, 4)
    target_covariance = np.asarray(perturbed_covariance(SMALLEST)).reshape(4)
    assert_mean_within_mcse(outer, target_covariance, what="covariance")


def test_encode_then_decode_returns_the_input():
    """ODE reversibility, on the nonlinear mixture flow, to the integrator's accuracy."""
    data = np.asarray(
        ej.densities.gaussian_mixture(MIXTURE_WEIGHTS, MIXTURE_MEANS, 0.3).sample(
            jax.random.key(3), 64
        )
    )
    latents = ode.probability_flow_encode(
        mixture_score, SCHEDULE, data, num_steps=32, method="rk4"
    ).positions
    decoded = ode.probability_flow_sample(
        mixture_score, SCHEDULE, latents, num_steps=32, method="rk4"
    ).positions
    assert float(np.max(np.abs(latents - data))) > 0.5  # the encoding did move the points
    np.testing.assert_allclose(decoded, data, atol=1e-3)


def _counting(fn):
    counter = [0]

    def bump():
        counter[0] += 1

    def counted(x, beta):
        jax.debug.callback(bump)
        return fn(x, beta)

    return counted, counter


def test_nfe_is_counted_correctly():
    score, counter = _counting(lambda x, beta: -x)
    result = ode.probability_flow_log_likelihood(
        jax.random.key(0),
        score,
        SCHEDULE,
        jnp.ones((1, 2)),
        num_steps=5,
        method="rk4",
        divergence="hutchinson",
        num_probes=3,
    )
    jax.block_until_ready(result.log_likelihood)
    jax.effects_barrier()
    assert result.num_function_evaluations == counter[0] == 5 * 4


def test_second_call_does_not_retrace():
    num_traces = [0]

    def score(x, beta):
        num_traces[0] += 1  # a Python side effect: runs only while tracing
        return -x

    ode.probability_flow_encode(score, SCHEDULE, jnp.zeros((3, 2)), num_steps=4)
    traces_after_first = num_traces[0]
    second = ode.probability_flow_sample(score, SCHEDULE, jnp.ones((3, 2)), num_steps=4)
    assert num_traces[0] == traces_after_first  # encoding and sampling share one program
    np.testing.assert_allclose(second.positions, 1.0, rtol=1e-5)  # N(0, I) data: x stands still


def test_errors_name_the_argument():
    key, x = jax.random.key(0), jnp.zeros((3, 2))
    score = lambda x, beta: -x
    with pytest.raises(ValueError, match="method"):
        ode.probability_flow_sample(score, SCHEDULE, x, method="midpoint")
    with pytest.raises(ValueError, match="num_steps"):
        ode.probability_flow_sample(score, SCHEDULE, x, num_steps=0)
    with pytest.raises(ValueError, match="score_fn"):
        ode.probability_flow_sample(lambda x, beta: x[0], SCHEDULE, x)
    with pytest.raises(ValueError, match="data"):
        ode.probability_flow_encode(score, SCHEDULE, jnp.zeros(2))
    with pytest.raises(TypeError, match="schedule"):
        ode.probability_flow_encode(score, (0.1, 0.9), x)
    with pytest.raises(ValueError, match="divergence"):
        ode.probability_flow_log_likelihood(key, score, SCHEDULE, x, divergence="hutch")
    with pytest.raises(ValueError, match="probe"):
        ode.probability_flow_log_likelihood(
            key, score, SCHEDULE, x, divergence="hutchinson", probe="sphere"
        )
    with pytest.raises(ValueError, match="prior_logdensity_fn"):
        ode.probability_flow_log_likelihood(
            key, score, SCHEDULE, x, prior_logdensity_fn=lambda z: z
        )
    with pytest.raises(TypeError, match=r"rng_key must be a jax\.random key, got int"):
        ode.probability_flow_log_likelihood(0, score, SCHEDULE, x)
    with pytest.raises(ValueError, match="rng_key must be a single key"):
        ode.probability_flow_log_likelihood(jax.random.split(key, 2), score, SCHEDULE, x)


def test_a_cosine_schedule_whose_last_level_rounds_to_one_flows_finitely():
    """cosine_schedule(1000): ᾱ_T ≈ 2.4e-9, so β̄_T = 1 - ᾱ_T is 1.0 in float32.

    For N(0, I) data every p_β̄ is N(0, I), so the exact score is -x, the
    velocity ½β̄(x + S) vanishes and the flow is the identity; the data's
    log-likelihood is the N(0, I) log-density. The log-SNR grid must come from
    ᾱ (finite), not from β̄ (log 0 = -inf, which made every output NaN).
    """
    cosine = schedule.cosine_schedule(1000)
    assert float(cosine.marginal_betas[-1]) == 1.0  # the case under test
    points = np.asarray(jax.random.normal(jax.random.key(5), (16, 2)))
    standard_score = lambda x, beta: -x
    flowed = ode.probability_flow_sample(standard_score, cosine, points, num_steps=8).positions
    np.testing.assert_allclose(flowed, points, atol=1e-6)
    result = ode.probability_flow_log_likelihood(
        jax.random.key(6), standard_score, cosine, points, num_steps=8
    )
    expected = -0.5 * np.sum(points**2, axis=1) - np.log(2 * np.pi)
    np.testing.assert_allclose(result.log_likelihood, expected, rtol=1e-5, atol=1e-5)

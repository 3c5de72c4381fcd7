"""Adaptive probability-flow solves (diffrax) against closed forms for Gaussian data.

For x ~ N(mu, sigma^2 I) the perturbed densities are p_beta = N(sqrt(1 - beta) mu,
((1 - beta) sigma^2 + beta) I), the exact score is linear and the flow from level a
to level b is the affine map x -> m(b) + sqrt(C(b) / C(a)) (x - m(a)). With the
exact p_{beta_T} as the prior, the only error of the log-likelihood is the solver's.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.diffusion import ode, schedule
from tests.helpers import assert_mean_within_mcse

# Tuples, not NumPy arrays: a NumPy constant first used under jax.enable_x64 is
# cached by JAX as float64 and then fed to float32 programs.
MEAN = (1.5, -1.0)
STD = 0.5
SCHEDULE = schedule.linear_schedule(1000)
# The levels the solver integrates between (its log-SNR grid is built from these).
SMALLEST = float(SCHEDULE.marginal_betas[0])
LARGEST = 1.0 - float(SCHEDULE.alphas_cumprod[-1])
DATA = ((1.2, -0.4), (2.5, -2.0), (0.0, 0.5))


def gaussian_logdensity(x, beta):
    mean = jnp.sqrt(1.0 - beta) * jnp.asarray(MEAN, x.dtype)
    variance = (1.0 - beta) * STD**2 + beta
    return -0.5 * jnp.sum((x - mean) ** 2 / variance + jnp.log(2 * jnp.pi * variance))


gaussian_score = jax.grad(gaussian_logdensity)


def exact_prior(z):
    return gaussian_logdensity(z, LARGEST)


def _flow_map(x, start, end):
    """The exact flow from level ``start`` to level ``end``, in float64."""
    x = np.asarray(x, np.float64)

    def mean_and_variance(beta):
        return np.sqrt(1.0 - beta) * np.array(MEAN), (1.0 - beta) * STD**2 + beta

    (start_mean, start_variance), (end_mean, end_variance) = map(mean_and_variance, (start, end))
    return end_mean + np.sqrt(end_variance / start_variance) * (x - start_mean)


def _log_likelihood_errors(method, tolerance, **kwargs):
    data = jnp.asarray(DATA)
    result = ode.probability_flow_log_likelihood(
        jax.random.key(0),
        gaussian_score,
        SCHEDULE,
        data,
        method=method,
        rtol=tolerance,
        atol=tolerance,
        prior_logdensity_fn=exact_prior,
        **kwargs,
    )
    exact = jax.vmap(lambda x: gaussian_logdensity(x, SMALLEST))(data)
    return result, np.abs(np.asarray(result.log_likelihood - exact))


def test_adaptive_log_likelihood_matches_the_closed_form_to_the_tolerance():
    """Dormand-Prince at rtol = atol = 1e-8 in float64: log p_{beta_1} within 10 x tol."""
    with jax.enable_x64(True):
        result, errors = _log_likelihood_errors("dopri5", 1e-8)
        assert result.log_likelihood.dtype == jnp.float64
        np.testing.assert_allclose(
            result.log_likelihood, result.prior_logdensity + result.divergence_integral
        )
        np.testing.assert_allclose(result.latents, _flow_map(DATA, SMALLEST, LARGEST), atol=1e-7)
    assert np.all(errors < 1e-7), errors
    evaluations = np.asarray(result.num_function_evaluations)
    assert evaluations.shape == (3,) and evaluations.dtype == np.int32
    assert np.all(evaluations % 6 == 1)  # 1 + 6 per trial step


def test_nfe_grows_and_the_error_shrinks_as_the_tolerance_tightens():
    """Tsit5 at rtol = atol = 1e-3, 1e-5, 1e-7 (float64), one compilation for all three."""
    num_traces = [0]

    def score(x, beta):
        num_traces[0] += 1  # a Python side effect: runs only while tracing
        return gaussian_score(x, beta)

    evaluations, max_errors = [], []
    with jax.enable_x64(True):
        data = jnp.asarray(DATA)
        exact = jax.vmap(lambda x: gaussian_logdensity(x, SMALLEST))(data)
        for tolerance in (1e-3, 1e-5, 1e-7):
            result = ode.probability_flow_log_likelihood(
                jax.random.key(0),
                score,
                SCHEDULE,
                data,
                method="tsit5",
                rtol=tolerance,
                atol=tolerance,
                prior_logdensity_fn=exact_prior,
            )
            evaluations.append(np.asarray(result.num_function_evaluations))
            max_errors.append(float(np.max(np.abs(result.log_likelihood - exact))))
            if tolerance == 1e-3:
                traces_after_first = num_traces[0]
        # Per-sample error control: other batch-mates leave a sample's steps unchanged.
        other_batch = data.at[0].set(jnp.array([-3.0, 4.0])).at[2].set(jnp.array([5.0, 0.0]))
        rerun = ode.probability_flow_log_likelihood(
            jax.random.key(0),
            score,
            SCHEDULE,
            other_batch,
            method="tsit5",
            rtol=1e-7,
            atol=1e-7,
            prior_logdensity_fn=exact_prior,
        )
    assert num_traces[0] == traces_after_first  # tolerances are traced values
    assert np.all(np.diff(np.stack(evaluations), axis=0) > 0), evaluations  # every sample
    # Each 100-fold tighter tolerance cuts the error more than 10-fold.
    assert max_errors[0] > 10 * max_errors[1] > 100 * max_errors[2], max_errors
    rerun_evaluations = np.asarray(rerun.num_function_evaluations)
    assert rerun_evaluations[1] == evaluations[-1][1]
    assert not np.array_equal(rerun_evaluations, evaluations[-1])
    np.testing.assert_allclose(rerun.log_likelihood[1], result.log_likelihood[1], rtol=1e-12)


def test_encode_then_sample_round_trip_float32():
    """Encoding maps onto the exact latents and sampling maps them back, at default tolerances."""
    data = np.asarray(DATA, np.float32)
    encoded = ode.probability_flow_encode(gaussian_score, SCHEDULE, data, method="tsit5")
    decoded = ode.probability_flow_sample(
        gaussian_score, SCHEDULE, encoded.positions, method="tsit5"
    )
    assert encoded.positions.dtype == decoded.positions.dtype == jnp.float32
    exact_latents = _flow_map(DATA, SMALLEST, LARGEST)
    assert float(np.max(np.abs(exact_latents - data))) > 1.0  # the encoding did move the points
    np.testing.assert_allclose(encoded.positions, exact_latents, atol=1e-3)
    np.testing.assert_allclose(decoded.positions, data, atol=1e-3)
    assert np.asarray(encoded.num_function_evaluations).shape == (3,)


def test_hutchinson_under_the_adaptive_controller_is_unbiased():
    """Gaussian probes, fixed along each path: the estimates vary and average to log p_{beta_1}.

    The solver's own error (float32, rtol = atol = 1e-5) is far below the
    Monte-Carlo standard error of the mean of 256 estimates.
    """
    replicas = jnp.broadcast_to(jnp.asarray(DATA[1], jnp.float32), (256, 2))
    estimates = ode.probability_flow_log_likelihood(
        jax.random.key(2),
        gaussian_score,
        SCHEDULE,
        replicas,
        method="tsit5",
        divergence="hutchinson",
        probe="gaussian",
        prior_logdensity_fn=exact_prior,
    ).log_likelihood
    assert float(jnp.std(estimates)) > 1e-2  # the probes do matter
    exact = float(gaussian_logdensity(jnp.asarray(DATA[1]), SMALLEST))
    assert_mean_within_mcse(np.asarray(estimates)[:, None], [exact], what="Hutchinson")


def _counting(fn):
    counter = [0]

    def bump():
        counter[0] += 1

    def counted(x, beta):
        jax.debug.callback(bump)
        return fn(x, beta)

    return counted, counter


def test_nfe_is_the_number_of_evaluations():
    score, counter = _counting(gaussian_score)
    result = ode.probability_flow_encode(score, SCHEDULE, jnp.asarray(DATA[1:2]), method="tsit5")
    jax.block_until_ready(result.positions)
    jax.effects_barrier()
    assert int(result.num_function_evaluations[0]) == counter[0] > 1


def test_without_diffrax_the_adaptive_methods_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffrax", None)  # `import diffrax` now raises ImportError
    x = jnp.zeros((2, 1))
    standard_score = lambda x, beta: -x
    with pytest.raises(ImportError, match=r'pip install "ebm_jax\[ode\]"'):
        ode.probability_flow_sample(standard_score, SCHEDULE, x, method="tsit5")
    with pytest.raises(ImportError, match="diffrax"):
        ode.probability_flow_log_likelihood(
            jax.random.key(0), standard_score, SCHEDULE, x, method="dopri5"
        )
    # The fixed-step methods do not need it.
    result = ode.probability_flow_sample(standard_score, SCHEDULE, x, num_steps=1, method="euler")
    assert result.num_function_evaluations == 1


def test_adaptive_arguments_are_validated():
    key, x = jax.random.key(0), jnp.zeros((3, 2))
    score = lambda x, beta: -x
    with pytest.raises(ValueError, match=r"method must be one of .*'tsit5', 'dopri5'"):
        ode.probability_flow_sample(score, SCHEDULE, x, method="rk45")
    for name, value in (("rtol", 0.0), ("atol", -1e-6), ("rtol", float("nan"))):
        with pytest.raises(ValueError, match=name):
            ode.probability_flow_sample(score, SCHEDULE, x, method="tsit5", **{name: value})
    with pytest.raises(TypeError, match="atol"):
        ode.probability_flow_encode(score, SCHEDULE, x, method="tsit5", atol="1e-5")
    with pytest.raises(ValueError, match="rtol must be a scalar"):
        ode.probability_flow_encode(score, SCHEDULE, x, method="tsit5", rtol=np.full(2, 1e-5))
    with pytest.raises(ValueError, match="max_steps"):
        ode.probability_flow_log_likelihood(key, score, SCHEDULE, x, method="tsit5", max_steps=0)
    with pytest.raises(TypeError, match="max_steps"):
        ode.probability_flow_log_likelihood(key, score, SCHEDULE, x, method="tsit5", max_steps=9.5)
    # The error-control options belong to the adaptive methods only.
    with pytest.raises(ValueError, match=r"rtol and atol: only for the adaptive methods"):
        ode.probability_flow_sample(score, SCHEDULE, x, method="heun", rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="max_steps"):
        ode.probability_flow_log_likelihood(key, score, SCHEDULE, x, max_steps=100)


def test_running_out_of_steps_raises_or_is_nan_under_jit():
    point_mass_score = lambda x, beta: -x / beta  # x grows as sqrt(beta): a real flow
    x = jnp.ones((2, 1))
    with pytest.raises(RuntimeError, match=r"2 of 2 samples reached max_steps=2"):
        ode.probability_flow_encode(point_mass_score, SCHEDULE, x, method="tsit5", max_steps=2)
    positions = jax.jit(
        lambda x: (
            ode.probability_flow_encode(
                point_mass_score, SCHEDULE, x, method="tsit5", max_steps=2
            ).positions
        )
    )(x)
    assert bool(jnp.all(jnp.isnan(positions)))

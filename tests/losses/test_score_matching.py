"""Score matching (eq. 11.2, Hyvärinen's ½ scale) and sliced SM: closed forms on a Gaussian model.

For f(x) = −½(x−μ)ᵀP(x−μ) on data with mean x̄ and ML covariance S (÷N),

    J(μ, P) = ½ tr(P² (S + (x̄−μ)(x̄−μ)ᵀ)) − tr P,

minimised at μ = x̄, P = S⁻¹. Every loss here is quadratic in P at fixed μ,
so one Newton step in the entries of P lands exactly on the minimiser of the
loss as sampled (fixed probes / noise); its spread over independent seeds
gives an honest Monte-Carlo error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax.losses as losses
from tests.helpers import assert_mean_within_mcse

DIMENSION = 3
TRIANGLE = np.triu_indices(DIMENSION)


def gaussian_logdensity(params, x):
    precision = 0.5 * (params["precision"] + params["precision"].T)
    centred = x - params["mean"]
    return -0.5 * centred @ precision @ centred


def gaussian_score(params, x):
    """The same model as a hand-written score network, s(x) = −P(x − μ)."""
    precision = 0.5 * (params["precision"] + params["precision"].T)
    return -precision @ (x - params["mean"])


def nonlinear_logdensity(params, x):
    """A non-Gaussian model whose score has a non-constant, non-diagonal Jacobian."""
    hidden = jnp.tanh(params["weights"] @ x + params["bias"])
    return jnp.sum(hidden) - 0.25 * jnp.sum(x**4) - 0.5 * jnp.sum(x**2)


def gaussian_data(num_samples=200, seed=0):
    rng = np.random.default_rng(seed)
    covariance = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
    return rng.multivariate_normal([1.0, -2.0, 0.5], covariance, size=num_samples)


def sample_moments(data):
    mean = data.mean(axis=0)
    centred = data - mean
    return mean, centred.T @ centred / data.shape[0]  # ML normalisation, ÷N


def nonlinear_params(seed=1):
    rng = np.random.default_rng(seed)
    return {
        "weights": jnp.asarray(rng.normal(size=(4, DIMENSION))),
        "bias": jnp.asarray(rng.normal(size=4)),
    }


def precision_from_triangle(triangle):
    upper = jnp.zeros((DIMENSION, DIMENSION), triangle.dtype).at[TRIANGLE].set(triangle)
    return upper + upper.T - jnp.diag(jnp.diag(upper))


def newton_precision(loss_fn, rng_key, batch, mean):
    """Minimiser over symmetric P of a loss quadratic in P, at fixed μ: one Newton step."""
    objective = lambda triangle: loss_fn(
        {"mean": mean, "precision": precision_from_triangle(triangle)}, rng_key, batch
    )
    start = jnp.eye(DIMENSION, dtype=batch.dtype)[TRIANGLE]
    step = jnp.linalg.solve(jax.hessian(objective)(start), jax.grad(objective)(start))
    return start - step


def assert_precision_within_mcse(loss_fn, batch, mean, truth, num_seeds=32):
    """Per-seed minimisers; their mean must sit within 4 MCSE of ``truth``."""
    keys = jax.random.split(jax.random.key(0), num_seeds)
    minimisers = jax.jit(jax.vmap(lambda key: newton_precision(loss_fn, key, batch, mean)))(keys)
    truth_triangle = np.asarray(truth)[TRIANGLE]
    _, mcse = assert_mean_within_mcse(minimisers, truth_triangle, what="precision")
    # The gate has teeth: the Monte-Carlo error is small against the entries.
    assert np.all(mcse < 0.02 * np.abs(truth_triangle).max())
    return minimisers


def test_exact_loss_equals_closed_form():
    """J(μ, P) = ½ tr(P² (S + (x̄−μ)(x̄−μ)ᵀ)) − tr P, from a log-density and from a score network."""
    with jax.enable_x64(True):
        data = jnp.asarray(gaussian_data())
        sample_mean, covariance = sample_moments(np.asarray(data))
        rng = np.random.default_rng(2)
        mean = rng.normal(size=DIMENSION)
        asymmetric = rng.normal(size=(DIMENSION, DIMENSION)) + 3.0 * np.eye(DIMENSION)
        precision = 0.5 * (asymmetric + asymmetric.T)
        offset = sample_mean - mean
        expected = 0.5 * np.trace(
            precision @ precision @ (covariance + np.outer(offset, offset))
        ) - np.trace(precision)
        params = {"mean": jnp.asarray(mean), "precision": jnp.asarray(asymmetric)}
        from_logdensity = losses.score_matching(gaussian_logdensity)
        from_score = losses.score_matching(score_fn=gaussian_score)
        values = jax.jit(
            lambda params, key: (from_logdensity(params, key, data), from_score(params, key, data))
        )(params, jax.random.key(0))
        np.testing.assert_allclose(values, [expected, expected], rtol=1e-12)


def test_exact_optimum_is_sample_mean_and_inverse_covariance():
    """∇J = 0 at (x̄, S⁻¹), and Newton's method started at (0, I) lands there."""
    with jax.enable_x64(True):
        data = jnp.asarray(gaussian_data())
        sample_mean, covariance = sample_moments(np.asarray(data))
        inverse_covariance = np.linalg.inv(covariance)
        loss_fn = losses.score_matching(gaussian_logdensity)

        def objective(flat_params):
            params = {
                "mean": flat_params[:DIMENSION],
                "precision": precision_from_triangle(flat_params[DIMENSION:]),
            }
            return loss_fn(params, jax.random.key(0), data)

        @jax.jit
        def gradient_at_optimum_and_newton_minimiser(optimum, start):
            def newton_step(_, flat_params):
                hessian = jax.hessian(objective)(flat_params)
                return flat_params - jnp.linalg.solve(hessian, jax.grad(objective)(flat_params))

            return jax.grad(objective)(optimum), jax.lax.fori_loop(0, 20, newton_step, start)

        optimum = np.concatenate([sample_mean, inverse_covariance[TRIANGLE]])
        start = np.concatenate([np.zeros(DIMENSION), np.eye(DIMENSION)[TRIANGLE]])
        gradient, found = gradient_at_optimum_and_newton_minimiser(optimum, start)
        np.testing.assert_allclose(gradient, 0.0, atol=1e-10)
        np.testing.assert_allclose(found[:DIMENSION], sample_mean, atol=1e-6)
        np.testing.assert_allclose(
            precision_from_triangle(found[DIMENSION:]), inverse_covariance, atol=1e-6
        )


def test_exact_loss_averages_per_sample_terms_and_handles_2d_events():
    with jax.enable_x64(True):
        params = nonlinear_params()
        batch = jnp.asarray(np.random.default_rng(3).normal(size=(5, DIMENSION)))
        loss_fn = losses.score_matching(nonlinear_logdensity)
        key = jax.random.key(0)
        batch_loss, per_sample = jax.jit(
            lambda batch: (
                loss_fn(params, key, batch),
                jax.vmap(lambda x: loss_fn(params, key, x[None]))(batch),
            )
        )(batch)
        np.testing.assert_allclose(batch_loss, np.mean(per_sample), rtol=1e-12)

        # A (2, 2) event shape is flattened for the trace: same value as the flat model.
        params = {"mean": jnp.zeros(4), "precision": jnp.asarray(np.diag([1.0, 2.0, 3.0, 4.0]))}
        on_matrices = losses.score_matching(
            lambda params, x: gaussian_logdensity(params, x.reshape(4))
        )
        on_vectors = losses.score_matching(gaussian_logdensity)
        events = jnp.asarray(np.random.default_rng(4).normal(size=(6, 2, 2)))
        matrix_loss, vector_loss = jax.jit(
            lambda events: (
                on_matrices(params, key, events),
                on_vectors(params, key, events.reshape(6, 4)),
            )
        )(events)
        np.testing.assert_allclose(matrix_loss, vector_loss, rtol=1e-12)


SLICED_VARIANTS = {
    "ssm_rademacher": {"probe": "rademacher"},
    "ssm_vr_rademacher": {"probe": "rademacher", "variance_reduction": True},
    "ssm_vr_gaussian_2_probes": {"probe": "gaussian", "variance_reduction": True, "num_probes": 2},
}


@pytest.mark.parametrize("variant", sorted(SLICED_VARIANTS))
def test_sliced_is_unbiased_for_exact_score_matching(variant):
    """E over probes of SSM (and SSM-VR) == exact SM, within 4 SE over 10⁴ probe draws."""
    with jax.enable_x64(True):
        params = nonlinear_params()
        batch = jnp.asarray(np.random.default_rng(5).normal(size=(8, DIMENSION)))
        exact_loss = losses.score_matching(nonlinear_logdensity)
        sliced = losses.sliced_score_matching(nonlinear_logdensity, **SLICED_VARIANTS[variant])
        keys = jax.random.split(jax.random.key(6), 10_000)
        exact, estimates = jax.jit(
            lambda keys: (
                exact_loss(params, keys[0], batch),
                jax.vmap(lambda key: sliced(params, key, batch))(keys),
            )
        )(keys)
        assert_mean_within_mcse(estimates, exact, what=variant)


def test_score_fn_path_equals_logdensity_path():
    """A score network s = ∇ₓf gives the logdensity path's value (same key, same probes)."""
    with jax.enable_x64(True):
        params = nonlinear_params()
        score_fn = jax.grad(nonlinear_logdensity, argnums=1)
        batch = jnp.asarray(np.random.default_rng(7).normal(size=(6, DIMENSION)))
        key = jax.random.key(8)
        pairs = [(losses.score_matching, {}), (losses.sliced_score_matching, {"num_probes": 3})]
        pairs += [(losses.sliced_score_matching, options) for options in SLICED_VARIANTS.values()]

        @jax.jit
        def both_paths(params, key, batch):
            return [
                (
                    factory(nonlinear_logdensity, **options)(params, key, batch),
                    factory(score_fn=score_fn, **options)(params, key, batch),
                )
                for factory, options in pairs
            ]

        for from_logdensity, from_score in both_paths(params, key, batch):
            np.testing.assert_allclose(from_logdensity, from_score, rtol=1e-12)


@pytest.mark.parametrize(
    "options",
    [{"probe": "rademacher"}, {"probe": "gaussian", "variance_reduction": True}],
    ids=["ssm_rademacher", "ssm_vr_gaussian"],
)
def test_sliced_reaches_inverse_sample_covariance(options):
    """With 50 probes per sample, the SSM minimiser is S⁻¹ within its Monte-Carlo error."""
    with jax.enable_x64(True):
        data = jnp.asarray(gaussian_data())
        sample_mean, covariance = sample_moments(np.asarray(data))
        loss_fn = losses.sliced_score_matching(gaussian_logdensity, num_probes=50, **options)
        assert_precision_within_mcse(
            loss_fn, data, jnp.asarray(sample_mean), np.linalg.inv(covariance)
        )

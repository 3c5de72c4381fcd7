"""Jacobian traces: exact against jax.jacfwd, Hutchinson and Hutch++ against their moments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax import trace
from tests.helpers import Z, assert_mean_within_mcse


def nonlinear_field(x):
    """A non-symmetric, non-linear field v(x) of the same shape as x."""
    flat = x.reshape(-1)
    size = flat.size
    mixing = np.random.default_rng(size).normal(size=(size, size)).astype(flat.dtype)
    field = jnp.tanh(mixing @ flat) * flat + jnp.sin(flat) * jnp.sum(flat**2)
    return field.reshape(x.shape)


def jacfwd_trace(vector_fn, x):
    flat_fn = lambda flat: vector_fn(flat.reshape(x.shape)).reshape(-1)
    return jnp.trace(jax.jacfwd(flat_fn)(x.reshape(-1)))


def symmetric_matrix(size, seed=0):
    draws = np.random.default_rng(seed).normal(size=(size, size))
    return 0.5 * (draws + draws.T) + np.diag(np.arange(1.0, size + 1.0))


def decaying_spectrum_matrix(size, seed=0):
    """SPD with eigenvalues 1/i²: most of the trace sits in a few directions."""
    basis, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(size, size)))
    eigenvalues = 1.0 / np.arange(1.0, size + 1.0) ** 2
    return (basis * eigenvalues) @ basis.T


def estimates_over_keys(estimator, seed, num_keys):
    """``estimator(key)`` for independent keys, compiled once."""
    return np.asarray(
        jax.jit(jax.vmap(estimator))(jax.random.split(jax.random.key(seed), num_keys))
    )


def assert_variance_matches(samples, variance, what):
    """Gate |s² - σ²| < Z · SE(s²), SE from the sample fourth central moment."""
    samples = np.asarray(samples, dtype=np.float64)
    num = samples.size
    centred = samples - samples.mean()
    fourth_moment = np.mean(centred**4)
    standard_error = np.sqrt((fourth_moment - variance**2 * (num - 3) / (num - 1)) / num)
    empirical = centred.var(ddof=1)
    assert abs(empirical - variance) < Z * standard_error, (
        f"{what}: variance {empirical} vs formula {variance} (SE {standard_error})"
    )


@pytest.mark.parametrize("shape", [(1,), (7,), (2, 3)])
def test_exact_divergence_matches_jacfwd_trace(shape):
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(1).normal(size=shape))
        expected, divergence, (value, same_divergence) = jax.jit(
            lambda x: (
                jacfwd_trace(nonlinear_field, x),
                trace.exact_divergence(nonlinear_field, x),
                trace.value_and_exact_divergence(nonlinear_field, x),
            )
        )(x)
        np.testing.assert_allclose(divergence, expected, atol=1e-10)
        np.testing.assert_allclose(same_divergence, expected, atol=1e-10)
        np.testing.assert_allclose(value, nonlinear_field(x), atol=1e-12)


def test_value_and_jvps_matches_jacobian_products():
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        x, tangents = jnp.asarray(rng.normal(size=(2, 3))), jnp.asarray(rng.normal(size=(4, 2, 3)))
        jacobian, one, four = jax.jit(
            lambda x: (
                jax.jacfwd(nonlinear_field)(x).reshape(6, 6),
                trace.value_and_jvps(nonlinear_field, x, tangents[:1]),  # the plain-jvp path
                trace.value_and_jvps(nonlinear_field, x, tangents),
            )
        )(x)
        for value, products in (one, four):
            count = products.shape[0]
            expected = (tangents[:count].reshape(count, 6) @ jacobian.T).reshape(count, 2, 3)
            np.testing.assert_allclose(value, nonlinear_field(x), atol=1e-12)
            np.testing.assert_allclose(products, expected, atol=1e-10)


@pytest.mark.parametrize(
    ("probe", "num_probes"), [("rademacher", 1), ("gaussian", 1), ("rademacher", 4)]
)
def test_hutchinson_mean_and_variance(probe, num_probes):
    """Unbiased for tr A, with Var[vᵀAv] = 2 Σ_{i≠j} Ā_ij² (Rademacher) or 2 ‖Ā‖_F² (Gaussian).

    Ā = (A + Aᵀ)/2 is the symmetric part of the (non-symmetric) Jacobian; K probes
    divide the variance by K.
    """
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 3)))
        jacobian = np.asarray(jax.jit(jax.jacfwd(nonlinear_field))(x)).reshape(6, 6)
        estimates = estimates_over_keys(
            lambda key: trace.hutchinson_divergence(key, nonlinear_field, x, num_probes, probe),
            seed=5,
            num_keys=20000,
        )
        assert_mean_within_mcse(estimates, np.trace(jacobian), what=f"{probe}, K={num_probes}")
        squares = (0.5 * (jacobian + jacobian.T)) ** 2
        if probe == "rademacher":
            variance = 2.0 * (squares.sum() - np.trace(squares))
        else:
            variance = 2.0 * squares.sum()
        assert_variance_matches(estimates, variance / num_probes, f"{probe}, K={num_probes}")


def test_hutchpp_is_exact_for_low_rank():
    """rank A ≤ m/3: the sketch captures range A, so the estimate is tr A exactly."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        low_rank = rng.normal(size=(8, 2)) @ rng.normal(size=(8, 2)).T  # rank 2, not symmetric
        field = lambda x: (low_rank @ x.reshape(-1)).reshape(x.shape)
        estimates = estimates_over_keys(
            lambda key: (
                trace.hutchpp_divergence(key, field, jnp.zeros(8), 6, probe="gaussian"),
                trace.hutchpp_divergence(key, field, jnp.zeros((2, 4)), 6, probe="rademacher"),
            ),
            seed=8,
            num_keys=5,
        )
        np.testing.assert_allclose(estimates, np.trace(low_rank), atol=1e-10)


def test_hutchpp_is_unbiased_on_a_nonlinear_field():
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(9).normal(size=(3, 4)))
        estimates = estimates_over_keys(
            lambda key: trace.hutchpp_divergence(key, nonlinear_field, x, num_matvecs=6), 10, 4000
        )
        exact = jax.jit(lambda x: jacfwd_trace(nonlinear_field, x))(x)
        assert_mean_within_mcse(estimates, exact, what="Hutch++")


def test_hutchpp_beats_hutchinson_on_decaying_spectrum():
    """Equal budget of 12 JVPs on a 1/i² spectrum: both unbiased, deflation far less noisy."""
    with jax.enable_x64(True):
        matrix = decaying_spectrum_matrix(20)
        field, x = (lambda x: matrix @ x), jnp.zeros(20)
        hutchinson, hutchpp = estimates_over_keys(
            lambda key: (
                trace.hutchinson_divergence(key, field, x, 12),
                trace.hutchpp_divergence(key, field, x, 12),
            ),
            seed=11,
            num_keys=2000,
        )
        assert_mean_within_mcse(hutchinson, np.trace(matrix), what="Hutchinson")
        assert_mean_within_mcse(hutchpp, np.trace(matrix), what="Hutch++")
        # The ratio is ~0.02 here; with 2000 draws each, 0.1 is far outside F-test noise.
        assert np.var(hutchpp) < 0.1 * np.var(hutchinson)


def test_bad_inputs_are_named():
    x = jnp.zeros(3)
    with pytest.raises(ValueError, match="probe"):
        trace.sample_probes(jax.random.key(0), (3,), 1, probe="unit_sphere")
    with pytest.raises(ValueError, match="num_probes"):
        trace.hutchinson_divergence(jax.random.key(0), jnp.sin, x, num_probes=0)
    with pytest.raises(TypeError, match="num_probes"):
        trace.hutchinson_divergence(jax.random.key(0), jnp.sin, x, num_probes=2.0)
    with pytest.raises(ValueError, match="probe"):
        trace.hutchinson_divergence(jax.random.key(0), jnp.sin, x, probe="normal")
    with pytest.raises(ValueError, match="vector_fn"):
        trace.exact_divergence(lambda y: jnp.sum(y), x)
    with pytest.raises(ValueError, match="vector_fn"):
        trace.hutchinson_divergence(jax.random.key(0), lambda y: y[:2], x)
    with pytest.raises(TypeError, match="vector_fn"):
        trace.exact_divergence("sin", x)
    with pytest.raises(ValueError, match="num_matvecs"):
        trace.hutchpp_divergence(jax.random.key(0), jnp.sin, x, num_matvecs=4)
    with pytest.raises(ValueError, match="num_matvecs"):
        trace.hutchpp_divergence(jax.random.key(0), jnp.sin, x, num_matvecs=0)
    with pytest.raises(ValueError, match="tangents"):
        trace.value_and_jvps(jnp.sin, x, jnp.ones((2, 4)))

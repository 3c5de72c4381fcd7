"""Tests for ebm_jax.diagnostics.convergence: ESS, R̂ and MCSE equal ArviZ and theory."""

from __future__ import annotations

import math
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax import diagnostics
from tests.diagnostics.chains import ar1_chains, arviz_per_coordinate, mixed_coordinates

# ------------------------------------------------------------------------------------------
# ESS, R̂, MCSE: equality with ArviZ
# ------------------------------------------------------------------------------------------


def test_chain_diagnostics_equal_arviz_per_coordinate(x64, az):
    samples = mixed_coordinates(4, 501)  # odd num_draws: the split drops the middle draw
    checks = [
        (diagnostics.ess(samples, method="bulk"), az.ess, {"method": "bulk"}),
        (diagnostics.ess(samples, method="tail"), az.ess, {"method": "tail"}),
        (diagnostics.ess(samples, method="mean"), az.ess, {"method": "mean"}),
        (diagnostics.rhat(samples, method="rank"), az.rhat, {"method": "rank"}),
        (diagnostics.rhat(samples, method="split"), az.rhat, {"method": "split"}),
        (diagnostics.mcse(samples), az.mcse, {"method": "mean"}),
        (diagnostics.mcse(samples, method="sd"), az.mcse, {"method": "sd"}),
    ]
    for ours, function, kwargs in checks:
        assert ours.dtype == jnp.float64 and ours.shape == (samples.shape[-1],)
        expected = arviz_per_coordinate(az, function, samples, **kwargs)
        np.testing.assert_allclose(ours, expected, rtol=1e-6, err_msg=str(kwargs))
    assert float(diagnostics.ess(samples)[-1]) == 4 * 500  # constant coordinate: the size
    assert np.isnan(diagnostics.rhat(samples)[-1])


def test_short_chains_single_chain_and_event_shape_equal_arviz(x64, az):
    # 11 draws: halves of 5, where Geyer's sequence is cut by the chain length with a
    # non-negative last pair; seeds 10, 23 and 25 make ArviZ keep a negative ρ̂_2 there.
    iid = [np.random.default_rng(seed).normal(size=(2, 11)) for seed in (10, 23, 25)]
    short = np.concatenate([mixed_coordinates(2, 11)[..., :3], np.stack(iid, -1)], -1)
    for method in ("bulk", "tail", "mean"):
        expected = arviz_per_coordinate(az, az.ess, short, method=method)
        np.testing.assert_allclose(diagnostics.ess(short, method=method), expected, rtol=1e-6)
    expected = arviz_per_coordinate(az, az.rhat, short)
    np.testing.assert_allclose(diagnostics.rhat(short), expected, rtol=1e-6)

    matrix = short.reshape(2, 11, 2, 3)
    ours = diagnostics.rhat(matrix)
    assert ours.shape == (2, 3)
    np.testing.assert_allclose(ours, arviz_per_coordinate(az, az.rhat, matrix), rtol=1e-6)

    # One chain of 7 draws: split into two halves of 3, too short for any pair of lags.
    single = ar1_chains(7, 1, 7, 0.7)
    assert diagnostics.ess(single).shape == ()
    np.testing.assert_allclose(diagnostics.ess(single), az.ess(single), rtol=1e-6)


# The float32 tests below share one shape, (4, 20000), so each function compiles once.
LONG = (4, 20_000)


def test_float32_agrees_with_arviz_and_traces_under_jit(az):
    samples = ar1_chains(11, *LONG, 0.5)
    ours = diagnostics.ess(jnp.asarray(samples, jnp.float32))
    assert ours.dtype == jnp.float32
    np.testing.assert_allclose(ours, az.ess(samples), rtol=1e-4)
    # Value checks are skipped for tracers, so the diagnostics compose with jit.
    for function in (diagnostics.ess, diagnostics.rhat, diagnostics.mcse):
        jax.jit(function).lower(jnp.zeros((*LONG, 2)))
    jax.jit(lambda tree: diagnostics.ess(tree, method="tail")).lower({"x": jnp.zeros(LONG)})


# ------------------------------------------------------------------------------------------
# ESS, R̂, MCSE: behaviour against theory
# ------------------------------------------------------------------------------------------


def test_ess_of_iid_draws_is_about_the_number_of_draws():
    draws = jax.random.normal(jax.random.key(0), LONG)
    for method in ("bulk", "mean"):
        assert abs(float(diagnostics.ess(draws, method=method)) / draws.size - 1) < 0.05


@pytest.mark.parametrize("rho", [0.5, -0.3])
def test_ess_of_ar1_matches_the_integrated_autocorrelation_time(rho):
    # For AR(1), τ = (1 + ρ) / (1 − ρ): ESS / N → (1 − ρ) / (1 + ρ), above 1 for ρ < 0.
    chains = ar1_chains(1, *LONG, rho).astype(np.float32)
    expected = chains.size * (1 - rho) / (1 + rho)
    for method in ("bulk", "mean"):
        assert abs(float(diagnostics.ess(chains, method=method)) / expected - 1) < 0.1
    expected_mcse = chains.std(ddof=1) / math.sqrt(expected)
    assert abs(float(diagnostics.mcse(chains)) / expected_mcse - 1) < 0.1


def test_rhat_near_one_for_mixed_chains_and_large_otherwise():
    draws = np.asarray(jax.random.normal(jax.random.key(0), LONG))
    for method in ("rank", "split"):
        assert float(diagnostics.rhat(draws, method=method)) < 1.01
    shifted = draws.copy()
    shifted[0] += 2.0
    for method in ("rank", "split"):
        assert float(diagnostics.rhat(shifted, method=method)) > 1.1
    # Same mean, different scale: only the folded (tail) R̂ of method="rank" sees it.
    scaled = draws.copy()
    scaled[0] *= 3.0
    assert float(diagnostics.rhat(scaled, method="split")) < 1.01
    assert float(diagnostics.rhat(scaled, method="rank")) > 1.05


# ------------------------------------------------------------------------------------------
# Input validation
# ------------------------------------------------------------------------------------------

_CHAINS = np.zeros((2, 10))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: diagnostics.ess(np.zeros(10)), "samples"),
        (lambda: diagnostics.ess(np.zeros((2, 3))), "samples"),
        (lambda: diagnostics.ess(np.full((2, 10), np.nan)), "samples"),
        (lambda: diagnostics.ess(_CHAINS, method="median"), "method"),
        (lambda: diagnostics.rhat(np.zeros((1, 10))), "samples"),
        (lambda: diagnostics.rhat(_CHAINS, method="folded"), "method"),
        (lambda: diagnostics.mcse(np.zeros((2, 3, 4))), "samples"),
        (lambda: diagnostics.mcse(_CHAINS, method="median"), "method"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_complex_samples_raise_type_error_naming_the_argument():
    with pytest.raises(TypeError, match="samples"):
        diagnostics.ess(np.zeros((2, 10), complex))


def test_rank_normalisation_stays_finite_for_millions_of_draws():
    """float32 (r − 3/8)/(S + 1/4) rounds to 1 for the top draw above ~2²² draws: z = ∞."""
    from ebm_jax.diagnostics.convergence import _blom_scores

    for size in (5_000_000, 16_000_000):  # the smallest and largest draws of S pooled draws
        z = np.asarray(_blom_scores(jnp.array([2, 2 * size], jnp.int32), size, jnp.float32))
        assert np.all(np.isfinite(z)), size
        # Blom scores are antisymmetric in the rank: the largest draw mirrors the smallest.
        np.testing.assert_allclose(z[1], -z[0], rtol=1e-6)
        expected = statistics.NormalDist().inv_cdf(0.625 / (size + 0.25))  # float64
        np.testing.assert_allclose(z[0], expected, rtol=1e-5)

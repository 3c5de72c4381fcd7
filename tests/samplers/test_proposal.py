"""The shared Metropolis-Hastings step of §11.2.1: accept y with probability
A(x, y) = min(1, r), r = p(y)q(x|y) / p(x)q(y|x) given as log r; NaN/inf rejected."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import ebm_jax as ej
from ebm_jax.samplers.proposal import mh_accept_with_log_uniform

CURRENT = {"x": jnp.array([1.0, 2.0]), "f": jnp.array(-0.5)}
PROPOSED = {"x": jnp.array([3.0, -4.0]), "f": jnp.array(-2.0)}


def test_a_proposal_is_accepted_exactly_when_log_u_is_below_log_r():
    """Every pair (log u, log r) of a grid: moved iff log u < log r, A = min(1, e^{log r}),
    and the state is the proposal's or the current one in every leaf."""
    log_uniforms, log_ratios = np.meshgrid(
        np.log([1e-6, 0.1, 0.5, 0.9, 0.999]), [-20.0, -3.0, -0.7, -0.1, 0.0, 0.4, 5.0]
    )
    log_uniforms, log_ratios = log_uniforms.ravel(), log_ratios.ravel()
    accept = jax.vmap(mh_accept_with_log_uniform, in_axes=(0, 0, None, None, None))
    states, info = accept(
        jnp.asarray(log_uniforms), jnp.asarray(log_ratios), PROPOSED, CURRENT, jnp.array(True)
    )
    moved = log_uniforms < log_ratios
    np.testing.assert_array_equal(info.is_accepted, moved)
    np.testing.assert_allclose(info.acceptance_rate, np.exp(np.minimum(log_ratios, 0)), rtol=1e-6)
    assert not np.any(info.is_nonfinite)
    for name in CURRENT:
        expected = np.where(
            moved.reshape(-1, *[1] * CURRENT[name].ndim), PROPOSED[name], CURRENT[name]
        )
        np.testing.assert_array_equal(states[name], expected)


def test_the_acceptance_frequency_is_min_one_r():
    """20 000 draws of u per log r: the fraction accepted is min(1, r) within 4 binomial SE
    (exactly 1 when r ≥ 1)."""
    log_ratios = jnp.array([-2.0, -0.5, -0.05, 0.0, 1.5])
    keys = jax.random.split(jax.random.key(0), 20_000)

    @jax.jit
    def accepted(log_ratio):
        step = lambda key: ej.samplers.mh_accept(key, log_ratio, PROPOSED, CURRENT, True)
        return jax.vmap(step)(keys)[1].is_accepted

    frequencies = np.array([np.mean(accepted(log_ratio)) for log_ratio in log_ratios])
    probabilities = np.exp(np.minimum(np.asarray(log_ratios, np.float64), 0.0))
    standard_errors = np.sqrt(probabilities * (1 - probabilities) / keys.shape[0])
    assert np.all(np.abs(frequencies - probabilities) <= 4 * standard_errors), (
        frequencies,
        probabilities,
    )


def test_nonfinite_proposals_and_nan_ratios_are_rejected():
    """A non-finite proposal is rejected and flagged whatever log r says; a NaN log r is
    rejected with A = 0 (log r → −∞), even for u → 0."""
    tiny_log_u = jnp.log(jnp.array(1e-30))
    for log_ratio, finite, flagged in [(50.0, False, True), (jnp.nan, True, False)]:
        state, info = mh_accept_with_log_uniform(
            tiny_log_u, jnp.asarray(log_ratio), PROPOSED, CURRENT, jnp.array(finite)
        )
        assert not bool(info.is_accepted)
        assert float(info.acceptance_rate) == 0.0
        assert bool(info.is_nonfinite) == flagged
        np.testing.assert_array_equal(state["x"], CURRENT["x"])

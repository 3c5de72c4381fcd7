"""The conformance suite every single-chain kernel passes.

Signatures and state structure, jit == no-jit, no retrace on a second step,
vmap consistency, NaN/inf proposals rejected and flagged.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej

COVARIANCE = jnp.array([[1.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 0.5]])
PRECISION = jnp.linalg.inv(COVARIANCE)


def gaussian_logdensity(x):
    return -0.5 * x @ PRECISION @ x


def nan_beyond_one(x):
    """A log-density that is NaN where x[0] > 1: proposals there must be rejected."""
    return jnp.where(x[0] > 1.0, jnp.nan, -0.5 * jnp.sum(x**2))


KERNELS = {
    "mala": lambda f: ej.samplers.mala(f, 0.3),
    "mala_lecture_pair": lambda f: ej.samplers.mala(f, 0.3, noise_variance=0.3),
    "mala_diag": lambda f: ej.samplers.mala(f, 0.3, inverse_mass_matrix=jnp.array([1.0, 2, 0.5])),
    "mala_dense": lambda f: ej.samplers.mala(f, 0.3, inverse_mass_matrix=COVARIANCE),
    "ula": lambda f: ej.samplers.ula(f, 0.1),
    "rwmh": lambda f: ej.samplers.rwmh(f, 0.8),
    "rwmh_diag": lambda f: ej.samplers.rwmh(f, 0.8, inverse_mass_matrix=jnp.array([1.0, 2, 0.5])),
    "rwmh_dense": lambda f: ej.samplers.rwmh(f, 0.8, inverse_mass_matrix=COVARIANCE),
}
KERNELS["metropolis_within_gibbs"] = lambda f: ej.samplers.metropolis_within_gibbs(f, 0.8)
# Exact Gibbs kernels sample their own (Gaussian) target, not an arbitrary logdensity_fn.
EXACT_GIBBS = {"gaussian_gibbs": lambda f: ej.samplers.gaussian_gibbs(jnp.zeros(3), PRECISION)}

INITIAL = jnp.array([0.5, -0.3, 0.2])


@pytest.fixture(params=sorted(KERNELS | EXACT_GIBBS))
def algorithm(request):
    return (KERNELS | EXACT_GIBBS)[request.param](gaussian_logdensity)


def test_signature_and_state_structure(algorithm):
    assert isinstance(algorithm, ej.samplers.SamplingAlgorithm)
    state = algorithm.init(INITIAL)
    new_state, info = algorithm.step(jax.random.key(0), state)
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    assert new_state.position.shape == INITIAL.shape
    for field in ("acceptance_rate", "is_accepted", "is_nonfinite"):
        assert getattr(info, field).shape == ()
    assert info.is_accepted.dtype == jnp.bool_
    assert 0.0 <= float(info.acceptance_rate) <= 1.0


def test_jit_equals_no_jit(algorithm):
    state = algorithm.init(INITIAL)
    key = jax.random.key(3)
    eager = algorithm.step(key, state)
    jitted = jax.jit(algorithm.step)(key, state)
    chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-6)


def test_no_retrace_on_second_step(algorithm):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(key, state):
        return algorithm.step(key, state)

    state = algorithm.init(INITIAL)
    for seed in range(3):
        state, _ = step(jax.random.key(seed), state)
    chex.clear_trace_counter()


def test_vmap_matches_per_chain_steps(algorithm):
    positions = jax.random.normal(jax.random.key(1), (5, 3))
    keys = jax.random.split(jax.random.key(2), 5)
    states = jax.vmap(algorithm.init)(positions)
    batched_state, batched_info = jax.vmap(algorithm.step)(keys, states)
    for chain in range(5):
        state = algorithm.init(positions[chain])
        single_state, single_info = algorithm.step(keys[chain], state)
        chex.assert_trees_all_close(
            jax.tree.map(lambda leaf, c=chain: leaf[c], (batched_state, batched_info)),
            (single_state, single_info),
            rtol=1e-5,
            atol=1e-6,
        )


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_nan_proposals_rejected_and_flagged(name):
    algorithm = KERNELS[name](nan_beyond_one)
    initial = jnp.tile(jnp.array([0.9, 0.0, 0.0]), (64, 1))
    result = ej.run_chains(jax.random.key(0), algorithm, initial, 50)
    assert np.all(np.isfinite(np.asarray(result.samples)))
    assert np.all(np.asarray(result.samples)[..., 0] <= 1.0)
    assert int(result.num_nonfinite.sum()) > 0

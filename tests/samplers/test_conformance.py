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
CONTINUOUS_POSITIONS = jax.random.normal(jax.random.key(1), (5, 3))
BINARY_POSITIONS = jax.random.bernoulli(jax.random.key(1), 0.5, (5, 3)).astype(jnp.float32)


def boltzmann_logdensity(x):
    """A 3-site Boltzmann machine on {0, 1}^3."""
    return x @ COVARIANCE @ x - jnp.sum(x)


RBM_PARAMS = {
    "params": {
        "weights": jnp.array([[1.0, -0.5], [0.3, 0.8], [-1.2, 0.4]]),
        "visible_bias": jnp.array([0.2, -0.1, 0.3]),
        "hidden_bias": jnp.array([-0.3, 0.5]),
    }
}
# Kernels on {0, 1}^3 (or with their own model), each with its own starting positions.
OWN_TARGET = {
    "binary_gibbs": (lambda: ej.samplers.binary_gibbs(boltzmann_logdensity), BINARY_POSITIONS),
    "rbm_block_gibbs": (
        lambda: ej.models.BernoulliRBM(2).block_gibbs(RBM_PARAMS),
        BINARY_POSITIONS,
    ),
    "gaussian_rbm_block_gibbs": (
        lambda: ej.models.GaussianBernoulliRBM(2, visible_scale=0.7).block_gibbs(RBM_PARAMS),
        CONTINUOUS_POSITIONS,
    ),
}


@pytest.fixture(params=sorted(KERNELS | EXACT_GIBBS | OWN_TARGET))
def algorithm_and_positions(request):
    """A kernel and five starting positions (the first is the single-chain start)."""
    if request.param in OWN_TARGET:
        make, positions = OWN_TARGET[request.param]
        return make(), positions
    positions = CONTINUOUS_POSITIONS.at[0].set(INITIAL)
    return (KERNELS | EXACT_GIBBS)[request.param](gaussian_logdensity), positions


def test_signature_and_state_structure(algorithm_and_positions):
    algorithm, positions = algorithm_and_positions
    assert isinstance(algorithm, ej.samplers.SamplingAlgorithm)
    state = algorithm.init(positions[0])
    new_state, info = algorithm.step(jax.random.key(0), state)
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    assert new_state.position.shape == positions[0].shape
    for field in ("acceptance_rate", "is_accepted", "is_nonfinite"):
        assert getattr(info, field).shape == ()
    assert info.is_accepted.dtype == jnp.bool_
    assert 0.0 <= float(info.acceptance_rate) <= 1.0


def test_jit_equals_no_jit(algorithm_and_positions):
    algorithm, positions = algorithm_and_positions
    state = algorithm.init(positions[0])
    key = jax.random.key(3)
    eager = algorithm.step(key, state)
    jitted = jax.jit(algorithm.step)(key, state)
    chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-6)


def test_no_retrace_on_second_step(algorithm_and_positions):
    algorithm, positions = algorithm_and_positions

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(key, state):
        return algorithm.step(key, state)

    state = algorithm.init(positions[0])
    for seed in range(3):
        state, _ = step(jax.random.key(seed), state)
    chex.clear_trace_counter()


def test_vmap_matches_per_chain_steps(algorithm_and_positions):
    algorithm, positions = algorithm_and_positions
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

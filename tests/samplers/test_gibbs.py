"""Gibbs kernels: exact one-sweep laws, MCSE-gated moments, the Ising model against
exact enumeration, Metropolis-within-Gibbs bookkeeping, and named input errors."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej
from ebm_jax import densities
from tests.helpers import assert_mean_within_mcse

CORRELATION = 0.8
MEAN_2D = np.array([1.0, -1.0])
PRECISION_2D = np.linalg.inv(np.array([[1.0, CORRELATION], [CORRELATION, 1.0]]))

MEAN_3D = np.array([0.5, -1.0, 2.0])
COVARIANCE_3D = np.array([[1.0, 0.7, -0.3], [0.7, 2.0, 0.5], [-0.3, 0.5, 0.8]])


def run_independent_chains(algorithm, positions, num_steps, seed=0):
    """``num_steps`` transitions of independent chains from ``positions`` (one jit).

    Returns the final states and, per step, the positions and infos.
    """

    def chain(key, position):
        def transition(state, step_key):
            state, info = algorithm.step(step_key, state)
            return state, (state.position, info)

        keys = jax.random.split(key, num_steps)
        return jax.lax.scan(transition, algorithm.init(position), keys)

    keys = jax.random.split(jax.random.key(seed), positions.shape[0])
    return jax.jit(jax.vmap(chain))(keys, jnp.asarray(positions))


def per_chain_moments(samples, mean):
    """Per-chain averages of x and of (x - mean)(x - mean)^T, flattened."""
    centred = samples - mean
    outer = np.einsum("cti,ctj->cij", centred, centred) / samples.shape[1]
    return samples.mean(axis=1), outer.reshape(samples.shape[0], -1)


# -- gaussian_gibbs -------------------------------------------------------------------------


def test_gaussian_gibbs_one_sweep_has_the_closed_form_law():
    """From a fixed x⁰, one systematic sweep on a unit-variance bivariate Gaussian gives
    x₁ = μ₁ + ρ(x⁰₂ - μ₂) + √(1-ρ²) ε₁ then x₂ = μ₂ + ρ(x₁ - μ₁) + √(1-ρ²) ε₂."""
    rho, start = CORRELATION, np.array([3.0, 2.0])
    algorithm = ej.samplers.gaussian_gibbs(MEAN_2D, PRECISION_2D)
    initial = np.tile(start.astype(np.float32), (20_000, 1))
    states, (_, info) = run_independent_chains(algorithm, initial, num_steps=1)
    x = np.asarray(states.position, dtype=np.float64)
    mean_1 = MEAN_2D[0] + rho * (start[1] - MEAN_2D[1])
    mean_2 = MEAN_2D[1] + rho * (mean_1 - MEAN_2D[0])
    residual_1, residual_2 = x[:, 0] - mean_1, x[:, 1] - mean_2
    features = np.stack(
        [x[:, 0], x[:, 1], residual_1**2, residual_2**2, residual_1 * residual_2], 1
    )
    expected = [mean_1, mean_2, 1 - rho**2, (1 - rho**2) * (1 + rho**2), rho * (1 - rho**2)]
    assert_mean_within_mcse(features, expected, what="one-sweep law")
    assert np.all(np.asarray(info.acceptance_rate) == 1.0) and np.all(info.is_accepted)
    assert not np.any(info.is_nonfinite)


def test_gaussian_gibbs_converges_to_a_correlated_3d_gaussian():
    """20 000 chains from a far point, 40 sweeps each (the bias decays geometrically,
    far below the MCSE), final states iid: MCSE-gated mean and covariance."""
    target = densities.gaussian(MEAN_3D, COVARIANCE_3D)
    algorithm = ej.samplers.gaussian_gibbs(target.mean, target.parameters["precision"])
    initial = np.tile(np.float32([8.0, -8.0, 8.0]), (20_000, 1))
    states, (_, info) = run_independent_chains(algorithm, initial, num_steps=40)
    x = np.asarray(states.position, dtype=np.float64)
    centred = x - MEAN_3D
    outer = np.einsum("ni,nj->nij", centred, centred).reshape(len(x), -1)
    assert_mean_within_mcse(x, MEAN_3D, what="mean")
    assert_mean_within_mcse(outer, COVARIANCE_3D.reshape(-1), what="covariance")
    np.testing.assert_array_equal(info.acceptance_rate, 1.0)


def test_gaussian_gibbs_is_jittable_and_does_not_retrace():
    algorithm = ej.samplers.gaussian_gibbs(MEAN_3D, np.linalg.inv(COVARIANCE_3D))
    state = algorithm.init(jnp.zeros(3))
    eager = algorithm.step(jax.random.key(0), state)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(key, state):
        return algorithm.step(key, state)

    chex.assert_trees_all_close(step(jax.random.key(0), state), eager, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_equal_shapes_and_dtypes(eager[0], state)
    step(jax.random.key(1), eager[0])
    chex.clear_trace_counter()


# -- ising_gibbs ----------------------------------------------------------------------------


def ising_observables(spins, coupling, field):
    """(..., L, L) spins -> (..., 2): energy E = -f and |m|, in NumPy (independent of
    the package's ``ising_energy``)."""
    spins = np.asarray(spins, dtype=np.float64)
    bonds = np.sum(spins * (np.roll(spins, 1, -2) + np.roll(spins, 1, -1)), axis=(-2, -1))
    energy = -(coupling * bonds + field * spins.sum(axis=(-2, -1)))
    return np.stack([energy, np.abs(spins.mean(axis=(-2, -1)))], axis=-1)


ISING_SETTINGS = [(0.3, 0.0), (0.44, 0.0), (0.3, 0.2)]  # J = 0.44 is near critical


def test_ising_gibbs_matches_exact_enumeration():
    """256 independent chains per (J, h) on the 4×4 torus, from random spins, all in
    one ``run_chains`` call with per-chain ``coupling`` and ``field``. Each chain's
    time average of E and |m| is one independent estimate (MCSE across chains)."""
    per_setting = 256
    couplings, fields = np.repeat(np.float32(ISING_SETTINGS), per_setting, axis=0).T
    initial = jax.random.rademacher(jax.random.key(0), (len(couplings), 4, 4), dtype=jnp.float32)
    result = ej.run_chains(
        jax.random.key(1),
        ej.samplers.ising_gibbs,
        initial,
        300,
        num_burnin=100,
        chain_parameters={"coupling": couplings, "field": fields},
    )
    samples = np.asarray(result.samples)
    for index, (coupling, field) in enumerate(ISING_SETTINGS):
        chains = slice(index * per_setting, (index + 1) * per_setting)
        exact = densities.ising_exact_expectations(4, coupling, field)
        per_chain = ising_observables(samples[chains], coupling, field).mean(axis=1)
        assert_mean_within_mcse(
            per_chain,
            [exact.energy, exact.abs_magnetization],
            what=f"<E>, <|m|> at J={coupling}, h={field}",
        )


def test_ising_gibbs_leaves_the_exact_distribution_invariant():
    """From exact samples, one checkerboard step must again give exact samples."""
    coupling, field = 0.44, 0.1
    target = densities.ising(4, coupling, field)
    exact = densities.ising_exact_expectations(4, coupling, field)
    algorithm = ej.samplers.ising_gibbs(coupling, field)
    states, (_, info) = run_independent_chains(
        algorithm, target.sample(jax.random.key(2), 20_000), num_steps=1
    )
    spins = np.asarray(states.position)
    assert set(np.unique(spins)) == {-1.0, 1.0}
    features = np.concatenate(
        [ising_observables(spins, coupling, field), spins.mean(axis=(1, 2))[:, None]], axis=1
    )
    assert_mean_within_mcse(
        features, [exact.energy, exact.abs_magnetization, exact.magnetization], what="one step"
    )
    assert np.all(np.asarray(info.acceptance_rate) == 1.0)


def test_ising_gibbs_state_structure():
    algorithm = ej.samplers.ising_gibbs(0.44)
    state = algorithm.init(jnp.ones((6, 4)))
    new_state, info = jax.jit(algorithm.step)(jax.random.key(0), state)
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    for field in ("acceptance_rate", "is_accepted", "is_nonfinite"):
        assert getattr(info, field).shape == ()
    assert info.is_accepted.dtype == jnp.bool_


# -- metropolis_within_gibbs ----------------------------------------------------------------


def test_metropolis_within_gibbs_moments_on_a_gaussian_mixture():
    """256 chains from a far point; per-chain averages are independent estimates."""
    target = densities.gaussian_mixture(
        np.array([0.3, 0.7]),
        np.array([[-1.0, 0.5], [1.0, -0.5]]),
        np.array([[0.6, 0.8], [0.8, 0.5]]),
    )
    algorithm = ej.samplers.metropolis_within_gibbs(target.logdensity_fn, 1.5)
    initial = jnp.tile(jnp.array([4.0, -4.0]), (256, 1))
    result = ej.run_chains(jax.random.key(0), algorithm, initial, 400, num_burnin=200)
    mean = np.asarray(target.mean, dtype=np.float64)
    means, outers = per_chain_moments(np.asarray(result.samples, dtype=np.float64), mean)
    assert_mean_within_mcse(means, mean, what="mean")
    covariance = np.asarray(target.covariance, dtype=np.float64).reshape(-1)
    assert_mean_within_mcse(outers, covariance, what="covariance")
    assert np.all((result.acceptance_rate > 0.2) & (result.acceptance_rate < 0.95))


def test_metropolis_within_gibbs_acceptance_rate_is_the_sweep_mean():
    """Coordinate 0 is flat (always accepted), coordinate 1 is pinned (always
    rejected): acceptance_rate = 1/2 and the chain still moved."""
    algorithm = ej.samplers.metropolis_within_gibbs(lambda x: -1e6 * x[1] ** 2, 1.0)
    state, info = algorithm.step(jax.random.key(0), algorithm.init(jnp.zeros(2)))
    np.testing.assert_allclose(info.acceptance_rate, 0.5, atol=1e-6)
    assert bool(info.is_accepted) and not bool(info.is_nonfinite)
    assert float(state.position[1]) == 0.0 and float(state.position[0]) != 0.0
    np.testing.assert_allclose(state.logdensity, -1e6 * state.position[1] ** 2)


def test_metropolis_within_gibbs_rejects_and_flags_nan_proposals():
    def nan_beyond_one(x):
        return jnp.where(x[0] > 1.0, jnp.nan, -0.5 * jnp.sum(x**2))

    algorithm = ej.samplers.metropolis_within_gibbs(nan_beyond_one, 1.0)
    initial = np.tile(np.float32([0.9, 0.0, 0.0]), (64, 1))
    states, (positions, info) = run_independent_chains(algorithm, initial, num_steps=50)
    positions = np.asarray(positions)
    assert np.all(np.isfinite(positions)) and np.all(positions[..., 0] <= 1.0)
    assert np.all(np.isfinite(states.logdensity))
    assert np.any(info.is_nonfinite)
    assert np.all((np.asarray(info.acceptance_rate) >= 0) & (np.asarray(info.acceptance_rate) <= 1))


def test_metropolis_within_gibbs_per_coordinate_scale():
    algorithm = ej.samplers.metropolis_within_gibbs(
        lambda x: -0.5 * jnp.sum(x**2), jnp.array([0.1, 5.0])
    )
    state, _ = algorithm.step(jax.random.key(0), algorithm.init(jnp.zeros(2)))
    assert state.position.shape == (2,)
    with pytest.raises(ValueError, match="scale"):
        algorithm.init(jnp.zeros(3))


# -- input errors ---------------------------------------------------------------------------


def quadratic(x):
    return -jnp.sum(x**2)


gaussian_gibbs = ej.samplers.gaussian_gibbs
ising_gibbs = ej.samplers.ising_gibbs
metropolis_within_gibbs = ej.samplers.metropolis_within_gibbs


@pytest.mark.parametrize(
    ("build", "error", "argument"),
    [
        (lambda: gaussian_gibbs(np.zeros(2), [[1.0, 2.0], [2.0, 1.0]]), ValueError, "precision"),
        (lambda: gaussian_gibbs(np.zeros(2), [[1.0, 0.5], [0.0, 1.0]]), ValueError, "precision"),
        (lambda: gaussian_gibbs(np.zeros(3), np.eye(2)), ValueError, "precision"),
        (lambda: gaussian_gibbs([np.nan, 0.0], np.eye(2)), ValueError, "mean"),
        (lambda: gaussian_gibbs(np.zeros(2), np.eye(2)).init(np.zeros(3)), ValueError, "position"),
        (lambda: ising_gibbs(float("nan")), ValueError, "coupling"),
        (lambda: ising_gibbs("0.3"), TypeError, "coupling"),
        (lambda: ising_gibbs(0.3, np.ones(2)), ValueError, "field"),
        (lambda: ising_gibbs(0.3).init(np.ones((3, 4))), ValueError, "position"),
        (lambda: ising_gibbs(0.3).init(np.ones(4)), ValueError, "position"),
        (lambda: ising_gibbs(0.3).init(np.zeros((4, 4))), ValueError, "position"),
        (
            lambda: metropolis_within_gibbs(lambda x: x, 1.0).init(np.zeros(2)),
            ValueError,
            "logdensity_fn",
        ),
        (lambda: metropolis_within_gibbs(quadratic, 0.0), ValueError, "scale"),
        (lambda: metropolis_within_gibbs("f", 1.0), TypeError, "logdensity_fn"),
        (
            lambda: metropolis_within_gibbs(quadratic, 1.0).init([np.inf, 0.0]),
            ValueError,
            "position",
        ),
    ],
)
def test_bad_inputs_name_the_argument(build, error, argument):
    with pytest.raises(error, match=argument):
        build()

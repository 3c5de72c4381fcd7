"""Gibbs kernels: exact one-sweep laws, MCSE-gated moments, the Ising model against
exact enumeration, Metropolis-within-Gibbs bookkeeping, and named input errors."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import chi2

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


# -- binary_gibbs ---------------------------------------------------------------------------

BOLTZMANN_RNG = np.random.default_rng(7)
_UPPER = np.triu(BOLTZMANN_RNG.normal(0.0, 1.0, (4, 4)), k=1)
BOLTZMANN_COUPLINGS = _UPPER + _UPPER.T  # symmetric, zero diagonal
BOLTZMANN_FIELDS = BOLTZMANN_RNG.normal(0.0, 0.5, 4)
BINARY_STATES = np.array([[(k >> (3 - i)) & 1 for i in range(4)] for k in range(16)], float)


def boltzmann_logdensity(x):
    """f(x) = ½ xᵀJx + hᵀx on {0, 1}⁴: a fully connected Boltzmann machine."""
    couplings = jnp.asarray(BOLTZMANN_COUPLINGS, x.dtype)
    return 0.5 * x @ couplings @ x + jnp.asarray(BOLTZMANN_FIELDS, x.dtype) @ x


def boltzmann_exact():
    """Exact p over the 16 states (index = binary number x₀x₁x₂x₃) and the exact
    transition matrix of one systematic sweep, both by enumeration in float64."""
    values = 0.5 * np.einsum("ki,ij,kj->k", BINARY_STATES, BOLTZMANN_COUPLINGS, BINARY_STATES)
    values += BINARY_STATES @ BOLTZMANN_FIELDS
    probabilities = np.exp(values - values.max())
    probabilities /= probabilities.sum()
    sweep = np.eye(16)
    for site in range(4):
        bit = 1 << (3 - site)
        site_update = np.zeros((16, 16))
        for k in range(16):
            on, off = k | bit, k & ~bit
            prob_on = 1.0 / (1.0 + np.exp(values[off] - values[on]))
            site_update[k, on] += prob_on
            site_update[k, off] += 1.0 - prob_on
        sweep = sweep @ site_update
    return probabilities, sweep


def state_counts(positions):
    indices = np.asarray(positions, dtype=np.int64) @ (1 << np.arange(3, -1, -1))
    return np.bincount(indices, minlength=16)


def assert_counts_match(counts, probabilities, what):
    """Pearson chi-square with 15 degrees of freedom at false-alarm rate 1e-4."""
    expected = counts.sum() * probabilities
    assert expected.min() > 5, "too few samples for the chi-square approximation"
    statistic = np.sum((counts - expected) ** 2 / expected)
    threshold = chi2.ppf(1.0 - 1e-4, df=15)
    assert statistic < threshold, f"{what}: chi-square {statistic:.1f} >= {threshold:.1f}"


def test_binary_gibbs_matches_the_exact_one_sweep_law_and_the_boltzmann_distribution():
    """20 000 chains from x = 0: after one sweep the states follow row 0 of the exact
    sweep matrix, after 20 sweeps the exact p (the exact law after 20 sweeps is within
    TV 1e-6 of p, checked here, far below what 20 000 samples resolve)."""
    probabilities, sweep = boltzmann_exact()
    np.testing.assert_allclose(probabilities @ sweep, probabilities, atol=1e-12)
    after_20 = np.linalg.matrix_power(sweep, 20)[0]
    assert 0.5 * np.abs(after_20 - probabilities).sum() < 1e-6
    algorithm = ej.samplers.binary_gibbs(boltzmann_logdensity)
    states, (positions, info) = run_independent_chains(
        algorithm, np.zeros((20_000, 4), np.float32), num_steps=20
    )
    assert_counts_match(state_counts(positions[:, 0]), sweep[0], "one sweep from 0")
    assert_counts_match(state_counts(positions[:, -1]), probabilities, "after 20 sweeps")
    np.testing.assert_allclose(
        states.logdensity, jax.vmap(boltzmann_logdensity)(states.position), rtol=1e-6, atol=1e-6
    )
    assert np.all(np.asarray(info.acceptance_rate) == 1.0) and not np.any(info.is_nonfinite)


def test_binary_gibbs_any_event_shape_and_integer_positions():
    """A (2, 2) event is flattened internally; integer 0/1 positions are promoted."""
    algorithm = ej.samplers.binary_gibbs(lambda x: boltzmann_logdensity(x.reshape(-1)))
    state = algorithm.init(jnp.array([[0, 1], [1, 0]]))
    assert state.position.dtype == jnp.result_type(float)
    new_state, info = algorithm.step(jax.random.key(0), state)
    assert new_state.position.shape == (2, 2)
    assert set(np.unique(np.asarray(new_state.position))) <= {0.0, 1.0}
    assert info.is_accepted.dtype == jnp.bool_ and info.acceptance_rate.shape == ()


def test_binary_gibbs_keeps_sites_with_nonfinite_log_odds_and_flags_them():
    """f is NaN when x₀ = x₁ = 1 (and +inf when x₂ = x₃ = 1): from x = 0 those pairs
    are never both switched on, the cached log-density stays finite, and the sweeps
    that met the bad conditionals say so."""

    def bad_pairs(x):
        value = jnp.sum(x)
        value = jnp.where(x[0] * x[1] == 1.0, jnp.nan, value)
        return jnp.where(x[2] * x[3] == 1.0, jnp.inf, value)

    algorithm = ej.samplers.binary_gibbs(bad_pairs)
    states, (positions, info) = run_independent_chains(
        algorithm, np.zeros((64, 4), np.float32), num_steps=20
    )
    positions = np.asarray(positions)
    assert not np.any(positions[..., 0] * positions[..., 1] == 1)
    assert not np.any(positions[..., 2] * positions[..., 3] == 1)
    assert np.all(np.isfinite(states.logdensity))
    assert np.any(info.is_nonfinite) and np.all(np.asarray(info.acceptance_rate) == 1.0)
    # f = sum(x) favours switching sites on: chains do move away from 0.
    assert positions[:, -1].sum(axis=1).mean() > 1.0


# -- input errors ---------------------------------------------------------------------------


def quadratic(x):
    return -jnp.sum(x**2)


gaussian_gibbs = ej.samplers.gaussian_gibbs
ising_gibbs = ej.samplers.ising_gibbs
metropolis_within_gibbs = ej.samplers.metropolis_within_gibbs
binary_gibbs = ej.samplers.binary_gibbs


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
        (lambda: binary_gibbs("f"), TypeError, "logdensity_fn"),
        (lambda: binary_gibbs(quadratic).init([0.0, 0.5]), ValueError, "position"),
        (lambda: binary_gibbs(quadratic).init([0.0, 2.0]), ValueError, "position"),
        (lambda: binary_gibbs(quadratic).init([0.0, np.nan]), ValueError, "position"),
        (lambda: binary_gibbs(lambda x: x).init([0.0, 1.0]), ValueError, "logdensity_fn"),
    ],
)
def test_bad_inputs_name_the_argument(build, error, argument):
    with pytest.raises(error, match=argument):
        build()

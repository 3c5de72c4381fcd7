"""The Ising model: enumeration against an independent brute force, thermodynamic
identities, closed forms at zero coupling, and exact samples."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax import densities
from tests.helpers import assert_mean_within_mcse


def brute_force(side, coupling, field):
    """Exact expectations by explicit loops over states and (i+1) mod L neighbours."""
    log_weights, energies, magnetizations = [], [], []
    for state in itertools.product((-1.0, 1.0), repeat=side * side):
        s = np.reshape(state, (side, side))
        bonds = sum(
            s[i, j] * (s[(i + 1) % side, j] + s[i, (j + 1) % side])
            for i in range(side)
            for j in range(side)
        )
        log_weight = coupling * bonds + field * s.sum()
        log_weights.append(log_weight)
        energies.append(-log_weight)
        magnetizations.append(s.mean())
    log_weights, energies, magnetizations = map(np.array, (log_weights, energies, magnetizations))
    log_partition = np.log(np.sum(np.exp(log_weights)))
    probs = np.exp(log_weights - log_partition)
    return densities.IsingExpectations(
        log_partition=log_partition,
        energy=probs @ energies,
        abs_magnetization=probs @ np.abs(magnetizations),
        magnetization=probs @ magnetizations,
        squared_magnetization=probs @ magnetizations**2,
    )


@pytest.mark.parametrize("side", [2, 3])
@pytest.mark.parametrize(("coupling", "field"), [(0.3, 0.0), (0.44, 0.1), (-0.5, 0.2)])
def test_enumeration_matches_brute_force(side, coupling, field):
    exact = densities.ising_exact_expectations(side, coupling, field)
    np.testing.assert_allclose(exact, brute_force(side, coupling, field), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("coupling", "field"), [(0.44, 0.0), (0.2, -0.3)])
def test_thermodynamic_identities(coupling, field):
    """⟨E⟩ = -J ∂_J log Z - h ∂_h log Z and ⟨m⟩ = L⁻² ∂_h log Z (central differences)."""
    step = 1e-5

    def log_partition(j, h):
        return densities.ising_exact_expectations(4, j, h).log_partition

    d_coupling = (log_partition(coupling + step, field) - log_partition(coupling - step, field)) / (
        2 * step
    )
    d_field = (log_partition(coupling, field + step) - log_partition(coupling, field - step)) / (
        2 * step
    )
    exact = densities.ising_exact_expectations(4, coupling, field)
    np.testing.assert_allclose(exact.energy, -coupling * d_coupling - field * d_field, atol=1e-7)
    np.testing.assert_allclose(exact.magnetization, d_field / 16, atol=1e-8)


def test_zero_coupling_is_independent_spins():
    field = 0.3
    exact = densities.ising_exact_expectations(4, 0.0, field)
    np.testing.assert_allclose(exact.log_partition, 16 * np.log(2 * np.cosh(field)), rtol=1e-13)
    np.testing.assert_allclose(exact.energy, -16 * field * np.tanh(field), rtol=1e-12)
    np.testing.assert_allclose(exact.magnetization, np.tanh(field), rtol=1e-12)


def test_logdensity_energy_and_magnetization():
    coupling, field = 0.44, 0.1
    target = densities.ising(4, coupling, field)
    assert target.event_shape == (4, 4) and not target.is_normalized
    up = jnp.ones((4, 4))
    np.testing.assert_allclose(target.logdensity_fn(up), coupling * 32 + field * 16, rtol=1e-6)
    spins = target.sample(jax.random.key(0), 8)
    np.testing.assert_allclose(
        jax.vmap(target.logdensity_fn)(spins),
        -densities.ising_energy(spins, coupling, field),
        rtol=1e-6,
    )
    symmetric = densities.ising(4, coupling)
    np.testing.assert_allclose(
        jax.vmap(symmetric.logdensity_fn)(spins), jax.vmap(symmetric.logdensity_fn)(-spins)
    )
    np.testing.assert_allclose(densities.magnetization(spins), spins.mean(axis=(1, 2)))


@pytest.mark.parametrize("coupling", [0.3, 0.44])
def test_exact_samples_match_enumeration(coupling):
    target = densities.ising(4, coupling)
    exact = densities.ising_exact_expectations(4, coupling)
    spins = np.asarray(target.sample(jax.random.key(1), 20_000), dtype=np.float64)
    energy = np.asarray(densities.ising_energy(spins, coupling))
    abs_magnetization = np.abs(spins.mean(axis=(1, 2)))
    assert_mean_within_mcse(
        np.stack([energy, abs_magnetization], axis=1),
        [exact.energy, exact.abs_magnetization],
        what="<E>, <|m|>",
    )


@pytest.mark.parametrize(
    ("build", "error", "argument"),
    [
        (lambda: densities.ising(1, 0.3), ValueError, "side"),
        (lambda: densities.ising(4.0, 0.3), TypeError, "side"),
        (lambda: densities.ising(4, float("nan")), ValueError, "coupling"),
        (lambda: densities.ising(4, 0.3, [0.1, 0.2]), ValueError, "field"),
        (lambda: densities.ising_exact_expectations(5, 0.3), ValueError, "side"),
        (lambda: densities.ising_exact_expectations(4, float("inf")), ValueError, "coupling"),
    ],
)
def test_bad_inputs_name_the_argument(build, error, argument):
    with pytest.raises(error, match=argument):
        build()

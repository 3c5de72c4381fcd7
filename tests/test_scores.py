"""eq. 11.1: the score of an unnormalised log-density is exact; from_energy flips the sign."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej


def test_score_of_normalised_and_unnormalised_agree():
    """∇ₓ log p = ∇ₓ f: adding log Z (any constant in x) changes nothing."""
    unnormalised = lambda x: -0.5 * jnp.sum(x**2) + jnp.sin(x[0])
    normalised = lambda x: unnormalised(x) - 17.3
    x = jnp.array([0.3, -1.2])
    np.testing.assert_allclose(ej.score(unnormalised)(x), ej.score(normalised)(x))
    np.testing.assert_allclose(ej.score(unnormalised)(x), [-0.3 + np.cos(0.3), 1.2], rtol=1e-6)


def test_score_of_parametric_model():
    logdensity_fn = lambda params, x: -0.5 * params * jnp.sum(x**2)
    score_fn = ej.score(logdensity_fn, argnum=1)
    np.testing.assert_allclose(score_fn(2.0, jnp.array([1.0, 3.0])), [-2.0, -6.0])


def test_from_energy_flips_the_sign():
    energy_fn = lambda x: 0.5 * jnp.sum(x**2)
    logdensity_fn = ej.from_energy(energy_fn)
    x = jnp.array([1.0, 2.0])
    assert float(logdensity_fn(x)) == -2.5
    np.testing.assert_allclose(ej.score(logdensity_fn)(x), -jax.grad(energy_fn)(x))
    parametric = ej.from_energy(lambda params, x: params * jnp.sum(x))
    assert float(parametric(3.0, x)) == -9.0


def test_non_callables_are_named():
    with pytest.raises(TypeError, match="logdensity_fn"):
        ej.score(1.0)
    with pytest.raises(TypeError, match="energy_fn"):
        ej.from_energy("E")

"""Concentric rings: the erf normaliser and E[ρ²] by quadrature, exact radial sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax import densities
from tests.densities.test_base import (
    assert_grid_integral,
    assert_score_matches_finite_differences,
    trapezoid,
)
from tests.helpers import assert_mean_within_mcse

CONFIGURATIONS = {
    "default": {},
    "ring_at_origin": {"radii": (0.0, 1.0, 2.5), "scale": (0.3, 0.2, 0.1)},
    "wide_weighted": {"radii": (0.2, 1.0), "scale": 0.5, "weights": (3.0, 1.0)},
}


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_integrates_to_one_with_closed_form_covariance(name):
    with jax.enable_x64(True):
        target = densities.rings(**CONFIGURATIONS[name])

        def integrand(x):
            density = jnp.exp(target.logdensity_fn(x))
            return density * jnp.array([1.0, x[0], x[1], x[0] ** 2, x[0] * x[1], x[1] ** 2])

        covariance = np.asarray(target.covariance)
        expected = [1.0, 0.0, 0.0, covariance[0, 0], covariance[0, 1], covariance[1, 1]]
        assert_grid_integral(integrand, expected, (-5.0, -5.0), (5.0, 5.0), num_points=401)


def test_ring_of_radius_zero_is_an_isotropic_gaussian_float64():
    points = np.random.default_rng(4).normal(size=(6, 2))
    with jax.enable_x64(True):
        ring = densities.rings(radii=(0.0,), scale=0.7)
        gaussian = densities.isotropic_gaussian(np.zeros(2), 0.7)
        np.testing.assert_allclose(
            jax.vmap(ring.logdensity_fn)(jnp.asarray(points)),
            jax.vmap(gaussian.logdensity_fn)(jnp.asarray(points)),
            rtol=1e-13,
        )
        np.testing.assert_allclose(ring.covariance, gaussian.covariance, rtol=1e-13)


def test_score_is_finite_differences_and_zero_at_the_origin():
    points = np.random.default_rng(5).normal(size=(6, 2)) * 2.0
    with jax.enable_x64(True):
        target = densities.rings(**CONFIGURATIONS["ring_at_origin"])
        assert_score_matches_finite_differences(target, points)
    target = densities.rings()
    np.testing.assert_array_equal(target.score_fn(jnp.zeros(2)), jnp.zeros(2))


def test_exact_samples_have_the_radial_law():
    """Separated rings: the ring frequencies are the weights, and within ring k
    the radius has the closed-form mean E_k[ρ] (computed here by 1-D quadrature
    of ρ · ρ e^{-(ρ - r)²/2σ²})."""
    radii, scale, weights = np.array([1.0, 2.0, 3.5]), 0.15, np.array([1.0, 2.0, 1.0])
    target = densities.rings(radii, scale, weights)
    samples = np.asarray(target.sample(jax.random.key(0), 20_000), dtype=np.float64)
    radius = np.linalg.norm(samples, axis=1)
    ring = np.argmin(np.abs(radius[:, None] - radii), axis=1)
    assert_mean_within_mcse(np.eye(3)[ring], weights / weights.sum(), what="ring frequency")
    grid = np.linspace(0.0, 6.0, 60_001)
    for k, r in enumerate(radii):
        density = grid * np.exp(-0.5 * ((grid - r) / scale) ** 2)
        mean_radius = trapezoid(grid * density, grid) / trapezoid(density, grid)
        assert_mean_within_mcse(radius[ring == k], mean_radius, what=f"ring {k} radius")
    angle = np.arctan2(samples[:, 1], samples[:, 0])
    harmonics = np.stack([np.cos(angle), np.sin(angle), np.cos(2 * angle), np.sin(2 * angle)], 1)
    assert_mean_within_mcse(harmonics, np.zeros(4), what="uniform angle")


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"radii": (1.0, -1.0)}, "radii"),
        ({"radii": ()}, "radii"),
        ({"radii": ((1.0,),)}, "radii"),
        ({"scale": 0.0}, "scale"),
        ({"scale": (0.1, 0.2)}, "scale"),
        ({"weights": (1.0, 2.0)}, "weights"),
        ({"weights": (1.0, 0.0, 1.0)}, "weights"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        densities.rings(**kwargs)

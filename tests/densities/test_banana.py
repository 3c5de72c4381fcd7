"""The twisted Gaussian: the untwist is a volume-preserving map to a Gaussian."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax import densities
from tests.densities.test_base import assert_grid_integral, assert_score_matches_finite_differences
from tests.helpers import assert_mean_within_mcse

stats = pytest.importorskip("scipy.stats")


def untwist(x, scale, curvature):
    y = np.array(x, dtype=np.float64)
    y[..., 1] += curvature * (y[..., 0] ** 2 - scale**2)
    return y


@pytest.mark.parametrize(("scale", "curvature", "dim"), [(10.0, 0.03, 2), (1.5, -0.7, 4)])
def test_logdensity_is_gaussian_of_untwisted_point_float64(scale, curvature, dim):
    points = np.random.default_rng(2).normal(size=(6, dim)) * 3.0
    variances = np.ones(dim)
    variances[0] = scale**2
    expected = stats.multivariate_normal(np.zeros(dim), np.diag(variances)).logpdf(
        untwist(points, scale, curvature)
    )
    with jax.enable_x64(True):
        target = densities.banana(scale, curvature, dim)
        actual = jax.vmap(target.logdensity_fn)(jnp.asarray(points))
        np.testing.assert_allclose(actual, expected, rtol=1e-12)
        assert_score_matches_finite_differences(target, points)


def test_integrates_to_one_with_closed_form_moments():
    scale, curvature = 1.0, 0.5
    with jax.enable_x64(True):
        target = densities.banana(scale, curvature)

        def integrand(x):
            density = jnp.exp(target.logdensity_fn(x))
            return density * jnp.array([1.0, x[0], x[1], x[0] ** 2, x[0] * x[1], x[1] ** 2])

        # x1 ∈ [-9, 9] (9 sd); x2 = y2 - b(x1² - 1) reaches -b·80 - 9 at the box edge.
        expected = [1.0, 0.0, 0.0, scale**2, 0.0, 1.0 + 2.0 * scale**4 * curvature**2]
        assert_grid_integral(integrand, expected, (-9.0, -50.0), (9.0, 12.0), num_points=501)


def test_untwisted_exact_samples_are_gaussian():
    scale, curvature = 2.0, 0.4
    target = densities.banana(scale, curvature, dim=3)
    samples = np.asarray(target.sample(jax.random.key(0), 20_000), dtype=np.float64)
    y = untwist(samples, scale, curvature) / np.array([scale, 1.0, 1.0])
    # Standard normal, and y2 independent of y1² (the twist is undone exactly).
    features = np.concatenate([y, y**2, (y[:, 1] * (y[:, 0] ** 2 - 1))[:, None]], axis=1)
    assert_mean_within_mcse(features, [0, 0, 0, 1, 1, 1, 0], what="untwisted moments")


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"scale": 0.0}, ValueError, "scale"),
        ({"scale": -1.0}, ValueError, "scale"),
        ({"curvature": float("nan")}, ValueError, "curvature"),
        ({"curvature": [0.1, 0.2]}, ValueError, "curvature"),
        ({"dim": 1}, ValueError, "dim"),
        ({"dim": 2.0}, TypeError, "dim"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        densities.banana(**kwargs)

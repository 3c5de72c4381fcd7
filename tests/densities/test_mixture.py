"""Gaussian mixtures: scipy reference, every covariance form, quadrature, closed-form moments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax import densities
from tests.densities.test_base import assert_grid_integral, assert_score_matches_finite_differences
from tests.helpers import assert_mean_within_mcse

stats = pytest.importorskip("scipy.stats")

WEIGHTS = np.array([2.0, 5.0, 3.0])  # unnormalised on purpose
MEANS = np.array([[-2.0, 0.0], [1.0, 1.5], [2.0, -2.0]])
COVARIANCES = np.array(
    [[[0.5, 0.2], [0.2, 0.4]], [[1.0, -0.3], [-0.3, 0.6]], [[0.3, 0.0], [0.0, 0.2]]]
)
POINTS = np.random.default_rng(1).normal(size=(6, 2)) * 2.0


def reference_logdensity(points, weights, means, covariances):
    weights = weights / weights.sum()
    densities_k = [
        w * stats.multivariate_normal(m, c).pdf(points)
        for w, m, c in zip(weights, means, covariances, strict=True)
    ]
    return np.log(np.sum(densities_k, axis=0))


def test_logdensity_matches_scipy_float64():
    with jax.enable_x64(True):
        target = densities.gaussian_mixture(WEIGHTS, MEANS, COVARIANCES)
        actual = jax.vmap(target.logdensity_fn)(jnp.asarray(POINTS))
        expected = reference_logdensity(POINTS, WEIGHTS, MEANS, COVARIANCES)
        np.testing.assert_allclose(actual, expected, rtol=1e-12)
        assert_score_matches_finite_differences(target, POINTS)
        np.testing.assert_allclose(np.sum(target.parameters["weights"]), 1.0, rtol=1e-15)


@pytest.mark.parametrize(
    ("covariances", "full"),
    [
        (0.7, np.broadcast_to(0.7 * np.eye(2), (3, 2, 2))),
        (np.array([0.5, 1.0, 2.0]), np.array([0.5, 1.0, 2.0])[:, None, None] * np.eye(2)),
        (np.array([[0.5, 1.0], [1.0, 2.0], [0.3, 0.4]]), None),
    ],
    ids=["scalar", "per_component", "diagonal"],
)
def test_every_covariance_form_is_the_full_one(covariances, full):
    if full is None:
        full = np.stack([np.diag(row) for row in covariances])
    with jax.enable_x64(True):
        short = densities.gaussian_mixture(WEIGHTS, MEANS, covariances)
        expected = reference_logdensity(POINTS, WEIGHTS, MEANS, full)
        actual = jax.vmap(short.logdensity_fn)(jnp.asarray(POINTS))
        np.testing.assert_allclose(actual, expected, rtol=1e-12)
        np.testing.assert_allclose(short.parameters["covariances"], full, rtol=1e-15)


def test_integrates_to_one_with_closed_form_moments():
    with jax.enable_x64(True):
        target = densities.gaussian_mixture(WEIGHTS, MEANS, COVARIANCES)

        def integrand(x):
            density = jnp.exp(target.logdensity_fn(x))
            return density * jnp.array([1.0, x[0], x[1], x[0] ** 2, x[0] * x[1], x[1] ** 2])

        mean = np.asarray(target.mean)
        second = np.asarray(target.covariance) + np.outer(mean, mean)
        expected = [1.0, *mean, second[0, 0], second[0, 1], second[1, 1]]
        assert_grid_integral(integrand, expected, (-10.0, -10.0), (10.0, 10.0), num_points=201)


def test_samples_visit_components_in_proportion_to_weights():
    target = densities.gaussian_mixture(
        WEIGHTS, np.array([[-10.0, 0.0], [0.0, 0.0], [10.0, 0.0]]), 0.25
    )
    samples = np.asarray(target.sample(jax.random.key(0), 20_000))
    component = np.round(samples[:, 0] / 10.0).astype(int) + 1  # separated by 40 sd
    one_hot = np.eye(3)[component]
    assert_mean_within_mcse(one_hot, WEIGHTS / WEIGHTS.sum(), what="component frequency")


@pytest.mark.parametrize(
    ("weights", "means", "covariances", "argument"),
    [
        ([1.0, -1.0], [[0.0], [1.0]], 1.0, "weights"),
        ([1.0, 0.0], [[0.0], [1.0]], 1.0, "weights"),
        ([1.0, 1.0, 1.0], [[0.0], [1.0]], 1.0, "weights"),
        ([1.0, 1.0], [0.0, 1.0], 1.0, "means"),
        ([1.0, 1.0], [[0.0], [np.inf]], 1.0, "means"),
        ([1.0, 1.0], [[0.0], [1.0]], -1.0, "covariances"),
        ([1.0, 1.0], [[0.0], [1.0]], [1.0, 1.0, 1.0], "covariances"),
        ([1.0, 1.0], [[0.0, 0.0], [1.0, 1.0]], [[[1.0, 2.0], [2.0, 1.0]]] * 2, r"covariances\[0\]"),
    ],
)
def test_bad_inputs_name_the_argument(weights, means, covariances, argument):
    with pytest.raises(ValueError, match=argument):
        densities.gaussian_mixture(np.array(weights), np.array(means), np.array(covariances))

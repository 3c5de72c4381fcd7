"""Gaussian targets: scipy reference in float64, closed-form score, both parametrisations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax import densities
from tests.densities.test_base import assert_grid_integral

stats = pytest.importorskip("scipy.stats")

MEAN = np.array([1.0, -0.5, 2.0])
COVARIANCE = np.array([[2.0, 0.8, -0.3], [0.8, 1.0, 0.1], [-0.3, 0.1, 0.5]])
VARIANCES = np.array([0.5, 2.0, 1.5])
POINTS = np.random.default_rng(0).normal(size=(5, 3)) * 2.0


def all_forms():
    """(target, scipy reference covariance) for every factory, built in the current precision."""
    return {
        "isotropic": (densities.isotropic_gaussian(MEAN, 1.5), 1.5**2 * np.eye(3)),
        "diagonal": (densities.diagonal_gaussian(MEAN, VARIANCES), np.diag(VARIANCES)),
        "covariance": (densities.gaussian(MEAN, COVARIANCE), COVARIANCE),
        "precision": (densities.gaussian(MEAN, precision=np.linalg.inv(COVARIANCE)), COVARIANCE),
    }


def test_logdensity_matches_scipy_float64():
    with jax.enable_x64(True):
        for name, (target, covariance) in all_forms().items():
            expected = stats.multivariate_normal(MEAN, covariance).logpdf(POINTS)
            actual = jax.vmap(target.logdensity_fn)(jnp.asarray(POINTS))
            assert actual.dtype == jnp.float64
            np.testing.assert_allclose(actual, expected, rtol=1e-12, err_msg=name)
            np.testing.assert_allclose(target.covariance, covariance, rtol=1e-12, err_msg=name)
            np.testing.assert_allclose(
                target.parameters["precision"] @ covariance, np.eye(3), atol=1e-12, err_msg=name
            )


def test_score_is_minus_precision_times_residual():
    for name, (target, covariance) in all_forms().items():
        expected = -(POINTS - MEAN) @ np.linalg.inv(covariance)  # symmetric Q
        actual = jax.vmap(target.score_fn)(jnp.asarray(POINTS, jnp.float32))
        np.testing.assert_allclose(actual, expected, rtol=2e-5, atol=2e-5, err_msg=name)


def test_two_dimensional_gaussian_integrates_to_its_moments():
    mean = np.array([0.5, -1.0])
    covariance = np.array([[1.0, 0.6], [0.6, 0.8]])
    with jax.enable_x64(True):
        target = densities.gaussian(mean, covariance)

        def integrand(x):
            density = jnp.exp(target.logdensity_fn(x))
            return density * jnp.array([1.0, x[0], x[1], x[0] ** 2, x[0] * x[1], x[1] ** 2])

        second = covariance + np.outer(mean, mean)
        expected = [1.0, *mean, second[0, 0], second[0, 1], second[1, 1]]
        assert_grid_integral(integrand, expected, mean - 10.0, mean + 10.0, num_points=201)


@pytest.mark.parametrize(
    ("build", "error", "argument"),
    [
        (
            lambda: densities.gaussian(np.zeros(2), [[1.0, 2.0], [2.0, 1.0]]),
            ValueError,
            "covariance",
        ),
        (
            lambda: densities.gaussian(np.zeros(2), [[1.0, 0.5], [0.0, 1.0]]),
            ValueError,
            "covariance",
        ),
        (lambda: densities.gaussian(np.zeros(3), np.eye(2)), ValueError, "covariance"),
        (lambda: densities.gaussian(np.zeros(2), precision=-np.eye(2)), ValueError, "precision"),
        (lambda: densities.gaussian(np.zeros(2)), ValueError, "covariance and precision"),
        (
            lambda: densities.gaussian(np.zeros(2), np.eye(2), precision=np.eye(2)),
            ValueError,
            "covariance and precision",
        ),
        (lambda: densities.gaussian([0.0, np.nan], np.eye(2)), ValueError, "mean"),
        (lambda: densities.gaussian(np.zeros((2, 2)), np.eye(2)), ValueError, "mean"),
        (lambda: densities.isotropic_gaussian(np.zeros(2), 0.0), ValueError, "scale"),
        (lambda: densities.isotropic_gaussian(np.zeros(2), "1"), TypeError, "scale"),
        (lambda: densities.diagonal_gaussian(np.zeros(2), [1.0, -1.0]), ValueError, "variances"),
        (lambda: densities.diagonal_gaussian(np.zeros(2), [1.0]), ValueError, "variances"),
        (lambda: densities.gaussian("abc", np.eye(2)), TypeError, "mean"),
    ],
)
def test_bad_inputs_name_the_argument(build, error, argument):
    with pytest.raises(error, match=argument):
        build()

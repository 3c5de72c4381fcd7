"""Exact 2-D NLL by quadrature: closed-form box masses, order-2 convergence, NLL identities."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ndtr

from ebm_jax import densities, diagnostics

# Float64 rounding of a logsumexp over ~1e5 grid terms, far below any quadrature error tested.
ROUNDING_FLOAT64 = 1e-12

# Test points for the NLL identities (any points will do), float64.
POINTS = np.random.default_rng(0).normal(size=(64, 2)) * 1.5


def standard_logdensity(x):
    """N(0, I) without its normaliser: log Z = log 2π."""
    return -0.5 * jnp.sum(x**2)


MIXTURE_WEIGHTS = np.array([0.2, 0.5, 0.3])
MIXTURE_MEANS = np.array([[-2.0, 0.0], [1.0, 1.0], [2.0, -2.0]])
MIXTURE_VARIANCES = np.array([[0.5, 1.0], [1.0, 0.3], [0.2, 0.2]])


def diagonal_mixture_box_mass(weights, means, variances, bounds):
    """∫_box Σ_k w_k N(x; μ_k, diag σ_k²) dx = Σ_k w_k Π_d (Φ(b_d) − Φ(a_d)), exactly."""
    lows, highs = np.array(bounds, dtype=np.float64).T
    scales = np.sqrt(variances)
    per_axis = ndtr((highs - means) / scales) - ndtr((lows - means) / scales)
    return float(np.sum(weights * np.prod(per_axis, axis=1)))


@functools.cache
def normalised_targets():
    """(target, bounds, exact log of its mass inside bounds); built once, used in float64."""
    iso_bounds = ((-3.0, 4.0), (-4.0, 3.0))
    mix_bounds = ((-6.0, 6.0), (-5.0, 5.0))
    return {
        "isotropic_gaussian": (
            densities.isotropic_gaussian(jnp.array([0.5, -0.3]), 0.7),
            iso_bounds,
            math.log(
                diagonal_mixture_box_mass(
                    np.ones(1), np.array([[0.5, -0.3]]), np.full((1, 2), 0.49), iso_bounds
                )
            ),
        ),
        "gaussian_mixture": (
            densities.gaussian_mixture(
                jnp.asarray(MIXTURE_WEIGHTS),
                jnp.asarray(MIXTURE_MEANS),
                jnp.asarray(MIXTURE_VARIANCES),
            ),
            mix_bounds,
            math.log(
                diagonal_mixture_box_mass(
                    MIXTURE_WEIGHTS, MIXTURE_MEANS, MIXTURE_VARIANCES, mix_bounds
                )
            ),
        ),
        # Rings of radius <= 3 and width 0.1: the mass beyond radius 4.5 (15 widths) is < 1e-40.
        "rings": (densities.rings(), ((-4.5, 4.5), (-4.5, 4.5)), 0.0),
    }


@pytest.mark.parametrize("name", ["isotropic_gaussian", "gaussian_mixture", "rings"])
def test_log_partition_of_normalised_target_is_its_box_mass_float64(name):
    with jax.enable_x64(True):
        target, bounds, log_box_mass = normalised_targets()[name]
        result = diagnostics.nll_2d_quadrature(target.logdensity_fn, POINTS, bounds, 256)
        error = abs(float(result.log_partition) - log_box_mass)
        assert float(result.log_partition_error) < 1e-3
        # Richardson's estimate is asymptotically exact, not a bound: allow a factor 2.
        assert error <= 2 * float(result.log_partition_error) + ROUNDING_FLOAT64
        if name != "rings":
            # The box cuts ~1e-7 of the Gaussian tails, far above the error bound: the test
            # resolves the missing mass (comparing with log Z = 0 would fail).
            bound = float(result.log_partition_error) + ROUNDING_FLOAT64
            assert abs(float(result.log_partition)) > 10 * bound


def test_log_partition_float32_within_error_estimate_on_a_1000_grid():
    result = diagnostics.nll_2d_quadrature(
        standard_logdensity, POINTS.astype(np.float32), ((-7.0, 7.0), (-7.0, 7.0)), 1000
    )
    assert result.log_partition.dtype == jnp.float32
    # float32 rounding of the ~1e6-term sum, not quadrature error, dominates here.
    log_box_mass = math.log(2 * math.pi) + 2 * math.log(ndtr(7.0) - ndtr(-7.0))
    error = abs(float(result.log_partition) - log_box_mass)
    assert error <= 2 * float(result.log_partition_error) + 1e-5
    assert float(result.fraction_outside) == 0.0


def test_unnormalised_shift_gives_log_partition_shift_and_same_nll_float64():
    shift = 3.7
    with jax.enable_x64(True):
        target, bounds, log_box_mass = normalised_targets()["gaussian_mixture"]
        points = POINTS
        normalised = diagnostics.nll_2d_quadrature(target.logdensity_fn, points, bounds, 128)
        shifted = diagnostics.nll_2d_quadrature(
            lambda x: target.logdensity_fn(x) + shift, points, bounds, 128
        )
        np.testing.assert_allclose(shifted.log_partition, log_box_mass + shift, atol=1e-10)
        np.testing.assert_allclose(shifted.nll, normalised.nll, atol=1e-10)
        np.testing.assert_allclose(shifted.per_point_nll, normalised.per_point_nll, atol=1e-10)


def test_nll_of_normalised_target_is_minus_mean_logdensity_float64():
    with jax.enable_x64(True):
        target, bounds, _ = normalised_targets()["rings"]
        points = jnp.asarray(POINTS)
        result = diagnostics.nll_2d_quadrature(target.logdensity_fn, points, bounds, 256)
        logdensities = jax.vmap(target.logdensity_fn)(points)
        np.testing.assert_allclose(result.per_point_nll, -logdensities, atol=1e-8)
        np.testing.assert_allclose(result.nll, -jnp.mean(logdensities), atol=1e-8)
        assert result.per_point_nll.shape == (len(POINTS),)


def test_order_two_convergence_and_asymptotically_exact_error_estimate_float64():
    # A box cutting N(0, I) where it is far from 0: the Euler–Maclaurin h² term is non-zero,
    # so the trapezoidal rule shows its order p = 2 and the Richardson estimate |Δ|/3 is
    # asymptotically the true error. The box mass is closed form.
    bounds = ((-1.0, 2.0), (-0.5, 1.5))
    exact = math.log((ndtr(2.0) - ndtr(-1.0)) * (ndtr(1.5) - ndtr(-0.5)))
    with jax.enable_x64(True):
        target = densities.isotropic_gaussian(jnp.zeros(2), 1.0)
        points = jnp.zeros((1, 2))
        resolutions = (32, 64, 128)
        results = [
            diagnostics.nll_2d_quadrature(target.logdensity_fn, points, bounds, n)
            for n in resolutions
        ]
    errors = np.array([float(r.log_partition) - exact for r in results])
    estimates = np.array([float(r.log_partition_error) for r in results])
    observed_orders = np.log2(errors[:-1] / errors[1:])
    np.testing.assert_allclose(observed_orders, 2.0, atol=0.01)
    np.testing.assert_allclose(estimates / np.abs(errors), 1.0, atol=0.01)


def test_matches_a_numpy_trapezoid_reference_float64():
    # A smooth, skewed integrand that does not vanish on the box: every node weight matters.
    def logdensity_fn(x):
        return jnp.sin(x[0]) * x[1] - 0.3 * x[0] ** 2 + 0.5 * x[1]

    bounds = ((-1.0, 1.5), (-2.0, 0.5))
    resolution = 10
    xs = np.linspace(*bounds[0], resolution + 1)
    ys = np.linspace(*bounds[1], resolution + 1)
    grid_x, grid_y = np.meshgrid(xs, ys, indexing="ij")
    values = np.exp(np.sin(grid_x) * grid_y - 0.3 * grid_x**2 + 0.5 * grid_y)
    fine = math.log(np.trapezoid(np.trapezoid(values, xs, axis=0), ys))
    coarse = math.log(np.trapezoid(np.trapezoid(values[::2, ::2], xs[::2], axis=0), ys[::2]))
    points = np.array([[0.1, -0.2], [1.0, 0.3], [-0.9, -1.9]])
    with jax.enable_x64(True):
        result = diagnostics.nll_2d_quadrature(logdensity_fn, points, bounds, resolution)
        test_values = np.asarray(jax.vmap(logdensity_fn)(jnp.asarray(points)))
    np.testing.assert_allclose(result.log_partition, fine, rtol=1e-13)
    np.testing.assert_allclose(result.log_partition_error, abs(fine - coarse) / 3, rtol=1e-10)
    np.testing.assert_allclose(result.nll, fine - np.mean(test_values), rtol=1e-13)


def test_chunking_does_not_change_the_result_float64():
    with jax.enable_x64(True):
        target, bounds, _ = normalised_targets()["gaussian_mixture"]
        points = POINTS[:37]  # a prime number of points: the last chunk is partial
        reference = diagnostics.nll_2d_quadrature(
            target.logdensity_fn, points, bounds, 32, batch_size=10**6
        )
        # Less than one grid row (33 nodes): one row per chunk, and 23 + 14 test points.
        chunked = diagnostics.nll_2d_quadrature(
            target.logdensity_fn, points, bounds, 32, batch_size=23
        )
        for got, expected in zip(chunked, reference, strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)


def test_reports_fraction_of_test_points_outside_the_box():
    points = jnp.array([[0.0, 0.0], [3.5, 0.0], [0.0, -3.5], [2.9, 2.9]])
    bounds = ((-3.0, 3.0), (-3.0, 3.0))
    result = diagnostics.nll_2d_quadrature(standard_logdensity, points, bounds, 16)
    np.testing.assert_allclose(result.fraction_outside, 0.5)


def test_differentiable_inside_jit_with_traced_parameters_and_test_points():
    # f_s(x) = -|x|² / 2s²: NLL(s) = mean|x|² / 2s² + log(2π s²) (box mass ~1 - 1e-14),
    # so d NLL / ds = -mean|x|² / s³ + 2 / s, the lecture's MLE gradient in closed form.
    bounds = ((-8.0, 8.0), (-8.0, 8.0))
    points = jnp.asarray(POINTS, jnp.float32)

    @jax.jit
    def test_nll(scale, test_points):
        def logdensity_fn(x):
            return -0.5 * jnp.sum(x**2) / scale**2

        return diagnostics.nll_2d_quadrature(logdensity_fn, test_points, bounds, 64).nll

    mean_sq = float(jnp.mean(jnp.sum(points**2, axis=1)))
    for scale in (1.0, 1.5):
        value, grad = jax.value_and_grad(test_nll)(scale, points)
        np.testing.assert_allclose(
            value, mean_sq / (2 * scale**2) + math.log(2 * math.pi * scale**2), rtol=1e-5
        )
        np.testing.assert_allclose(grad, -mean_sq / scale**3 + 2 / scale, rtol=1e-4)


GOOD_POINTS = np.zeros((3, 2))
GOOD_BOUNDS = ((-3.0, 3.0), (-3.0, 3.0))


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"logdensity_fn": "not callable"}, TypeError, "logdensity_fn"),
        ({"logdensity_fn": lambda x: x}, ValueError, "logdensity_fn"),
        ({"logdensity_fn": lambda x: jnp.sum(x) * jnp.nan}, ValueError, "logdensity_fn"),
        ({"logdensity_fn": lambda x: -jnp.inf * (1 + jnp.sum(x**2))}, ValueError, "bounds"),
        ({"test_points": np.zeros((3, 3))}, ValueError, "test_points"),
        ({"test_points": np.zeros(2)}, ValueError, "test_points"),
        ({"test_points": np.array([[0.0, np.nan]])}, ValueError, "test_points"),
        ({"bounds": ((-1.0, 1.0),)}, ValueError, "bounds"),
        ({"bounds": ((1.0, -1.0), (-1.0, 1.0))}, ValueError, "bounds"),
        ({"bounds": ((-1.0, 1.0), (0.0, 0.0))}, ValueError, "bounds"),
        ({"bounds": ((-np.inf, 1.0), (-1.0, 1.0))}, ValueError, "bounds"),
        ({"bounds": (("a", 1.0), (-1.0, 1.0))}, TypeError, "bounds"),
        ({"resolution": 2}, ValueError, "resolution"),
        ({"resolution": 15}, ValueError, "resolution"),
        ({"resolution": 16.0}, TypeError, "resolution"),
        ({"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(overrides, error, match):
    arguments = {
        "logdensity_fn": standard_logdensity,
        "test_points": GOOD_POINTS,
        "bounds": GOOD_BOUNDS,
        "resolution": 8,
        "batch_size": 64,
    }
    arguments.update(overrides)
    with pytest.raises(error, match=match):
        diagnostics.nll_2d_quadrature(
            arguments["logdensity_fn"],
            arguments["test_points"],
            arguments["bounds"],
            arguments["resolution"],
            batch_size=arguments["batch_size"],
        )

"""2-D toys (closed-form moments, structure, exact log-densities) and the digits split."""

from __future__ import annotations

import functools
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.special import logsumexp

import ebm_jax as ej
import ebm_jax.data as data
from ebm_jax import densities, diagnostics
from tests.helpers import assert_mean_within_mcse

NAMES = sorted(data.TOY_DATASETS)
NUM_BATCHES = 50  # independent keys, one batch each: their spread gives an honest MCSE
BATCH = 4_000


@functools.cache
def batched_generator(name):
    """``(keys, num_samples) -> (num_keys, num_samples, 2)``: one compilation per toy."""
    return jax.jit(jax.vmap(data.TOY_DATASETS[name], in_axes=(0, None)), static_argnums=1)


def batch_keys(seed):
    return jax.random.split(jax.random.key(seed), NUM_BATCHES)


@functools.cache
def batches(name, seed=0):
    """(NUM_BATCHES, BATCH, 2) exact samples, float64 NumPy (cached: drawn once per test run)."""
    return np.asarray(batched_generator(name)(batch_keys(seed), BATCH), np.float64)


def pooled(name):
    return batches(name).reshape(-1, 2)


def as_batches(values):
    """Per-point values (NUM_BATCHES * BATCH, ...) -> per-batch means (NUM_BATCHES, ...)."""
    return values.reshape(NUM_BATCHES, BATCH, *values.shape[1:]).mean(axis=1)


def raw_moments(points):
    """(E x, E y, E x², E xy, E y²) per point."""
    x, y = points[..., 0], points[..., 1]
    return np.stack([x, y, x * x, x * y, y * y], axis=-1)


def expectation(function, low, high, density=None):
    """E[function(t)] for t with the given density on [low, high] (uniform if None), by quad."""
    weight = density or (lambda t: 1.0 / (high - low))
    return integrate.quad(lambda t: function(t) * weight(t), low, high, limit=200)[0]


def arc_mixture_moments(arcs, low, high, scale, offset, noise_variance, density=None):
    """Raw moments of scale · arc(t) + offset + noise, averaging equally over the arcs."""
    moments = np.zeros(5)
    for arc in arcs:

        def x(t, arc=arc):
            return scale * arc(t)[0] + offset[0]

        def y(t, arc=arc):
            return scale * arc(t)[1] + offset[1]

        moments += [
            expectation(x, low, high, density),
            expectation(y, low, high, density),
            expectation(lambda t: x(t) ** 2, low, high, density) + noise_variance,
            expectation(lambda t: x(t) * y(t), low, high, density),
            expectation(lambda t: y(t) ** 2, low, high, density) + noise_variance,
        ]
    return moments / len(arcs)


def reference_moments(name):
    """(E x, E y, E x², E xy, E y²) from each toy's mathematical definition (not its code)."""
    if name == "eight_gaussians":  # centres at radius 2√2, std √2/4: (r²/2 + s²) I
        return np.array([0.0, 0.0, 4.125, 0.0, 4.125])
    if name == "checkerboard":  # uniform on [-4, 4] marginals; E[xy] = 1 on the black squares
        return np.array([0.0, 0.0, 16.0 / 3.0, 1.0, 16.0 / 3.0])
    if name == "rings":  # (mean r² / 2 + σ²) I
        second = np.mean(np.array([0.75, 1.5, 2.25, 3.0]) ** 2) / 2 + 0.08**2
        return np.array([0.0, 0.0, second, 0.0, second])
    if name == "pinwheel":  # five-fold symmetry: 2 E[u² + v²] I with u ~ N(1, .09), v ~ N(0, .01)
        return np.array([0.0, 0.0, 2.2, 0.0, 2.2])
    if name == "two_moons":
        arcs = [
            lambda t: (math.cos(t), math.sin(t)),
            lambda t: (1 - math.cos(t), 0.5 - math.sin(t)),
        ]
        return arc_mixture_moments(arcs, 0.0, math.pi, 2.0, (-1.0, -0.2), 0.2**2)
    if name == "swiss_roll":
        arcs = [lambda t: (t * math.cos(t), t * math.sin(t))]
        return arc_mixture_moments(arcs, 1.5 * math.pi, 4.5 * math.pi, 0.2, (0.0, 0.0), 0.2**2)
    if name == "two_spirals":
        # Jitter j ~ U[0, 1/2]² (mean 1/4, second moment 1/12) added before the arm's sign;
        # the sign squares away in second moments and cancels in first ones.
        def density(t):
            return 2 * t / (3 * math.pi) ** 2

        top = 3 * math.pi
        mean_x = expectation(lambda t: -t * math.cos(t), 0, top, density)
        mean_y = expectation(lambda t: t * math.sin(t), 0, top, density)
        xx = expectation(lambda t: (t * math.cos(t)) ** 2, 0, top, density)
        yy = expectation(lambda t: (t * math.sin(t)) ** 2, 0, top, density)
        xy = expectation(lambda t: -(t**2) * math.cos(t) * math.sin(t), 0, top, density)
        second_x = (xx + 0.5 * mean_x + 1 / 12) / 9 + 0.01
        second_y = (yy + 0.5 * mean_y + 1 / 12) / 9 + 0.01
        cross = (xy + 0.25 * (mean_x + mean_y) + 1 / 16) / 9
        return np.array([0.0, 0.0, second_x, cross, second_y])
    raise KeyError(name)


# ------------------------------------------------------------------------------------------
# Every toy: shapes, purity, jit / vmap, bounds, moments
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_toy_shape_dtype_determinism_and_keys(name):
    generator = data.TOY_DATASETS[name]
    keys = batch_keys(0)
    samples = generator(keys[0], BATCH)
    assert samples.shape == (BATCH, 2) and samples.dtype == jnp.float32
    assert np.all(np.isfinite(samples))
    np.testing.assert_array_equal(samples, generator(keys[0], BATCH))
    assert not np.allclose(samples, generator(keys[1], BATCH))
    np.testing.assert_array_equal(data.toy_2d(name, keys[0], BATCH), samples)
    # Under jit (static num_samples) and vmap over keys: the same samples, key by key.
    for index in (0, 1):
        np.testing.assert_allclose(
            batches(name)[index], generator(keys[index], BATCH), rtol=1e-6, atol=1e-6
        )


@pytest.mark.parametrize("name", NAMES)
def test_toy_mass_lies_inside_toy_bounds(name):
    samples = pooled(name)
    assert samples.shape[0] >= 100_000
    (x_low, x_high), (y_low, y_high) = data.TOY_BOUNDS
    inside = (
        (samples[:, 0] >= x_low)
        & (samples[:, 0] <= x_high)
        & (samples[:, 1] >= y_low)
        & (samples[:, 1] <= y_high)
    )
    assert inside.mean() >= 0.999


@pytest.mark.parametrize("name", NAMES)
def test_toy_moments_match_definition(name):
    assert_mean_within_mcse(
        raw_moments(batches(name)).mean(axis=1), reference_moments(name), what=f"{name} moments"
    )


# ------------------------------------------------------------------------------------------
# Structure of individual toys
# ------------------------------------------------------------------------------------------


def test_eight_gaussians_modes_radius_and_spread():
    samples = pooled("eight_gaussians")
    angles = np.arange(8) * np.pi / 4
    centres = 2 * math.sqrt(2) * np.stack([np.cos(angles), np.sin(angles)], -1)
    squared = np.sum((samples[:, None, :] - centres[None]) ** 2, axis=-1)
    nearest = np.argmin(squared, axis=1)
    one_hot = np.eye(8)[nearest]
    assert_mean_within_mcse(as_batches(one_hot), np.full(8, 1 / 8), what="mode weights")
    # Distance² to the own centre is s² χ²₂ with mean 2 s² = 1/4 (modes are 6 s apart).
    assert_mean_within_mcse(
        as_batches(squared.min(axis=1)), 2 * (math.sqrt(2) / 4) ** 2, what="spread"
    )


def test_checkerboard_points_lie_only_on_black_squares_in_equal_shares():
    samples = pooled("checkerboard")
    assert np.all(np.abs(samples) <= 4.0)
    cells = np.floor(samples / 2).astype(int)
    assert np.all((cells[:, 0] + cells[:, 1]) % 2 == 0)
    square = (cells[:, 0] + 2) * 4 + (cells[:, 1] + 2)  # 0..15, only the 8 black ones occur
    black = sorted(
        {(i + 2) * 4 + (j + 2) for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0}
    )
    shares = (square[:, None] == np.array(black)[None]).astype(float)
    assert_mean_within_mcse(as_batches(shares), np.full(8, 1 / 8), what="square shares")


def test_rings_radii_and_equal_ring_weights():
    samples = pooled("rings")
    radii = np.array([0.75, 1.5, 2.25, 3.0])
    distance = np.abs(np.linalg.norm(samples, axis=1)[:, None] - radii[None])
    nearest = np.argmin(distance, axis=1)
    assert_mean_within_mcse(as_batches(np.eye(4)[nearest]), np.full(4, 0.25), what="ring shares")
    # Radial offsets from the own ring are ~N(0, 0.08²): 7.5 σ between rings' midpoints.
    assert np.all(distance.min(axis=1) < 0.375)


def distance_to_upper_half_circle(points):
    """Distance from each point to {(cos t, sin t) : t in [0, π]}."""
    radial = np.abs(np.linalg.norm(points, axis=1) - 1)
    to_ends = np.minimum(
        np.linalg.norm(points - [1.0, 0.0], axis=1), np.linalg.norm(points - [-1.0, 0.0], axis=1)
    )
    return np.where(points[:, 1] >= 0, radial, to_ends)


def test_two_moons_each_point_near_one_of_two_arcs_in_equal_shares():
    samples = pooled("two_moons")
    unscaled = (samples + np.array([1.0, 0.2])) / 2  # undo FFJORD's affine map: noise 0.1
    to_upper = distance_to_upper_half_circle(unscaled)
    to_lower = distance_to_upper_half_circle(np.array([1.0, 0.5]) - unscaled)
    nearest_distance = np.minimum(to_upper, to_lower)
    assert np.all(nearest_distance < 0.6)  # 6 noise standard deviations
    assert_mean_within_mcse(
        as_batches((to_upper < to_lower).astype(float)), 0.5, what="upper-moon share"
    )


def test_pinwheel_inverts_to_its_gaussian_arm_coordinates():
    # x = 2 R(θ) (u, v) with θ = 2πk/5 + e^u / 4. Recover (u, v) from x: the polar radius
    # is |(u, v)| and the angle left after removing the twist is atan2(v, u), so a fixed
    # point gives u = ρ cos(residual), v = ρ sin(residual) (a contraction since v is small).
    samples = pooled("pinwheel")
    radius = np.linalg.norm(samples, axis=1) / 2
    angle = np.arctan2(samples[:, 1], samples[:, 0])
    arm_angle = 2 * np.pi / 5
    radial = radius
    for _ in range(20):
        untwisted = angle - 0.25 * np.exp(radial)
        arm = np.round(untwisted / arm_angle)
        residual = untwisted - arm * arm_angle
        radial = radius * np.cos(residual)
    tangential = radius * np.sin(residual)
    # u ~ N(1, 0.3²) and v ~ N(0, 0.1²): a wrong twist rate would smear v across the arm.
    coordinates = np.stack([radial, radial**2, tangential, tangential**2], axis=-1)
    assert_mean_within_mcse(
        as_batches(coordinates), [1.0, 1.09, 0.0, 0.01], what="arm coordinates (u, u², v, v²)"
    )
    one_hot = np.eye(5)[np.mod(arm.astype(int), 5)]
    assert_mean_within_mcse(as_batches(one_hot), np.full(5, 0.2), what="arm shares")


# ------------------------------------------------------------------------------------------
# Exact log-densities
# ------------------------------------------------------------------------------------------


def test_eight_gaussians_logdensity_is_the_gaussian_mixture_float64():
    angles = np.arange(8) * np.pi / 4
    centres = 2 * math.sqrt(2) * np.stack([np.cos(angles), np.sin(angles)], -1)
    points = np.random.default_rng(0).normal(size=(20, 2)) * 2.5
    with jax.enable_x64(True):
        mixture = densities.gaussian_mixture(jnp.ones(8), jnp.asarray(centres), 1 / 8)
        expected = jax.jit(jax.vmap(mixture.logdensity_fn))(jnp.asarray(points))
        got = jax.jit(jax.vmap(data.eight_gaussians_logdensity))(jnp.asarray(points))
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_rings_logdensity_is_the_angular_average_of_gaussians_and_smooth_float64():
    points = np.concatenate([np.random.default_rng(1).normal(size=(20, 2)) * 2, np.zeros((1, 2))])
    phi = np.arange(4096) * 2 * np.pi / 4096  # periodic trapezoid: exact to rounding
    circle = np.stack([np.cos(phi), np.sin(phi)], -1)
    radii = np.array([0.75, 1.5, 2.25, 3.0])
    squared = np.sum((points[:, None, None] - radii[:, None, None] * circle) ** 2, axis=-1)
    log_gaussians = -squared / (2 * 0.08**2) - math.log(2 * np.pi * 0.08**2)
    # log of (1/4) Σ_rings mean_φ N(x; r(cos φ, sin φ), σ²I), in log space (densities underflow).
    expected = logsumexp(log_gaussians, axis=(1, 2)) - math.log(4 * len(phi))
    with jax.enable_x64(True):
        values, scores = jax.jit(jax.vmap(jax.value_and_grad(data.rings_logdensity)))(
            jnp.asarray(points)
        )
    np.testing.assert_allclose(values, expected, rtol=1e-10, atol=1e-9)
    assert np.all(np.isfinite(scores))
    np.testing.assert_array_equal(scores[-1], np.zeros(2))  # 0 at the origin, not NaN


@pytest.mark.parametrize(
    ("name", "bounds"),
    [
        # Mass outside: 4.2 / 0.35 = 12 standard deviations from every mode.
        ("eight_gaussians", ((-7.0, 7.0), (-7.0, 7.0))),
        # 1.5 / 0.08 = 19 noise standard deviations beyond the outer ring.
        ("rings", data.TOY_BOUNDS),
    ],
)
def test_toy_logdensity_integrates_to_one_float64(name, bounds):
    with jax.enable_x64(True):
        result = diagnostics.nll_2d_quadrature(
            data.TOY_LOGDENSITIES[name], np.zeros((1, 2)), bounds, 256
        )
    assert abs(float(result.log_partition)) < 1e-10
    assert float(result.log_partition_error) < 1e-10


def test_checkerboard_logdensity_is_uniform_on_black_squares():
    centres = np.array([[2 * i + 1, 2 * j + 1] for i in range(-3, 3) for j in range(-3, 3)], float)
    values = np.asarray(jax.jit(jax.vmap(data.checkerboard_logdensity))(jnp.asarray(centres)))
    inside = np.all(np.abs(centres) < 4, axis=1)
    black = inside & ((np.floor(centres[:, 0] / 2) + np.floor(centres[:, 1] / 2)) % 2 == 0)
    np.testing.assert_allclose(values[black], -math.log(32), rtol=1e-6)
    assert np.all(values[~black] == -np.inf)
    # Piecewise constant on 2x2 squares: the area-weighted sum over centres is the integral.
    np.testing.assert_allclose(np.sum(np.exp(values) * 4.0), 1.0, rtol=1e-6)


@pytest.mark.parametrize("name", ["eight_gaussians", "rings"])
def test_samples_satisfy_steins_identity_for_the_logdensity(name):
    # E_p[∇log p(x) xᵀ] = −I holds for x ~ p only: it ties the sampler to the density.
    samples = pooled(name)
    score_fn = jax.jit(jax.vmap(jax.grad(data.TOY_LOGDENSITIES[name])))
    scores = np.asarray(score_fn(jnp.asarray(samples, jnp.float32)), np.float64)
    products = (scores[:, :, None] * samples[:, None, :]).reshape(-1, 4)
    assert_mean_within_mcse(as_batches(products), -np.eye(2).ravel(), what="E[s xᵀ]")


# ------------------------------------------------------------------------------------------
# Bad arguments
# ------------------------------------------------------------------------------------------


def test_unknown_toy_name_raises_listing_the_valid_names():
    with pytest.raises(ValueError, match=r"name must be one of .*'two_spirals'.*'moons'"):
        data.toy_2d("moons", jax.random.key(0), 10)
    with pytest.raises(ValueError, match="name"):
        data.toy_2d(3, jax.random.key(0), 10)


@pytest.mark.parametrize(("num_samples", "error"), [(0, ValueError), (2.0, TypeError)])
def test_bad_num_samples_raises(num_samples, error):
    with pytest.raises(error, match="num_samples"):
        data.pinwheel(jax.random.key(0), num_samples)


BAD_KEYS = [
    (0, TypeError, r"rng_key must be a jax\.random key, got int"),
    (jax.random.split(jax.random.key(0), 2), ValueError, r"rng_key must be a single key"),
    (jnp.zeros(2, jnp.float32), TypeError, r"rng_key must be a jax\.random key"),
]


@pytest.mark.parametrize("name", sorted(data.TOY_DATASETS))
@pytest.mark.parametrize(("rng_key", "error", "match"), BAD_KEYS, ids=["int", "two_keys", "float"])
def test_a_seed_or_a_batch_of_keys_is_named_like_run_chains(name, rng_key, error, match):
    with pytest.raises(error, match=match):
        data.TOY_DATASETS[name](rng_key, 10)
    with pytest.raises(error, match=match):
        data.toy_2d(name, rng_key, 10)


def test_a_seed_gets_the_same_error_as_from_run_chains():
    algorithm = ej.samplers.mala(lambda x: -0.5 * jnp.sum(x**2), 0.1)
    with pytest.raises(TypeError) as from_run_chains:
        ej.run_chains(0, algorithm, jnp.zeros((2, 2)), 1)
    with pytest.raises(TypeError) as from_data:
        data.eight_gaussians(0, 10)
    assert str(from_data.value) == str(from_run_chains.value)


def test_generators_still_run_under_jit_and_vmap_over_keys():
    keys = jax.random.split(jax.random.key(0), 3)
    batched = jax.jit(jax.vmap(lambda key: data.two_moons(key, 5)))(keys)
    assert batched.shape == (3, 5, 2)
    np.testing.assert_array_equal(batched[1], data.two_moons(keys[1], 5))


@pytest.mark.parametrize("name", sorted(data.TOY_LOGDENSITIES))
def test_logdensity_takes_one_point(name):
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        data.TOY_LOGDENSITIES[name](jnp.zeros((3, 2)))


# ------------------------------------------------------------------------------------------
# Digits
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_digits():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    bunch = sklearn_datasets.load_digits()
    return np.asarray(bunch.data, np.float64), np.asarray(bunch.target)


def test_digits_split_is_fixed_stratified_and_disjoint(raw_digits):
    _, labels = raw_digits
    digits = data.load_digits()
    assert digits.train.shape == (1438, 64) and digits.test.shape == (359, 64)
    assert digits.train.dtype == jnp.float32 and digits.train_labels.dtype == jnp.int32
    train_rows, test_rows = np.asarray(digits.train_indices), np.asarray(digits.test_indices)
    assert np.intersect1d(train_rows, test_rows).size == 0
    np.testing.assert_array_equal(np.union1d(train_rows, test_rows), np.arange(len(labels)))
    np.testing.assert_array_equal(digits.train_labels, labels[train_rows])
    np.testing.assert_array_equal(digits.test_labels, labels[test_rows])
    for digit in range(10):  # stratified: each class loses floor(0.2 n_c + 1/2) to test
        count = np.sum(labels == digit)
        assert np.sum(np.asarray(digits.test_labels) == digit) == math.floor(0.2 * count + 0.5)
    again = data.load_digits()
    np.testing.assert_array_equal(again.test_indices, digits.test_indices)
    other_seed = data.load_digits(seed=1)
    assert not np.array_equal(other_seed.test_indices, digits.test_indices)
    half = data.load_digits(test_fraction=0.5)
    assert abs(half.test.shape[0] - 1797 / 2) <= 10


def test_digits_unit_scale_is_pixels_over_16(raw_digits):
    images, _ = raw_digits
    digits = data.load_digits(scale="unit")
    np.testing.assert_allclose(digits.train, images[np.asarray(digits.train_indices)] / 16)
    assert float(digits.train.min()) == 0.0 and float(digits.train.max()) == 1.0
    np.testing.assert_array_equal(digits.pixel_mean, np.zeros(64))
    np.testing.assert_array_equal(digits.pixel_std, np.ones(64))


def test_digits_standardisation_uses_train_statistics(raw_digits):
    images, _ = raw_digits
    digits = data.load_digits(scale="standardize")
    unit_train = images[np.asarray(digits.train_indices)] / 16
    unit_test = images[np.asarray(digits.test_indices)] / 16
    spread = unit_train.std(axis=0)
    varying = spread > 0
    train = np.asarray(digits.train, np.float64)
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(train.std(axis=0)[varying], 1.0, rtol=1e-5)
    assert not np.all(varying)  # some border pixels are always 0: kept, divisor 1
    np.testing.assert_allclose(digits.pixel_std[~varying], 1.0)
    expected_test = (unit_test - unit_train.mean(axis=0)) / np.where(varying, spread, 1.0)
    np.testing.assert_allclose(digits.test, expected_test, rtol=1e-5, atol=1e-5)
    # The test set's own statistics differ: standardising with them would not match.
    assert not np.allclose(np.asarray(digits.test).mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(
        np.asarray(digits.train) * np.asarray(digits.pixel_std) + np.asarray(digits.pixel_mean),
        unit_train,
        atol=1e-5,
    )


def test_digits_binary_values_threshold_the_unit_pixels(raw_digits):
    images, _ = raw_digits
    digits = data.load_digits(scale="binary")
    assert set(np.unique(np.asarray(digits.train))) == {0.0, 1.0}
    expected = (images[np.asarray(digits.test_indices)] / 16 > 0.5).astype(np.float32)
    np.testing.assert_array_equal(digits.test, expected)


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"test_fraction": 0.0}, ValueError, "test_fraction"),
        ({"test_fraction": 1.5}, ValueError, "test_fraction"),
        ({"test_fraction": 0.001}, ValueError, "test_fraction"),
        ({"scale": "minmax"}, ValueError, "scale"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_digits_bad_arguments_raise(raw_digits, arguments, error, match):
    with pytest.raises(error, match=match):
        data.load_digits(**arguments)


def test_digits_without_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "ebm_jax\[data\]"'):
        data.load_digits()

"""The conformance suite every analytic target passes.

Shapes and dtypes, pure and jittable sampling, finite log-density and score at
samples, and exact samples that reproduce the closed-form mean and covariance
(MCSE-gated; exact iid samples, so each sample is its own independent
"chain"). Float64 identities (quadrature, references, finite-difference
scores) live in each target's own test file.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax import densities
from tests.helpers import assert_mean_within_mcse

COVARIANCE = [[1.0, 0.6, 0.0], [0.6, 2.0, -0.4], [0.0, -0.4, 0.5]]

FACTORIES = {
    "isotropic_gaussian": lambda: densities.isotropic_gaussian(jnp.array([1.0, -2.0]), 0.5),
    "diagonal_gaussian": lambda: densities.diagonal_gaussian(
        jnp.array([0.0, 1.0, 2.0]), jnp.array([0.5, 1.0, 3.0])
    ),
    "gaussian": lambda: densities.gaussian(jnp.array([1.0, 0.0, -1.0]), jnp.array(COVARIANCE)),
    "gaussian_precision": lambda: densities.gaussian(
        jnp.zeros(3), precision=jnp.linalg.inv(jnp.array(COVARIANCE))
    ),
    "gaussian_mixture": lambda: densities.gaussian_mixture(
        jnp.array([0.2, 0.5, 0.3]),
        jnp.array([[-2.0, 0.0], [1.0, 1.0], [2.0, -2.0]]),
        jnp.array([[0.5, 1.0], [1.0, 0.3], [0.2, 0.2]]),
    ),
    "banana": lambda: densities.banana(scale=1.0, curvature=1.0, dim=3),
    "rings": lambda: densities.rings((0.5, 1.5, 3.0), scale=0.2, weights=(1.0, 2.0, 3.0)),
    "funnel": lambda: densities.funnel(dim=3, scale=1.0),
    "ising": lambda: densities.ising(4, coupling=0.3, field=0.1),
}
CONTINUOUS = sorted(name for name in FACTORIES if name != "ising")


@functools.cache
def cached_target(name):
    """One target per name and module: its jitted functions compile once."""
    return FACTORIES[name]()


NUM_SAMPLES = 20_000


@pytest.fixture(params=sorted(FACTORIES))
def target(request):
    return cached_target(request.param)


def test_target_is_well_formed(target):
    assert isinstance(target, densities.Target)
    samples = target.sample(jax.random.key(1), NUM_SAMPLES)
    assert samples.shape == (NUM_SAMPLES, *target.event_shape)
    assert samples.dtype == jnp.float32
    logdensities = jax.vmap(target.logdensity_fn)(samples)
    scores = jax.vmap(target.score_fn)(samples)
    assert logdensities.shape == (NUM_SAMPLES,) and logdensities.dtype == jnp.float32
    assert scores.shape == samples.shape
    assert np.all(np.isfinite(logdensities)) and np.all(np.isfinite(scores))
    size = int(np.prod(target.event_shape))
    assert target.mean.shape == target.event_shape
    assert target.covariance.shape == (size, size)
    covariance = np.asarray(target.covariance, dtype=np.float64)
    np.testing.assert_allclose(covariance, covariance.T, rtol=1e-6)
    assert np.all(np.linalg.eigvalsh(covariance) > 0)
    with pytest.raises(TypeError):
        target.parameters["new"] = 1.0  # read-only


def test_sampling_is_pure(target):
    key = jax.random.key(1)
    first = target.sample(key, NUM_SAMPLES)
    np.testing.assert_array_equal(first, target.sample(key, NUM_SAMPLES))
    assert not np.allclose(first, target.sample(jax.random.key(5), NUM_SAMPLES))


def test_sample_composes_with_jit():
    target = cached_target("rings")

    @jax.jit
    def mean_of_samples(rng_key):
        return jnp.mean(target.sample(rng_key, NUM_SAMPLES), axis=0)

    expected = jnp.mean(target.sample(jax.random.key(1), NUM_SAMPLES), axis=0)
    np.testing.assert_allclose(mean_of_samples(jax.random.key(1)), expected, atol=1e-5)


def test_num_samples_is_validated(target):
    with pytest.raises(ValueError, match="num_samples"):
        target.sample(jax.random.key(0), 0)
    with pytest.raises(TypeError, match="num_samples"):
        target.sample(jax.random.key(0), 2.5)


def test_exact_samples_match_closed_form_moments(target):
    num_samples = NUM_SAMPLES
    samples = np.asarray(target.sample(jax.random.key(1), num_samples), dtype=np.float64)
    flat = samples.reshape(num_samples, -1)
    mean = np.asarray(target.mean, dtype=np.float64).reshape(-1)
    assert_mean_within_mcse(flat, mean, what=f"{target.name} mean")
    centred = flat - mean
    outer = np.einsum("ni,nj->nij", centred, centred).reshape(num_samples, -1)
    covariance = np.asarray(target.covariance, dtype=np.float64).reshape(-1)
    # Exactly-zero covariance entries with zero-variance products (e.g. the Ising
    # diagonal s_i² = 1) have MCSE 0: compare those exactly instead.
    random = outer.std(axis=0) > 0
    np.testing.assert_allclose(outer[0, ~random], covariance[~random], atol=1e-6)
    assert_mean_within_mcse(outer[:, random], covariance[random], what=f"{target.name} covariance")


def test_large_ising_has_no_closed_form_moments():
    target = densities.ising(5, coupling=0.3)
    assert target.mean is None and target.covariance is None
    assert not target.is_normalized
    with pytest.raises(NotImplementedError, match="ising_gibbs"):
        target.sample(jax.random.key(0), 1)


# Shared float64 checks, imported by the per-target test files.

trapezoid = getattr(np, "trapezoid", None) or np.trapz  # noqa: NPY201 (NumPy < 2 has only trapz)


def grid_integral(integrand, lower, upper, num_points):
    """Trapezoid rule of ``integrand: (2,) -> (m,)`` over the box [lower, upper] ⊂ R²."""
    xs = np.linspace(lower[0], upper[0], num_points)
    ys = np.linspace(lower[1], upper[1], num_points)
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
    values = np.asarray(jax.jit(jax.vmap(integrand))(jnp.asarray(grid)), dtype=np.float64)
    values = values.reshape(num_points, num_points, -1)
    return trapezoid(trapezoid(values, ys, axis=1), xs, axis=0)


def assert_grid_integral(integrand, expected, lower, upper, num_points=401, tail=1e-9):
    """The integral matches ``expected`` within the grid-refinement error plus ``tail``.

    With a refined grid (spacing halved), the trapezoid error of the fine
    estimate is at most the coarse-fine difference (it converges at order
    >= 1); ``tail`` bounds the mass outside the box and float64 rounding.
    """
    coarse = grid_integral(integrand, lower, upper, num_points)
    fine = grid_integral(integrand, lower, upper, 2 * num_points - 1)
    tolerance = np.abs(coarse - fine) + tail
    error = np.abs(fine - np.asarray(expected, dtype=np.float64))
    assert np.all(error <= tolerance), f"integral {fine} vs {expected}: error {error} > {tolerance}"


def assert_score_matches_finite_differences(target, points, step=1e-6, rtol=1e-6):
    """``target.score_fn`` (jax.grad) equals central differences of ``logdensity_fn``.

    Call in float64 (inside ``jax.enable_x64(True)``): the central-difference
    error is O(step²) + O(eps/step) ≈ 1e-10 there.
    """
    points = jnp.asarray(points)
    assert points.dtype == jnp.float64
    dim = points.shape[-1]
    shifts = step * np.concatenate([np.eye(dim), -np.eye(dim)])
    values = jax.vmap(jax.vmap(target.logdensity_fn))(points[:, None, :] + shifts)
    plus, minus = values[:, :dim], values[:, dim:]
    scores = jax.vmap(target.score_fn)(points)
    np.testing.assert_allclose(scores, (plus - minus) / (2 * step), rtol=rtol, atol=rtol)

"""Neal's funnel: scipy reference, normalisation by adapted quadrature, ancestral samples."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax import densities
from tests.densities.test_base import assert_score_matches_finite_differences, trapezoid
from tests.helpers import assert_mean_within_mcse

stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize(("dim", "scale"), [(2, 1.0), (10, 3.0)])
def test_logdensity_matches_scipy_float64(dim, scale):
    points = np.random.default_rng(3).normal(size=(6, dim)) * np.array([scale] + [2.0] * (dim - 1))
    v, x = points[:, 0], points[:, 1:]
    expected = stats.norm(0.0, scale).logpdf(v) + np.sum(
        stats.norm(0.0, np.exp(v / 2.0)[:, None]).logpdf(x), axis=1
    )
    with jax.enable_x64(True):
        target = densities.funnel(dim, scale)
        actual = jax.vmap(target.logdensity_fn)(jnp.asarray(points))
        np.testing.assert_allclose(actual, expected, rtol=1e-12)
        assert_score_matches_finite_differences(target, points, rtol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_integrates_to_one_by_adapted_quadrature(scale):
    """∫∫ p(v, x) dx dv with x = e^{v/2} t, so the grid follows the funnel's neck.

    Trapezoid rule on (v, t) ∈ [-10σ, 10σ] × [-12, 12]; error bounded by grid
    refinement (the change of variables has Jacobian e^{v/2}).
    """
    with jax.enable_x64(True):
        target = densities.funnel(2, scale)

        def integral(num_points):
            v = np.linspace(-10.0 * scale, 10.0 * scale, num_points)
            t = np.linspace(-12.0, 12.0, num_points)
            vv, tt = np.meshgrid(v, t, indexing="ij")
            points = np.stack([vv, np.exp(vv / 2.0) * tt], axis=-1).reshape(-1, 2)
            values = np.exp(np.asarray(jax.vmap(target.logdensity_fn)(jnp.asarray(points))))
            values = values.reshape(vv.shape) * np.exp(vv / 2.0)
            return trapezoid(trapezoid(values, t, axis=1), v)

        coarse, fine = integral(201), integral(401)
        assert abs(fine - 1.0) <= abs(coarse - fine) + 1e-9


def test_neals_funnel_exact_samples():
    """Neal's σ = 3: Var x_i = e^{9/2} is too heavy-tailed to MCSE-gate, so check
    the moments that identify the law: v ~ N(0, 9) and x_i e^{-v/2} ~ N(0, 1)."""
    target = densities.funnel(10, 3.0)
    np.testing.assert_allclose(np.diag(target.covariance)[1:], np.exp(4.5), rtol=1e-6)
    samples = np.asarray(target.sample(jax.random.key(0), 20_000), dtype=np.float64)
    v, x = samples[:, 0], samples[:, 1:]
    whitened = x * np.exp(-v / 2.0)[:, None]
    features = np.concatenate([v[:, None], v[:, None] ** 2, whitened, whitened**2], axis=1)
    expected = np.concatenate([[0.0, 9.0], np.zeros(9), np.ones(9)])
    assert_mean_within_mcse(features, expected, what="funnel moments")


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"dim": 1}, ValueError, "dim"),
        ({"dim": "3"}, TypeError, "dim"),
        ({"scale": 0.0}, ValueError, "scale"),
        ({"scale": float("inf")}, ValueError, "scale"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        densities.funnel(**kwargs)

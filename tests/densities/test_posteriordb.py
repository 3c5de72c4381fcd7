"""posteriordb posteriors: scipy reference log-densities, transforms, and posteriordb's reference.

The reference log-density is written independently of the JAX code: scipy's
``norm.logpdf`` and ``halfcauchy.logpdf``, the GARCH volatility recursion as a
plain numpy loop over :math:`\\sigma_t` (not :math:`\\sigma_t^2`), and each
log-Jacobian term listed separately. ``logdensity_fn`` includes the
normalising constant of every proper factor, so the two agree exactly, not
merely up to a constant. Round-off tolerances are stated in units of
:math:`\\varepsilon \\sum_k |\\ell_k|`, where :math:`\\ell_k` are the reference's
terms: each term carries a few ulp from its handful of operations and the sum
adds at most a few ulp of :math:`\\sum_k |\\ell_k|`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax import densities
from ebm_jax.densities import posteriordb
from tests.data.posteriordb import load_reference
from tests.helpers import Z

stats = pytest.importorskip("scipy.stats")
special = pytest.importorskip("scipy.special")

FACTORIES = {
    "eight_schools_noncentered": densities.eight_schools_noncentered,
    "garch11": densities.garch11,
}
NUM_POINTS = 64
# Round-off budget in units of eps * sum_k |term_k|; measured at most 3 (float64, U(-10, 10))
# and 1 (float32, U(-2, 2)); float32 at U(-10, 10) reaches 9 where beta1 is near 1 - alpha1.
ULPS = 16


def eight_schools_terms(z):
    """(log-density terms, log-Jacobian terms) by scipy, for one float64 position."""
    theta_trans, mu, log_tau = z[:8], z[8], z[9]
    tau = np.exp(log_tau)
    theta = mu + tau * theta_trans
    density = [
        *stats.norm.logpdf(theta_trans),
        *stats.norm.logpdf(posteriordb.EIGHT_SCHOOLS_Y, theta, posteriordb.EIGHT_SCHOOLS_SIGMA),
        stats.norm.logpdf(mu, 0.0, 5.0),
        stats.halfcauchy.logpdf(tau, 0.0, 5.0),
    ]
    return np.array(density), np.array([log_tau])


def garch11_terms(z):
    """(log-likelihood terms, log-Jacobian terms) by scipy and a numpy loop over sigma_t."""
    mu, log_alpha0, logit_alpha1, logit_fraction = z
    alpha0 = np.exp(log_alpha0)
    # 1 - alpha1 = expit(-logit alpha1): no cancellation when alpha1 is near 1.
    alpha1, one_minus_alpha1 = special.expit(logit_alpha1), special.expit(-logit_alpha1)
    fraction, one_minus_fraction = special.expit(logit_fraction), special.expit(-logit_fraction)
    beta1 = one_minus_alpha1 * fraction
    y = posteriordb.GARCH_Y
    sigma = np.empty_like(y)
    sigma[0] = posteriordb.GARCH_SIGMA1
    for t in range(1, len(y)):
        sigma[t] = np.sqrt(alpha0 + alpha1 * (y[t - 1] - mu) ** 2 + beta1 * sigma[t - 1] ** 2)
    jacobian = [
        log_alpha0,  # d alpha0 / d log alpha0 = alpha0
        np.log(alpha1),  # d alpha1 / d logit alpha1 = alpha1 (1 - alpha1)
        np.log(one_minus_alpha1),
        np.log(one_minus_alpha1),  # d beta1 / d u = (1 - alpha1) s(u) (1 - s(u))
        np.log(fraction),
        np.log(one_minus_fraction),
    ]
    return stats.norm.logpdf(y, mu, sigma), np.array(jacobian)


REFERENCE_TERMS = {"eight_schools_noncentered": eight_schools_terms, "garch11": garch11_terms}


def reference(name, points, jacobian=True):
    """Reference log-densities and their round-off scale sum_k |term_k|, in float64."""
    values, scales = [], []
    for z in np.asarray(points, np.float64):
        density, log_jacobian = REFERENCE_TERMS[name](z)
        terms = np.concatenate([density, log_jacobian]) if jacobian else density
        values.append(np.sum(terms))
        scales.append(np.sum(np.abs(terms)))
    return np.array(values), np.array(scales)


def uniform_points(dim, width, seed=0, num_points=NUM_POINTS, dtype=np.float32):
    """Points of U(-width, width)^dim, exactly representable in ``dtype`` (Stan's init box: 2)."""
    return np.random.default_rng(seed).uniform(-width, width, (num_points, dim)).astype(dtype)


@functools.cache
def cached_posterior(name, dtype=jnp.float32):
    return FACTORIES[name](dtype)


@functools.cache
def batched(name, dtype=jnp.float32):
    """``z -> (logdensity, gradient, constrained)`` jitted and vmapped; float64 skips the
    gradient (not checked there, and its scan is the slow compile). One compile per
    name and dtype, as every test uses ``NUM_POINTS`` points."""
    posterior = cached_posterior(name, dtype)

    def evaluate(z):
        if dtype == jnp.float64:
            value, gradient = posterior.logdensity_fn(z), jnp.zeros_like(z)
        else:
            value, gradient = jax.value_and_grad(posterior.logdensity_fn)(z)
        return value, gradient, posterior.constrain_fn(z)

    return jax.jit(jax.vmap(evaluate))


def evaluate64(name, points):
    """``batched`` in float64 (log-density and constrained quantities), as numpy arrays."""
    with jax.enable_x64(True):
        value, _, constrained = batched(name, jnp.float64)(points)
        return np.asarray(value), np.asarray(constrained)


def evaluate32(name, points):
    """``batched`` in float32, as numpy arrays."""
    return tuple(np.asarray(a) for a in batched(name)(points))


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("width", [2.0, 10.0])
def test_logdensity_matches_scipy_float64(name, width):
    points = uniform_points(cached_posterior(name).dim, width, dtype=np.float64)
    expected, scale = reference(name, points)
    actual, _ = evaluate64(name, points)
    assert actual.dtype == np.float64
    budget = ULPS * np.finfo(np.float64).eps * scale
    np.testing.assert_array_less(np.abs(actual - expected), budget)


@pytest.mark.parametrize("name", FACTORIES)
def test_float32_logdensity_matches_float64_reference(name):
    points = uniform_points(cached_posterior(name).dim, 2.0, seed=1)
    expected, scale = reference(name, points)
    actual, _, _ = evaluate32(name, points)
    assert actual.dtype == np.float32
    np.testing.assert_array_less(np.abs(actual - expected), ULPS * np.finfo(np.float32).eps * scale)


@pytest.mark.parametrize("name", FACTORIES)
def test_the_log_jacobian_is_included_and_matters(name):
    """Without its log-Jacobian the reference differs by a non-constant: the Jacobian itself."""
    points = uniform_points(cached_posterior(name).dim, 2.0, seed=2)
    actual = evaluate32(name, points)[0].astype(np.float64)
    without_jacobian, scale = reference(name, points, jacobian=False)
    log_jacobian = np.array(
        [np.sum(REFERENCE_TERMS[name](z)[1]) for z in points.astype(np.float64)]
    )
    tolerance = ULPS * np.finfo(np.float32).eps * (scale + np.abs(log_jacobian))
    np.testing.assert_array_less(np.abs(actual - without_jacobian - log_jacobian), tolerance)
    difference = actual - without_jacobian
    assert np.ptp(difference) > 100.0 * tolerance.max()


def test_eight_schools_constrain_fn():
    posterior = cached_posterior("eight_schools_noncentered")
    assert posterior.name == "eight_schools-eight_schools_noncentered"
    assert posterior.names == (*(f"theta[{j}]" for j in range(1, 9)), "mu", "tau")
    assert posterior.dim == 10
    points = uniform_points(posterior.dim, 10.0, seed=3)
    constrained = evaluate32("eight_schools_noncentered", points)[2].astype(np.float64)
    z = points.astype(np.float64)
    tau = np.exp(z[:, 9])
    theta, mu, constrained_tau = constrained[:, :8], constrained[:, 8], constrained[:, 9]
    eps = np.finfo(np.float32).eps
    np.testing.assert_array_equal(mu, z[:, 8])
    np.testing.assert_allclose(constrained_tau, tau, rtol=4 * eps)
    # A few ulp of the largest intermediates |mu| and tau |theta_trans|.
    scale = np.abs(z[:, 8:9]) + tau[:, None] * np.abs(z[:, :8])
    expected_theta = z[:, 8:9] + tau[:, None] * z[:, :8]
    np.testing.assert_array_less(np.abs(theta - expected_theta), 4 * eps * scale)
    assert np.all(constrained_tau > 0)


def test_garch11_constrain_fn_respects_the_nested_bound():
    posterior = cached_posterior("garch11")
    assert posterior.name == "garch-garch11"
    assert posterior.names == ("mu", "alpha0", "alpha1", "beta1")
    assert posterior.dim == 4
    points = uniform_points(posterior.dim, 10.0, seed=4)
    mu, alpha0, alpha1, beta1 = evaluate32("garch11", points)[2].astype(np.float64).T
    z = points.astype(np.float64)
    expected_alpha1 = 1.0 / (1.0 + np.exp(-z[:, 2]))
    expected_beta1 = (1.0 - expected_alpha1) / (1.0 + np.exp(-z[:, 3]))
    rtol = 8 * np.finfo(np.float32).eps
    np.testing.assert_array_equal(mu, z[:, 0])
    np.testing.assert_allclose(alpha0, np.exp(z[:, 1]), rtol=rtol)
    np.testing.assert_allclose(alpha1, expected_alpha1, rtol=rtol)
    np.testing.assert_allclose(beta1, expected_beta1, rtol=rtol)
    # The bounds in float64: in float32, 1 - alpha1 cancels for alpha1 near 1 (here 1 - 5e-5).
    _, alpha0, alpha1, beta1 = evaluate64("garch11", z)[1].T
    assert np.all(alpha0 > 0) and np.all((alpha1 > 0) & (alpha1 < 1))
    assert np.all((beta1 > 0) & (beta1 < 1.0 - alpha1))


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("width", [2.0, 10.0])
def test_value_and_gradient_are_finite(name, width):
    points = uniform_points(cached_posterior(name).dim, width, seed=5)
    values, gradients, _ = evaluate32(name, points)
    assert values.dtype == gradients.dtype == np.float32
    assert gradients.shape == points.shape
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(gradients))


@pytest.mark.parametrize("name", FACTORIES)
def test_dtype_sets_the_computation_dtype(name):
    """Shapes and dtypes by ``jax.eval_shape``, which traces without compiling."""
    with jax.enable_x64(True):
        posterior = FACTORIES[name](jnp.float64)
        position = jnp.zeros(posterior.dim, jnp.float32)
        value, gradient = jax.eval_shape(jax.value_and_grad(posterior.logdensity_fn), position)
        assert value.shape == () and value.dtype == jnp.float64
        assert gradient.dtype == jnp.float32  # the position's dtype, as jax.grad keeps it
        constrained = jax.eval_shape(posterior.constrain_fn, position)
        assert constrained.shape == (len(posterior.names),)
        assert constrained.dtype == jnp.float64
        float32_posterior = FACTORIES[name](jnp.float32)
        float64_position = jnp.zeros(posterior.dim, jnp.float64)
        value = jax.eval_shape(float32_posterior.logdensity_fn, float64_position)
        assert value.dtype == jnp.float32


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("dtype", [jnp.int32, "not a dtype", None, jnp.complex64])
def test_non_floating_dtype_names_the_argument(name, dtype):
    with pytest.raises(TypeError, match="dtype"):
        FACTORIES[name](dtype)


@pytest.mark.parametrize("name", FACTORIES)
def test_batched_position_names_the_argument(name):
    posterior = cached_posterior(name)
    with pytest.raises(ValueError, match="position"):
        posterior.logdensity_fn(jnp.zeros((2, posterior.dim)))


@pytest.mark.parametrize("name", FACTORIES)
def test_reference_file_matches_the_posterior(name):
    """The stored reference is posteriordb's, for these names, data and commit."""
    record = load_reference(name)
    posterior = cached_posterior(name)
    assert record["name"] == posterior.name
    assert record["source"]["commit"] == posteriordb.POSTERIORDB_COMMIT
    assert record["source"]["repository"] == posteriordb.POSTERIORDB_REPOSITORY
    summary = record["reference"]
    assert tuple(summary["names"]) == posterior.names
    for key in ("mean", "sd", "mean_se", "sd_se"):
        assert len(summary[key]) == len(posterior.names), key
        assert np.all(np.isfinite(summary[key])), key
    assert np.all(np.asarray(summary["sd"]) > 0) and np.all(np.asarray(summary["mean_se"]) > 0)
    assert summary["num_draws"] > 0 and summary["ess_bulk_min"] > 0
    assert jax.eval_shape(posterior.constrain_fn, jnp.zeros(posterior.dim)).shape == (
        len(posterior.names),
    )
    data = record["data"]
    if name == "garch11":
        assert data["T"] == len(posteriordb.GARCH_Y)
        np.testing.assert_array_equal(posteriordb.GARCH_Y, data["y"])
        assert data["sigma1"] == posteriordb.GARCH_SIGMA1
    else:
        np.testing.assert_array_equal(posteriordb.EIGHT_SCHOOLS_Y, data["y"])
        np.testing.assert_array_equal(posteriordb.EIGHT_SCHOOLS_SIGMA, data["sigma"])


def test_load_reference_names_the_argument():
    with pytest.raises(ValueError, match="name"):
        load_reference("eight_schools")


def test_eight_schools_moments_match_posteriordb_by_quadrature():
    """posteriordb's reference means and sds, from ``logdensity_fn`` alone, by quadrature.

    Given :math:`(\\mu, \\log\\tau)`, ``logdensity_fn`` is quadratic in
    :math:`\\tilde\\theta`, so with its gradient :math:`g` and (diagonal) negative
    Hessian :math:`P` in :math:`\\tilde\\theta` at :math:`\\tilde\\theta = 0` the
    conditional is :math:`N(P^{-1} g, P^{-1})` and the marginal is
    :math:`f(0) + \\tfrac12 g^\\top P^{-1} g - \\tfrac12\\log\\det P` exactly. A
    trapezoid rule on :math:`(\\mu, \\log\\tau)` (the Jacobian is in ``f``) then
    gives every mean and sd; every second grid point gives the same rule at
    twice the step, which bounds the quadrature error. The gate is posteriordb's
    own Monte Carlo error: :math:`|m - m_{\\mathrm{ref}}| < Z\\,\\mathrm{se}_{\\mathrm{ref}}`.
    Dropping :math:`+\\log\\tau` leaves a marginal that tends to a constant as
    :math:`\\log\\tau \\to -\\infty` (improper): on this grid the mean of tau
    then misses by about 100 se.
    """
    with jax.enable_x64(True):
        posterior = densities.eight_schools_noncentered(jnp.float64)

        def conditional(mu, log_tau):
            z = jnp.zeros(posterior.dim).at[8].set(mu).at[9].set(log_tau)
            gradient = jax.grad(posterior.logdensity_fn)(z)[:8]
            precision = -jnp.diag(jax.hessian(posterior.logdensity_fn)(z))[:8]
            mode = gradient / precision
            log_marginal = (
                posterior.logdensity_fn(z)
                + 0.5 * jnp.dot(gradient, mode)
                - 0.5 * jnp.sum(jnp.log(precision))
            )
            tau = jnp.exp(log_tau)
            return log_marginal, mu + tau * mode, tau**2 / precision

        mu, log_tau = np.meshgrid(
            np.linspace(-30.0, 40.0, 71), np.linspace(-15.0, 8.0, 93), indexing="ij"
        )
        log_marginal, theta_mean, theta_variance = (
            np.asarray(a) for a in jax.jit(jax.vmap(conditional))(mu.ravel(), log_tau.ravel())
        )

    def moments(stride):
        """Means and sds of (theta, mu, tau) on the grid with every ``stride``-th point."""
        keep = np.zeros(mu.shape, bool)
        keep[::stride, ::stride] = True
        keep = keep.ravel()
        weights = np.exp(log_marginal[keep] - log_marginal[keep].max())
        weights /= weights.sum()
        tau = np.exp(log_tau.ravel()[keep])
        first = np.concatenate([theta_mean[keep], mu.ravel()[keep, None], tau[:, None]], 1)
        second = np.concatenate(
            [theta_variance[keep] + theta_mean[keep] ** 2, first[:, 8:] ** 2], 1
        )
        mean = weights @ first
        return mean, np.sqrt(weights @ second - mean**2)

    summary = load_reference("eight_schools_noncentered")["reference"]
    fine, coarse = moments(1), moments(2)
    for statistic, estimate, coarse_estimate in zip(("mean", "sd"), fine, coarse, strict=True):
        error = np.asarray(summary[f"{statistic}_se"])
        assert np.all(np.abs(estimate - coarse_estimate) < 0.01 * error), statistic
        z_score = (estimate - np.asarray(summary[statistic])) / error
        assert np.all(np.abs(z_score) < Z), f"{statistic}: z = {z_score}"

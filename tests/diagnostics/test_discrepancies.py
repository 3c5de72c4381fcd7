"""Tests for ebm_jax.diagnostics.discrepancies: closed forms, unbiasedness, rates."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from ebm_jax import diagnostics

# ------------------------------------------------------------------------------------------
# Kernel Stein discrepancy
# ------------------------------------------------------------------------------------------


def imq_stein_kernel_by_autodiff(x, y, score_x, score_y, c, beta):
    """k_p = sₓᵀs_y k + sₓᵀ∇_y k + s_yᵀ∇ₓ k + tr ∇ₓ∇_y k, derivatives by jax.grad/jacfwd."""

    def kernel(a, b):
        return (c**2 + jnp.sum((a - b) ** 2)) ** beta

    grad_x = jax.grad(kernel, argnums=0)
    grad_y = jax.grad(kernel, argnums=1)
    cross = jax.jacfwd(grad_x, argnums=1)(x, y)
    return (
        score_x @ score_y * kernel(x, y)
        + score_x @ grad_y(x, y)
        + score_y @ grad_x(x, y)
        + jnp.trace(cross)
    )


def test_imq_stein_kernel_closed_form_equals_autodiff(x64):
    # Random points, scores and kernel parameters (β beyond -1 too), one jitted batch.
    keys = jax.random.split(jax.random.key(3), 4)
    x, y, score_x, score_y = (jax.random.normal(k, (5, 3)) for k in keys)
    c = jnp.array([1.0, 0.5, 1.3, 2.0, 0.8])
    beta = jnp.array([-0.5, -0.3, -1.7, -0.9, -0.5])
    y = y.at[-1].set(x[-1])  # x = y: the diagonal of the Stein-kernel matrix
    ours = jax.jit(jax.vmap(lambda *a: diagnostics.imq_stein_kernel(*a[:4], c=a[4], beta=a[5])))(
        x, y, score_x, score_y, c, beta
    )
    expected = jax.jit(jax.vmap(imq_stein_kernel_by_autodiff))(x, y, score_x, score_y, c, beta)
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_ksd_equals_double_sum_of_the_stein_kernel(x64):
    # A correlated Gaussian with a non-zero mean, so every term of k_p is exercised.
    precision = jnp.array([[2.0, 0.3, 0.0], [0.3, 1.0, -0.2], [0.0, -0.2, 0.5]])
    mean = jnp.array([1.0, -2.0, 0.5])
    score_fn = lambda x: -precision @ (x - mean)
    samples = 3.0 + jax.random.normal(jax.random.key(0), (13, 3))
    scores = jax.vmap(score_fn)(samples)
    pairwise = pairwise_stein_matrix(samples, scores, c=0.7, beta=-0.4)
    v_stat = pairwise.mean()
    u_stat = (pairwise.sum() - jnp.trace(pairwise)) / (13 * 12)
    for statistic, block_size, expected in (("v", 256, v_stat), ("u", 5, u_stat)):
        # block_size=5 does not divide 13: lax.map's remainder path is exercised.
        ours = diagnostics.kernel_stein_discrepancy(
            samples, score_fn, c=0.7, beta=-0.4, statistic=statistic, block_size=block_size
        )
        np.testing.assert_allclose(ours, expected, rtol=1e-10)


def pairwise_stein_matrix(samples, scores, c, beta):
    """All pairs of the closed-form Stein kernel, evaluated one pair at a time."""
    pair = lambda x, y, sx, sy: diagnostics.imq_stein_kernel(x, y, sx, sy, c=c, beta=beta)
    row = jax.vmap(pair, in_axes=(None, 0, None, 0))
    return jax.jit(jax.vmap(row, in_axes=(0, None, 0, None)))(samples, samples, scores, scores)


def test_stein_identity_holds_for_the_true_score_only():
    # E_{x~p}[k_p(x, y)] = 0 for every y: MC mean within 4 standard errors; a score
    # shifted by 0.5 breaks the identity by > 50 standard errors.
    x = jax.random.normal(jax.random.key(5), (100_000, 2))
    true_score = lambda v: -v
    wrong_score = lambda v: -(v - 0.5)
    for y in (jnp.array([0.3, -1.0]), jnp.array([2.0, 1.0])):
        for score_fn, is_true in ((true_score, True), (wrong_score, False)):
            values = jax.vmap(
                lambda xi, sf=score_fn, y=y: diagnostics.imq_stein_kernel(xi, y, sf(xi), sf(y))
            )(x)
            z = float(values.mean() / (values.std() / math.sqrt(x.shape[0])))
            assert (abs(z) < 4) if is_true else (abs(z) > 50), (y, is_true, z)


def test_ksd_v_statistic_decays_like_one_over_sqrt_n():
    # For exact samples E[KSD²_V] = E[k_p(x, x)] / n exactly (off-diagonal terms have
    # mean 0), and for N(0, I_d), c = 1, β = −1/2: E[k_p(x, x)] = E‖x‖² − 2βd = 2d.
    dim, num_seeds = 2, 16
    score_fn = lambda x: -x
    ksd_batch = jax.vmap(lambda s: diagnostics.kernel_stein_discrepancy(s, score_fn))
    mean_ksd = []
    for num_points in (100, 800):
        keys = jax.random.split(jax.random.key(num_points), num_seeds)
        batch = jax.vmap(lambda k, n=num_points: jax.random.normal(k, (n, dim)))(keys)
        scaled = np.asarray(num_points * ksd_batch(batch))
        standard_error = scaled.std(ddof=1) / math.sqrt(num_seeds)
        assert abs(scaled.mean() - 2 * dim) < 4 * standard_error, (num_points, scaled.mean())
        mean_ksd.append(math.sqrt(scaled.mean() / num_points))
    slope = np.log(mean_ksd[1] / mean_ksd[0]) / np.log(800 / 100)
    assert abs(slope + 0.5) < 0.1


def test_ksd_is_much_larger_for_a_wrong_target():
    samples = jax.random.normal(jax.random.key(2), (1000, 2))
    true_score = lambda x: -x
    shifted_score = lambda x: -(x - 1.0)
    good = float(diagnostics.kernel_stein_discrepancy(samples, true_score))
    bad = float(diagnostics.kernel_stein_discrepancy(samples, shifted_score))
    assert good < 0.01 and bad > 30 * good, (good, bad)
    # The U-statistic estimates the population KSD², 0 for the true target only.
    bad_unbiased = diagnostics.kernel_stein_discrepancy(samples, shifted_score, statistic="u")
    assert abs(float(bad_unbiased) - bad) < good


# ------------------------------------------------------------------------------------------
# MMD
# ------------------------------------------------------------------------------------------


def mmd_double_loop(x: np.ndarray, y: np.ndarray, bandwidth: float | None) -> float:
    """Gretton et al. (2012) Lemma 6, term by term in float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if bandwidth is None:
        pooled = np.concatenate([x, y])
        distances = [
            np.linalg.norm(pooled[i] - pooled[j])
            for i in range(len(pooled))
            for j in range(i + 1, len(pooled))
        ]
        bandwidth = float(np.median(distances))
    kernel = lambda a, b: math.exp(-np.sum((a - b) ** 2) / (2 * bandwidth**2))
    m, n = len(x), len(y)
    xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


# 16 pooled points give an even number of pairs (median of the middle two), 14 an odd one.
@pytest.mark.parametrize("sizes, bandwidth", [((7, 9), None), ((6, 8), None), ((7, 9), 1.3)])
def test_mmd_equals_double_loop(sizes, bandwidth):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(sizes[0], 3)) + 10.0  # far from the origin: tests the centring
    y = 1.5 * rng.normal(size=(sizes[1], 3)) + 10.5
    expected = mmd_double_loop(x, y, bandwidth)
    ours = diagnostics.mmd(x.astype(np.float32), y.astype(np.float32), bandwidth=bandwidth)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_mmd_equals_double_loop_in_float64(x64):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 2)), rng.normal(size=(5, 2)) + 0.3
    np.testing.assert_allclose(diagnostics.mmd(x, y), mmd_double_loop(x, y, None), rtol=1e-12)


def test_mmd_is_unbiased_under_the_null_and_detects_a_shift():
    # Over 64 independent pairs of N(0, I) samples the mean MMD²_u is 0 within 4 SE,
    # while the biased V-statistic sits > 4 SE above 0, and a 0.5 shift > 10 SE.
    def one_pair(keys):
        x = jax.random.normal(keys[0], (100, 2))
        y = jax.random.normal(keys[1], (100, 2))
        sq = lambda a, b: jnp.sum((a[:, None] - b[None]) ** 2, axis=-1)
        kernel = lambda a, b: jnp.exp(-sq(a, b) / 2.0)
        v_stat = kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()
        return (
            diagnostics.mmd(x, y, bandwidth=1.0),
            diagnostics.mmd(x, y),
            v_stat,
            diagnostics.mmd(x, y + 0.5),
        )

    results = jax.vmap(one_pair)(jax.random.split(jax.random.key(0), (64, 2)))
    z = [float(r.mean() / (r.std(ddof=1) / 8)) for r in results]
    unbiased_fixed, unbiased_median, biased, shifted = z
    assert abs(unbiased_fixed) < 4 and abs(unbiased_median) < 4, z
    assert biased > 4 and shifted > 10, z


# ------------------------------------------------------------------------------------------
# Sliced Wasserstein
# ------------------------------------------------------------------------------------------


def test_sliced_wasserstein_is_zero_for_identical_samples():
    x = jax.random.normal(jax.random.key(0), (300, 3))
    assert float(diagnostics.sliced_wasserstein(jax.random.key(1), x, x)) == 0.0
    permuted = x[::-1]
    assert float(diagnostics.sliced_wasserstein(jax.random.key(1), x, permuted)) < 1e-6


def test_sliced_wasserstein_of_a_shift_matches_the_closed_form():
    # For a shift δ the projections differ by θᵀδ, so SW₂² = E_θ(θᵀδ)² = ‖δ‖²/d. With
    # y = x + δ this holds exactly per direction for any n, leaving only the error of the
    # θ average (sd of (θᵀδ)² is ‖δ‖²/√8 in d = 2). Independent samples add an O(1/n) bias.
    dim = 2
    delta = jnp.array([1.2, -0.9])
    expected = float(jnp.sum(delta**2)) / dim

    def tolerance(num_projections):
        return 4 * float(jnp.sum(delta**2)) / math.sqrt(8 * num_projections)

    key_x, key_y, key_theta = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(key_x, (50, dim))
    shifted = diagnostics.sliced_wasserstein(key_theta, x, x + delta, num_projections=8192)
    assert abs(float(shifted) ** 2 - expected) < tolerance(8192)
    x = jax.random.normal(key_x, (2000, dim))
    y = jax.random.normal(key_y, (2000, dim)) + delta
    independent = diagnostics.sliced_wasserstein(key_theta, x, y, num_projections=1024)
    assert abs(float(independent) ** 2 - expected) < tolerance(1024) + 0.02


@pytest.mark.parametrize("sizes", [(7, 11), (1, 5)])
def test_sliced_wasserstein_in_one_dimension_equals_scipy_w1(sizes):
    # In d = 1 the directions are ±1 and W₁ is sign-invariant: SW₁ is exactly W₁,
    # including unequal sample sizes (merged quantile breakpoints).
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=sizes[0]), 2.0 * rng.normal(size=sizes[1]) + 0.3
    ours = diagnostics.sliced_wasserstein(
        jax.random.key(0), x[:, None].astype(np.float32), y[:, None].astype(np.float32), p=1.0
    )
    np.testing.assert_allclose(ours, stats.wasserstein_distance(x, y), rtol=1e-5)


def test_sliced_wasserstein_unequal_sizes_by_replication():
    # An empirical measure is unchanged when every atom is repeated 3 times, so
    # SW_p(x, y repeated) = SW_p(x, y) with the same directions, for any p.
    x = jax.random.normal(jax.random.key(0), (40, 3))
    y = jax.random.normal(jax.random.key(1), (40, 3)) * 1.5
    for p in (1.0, 2.0, 3.5):
        equal = diagnostics.sliced_wasserstein(jax.random.key(2), x, y, p=p)
        repeated = diagnostics.sliced_wasserstein(jax.random.key(2), x, jnp.repeat(y, 3, 0), p=p)
        np.testing.assert_allclose(repeated, equal, rtol=1e-5)


# ------------------------------------------------------------------------------------------
# Input validation
# ------------------------------------------------------------------------------------------

_POINTS = np.zeros((5, 2))
_SCORE = lambda x: -x


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: diagnostics.kernel_stein_discrepancy(np.zeros(5), _SCORE), "samples"),
        (lambda: diagnostics.kernel_stein_discrepancy(np.zeros((1, 2)), _SCORE), "samples"),
        (lambda: diagnostics.kernel_stein_discrepancy(_POINTS, lambda x: x[0]), "score_fn"),
        (lambda: diagnostics.kernel_stein_discrepancy(_POINTS, _SCORE, c=0.0), "c"),
        (lambda: diagnostics.kernel_stein_discrepancy(_POINTS, _SCORE, beta=0.5), "beta"),
        (lambda: diagnostics.kernel_stein_discrepancy(_POINTS, _SCORE, statistic="w"), "statistic"),
        (lambda: diagnostics.kernel_stein_discrepancy(_POINTS, _SCORE, block_size=0), "block_size"),
        (lambda: diagnostics.mmd(_POINTS, np.zeros((5, 3))), "x and y"),
        (lambda: diagnostics.mmd(np.zeros((1, 2)), _POINTS), "x"),
        (lambda: diagnostics.mmd(_POINTS, np.full((5, 2), np.inf)), "y"),
        (lambda: diagnostics.mmd(_POINTS, _POINTS, bandwidth=-1.0), "bandwidth"),
        (lambda: diagnostics.sliced_wasserstein(jax.random.key(0), _POINTS, _POINTS, p=0.5), "p"),
        (
            lambda: diagnostics.sliced_wasserstein(
                jax.random.key(0), _POINTS, _POINTS, num_projections=0
            ),
            "num_projections",
        ),
        (lambda: diagnostics.sliced_wasserstein(jax.random.key(0), _POINTS, np.zeros(5)), "y"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: diagnostics.kernel_stein_discrepancy(_POINTS, "not callable"), "score_fn"),
        (lambda: diagnostics.sliced_wasserstein(0, _POINTS, _POINTS), "rng_key"),
        (lambda: diagnostics.sliced_wasserstein(jax.random.key(0), _POINTS, _POINTS, p="2"), "p"),
    ],
)
def test_bad_types_raise_type_error_naming_the_argument(call, name):
    with pytest.raises(TypeError, match=name):
        call()


def test_frechet_distance_matches_the_sqrtm_formula_and_is_symmetric():
    from scipy import linalg

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4))
    y = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4)) + 1.0
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    reference = (
        np.sum((x.mean(0) - y.mean(0)) ** 2)
        + np.trace(cov_x + cov_y)
        - 2.0 * np.real(np.trace(linalg.sqrtm(cov_x @ cov_y)))
    )
    distance = diagnostics.frechet_distance(x, y)
    np.testing.assert_allclose(distance, reference, rtol=1e-4)
    np.testing.assert_allclose(diagnostics.frechet_distance(y, x), distance, rtol=1e-4)
    assert diagnostics.frechet_distance(x, x) < 1e-3


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
    """N(μ₁, diag a) vs N(μ₂, diag b): ‖μ₁ − μ₂‖² + Σ(√a − √b)², up to sampling error."""
    rng = np.random.default_rng(1)
    a, b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    x = rng.normal(size=(200_000, 3)) * np.sqrt(a)
    y = rng.normal(size=(200_000, 3)) * np.sqrt(b) + np.array([1.0, 0.0, -1.0])
    exact = 2.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert abs(diagnostics.frechet_distance(x, y) - exact) < 0.05


def test_frechet_distance_errors_are_named():
    with pytest.raises(ValueError, match="x"):
        diagnostics.frechet_distance(np.zeros(5), np.zeros((5, 1)))
    with pytest.raises(ValueError, match="dimension"):
        diagnostics.frechet_distance(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="y"):
        diagnostics.frechet_distance(np.zeros((5, 2)), np.zeros((1, 2)))

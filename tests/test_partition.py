"""AIS partition functions: 0.05-accuracy with default settings against closed forms and
exact enumeration, the forward/reverse sandwich, unbiasedness of Z and 1/Z, SE calibration,
exactness when the base is the target (float64), non-finite handling, named errors."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import chi2, norm

import ebm_jax as ej
from ebm_jax import densities, partition
from tests.helpers import Z, assert_mean_within_mcse

# -- targets with a known log Z ------------------------------------------------------------

MIXTURE = densities.gaussian_mixture(
    jnp.array([0.3, 0.5, 0.2]),
    jnp.array([[-2.5, 0.0], [2.0, 1.5], [0.5, -2.5]]),
    jnp.array([0.3, 0.5, 0.2]),
)
MIXTURE_LOG_Z = 1.7  # the mixture is normalised; f adds log Z


def mixture_logdensity(x):
    return MIXTURE.logdensity_fn(x) + MIXTURE_LOG_Z


MIXTURE_BASE = partition.gaussian_base(jnp.zeros(2), 3.0)

NUM_VISIBLE, NUM_HIDDEN = 10, 6
_RBM_RNG = np.random.default_rng(0)
RBM_WEIGHTS = _RBM_RNG.normal(0.0, 0.5, (NUM_VISIBLE, NUM_HIDDEN))
RBM_VISIBLE_BIAS = _RBM_RNG.normal(0.0, 0.5, NUM_VISIBLE)
RBM_HIDDEN_BIAS = _RBM_RNG.normal(0.0, 0.5, NUM_HIDDEN)


def rbm_logdensity(v):
    """Minus the free energy of a binary RBM: bᵀv + Σⱼ softplus(cⱼ + (Wᵀv)ⱼ)."""
    weights = jnp.asarray(RBM_WEIGHTS, v.dtype)
    return jnp.asarray(RBM_VISIBLE_BIAS, v.dtype) @ v + jnp.sum(
        jax.nn.softplus(jnp.asarray(RBM_HIDDEN_BIAS, v.dtype) + v @ weights)
    )


RBM_STATES = np.array(list(itertools.product([0.0, 1.0], repeat=NUM_VISIBLE)))
_RBM_VALUES = RBM_STATES @ RBM_VISIBLE_BIAS + np.sum(
    np.logaddexp(0.0, RBM_HIDDEN_BIAS + RBM_STATES @ RBM_WEIGHTS), axis=1
)
RBM_LOG_Z = float(logsumexp(_RBM_VALUES))  # exact, all 2^10 visible configurations
RBM_PROBABILITIES = np.exp(_RBM_VALUES - RBM_LOG_Z)
RBM_BASE = partition.bernoulli_base(jnp.full(NUM_VISIBLE, 0.5))


def rbm_exact_samples(seed, num_samples):
    choice = np.random.default_rng(seed).choice(len(RBM_STATES), num_samples, p=RBM_PROBABILITIES)
    return jnp.asarray(RBM_STATES[choice], jnp.float32)


# -- schedule and bases -------------------------------------------------------------------


def test_sigmoid_schedule_is_the_normalised_sigmoid_from_exactly_0_to_exactly_1():
    for num_temperatures, sharpness in [(1, 4.0), (4, 4.0), (1000, 4.0), (50, 0.5)]:
        betas = np.asarray(partition.sigmoid_schedule(num_temperatures, sharpness))
        assert betas.shape == (num_temperatures + 1,)
        assert betas[0] == 0.0 and betas[-1] == 1.0 and np.all(np.diff(betas) > 0)
        raw = 1.0 / (1.0 + np.exp(-sharpness * np.linspace(-1.0, 1.0, num_temperatures + 1)))
        expected = (raw - raw[0]) / (raw[-1] - raw[0])
        np.testing.assert_allclose(betas, expected, atol=1e-6)
        np.testing.assert_allclose(betas + betas[::-1], 1.0, atol=1e-6)  # symmetric


def test_gaussian_base_is_normalised_and_samples_exactly():
    mean, scale = np.array([1.0, -2.0, 0.5]), np.array([0.5, 2.0, 1.0])
    base = partition.gaussian_base(mean, scale)
    point = np.array([0.3, 0.1, -1.0])
    np.testing.assert_allclose(
        base.logdensity_fn(jnp.asarray(point)), norm.logpdf(point, mean, scale).sum(), rtol=1e-6
    )
    samples = np.asarray(jax.vmap(base.sample)(jax.random.split(jax.random.key(0), 20_000)))
    assert_mean_within_mcse(samples, mean, what="Gaussian base mean")
    assert_mean_within_mcse((samples - mean) ** 2, scale**2, what="Gaussian base variance")
    assert (
        not base.is_binary
        and partition.gaussian_base(0.0, 1.0).sample(jax.random.key(0)).shape == ()
    )


def test_bernoulli_base_is_normalised_clips_and_samples_exactly():
    probabilities = np.array([0.2, 0.5, 0.9, 0.0])  # the 0 is clipped to 1e-3
    base = partition.bernoulli_base(probabilities)
    states = jnp.asarray(list(itertools.product([0.0, 1.0], repeat=4)))
    log_probs = np.asarray(jax.vmap(base.logdensity_fn)(states), dtype=np.float64)
    np.testing.assert_allclose(logsumexp(log_probs), 0.0, atol=1e-6)
    np.testing.assert_allclose(
        base.logdensity_fn(jnp.ones(4)), np.log([0.2, 0.5, 0.9, 1e-3]).sum(), rtol=1e-6
    )
    samples = np.asarray(jax.vmap(base.sample)(jax.random.split(jax.random.key(1), 20_000)))
    assert set(np.unique(samples)) <= {0.0, 1.0} and base.is_binary
    assert_mean_within_mcse(samples[:, :3], probabilities[:3], what="Bernoulli base mean")


def test_gaussian_base_takes_pytrees_with_a_scalar_or_matching_scale():
    mean = {"a": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
    scale = {"a": jnp.array([0.5, 2.0]), "b": jnp.array(3.0)}
    base = partition.gaussian_base(mean, scale)
    point = {"a": jnp.array([0.3, 0.1]), "b": jnp.array(-1.0)}
    expected = norm.logpdf([0.3, 0.1], [1.0, -2.0], [0.5, 2.0]).sum() + norm.logpdf(-1.0, 0.5, 3.0)
    np.testing.assert_allclose(base.logdensity_fn(point), expected, rtol=1e-6)
    samples = jax.vmap(base.sample)(jax.random.split(jax.random.key(0), 20_000))
    assert jax.tree.map(jnp.shape, samples) == {"a": (20_000, 2), "b": (20_000,)}
    for name in ("a", "b"):
        leaf = np.asarray(samples[name])
        assert_mean_within_mcse(leaf, np.asarray(mean[name]), what=f"mean of {name}")
        variance = np.asarray(scale[name]) ** 2
        assert_mean_within_mcse((leaf - mean[name]) ** 2, variance, what=f"variance of {name}")
    # A list of numbers is one array, as before pytrees.
    listed = partition.gaussian_base([1.0, -2.0], [0.5, 2.0])
    np.testing.assert_allclose(
        listed.logdensity_fn(point["a"]),
        norm.logpdf([0.3, 0.1], [1.0, -2.0], [0.5, 2.0]).sum(),
        rtol=1e-6,
    )
    # A scalar scale applies to every leaf.
    shared = partition.gaussian_base(mean, 2.0)
    np.testing.assert_allclose(
        shared.logdensity_fn(point),
        norm.logpdf([0.3, 0.1, -1.0], [1.0, -2.0, 0.5], 2.0).sum(),
        rtol=1e-6,
    )


# -- accuracy with the default settings ---------------------------------------------------


def test_default_ais_on_a_2d_gaussian_mixture_is_within_0_05_and_compiles_once():
    """256 chains, 1000 sigmoid temperatures, MALA with pilot-tuned step sizes. A second
    call with another key reuses the compiled programs (the log-density is not retraced)."""
    traces = []

    def counted_logdensity(x):
        traces.append(None)  # runs only while JAX traces
        return mixture_logdensity(x)

    for seed in (0, 1):
        result = partition.annealed_importance_sampling(
            jax.random.key(seed), counted_logdensity, MIXTURE_BASE
        )
        error = abs(float(result.log_partition) - MIXTURE_LOG_Z)
        assert error < 0.05 and error < Z * float(result.standard_error), (error, result)
        assert result.log_weights.shape == (256,) and result.positions.shape == (256, 2)
        assert 0.5 < float(jnp.mean(result.acceptance_rate)) < 0.8  # the pilot aims at 0.65
        assert int(jnp.sum(result.num_nonfinite)) == 0 and float(result.ess) > 128
        if seed == 0:
            num_traces = len(traces)
    assert len(traces) == num_traces


def test_default_ais_on_an_rbm_is_within_0_05_of_exact_enumeration():
    """Bernoulli(1/2) base, binary Gibbs sweeps, 256 chains, 1000 temperatures."""
    result = partition.annealed_importance_sampling(jax.random.key(0), rbm_logdensity, RBM_BASE)
    error = abs(float(result.log_partition) - RBM_LOG_Z)
    assert error < 0.05 and error < Z * float(result.standard_error), (error, result)
    np.testing.assert_array_equal(result.acceptance_rate, 1.0)
    assert set(np.unique(np.asarray(result.positions))) <= {0.0, 1.0}


# -- both sides of log Z -------------------------------------------------------------------

SANDWICH_CASES = {
    # MALA with a fixed step: no pilot, so the kernels are fixed in advance.
    "mixture": (
        mixture_logdensity,
        MIXTURE_BASE,
        MIXTURE_LOG_Z,
        lambda seed, n: MIXTURE.sample(jax.random.key(seed), n),
        {"num_temperatures": 50, "step_size": 0.3},
    ),
    "rbm": (rbm_logdensity, RBM_BASE, RBM_LOG_Z, rbm_exact_samples, {"num_temperatures": 20}),
}


@pytest.mark.parametrize("case", sorted(SANDWICH_CASES))
def test_forward_and_reverse_ais_are_unbiased_for_z_and_one_over_z_and_sandwich_log_z(case):
    """Each forward weight is unbiased for Z and each reverse weight (from exact target
    samples) for 1/Z: the means over 1024 chains are within 4 MCSE of Z and 1/Z. Hence
    forward log Ẑ ≤ log Z + 4 SE and reverse log Ẑ ≥ log Z - 4 SE."""
    logdensity_fn, base, log_z, exact_samples, options = SANDWICH_CASES[case]
    forward = partition.annealed_importance_sampling(
        jax.random.key(1), logdensity_fn, base, num_chains=1024, **options
    )
    reverse = partition.reverse_annealed_importance_sampling(
        jax.random.key(2), logdensity_fn, base, exact_samples(3, 1024), **options
    )
    forward_ratios = np.exp(np.asarray(forward.log_weights, np.float64) - log_z)
    reverse_ratios = np.exp(np.asarray(reverse.log_weights, np.float64) + log_z)
    assert_mean_within_mcse(forward_ratios, 1.0, what="forward weights / Z")
    assert_mean_within_mcse(reverse_ratios, 1.0, what="reverse weights × Z")
    assert float(forward.log_partition) <= log_z + Z * float(forward.standard_error)
    assert float(reverse.log_partition) >= log_z - Z * float(reverse.standard_error)
    for result in (forward, reverse):
        assert int(jnp.sum(result.num_nonfinite)) == 0 and 1.0 <= float(result.ess) <= 1024


def test_few_temperatures_bracket_log_z_strictly():
    """A narrow 20-D Gaussian (s = 0.3) from N(0, 3²I) with only 20 temperatures: the
    log-weights spread over tens of nats, so both Jensen gaps dwarf the estimates' spread
    and forward < log Z < reverse on this seed with a wide margin (30 of 30 seeds tried).
    The step sizes, 0.3 σ²_β of the tempered Gaussian, are given per temperature."""
    dim, scale, offset = 20, 0.3, 2.0
    mean = jnp.ones(dim)

    def narrow_gaussian(x):
        return -0.5 * jnp.sum(((x - mean) / scale) ** 2) + offset

    log_z = offset + 0.5 * dim * math.log(2.0 * math.pi * scale**2)
    base = partition.gaussian_base(jnp.zeros(dim), 3.0)
    betas = partition.sigmoid_schedule(20)
    step_sizes = 0.3 / ((1.0 - betas) / 9.0 + betas / scale**2)
    options = {"num_temperatures": 20, "step_size": step_sizes}
    forward = partition.annealed_importance_sampling(
        jax.random.key(0), narrow_gaussian, base, num_chains=64, **options
    )
    exact = mean + scale * jax.random.normal(jax.random.key(1), (64, dim))
    reverse = partition.reverse_annealed_importance_sampling(
        jax.random.key(0), narrow_gaussian, base, exact, **options
    )
    assert float(forward.log_partition) < log_z - 1.0
    assert float(reverse.log_partition) > log_z + 1.0


def test_standard_error_matches_the_spread_across_seeds():
    """16 independent forward runs on the RBM (20 temperatures, 1024 chains; compiled once):
    sd(log Ẑ)² / mean(SE²) must lie in the two-sided 1e-3 chi-square interval with 15
    degrees of freedom, and the mean estimate within 4 standard errors of log Z."""
    estimates, errors = [], []
    for seed in range(16):
        result = partition.annealed_importance_sampling(
            jax.random.key(100 + seed),
            rbm_logdensity,
            RBM_BASE,
            num_chains=1024,
            num_temperatures=20,
        )
        estimates.append(float(result.log_partition))
        errors.append(float(result.standard_error))
    estimates, errors = np.array(estimates), np.array(errors)
    variance_ratio = estimates.var(ddof=1) / np.mean(errors**2)
    low, high = chi2.ppf([5e-4, 1 - 5e-4], df=15) / 15
    assert low < variance_ratio < high, (variance_ratio, low, high)
    assert_mean_within_mcse(estimates, RBM_LOG_Z, what="mean log Ẑ over seeds")


# -- pytree positions, and bases as data -----------------------------------------------------

TREE_MEAN = {"a": jnp.array([1.0, -0.5]), "b": jnp.array(2.0)}
TREE_SCALE = {"a": jnp.array([0.5, 1.5]), "b": jnp.array(0.8)}
TREE_OFFSET = 0.7
TREE_LOG_Z = TREE_OFFSET + sum(
    float(jnp.sum(jnp.log(TREE_SCALE[name]))) + 0.5 * TREE_SCALE[name].size * math.log(2 * math.pi)
    for name in ("a", "b")
)


def tree_gaussian(x):
    """An unnormalised Gaussian on {"a": (2,), "b": ()}, log Z = TREE_LOG_Z."""
    squares = jax.tree.map(lambda y, m, s: jnp.sum(((y - m) / s) ** 2), x, TREE_MEAN, TREE_SCALE)
    return -0.5 * (squares["a"] + squares["b"]) + TREE_OFFSET


TREE_BASE = partition.gaussian_base({"a": jnp.zeros(2), "b": jnp.zeros(())}, 3.0)


def test_ais_on_a_pytree_target_matches_log_z_forward_and_reverse():
    """Positions {"a": (2,), "b": ()} flow through the base, MALA and the weights."""
    base = TREE_BASE
    forward = partition.annealed_importance_sampling(
        jax.random.key(0), tree_gaussian, base, num_chains=256, num_temperatures=100
    )
    exact = jax.tree.map(
        lambda m, s, z: m + s * z,
        TREE_MEAN,
        TREE_SCALE,
        {
            "a": jax.random.normal(jax.random.key(1), (256, 2)),
            "b": jax.random.normal(jax.random.key(2), (256,)),
        },
    )
    reverse = partition.reverse_annealed_importance_sampling(
        jax.random.key(3), tree_gaussian, base, exact, num_temperatures=100, step_size=0.2
    )
    for result in (forward, reverse):
        assert jax.tree.map(jnp.shape, result.positions) == {"a": (256, 2), "b": (256,)}
        error = abs(float(result.log_partition) - TREE_LOG_Z)
        assert error < 4.0 * float(result.standard_error), (error, result.standard_error)
        assert int(jnp.sum(result.num_nonfinite)) == 0


def test_ais_with_a_blackjax_transition_on_a_pytree_target():
    """A BlackJAX kernel (its info has no is_nonfinite) as the transition: counted as absent."""
    blackjax = pytest.importorskip("blackjax")
    result = partition.annealed_importance_sampling(
        jax.random.key(4),
        tree_gaussian,
        TREE_BASE,
        num_chains=256,
        num_temperatures=100,
        transition=lambda logdensity_fn: blackjax.mala(logdensity_fn, 0.2),
    )
    error = abs(float(result.log_partition) - TREE_LOG_Z)
    assert error < 4.0 * float(result.standard_error), (error, result.standard_error)
    assert int(jnp.sum(result.num_nonfinite)) == 0
    assert bool(jnp.all((result.acceptance_rate > 0.3) & (result.acceptance_rate <= 1.0)))


def test_a_new_gaussian_base_of_the_same_shapes_does_not_recompile():
    traces = []

    def counted_logdensity(x):
        traces.append(None)  # runs only while JAX traces
        return -0.5 * jnp.sum(((x - 1.0) / 0.5) ** 2)  # log Z = log(2π · 0.25)

    log_z = math.log(2.0 * math.pi * 0.25)
    options = {"num_chains": 128, "num_temperatures": 50, "step_size": 0.1}
    for seed, (mean, scale) in enumerate([(0.0, 2.0), (1.0, 1.0), (-0.5, 3.0)]):
        base = partition.gaussian_base(jnp.full(2, mean), jnp.full(2, scale))
        result = partition.annealed_importance_sampling(
            jax.random.key(seed), counted_logdensity, base, **options
        )
        # Each base's own numbers are used: every estimate is right.
        error = abs(float(result.log_partition) - log_z)
        assert error < 4.0 * float(result.standard_error), (mean, scale, error, result)
        if seed == 0:
            num_traces = len(traces)
    assert len(traces) == num_traces


# -- exactness, non-finite values, errors --------------------------------------------------


def test_base_equal_to_target_gives_the_exact_log_partition_float64():
    """f = log p₀ + c: every increment is Δβ·c, so log w = c for every chain (forward) and
    -c (reverse), ESS = n and SE = 0, up to float64 rounding."""
    offset, num_chains = 1.234, 16
    with jax.enable_x64(True):
        base = partition.gaussian_base(jnp.array([0.5, -1.0, 2.0]), jnp.array([1.0, 2.0, 0.5]))

        def logdensity_fn(x):
            return base.logdensity_fn(x) + offset

        options = {"num_temperatures": 10, "step_size": 0.5}
        forward = partition.annealed_importance_sampling(
            jax.random.key(0), logdensity_fn, base, num_chains=num_chains, **options
        )
        exact = jax.vmap(base.sample)(jax.random.split(jax.random.key(1), num_chains))
        reverse = partition.reverse_annealed_importance_sampling(
            jax.random.key(2), logdensity_fn, base, exact, **options
        )
        for sign, result in [(1.0, forward), (-1.0, reverse)]:
            assert result.log_partition.dtype == jnp.float64
            np.testing.assert_allclose(result.log_weights, sign * offset, rtol=0, atol=1e-12)
            np.testing.assert_allclose(result.log_partition, offset, rtol=0, atol=1e-12)
            np.testing.assert_allclose(result.ess, num_chains, rtol=1e-12)
            assert float(result.standard_error) < 1e-6


def test_nonfinite_log_density_gives_zero_weight_not_nan():
    """f = log N(0, I₂) but NaN where x₀ > 2: AIS then estimates the mass of the rest,
    log(2π Φ(2)). Base samples with x₀ > 2 get weight 0 (counted), NaN proposals are
    rejected (counted); a custom random-walk transition, two steps per temperature."""

    def nan_beyond_two(x):
        return jnp.where(x[0] > 2.0, jnp.nan, -0.5 * jnp.sum(x**2))

    result = partition.annealed_importance_sampling(
        jax.random.key(0),
        nan_beyond_two,
        partition.gaussian_base(jnp.zeros(2), 2.0),
        num_temperatures=100,
        transition=lambda f: ej.samplers.rwmh(f, 1.0),
        num_steps_per_temperature=2,
    )
    truth = math.log(2.0 * math.pi * norm.cdf(2.0))
    assert np.isfinite(float(result.log_partition))
    error = abs(float(result.log_partition) - truth)
    assert error < Z * float(result.standard_error) and error < 0.1, (error, result)
    assert np.any(np.isneginf(np.asarray(result.log_weights)))
    assert int(jnp.sum(result.num_nonfinite)) > 0
    # Chains that started where f is NaN keep weight 0 (and cannot move: every proposal
    # compares with a NaN); the others never enter the NaN region.
    alive = np.isfinite(np.asarray(result.log_weights))
    assert np.all(np.asarray(result.positions)[alive, 0] <= 2.0)


def test_weight_summary_is_stable_and_handles_all_zero_weights():
    log_weights = np.random.default_rng(0).normal(1000.0, 1.5, 64)  # exp overflows
    log_mean, standard_error, ess = partition._summarise(jnp.asarray(log_weights))
    ratios = np.exp(log_weights - log_weights.max())
    np.testing.assert_allclose(log_mean, np.log(ratios.mean()) + log_weights.max(), rtol=1e-6)
    np.testing.assert_allclose(
        standard_error, ratios.std(ddof=1) / (np.sqrt(64) * ratios.mean()), rtol=1e-4
    )
    np.testing.assert_allclose(ess, ratios.sum() ** 2 / (ratios**2).sum(), rtol=1e-4)
    log_mean, standard_error, ess = partition._summarise(jnp.full(8, -jnp.inf))
    assert float(log_mean) == -np.inf and float(standard_error) == np.inf and float(ess) == 0.0


def quadratic(x):
    return -0.5 * jnp.sum(x**2)


AIS = partition.annealed_importance_sampling
REVERSE = partition.reverse_annealed_importance_sampling
KEY = jax.random.key(0)
BASE_2D = partition.gaussian_base(jnp.zeros(2), 1.0)


@pytest.mark.parametrize(
    ("call", "error", "argument"),
    [
        (lambda: AIS(0, quadratic, BASE_2D), TypeError, "rng_key"),
        (lambda: AIS(jax.random.split(KEY, 2), quadratic, BASE_2D), ValueError, "rng_key"),
        (lambda: AIS(KEY, "f", BASE_2D), TypeError, "logdensity_fn"),
        (lambda: AIS(KEY, lambda x: x, BASE_2D), ValueError, "logdensity_fn"),
        (lambda: AIS(KEY, quadratic, MIXTURE), TypeError, "base"),
        (lambda: AIS(KEY, quadratic, BASE_2D, num_chains=1), ValueError, "num_chains"),
        (lambda: AIS(KEY, quadratic, BASE_2D, num_chains=2.0), TypeError, "num_chains"),
        (lambda: AIS(KEY, quadratic, BASE_2D, num_temperatures=0), ValueError, "num_temperatures"),
        (lambda: AIS(KEY, quadratic, BASE_2D, temperatures=[0.0, 0.5]), ValueError, "temperatures"),
        (
            lambda: AIS(KEY, quadratic, BASE_2D, temperatures=[0.0, 0.6, 0.4, 1.0]),
            ValueError,
            "temperatures",
        ),
        (
            lambda: AIS(KEY, quadratic, BASE_2D, temperatures=[[0.0, 1.0]]),
            ValueError,
            "temperatures",
        ),
        (lambda: AIS(KEY, quadratic, BASE_2D, step_size=-0.1), ValueError, "step_size"),
        (lambda: AIS(KEY, quadratic, BASE_2D, step_size=jnp.ones(3)), ValueError, "step_size"),
        (lambda: AIS(KEY, quadratic, RBM_BASE, step_size=0.1), ValueError, "step_size"),
        (lambda: AIS(KEY, quadratic, BASE_2D, transition="mala"), TypeError, "transition"),
        (
            lambda: AIS(KEY, quadratic, BASE_2D, num_steps_per_temperature=0),
            ValueError,
            "num_steps_per_temperature",
        ),
        (
            lambda: REVERSE(KEY, quadratic, BASE_2D, jnp.zeros((8, 3))),
            ValueError,
            "initial_positions",
        ),
        (lambda: REVERSE(KEY, quadratic, BASE_2D, jnp.zeros(2)), ValueError, "initial_positions"),
        (lambda: REVERSE(KEY, quadratic, BASE_2D, jnp.zeros((1, 2))), ValueError, "num_chains"),
        (
            lambda: REVERSE(KEY, quadratic, BASE_2D, jnp.full((4, 2), jnp.nan)),
            ValueError,
            "initial_positions",
        ),
        (
            lambda: REVERSE(KEY, quadratic, RBM_BASE, jnp.full((4, NUM_VISIBLE), 0.5)),
            ValueError,
            "initial_positions",
        ),
        (lambda: partition.gaussian_base(jnp.zeros(2), 0.0), ValueError, "scale"),
        (lambda: partition.gaussian_base(jnp.zeros(2), jnp.ones(3)), ValueError, "scale"),
        (lambda: partition.gaussian_base("0", 1.0), TypeError, "mean"),
        (lambda: partition.gaussian_base({"a": jnp.zeros(2)}, jnp.ones(2)), ValueError, "scale"),
        (lambda: partition.gaussian_base({"a": jnp.zeros(2)}, {"a": -1.0}), ValueError, "scale"),
        (
            lambda: REVERSE(KEY, tree_gaussian, TREE_BASE, jnp.zeros((4, 3))),
            ValueError,
            "initial_positions",
        ),
        (
            lambda: REVERSE(
                KEY, tree_gaussian, TREE_BASE, {"a": jnp.zeros((4, 2)), "b": jnp.zeros(3)}
            ),
            ValueError,
            "initial_positions",
        ),
        (lambda: partition.bernoulli_base(jnp.array([0.5, 1.5])), ValueError, "probabilities"),
        (
            lambda: partition.bernoulli_base(jnp.array([0.5]), min_probability=0.5),
            ValueError,
            "min_probability",
        ),
        (lambda: partition.sigmoid_schedule(0), ValueError, "num_temperatures"),
        (lambda: partition.sigmoid_schedule(10, sharpness=0.0), ValueError, "sharpness"),
    ],
)
def test_bad_arguments_name_the_argument(call, error, argument):
    with pytest.raises(error, match=argument):
        call()

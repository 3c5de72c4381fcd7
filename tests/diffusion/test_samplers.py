"""Samplers of a diffusion model, driven by the EXACT perturbed score of a Gaussian mixture.

The data is 0.8 N((5, 5), I) + 0.2 N((-5, -5), I). Perturbed by eq. (11.5) at
level beta it is 0.8 N(sqrt(1-beta) (5, 5), I) + 0.2 N(-sqrt(1-beta) (5, 5), I)
(unit covariances stay unit: (1 - beta) I + beta I), so f(x, beta) = log p_beta(x)
and its score are exact, and a sampler that reverses the chain correctly must
return the weights 0.8 / 0.2, which no local sampler of p itself can find, and
within each mode the mean (+-5, +-5) and unit variances.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej
from ebm_jax.diffusion import samplers, schedule
from tests.helpers import assert_mean_within_mcse

WEIGHTS = jnp.array([0.8, 0.2])
MEANS = jnp.array([[5.0, 5.0], [-5.0, -5.0]])
NUM_SAMPLES = 6500  # SE of the weight sqrt(0.16 / n) = 0.005: +-0.02 is a 4-SE gate
WEIGHT_TOLERANCE = 0.02
SCHEDULE = schedule.linear_schedule(1000)


def mixture_logdensity(x, beta):
    """log p_beta(x) of the perturbed mixture, exactly (eq. 11.6 in closed form)."""
    perturbed = ej.densities.gaussian_mixture(WEIGHTS, jnp.sqrt(1.0 - beta) * MEANS, 1.0)
    return perturbed.logdensity_fn(x)


mixture_score = jax.grad(mixture_logdensity)


def heavy_mode_fraction(samples):
    """Fraction of samples on the (5, 5) side of the separating line x1 + x2 = 0."""
    return float(np.mean(np.asarray(samples).sum(axis=-1) > 0))


@pytest.fixture(scope="module")
def initial_positions():
    assert WEIGHT_TOLERANCE >= 4.0 * np.sqrt(0.8 * 0.2 / NUM_SAMPLES)
    return samplers.initial_noise(jax.random.key(0), NUM_SAMPLES, (2,))


SAMPLERS = {
    "ancestral": lambda key, x: samplers.ancestral_sample(
        key, mixture_score, SCHEDULE, x, num_steps=200
    ),
    "annealed_langevin": lambda key, x: samplers.annealed_langevin_sample(
        key, mixture_score, SCHEDULE, x, step_size=1e-5, num_steps=100, num_steps_per_level=40
    ),
    "predictor_corrector": lambda key, x: samplers.predictor_corrector_sample(
        key, mixture_score, SCHEDULE, x, num_steps=100, num_corrector_steps=1
    ),
    "predictor_corrector_reverse_diffusion": lambda key, x: samplers.predictor_corrector_sample(
        key,
        mixture_score,
        SCHEDULE,
        x,
        num_steps=100,
        num_corrector_steps=1,
        predictor="reverse_diffusion",
    ),
    "annealed_mala": lambda key, x: samplers.annealed_mala_sample(
        key, mixture_logdensity, SCHEDULE, x, step_size=5e-5, num_steps=50, num_steps_per_level=3
    ),
    "annealed_mala_without_predictor": lambda key, x: samplers.annealed_mala_sample(
        key,
        mixture_logdensity,
        SCHEDULE,
        x,
        step_size=1e-4,
        num_steps=50,
        num_steps_per_level=10,
        predictor=None,
    ),
    "ddim": lambda key, x: ej.diffusion.ddim_sample(key, mixture_score, SCHEDULE, x, 50),
    "ddim_eta_1": lambda key, x: ej.diffusion.ddim_sample(
        key, mixture_score, SCHEDULE, x, 200, eta=1.0
    ),
    "dpm_solver_2": lambda key, x: ej.diffusion.dpm_solver_sample(mixture_score, SCHEDULE, x, 50),
    "dpm_solver_3": lambda key, x: ej.diffusion.dpm_solver_sample(
        mixture_score, SCHEDULE, x, 50, order=3
    ),
}


def assert_within_mode_moments(samples, name):
    """Each mode's mean is (+-5, +-5) within 4 SE and its variances 1 within 4 SE.

    SE of a mean sqrt(1/n), of a Gaussian's sample variance sqrt(2/n), with n the
    mode's count: about 0.014 / 0.020 (heavy mode) and 0.028 / 0.039 (light).
    A predictor off by a factor sqrt(1 - beta) or a missing rescale between levels
    moves a mode's mean by 0.2-1 (20-70 SE); a corrector step 4 times too long
    widens the modes by 0.09-0.1.
    """
    heavy = samples.sum(axis=-1) > 0
    for side, in_mode in ((1.0, heavy), (-1.0, ~heavy)):
        mode = samples[in_mode]
        count = mode.shape[0]
        mean_error = np.abs(mode.mean(axis=0) - side * 5.0)
        variance_error = np.abs(mode.var(axis=0, ddof=1) - 1.0)
        assert np.all(mean_error < 4.0 / np.sqrt(count)), (name, side, mode.mean(axis=0))
        assert np.all(variance_error < 4.0 * np.sqrt(2.0 / count)), (name, side, mode.var(axis=0))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_recover_mixture_weights_and_modes(name, initial_positions):
    result = SAMPLERS[name](jax.random.key(1), initial_positions)
    samples = np.asarray(result.samples, dtype=np.float64)
    assert samples.shape == (NUM_SAMPLES, 2)
    assert abs(heavy_mode_fraction(samples) - 0.8) < WEIGHT_TOLERANCE
    assert_within_mode_moments(samples, name)
    if name == "annealed_mala":
        rates = np.asarray(result.acceptance_rate)
        assert rates.shape == (50,)
        assert np.all((rates > 0.0) & (rates < 1.0))
        # Steps grow with the level, so acceptance is lowest at the noisiest levels.
        assert rates[0] < rates[-1]
        np.testing.assert_allclose(result.noise_levels[-1], SCHEDULE.marginal_betas[0])


def test_plain_langevin_keeps_the_initial_split():
    """'Why score matching fails': Langevin on p alone cannot move mass between modes."""
    unperturbed = ej.densities.gaussian_mixture(WEIGHTS, MEANS, 1.0).logdensity_fn
    algorithm = ej.samplers.ula(unperturbed, 0.1)
    initial = jax.random.uniform(jax.random.key(2), (1024, 2), minval=-10.0, maxval=10.0)

    def step(states, step_key):
        chain_keys = jax.random.split(step_key, initial.shape[0])
        return jax.vmap(algorithm.step)(chain_keys, states)[0], None

    states = jax.vmap(algorithm.init)(initial)
    states, _ = jax.lax.scan(step, states, jax.random.split(jax.random.key(3), 100))
    final = states.position
    assert abs(heavy_mode_fraction(final) - heavy_mode_fraction(initial)) < 0.02
    assert abs(heavy_mode_fraction(final) - 0.8) > 0.2


@pytest.mark.parametrize(("variance", "data_variance"), [("posterior", 0.0), ("forward", 1.0)])
def test_reverse_step_keeps_the_marginal(variance, data_variance):
    """One reverse step maps p_{beta_bar_t} exactly onto p_{beta_bar_s} in the two exact cases.

    Posterior variance: exact for a point mass at 0 (p_beta = N(0, beta)).
    Forward variance: exact for N(0, 1) data (p_beta = N(0, 1) at every level).
    On the 2-step schedule beta = (0.3, 0.5), beta_bar = (0.3, 0.65), x_T is drawn
    from p_{0.65} and the exact score is used at 0.65; at 0.3 the score -x makes
    the final noise-free step x_0 = sqrt(0.7) x_1, so x_1 is read off the output.
    The other variance misses by far more than the MCSE (0.57 vs 0.3; 0.77 vs 1).
    """
    noise_schedule = schedule.from_betas(np.array([0.3, 0.5]))
    beta_bar = np.asarray(noise_schedule.marginal_betas, dtype=np.float64)
    perturbed_variance = lambda beta: (1.0 - beta) * data_variance + beta

    def score(x, beta):
        return jnp.where(beta > 0.5, -x / perturbed_variance(beta), -x)

    x_T = np.sqrt(perturbed_variance(beta_bar[1])) * samplers.initial_noise(
        jax.random.key(8), 40000, (1,)
    )
    result = samplers.ancestral_sample(
        jax.random.key(9), score, noise_schedule, x_T, variance=variance
    )
    x_1 = np.asarray(result.samples, dtype=np.float64) / np.sqrt(1.0 - beta_bar[0])
    assert_mean_within_mcse(x_1**2, [perturbed_variance(beta_bar[0])], what="E[x_1^2]")


def test_sampling_steps():
    assert samplers.sampling_steps(SCHEDULE).tolist() == list(range(1000, 0, -1))
    assert samplers.sampling_steps(SCHEDULE, 1).tolist() == [1000]
    assert samplers.sampling_steps(SCHEDULE, 2).tolist() == [1000, 1]
    short = schedule.linear_schedule(37)
    for num_steps in range(2, 38):
        steps = samplers.sampling_steps(short, num_steps)
        assert len(steps) == num_steps and steps[0] == 37 and steps[-1] == 1
        assert np.all(np.diff(steps) < 0)
    with pytest.raises(ValueError, match="num_steps"):
        samplers.sampling_steps(short, 38)
    with pytest.raises(ValueError, match="num_steps"):
        samplers.sampling_steps(short, 0)


def _counting(fn):
    """``fn`` that counts its evaluations at run time (one sample: one count per call)."""
    counter = [0]

    def bump():
        counter[0] += 1

    def counted(x, beta):
        jax.debug.callback(bump)
        return fn(x, beta)

    return counted, counter


@pytest.mark.parametrize(
    ("name", "expected"), [("annealed_langevin", 7 * 3 + 1), ("predictor_corrector", 7 * 3)]
)
def test_score_sampler_nfe_is_counted_correctly(name, expected):
    score, counter = _counting(lambda x, beta: -x)
    short = schedule.linear_schedule(50)
    key, x = jax.random.key(0), jnp.ones((1, 2))
    if name == "annealed_langevin":
        result = samplers.annealed_langevin_sample(
            key, score, short, x, step_size=1e-3, num_steps=7, num_steps_per_level=3
        )
    else:
        result = samplers.predictor_corrector_sample(
            key, score, short, x, num_steps=7, num_corrector_steps=2, predictor="reverse_diffusion"
        )
    jax.block_until_ready(result.samples)
    jax.effects_barrier()
    assert result.num_function_evaluations == counter[0] == expected
    assert np.all(np.isfinite(result.samples))


def test_annealed_mala_nfe_is_counted_correctly():
    logdensity, counter = _counting(lambda x, beta: -0.5 * jnp.sum(x**2))
    result = samplers.annealed_mala_sample(
        jax.random.key(0),
        logdensity,
        schedule.linear_schedule(50),
        jnp.ones((1, 2)),
        step_size=1e-3,
        num_steps=7,
        num_steps_per_level=3,
        predictor=None,  # the ancestral predictor is run by the mixture test
    )
    jax.block_until_ready(result.samples)
    jax.effects_barrier()
    assert result.num_function_evaluations == counter[0] == 7 * (3 + 1)


def test_ancestral_nfe_and_no_retrace_on_second_call():
    num_traces = [0]
    counted_score, counter = _counting(lambda x, beta: -x)

    def score(x, beta):
        num_traces[0] += 1  # a Python side effect: runs only while tracing
        return counted_score(x, beta)

    short = schedule.linear_schedule(20)
    first = samplers.ancestral_sample(
        jax.random.key(0), score, short, jnp.zeros((1, 2)), num_steps=7
    )
    jax.block_until_ready(first.samples)
    jax.effects_barrier()
    traces_after_first, evaluations_after_first = num_traces[0], counter[0]
    second = samplers.ancestral_sample(
        jax.random.key(1), score, short, jnp.ones((1, 2)), num_steps=7
    )
    jax.block_until_ready(second.samples)
    jax.effects_barrier()
    assert num_traces[0] == traces_after_first
    assert first.num_function_evaluations == evaluations_after_first == 7
    assert counter[0] == 2 * 7
    assert not np.allclose(first.samples, second.samples)


def test_errors_name_the_argument():
    key, x = jax.random.key(0), jnp.zeros((3, 2))
    score = lambda x, beta: -x
    with pytest.raises(TypeError, match="schedule"):
        samplers.ancestral_sample(key, score, np.ones(10), x)
    with pytest.raises(TypeError, match="score_fn"):
        samplers.ancestral_sample(key, "not a function", SCHEDULE, x)
    with pytest.raises(ValueError, match="score_fn"):
        samplers.ancestral_sample(key, lambda x, beta: jnp.sum(x), SCHEDULE, x)
    with pytest.raises(ValueError, match="initial_positions"):
        samplers.ancestral_sample(key, score, SCHEDULE, jnp.zeros(2))
    with pytest.raises(ValueError, match="initial_positions"):
        samplers.ancestral_sample(key, score, SCHEDULE, jnp.full((3, 2), jnp.nan))
    with pytest.raises(ValueError, match="num_steps"):
        samplers.ancestral_sample(key, score, SCHEDULE, x, num_steps=1001)
    with pytest.raises(ValueError, match="variance"):
        samplers.ancestral_sample(key, score, SCHEDULE, x, variance="large")
    with pytest.raises(ValueError, match="predictor"):
        samplers.predictor_corrector_sample(key, score, SCHEDULE, x, predictor="euler")
    with pytest.raises(ValueError, match="snr"):
        samplers.predictor_corrector_sample(key, score, SCHEDULE, x, snr=-1.0)
    with pytest.raises(ValueError, match="step_size"):
        samplers.annealed_langevin_sample(key, score, SCHEDULE, x, step_size=0.0)
    with pytest.raises(ValueError, match="num_steps_per_level"):
        samplers.annealed_langevin_sample(
            key, score, SCHEDULE, x, step_size=1e-5, num_steps_per_level=0
        )
    with pytest.raises(ValueError, match="logdensity_fn"):
        samplers.annealed_mala_sample(key, lambda x, beta: x, SCHEDULE, x, step_size=1e-5)
    with pytest.raises(TypeError, match="rng_key"):
        samplers.ancestral_sample(0, score, SCHEDULE, x)
    with pytest.raises(TypeError, match="event_shape"):
        samplers.initial_noise(key, 3, 2)


@pytest.mark.parametrize(
    ("rng_key", "error", "match"),
    [
        (0, TypeError, r"rng_key must be a jax\.random key, got int"),
        (jax.random.split(jax.random.key(0), 2), ValueError, "rng_key must be a single key"),
    ],
    ids=["int", "two_keys"],
)
def test_every_sampler_names_a_bad_key_before_tracing(rng_key, error, match):
    x, score = jnp.zeros((3, 2)), lambda x, beta: -x
    energy = lambda x, beta: -0.5 * jnp.sum(x**2)
    calls = [
        lambda: samplers.initial_noise(rng_key, 3, (2,)),
        lambda: samplers.ancestral_sample(rng_key, score, SCHEDULE, x, num_steps=2),
        lambda: samplers.predictor_corrector_sample(rng_key, score, SCHEDULE, x, num_steps=2),
        lambda: samplers.annealed_langevin_sample(
            rng_key, score, SCHEDULE, x, step_size=1e-3, num_steps=2
        ),
        lambda: samplers.annealed_mala_sample(
            rng_key, energy, SCHEDULE, x, step_size=1e-3, num_steps=2
        ),
    ]
    for call in calls:
        with pytest.raises(error, match=match):
            call()


def test_corrector_step_follows_the_signal_to_noise_rule():
    """tau = 2 alpha (r mean|z| / mean|g|)^2, read off one corrector step on N(0, I) data.

    With the one-step schedule beta = 0.3 and the exact score -x, the corrector
    gives x + tau (-x) + sqrt(2 tau) z and the noise-free last predictor step
    multiplies by sqrt(0.7), so the output regressed on x has slope
    sqrt(0.7) (1 - tau). A corrector step off by a factor 4 moves tau from 0.036
    to 0.14, 50 regression SEs away.
    """
    noise_schedule = schedule.from_betas(np.array([0.3]))
    dimension, snr, alpha = 8, 0.16, 0.7
    x = samplers.initial_noise(jax.random.key(4), 20000, (dimension,))
    result = samplers.predictor_corrector_sample(
        jax.random.key(5), lambda y, beta: -y, noise_schedule, x, num_corrector_steps=1, snr=snr
    )
    x, out = np.asarray(x, np.float64), np.asarray(result.samples, np.float64) / np.sqrt(alpha)
    slope = np.sum(out * x) / np.sum(x * x)
    slope_se = np.std(out - slope * x) / np.sqrt(np.sum(x * x))
    noise_norm = np.sqrt(2.0) * np.exp(  # E|z| for z ~ N(0, I_d)
        math.lgamma((dimension + 1) / 2) - math.lgamma(dimension / 2)
    )
    score_norm = np.mean(np.linalg.norm(x, axis=1))
    expected_step = 2.0 * alpha * (snr * noise_norm / score_norm) ** 2
    # E|z| stands for the batch mean of |z| (relative SD 0.4 % here, 0.8 % of tau).
    tolerance = 4.0 * slope_se + 0.02 * expected_step
    assert abs((1.0 - slope) - expected_step) < tolerance, (1.0 - slope, expected_step)
    np.testing.assert_allclose(np.var(out - slope * x), 2.0 * expected_step, rtol=0.05)


@pytest.mark.parametrize(
    ("predictor", "factor"),
    [("ancestral", np.sqrt(0.7)), ("reverse_diffusion", 2.0 - np.sqrt(0.7) - 0.3)],
)
def test_one_predictor_step_on_standard_normal_data(predictor, factor):
    """x_0 = (x + 0.3 S) / sqrt(0.7) (ancestral) or (2 - sqrt(0.7)) x + 0.3 S (Euler-Maruyama).

    One level beta = 0.3, the exact score S = -x, no noise on the last step.
    """
    x = samplers.initial_noise(jax.random.key(6), 16, (3,))
    result = samplers.predictor_corrector_sample(
        jax.random.key(7),
        lambda y, beta: -y,
        schedule.from_betas(np.array([0.3])),
        x,
        num_corrector_steps=0,
        predictor=predictor,
    )
    np.testing.assert_allclose(result.samples, factor * np.asarray(x), rtol=1e-6)


def test_annealed_langevin_steps_are_capped_where_they_would_diverge():
    """step_size 1e-4 > 2 beta_bar_1 = 8e-5 on the cosine schedule overflowed to NaN.

    Capped, tau_i = beta_bar_i at every level, which is exactly the run with
    step_size = beta_bar_1; the modes come out where they are (the unadjusted
    chain's bias pulls the weights towards equal ones, documented).
    """
    noise_schedule = schedule.cosine_schedule(1000)
    smallest = float(noise_schedule.marginal_betas[0])
    x = samplers.initial_noise(jax.random.key(0), 2000, (2,))
    run = lambda step_size: (
        samplers.annealed_langevin_sample(
            jax.random.key(1),
            mixture_score,
            noise_schedule,
            x,
            step_size=step_size,
            num_steps=20,
            num_steps_per_level=40,
        ).samples
    )
    capped = np.asarray(run(1e-4))
    np.testing.assert_array_equal(capped, np.asarray(run(1.0)))
    np.testing.assert_allclose(capped, run(smallest), rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(capped))
    heavy = capped.sum(axis=1) > 0
    assert 0.65 < heavy.mean() < 0.85
    np.testing.assert_allclose(capped[heavy].mean(axis=0), [5.0, 5.0], atol=0.1)
    np.testing.assert_allclose(capped[~heavy].mean(axis=0), [-5.0, -5.0], atol=0.2)

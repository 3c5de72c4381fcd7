"""Samplers of a diffusion model, driven by the EXACT perturbed score of a Gaussian mixture.

The data is 0.8 N((5, 5), I) + 0.2 N((-5, -5), I). Perturbed by eq. (11.5) at
level beta it is 0.8 N(sqrt(1-beta) (5, 5), I) + 0.2 N(-sqrt(1-beta) (5, 5), I)
(unit covariances stay unit: (1 - beta) I + beta I), so f(x, beta) = log p_beta(x)
and its score are exact, and a sampler that reverses the chain correctly must
return the weights 0.8 / 0.2, which no local sampler of p itself can find.
"""

from __future__ import annotations

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
    "annealed_mala": lambda key, x: samplers.annealed_mala_sample(
        key, mixture_logdensity, SCHEDULE, x, step_size=5e-5, num_steps=50, num_steps_per_level=3
    ),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_recover_mixture_weights(name, initial_positions):
    result = SAMPLERS[name](jax.random.key(1), initial_positions)
    samples = np.asarray(result.samples, dtype=np.float64)
    assert samples.shape == (NUM_SAMPLES, 2)
    assert abs(heavy_mode_fraction(samples) - 0.8) < WEIGHT_TOLERANCE
    assert_mean_within_mcse(samples, np.full(2, 0.8 * 5.0 - 0.2 * 5.0), what=f"{name} mean")
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

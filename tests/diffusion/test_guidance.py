"""Classifier-free guidance: the score combination, its NFE, and the energy sum under MH.

The data are two classes N(-1, 1) and N(1, 1) in one dimension, equally
likely; at level beta, p_beta(x | c) = N(sqrt(1 - beta) mu_c, 1) and the null
label 2 gives the mixture, so the guided level p^(1-w) p(.|c)^w is known up to
its constant and its moments follow by quadrature.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej
from ebm_jax.diffusion import guidance, samplers, schedule, solvers

CLASS_MEANS = jnp.array([-1.0, 1.0])
NULL_LABEL = 2
SCHEDULE = schedule.linear_schedule(1000)


def class_logdensity(x, beta, label):
    """log p_beta(x | label), the mixture for the null label (up to constants shared by all)."""
    components = -0.5 * (x[0] - jnp.sqrt(1.0 - beta) * CLASS_MEANS) ** 2
    mixture = jax.scipy.special.logsumexp(components) + jnp.log(0.5)
    return jnp.where(label == NULL_LABEL, mixture, components[jnp.clip(label, 0, 1)])


class_score = jax.grad(class_logdensity)


def guided_moments(guidance_scale, label, beta):
    """Mean and variance of p_beta^(1-w) p_beta(. | c)^w by quadrature on a fine grid."""
    grid = np.linspace(-10.0, 10.0, 40001)
    components = -0.5 * (grid[:, None] - np.sqrt(1.0 - beta) * np.array([-1.0, 1.0])) ** 2
    mixture = np.logaddexp(components[:, 0], components[:, 1]) + np.log(0.5)
    log_weights = (1.0 - guidance_scale) * mixture + guidance_scale * components[:, label]
    weights = np.exp(log_weights - log_weights.max())
    mean = np.sum(grid * weights) / np.sum(weights)
    return mean, np.sum((grid - mean) ** 2 * weights) / np.sum(weights)


def test_the_guided_score_is_the_combination_of_the_two():
    labels = jnp.array([0, 1, 1])
    x = jnp.array([[0.3], [-0.7], [2.0]])
    plan = guidance.check_guidance(labels, 2.5, NULL_LABEL, 3, jnp.float32)
    guided = jax.jit(guidance.batched(class_score, plan))(x, 0.2)
    conditional = jax.jit(jax.vmap(class_score, (0, None, 0)))(x, 0.2, labels)
    unconditional = jax.jit(jax.vmap(class_score, (0, None, None)))(x, 0.2, NULL_LABEL)
    np.testing.assert_allclose(
        guided, unconditional + 2.5 * (conditional - unconditional), rtol=1e-6
    )
    single = jax.jit(guidance.per_sample(class_score, plan))(x[1], 0.2, labels[1])
    np.testing.assert_allclose(single, guided[1], rtol=1e-6)


SCORE_SAMPLERS = {
    "ancestral": lambda model, x, **kw: samplers.ancestral_sample(
        jax.random.key(1), model, SCHEDULE, x, num_steps=20, **kw
    ),
    "predictor_corrector": lambda model, x, **kw: samplers.predictor_corrector_sample(
        jax.random.key(1), model, SCHEDULE, x, num_steps=10, **kw
    ),
    "annealed_langevin": lambda model, x, **kw: samplers.annealed_langevin_sample(
        jax.random.key(1), model, SCHEDULE, x, step_size=1e-5, num_steps=10, **kw
    ),
    "ddim": lambda model, x, **kw: solvers.ddim_sample(
        jax.random.key(1), model, SCHEDULE, x, 20, eta=0.5, **kw
    ),
    "dpm_solver": lambda model, x, **kw: solvers.dpm_solver_sample(model, SCHEDULE, x, 20, **kw),
}


@pytest.mark.parametrize("name", list(SCORE_SAMPLERS))
def test_guidance_scales_0_and_1_are_the_unconditional_and_conditional_models(name):
    sample = SCORE_SAMPLERS[name]
    x = samplers.initial_noise(jax.random.key(0), 64, (1,))
    labels = jnp.arange(64) % 2
    conditional = sample(class_score, x, class_labels=labels)
    with_null_at_1 = sample(class_score, x, class_labels=labels, null_label=NULL_LABEL)
    with_null_at_0 = sample(
        class_score, x, class_labels=labels, guidance_scale=0.0, null_label=NULL_LABEL
    )
    unconditional = sample(functools.partial(class_score, label=NULL_LABEL), x)
    np.testing.assert_allclose(with_null_at_1.samples, conditional.samples, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(with_null_at_0.samples, unconditional.samples, rtol=1e-5, atol=1e-5)
    assert with_null_at_1.num_function_evaluations == 2 * conditional.num_function_evaluations
    assert conditional.num_function_evaluations == unconditional.num_function_evaluations


def test_a_new_guidance_scale_does_not_recompile():
    x = samplers.initial_noise(jax.random.key(0), 8, (1,))
    labels = jnp.zeros(8, jnp.int32)
    run = lambda scale: solvers.dpm_solver_sample(
        class_score, SCHEDULE, x, 5, class_labels=labels, guidance_scale=scale, null_label=2
    )
    run(1.5)
    before = solvers._run._cache_size()
    run(4.0)
    assert solvers._run._cache_size() == before


@pytest.mark.parametrize("guidance_scale", [0.0, 3.0])
def test_annealed_mala_targets_the_sum_of_energies(guidance_scale):
    """Each level's MH kernel targets (1 - w) f(., null) + w f(., c): moments by quadrature.

    4000 independent chains: SE of the mean sqrt(var / n) <= 0.022, of the
    variance var sqrt(2 / n) <= 0.045; gates at 4 SE. At w = 3 the class-1
    level is sharpened to mean 1.44, variance 0.64 (not the class's 1 and 1).
    """
    num_samples = 4000
    x = samplers.initial_noise(jax.random.key(0), num_samples, (1,))
    result = samplers.annealed_mala_sample(
        jax.random.key(1),
        class_logdensity,
        SCHEDULE,
        x,
        step_size=1e-4,
        num_steps=50,
        num_steps_per_level=20,
        class_labels=jnp.ones(num_samples, jnp.int32),
        guidance_scale=guidance_scale,
        null_label=NULL_LABEL,
    )
    assert result.num_function_evaluations == 2 * 50 * 21
    samples = np.asarray(result.samples, np.float64)[:, 0]
    mean, variance = guided_moments(guidance_scale, 1, float(SCHEDULE.marginal_betas[0]))
    assert abs(samples.mean() - mean) < 4.0 * np.sqrt(variance / num_samples), samples.mean()
    assert abs(samples.var() - variance) < 4.0 * variance * np.sqrt(2.0 / num_samples)


def test_guidance_arguments_are_checked():
    x = jnp.zeros((4, 1))
    labels = jnp.zeros(4, jnp.int32)
    with pytest.raises(ValueError, match="class_labels"):
        samplers.ancestral_sample(jax.random.key(0), class_score, SCHEDULE, x, guidance_scale=2.0)
    with pytest.raises(ValueError, match="null_label"):
        samplers.ancestral_sample(
            jax.random.key(0), class_score, SCHEDULE, x, class_labels=labels, guidance_scale=2.0
        )
    with pytest.raises(ValueError, match="class_labels"):
        solvers.ddim_sample(
            jax.random.key(0), class_score, SCHEDULE, x, class_labels=jnp.zeros(3, jnp.int32)
        )
    with pytest.raises(ValueError, match="class_labels"):
        solvers.ddim_sample(jax.random.key(0), class_score, SCHEDULE, x, class_labels=jnp.zeros(4))
    with pytest.raises(ValueError, match="guidance_scale"):
        solvers.dpm_solver_sample(
            class_score, SCHEDULE, x, class_labels=labels, guidance_scale=np.inf, null_label=2
        )
    with pytest.raises(ValueError, match=r"score_fn\(x, beta, label\)"):
        samplers.ancestral_sample(
            jax.random.key(0), lambda x, beta: -x, SCHEDULE, x, class_labels=labels
        )
    with pytest.raises(ValueError, match="logdensity_fn"):
        samplers.annealed_mala_sample(
            jax.random.key(0),
            lambda x, beta: -jnp.sum(x**2),
            SCHEDULE,
            x,
            step_size=1e-4,
            class_labels=labels,
        )
    assert ej.diffusion.guidance is guidance


def test_probability_flow_sampling_is_guided_too():
    x = samplers.initial_noise(jax.random.key(0), 32, (1,))
    labels = jnp.arange(32) % 2
    flow = lambda model, **kw: ej.diffusion.probability_flow_sample(
        model, SCHEDULE, x, num_steps=10, **kw
    )
    conditional = flow(class_score, class_labels=labels)
    at_1 = flow(class_score, class_labels=labels, null_label=NULL_LABEL)
    at_0 = flow(class_score, class_labels=labels, guidance_scale=0.0, null_label=NULL_LABEL)
    unconditional = flow(functools.partial(class_score, label=NULL_LABEL))
    np.testing.assert_allclose(at_1.positions, conditional.positions, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(at_0.positions, unconditional.positions, rtol=1e-5, atol=1e-5)
    assert at_1.num_function_evaluations == 2 * conditional.num_function_evaluations == 40
    # The conditional flows end on their class's side.
    ends = np.asarray(conditional.positions)[:, 0]
    assert np.mean((ends > 0) == (np.asarray(labels) == 1)) > 0.8

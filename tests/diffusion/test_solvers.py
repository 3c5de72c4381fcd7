"""DDIM and DPM-Solver++ against the ancestral sampler and the probability-flow ODE.

Exactness checks run in float64 (positions; schedules are stored in float32),
with the exact score of the Gaussian mixture of ``test_samplers.py`` or of a
Gaussian; the mixture weights and within-mode moments of every sampler are
checked in ``test_samplers.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej
from ebm_jax.diffusion import ode, samplers, schedule, solvers, tweedie

WEIGHTS = np.array([0.8, 0.2])
MEANS = np.array([[5.0, 5.0], [-5.0, -5.0]])


def gaussian_score(x, beta):
    """Data N((1, -2), 0.25 I): p_beta = N(sqrt(1 - beta) m, (0.25 (1 - beta) + beta) I)."""
    mean = jnp.sqrt(1.0 - beta) * jnp.array([1.0, -2.0], x.dtype)
    return -(x - mean) / (0.25 * (1.0 - beta) + beta)


def mixture_score(x, beta):
    perturbed = ej.densities.gaussian_mixture(
        jnp.asarray(WEIGHTS, x.dtype), jnp.sqrt(1.0 - beta) * jnp.asarray(MEANS, x.dtype), 1.0
    )
    return jax.grad(perturbed.logdensity_fn)(x)


@pytest.fixture(scope="module")
def float64_case():
    """The linear schedule and 64 float64 draws of x_T (x64 is switched on per test)."""
    x_T = np.asarray(jax.random.normal(jax.random.key(0), (64, 2)), np.float64)
    return schedule.linear_schedule(1000), x_T


@pytest.mark.parametrize("num_steps", [1, 7, 60])
def test_ddim_with_eta_1_is_the_ancestral_sampler_step_for_step(float64_case, num_steps):
    noise_schedule, x_T = float64_case
    with jax.enable_x64(True):
        ancestral = samplers.ancestral_sample(
            jax.random.key(3), gaussian_score, noise_schedule, x_T, num_steps=num_steps
        )
        ddim = solvers.ddim_sample(
            jax.random.key(3), gaussian_score, noise_schedule, x_T, num_steps, eta=1.0
        )
    assert ddim.num_function_evaluations == ancestral.num_function_evaluations == num_steps
    # The schedule is stored in float32: the two sets of coefficients agree to its precision.
    np.testing.assert_allclose(ddim.samples, ancestral.samples, rtol=1e-10, atol=1e-10)


def test_ddim_with_eta_0_is_the_first_order_dpm_solver(float64_case):
    noise_schedule, x_T = float64_case
    with jax.enable_x64(True):
        ddim = solvers.ddim_sample(jax.random.key(3), mixture_score, noise_schedule, x_T, 25)
        first_order = solvers.dpm_solver_sample(
            mixture_score, noise_schedule, x_T, 25, order=1, spacing="linear"
        )
    np.testing.assert_allclose(ddim.samples, first_order.samples, rtol=1e-10, atol=1e-10)


def test_ddim_noise_is_the_eta_scaled_posterior_noise():
    """On N(0, I) data (score -x) one DDIM step is a linear map plus noise: read both off.

    Levels beta_bar = (0.3, 0.65): from t = 2 to s = 1, D = sqrt(ᾱ_t) x and
    eps_hat = sqrt(β̄_t) x, so x_1 = (sqrt(ᾱ_s ᾱ_t) + sqrt((β̄_s - σ²) β̄_t)) x + σ z
    with σ² = eta² β̄_s / β̄_t β_{t|s}; the last step is x_0 = D(x_1) = sqrt(0.7) x_1.
    """
    eta, step_beta, smallest, largest = 0.5, 0.5, 0.3, 0.65
    with jax.enable_x64(True):
        x = samplers.initial_noise(jax.random.key(5), 40000, (1,), jnp.float64)
        two_levels = schedule.from_betas(np.array([0.3, 0.5]))
        out = solvers.ddim_sample(jax.random.key(6), lambda y, b: -y, two_levels, x, eta=eta)
    noise_variance = eta**2 * smallest / largest * step_beta
    expected_slope = np.sqrt(0.7 * 0.35) + np.sqrt((smallest - noise_variance) * largest)
    x, x_1 = np.asarray(x)[:, 0], np.asarray(out.samples)[:, 0] / np.sqrt(0.7)
    slope = np.sum(x_1 * x) / np.sum(x * x)
    residual_variance = np.var(x_1 - slope * x)
    # SEs: residual variance sqrt(2/n) relative (0.7 %); slope sigma / sqrt(sum x²) (0.1 %).
    np.testing.assert_allclose(residual_variance, noise_variance, rtol=0.03)
    np.testing.assert_allclose(slope, expected_slope, rtol=0.005)


def test_ddim_and_dpm_solver_converge_to_the_probability_flow_at_their_orders(float64_case):
    """Error against the ODE solution (RK4, 1000 steps, then the Tweedie mean) halves 2^order-fold.

    Measured slopes of log2(error) per halving of the step: DDIM 1.04 (100 -> 400
    steps), DPM-Solver++ 2M 2.0-2.05, 3M 3.1-3.3.
    """
    noise_schedule, x_T = float64_case
    with jax.enable_x64(True):
        flow = ode.probability_flow_sample(
            mixture_score, noise_schedule, x_T, num_steps=1000, method="rk4"
        )
        smallest = noise_schedule.marginal_betas[0]
        reference = jax.vmap(lambda y: tweedie.tweedie_mean(mixture_score, y, smallest))(
            flow.positions
        )
        for order in (1, 2, 3):
            errors = []
            for num_steps in (100, 200, 400):
                if order == 1:
                    out = solvers.ddim_sample(
                        jax.random.key(0), mixture_score, noise_schedule, x_T, num_steps
                    )
                else:
                    out = solvers.dpm_solver_sample(
                        mixture_score, noise_schedule, x_T, num_steps, order=order, spacing="linear"
                    )
                errors.append(np.sqrt(np.mean(np.sum((out.samples - reference) ** 2, -1))))
            rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
            assert np.all(np.abs(rates - order) < 0.4), (order, errors, rates)


def test_dpm_solver_at_20_steps_is_close_to_the_flow():
    """At NFE 20 DPM-Solver++ 2M lands within 0.25 of the ODE's samples, 3x closer than DDIM.

    Measured: 0.17 and 0.62. The mixture's modes are 10 apart: a sample flowing
    to the wrong mode would be off by ~14.
    """
    noise_schedule = schedule.linear_schedule(1000)
    x_T = samplers.initial_noise(jax.random.key(1), 256, (2,))
    flow = ode.probability_flow_sample(
        mixture_score, noise_schedule, x_T, num_steps=200, method="rk4"
    )
    reference = jax.vmap(
        lambda y: tweedie.tweedie_mean(mixture_score, y, noise_schedule.marginal_betas[0])
    )(flow.positions)
    dpm = solvers.dpm_solver_sample(mixture_score, noise_schedule, x_T, 20)
    ddim = solvers.ddim_sample(jax.random.key(0), mixture_score, noise_schedule, x_T, 20)
    dpm_error = np.sqrt(np.mean(np.sum((dpm.samples - reference) ** 2, -1)))
    ddim_error = np.sqrt(np.mean(np.sum((ddim.samples - reference) ** 2, -1)))
    assert dpm_error < 0.25 and 3.0 * dpm_error < ddim_error < 1.0, (dpm_error, ddim_error)


def test_levels_that_round_to_one_in_float32_cost_no_precision():
    """The cosine schedule's beta_bar_T is 1.0 in float32; the coefficients come from log ᾱ.

    float32 positions give the float64 result to float32 precision, at every order
    (Gaussian data: the mixture's boundary amplifies rounding, by 4e-3 here).
    """
    noise_schedule = schedule.cosine_schedule(1000)
    assert float(noise_schedule.marginal_betas[-1]) == 1.0
    x_T = np.asarray(jax.random.normal(jax.random.key(2), (256, 2)))
    runs = {
        "ddim": lambda x: solvers.ddim_sample(
            jax.random.key(3), gaussian_score, noise_schedule, x, 10
        ),
        "dpm_2": lambda x: solvers.dpm_solver_sample(gaussian_score, noise_schedule, x, 10),
        "dpm_3": lambda x: solvers.dpm_solver_sample(
            gaussian_score, noise_schedule, x, 10, order=3
        ),
    }
    for name, run in runs.items():
        single = np.asarray(run(jnp.asarray(x_T, jnp.float32)).samples)
        with jax.enable_x64(True):
            double = np.asarray(run(jnp.asarray(x_T, jnp.float64)).samples)
        assert np.all(np.isfinite(single)), name
        np.testing.assert_allclose(single, double, atol=1e-4, err_msg=name)


def test_errors_name_the_argument():
    noise_schedule = schedule.linear_schedule(10)
    x_T = jnp.zeros((2, 2))
    score = lambda x, beta: -x
    with pytest.raises(ValueError, match="eta"):
        solvers.ddim_sample(jax.random.key(0), score, noise_schedule, x_T, eta=1.5)
    with pytest.raises(ValueError, match="order"):
        solvers.dpm_solver_sample(score, noise_schedule, x_T, order=4)
    with pytest.raises(ValueError, match="num_steps"):
        solvers.dpm_solver_sample(score, noise_schedule, x_T, num_steps=11)
    with pytest.raises(ValueError, match="score_fn"):
        solvers.dpm_solver_sample(lambda x, b: x[0], noise_schedule, x_T)
    with pytest.raises(TypeError, match="schedule"):
        solvers.ddim_sample(jax.random.key(0), score, object(), x_T)

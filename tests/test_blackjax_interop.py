"""BlackJAX interoperability: BlackJAX kernels under ``run_chains``, ours under a BlackJAX loop.

Any object with ``init(position)`` / ``step(rng_key, state)`` is a kernel, in
both directions. Every moment is checked against a closed form within
``Z`` Monte-Carlo standard errors (``ej.diagnostics.mcse``, ESS-based).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej
from tests.helpers import Z

blackjax = pytest.importorskip("blackjax")

MEAN = jnp.array([1.0, -2.0, 0.5])
COVARIANCE = jnp.array([[1.0, 0.8, 0.3], [0.8, 2.0, -0.4], [0.3, -0.4, 0.5]])
PRECISION = jnp.linalg.inv(COVARIANCE)


def exact_draws(rng_key, num_chains):
    """Stationary starts (exact draws of the target), so no burn-in is needed."""
    return MEAN + jax.random.normal(rng_key, (num_chains, 3)) @ jnp.linalg.cholesky(COVARIANCE).T


def gaussian_logdensity(x):
    """N(MEAN, COVARIANCE) up to its normaliser: correlated, with unequal scales."""
    centred = x - MEAN
    return -0.5 * centred @ PRECISION @ centred


def assert_gaussian_moments(samples, mean, covariance, what):
    """Mean and every covariance entry E[(x_i - μ_i)(x_j - μ_j)] within Z MCSE of the truth."""
    samples = jnp.asarray(samples, jnp.float32)
    centred = samples - mean
    products = centred[..., :, None] * centred[..., None, :]
    for draws, truth, moment in ((samples, mean, "mean"), (products, covariance, "covariance")):
        estimate = np.asarray(jnp.mean(draws, axis=(0, 1)))
        standard_error = np.asarray(ej.diagnostics.mcse(draws))
        z_score = np.abs(estimate - np.asarray(truth)) / standard_error
        assert np.all(z_score < Z), f"{what} {moment}: {estimate} vs {truth}, |z| = {z_score}"


def test_blackjax_nuts_under_run_chains_matches_the_closed_form():
    warmup = blackjax.window_adaptation(blackjax.nuts, gaussian_logdensity)
    (_, parameters), _ = warmup.run(jax.random.key(0), jnp.zeros(3), num_steps=300)
    nuts = blackjax.nuts(gaussian_logdensity, **parameters)
    num_chains = 8
    result = ej.run_chains(
        jax.random.key(2), nuts, exact_draws(jax.random.key(1), num_chains), 1000, progress=False
    )
    assert result.samples.shape == (num_chains, 1000, 3)
    assert_gaussian_moments(result.samples, MEAN, COVARIANCE, "NUTS")
    # NUTS reports divergences but has no is_nonfinite field.
    assert result.num_nonfinite is None
    assert result.num_divergent.shape == (num_chains,)
    assert jnp.issubdtype(result.num_divergent.dtype, jnp.integer)
    assert result.acceptance_rate.shape == (num_chains,)
    assert np.all((np.asarray(result.acceptance_rate) > 0.5) & (result.acceptance_rate <= 1.0))


def test_ebm_jax_mala_in_a_blackjax_style_loop_matches_the_closed_form():
    """The inference loop of BlackJAX's documentation, with our kernel in it."""
    alg = ej.samplers.mala(gaussian_logdensity, step_size=0.5, inverse_mass_matrix=COVARIANCE)
    num_chains, num_steps, num_burnin = 8, 2000, 200

    def inference_loop(rng_key, initial_position):
        def one_step(state, step_key):
            state, info = alg.step(step_key, state)
            return state, (state.position, info.acceptance_rate)

        state = alg.init(initial_position)
        keys = jax.random.split(rng_key, num_steps)
        final_state, (positions, acceptance_rate) = jax.lax.scan(one_step, state, keys)
        return final_state, positions, acceptance_rate

    keys = jax.random.split(jax.random.key(3), num_chains)
    initial_positions = jax.random.normal(jax.random.key(4), (num_chains, 3))
    final_state, positions, acceptance_rate = jax.jit(jax.vmap(inference_loop))(
        keys, initial_positions
    )
    assert_gaussian_moments(positions[:, num_burnin:], MEAN, COVARIANCE, "MALA")
    assert 0.3 < float(jnp.mean(acceptance_rate)) < 1.0
    # The state caches what BlackJAX's MALA state caches, for the current position.
    np.testing.assert_allclose(
        final_state.logdensity, jax.vmap(gaussian_logdensity)(final_state.position), rtol=1e-5
    )
    np.testing.assert_allclose(
        final_state.logdensity_grad,
        jax.vmap(jax.grad(gaussian_logdensity))(final_state.position),
        rtol=1e-4,
        atol=1e-5,
    )


DICT_MEAN = {"loc": jnp.array([1.0, -1.0]), "scalar": jnp.array(3.0)}
DICT_SD = {"loc": jnp.array([1.0, 0.5]), "scalar": jnp.array(2.0)}


def dict_logdensity(x):
    """Independent Gaussians over a dict position {"loc": (2,), "scalar": ()}."""
    terms = jax.tree.map(lambda value, m, s: jnp.sum(((value - m) / s) ** 2), x, DICT_MEAN, DICT_SD)
    return -0.5 * sum(jax.tree.leaves(terms))


@pytest.mark.parametrize("kernel", ["blackjax", "ebm_jax"])
def test_dict_positions_with_blackjax_and_ebm_jax_mala(kernel):
    factory = blackjax.mala if kernel == "blackjax" else ej.samplers.mala
    alg = factory(dict_logdensity, 0.5)
    num_chains, num_steps = 16, 2000
    initial_positions = {  # exact draws: stationary starts
        name: DICT_MEAN[name] + DICT_SD[name] * jax.random.normal(key, (num_chains, *shape))
        for (name, shape), key in zip(
            (("loc", (2,)), ("scalar", ())), jax.random.split(jax.random.key(5)), strict=True
        )
    }
    result = ej.run_chains(jax.random.key(7), alg, initial_positions, num_steps, progress=False)
    assert jax.tree.map(jnp.shape, result.samples) == {
        "loc": (num_chains, num_steps, 2),
        "scalar": (num_chains, num_steps),
    }
    for name in DICT_MEAN:
        draws = result.samples[name]
        mean, sd = DICT_MEAN[name], DICT_SD[name]
        for moment_draws, truth, moment in (
            (draws, mean, "mean"),
            ((draws - mean) ** 2, sd**2, "variance"),
        ):
            estimate = np.asarray(jnp.mean(moment_draws, axis=(0, 1)))
            standard_error = np.asarray(ej.diagnostics.mcse(moment_draws))
            z_score = np.abs(estimate - np.asarray(truth)) / standard_error
            assert np.all(z_score < Z), f"{kernel} {name} {moment}: {estimate} vs {truth}"
    assert np.all(np.asarray(result.acceptance_rate) > 0.3)
    if kernel == "blackjax":
        assert result.num_nonfinite is None  # BlackJAX's MALAInfo has no is_nonfinite
    else:
        assert int(jnp.sum(result.num_nonfinite)) == 0


_TRACES: list = []


def traced_logdensity(x):
    _TRACES.append(None)  # runs only while JAX traces
    return gaussian_logdensity(x)


def test_per_chain_parameters_of_a_blackjax_factory():
    """BlackJAX closes over its step size: the factory is called per chain inside the step.

    Tiny and huge step sizes on two halves of the chains give near-1 and near-0
    acceptance; a rebuilt equal ``functools.partial`` reuses the compiled program.
    """
    traces = _TRACES  # a global: a closed-over list would be part of the compile key

    step_sizes = jnp.where(jnp.arange(8) < 4, 1e-4, 50.0)
    results = [
        ej.run_chains(
            jax.random.key(seed),
            functools.partial(blackjax.mala, traced_logdensity),
            exact_draws(jax.random.key(7), 8),
            50,
            chain_parameters={"step_size": step_sizes},
        )
        for seed in (0, 1)
    ]
    num_traces = len(traces)
    ej.run_chains(
        jax.random.key(2),
        functools.partial(blackjax.mala, traced_logdensity),
        exact_draws(jax.random.key(7), 8),
        50,
        chain_parameters={"step_size": 2.0 * step_sizes},
    )
    assert len(traces) == num_traces
    for result in results:
        assert float(result.acceptance_rate[:4].min()) > 0.99
        assert float(result.acceptance_rate[4:].max()) < 0.1

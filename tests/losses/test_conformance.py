"""The conformance suite every loss factory passes.

A float scalar, jit == no-jit, determinism given ``rng_key``, no retrace on
a second call, finite gradients for a small MLP, and named errors for bad
factory arguments, bad batches and mis-shaped models. (DSM with an EBM's
``ej.score`` is checked against a score network in test_denoising.py.)
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax.losses as losses

DIMENSION = 3
HIDDEN = 8


def init_mlp(seed, output_size):
    rng = np.random.default_rng(seed)
    return {
        "hidden_weights": jnp.asarray(rng.normal(size=(DIMENSION, HIDDEN)) / np.sqrt(DIMENSION)),
        "hidden_bias": jnp.zeros(HIDDEN),
        "output_weights": jnp.asarray(rng.normal(size=(HIDDEN, output_size)) / np.sqrt(HIDDEN)),
    }


def mlp_logdensity(params, x):
    """A smooth (tanh) MLP log-density with a Gaussian envelope, so it is normalisable."""
    hidden = jnp.tanh(x @ params["hidden_weights"] + params["hidden_bias"])
    return (hidden @ params["output_weights"])[0] - 0.5 * jnp.sum(x**2)


def mlp_score(params, x):
    """A score network: the same MLP with a vector output."""
    hidden = jnp.tanh(x @ params["hidden_weights"] + params["hidden_bias"])
    return hidden @ params["output_weights"] - x


ENERGY_PARAMS = init_mlp(0, 1)
SCORE_PARAMS = init_mlp(1, DIMENSION)

LOSSES = {
    "score_matching": (lambda: losses.score_matching(mlp_logdensity), ENERGY_PARAMS),
    "score_matching_score_fn": (
        lambda: losses.score_matching(score_fn=mlp_score),
        SCORE_PARAMS,
    ),
    "sliced_rademacher": (lambda: losses.sliced_score_matching(mlp_logdensity), ENERGY_PARAMS),
    "sliced_gaussian": (
        lambda: losses.sliced_score_matching(mlp_logdensity, probe="gaussian", num_probes=2),
        ENERGY_PARAMS,
    ),
    "sliced_vr": (
        lambda: losses.sliced_score_matching(mlp_logdensity, variance_reduction=True),
        ENERGY_PARAMS,
    ),
    "denoising": (lambda: losses.denoising_score_matching(mlp_score, 0.1), SCORE_PARAMS),
    "contrastive_divergence": (
        lambda: losses.contrastive_divergence(mlp_logdensity, step_size=0.1, num_steps=2),
        ENERGY_PARAMS,
    ),
    "contrastive_divergence_regularised": (
        lambda: losses.contrastive_divergence(
            mlp_logdensity, step_size=0.1, num_steps=2, regularization=0.1
        ),
        ENERGY_PARAMS,
    ),
}
DETERMINISTIC = {"score_matching", "score_matching_score_fn"}

BATCH = jnp.asarray(np.random.default_rng(2).normal(size=(5, DIMENSION)), jnp.float32)


@pytest.fixture(params=sorted(LOSSES))
def loss_case(request):
    factory, params = LOSSES[request.param]
    return request.param, factory(), params


def test_scalar_jit_no_retrace_determinism_and_finite_gradients(loss_case):
    """One compiled value_and_grad serves every check, so each loss compiles once."""
    name, loss_fn, params = loss_case

    @jax.jit
    @chex.assert_max_traces(n=1)
    def value_and_grad(params, key, batch):
        return jax.value_and_grad(loss_fn)(params, key, batch)

    key = jax.random.key(3)
    eager = loss_fn(params, key, BATCH)
    assert eager.shape == ()
    assert eager.dtype == jnp.float32
    assert np.isfinite(float(eager))
    jitted, gradient = value_and_grad(params, key, BATCH)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(value_and_grad(params, key, BATCH)[0], jitted)
    other_key = value_and_grad(params, jax.random.key(4), BATCH)[0]
    if name in DETERMINISTIC:
        np.testing.assert_array_equal(other_key, jitted)
    else:
        assert float(other_key) != float(jitted)
    value_and_grad(params, key, BATCH + 1.0)  # new values, same shapes: no retrace
    chex.clear_trace_counter()

    chex.assert_trees_all_equal_shapes(gradient, params)
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(gradient)]
    assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
    assert any(np.any(leaf != 0.0) for leaf in leaves)


def test_bad_batches_are_named(loss_case):
    _, loss_fn, params = loss_case
    with pytest.raises(ValueError, match="batch"):
        loss_fn(params, jax.random.key(0), jnp.float32(1.0))
    with pytest.raises(ValueError, match="batch"):
        loss_fn(params, jax.random.key(0), jnp.zeros((0, DIMENSION)))


BAD_FACTORY_CALLS = [
    (lambda: losses.score_matching(), TypeError, "logdensity_fn.*score_fn"),
    (
        lambda: losses.score_matching(mlp_logdensity, score_fn=mlp_score),
        TypeError,
        "logdensity_fn.*score_fn",
    ),
    (lambda: losses.score_matching(1.0), TypeError, "logdensity_fn"),
    (lambda: losses.score_matching(score_fn="score"), TypeError, "score_fn"),
    (lambda: losses.sliced_score_matching(), TypeError, "logdensity_fn.*score_fn"),
    (lambda: losses.sliced_score_matching(mlp_logdensity, num_probes=0), ValueError, "num_probes"),
    (lambda: losses.sliced_score_matching(mlp_logdensity, num_probes=2.0), TypeError, "num_probes"),
    (lambda: losses.sliced_score_matching(mlp_logdensity, probe="sphere"), ValueError, "probe"),
    (
        lambda: losses.sliced_score_matching(mlp_logdensity, variance_reduction="yes"),
        TypeError,
        "variance_reduction",
    ),
    (lambda: losses.denoising_score_matching(None, 0.1), TypeError, "score_fn"),
    (lambda: losses.contrastive_divergence(mlp_logdensity), TypeError, "step_size.*sampler"),
    (lambda: losses.contrastive_divergence(None, step_size=0.1), TypeError, "logdensity_fn"),
    (
        lambda: losses.contrastive_divergence(mlp_logdensity, step_size=0.1, sampler=print),
        TypeError,
        "sampler or step_size",
    ),
    (lambda: losses.contrastive_divergence(mlp_logdensity, sampler=1), TypeError, "sampler"),
    (
        lambda: losses.contrastive_divergence(mlp_logdensity, step_size=-1.0),
        ValueError,
        "step_size",
    ),
    (
        lambda: losses.contrastive_divergence(mlp_logdensity, step_size=0.1, num_steps=0),
        ValueError,
        "num_steps",
    ),
    (
        lambda: losses.contrastive_divergence(mlp_logdensity, step_size=0.1, regularization=-1.0),
        ValueError,
        "regularization",
    ),
    (
        lambda: losses.persistent_contrastive_divergence(
            mlp_logdensity, step_size=0.1, reinit_probability=1.0
        ),
        ValueError,
        "reinit_probability",
    ),
    (
        lambda: losses.persistent_contrastive_divergence(
            mlp_logdensity, step_size=0.1, num_negatives=0
        ),
        ValueError,
        "num_negatives",
    ),
    (
        lambda: losses.persistent_contrastive_divergence(
            mlp_logdensity, step_size=0.1, reinit_fn="noise"
        ),
        TypeError,
        "reinit_fn",
    ),
    (lambda: losses.denoising_score_matching(mlp_score, 0.0), ValueError, "sigma"),
    (lambda: losses.denoising_score_matching(mlp_score, -1.0), ValueError, "sigma"),
    (lambda: losses.denoising_score_matching(mlp_score, float("nan")), ValueError, "sigma"),
    (lambda: losses.denoising_score_matching(mlp_score, float("inf")), ValueError, "sigma"),
    (lambda: losses.denoising_score_matching(mlp_score, "0.1"), TypeError, "sigma"),
    (lambda: losses.denoising_score_matching(mlp_score, jnp.ones(2)), ValueError, "sigma"),
]


@pytest.mark.parametrize(("make_loss", "error", "match"), BAD_FACTORY_CALLS)
def test_bad_factory_arguments_are_named(make_loss, error, match):
    with pytest.raises(error, match=match):
        make_loss()


def test_model_shape_errors_are_named():
    key = jax.random.key(0)
    vector_logdensity = lambda params, x: x * params
    with pytest.raises(ValueError, match="logdensity_fn"):
        losses.score_matching(vector_logdensity)(1.0, key, BATCH)
    with pytest.raises(ValueError, match="logdensity_fn"):
        losses.sliced_score_matching(vector_logdensity)(1.0, key, BATCH)
    with pytest.raises(ValueError, match="logdensity_fn"):
        losses.contrastive_divergence(vector_logdensity, step_size=0.1)(1.0, key, BATCH)
    truncated_score = lambda params, x: x[:2] * params
    with pytest.raises(ValueError, match="score_fn"):
        losses.score_matching(score_fn=truncated_score)(1.0, key, BATCH)
    with pytest.raises(ValueError, match="score_fn"):
        losses.sliced_score_matching(score_fn=truncated_score)(1.0, key, BATCH)
    with pytest.raises(ValueError, match="score_fn"):
        losses.denoising_score_matching(truncated_score, 0.1)(1.0, key, BATCH)

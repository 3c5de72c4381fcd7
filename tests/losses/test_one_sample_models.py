"""A model initialised on a whole batch is caught by every loss, and by fit, with a fix.

Losses vmap the model over the batch, so ``logdensity_fn(params, x)`` and
``score_fn(params, x[, beta])`` see ONE sample. A Flax module that flattens
its input, initialised with ``model.init(key, batch)``, has weights sized for
the batch and fails on one sample; a module ending in ``Dense(1)`` returns
shape ``(1,)`` per sample, not a scalar. Both must raise a ValueError that
says so and suggests ``model.init(key, batch[0])``.
"""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ebm_jax as ej
from ebm_jax import training
from ebm_jax.diffusion import objective

BATCH_SIZE, DIMENSION = 4, 3
BATCH = jnp.asarray(np.random.default_rng(0).normal(size=(BATCH_SIZE, DIMENSION)), jnp.float32)
KEY = jax.random.key(0)
HINT = re.escape("one sample, vmapped inside") + ".*" + re.escape("model.init(key, batch[0])")


class FlatteningEnergy(nn.Module):
    """Flattens its input, so its first kernel has as many rows as the input has entries."""

    @nn.compact
    def __call__(self, x, beta=None):
        hidden = nn.tanh(nn.Dense(8)(x.reshape(-1)))
        return nn.Dense(1)(hidden)[0] - 0.5 * jnp.sum(x**2)


class FlatteningScore(nn.Module):
    @nn.compact
    def __call__(self, x, beta=None):
        return nn.Dense(x.size)(x.reshape(-1)).reshape(x.shape) - x


class PerRowEnergy(nn.Module):
    """Ends in Dense(1): shape (1,) for one sample, (batch_size, 1) for a batch."""

    @nn.compact
    def __call__(self, x, beta=None):
        return nn.Dense(1)(nn.tanh(nn.Dense(8)(x))) - 0.5 * jnp.sum(x**2, axis=-1, keepdims=True)


def init_on_batch(module):
    return module.init(jax.random.key(1), BATCH)


def init_on_one_sample(module):
    return module.init(jax.random.key(1), BATCH[0])


FLAT_ENERGY, FLAT_SCORE, PER_ROW = FlatteningEnergy(), FlatteningScore(), PerRowEnergy()

# (name, loss factory given the module's apply, the module)
LOSSES = [
    ("score_matching", lambda apply: ej.losses.score_matching(apply), FLAT_ENERGY),
    ("score_matching_per_row", lambda apply: ej.losses.score_matching(apply), PER_ROW),
    ("score_matching_score_fn", lambda apply: ej.losses.score_matching(score_fn=apply), FLAT_SCORE),
    ("sliced", lambda apply: ej.losses.sliced_score_matching(apply), FLAT_ENERGY),
    ("sliced_per_row", lambda apply: ej.losses.sliced_score_matching(apply), PER_ROW),
    ("denoising", lambda apply: ej.losses.denoising_score_matching(apply, 0.1), FLAT_SCORE),
    (
        "diffusion_score",
        lambda apply: objective.denoising_loss(lambda p, x, beta: apply(p, x, beta)),
        FLAT_SCORE,
    ),
    (
        "diffusion_energy",
        lambda apply: objective.denoising_loss(logdensity_fn=lambda p, x, beta: apply(p, x, beta)),
        FLAT_ENERGY,
    ),
    (
        "diffusion_energy_per_row",
        lambda apply: objective.denoising_loss(logdensity_fn=lambda p, x, beta: apply(p, x, beta)),
        PER_ROW,
    ),
]


@pytest.mark.parametrize(
    ("make_loss", "module"), [case[1:] for case in LOSSES], ids=[case[0] for case in LOSSES]
)
def test_a_model_initialised_on_a_batch_is_named_with_the_fix(make_loss, module):
    loss_fn = make_loss(module.apply)
    with pytest.raises(ValueError, match=HINT):
        loss_fn(init_on_batch(module), KEY, BATCH)
    with pytest.raises(ValueError, match=HINT):  # also when the loss is traced
        jax.jit(loss_fn)(init_on_batch(module), KEY, BATCH)
    if module is not PER_ROW:  # the suggested fix works
        loss = loss_fn(init_on_one_sample(module), KEY, BATCH)
        assert loss.shape == () and np.isfinite(float(loss))


def test_per_row_output_names_the_shape_and_the_scalar_it_needs():
    loss_fn = ej.losses.score_matching(PER_ROW.apply)
    with pytest.raises(ValueError, match=re.escape("must return a scalar")) as error:
        loss_fn(init_on_one_sample(PER_ROW), KEY, BATCH)
    assert "got shape (1,)" in str(error.value) and "out[0]" in str(error.value)


def test_fit_reports_a_model_initialised_on_a_batch_before_compiling():
    loss_fn = ej.losses.score_matching(FLAT_ENERGY.apply)
    data = jnp.tile(BATCH, (4, 1))
    with pytest.raises(ValueError, match="loss_fn.*" + HINT):
        training.fit(
            KEY, loss_fn, init_on_batch(FLAT_ENERGY), optax.adam(1e-2), data,
            num_steps=2, batch_size=BATCH_SIZE,
        )  # fmt: skip
    result = training.fit(
        KEY, loss_fn, init_on_one_sample(FLAT_ENERGY), optax.adam(1e-2), data,
        num_steps=2, batch_size=BATCH_SIZE,
    )  # fmt: skip
    assert np.all(np.isfinite(np.asarray(result.losses)))


@pytest.mark.parametrize(
    "loss_fn",
    [
        ej.losses.sliced_score_matching(lambda p, x: -0.5 * p * jnp.sum(x**2)),
        ej.losses.denoising_score_matching(lambda p, x: -p * x, 0.1),
        objective.denoising_loss(lambda p, x, beta: -p * x),
    ],
    ids=["sliced", "denoising", "diffusion"],
)
def test_losses_that_draw_noise_name_a_seed_passed_as_the_key(loss_fn):
    with pytest.raises(TypeError, match=r"rng_key must be a jax\.random key, got int"):
        loss_fn(1.0, 0, BATCH)

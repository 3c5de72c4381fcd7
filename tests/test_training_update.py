"""fit's update rule: θ_{t+1} = θ_t + u_t, u_t the optax update of g_t = ∇_θ L(θ_t; ξ_t, B_t).

The loss is a convex quadratic with a key-dependent linear term, so its gradient
is known by hand; the batches and the key-dependent draws are recorded in the
loss state, and the whole trajectory is recomputed here without ``fit``. A
flipped update (gradient ascent), a gradient of another batch or key, or an
update applied twice would all miss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax import training

CURVATURE = np.array([[2.0, 0.5], [0.5, 1.0]])  # the loss's Hessian, positive definite
DATA = jnp.asarray(np.random.default_rng(0).normal(size=(64, 2)) + np.array([1.0, -2.0]))
INITIAL = {"theta": jnp.array([3.0, 1.0])}
NUM_STEPS, BATCH_SIZE = 12, 8


def quadratic_loss(params, rng_key, batch):
    """½ mean_b (b − θ)ᵀA(b − θ) + zᵀθ, z ~ N(0, I/4) drawn from the step's key."""
    residual = batch - params["theta"]
    shift = 0.5 * jax.random.normal(rng_key, (2,))
    quadratic = jnp.einsum(
        "ni,ij,nj->n", residual, jnp.asarray(CURVATURE, residual.dtype), residual
    )
    return 0.5 * jnp.mean(quadratic) + shift @ params["theta"]


def recording_loss(params, rng_key, batch, loss_state):
    """The quadratic loss, recording each step's batch mean and key draw z in the state."""
    step, batch_means, shifts = loss_state
    batch_means = batch_means.at[step].set(batch.mean(axis=0))
    shifts = shifts.at[step].set(0.5 * jax.random.normal(rng_key, (2,)))
    return quadratic_loss(params, rng_key, batch), (step + 1, batch_means, shifts)


def gradient(theta, batch_mean, shift):
    """∇_θ L = A(θ − mean B) + z, by hand."""
    return CURVATURE @ (theta - batch_mean) + shift


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_every_step_applies_the_optax_update_of_the_loss_gradient(name):
    """The trajectory of ``fit`` is the one recomputed here from hand-computed gradients.

    SGD: θ_{t+1} = θ_t − η∇L(θ_t; ξ_t, B_t), by hand in float64; Adam: θ_t plus optax's
    update of the same gradients. 12 steps of minibatches of 8 from 64 examples, each
    step with its own batch and key draw.
    """
    rate = 0.1 if name == "sgd" else 0.05
    optimizer = optax.sgd(rate) if name == "sgd" else optax.adam(rate)
    loss_state = (jnp.zeros((), jnp.int32), jnp.zeros((NUM_STEPS, 2)), jnp.zeros((NUM_STEPS, 2)))
    result = training.fit(
        jax.random.key(3), recording_loss, INITIAL, optimizer, DATA,
        num_steps=NUM_STEPS, batch_size=BATCH_SIZE, loss_state=loss_state,
    )  # fmt: skip
    _, batch_means, shifts = (np.asarray(leaf, np.float64) for leaf in result.loss_state)
    assert len(np.unique(batch_means.round(6), axis=0)) == NUM_STEPS  # a new batch each step
    assert len(np.unique(shifts.round(6), axis=0)) == NUM_STEPS  # a new key each step

    theta = np.asarray(INITIAL["theta"], np.float64)
    optimizer_state = optimizer.init(jnp.zeros(2))
    for batch_mean, shift in zip(batch_means, shifts, strict=True):
        grad = gradient(theta, batch_mean, shift)
        if name == "sgd":
            theta = theta - rate * grad
        else:
            updates, optimizer_state = optimizer.update(jnp.asarray(grad), optimizer_state)
            theta = theta + np.asarray(updates, np.float64)
    np.testing.assert_allclose(result.params["theta"], theta, rtol=1e-5, atol=1e-5)


def test_full_batch_descent_decreases_a_convex_loss_every_step_towards_its_minimum():
    """Full batch, key-free loss: θ_t = x̄ + (I − ηA)^t (θ_0 − x̄) exactly, and the loss
    falls at every step (ηA has eigenvalues 0.32 and 0.88, in (0, 1)) towards its
    minimum at x̄: after 15 steps θ is within 0.68¹⁵ < 0.4% of its initial distance."""
    rate, num_steps = 0.4, 15
    deterministic = lambda params, rng_key, batch: (
        quadratic_loss(params, rng_key, batch)
        - (0.5 * jax.random.normal(rng_key, (2,)) @ params["theta"])
    )
    result = training.fit(
        jax.random.key(0), deterministic, INITIAL, optax.sgd(rate), DATA,
        num_steps=num_steps, batch_size=DATA.shape[0], chunk_size=num_steps,
    )  # fmt: skip
    data = np.asarray(DATA, np.float64)
    mean = data.mean(axis=0)
    contraction = np.eye(2) - rate * CURVATURE
    start = np.asarray(INITIAL["theta"], np.float64) - mean
    trajectory = [mean + np.linalg.matrix_power(contraction, t) @ start for t in range(16)]
    np.testing.assert_allclose(result.params["theta"], trajectory[-1], rtol=1e-5, atol=1e-6)
    distance = np.linalg.norm(np.asarray(result.params["theta"], np.float64) - mean)
    assert distance < 0.004 * np.linalg.norm(start)

    def loss_at(theta):
        residual = data - theta
        return 0.5 * np.mean(np.einsum("ni,ij,nj->n", residual, CURVATURE, residual))

    np.testing.assert_allclose(result.losses, [loss_at(t) for t in trajectory[:-1]], rtol=1e-5)
    assert np.all(np.diff(np.asarray(result.losses, np.float64)) < 0)

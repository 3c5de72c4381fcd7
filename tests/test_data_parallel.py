"""Data-parallel ``fit``: with several local devices, the same call gives the same result.

``XLA_FLAGS=--xla_force_host_platform_device_count=4`` makes four CPU
devices, and the device count is fixed at start-up, so each run is a
subprocess. Two losses: sliced score matching on a Flax MLP from an array
dataset (the batch is split over the devices, the parameters replicated),
and persistent contrastive divergence (its chain buffer is split along the
chain axis). Gradients are summed in a different order on four devices, so
the results agree to float32 tolerance, not bitwise.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from tests.helpers import run_on_forced_host_devices

SCRIPT = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp, numpy as np, optax
    import ebm_jax as ej

    devices = jax.local_device_count()
    data = ej.data.two_moons(jax.random.key(0), 512)
    model = ej.models.MLPLogDensity(hidden_sizes=(32, 32))
    params = model.init(jax.random.key(1), data[0])
    loss = ej.losses.sliced_score_matching(model.apply)
    # Whole chunks: a shorter last chunk would compile a second program.
    fitted = ej.training.fit(
        jax.random.key(2), loss, params, optax.adam(1e-2), data,
        num_steps=50, batch_size=64, chunk_size=25,
    )
    leaf = jax.tree.leaves(fitted.params)[0]
    assert len(leaf.sharding.device_set) == devices, leaf.sharding

    pcd = ej.losses.persistent_contrastive_divergence(
        lambda mean, x: -0.5 * jnp.sum((x - mean) ** 2), step_size=0.3, num_steps=2
    )
    chains = pcd.init(jax.random.normal(jax.random.key(3), (64, 2)))
    pcd_fit = ej.training.fit(
        jax.random.key(4), pcd.loss, jnp.zeros(2), optax.sgd(0.1), data + 3.0,
        num_steps=45, batch_size=32, chunk_size=15, loss_state=chains,
    )
    assert len(pcd_fit.loss_state.positions.sharding.device_set) == devices
    flat = jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(fitted.params)])
    np.savez(
        sys.argv[1], ssm_params=flat, ssm_losses=fitted.losses,
        pcd_mean=pcd_fit.params, pcd_chains=pcd_fit.loss_state.positions,
        pcd_losses=pcd_fit.losses,
    )
    """
)


@pytest.mark.slow
def test_fit_on_four_devices_matches_one_device(tmp_path):
    outputs = {
        devices: run_on_forced_host_devices(SCRIPT, devices, tmp_path / f"fit_{devices}.npz")
        for devices in (1, 4)
    }
    one, four = outputs[1], outputs[4]
    # 50 Adam steps of float32 sums in another order: agreement to ~1e-4, far below
    # the 1e-2 step size's effect of a single step.
    np.testing.assert_allclose(four["ssm_losses"], one["ssm_losses"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(four["ssm_params"], one["ssm_params"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(four["pcd_losses"], one["pcd_losses"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(four["pcd_mean"], one["pcd_mean"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(four["pcd_chains"], one["pcd_chains"], rtol=1e-4, atol=1e-5)

"""Eight schools (non-centred) from a NumPyro model, end to end, on dict positions.

NumPyro gives the log-density of dict positions in unconstrained space;
``ej.samplers.adapt`` warms up MALA on them, ``ej.run_chains`` samples, and
``ej.diagnostics.to_inference_data`` hands the constrained draws to ArviZ.

The model is posteriordb's ``eight_schools_noncentered``, so its log-density
must equal :func:`ebm_jax.densities.eight_schools_noncentered` (written by
hand, flat coordinates ``[theta_trans, mu, log tau]``) up to a constant; the
statistical check of the default warm-up against Stan's reference draws is in
``tests/test_posteriors.py`` and runs on that hand-written density.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej
from tests.data import eight_schools

pytest.importorskip("numpyro")
az = pytest.importorskip("arviz")

NUM_CHAINS = 32


def _as_dict(flat):
    return {"theta_trans": flat[..., :8], "mu": flat[..., 8], "tau": flat[..., 9]}


@pytest.mark.slow
def test_numpyro_model_to_arviz():
    """One test, one NumPyro model build: its density, then the pipeline."""
    logdensity_fn = numpyro_fn = eight_schools.logdensity_fn()
    hand_written = ej.densities.eight_schools_noncentered().logdensity_fn
    points = jax.random.uniform(jax.random.key(0), (32, 10), minval=-3.0, maxval=3.0)
    difference = np.asarray(
        jax.vmap(lambda z: numpyro_fn(_as_dict(z)) - hand_written(z))(points), np.float64
    )
    # float32 log-densities of magnitude ~100: agreement to ~1e-4 relative.
    np.testing.assert_allclose(difference, difference[0], atol=5e-3)
    gradients = jax.vmap(jax.grad(lambda z: numpyro_fn(_as_dict(z))))(points)
    np.testing.assert_allclose(
        gradients, jax.vmap(jax.grad(hand_written))(points), rtol=1e-4, atol=1e-4
    )

    starts = eight_schools.initial_positions(jax.random.key(1), NUM_CHAINS)
    warmup = ej.samplers.adapt(jax.random.key(2), "mala", logdensity_fn, starts, 200)
    assert set(warmup.states.position) == {"mu", "tau", "theta_trans"}
    assert warmup.parameters["inverse_mass_matrix"].shape == (10, 10)  # "auto": dense
    chains = ej.run_chains(
        jax.random.key(3),
        ej.samplers.mala(logdensity_fn, **warmup.parameters),
        warmup.states.position,
        100,
        thin=2,
    )
    constrained = eight_schools.constrained(chains.samples)
    idata = ej.diagnostics.to_inference_data(chains._replace(samples=constrained))
    assert set(idata.posterior.data_vars) == set(eight_schools.QUANTITIES)
    assert idata.posterior["theta"].shape == (NUM_CHAINS, 50, 8)
    np.testing.assert_allclose(
        idata.posterior["tau"].values, jnp.exp(chains.samples["tau"]), rtol=1e-6
    )
    summary = az.summary(idata, var_names=["mu", "tau"])
    assert list(summary.index) == ["mu", "tau"]
    assert np.all(np.isfinite(summary["r_hat"]))
    assert abs(float(np.mean(chains.acceptance_rate)) - 0.574) < 0.1
    assert int(np.sum(chains.num_nonfinite)) == 0

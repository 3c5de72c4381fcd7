"""The default warm-up on real posteriors, started as Stan starts, and on lost chains.

Two posteriordb posteriors (``tests/data/posteriordb``: Stan reference means
and sds with their standard errors) in unconstrained coordinates
(:mod:`ebm_jax.densities.posteriordb`), each sampled as a new user would:
256 chains from uniform(−2, 2), ``ej.samplers.adapt(key, "mala", f, positions,
1000)`` with every default, then ``ej.run_chains`` with the adapted
parameters. Gates: rank-normalised split R̂ ≤ 1.01 for every constrained
quantity, and every posterior mean and sd within ``Z`` combined standard errors
of the reference,

.. math::

   z = \\frac{\\hat m - m_{\\mathrm{ref}}}
       {\\sqrt{\\mathrm{MCSE}^2 + \\mathrm{se}_{\\mathrm{ref}}^2}}.

With one step size tuned on the acceptance averaged over all chains (the
``robust=False`` warm-up) GARCH(1,1) fails both gates: a few chains that start
where the variance recursion explodes never accept, drag the shared step size
down and stay lost (R̂ 1.15 with the default dense preconditioner, 1.39 with
a diagonal one, the previous default).

GARCH's sds come out 1–3 reference standard errors below posteriordb's, in
float32 and float64 alike and for every seed tried; the reference's own
``sd_se`` dominates the combined error, so the gate holds with room to spare.

The synthetic test starts a quarter of the chains in a far region where the
density is nearly flat (a negligible broad component of a mixture): the robust
warm-up must find them, copy healthy chains over them and end with none lost.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej
from tests.data.posteriordb import load_reference
from tests.helpers import Z

NUM_CHAINS = 256
NUM_WARMUP = 1000
NUM_SAMPLES = {"eight_schools_noncentered": 2000, "garch11": 1000}
THIN = 4  # MALA's draws are strongly autocorrelated: thinning keeps most of the ESS


@pytest.mark.parametrize("name", sorted(NUM_SAMPLES))
def test_the_default_warmup_samples_a_posteriordb_posterior(name):
    posterior = getattr(ej.densities, name)()
    reference = load_reference(name)["reference"]
    assert list(reference["names"]) == list(posterior.names)
    positions = jax.random.uniform(
        jax.random.key(0), (NUM_CHAINS, posterior.dim), minval=-2.0, maxval=2.0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no chain may be left lost
        warmup = ej.samplers.adapt(
            jax.random.key(1), "mala", posterior.logdensity_fn, positions, NUM_WARMUP
        )
    assert not bool(jnp.any(warmup.info.is_lost))
    chains = ej.run_chains(
        jax.random.key(2),
        ej.samplers.mala(posterior.logdensity_fn, **warmup.parameters),
        warmup.states.position,
        NUM_SAMPLES[name],
        thin=THIN,
    )
    assert abs(float(jnp.mean(chains.acceptance_rate)) - 0.574) < 0.05
    assert int(jnp.sum(chains.num_nonfinite)) == 0
    draws = jax.vmap(jax.vmap(posterior.constrain_fn))(chains.samples)

    failures = []
    rhat = np.asarray(ej.diagnostics.rhat(draws))
    if np.any(rhat > 1.01):
        failures.append(f"R-hat {dict(zip(posterior.names, rhat.round(4), strict=True))}")
    flat = np.asarray(draws, np.float64).reshape(-1, draws.shape[-1])
    estimates = {"mean": flat.mean(0), "sd": flat.std(0, ddof=1)}
    for statistic, estimate in estimates.items():
        error = np.asarray(ej.diagnostics.mcse(draws, method=statistic), np.float64)
        z = (estimate - np.asarray(reference[statistic])) / np.hypot(
            error, np.asarray(reference[f"{statistic}_se"])
        )
        if np.any(np.abs(z) >= Z):
            failures.append(
                f"{statistic}: z = {dict(zip(posterior.names, z.round(2), strict=True))}"
            )
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------- lost chains

DIM = 5
_LOG_NORMAL = -0.5 * DIM * np.log(2 * np.pi)


def bulk_with_a_flat_far_region(x):
    """N(0, I) plus a 1e-30 weight of N(0, 100² I): nearly flat far from the origin."""
    bulk = -0.5 * jnp.sum(x**2) + _LOG_NORMAL
    broad = np.log(1e-30) - 0.5 * jnp.sum((x / 100.0) ** 2) - DIM * np.log(100.0) + _LOG_NORMAL
    return jnp.logaddexp(bulk, broad)


def test_chains_started_in_a_far_flat_region_are_detected_and_recovered():
    num_chains = 128
    positions = jax.random.uniform(jax.random.key(3), (num_chains, DIM), minval=-2, maxval=2)
    far = np.arange(num_chains) < num_chains // 4
    positions = jnp.where(far[:, None], positions + 60.0, positions)

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = ej.samplers.adapt(
            jax.random.key(4), "mala", bulk_with_a_flat_far_region, positions, 400
        )
    info = result.info
    # Every far chain, and no other, is reset after the initial window.
    np.testing.assert_array_equal(np.asarray(info.reset_count) > 0, far)
    assert int(info.num_reset[0]) == num_chains // 4
    assert not bool(jnp.any(info.is_lost))
    assert info.chain_acceptance_rate.shape == (len(info.num_reset), num_chains)
    # The preconditioner comes from healthy chains only: the bulk's unit variances.
    np.testing.assert_allclose(result.parameters["inverse_mass_matrix"], np.eye(DIM), atol=0.15)
    assert float(jnp.max(jnp.abs(result.states.position))) < 6.0

    chains = ej.run_chains(
        jax.random.key(5),
        ej.samplers.mala(bulk_with_a_flat_far_region, **result.parameters),
        result.states.position,
        200,
    )
    assert abs(float(jnp.mean(chains.acceptance_rate)) - 0.574) < 0.05
    # Pooled over 128 chains x 200 draws (ESS in the thousands): within ~5 sd of 1.
    variance = np.var(np.asarray(chains.samples).reshape(-1, DIM), axis=0)
    assert np.all(np.abs(variance - 1.0) < 0.1), variance

    # The plain warm-up leaves them lost, and says so.
    with pytest.warns(RuntimeWarning, match="32 of 128 chains are still lost"):
        plain = ej.samplers.adapt(
            jax.random.key(4),
            "mala",
            bulk_with_a_flat_far_region,
            positions,
            400,
            robust=False,
        )
    np.testing.assert_array_equal(np.asarray(plain.info.is_lost), far)

"""Eight schools (non-centred), end to end: a NumPyro model sampled by adapted MALA.

NumPyro gives the log-density of dict positions in unconstrained space;
``ej.samplers.adapt`` warms up MALA on them, ``ej.run_chains`` samples, and
``ej.diagnostics.to_inference_data`` hands the constrained draws to ArviZ. The
posterior means and sds of mu, tau and theta must match a long NumPyro NUTS
run (``tests/data/eight_schools_numpyro.json``, made by
``tests/data/make_eight_schools_reference.py``) within ``Z`` combined
standard errors,

.. math:: z = \\frac{\\hat m - m_{\\mathrm{ref}}}
   {\\sqrt{\\mathrm{MCSE}^2 + \\mathrm{MCSE}_{\\mathrm{ref}}^2}},

with both MCSEs from ``arviz.mcse`` (``method="mean"`` or ``"sd"``). The
posterior has a funnel in log tau; the runs are long enough for the heavy
right tail of tau to be sampled (its sd is the slowest quantity to settle).
Dropping the log-Jacobian of tau = exp(log tau) from the log-density moves
tau's mean by tens of standard errors, and unadjusted Langevin at the adapted
step size fails R-hat, so the gate separates a right sampler from a wrong one.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

import ebm_jax as ej
from tests.data import eight_schools
from tests.helpers import Z

pytest.importorskip("numpyro")
az = pytest.importorskip("arviz")

REFERENCE = json.loads((Path(__file__).parent / "data" / "eight_schools_numpyro.json").read_text())[
    "quantities"
]
NUM_CHAINS = 128
NUM_WARMUP = 1000
NUM_STEPS = 20_000
THIN = 10


@pytest.fixture(scope="module")
def sampled():
    """Adapted MALA on dict positions, Stan's uniform(-2, 2) start; (result, InferenceData)."""
    logdensity_fn = eight_schools.logdensity_fn()
    positions = eight_schools.initial_positions(jax.random.key(0), NUM_CHAINS)
    warmup = ej.samplers.adapt(jax.random.key(1), "mala", logdensity_fn, positions, NUM_WARMUP)
    alg = ej.samplers.mala(logdensity_fn, **warmup.parameters)
    result = ej.run_chains(
        jax.random.key(2), alg, warmup.states.position, NUM_STEPS, thin=THIN, progress=False
    )
    constrained = result._replace(samples=eight_schools.constrained(result.samples))
    return result, ej.diagnostics.to_inference_data(constrained)


def test_posterior_means_and_sds_match_the_numpyro_reference(sampled):
    _, idata = sampled
    posterior = idata.posterior
    estimates = {
        "mean": (posterior.mean(dim=("chain", "draw")), az.mcse(idata, method="mean")),
        "sd": (posterior.std(dim=("chain", "draw"), ddof=1), az.mcse(idata, method="sd")),
    }
    failures = []
    for name in eight_schools.QUANTITIES:
        for statistic, (values, errors) in estimates.items():
            estimate = np.ravel(np.asarray(values[name], np.float64))
            error = np.ravel(np.asarray(errors[name], np.float64))
            reference = np.asarray(REFERENCE[name][statistic])
            reference_error = np.asarray(REFERENCE[name][f"mcse_{statistic}"])
            z_score = (estimate - reference) / np.hypot(error, reference_error)
            if np.any(np.abs(z_score) >= Z):
                failures.append(f"{statistic}({name}) = {estimate} vs {reference}: z = {z_score}")
    assert not failures, "\n".join(failures)


def test_chains_mix(sampled):
    result, idata = sampled
    assert set(idata.posterior.data_vars) == set(eight_schools.QUANTITIES)
    assert idata.posterior["theta"].shape == (NUM_CHAINS, NUM_STEPS // THIN, 8)
    rhat = az.rhat(idata, method="rank")
    ess = az.ess(idata, method="bulk")
    for name in eight_schools.QUANTITIES:
        assert np.all(np.asarray(rhat[name]) < 1.01), f"R-hat({name}) = {rhat[name].values}"
        assert np.all(np.asarray(ess[name]) > 10_000), f"ESS({name}) = {ess[name].values}"
    # The adapted step size reaches MALA's target acceptance and no proposal overflows.
    assert abs(float(np.mean(result.acceptance_rate)) - 0.574) < 0.05
    assert int(np.sum(result.num_nonfinite)) == 0

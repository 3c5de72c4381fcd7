"""Shared statistical gates for the tests (MCSE-based, never fixed magic tolerances)."""

from __future__ import annotations

import numpy as np

Z = 4.0  # a 4-sigma gate: a false alarm ~6e-5 per assertion


def assert_mean_within_mcse(per_chain_estimates, truth, z: float = Z, what: str = "mean"):
    """Gate |E_hat - truth| < z * MCSE, with MCSE from independent chains.

    ``per_chain_estimates`` has shape (num_chains, ...): one estimate per
    independent chain, so their spread gives an honest Monte-Carlo standard
    error whatever the autocorrelation within a chain.
    """
    estimates = np.asarray(per_chain_estimates, dtype=np.float64)
    num_chains = estimates.shape[0]
    grand = estimates.mean(axis=0)
    mcse = estimates.std(axis=0, ddof=1) / np.sqrt(num_chains)
    error = np.abs(grand - np.asarray(truth, dtype=np.float64))
    assert np.all(error < z * mcse), (
        f"{what}: estimate {grand} vs truth {truth}; |error| {error} >= {z} x MCSE {mcse}"
    )
    return grand, mcse

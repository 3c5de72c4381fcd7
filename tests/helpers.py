"""Shared helpers for the tests: MCSE-based statistical gates, forced-device subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

Z = 4.0  # a 4-sigma gate: a false alarm ~6e-5 per assertion

# The environment of the suite (tests/conftest.py) and of its subprocesses, which check
# what runs and what it returns, not how fast: JAX traces, and XLA's HLO passes optimise,
# the same programs, but XLA's backend (LLVM) optimisations are skipped, a large part of
# the compile time that dominates small tests.
QUICK_COMPILE_ENV = {"JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}


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


def run_python(args, *, input=None, env=None, timeout=600, stderr_tail=4000):
    """Run ``python *args`` in a fresh process; it must exit 0.

    The process compiles as the suite does (QUICK_COMPILE_ENV unless the
    environment says otherwise). ``timeout`` is a hang guard, not a speed
    target. Returns the completed process.
    """
    completed = subprocess.run(
        [sys.executable, *map(str, args)],
        input=input,
        env={**QUICK_COMPILE_ENV, **(os.environ if env is None else env)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-stderr_tail:]
    return completed


def run_on_forced_host_devices(script: str, num_devices: int, out_path) -> dict:
    """Run ``python -c script out_path`` on ``num_devices`` forced CPU devices; load its npz.

    The device count is fixed when JAX starts, hence a fresh process per count.
    """
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}")
    env["JAX_PLATFORMS"] = "cpu"
    run_python(["-c", script, out_path], env=env, timeout=300)
    with np.load(out_path, allow_pickle=False) as saved:
        return dict(saved)

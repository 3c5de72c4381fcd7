"""Two processes joined by ``jax.distributed`` give the one-process results.

Starts two local processes of ``tests/multihost_worker.py`` (coordinator on
127.0.0.1, CPU collectives through gloo), exactly as the README's multi-host
section launches them, and a one-process reference. Chains run per process
on their own slices and keys, so the gathered samples equal the reference
bitwise; ``fit`` runs data parallel over both processes' devices, so its
results agree to float32 tolerance (sums in another order).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("multihost_worker.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(process_id: int, num_processes: int, coordinator: str, out: Path, *extra: str):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    command = [
        sys.executable,
        str(WORKER),
        f"--process-id={process_id}",
        f"--num-processes={num_processes}",
        f"--coordinator={coordinator}",
        f"--out={out}",
        *extra,
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr.decode()[-4000:]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    coordinator = f"127.0.0.1:{_free_port()}"
    joint = [_launch(i, 2, coordinator, tmp_path / "two.npz") for i in range(2)]
    # The reference beside them: it uses the time they spend waiting on each other.
    reference = _launch(0, 1, "unused", tmp_path / "one.npz", "--slices=2")
    _wait([*joint, reference])
    with np.load(tmp_path / "two.npz") as two, np.load(tmp_path / "one.npz") as one:
        np.testing.assert_array_equal(two["samples"], one["samples"])
        assert two["samples"].shape == (2, 8, 30, 2)
        for name in ("ssm_losses", "ssm_params", "pcd_mean", "pcd_chains"):
            np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)

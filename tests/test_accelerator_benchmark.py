"""``benchmarks/accelerator.py --quick`` runs end to end and writes a complete report.

The benchmark's numbers are not asserted (benchmarks are not tests); its
structure is, and the one quantity with a closed form: XLA's FLOP count of a
MALA floor step is at least the MLP's forward multiply-adds over all chains.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import pytest

import ebm_jax as ej
from tests.helpers import run_python

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "accelerator.py"


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


@pytest.mark.slow
def test_quick_run_writes_json_and_markdown(tmp_path):
    # The timings are not asserted, and XLA's FLOP and byte counts come from the optimised
    # HLO, which QUICK_COMPILE_ENV leaves as it is.
    run_python([SCRIPT, "--quick", "--out-dir", tmp_path])
    report = json.loads((tmp_path / "accelerator.json").read_text())
    table = (tmp_path / "accelerator.md").read_text()

    env = report["environment"]
    assert env["jax"] == jax.__version__ and env["ebm_jax"] == ej.__version__
    for text in (env["device_kind"], env["jax"], env["jaxlib"], env["date"]):
        assert text in table
    for heading in ("## MALA", "## Training", "## Diffusion sampling", "## AIS"):
        assert heading in table
    assert _finite_positive(report["peaks"]["matmul_flops"])
    assert _finite_positive(report["peaks"]["bandwidth"])

    (row,) = report["mala"]["rows"]  # --quick: 10^3 chains at d = 2 only
    assert (row["dim"], row["num_chains"]) == (2, 1000)
    assert 0.0 < row["acceptance_rate"] <= 1.0
    contenders = {"ebm_jax", "floor", "blackjax", "ebm_jax_steps", "blackjax_steps"}
    assert contenders <= set(row["chain_steps_per_s"])
    assert all(_finite_positive(rate) for rate in row["chain_steps_per_s"].values())
    first, second = row["hidden_sizes"]
    forward_flops = 2 * row["num_chains"] * (row["dim"] * first + first * second + second)
    for roofline in row["roofline"].values():
        assert roofline["flops"] >= forward_flops
        assert roofline["bytes"] > 0
        assert roofline["binding_bound"] in ("compute", "bandwidth")
        assert _finite_positive(roofline["fraction_of_bound"])

    losses = report["training"]["losses"]
    assert set(losses) == {
        "plain",
        "sm_score_network",
        "sm_exact_energy",
        "ssm",
        "dsm",
        "diffusion_11_16",
    }
    assert all(_finite_positive(loss["steps_per_s"]) for loss in losses.values())

    samplers = report["diffusion_sampling"]["toy_2d"]["samplers"]
    assert set(samplers) == {"ancestral", "probability_flow", "annealed_mala"}
    for sampler in samplers.values():
        assert sampler["num_function_evaluations"] == 100
        assert _finite_positive(sampler["samples_per_s"])
    assert _finite_positive(report["ais"]["samples_per_s"])

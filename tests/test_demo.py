"""The main job (`make demo`) runs end to end in its quick mode and writes its outputs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.helpers import QUICK_COMPILE_ENV

# demo.main's return value, written where the test can read it.
SCRIPT = """
import json, sys
from ebm_jax import demo
summary = demo.main(sys.argv[1], quick=True, seed=0)
with open(sys.argv[2], "w") as file:
    json.dump(summary, file)
"""


@pytest.mark.slow
def test_quick_demo_writes_every_section(tmp_path):
    # A process of its own: the quick demo is compile-bound (QUICK_COMPILE_ENV).
    env = dict(os.environ, **QUICK_COMPILE_ENV)
    returned = tmp_path / "returned_summary.json"
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(returned)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,  # a hang guard, not a speed target
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    summary = json.loads(returned.read_text())
    for name in ("sampling", "score_matching", "rbm"):
        assert (tmp_path / f"{name}.json").is_file()
        assert (tmp_path / f"{name}.png").stat().st_size > 0
        assert json.loads((tmp_path / f"{name}.json").read_text()) == summary[name]
    learned = summary["score_matching"]
    assert math.isfinite(learned["test_nll"])
    assert learned["log_partition_error"] < 1e-2
    assert 0.0 < learned["acceptance_rate"] < 1.0
    assert learned["num_nonfinite"] == 0
    rbm = summary["rbm"]
    assert rbm["test_log_likelihood"] > rbm["base_rate_test_log_likelihood"]
    assert abs(rbm["ais_log_partition"] - rbm["exact_log_partition"]) < 0.5

    diffusion = summary["diffusion"]
    assert json.loads((tmp_path / "diffusion.json").read_text()) == diffusion
    for name in ("diffusion_2d", "diffusion_digits"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    _check_diffusion_2d(diffusion["toy_2d"])
    _check_diffusion_digits(diffusion["digits"])


def _check_diffusion_2d(toy):
    samplers = toy["samplers"]
    assert set(samplers) == {"ancestral", "probability_flow", "annealed_langevin"}
    assert all(math.isfinite(value) for row in samplers.values() for value in row.values())
    noise = toy["noise_vs_test"]
    # The scaled N(0, I) start already has the data's mean and covariance, so only samples
    # that found the eight modes are closer to the test data than their starting points.
    for name, row in samplers.items():
        assert row["mmd2_vs_test"] < noise["mmd2_vs_test"], name
        assert row["sliced_wasserstein_vs_test"] < noise["sliced_wasserstein_vs_test"], name
    floor = toy["train_vs_test"]
    assert floor["sliced_wasserstein_vs_test"] < noise["sliced_wasserstein_vs_test"]
    assert samplers["ancestral"]["num_function_evaluations"] == 50
    assert samplers["probability_flow"]["num_function_evaluations"] == 2 * 10  # Heun
    assert samplers["annealed_langevin"]["num_function_evaluations"] == 50 * 5 + 1
    # Gibbs' inequality: a normalised model's test NLL is not below the true density's
    # (their difference estimates KL ≥ 0); a wrong sign in the log-volume term breaks it.
    assert toy["exact_test_nll"] < toy["probability_flow_test_nll"] < toy["exact_test_nll"] + 2.0


def _check_diffusion_digits(digits):
    assert all(
        math.isfinite(digits[key])
        for key in ("frechet_samples_vs_test", "frechet_train_vs_test", "frechet_noise_vs_test")
    )
    assert digits["frechet_train_vs_test"] < digits["frechet_samples_vs_test"]
    assert digits["frechet_samples_vs_test"] < digits["frechet_noise_vs_test"]
    assert sum(digits["predicted_digit_counts"]) == digits["num_samples"] == 128
    assert digits["classifier_test_accuracy"] > 0.8

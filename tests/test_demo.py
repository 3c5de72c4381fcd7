"""The main job (`make demo`) runs end to end in its quick mode and writes its outputs."""

from __future__ import annotations

import json
import math

import pytest

from ebm_jax.demo import diffusion_2d, report
from ebm_jax.demo import sampling as demo_sampling
from tests.helpers import run_python

# demo.main's return value, written where the test can read it.
SCRIPT = """
import json, sys
from ebm_jax import demo
summary = demo.main(sys.argv[1], quick=True, seed=0)
with open(sys.argv[2], "w") as file:
    json.dump(summary, file)
"""

FIGURES = ("sampling", "score_matching", "rbm", "diffusion_2d", "diffusion_digits")


@pytest.mark.slow
def test_quick_demo_writes_every_section(tmp_path):
    # A process of its own: the quick demo is compile-bound (QUICK_COMPILE_ENV).
    returned = tmp_path / "returned_summary.json"
    completed = run_python(["-c", SCRIPT, tmp_path, returned], timeout=900)
    summary = json.loads(returned.read_text())
    for name in FIGURES:
        assert (tmp_path / f"{name}.png").stat().st_size > 0, name
    for name in ("sampling", "score_matching", "rbm", "diffusion"):
        assert json.loads((tmp_path / f"{name}.json").read_text()) == summary[name]
    _check_quick_mode_is_said(summary, completed.stdout)

    learned = summary["score_matching"]
    assert math.isfinite(learned["test_nll"])
    assert learned["log_partition_error"] < 1e-2
    assert 0.0 < learned["acceptance_rate"] < 1.0
    assert learned["num_nonfinite"] == 0
    rbm = summary["rbm"]
    assert rbm["test_log_likelihood"] > rbm["base_rate_test_log_likelihood"]
    assert abs(rbm["ais_log_partition"] - rbm["exact_log_partition"]) < 0.5

    diffusion = summary["diffusion"]
    _check_diffusion_2d(diffusion["toy_2d"])
    _check_diffusion_digits(diffusion["digits"])


def _check_quick_mode_is_said(summary, stdout):
    sections = [summary[name] for name in ("sampling", "score_matching", "rbm")]
    sections += [
        summary["diffusion"],
        summary["diffusion"]["toy_2d"],
        summary["diffusion"]["digits"],
    ]
    assert summary["quick_mode"] is True
    assert all(section["quick_mode"] is True for section in sections)
    # Every section header and the closing summary carry the label.
    assert stdout.count(report.QUICK_LABEL) == 6
    # The warnings: every section's, in order, each printed twice (after its section, and
    # in the closing summary) on a line of its own.
    collected = [warning for name in ("sampling", "score_matching", "rbm", "diffusion")
                 for warning in summary[name]["warnings"]]  # fmt: skip
    assert summary["warnings"] == collected
    lines = stdout.splitlines()
    for warning in summary["warnings"]:
        assert lines.count(f"WARNING: {warning}") == 2, warning
    assert sum(line.startswith("WARNING:") for line in lines) == 2 * len(collected)
    # Quick mode's chains are too short to mix (R-hat about 1.1): said, not hidden.
    sampling = summary["sampling"]
    assert max(sampling["rhat"]) > report.RHAT_THRESHOLD
    assert sampling["warnings"] == demo_sampling.sampling_warnings(sampling)
    assert any("split R-hat" in warning for warning in sampling["warnings"])


def _check_diffusion_2d(toy):
    samplers = toy["samplers"]
    assert set(samplers) == {"ancestral", "probability_flow", "annealed_langevin"}
    assert all(math.isfinite(value) for row in samplers.values() for value in row.values())
    noise = toy["noise_vs_test"]
    # The scaled N(0, I) start already has the data's mean and covariance, so only samples
    # that moved towards the eight modes are closer to the test data than their starting points.
    for name, row in samplers.items():
        assert row["mmd2_vs_test"] < noise["mmd2_vs_test"], name
        assert row["mmd2_fine_vs_test"] < noise["mmd2_fine_vs_test"], name
        assert row["sliced_wasserstein_vs_test"] < noise["sliced_wasserstein_vs_test"], name
    floor = toy["train_vs_test"]
    assert floor["sliced_wasserstein_vs_test"] < noise["sliced_wasserstein_vs_test"]
    assert samplers["ancestral"]["num_function_evaluations"] == 50
    assert samplers["probability_flow"]["num_function_evaluations"] == 2 * 10  # Heun
    assert samplers["annealed_langevin"]["num_function_evaluations"] == 50 * 5 + 1
    # Gibbs' inequality: a normalised model's test NLL is not below the true density's
    # (their difference estimates KL ≥ 0); a wrong sign in the log-volume term breaks it.
    assert toy["exact_test_nll"] < toy["probability_flow_test_nll"] < toy["exact_test_nll"] + 2.0

    # Exact samples fall within 2 s of a mode with probability 1 - e^-2 (500 of them:
    # standard error 0.015, a 4-sigma gate); quick mode's samplers draw a ring through the
    # modes (about half of it near one), which the summary must call a warning.
    coverage = toy["mode_coverage"]
    for reference in ("test", "train"):
        assert abs(coverage[reference]["fraction_near_modes"] - (1 - math.exp(-2))) < 0.061
    assert coverage["noise"]["fraction_near_modes"] < 0.3
    assert toy["warnings"] == diffusion_2d.toy_2d_warnings(toy)
    for name, row in samplers.items():
        label = f"diffusion 2-D, {name.replace('_', ' ')}: "
        (warning,) = [w for w in toy["warnings"] if w.startswith(label) and "eight modes" in w]
        # A distance at or below its floor is named as no evidence of success.
        assert ("MMD² (median bandwidth)" in warning) == (
            row["mmd2_vs_test"] <= floor["mmd2_vs_test"]
        ), warning
        # The fine bandwidth sees what the median one does not.
        assert row["mmd2_fine_vs_test"] > 10 * max(floor["mmd2_fine_vs_test"], 1e-4), name


def _check_diffusion_digits(digits):
    assert all(
        math.isfinite(digits[key])
        for key in ("frechet_samples_vs_test", "frechet_train_vs_test", "frechet_noise_vs_test")
    )
    assert digits["frechet_train_vs_test"] < digits["frechet_samples_vs_test"]
    assert digits["frechet_samples_vs_test"] < digits["frechet_noise_vs_test"]
    assert sum(digits["predicted_digit_counts"]) == digits["num_samples"] == 128
    assert digits["classifier_test_accuracy"] > 0.8

"""The main job (`make demo`) runs end to end in its quick mode and writes its outputs."""

from __future__ import annotations

import json
import math

from ebm_jax import demo


def test_quick_demo_writes_every_section(tmp_path):
    summary = demo.main(str(tmp_path), quick=True, seed=0)
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

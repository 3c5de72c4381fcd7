"""The demo's checks turn failed numbers into warnings, without running the demo."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from ebm_jax import data
from ebm_jax.demo import diffusion_2d, diffusion_digits, rbm, report, sampling


def test_rhat_above_threshold_is_a_warning():
    (warning,) = report.rhat_warnings([1.002, 1.05], what="MALA chains")
    assert "1.050" in warning and "coordinate 1" in warning
    assert report.rhat_warnings([1.0, report.RHAT_THRESHOLD], what="MALA chains") == []
    assert len(report.rhat_warnings([math.nan], what="MALA chains")) == 1


def _sampling_summary(**changes):
    summary = {"rhat": [1.002, 1.004], "mean": [0.1, -0.2], "true_mean": [0.1, -0.2],
               "mcse": [0.01, 0.01]}  # fmt: skip
    return summary | changes


def test_sampling_warns_on_rhat_and_on_a_biased_mean():
    assert sampling.sampling_warnings(_sampling_summary()) == []
    (warning,) = sampling.sampling_warnings(_sampling_summary(rhat=[1.05, 1.004]))
    assert "R-hat" in warning
    (warning,) = sampling.sampling_warnings(_sampling_summary(mean=[0.1, -0.25]))  # 5 MCSE
    assert "coordinate 1" in warning and "MCSE" in warning
    assert sampling.sampling_warnings(_sampling_summary(mean=[0.1, -0.23])) == []  # 3 MCSE


def test_gap_warnings_compare_samples_with_noise_and_floor():
    assert report.gap_warnings("s", "FD", 10.0, 5.0, 50.0) == []  # closed 89%
    (warning,) = report.gap_warnings("s", "FD", 40.0, 5.0, 50.0)  # closed 22%
    assert "22%" in warning
    (warning,) = report.gap_warnings("s", "MMD²", 0.0, 1e-3, 1e-3)  # noise at the floor
    assert "cannot judge" in warning


def test_digits_warn_when_samples_sit_nearer_the_noise():
    quick = {"frechet_samples_vs_test": 40.9, "frechet_train_vs_test": 4.95,
             "frechet_noise_vs_test": 51.9}  # fmt: skip
    (warning,) = diffusion_digits.digits_warnings(quick)
    assert "Fréchet distance 40.9" in warning
    assert diffusion_digits.digits_warnings(quick | {"frechet_samples_vs_test": 9.0}) == []


def test_rbm_warns_when_it_does_not_beat_independent_pixels():
    summary = {"test_log_likelihood": -24.8, "base_rate_test_log_likelihood": -24.7}
    assert len(rbm.rbm_warnings(summary)) == 1
    assert rbm.rbm_warnings(summary | {"test_log_likelihood": -20.0}) == []


def test_mode_coverage_of_exact_samples_and_of_a_ring():
    num_samples = 4000
    exact = np.asarray(data.eight_gaussians(jax.random.key(0), num_samples))
    coverage = diffusion_2d.mode_coverage(exact)
    # Within 2 s of its centre with probability 1 - e^-2 (chi-square, 2 dof); 4-sigma gates.
    expected = 1 - math.exp(-2)
    assert abs(coverage["fraction_near_modes"] - expected) < 4 * math.sqrt(
        expected * (1 - expected) / num_samples
    )
    weight_se = math.sqrt((1 / 8) * (7 / 8) / (expected * num_samples))
    assert np.allclose(coverage["mode_weights"], 1 / 8, atol=4 * weight_se)
    # A ring through the centres, with the modes' radial spread: 0.64 · P(|radial| < ...) < 0.64.
    key_angle, key_radius = jax.random.split(jax.random.key(1))
    angles = np.asarray(jax.random.uniform(key_angle, (num_samples,), maxval=2 * np.pi))
    radii = 2 * np.sqrt(2) + diffusion_2d.EIGHT_GAUSSIANS_SCALE * np.asarray(
        jax.random.normal(key_radius, (num_samples,))
    )
    ring = radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], -1)
    ring_coverage = diffusion_2d.mode_coverage(ring)
    assert ring_coverage["fraction_near_modes"] < 0.6
    # ... which mode weights alone do not reveal: the ring visits every mode equally.
    assert np.allclose(ring_coverage["mode_weights"], 1 / 8, atol=0.03)


def _toy_summary(fraction_near_modes, mode_weights=None, **row):
    """A 2-D summary with one sampler: quick mode's floor and noise rows, chosen coverage."""
    floor = {"mmd2_vs_test": -5.4e-4, "mmd2_fine_vs_test": 1.0e-4,
             "sliced_wasserstein_vs_test": 0.18}  # fmt: skip
    noise = {"mmd2_vs_test": 1.4e-3, "mmd2_fine_vs_test": 4.4e-2,
             "sliced_wasserstein_vs_test": 0.57}  # fmt: skip
    sampler = {"mmd2_vs_test": -6.3e-4, "mmd2_fine_vs_test": 1.3e-2,
               "sliced_wasserstein_vs_test": 0.20} | row  # fmt: skip
    weights = [1 / 8] * 8 if mode_weights is None else mode_weights
    return {
        "samplers": {"ancestral": sampler},
        "train_vs_test": floor,
        "noise_vs_test": noise,
        "mode_coverage": {
            "train": {"fraction_near_modes": 0.87, "mode_weights": [1 / 8] * 8},
            "ancestral": {"fraction_near_modes": fraction_near_modes, "mode_weights": weights},
        },
    }


def test_mmd_below_the_floor_with_failed_mode_coverage_is_a_warning():
    # Quick mode's ring: MMD² at the median bandwidth below the floor, 55% near a mode.
    (warning,) = diffusion_2d.toy_2d_warnings(_toy_summary(0.55))
    assert warning.startswith("diffusion 2-D, ancestral: only 55%")
    assert "MMD² (median bandwidth) is at or below the train-data floor" in warning
    # Both coarse distances at the floor: both named.
    (warning,) = diffusion_2d.toy_2d_warnings(_toy_summary(0.55, sliced_wasserstein_vs_test=0.17))
    assert "MMD² (median bandwidth) and SW₂ are at or below" in warning
    # Above the floor: the coverage warning stands, without the remark.
    (warning,) = diffusion_2d.toy_2d_warnings(_toy_summary(0.55, mmd2_vs_test=8e-5))
    assert "at or below" not in warning


def test_good_mode_coverage_is_no_warning_and_a_dropped_mode_is_one():
    assert diffusion_2d.toy_2d_warnings(_toy_summary(0.85)) == []
    weights = [1 / 7] * 7 + [0.0]
    (warning,) = diffusion_2d.toy_2d_warnings(_toy_summary(0.85, mode_weights=weights))
    assert "mode 7 holds 0.0%" in warning


def test_toy_without_modes_is_judged_by_the_gap_only():
    summary = _toy_summary(0.55)
    del summary["mode_coverage"]
    assert diffusion_2d.toy_2d_warnings(summary) == []
    summary["samplers"]["ancestral"]["mmd2_fine_vs_test"] = 4.0e-2  # 9% of the gap closed
    (warning,) = diffusion_2d.toy_2d_warnings(summary)
    assert "MMD² (fine bandwidth)" in warning


@pytest.mark.parametrize("quick", [False, True])
def test_quick_mode_is_said_in_headers_and_figure_titles(quick):
    assert (report.QUICK_LABEL in report.header("Sampling", quick=quick)) == quick
    figure, _ = report.figure("Sampling", quick=quick, ncols=2)
    try:
        assert (report.QUICK_LABEL in figure.get_suptitle()) == quick
    finally:
        report.pyplot().close(figure)

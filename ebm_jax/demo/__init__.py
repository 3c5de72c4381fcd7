"""The main job: ``python -m ebm_jax demo [--quick]`` (what ``make demo`` runs).

Four sections, one module each, each printing a summary and writing a JSON
file and a figure to the output folder:

1. :mod:`~ebm_jax.demo.sampling` (§11.2.1): MALA chains on a 2-D Gaussian
   mixture, judged by ESS, split R̂, KSD and MMD² (``sampling.json``, ``.png``).
2. :mod:`~ebm_jax.demo.score_matching` (§11.2.2–11.2.3): an MLP EBM learned by
   sliced score matching, its exact test NLL, MALA samples
   (``score_matching.json``, ``.png``).
3. :mod:`~ebm_jax.demo.rbm` (§11.1): a binary RBM learned by persistent
   contrastive divergence, exact log-likelihoods beside AIS (``rbm.json``, ``.png``).
4. :mod:`~ebm_jax.demo.diffusion` (§11.2.4–11.2.5): noise-conditional scores
   on a 2-D toy (:mod:`~ebm_jax.demo.diffusion_2d`) and on 8×8 digits
   (:mod:`~ebm_jax.demo.diffusion_digits`), several samplers, sample quality
   beside data-vs-data floors (``diffusion.json``, ``diffusion_2d.png``,
   ``diffusion_digits.png``).

Each summary holds ``"quick_mode"`` and ``"warnings"``: the checks its numbers
fail (split R̂ above 1.01, a mean off by more than 4 MCSE, samples missing
modes that a distance at the data floor does not see, samples nearer their
starting noise than the data, ...), printed as lines starting ``WARNING:``.
Quick mode runs every section at tiny sizes as a smoke test and says so in
every header, figure and summary; its numbers are not the demo's results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ebm_jax.demo import report
from ebm_jax.demo.diffusion import run_diffusion
from ebm_jax.demo.rbm import run_rbm
from ebm_jax.demo.sampling import demo_mixture, run_sampling
from ebm_jax.demo.score_matching import run_score_matching

__all__ = [
    "demo_mixture",
    "main",
    "run_diffusion",
    "run_rbm",
    "run_sampling",
    "run_score_matching",
]


def main(out_dir: str = "out", *, quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Run every demo section; ``quick`` shrinks them to a smoke test and says so.

    Returns:
      ``{"quick_mode", "warnings", "sampling", "score_matching", "rbm",
      "diffusion"}``: each section's summary (as in its JSON file) and every
      section's warnings, in order.
    """
    out = Path(out_dir)
    if quick:
        sampling = run_sampling(
            out, seed=seed, num_chains=256, num_warmup=100, num_steps=100, num_reference=256,
            quick=True,
        )  # fmt: skip
        score_matching = run_score_matching(
            out, seed=seed, num_train_steps=200, num_chains=256, num_warmup=50, num_steps=50,
            resolution=128, quick=True,
        )  # fmt: skip
        rbm = run_rbm(
            out, seed=seed, num_train_steps=100, num_temperatures=100, num_sample_sweeps=20,
            quick=True,
        )  # fmt: skip
        diffusion = run_diffusion(
            out, seed=seed, num_train_steps=300, num_samples=500, num_ancestral_steps=50,
            num_ode_steps=10, num_langevin_levels=50, num_likelihood_points=200,
            num_digits_train_steps=200, num_digit_samples=128, num_classifier_steps=200,
            quick=True,
        )  # fmt: skip
    else:
        sampling = run_sampling(out, seed=seed)
        score_matching = run_score_matching(out, seed=seed)
        rbm = run_rbm(out, seed=seed)
        diffusion = run_diffusion(out, seed=seed)
    sections = {
        "sampling": sampling,
        "score_matching": score_matching,
        "rbm": rbm,
        "diffusion": diffusion,
    }
    warnings = [warning for summary in sections.values() for warning in summary["warnings"]]
    print(report.header(f"Summary: {len(warnings)} warning(s)", quick=quick))
    report.print_warnings(warnings)
    if quick:
        print("  Quick mode: run without --quick for the demo's results.")
    return {"quick_mode": quick, "warnings": warnings, **sections}

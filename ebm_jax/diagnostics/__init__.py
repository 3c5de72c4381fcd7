"""Diagnostics: MCMC convergence, sample-quality discrepancies and exact 2-D likelihoods.

One concept per module:

- :mod:`~ebm_jax.diagnostics.convergence`: ESS (bulk, tail, mean), R̂, MCSE and
  a summary table of MCMC draws, as ArviZ computes them (Vehtari et al. 2021).
- :mod:`~ebm_jax.diagnostics.discrepancies`: the kernel Stein discrepancy (only
  the score of the target), MMD², sliced Wasserstein and Fréchet distances.
- :mod:`~ebm_jax.diagnostics.likelihood`: the exact test NLL of an unnormalised
  2-D log-density, :math:`\\log Z` by quadrature.
- :mod:`~ebm_jax.diagnostics.inference_data`: export of ``run_chains`` results
  to an ArviZ ``InferenceData`` (ArviZ optional).

Every public name is re-exported here: ``ej.diagnostics.ess``.
"""

from ebm_jax.diagnostics.convergence import Summary, ess, mcse, rhat, summary
from ebm_jax.diagnostics.discrepancies import (
    frechet_distance,
    imq_stein_kernel,
    kernel_stein_discrepancy,
    mmd,
    sliced_wasserstein,
)
from ebm_jax.diagnostics.inference_data import to_inference_data
from ebm_jax.diagnostics.likelihood import QuadratureNLL, nll_2d_quadrature

__all__ = [
    "QuadratureNLL",
    "Summary",
    "ess",
    "frechet_distance",
    "imq_stein_kernel",
    "kernel_stein_discrepancy",
    "mcse",
    "mmd",
    "nll_2d_quadrature",
    "rhat",
    "sliced_wasserstein",
    "summary",
    "to_inference_data",
]

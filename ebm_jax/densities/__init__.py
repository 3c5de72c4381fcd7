"""Analytic targets with exact log-density, score (by :func:`jax.grad`) and exact samples.

Each factory returns a :class:`Target`: ``logdensity_fn`` of ONE sample
(normalised whenever the normaliser is known), ``sample(rng_key, num_samples)``
drawing exact iid samples, and closed-form ``mean`` / ``covariance`` where
they exist. They are the ground truth the samplers and losses are tested
against. :mod:`ebm_jax.densities.posteriordb` adds real posteriors
(:class:`Posterior`: an unconstrained log-density and a ``constrain_fn``),
whose ground truth is posteriordb's reference means and sds instead.
"""

from ebm_jax.densities.banana import banana
from ebm_jax.densities.base import SampleFn, Target
from ebm_jax.densities.funnel import funnel
from ebm_jax.densities.gaussian import diagonal_gaussian, gaussian, isotropic_gaussian
from ebm_jax.densities.ising import (
    MAX_ENUMERABLE_SIDE,
    IsingExpectations,
    ising,
    ising_energy,
    ising_exact_expectations,
    magnetization,
)
from ebm_jax.densities.mixture import gaussian_mixture
from ebm_jax.densities.posteriordb import Posterior, eight_schools_noncentered, garch11
from ebm_jax.densities.rings import rings

__all__ = [
    "MAX_ENUMERABLE_SIDE",
    "IsingExpectations",
    "Posterior",
    "SampleFn",
    "Target",
    "banana",
    "diagonal_gaussian",
    "eight_schools_noncentered",
    "funnel",
    "garch11",
    "gaussian",
    "gaussian_mixture",
    "ising",
    "ising_energy",
    "ising_exact_expectations",
    "isotropic_gaussian",
    "magnetization",
    "rings",
]

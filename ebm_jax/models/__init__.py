"""Flax models with the library's parametric signatures.

A log-density model's ``model.apply`` is ``logdensity_fn(params, x) -> scalar``
(the lecture's :math:`f_\\theta`, eq. 11.3); a score model's ``model.apply`` is
``score_fn(params, x)`` with the shape of ``x``. Both take ONE sample and are
batched by ``jax.vmap(model.apply, in_axes=(None, 0))``. The restricted
Boltzmann machines add an exact block-Gibbs sampler and an exact
:math:`\\log Z` for small models.
"""

from ebm_jax.models.mlp import MLPLogDensity, MLPScore
from ebm_jax.models.rbm import BernoulliRBM, GaussianBernoulliRBM, RBMGibbsState

__all__ = [
    "BernoulliRBM",
    "GaussianBernoulliRBM",
    "MLPLogDensity",
    "MLPScore",
    "RBMGibbsState",
]

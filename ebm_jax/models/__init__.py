"""Flax models with the library's parametric signatures.

A log-density model's ``model.apply`` is ``logdensity_fn(params, x) -> scalar``
(the lecture's :math:`f_\\theta`, eq. 11.3); a score model's ``model.apply`` is
``score_fn(params, x)`` with the shape of ``x``. Both take ONE sample and are
batched by ``jax.vmap(model.apply, in_axes=(None, 0))``. The restricted
Boltzmann machines add an exact block-Gibbs sampler and an exact
:math:`\\log Z` for small models. Noise-conditional models of diffusion take
the marginal noise level too: ``model.apply(params, x, beta)`` is a score
:math:`S_w(x', \\beta)` or a log-density :math:`f_w(x', \\beta)`, and
class-conditional ones (``num_classes`` set) a label,
``model.apply(params, x, beta, label)``, whose null label
``null_label(model) == model.num_classes`` gives the unconditional model. The digit
classifier supplies features for Fréchet distances of generated digits.
"""

from ebm_jax.models.classifier import DigitClassifier, TrainedClassifier, train_digit_classifier
from ebm_jax.models.mlp import MLPLogDensity, MLPScore
from ebm_jax.models.noise_conditional import (
    DIGITS_8X8_SETTINGS,
    TOY_2D_SETTINGS,
    NoiseConditionalEnergy,
    NoiseConditionalScore,
    noise_level_features,
    null_label,
)
from ebm_jax.models.rbm import BernoulliRBM, GaussianBernoulliRBM, RBMGibbsState

__all__ = [
    "DIGITS_8X8_SETTINGS",
    "TOY_2D_SETTINGS",
    "BernoulliRBM",
    "DigitClassifier",
    "GaussianBernoulliRBM",
    "MLPLogDensity",
    "MLPScore",
    "NoiseConditionalEnergy",
    "NoiseConditionalScore",
    "RBMGibbsState",
    "TrainedClassifier",
    "noise_level_features",
    "null_label",
    "train_digit_classifier",
]

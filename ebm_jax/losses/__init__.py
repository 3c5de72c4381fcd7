"""Learning objectives: factories returning ``loss_fn(params, rng_key, batch) -> scalar``.

Maximum likelihood by contrastive divergence (§11.1): CD-k, and persistent CD
or a replay buffer, whose chains ride in an explicit loss state
(``loss(params, rng_key, batch, chains) -> (scalar, chains)``). Score
matching (§11.2.2, eq. 11.2) with the exact trace, sliced score matching
(with and without variance reduction) and denoising score matching; these use
Hyvärinen's normalisation :math:`J = \\mathbb{E}[\\tfrac12 \\|s\\|^2 +
\\operatorname{tr} \\nabla_x s]`, ONE HALF of the lecture's objective, so each
equals :math:`\\tfrac12 \\times` a Fisher divergence plus a constant.
"""

from ebm_jax.losses.contrastive import (
    NegativeChains,
    PersistentChains,
    PersistentContrastiveDivergence,
    contrastive_divergence,
    persistent_contrastive_divergence,
    run_negative_chains,
)
from ebm_jax.losses.denoising import denoising_score_matching
from ebm_jax.losses.score_matching import LossFn, score_matching, sliced_score_matching

__all__ = [
    "LossFn",
    "NegativeChains",
    "PersistentChains",
    "PersistentContrastiveDivergence",
    "contrastive_divergence",
    "denoising_score_matching",
    "persistent_contrastive_divergence",
    "run_negative_chains",
    "score_matching",
    "sliced_score_matching",
]

"""ebm_jax: a JAX functional reference implementation of energy-based models and diffusion.

The core object is an unnormalised log-density ``logdensity_fn(x) -> scalar``
(the lecture's :math:`f_\\theta`, :math:`p(x) = e^{f(x)}/Z`). Scores come from
:func:`jax.grad` (eq. 11.1); samplers are pure ``(init, step)`` pairs that move
one chain, and :func:`run_chains` runs thousands of them at once. Models are
learned by contrastive divergence or score matching (:mod:`ebm_jax.losses`,
:mod:`ebm_jax.trace`) with the optax loop of :mod:`ebm_jax.training`; their
partition functions come from :mod:`ebm_jax.partition` (annealed importance
sampling) or exactly, for small RBMs.
"""

from ebm_jax import (
    checkpoint,
    data,
    densities,
    diagnostics,
    diffusion,
    losses,
    models,
    partition,
    samplers,
    trace,
    training,
)
from ebm_jax.chains import ChainInfo, ChainResult, run_chains
from ebm_jax.scores import from_energy, score

__version__ = "0.2.0"

__all__ = [
    "ChainInfo",
    "ChainResult",
    "__version__",
    "checkpoint",
    "data",
    "densities",
    "diagnostics",
    "diffusion",
    "from_energy",
    "losses",
    "models",
    "partition",
    "run_chains",
    "samplers",
    "score",
    "trace",
    "training",
]

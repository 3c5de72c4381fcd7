"""Single-chain Markov kernels, BlackJAX-shaped: ``alg = sampler(logdensity_fn, ...)``.

``alg.init(position) -> state`` and ``alg.step(rng_key, state) -> (state, info)``
move ONE chain; :func:`ebm_jax.run_chains` runs many.
"""

from ebm_jax.samplers.base import SamplingAlgorithm
from ebm_jax.samplers.langevin import MALAInfo, MALAState, ULAInfo, ULAState, mala, ula
from ebm_jax.samplers.preconditioning import Preconditioner, make_preconditioner
from ebm_jax.samplers.proposal import MHInfo, mh_accept
from ebm_jax.samplers.random_walk import RWMHInfo, RWMHState, rwmh

__all__ = [
    "MALAInfo",
    "MALAState",
    "MHInfo",
    "Preconditioner",
    "RWMHInfo",
    "RWMHState",
    "SamplingAlgorithm",
    "ULAInfo",
    "ULAState",
    "make_preconditioner",
    "mala",
    "mh_accept",
    "rwmh",
    "ula",
]

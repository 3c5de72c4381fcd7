"""Single-chain Markov kernels, BlackJAX-shaped: ``alg = sampler(logdensity_fn, ...)``.

``alg.init(position) -> state`` and ``alg.step(rng_key, state) -> (state, info)``
move ONE chain; :func:`ebm_jax.run_chains` runs many.
"""

from ebm_jax.samplers.adaptation import (
    AdaptationInfo,
    AdaptationResult,
    AdaptationSchedule,
    DualAveragingState,
    adapt,
    dual_averaging_init,
    dual_averaging_update,
    window_schedule,
)
from ebm_jax.samplers.base import SamplingAlgorithm
from ebm_jax.samplers.gibbs import (
    BinaryGibbsState,
    binary_gibbs,
    gaussian_gibbs,
    ising_gibbs,
    metropolis_within_gibbs,
)
from ebm_jax.samplers.langevin import MALAInfo, MALAState, ULAInfo, ULAState, mala, ula
from ebm_jax.samplers.preconditioning import Preconditioner, make_preconditioner
from ebm_jax.samplers.proposal import MHInfo, mh_accept
from ebm_jax.samplers.random_walk import RWMHInfo, RWMHState, rwmh
from ebm_jax.samplers.welford import (
    WelfordState,
    welford_init,
    welford_update_batch,
    welford_variance,
)

__all__ = [
    "AdaptationInfo",
    "AdaptationResult",
    "AdaptationSchedule",
    "BinaryGibbsState",
    "DualAveragingState",
    "MALAInfo",
    "MALAState",
    "MHInfo",
    "Preconditioner",
    "RWMHInfo",
    "RWMHState",
    "SamplingAlgorithm",
    "ULAInfo",
    "ULAState",
    "WelfordState",
    "adapt",
    "binary_gibbs",
    "dual_averaging_init",
    "dual_averaging_update",
    "gaussian_gibbs",
    "ising_gibbs",
    "make_preconditioner",
    "mala",
    "metropolis_within_gibbs",
    "mh_accept",
    "rwmh",
    "ula",
    "welford_init",
    "welford_update_batch",
    "welford_variance",
    "window_schedule",
]

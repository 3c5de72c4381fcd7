"""The shape every sampler has: a pair of pure functions, BlackJAX-style."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ebm_jax.types import Array, PRNGKey


class SamplingAlgorithm(NamedTuple):
    """A single-chain Markov kernel as two pure functions.

    Attributes:
      init: ``position -> state``; validates the position and caches the
        log-density (and its gradient, for gradient-based kernels).
      step: ``(rng_key, state) -> (state, info)``; one transition of ONE chain.
        Every ``info`` has ``acceptance_rate``, ``is_accepted`` and
        ``is_nonfinite`` fields. Batch chains with ``jax.vmap`` or
        :func:`ebm_jax.run_chains`.
    """

    init: Callable[[Array], Any]
    step: Callable[[PRNGKey, Any], tuple[Any, Any]]


__all__ = ["SamplingAlgorithm"]

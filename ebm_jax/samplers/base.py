"""The shape every sampler has: a pair of pure functions, BlackJAX-style."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ebm_jax.types import Array, PRNGKey


class SamplingAlgorithm(NamedTuple):
    """A single-chain Markov kernel as two pure functions.

    The factories of this library return ``init`` and ``step`` as
    :class:`jax.tree_util.Partial` objects, so a kernel is a pytree whose
    leaves are its numbers (step size, mass matrix, ...) and whose structure
    holds its functions: :func:`ebm_jax.run_chains` traces the numbers, and a
    kernel rebuilt with new values reuses the compiled program. Any other
    object with the same two methods (BlackJAX's kernels, say) works wherever
    a kernel is expected.

    Attributes:
      init: ``position -> state``; validates the position (an array or any
        pytree of arrays) and caches the log-density (and its gradient, for
        gradient-based kernels).
      step: ``(rng_key, state) -> (state, info)``; one transition of ONE chain.
        Every ``info`` has ``acceptance_rate``, ``is_accepted`` and
        ``is_nonfinite`` fields. Batch chains with ``jax.vmap`` or
        :func:`ebm_jax.run_chains`.
    """

    init: Callable[[Array], Any]
    step: Callable[[PRNGKey, Any], tuple[Any, Any]]


__all__ = ["SamplingAlgorithm"]

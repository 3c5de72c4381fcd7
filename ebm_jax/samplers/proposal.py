"""The Metropolis-Hastings accept step shared by every MH kernel (§11.2.1).

Implements the acceptance probability of the lecture's sampler,

.. math::

   A(x, y) = \\min\\Big(1, \\frac{p(y)\\, q(x \\mid y)}{p(x)\\, q(y \\mid x)}\\Big),

in log space. A proposal whose log-density (or gradient) is NaN or infinite
gets log-acceptance :math:`-\\infty`: it is rejected and flagged in the info,
never propagated into the chain.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ebm_jax.types import Array, PRNGKey


class MHInfo(NamedTuple):
    """What one Metropolis-Hastings transition reports.

    Attributes:
      acceptance_rate: :math:`A(x, y) = \\min(1, e^{\\log r})`, 0 for a
        non-finite proposal.
      is_accepted: whether the chain moved to the proposal.
      is_nonfinite: whether the proposal's log-density or gradient was NaN or
        infinite (it is then always rejected).
    """

    acceptance_rate: Array
    is_accepted: Array
    is_nonfinite: Array


def is_finite_tree(*trees: Any) -> Array:
    """True when every leaf of every tree is finite."""
    finite = jnp.array(True)
    for leaf in (leaf for tree in trees for leaf in jax.tree.leaves(tree)):
        leaf = jnp.asarray(leaf)
        if jnp.issubdtype(leaf.dtype, jnp.inexact) and leaf.size:
            # max|x| < inf is False for NaN too (jnp.max propagates NaN): one fused
            # reduction, cheaper than a reduction over a boolean isfinite array.
            finite = finite & (jnp.max(jnp.abs(leaf)) < jnp.inf)
    return finite


def select_state(accept: Array, proposed: Any, current: Any) -> Any:
    """``proposed`` where ``accept`` else ``current``, leaf by leaf."""
    return jax.tree.map(lambda new, old: jnp.where(accept, new, old), proposed, current)


def mh_accept(
    rng_key: PRNGKey,
    log_ratio: Array,
    proposed_state: Any,
    current_state: Any,
    proposal_is_finite: Array,
) -> tuple[Any, MHInfo]:
    """Accept or reject a proposal with probability :math:`A(x, y)`.

    Args:
      rng_key: key for the uniform draw :math:`u \\sim U[0, 1]`.
      log_ratio: :math:`\\log p(y) - \\log p(x) + \\log q(x|y) - \\log q(y|x)`.
      proposed_state: the state at :math:`y`.
      current_state: the state at :math:`x`.
      proposal_is_finite: False when the proposal's log-density or gradient is
        NaN/inf; the proposal is then rejected whatever ``log_ratio`` says.

    Returns:
      ``(state, info)``: the next state and an :class:`MHInfo`.
    """
    log_uniform = jnp.log(jax.random.uniform(rng_key, dtype=jnp.result_type(log_ratio)))
    return mh_accept_with_log_uniform(
        log_uniform, log_ratio, proposed_state, current_state, proposal_is_finite
    )


def mh_accept_with_log_uniform(
    log_uniform: Array,
    log_ratio: Array,
    proposed_state: Any,
    current_state: Any,
    proposal_is_finite: Array,
) -> tuple[Any, MHInfo]:
    """:func:`mh_accept` given the uniform draw: accept when :math:`\\log u < \\log r`.

    For kernels that obtain :math:`u \\sim U(0, 1)` from a draw they make
    anyway (MALA takes it from the draw that gives its Gaussian noise), saving
    PRNG calls per step.

    Args:
      log_uniform: :math:`\\log u` with :math:`u \\sim U(0, 1)`.
      log_ratio: :math:`\\log p(y) - \\log p(x) + \\log q(x|y) - \\log q(y|x)`.
      proposed_state: the state at :math:`y`.
      current_state: the state at :math:`x`.
      proposal_is_finite: False when the proposal's log-density or gradient is
        NaN/inf; the proposal is then rejected whatever ``log_ratio`` says.

    Returns:
      ``(state, info)``: the next state and an :class:`MHInfo`.
    """
    log_ratio = jnp.where(proposal_is_finite & ~jnp.isnan(log_ratio), log_ratio, -jnp.inf)
    is_accepted = log_uniform < log_ratio
    acceptance_rate = jnp.exp(jnp.minimum(log_ratio, 0.0))
    state = select_state(is_accepted, proposed_state, current_state)
    return state, MHInfo(acceptance_rate, is_accepted, ~proposal_is_finite)


__all__ = ["MHInfo", "is_finite_tree", "mh_accept", "mh_accept_with_log_uniform", "select_state"]

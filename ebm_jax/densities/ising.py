"""The 2-D Ising model on an :math:`L \\times L` torus: the discrete energy-based model.

Spins :math:`s_i \\in \\{-1, +1\\}` live on a periodic square lattice, stored as
a float array of shape ``(L, L)``. With coupling :math:`J` and field :math:`h`
(inverse temperature absorbed, :math:`J = \\beta J_{\\text{phys}}`),

.. math::

   f(s) = J \\sum_{\\langle ij \\rangle} s_i s_j + h \\sum_i s_i, \\qquad
   p(s) = e^{f(s)} / Z(J, h),

where :math:`\\langle ij \\rangle` runs over the :math:`2L^2` nearest-neighbour
bonds of the torus, each counted once (the right and the down neighbour of
every site). The *energy* is :math:`E(s) = -f(s)`, the usual Hamiltonian
:math:`-J\\sum s_i s_j - h\\sum s_i`; the magnetisation is the mean spin
:math:`m = L^{-2} \\sum_i s_i`. :math:`Z` has no closed form here, so the target
is unnormalised; for :math:`L \\le 4` (at most :math:`2^{16}` states) it is
computed exactly by enumeration, which also gives exact samples, moments and
:func:`ising_exact_expectations`. The critical coupling of the infinite
lattice is :math:`J_c = \\tfrac12 \\log(1 + \\sqrt2) \\approx 0.4407` (Onsager 1944).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._validation import check_int
from ebm_jax.densities.base import Target, as_float_array, make_target
from ebm_jax.types import Array, ArrayLike, PRNGKey

MAX_ENUMERABLE_SIDE = 4
"""Largest side :math:`L` whose :math:`2^{L^2}` states are enumerated exactly."""


def _bond_sum(spins: Array) -> Array:
    """:math:`\\sum_{\\langle ij\\rangle} s_i s_j` over the torus, each bond once (batched)."""
    return jnp.sum(
        spins * jnp.roll(spins, 1, axis=-2) + spins * jnp.roll(spins, 1, axis=-1), axis=(-2, -1)
    )


def ising_energy(spins: ArrayLike, coupling: ArrayLike, field: ArrayLike = 0.0) -> Array:
    """The Ising energy :math:`E(s) = -J\\sum_{\\langle ij\\rangle} s_i s_j - h\\sum_i s_i = -f(s)`.

    Args:
      spins: :math:`\\pm 1` spins of shape ``(..., L, L)`` (batched over leading axes).
      coupling: :math:`J`.
      field: :math:`h`.

    Returns:
      The energies, of shape ``spins.shape[:-2]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax import densities
      >>> densities.ising_energy(jnp.ones((4, 4)), coupling=1.0)  # 2L² satisfied bonds
      Array(-32., dtype=float32)
    """
    spins, coupling, field = jnp.asarray(spins), jnp.asarray(coupling), jnp.asarray(field)
    return -(coupling * _bond_sum(spins) + field * jnp.sum(spins, axis=(-2, -1)))


def magnetization(spins: ArrayLike) -> Array:
    """The magnetisation :math:`m = L^{-2}\\sum_i s_i` (mean spin) of ``(..., L, L)`` spins.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax import densities
      >>> densities.magnetization(jnp.array([[1.0, 1.0], [1.0, -1.0]]))
      Array(0.5, dtype=float32)
    """
    return jnp.mean(jnp.asarray(spins), axis=(-2, -1))


class IsingExpectations(NamedTuple):
    """Exact expectations of the Ising model under :math:`p(s) = e^{f(s)}/Z`.

    Attributes:
      log_partition: :math:`\\log Z(J, h) = \\log \\sum_s e^{f(s)}`.
      energy: :math:`\\langle E \\rangle` with :math:`E = -f` (total, not per site).
      abs_magnetization: :math:`\\langle |m| \\rangle`.
      magnetization: :math:`\\langle m \\rangle` (0 when :math:`h = 0`).
      squared_magnetization: :math:`\\langle m^2 \\rangle`.
    """

    log_partition: float
    energy: float
    abs_magnetization: float
    magnetization: float
    squared_magnetization: float


def _float64_scalar(value: ArrayLike, name: str) -> float:
    """A finite real scalar as a Python float, without a float32 round trip."""
    as_float_array(value, name, ndim=0)
    return float(np.asarray(value, dtype=np.float64))


def _check_side(side: int) -> int:
    side = check_int(side, "side", minimum=2)
    if side > MAX_ENUMERABLE_SIDE:
        raise ValueError(
            f"side must be <= {MAX_ENUMERABLE_SIDE} for exact enumeration "
            f"(2^(side²) states), got {side}"
        )
    return side


def _all_states(side: int) -> np.ndarray:
    """Every spin configuration, shape ``(2^{L^2}, L, L)``; state ``n`` has bits of ``n``."""
    num_sites = side * side
    bits = (np.arange(2**num_sites)[:, None] >> np.arange(num_sites)) & 1
    return (2.0 * bits - 1.0).reshape(-1, side, side)


def _enumerate(side: int, coupling: float, field: float) -> tuple[np.ndarray, np.ndarray, float]:
    """All states, their log-densities :math:`f(s)` and :math:`\\log Z`, in float64."""
    states = _all_states(side)
    bonds = np.sum(
        states * np.roll(states, 1, axis=1) + states * np.roll(states, 1, axis=2), (1, 2)
    )
    log_weights = coupling * bonds + field * np.sum(states, axis=(1, 2))
    shift = np.max(log_weights)
    log_partition = float(shift + np.log(np.sum(np.exp(log_weights - shift))))
    return states, log_weights, log_partition


def ising_exact_expectations(
    side: int, coupling: ArrayLike, field: ArrayLike = 0.0
) -> IsingExpectations:
    """Exact :math:`\\log Z`, :math:`\\langle E\\rangle` and magnetisation moments by enumeration.

    Sums over all :math:`2^{L^2}` configurations in float64, so it is exact to
    rounding; :math:`L \\le 4`.

    .. math::

       \\langle g \\rangle = \\sum_s g(s)\\, e^{f(s) - \\log Z}, \\qquad
       E = -f, \\quad m = L^{-2}\\textstyle\\sum_i s_i .

    Args:
      side: lattice side :math:`2 \\le L \\le 4`.
      coupling: :math:`J`.
      field: :math:`h`.

    Returns:
      An :class:`IsingExpectations` of Python floats.

    Examples:
      >>> from ebm_jax import densities
      >>> exact = densities.ising_exact_expectations(4, coupling=0.0)
      >>> exact.energy, round(exact.log_partition, 4)  # 16 free spins: log 2^16
      (0.0, 11.0904)
    """
    side = _check_side(side)
    coupling, field = _float64_scalar(coupling, "coupling"), _float64_scalar(field, "field")
    states, log_weights, log_partition = _enumerate(side, coupling, field)
    probs = np.exp(log_weights - log_partition)
    mags = np.mean(states, axis=(1, 2))
    return IsingExpectations(
        log_partition=log_partition,
        energy=float(np.sum(probs * -log_weights)),
        abs_magnetization=float(np.sum(probs * np.abs(mags))),
        magnetization=float(np.sum(probs * mags)),
        squared_magnetization=float(np.sum(probs * mags**2)),
    )


def ising(side: int, coupling: ArrayLike, field: ArrayLike = 0.0) -> Target:
    """The Ising model on an :math:`L \\times L` torus.

    .. math:: f(s) = J \\sum_{\\langle ij\\rangle} s_i s_j + h \\sum_i s_i .

    ``logdensity_fn`` is unnormalised (``is_normalized=False``) and defined for
    any real array of shape ``(L, L)``, though only :math:`\\pm 1` arrays are
    states. For :math:`L \\le 4`, ``sample`` draws exact iid states (by
    enumeration, sampling the first half of the sites from their exact
    marginal and the rest from the exact conditional), and ``mean`` /
    ``covariance`` are exact; for larger :math:`L` they are ``None`` and
    ``sample`` raises ``NotImplementedError`` (use
    :func:`ebm_jax.samplers.ising_gibbs`).

    Args:
      side: lattice side :math:`L \\ge 2`.
      coupling: :math:`J` (ferromagnetic when positive).
      field: external field :math:`h`.

    Returns:
      A :class:`Target` with event shape ``(L, L)``; ``parameters`` holds
      ``side``, ``coupling`` and ``field``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import densities
      >>> target = densities.ising(4, coupling=0.44)
      >>> spins = target.sample(jax.random.key(0), 2)
      >>> spins.shape, bool(jnp.all(jnp.abs(spins) == 1))
      ((2, 4, 4), True)
      >>> target.logdensity_fn(jnp.ones((4, 4)))  # J · 32 bonds
      Array(14.08, dtype=float32)

    References:
      Ising (1925); Onsager (1944), *Crystal statistics. I.*, Phys. Rev. 65.
    """
    side = check_int(side, "side", minimum=2)
    coupling_array = as_float_array(coupling, "coupling", ndim=0)
    field_array = as_float_array(field, "field", ndim=0)
    dtype = jnp.result_type(coupling_array, field_array)
    coupling_array, field_array = coupling_array.astype(dtype), field_array.astype(dtype)

    def logdensity_fn(spins: Array) -> Array:
        return -ising_energy(spins, coupling_array, field_array)

    mean = covariance = None
    if side <= MAX_ENUMERABLE_SIDE:
        states, log_weights, log_partition = _enumerate(
            side, _float64_scalar(coupling, "coupling"), _float64_scalar(field, "field")
        )
        log_probs = log_weights - log_partition
        probs = np.exp(log_probs)
        flat_states = states.reshape(len(states), -1)
        site_means = probs @ flat_states
        site_covariance = (flat_states * probs[:, None]).T @ flat_states - np.outer(
            site_means, site_means
        )
        mean = jnp.asarray(site_means.reshape(side, side), dtype)
        covariance = jnp.asarray(site_covariance, dtype)
        draw = _exact_sampler(side, log_probs, dtype)
    else:

        def draw(rng_key: PRNGKey, num_samples: int) -> Array:
            raise NotImplementedError(
                f"exact Ising samples need side <= {MAX_ENUMERABLE_SIDE}, got {side}; "
                "use ebm_jax.samplers.ising_gibbs"
            )

    return make_target(
        logdensity_fn=logdensity_fn,
        draw=draw,
        event_shape=(side, side),
        is_normalized=False,
        mean=mean,
        covariance=covariance,
        name="ising",
        parameters={"side": side, "coupling": coupling_array, "field": field_array},
    )


def _exact_sampler(side: int, log_probs: np.ndarray, dtype: jnp.dtype):
    """Exact sampler over the ``2^{L^2}`` states as marginal x conditional.

    State ``n = high * 2^{low_bits} + low``: draw ``high`` from its exact
    marginal and ``low`` from its exact conditional, both by Gumbel-max on
    ``2^{L^2/2}`` log-probabilities (never a float32 cumulative sum over
    :math:`2^{16}` tiny probabilities).
    """
    num_sites = side * side
    low_bits = num_sites - num_sites // 2
    table = log_probs.reshape(-1, 2**low_bits)
    row_max = np.max(table, axis=1, keepdims=True)
    marginal = row_max[:, 0] + np.log(np.sum(np.exp(table - row_max), axis=1))
    marginal_logits = jnp.asarray(marginal, dtype)
    conditional_logits = jnp.asarray(table - marginal[:, None], dtype)
    site_bits = jnp.arange(num_sites)

    def draw(rng_key: PRNGKey, num_samples: int) -> Array:
        high_key, low_key = jax.random.split(rng_key)
        high = jax.random.categorical(high_key, marginal_logits, shape=(num_samples,))
        low = jax.random.categorical(low_key, conditional_logits[high], axis=-1)
        index = high * 2**low_bits + low
        bits = (index[:, None] >> site_bits) & 1
        return (2 * bits - 1).astype(dtype).reshape(num_samples, side, side)

    return draw


__all__ = [
    "MAX_ENUMERABLE_SIDE",
    "IsingExpectations",
    "ising",
    "ising_energy",
    "ising_exact_expectations",
    "magnetization",
]

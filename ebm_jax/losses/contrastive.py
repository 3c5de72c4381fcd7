"""Maximum likelihood by contrastive divergence: CD-k, persistent CD, replay buffers (§11.1).

Learning by minimising :math:`\\mathrm{KL}(\\hat p \\,\\|\\, p_\\theta)` is maximum
likelihood. For :math:`p_\\theta(x) = e^{f_\\theta(x)} / Z(\\theta)` the
gradient of the negative log-likelihood is a difference of two expectations,

.. math::

   \\nabla_\\theta \\big(-\\mathbb{E}_{\\hat p} \\log p_\\theta\\big)
   = -\\mathbb{E}_{\\hat p}[\\nabla_\\theta f_\\theta(x)]
     + \\mathbb{E}_{p_\\theta}[\\nabla_\\theta f_\\theta(x)],

because :math:`\\nabla_\\theta \\log Z(\\theta) = \\mathbb{E}_{p_\\theta}
[\\nabla_\\theta f_\\theta]`. The second expectation needs samples of the
model ("negatives" :math:`x^-`), drawn by a Markov kernel of
:mod:`ebm_jax.samplers`. Every loss here is the surrogate

.. math::

   L(\\theta) = \\frac1N \\sum_n f_\\theta(x^-_n) - \\frac1B \\sum_b f_\\theta(x^+_b)
   + \\alpha \\Big(\\frac1B \\sum_b f_\\theta(x^+_b)^2
   + \\frac1N \\sum_n f_\\theta(x^-_n)^2\\Big),

with gradients stopped through the negatives, so :math:`\\nabla_\\theta L` at
:math:`\\alpha = 0` is the Monte-Carlo likelihood gradient above (the value of
:math:`L` itself is not a likelihood). The optional :math:`\\alpha` term is the
energy-magnitude regulariser of Du & Mordatch (2019).

Where the negative chains start is the only difference between the methods:

* **CD-k** (:func:`contrastive_divergence`): at the data batch, ``num_steps``
  kernel steps (Hinton 2002). Biased for small ``k``; stateless.
* **Persistent CD** (:func:`persistent_contrastive_divergence`): where the
  previous update left them (Tieleman 2008), carried in an explicit
  :class:`PersistentChains` state that rides in
  :class:`ebm_jax.training.TrainState` via ``fit(..., loss_state=...)``.
* **Replay buffer** (the same function with ``num_negatives`` below the
  buffer size and ``reinit_probability > 0``): a random subset of a large
  buffer, each chain restarted from noise with a fixed probability (Du &
  Mordatch 2019, IGEBM).

A sampler is any ``sampler(params) -> SamplingAlgorithm`` moving ONE sample of
the model with parameters ``params``, e.g. ``lambda params:
ej.samplers.ula(functools.partial(logdensity_fn, params), 0.01)`` or an RBM's
exact ``rbm.block_gibbs``; by default MALA with ``step_size``. The sampler
sees ``stop_gradient(params)``, so no gradient is traced through the chains.

References:
  Hinton (2002), *Training products of experts by minimizing contrastive
  divergence*, Neural Computation 14(8).
  Tieleman (2008), *Training restricted Boltzmann machines using
  approximations to the likelihood gradient*, ICML.
  Du & Mordatch (2019), *Implicit generation and modeling with energy-based
  models*, NeurIPS, arXiv:1903.08689.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ebm_jax._validation import (
    check_callable,
    check_finite_array,
    check_int,
    check_logdensity,
    check_positive_scalar,
)
from ebm_jax.losses.score_matching import LossFn, ParametricFn, as_batch
from ebm_jax.samplers.base import SamplingAlgorithm
from ebm_jax.samplers.langevin import mala
from ebm_jax.types import Array, ArrayLike, ArrayTree, PRNGKey

SamplerFactory = Callable[[ArrayTree], SamplingAlgorithm]
"""``sampler(params) -> SamplingAlgorithm``: a kernel for one sample of the model."""

ReinitFn = Callable[[PRNGKey], Array]
"""``reinit_fn(rng_key) -> position``: one fresh chain start (e.g. noise)."""


class NegativeChains(NamedTuple):
    """The end of a batch of negative chains, with the kernel's diagnostics.

    Attributes:
      positions: ``(num_chains, *event_shape)``, gradients stopped.
      acceptance_rate: mean acceptance over all chains and steps (a scalar).
      num_nonfinite: rejected non-finite proposals over all chains and steps.
    """

    positions: Array
    acceptance_rate: Array
    num_nonfinite: Array


class PersistentChains(NamedTuple):
    """The loss state of persistent CD: the chains (or replay buffer) and counters.

    Attributes:
      positions: the buffer, ``(num_chains, *event_shape)``.
      num_updates: loss evaluations so far (int32).
      num_reinitialised: chains restarted by ``reinit_fn`` so far (int32).
      num_nonfinite: non-finite proposals rejected so far (int32).
      acceptance_rate: mean acceptance of the chains at the last update.
    """

    positions: Array
    num_updates: Array
    num_reinitialised: Array
    num_nonfinite: Array
    acceptance_rate: Array


class PersistentContrastiveDivergence(NamedTuple):
    """Persistent CD as two pure functions, optax-style.

    Attributes:
      init: ``init(initial_positions) -> PersistentChains``; validates the
        buffer, ``(num_chains, *event_shape)``, finite floating values.
      loss: ``loss(params, rng_key, batch, chains) -> (scalar, chains)``, the
        stateful form :func:`ebm_jax.training.fit` takes with ``loss_state``.
    """

    init: Callable[[ArrayLike], PersistentChains]
    loss: Callable[
        [ArrayTree, PRNGKey, ArrayLike, PersistentChains], tuple[Array, PersistentChains]
    ]


def _sampler_factory(
    logdensity_fn: ParametricFn, sampler: SamplerFactory | None, step_size: Any
) -> SamplerFactory:
    """``sampler`` as given, or MALA on ``logdensity_fn(params, .)`` with ``step_size``."""
    if sampler is not None:
        check_callable(sampler, "sampler")
        if step_size is not None:
            raise TypeError("give either sampler or step_size (MALA's step), not both")
        return sampler
    if step_size is None:
        raise TypeError(
            "give step_size (the drift step of the default MALA sampler) or a "
            "sampler(params) -> SamplingAlgorithm"
        )
    check_positive_scalar(step_size, "step_size")

    def default_sampler(params: ArrayTree) -> SamplingAlgorithm:
        return mala(lambda x: logdensity_fn(params, x), step_size)

    return default_sampler


def _check_regularization(regularization: Any) -> float:
    if isinstance(regularization, bool) or not isinstance(regularization, (int, float)):
        raise TypeError(f"regularization must be a float >= 0, got {type(regularization).__name__}")
    if not regularization >= 0 or regularization == float("inf"):
        raise ValueError(f"regularization must be a finite float >= 0, got {regularization}")
    return float(regularization)


def run_negative_chains(
    rng_key: PRNGKey, algorithm: SamplingAlgorithm, initial_positions: Array, num_steps: int
) -> NegativeChains:
    """Move every chain ``num_steps`` kernel steps (vmap over chains, scan over steps).

    Only the last positions are kept. Negatives enter the loss with gradients
    stopped, so this is the whole sampling cost of one CD update.

    Args:
      rng_key: a single key.
      algorithm: a :class:`~ebm_jax.samplers.SamplingAlgorithm` for one chain.
      initial_positions: ``(num_chains, *event_shape)``.
      num_steps: kernel steps per chain, ``>= 1``.

    Returns:
      A :class:`NegativeChains`.
    """
    num_chains = initial_positions.shape[0]
    states = jax.vmap(algorithm.init)(initial_positions)

    # Per-chain counters, summed once after the loop: a cross-chain reduction
    # every step costs a kernel launch per step on accelerators.
    def one_step(carry: tuple[Any, Array, Array], step_key: PRNGKey) -> tuple[Any, None]:
        states, accepted, nonfinite = carry
        states, info = jax.vmap(algorithm.step)(jax.random.split(step_key, num_chains), states)
        accepted = accepted + info.acceptance_rate.astype(accepted.dtype)
        nonfinite = nonfinite + info.is_nonfinite.astype(jnp.int32)
        return (states, accepted, nonfinite), None

    dtype = initial_positions.dtype
    carry = (states, jnp.zeros((num_chains,), dtype), jnp.zeros((num_chains,), jnp.int32))
    (states, accepted, nonfinite), _ = jax.lax.scan(
        one_step, carry, jax.random.split(rng_key, num_steps)
    )
    positions = jax.lax.stop_gradient(states.position)
    accepted, nonfinite = jnp.sum(accepted), jnp.sum(nonfinite)
    return NegativeChains(positions, accepted / (num_steps * num_chains), nonfinite)


def _surrogate(
    logdensity_fn: ParametricFn,
    params: ArrayTree,
    positives: Array,
    negatives: Array,
    regularization: float,
) -> Array:
    """mean f(x⁻) − mean f(x⁺) + α(mean f(x⁺)² + mean f(x⁻)²)."""
    values = jax.vmap(logdensity_fn, in_axes=(None, 0))
    positive_values = values(params, positives)
    negative_values = values(params, negatives)
    loss = jnp.mean(negative_values) - jnp.mean(positive_values)
    if regularization:
        loss = loss + regularization * (jnp.mean(positive_values**2) + jnp.mean(negative_values**2))
    return loss


def contrastive_divergence(
    logdensity_fn: ParametricFn,
    *,
    sampler: SamplerFactory | None = None,
    step_size: ArrayLike | None = None,
    num_steps: int = 1,
    regularization: float = 0.0,
) -> LossFn:
    """CD-k: negatives from ``num_steps`` kernel steps started AT the data (Hinton 2002).

    .. math::

       L(\\theta) = \\frac1B \\sum_b \\big[f_\\theta(x^-_b) - f_\\theta(x^+_b)\\big]
       + \\alpha\\, \\frac1B \\sum_b \\big[f_\\theta(x^+_b)^2 + f_\\theta(x^-_b)^2\\big],
       \\qquad x^-_b = \\operatorname{stop\\_gradient}\\big(K_\\theta^k(x^+_b)\\big),

    one chain per data point. As :math:`k \\to \\infty` the gradient tends to
    the likelihood gradient (module docstring); for small :math:`k` it is
    biased towards the data (Carreira-Perpiñán & Hinton 2005) but cheap.

    Args:
      logdensity_fn: ``(params, x) -> f(x)``, unnormalised log-density of one sample.
      sampler: ``sampler(params) -> SamplingAlgorithm`` for one sample; default
        MALA on :math:`f_\\theta` with ``step_size``.
      step_size: the default MALA's drift step :math:`\\tau` (give this or ``sampler``).
      num_steps: :math:`k`, kernel steps per update, ``>= 1``.
      regularization: :math:`\\alpha \\ge 0`.

    Returns:
      ``loss_fn(params, rng_key, batch) -> scalar``; ``batch`` has shape
      ``(batch_size, *event_shape)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import losses
      >>> logdensity_fn = lambda mean, x: -0.5 * jnp.sum((x - mean) ** 2)
      >>> loss_fn = losses.contrastive_divergence(logdensity_fn, step_size=0.5, num_steps=5)
      >>> batch = jnp.full((256, 2), 1.0)
      >>> gradient = jax.grad(loss_fn)(jnp.zeros(2), jax.random.key(0), batch)
      >>> bool(jnp.all(gradient < 0))  # pushes the mean towards the data
      True

    References:
      Hinton (2002); Carreira-Perpiñán & Hinton (2005), *On contrastive
      divergence learning*, AISTATS.
    """
    check_callable(logdensity_fn, "logdensity_fn")
    make_sampler = _sampler_factory(logdensity_fn, sampler, step_size)
    num_steps = check_int(num_steps, "num_steps", 1)
    regularization = _check_regularization(regularization)

    def loss_fn(params: ArrayTree, rng_key: PRNGKey, batch: ArrayLike) -> Array:
        positives = as_batch(batch)
        check_logdensity(lambda x: logdensity_fn(params, x), positives[0], "logdensity_fn")
        algorithm = make_sampler(jax.lax.stop_gradient(params))
        negatives = run_negative_chains(rng_key, algorithm, positives, num_steps).positions
        return _surrogate(logdensity_fn, params, positives, negatives, regularization)

    return loss_fn


def _gaussian_noise_like(position: Array) -> ReinitFn:
    def reinit_fn(rng_key: PRNGKey) -> Array:
        return jax.random.normal(rng_key, position.shape, position.dtype)

    return reinit_fn


def persistent_contrastive_divergence(
    logdensity_fn: ParametricFn,
    *,
    sampler: SamplerFactory | None = None,
    step_size: ArrayLike | None = None,
    num_steps: int = 1,
    num_negatives: int | None = None,
    reinit_probability: float = 0.0,
    reinit_fn: ReinitFn | None = None,
    regularization: float = 0.0,
) -> PersistentContrastiveDivergence:
    """Persistent CD (Tieleman 2008) and the IGEBM replay buffer (Du & Mordatch 2019).

    The state holds a buffer of :math:`M` chains. Each update

    1. picks ``num_negatives`` = :math:`N` distinct chains uniformly at random
       (all :math:`M`, in order, when :math:`N = M`: plain PCD);
    2. restarts each picked chain independently with probability
       ``reinit_probability`` :math:`\\rho` at ``reinit_fn(key)``;
    3. moves them ``num_steps`` kernel steps under the *current* parameters
       and writes them back;
    4. returns the surrogate of the module docstring with these :math:`N`
       negatives and the data batch, and the new state.

    The chains only see the parameters through the kernel, so with a small
    learning rate they stay close to the moving model and the gradient
    approaches the likelihood gradient even for ``num_steps=1``; the restarts
    of a replay buffer keep exploring modes the chains have left. The kernel
    state (e.g. MALA's cached gradient) is rebuilt from the positions each
    update, because the parameters changed.

    Args:
      logdensity_fn: ``(params, x) -> f(x)``, unnormalised log-density of one sample.
      sampler: ``sampler(params) -> SamplingAlgorithm``; default MALA with ``step_size``.
      step_size: the default MALA's drift step (give this or ``sampler``).
      num_steps: kernel steps per update, ``>= 1``.
      num_negatives: chains moved per update; default all of the buffer.
      reinit_probability: :math:`\\rho \\in [0, 1)`, e.g. 0.05 for IGEBM.
      reinit_fn: ``reinit_fn(rng_key) -> position``; default standard
        Gaussian noise of the event shape (for binary data pass e.g. a
        Bernoulli draw).
      regularization: :math:`\\alpha \\ge 0`.

    Returns:
      A :class:`PersistentContrastiveDivergence` ``(init, loss)``; train with
      ``fit(key, pcd.loss, params, optimizer, data, loss_state=pcd.init(x0), ...)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import losses
      >>> logdensity_fn = lambda mean, x: -0.5 * jnp.sum((x - mean) ** 2)
      >>> pcd = losses.persistent_contrastive_divergence(logdensity_fn, step_size=0.5)
      >>> chains = pcd.init(jnp.zeros((64, 2)))
      >>> loss, chains = pcd.loss(jnp.zeros(2), jax.random.key(0), jnp.ones((32, 2)), chains)
      >>> chains.positions.shape, int(chains.num_updates)
      ((64, 2), 1)

    References:
      Tieleman (2008); Du & Mordatch (2019), arXiv:1903.08689.
    """
    check_callable(logdensity_fn, "logdensity_fn")
    make_sampler = _sampler_factory(logdensity_fn, sampler, step_size)
    num_steps = check_int(num_steps, "num_steps", 1)
    if num_negatives is not None:
        num_negatives = check_int(num_negatives, "num_negatives", 1)
    if isinstance(reinit_probability, bool) or not isinstance(reinit_probability, (int, float)):
        raise TypeError(
            f"reinit_probability must be a float in [0, 1), got {type(reinit_probability).__name__}"
        )
    if not 0.0 <= reinit_probability < 1.0:
        raise ValueError(f"reinit_probability must be in [0, 1), got {reinit_probability}")
    if reinit_fn is not None:
        check_callable(reinit_fn, "reinit_fn")
    regularization = _check_regularization(regularization)

    def init(initial_positions: ArrayLike) -> PersistentChains:
        positions = as_batch(initial_positions)
        check_finite_array(positions, "initial_positions")
        if num_negatives is not None and num_negatives > positions.shape[0]:
            raise ValueError(
                f"num_negatives={num_negatives} exceeds the {positions.shape[0]} chains "
                "of initial_positions"
            )
        zero = jnp.zeros((), jnp.int32)
        return PersistentChains(positions, zero, zero, zero, jnp.zeros((), positions.dtype))

    def loss(
        params: ArrayTree, rng_key: PRNGKey, batch: ArrayLike, chains: PersistentChains
    ) -> tuple[Array, PersistentChains]:
        positives = as_batch(batch)
        buffer = chains.positions
        if buffer.shape[1:] != positives.shape[1:]:
            raise ValueError(
                f"the chains have event shape {buffer.shape[1:]} but the batch has "
                f"{positives.shape[1:]}"
            )
        check_logdensity(lambda x: logdensity_fn(params, x), positives[0], "logdensity_fn")
        select_key, reinit_key, chain_key = jax.random.split(rng_key, 3)

        buffer_size = buffer.shape[0]
        count = buffer_size if num_negatives is None else num_negatives
        if count == buffer_size:
            indices = jnp.arange(buffer_size)
        else:
            indices = jax.random.choice(select_key, buffer_size, (count,), replace=False)
        starts = buffer[indices]

        num_reinitialised = chains.num_reinitialised
        if reinit_probability > 0:
            coin_key, noise_key = jax.random.split(reinit_key)
            restart = jax.random.bernoulli(coin_key, reinit_probability, (count,))
            draw = reinit_fn if reinit_fn is not None else _gaussian_noise_like(starts[0])
            fresh = jax.vmap(draw)(jax.random.split(noise_key, count)).astype(starts.dtype)
            if fresh.shape != starts.shape:
                raise ValueError(
                    f"reinit_fn must return one position of shape {starts.shape[1:]}, "
                    f"got {fresh.shape[1:]}"
                )
            mask = restart.reshape((count,) + (1,) * (starts.ndim - 1))
            starts = jnp.where(mask, fresh, starts)
            num_reinitialised = num_reinitialised + jnp.sum(restart, dtype=jnp.int32)

        algorithm = make_sampler(jax.lax.stop_gradient(params))
        negatives = run_negative_chains(chain_key, algorithm, starts, num_steps)
        value = _surrogate(logdensity_fn, params, positives, negatives.positions, regularization)
        new_chains = PersistentChains(
            positions=buffer.at[indices].set(negatives.positions),
            num_updates=chains.num_updates + 1,
            num_reinitialised=num_reinitialised,
            num_nonfinite=chains.num_nonfinite + negatives.num_nonfinite,
            acceptance_rate=negatives.acceptance_rate.astype(chains.acceptance_rate.dtype),
        )
        return value, new_chains

    return PersistentContrastiveDivergence(init, loss)


__all__ = [
    "NegativeChains",
    "PersistentChains",
    "PersistentContrastiveDivergence",
    "ReinitFn",
    "SamplerFactory",
    "contrastive_divergence",
    "persistent_contrastive_divergence",
    "run_negative_chains",
]

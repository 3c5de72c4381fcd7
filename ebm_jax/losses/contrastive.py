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

A sampler is any ``sampler(params) -> kernel`` moving ONE sample of the model
with parameters ``params``, where a kernel is any object with BlackJAX's
``init(position) -> state`` / ``step(rng_key, state) -> (state, info)`` shape
and ``state.position``: e.g. ``lambda params:
ej.samplers.ula(functools.partial(logdensity_fn, params), 0.01)``, an RBM's
exact ``rbm.block_gibbs``, or ``lambda params: blackjax.mala(
functools.partial(logdensity_fn, params), 0.01)``; by default MALA with
``step_size``. The sampler sees ``stop_gradient(params)``, so no gradient is
traced through the chains. The kernel's ``info`` is read by name:
``acceptance_rate`` and ``is_nonfinite`` where present; a kernel without
``acceptance_rate`` reports a NaN acceptance, one without ``is_nonfinite``
(BlackJAX's kernels) counts no non-finite proposals.

A sample is any pytree of floating arrays (a flat array, or e.g. a dict of
arrays), as for the kernels; a batch (data, chains, replay buffer) is the
same pytree with a leading batch axis on every leaf.

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
from ebm_jax.losses.score_matching import LossFn, ParametricFn
from ebm_jax.samplers.langevin import mala
from ebm_jax.types import Array, ArrayLike, ArrayTree, PRNGKey

SamplerFactory = Callable[[ArrayTree], Any]
"""``sampler(params) -> kernel``: any object with ``init(position)`` and
``step(rng_key, state)`` (an :class:`~ebm_jax.samplers.SamplingAlgorithm`, a
BlackJAX algorithm, ...) for one sample of the model."""

ReinitFn = Callable[[PRNGKey], ArrayTree]
"""``reinit_fn(rng_key) -> position``: one fresh chain start (e.g. noise), shaped like a sample."""


class NegativeChains(NamedTuple):
    """The end of a batch of negative chains, with the kernel's diagnostics.

    Attributes:
      positions: the batch of final positions (every leaf ``(num_chains, ...)``),
        gradients stopped.
      acceptance_rate: mean acceptance over all chains and steps (a scalar);
        NaN when the kernel's ``info`` has no ``acceptance_rate``.
      num_nonfinite: rejected non-finite proposals over all chains and steps;
        0 when the kernel's ``info`` has no ``is_nonfinite`` (e.g. BlackJAX kernels).
    """

    positions: ArrayTree
    acceptance_rate: Array
    num_nonfinite: Array


class PersistentChains(NamedTuple):
    """The loss state of persistent CD: the chains (or replay buffer) and counters.

    Attributes:
      positions: the buffer, a pytree like a sample with a leading
        ``num_chains`` axis on every leaf.
      num_updates: loss evaluations so far (int32).
      num_reinitialised: chains restarted by ``reinit_fn`` so far (int32).
      num_nonfinite: non-finite proposals rejected so far (int32); only
        kernels whose ``info`` has ``is_nonfinite`` report them.
      acceptance_rate: mean acceptance of the chains at the last update (NaN
        for a kernel whose ``info`` has no ``acceptance_rate``).
    """

    positions: ArrayTree
    num_updates: Array
    num_reinitialised: Array
    num_nonfinite: Array
    acceptance_rate: Array


class PersistentContrastiveDivergence(NamedTuple):
    """Persistent CD as two pure functions, optax-style.

    Attributes:
      init: ``init(initial_positions) -> PersistentChains``; validates the
        buffer (a pytree like a sample with a leading ``num_chains`` axis on
        every leaf, finite floating values).
      loss: ``loss(params, rng_key, batch, chains) -> (scalar, chains)``, the
        stateful form :func:`ebm_jax.training.fit` takes with ``loss_state``.
    """

    init: Callable[[ArrayTree], PersistentChains]
    loss: Callable[
        [ArrayTree, PRNGKey, ArrayTree, PersistentChains], tuple[Array, PersistentChains]
    ]


# --------------------------------------------------------------------------- batches of pytrees


def _as_batch_tree(batch: ArrayTree, name: str) -> ArrayTree:
    """Floating leaves, each ``(batch_size, ...)`` with one shared ``batch_size >= 1``."""
    leaves, treedef = jax.tree.flatten(batch)
    if not leaves:
        raise ValueError(f"{name} must be an array or a pytree of arrays, got no arrays")
    arrays = []
    for leaf in leaves:
        array = jnp.asarray(leaf)
        if array.ndim < 1 or array.shape[0] < 1:
            raise ValueError(
                f"{name} must have a leading batch axis, shape (batch_size, *event_shape) "
                f"with batch_size >= 1 on every leaf, got shape {array.shape}"
            )
        if not jnp.issubdtype(array.dtype, jnp.floating):
            array = array.astype(jnp.result_type(float))
        arrays.append(array)
    sizes = sorted({array.shape[0] for array in arrays})
    if len(sizes) > 1:
        raise ValueError(
            f"every leaf of {name} must have the same leading batch size, got sizes {sizes}"
        )
    return jax.tree.unflatten(treedef, arrays)


def _batch_size(batch: ArrayTree) -> int:
    return int(jax.tree.leaves(batch)[0].shape[0])


def _first(batch: ArrayTree) -> ArrayTree:
    return jax.tree.map(lambda leaf: leaf[0], batch)


def _event_shapes(batch: ArrayTree) -> Any:
    """The shapes of one sample (a tuple for an array, the pytree of tuples otherwise)."""
    leaves, treedef = jax.tree.flatten(batch)
    shapes = [tuple(leaf.shape[1:]) for leaf in leaves]
    if jax.tree_util.treedef_is_leaf(treedef):  # a bare array
        return shapes[0]
    return jax.tree.unflatten(treedef, shapes)


def _same_events(first: ArrayTree, second: ArrayTree) -> bool:
    first_structure: Any = jax.tree.structure(first)
    return first_structure == jax.tree.structure(second) and all(
        a.shape[1:] == b.shape[1:]
        for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second), strict=True)
    )


def _float_dtype(batch: ArrayTree) -> Any:
    return jnp.result_type(*jax.tree.leaves(batch))


# --------------------------------------------------------------------------- samplers


def _check_kernel(algorithm: Any, name: str) -> None:
    """``init`` and ``step`` must be callables (BlackJAX's kernel shape)."""
    init, step = getattr(algorithm, "init", None), getattr(algorithm, "step", None)
    if not (callable(init) and callable(step)):
        raise TypeError(
            f"{name} must be a kernel with init(position) and step(rng_key, state) "
            "(e.g. ej.samplers.mala(...) or blackjax.mala(...)), "
            f"got {type(algorithm).__name__}"
        )


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
            "sampler(params) -> kernel (an object with init and step)"
        )
    check_positive_scalar(step_size, "step_size")

    def default_sampler(params: ArrayTree) -> Any:
        return mala(lambda x: logdensity_fn(params, x), step_size)

    return default_sampler


def _check_regularization(regularization: Any) -> float:
    if isinstance(regularization, bool) or not isinstance(regularization, (int, float)):
        raise TypeError(f"regularization must be a float >= 0, got {type(regularization).__name__}")
    if not regularization >= 0 or regularization == float("inf"):
        raise ValueError(f"regularization must be a finite float >= 0, got {regularization}")
    return float(regularization)


def run_negative_chains(
    rng_key: PRNGKey, algorithm: Any, initial_positions: ArrayTree, num_steps: int
) -> NegativeChains:
    """Move every chain ``num_steps`` kernel steps (vmap over chains, scan over steps).

    Only the last positions are kept. Negatives enter the loss with gradients
    stopped, so this is the whole sampling cost of one CD update.

    The kernel's ``info`` is read by name: ``acceptance_rate`` (NaN when
    absent) and ``is_nonfinite`` (counted as 0 when absent, e.g. for
    BlackJAX kernels, which reject non-finite proposals without flagging them).

    Args:
      rng_key: a single key.
      algorithm: a kernel for one chain: any object with ``init(position)``
        and ``step(rng_key, state) -> (state, info)`` whose states have
        ``.position`` (an :class:`~ebm_jax.samplers.SamplingAlgorithm`, a
        BlackJAX algorithm, ...).
      initial_positions: a pytree like one position with a leading
        ``num_chains`` axis on every leaf (an array ``(num_chains, *event_shape)``).
      num_steps: kernel steps per chain, ``>= 1``.

    Returns:
      A :class:`NegativeChains`.
    """
    _check_kernel(algorithm, "algorithm")
    num_chains = _batch_size(initial_positions)
    dtype = _float_dtype(initial_positions)
    states = jax.vmap(algorithm.init)(initial_positions)

    # Per-chain counters, summed once after the loop: a cross-chain reduction
    # every step costs a kernel launch per step on accelerators.
    def one_step(carry: tuple[Any, Array, Array], step_key: PRNGKey) -> tuple[Any, None]:
        states, accepted, nonfinite = carry
        states, info = jax.vmap(algorithm.step)(jax.random.split(step_key, num_chains), states)
        acceptance_rate = getattr(info, "acceptance_rate", None)
        if acceptance_rate is None:
            accepted = jnp.full_like(accepted, jnp.nan)
        else:
            accepted = accepted + jnp.asarray(acceptance_rate).astype(accepted.dtype)
        is_nonfinite = getattr(info, "is_nonfinite", None)
        if is_nonfinite is not None:
            nonfinite = nonfinite + jnp.asarray(is_nonfinite).astype(jnp.int32)
        return (states, accepted, nonfinite), None

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
    positives: ArrayTree,
    negatives: ArrayTree,
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
      sampler: ``sampler(params) -> kernel`` for one sample, any object with
        ``init`` / ``step`` (module docstring); default MALA on
        :math:`f_\\theta` with ``step_size``.
      step_size: the default MALA's drift step :math:`\\tau` (give this or ``sampler``).
      num_steps: :math:`k`, kernel steps per update, ``>= 1``.
      regularization: :math:`\\alpha \\ge 0`.

    Returns:
      ``loss_fn(params, rng_key, batch) -> scalar``; ``batch`` is a pytree
      like one sample with a leading ``batch_size`` axis on every leaf (an
      array ``(batch_size, *event_shape)``).

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

    def loss_fn(params: ArrayTree, rng_key: PRNGKey, batch: ArrayTree) -> Array:
        positives = _as_batch_tree(batch, "batch")
        check_logdensity(lambda x: logdensity_fn(params, x), _first(positives), "logdensity_fn")
        algorithm = make_sampler(jax.lax.stop_gradient(params))
        _check_kernel(algorithm, "sampler(params)")
        negatives = run_negative_chains(rng_key, algorithm, positives, num_steps).positions
        return _surrogate(logdensity_fn, params, positives, negatives, regularization)

    return loss_fn


def _gaussian_noise_like(position: ArrayTree) -> ReinitFn:
    """Standard Gaussian noise shaped like ``position``, independent across leaves."""
    leaves, treedef = jax.tree.flatten(position)

    def reinit_fn(rng_key: PRNGKey) -> ArrayTree:
        keys = [rng_key] if len(leaves) == 1 else list(jax.random.split(rng_key, len(leaves)))
        noise = [
            jax.random.normal(key, leaf.shape, leaf.dtype)
            for key, leaf in zip(keys, leaves, strict=True)
        ]
        return jax.tree.unflatten(treedef, noise)

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
      sampler: ``sampler(params) -> kernel``, any object with ``init`` /
        ``step`` (module docstring); default MALA with ``step_size``.
      step_size: the default MALA's drift step (give this or ``sampler``).
      num_steps: kernel steps per update, ``>= 1``.
      num_negatives: chains moved per update; default all of the buffer.
      reinit_probability: :math:`\\rho \\in [0, 1)`, e.g. 0.05 for IGEBM.
      reinit_fn: ``reinit_fn(rng_key) -> position``, a pytree like one
        sample; default standard Gaussian noise of the sample's shape (for
        binary data pass e.g. a Bernoulli draw).
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

    def init(initial_positions: ArrayTree) -> PersistentChains:
        positions = _as_batch_tree(initial_positions, "initial_positions")
        for leaf in jax.tree.leaves(positions):
            check_finite_array(leaf, "initial_positions")
        buffer_size = _batch_size(positions)
        if num_negatives is not None and num_negatives > buffer_size:
            raise ValueError(
                f"num_negatives={num_negatives} exceeds the {buffer_size} chains "
                "of initial_positions"
            )
        zero = jnp.zeros((), jnp.int32)
        acceptance_rate = jnp.zeros((), _float_dtype(positions))
        return PersistentChains(positions, zero, zero, zero, acceptance_rate)

    def loss(
        params: ArrayTree, rng_key: PRNGKey, batch: ArrayTree, chains: PersistentChains
    ) -> tuple[Array, PersistentChains]:
        positives = _as_batch_tree(batch, "batch")
        buffer = chains.positions
        if not _same_events(buffer, positives):
            raise ValueError(
                f"the chains have event shape {_event_shapes(buffer)} but the batch has "
                f"{_event_shapes(positives)}"
            )
        check_logdensity(lambda x: logdensity_fn(params, x), _first(positives), "logdensity_fn")
        select_key, reinit_key, chain_key = jax.random.split(rng_key, 3)

        buffer_size = _batch_size(buffer)
        count = buffer_size if num_negatives is None else num_negatives
        if count == buffer_size:
            indices = None
            starts = buffer
        else:
            indices = jax.random.choice(select_key, buffer_size, (count,), replace=False)
            starts = jax.tree.map(lambda leaf: leaf[indices], buffer)

        num_reinitialised = chains.num_reinitialised
        if reinit_probability > 0:
            coin_key, noise_key = jax.random.split(reinit_key)
            restart = jax.random.bernoulli(coin_key, reinit_probability, (count,))
            draw = reinit_fn if reinit_fn is not None else _gaussian_noise_like(_first(starts))
            fresh = jax.vmap(draw)(jax.random.split(noise_key, count))
            if not _same_events(fresh, starts):
                raise ValueError(
                    f"reinit_fn must return one position of shape {_event_shapes(starts)}, "
                    f"got {_event_shapes(fresh)}"
                )

            def restart_where(fresh_leaf: Array, start_leaf: Array) -> Array:
                mask = restart.reshape((count,) + (1,) * (start_leaf.ndim - 1))
                return jnp.where(mask, fresh_leaf.astype(start_leaf.dtype), start_leaf)

            starts = jax.tree.map(restart_where, fresh, starts)
            num_reinitialised = num_reinitialised + jnp.sum(restart, dtype=jnp.int32)

        algorithm = make_sampler(jax.lax.stop_gradient(params))
        _check_kernel(algorithm, "sampler(params)")
        negatives = run_negative_chains(chain_key, algorithm, starts, num_steps)
        value = _surrogate(logdensity_fn, params, positives, negatives.positions, regularization)
        if indices is None:
            positions = negatives.positions
        else:
            positions = jax.tree.map(
                lambda leaf, new: leaf.at[indices].set(new), buffer, negatives.positions
            )
        new_chains = PersistentChains(
            positions=positions,
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

"""The optax training loop: jitted ``lax.scan`` chunks, progress, checkpoint and resume.

:func:`fit` minimises a loss ``loss_fn(params, rng_key, batch) -> scalar`` — the
signature of every loss factory in :mod:`ebm_jax.losses` (score matching,
eq. 11.2; denoising, eq. 11.16) — with any :mod:`optax` optimizer. The steps
run in jitted chunks of ``lax.scan`` from a host loop, so a progress bar and a
logger see the loss between chunks and a checkpoint is written after each.
The randomness of step ``t`` is a function of ``(rng_key, t)`` alone, so the
result is **bitwise identical for any** ``chunk_size`` and a run resumed from a
checkpoint continues exactly where it stopped.

**Data parallel** when there are several devices (every process's, under
:func:`jax.distributed.initialize`, each process making the same call): the
batch is split over them along its leading axis and the parameters, their
moving average and the optimizer state are replicated (:mod:`jax.sharding`;
XLA inserts the gradient all-reduce), with no change to the call. Loss-state
leaves with a leading axis the device count divides (persistent chains, a
replay buffer) are split along it too; the rest are replicated. Each example's
randomness does not depend on the device it lands on, so the result equals the
one-device result up to the order of floating-point reductions. A
``batch_size`` the device count does not divide runs on one device.

Checkpoints are msgpack, never pickle, written atomically, so a crash
mid-write leaves the previous checkpoint intact (:mod:`ebm_jax.checkpoint`,
whose names this module re-exports). :func:`load_checkpoint` reads the whole
:class:`TrainState` back, to resume; :func:`load_params` reads only the
parameters and their moving average, to sample or evaluate without the
optimizer. Both check the file and the template first and name what is wrong.

Examples:
  >>> import os, tempfile
  >>> import jax, jax.numpy as jnp, optax
  >>> from ebm_jax import training
  >>> path = os.path.join(tempfile.mkdtemp(), "run.msgpack")
  >>> def loss_fn(params, rng_key, batch):
  ...     return 0.5 * jnp.mean((batch - params["mean"]) ** 2)
  >>> result = training.fit(
  ...     jax.random.key(0), loss_fn, {"mean": jnp.zeros(())}, optax.sgd(0.5),
  ...     jnp.arange(4.0), num_steps=6, batch_size=2, ema_decay=0.5, checkpoint_path=path)
  >>> saved = training.load_params(path, {"mean": jnp.zeros(())})
  >>> saved.step, saved.params["mean"] == result.params["mean"]
  (6, Array(True, dtype=bool))
  >>> saved.ema_params["mean"] == result.ema_params["mean"]
  Array(True, dtype=bool)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ebm_jax._progress import progress_bar
from ebm_jax._static import FunctionKey
from ebm_jax._validation import check_callable, check_finite_array, check_int, check_key
from ebm_jax.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    Checkpoint,
    SavedParams,
    TrainState,
    load_checkpoint,
    load_params,
    save_checkpoint,
)
from ebm_jax.types import Array, ArrayTree, PRNGKey

LossFn = Callable[..., Any]
"""``(params, rng_key, batch) -> loss``, or with a loss state
``(params, rng_key, batch, loss_state) -> (loss, new_loss_state)``."""

DataFn = Callable[[PRNGKey, int], ArrayTree]
"""``(rng_key, batch_size) -> batch`` with a leading ``batch_size`` axis."""

LogFn = Callable[[int, dict[str, float]], None]
"""``(step, metrics) -> None``, called on the host after each chunk."""


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      params: the trained parameters.
      opt_state: the final optimizer state.
      loss_state: the final loss state (``None`` for a stateless loss).
      losses: ``(num_steps,)`` the loss at every step, before its update
        (resumed runs include the steps done before the checkpoint).
      state: the final :class:`TrainState`, to continue from.
      ema_params: the exponential moving average of the parameters
        (``None`` unless :func:`fit` was given ``ema_decay``).
    """

    params: ArrayTree
    opt_state: optax.OptState
    loss_state: ArrayTree
    losses: Array
    state: TrainState
    ema_params: ArrayTree = None


class NonFiniteLossError(FloatingPointError):
    """The loss or the training state became NaN/inf during :func:`fit`.

    The state stopped updating at the bad step, so ``last_good_state`` is the
    state just before it (its ``step`` equals ``step``) and no checkpoint was
    written for the chunk containing it: the last checkpoint on disk is the
    last one written before.

    Attributes:
      step: the 0-based index of the first step whose loss, or whose updated
        parameters, optimizer state, loss state or parameter average, is not
        finite (a non-finite gradient makes the parameters non-finite unless
        the optimizer drops it, e.g. :func:`optax.apply_if_finite`).
      last_good_state: the :class:`TrainState` before that step.
      losses: the loss history of the steps before it.
    """

    def __init__(self, step: int, last_good_state: TrainState, losses: np.ndarray) -> None:
        super().__init__(
            f"the loss or the updated state is not finite at step {step}; training stopped. "
            "The state before that step is in .last_good_state and the last checkpoint "
            "(if any) was kept. Lower the learning rate, clip gradients "
            "(optax.clip_by_global_norm) or check the data and the model."
        )
        self.step = step
        self.last_good_state = last_good_state
        self.losses = losses


def _all_finite(tree: ArrayTree) -> Array:
    leaves = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return functools.reduce(jnp.logical_and, leaves, jnp.array(True))


_SHUFFLE_ROUNDS = 8


def _mix32(value: Array) -> Array:
    """MurmurHash3's 32-bit finaliser (Appleby 2011): a bijective avalanche of ``uint32``."""
    value = value ^ (value >> 16)
    value = value * jnp.uint32(0x85EBCA6B)
    value = value ^ (value >> 13)
    value = value * jnp.uint32(0xC2B2AE35)
    return value ^ (value >> 16)


def _index_shuffle(rng_key: PRNGKey, index: Array, num_examples: int) -> Array:
    """``perm[index]`` for a random permutation ``perm`` of ``range(num_examples)``, elementwise.

    ``index`` must lie in ``range(num_examples)`` (the walk below ends on an
    in-range value of the index's own cycle).

    A balanced Feistel network on the ``2 * half``-bit integers (the fewest
    that hold ``num_examples``, so fewer than ``4 * num_examples`` of them),
    ``_SHUFFLE_ROUNDS`` rounds with round function ``mix32(right ^ k_r) & mask``
    and round keys ``k_r`` drawn from ``rng_key``, is a bijection of that range;
    cycle-walking (applying it again while the image is ``>= num_examples``)
    restricts it to a bijection of ``range(num_examples)`` (Black & Rogaway
    2002). Each index costs O(rounds) integer operations, with no
    ``num_examples``-long sort: the construction of TensorFlow's
    ``tf.random.experimental.index_shuffle`` and of Grain's index sampler.
    """
    bits = max(2, (num_examples - 1).bit_length())
    half = (bits + 1) // 2
    mask = jnp.uint32((1 << half) - 1)
    round_keys = jax.random.bits(rng_key, (_SHUFFLE_ROUNDS,), jnp.uint32)

    def feistel(value: Array) -> Array:
        left, right = value >> half, value & mask
        for round_index in range(_SHUFFLE_ROUNDS):
            left, right = right, left ^ (_mix32(right ^ round_keys[round_index]) & mask)
        return (left << half) | right

    limit = jnp.uint32(num_examples)
    image = feistel(jnp.asarray(index, jnp.uint32))
    image = jax.lax.while_loop(
        lambda value: jnp.any(value >= limit),
        lambda value: jnp.where(value >= limit, feistel(value), value),
        image,
    )
    return image.astype(jnp.int32)


_all_finite_jit = jax.jit(_all_finite)


def _ema_update(ema_params: ArrayTree, params: ArrayTree, ema_decay: Array) -> ArrayTree:
    """``ema_decay * ema_params + (1 - ema_decay) * params``, leaf by leaf.

    Computed in at least float32 (a decay such as 0.9999 rounds to 1 in
    bfloat16) and stored in the parameters' dtype.
    """

    def update(average: Array, new: Array) -> Array:
        dtype = jnp.promote_types(average.dtype, jnp.float32)
        decay = ema_decay.astype(dtype)
        mixed = decay * average.astype(dtype) + (1 - decay) * new.astype(dtype)
        return mixed.astype(average.dtype)

    return jax.tree.map(update, ema_params, params)


@functools.partial(
    jax.jit,
    static_argnames=(
        "loss_fn",
        "optimizer_update",
        "data_fn",
        "batch_size",
        "num_chunk_steps",
        "stateful",
        "mesh",
        "checked",
    ),
)
def _run_chunk(
    state: TrainState,
    rng_key: PRNGKey,
    dataset: ArrayTree | None,
    ema_decay: Array | None,
    *,
    loss_fn: LossFn,
    optimizer_update: FunctionKey,
    data_fn: DataFn | None,
    batch_size: int,
    num_chunk_steps: int,
    stateful: bool,
    mesh: Mesh | None,
    checked: bool,
) -> tuple[TrainState, Array, Array]:
    """``num_chunk_steps`` optimizer steps from ``state.step``.

    With ``ema_decay`` (a traced scalar, so a new decay does not compile
    again), each step also updates ``state.ema_params``.

    Returns the state, the per-step losses and a step index. Unchecked (the
    fast path), the steps run unguarded and the index is the first step whose
    loss is not finite, or ``num_chunk_steps + state.step`` if the final
    state is not finite, or ``-1``. Checked (the replay of a chunk that went
    bad), every updated state is tested and frozen from the first step whose
    loss or updated state is not finite, and the index is that step (``-1`` if
    none). Both paths compute the same steps in the same order.
    """
    step_root, epoch_root = jax.random.split(rng_key)
    start = state.step

    steps = start + jnp.arange(num_chunk_steps, dtype=start.dtype)
    if dataset is not None:
        num_examples = jax.tree.leaves(dataset)[0].shape[0]
        steps_per_epoch = num_examples // batch_size

        # Epoch e visits the examples in a random order that is a function of
        # (epoch_root, e) alone, so chunks may start anywhere in an epoch. The whole
        # chunk's indices are drawn up front: a loop inside the step would cost more.
        def step_indices(step: Array) -> Array:
            epoch, position = jnp.divmod(step, steps_per_epoch)
            slots = position * batch_size + jnp.arange(batch_size, dtype=position.dtype)
            return _index_shuffle(jax.random.fold_in(epoch_root, epoch), slots, num_examples)

        chunk_indices = jax.vmap(step_indices)(steps)
    else:
        chunk_indices = jnp.zeros((num_chunk_steps, 0), jnp.int32)

    def body(
        carry: tuple[TrainState, Array], step_and_indices: tuple[Array, Array]
    ) -> tuple[tuple[TrainState, Array], Array]:
        state, bad_step = carry
        step, indices = step_and_indices
        batch_key, loss_key = jax.random.split(jax.random.fold_in(step_root, step))
        if dataset is None:
            assert data_fn is not None
            batch = data_fn(batch_key, batch_size)
        else:
            batch = jax.tree.map(lambda leaf: jnp.take(leaf, indices, axis=0), dataset)
        batch = _constrain(batch, mesh, split=True)

        if stateful:
            (loss, loss_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state.params, loss_key, batch, state.loss_state
            )
        else:
            loss, grads = jax.value_and_grad(loss_fn)(state.params, loss_key, batch)
            loss_state = state.loss_state
        updates, opt_state = optimizer_update.function(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema_params = None
        if ema_decay is not None:
            ema_params = _constrain(
                _ema_update(state.ema_params, params, ema_decay), mesh, split=False
            )
        updated = TrainState(
            state.step + 1, params, opt_state, _constrain_loss_state(loss_state, mesh), ema_params
        )
        if checked:
            finite = jnp.isfinite(loss) & _all_finite(updated)
            keep_going = finite & (bad_step < 0)
            state = jax.tree.map(lambda new, old: jnp.where(keep_going, new, old), updated, state)
        else:
            # Unguarded: a per-step test and select of the whole state costs 15-30% of a
            # small model's step. A bad chunk is replayed checked (see fit).
            finite = jnp.isfinite(loss)
            state = updated
        bad_step = jnp.where((bad_step < 0) & ~finite, step, bad_step)
        return (state, bad_step), loss

    carry = (state, jnp.array(-1, start.dtype))
    (state, bad_step), losses = jax.lax.scan(body, carry, (steps, chunk_indices))
    if not checked:
        end = start + num_chunk_steps
        bad_step = jnp.where((bad_step < 0) & ~_all_finite(state), end, bad_step)
    return state, losses, bad_step


def _data_mesh(batch_size: int) -> Mesh | None:
    """A 1-d mesh of every device (all processes'), or ``None`` (one device, uneven split)."""
    devices = jax.devices()
    if len(devices) < 2 or batch_size % len(devices):
        return None
    return Mesh(np.array(devices), ("data",))


def _splits(leaf: Any, mesh: Mesh) -> bool:
    shape = jnp.shape(leaf)
    return len(shape) >= 1 and shape[0] % mesh.size == 0


def _sharding(mesh: Mesh, *, split: bool) -> NamedSharding:
    """Split along the leading axis over ``mesh``, or replicated on it."""
    return NamedSharding(mesh, PartitionSpec("data") if split else PartitionSpec())


def _constrain(tree: Any, mesh: Mesh | None, *, split: bool) -> Any:
    """Inside jit: split ``tree`` along its leading axis over ``mesh``, or replicate it."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, _sharding(mesh, split=split))


def _constrain_loss_state(loss_state: Any, mesh: Mesh | None) -> Any:
    if mesh is None:
        return loss_state
    return jax.tree.map(lambda leaf: _constrain(leaf, mesh, split=_splits(leaf, mesh)), loss_state)


def _place(state: TrainState, mesh: Mesh | None) -> TrainState:
    """On the host: replicate params, their average and the optimizer state; split the chains."""
    if mesh is None:
        return state

    replicated = jax.device_put(state._replace(loss_state=None), _sharding(mesh, split=False))
    loss_state = jax.tree.map(
        lambda leaf: jax.device_put(leaf, _sharding(mesh, split=_splits(leaf, mesh))),
        state.loss_state,
    )
    return replicated._replace(loss_state=loss_state)


def _check_optimizer(optimizer: Any) -> None:
    if not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            "optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), "
            f"got {type(optimizer).__name__}"
        )


def _check_ema_decay(ema_decay: Any) -> float | None:
    """``None``, or a real number in ``[0, 1)`` as a Python float."""
    if ema_decay is None:
        return None
    if isinstance(ema_decay, bool) or not isinstance(ema_decay, (int, float, np.number)):
        raise TypeError(
            f"ema_decay must be a float in [0, 1) or None, got {type(ema_decay).__name__}"
        )
    value = float(ema_decay)
    if not 0.0 <= value < 1.0:  # NaN fails too
        raise ValueError(f"ema_decay must be a float in [0, 1) or None, got {ema_decay!r}")
    return value


def _check_params(params: Any) -> None:
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params must be a non-empty pytree of arrays")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"params must hold floating-point arrays, got dtype {jnp.result_type(leaf)}"
            )
        check_finite_array(leaf, "params")


def _prepare_data(
    data: Any, batch_size: int, rng_key: PRNGKey
) -> tuple[ArrayTree | None, DataFn | None, ArrayTree, int]:
    """The dataset (or data function), the abstract batch, and the number of examples.

    ``num_examples`` is ``-1`` for a data function.
    """
    if callable(data):
        try:
            batch = jax.eval_shape(lambda key: data(key, batch_size), rng_key)
        except Exception as exc:  # re-raised with the argument named
            raise ValueError(f"data(rng_key, batch_size={batch_size}) failed: {exc}") from exc
        for leaf in jax.tree.leaves(batch):
            if leaf.shape[:1] != (batch_size,):
                raise ValueError(
                    f"data(rng_key, batch_size) must return arrays with a leading axis of "
                    f"batch_size={batch_size}, got shape {leaf.shape}"
                )
        return None, data, batch, -1

    if isinstance(data, (list, np.ndarray, jax.Array)):
        data = jnp.asarray(data)
    leaves = jax.tree.leaves(data)
    if not leaves or any(not isinstance(leaf, (np.ndarray, jax.Array)) for leaf in leaves):
        raise TypeError(
            "data must be an array of shape (num_examples, *event_shape), a pytree of such "
            "arrays, or a function data(rng_key, batch_size) -> batch; "
            f"got {type(data).__name__}"
        )
    dataset = jax.tree.map(jnp.asarray, data)
    leaves = jax.tree.leaves(dataset)
    if any(leaf.ndim == 0 for leaf in leaves):
        raise ValueError("data arrays must have a leading num_examples axis; got a scalar")
    num_examples = leaves[0].shape[0]
    if any(leaf.shape[0] != num_examples for leaf in leaves):
        raise ValueError(
            "data arrays must share their leading num_examples axis, got shapes "
            f"{[leaf.shape for leaf in leaves]}"
        )
    if num_examples == 0:
        raise ValueError("data is empty: it has 0 examples")
    if batch_size > num_examples:
        raise ValueError(
            f"batch_size={batch_size} is larger than the dataset (num_examples={num_examples}); "
            "minibatches are drawn without replacement"
        )
    inexact = [leaf for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    # Reduced where the data lives: only a flag comes back, not the dataset.
    if inexact and not bool(_all_finite_jit(inexact)):
        raise ValueError("data must be finite (it contains NaN or inf)")
    batch = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct((batch_size, *leaf.shape[1:]), leaf.dtype), dataset
    )
    return dataset, None, batch, num_examples


def _check_loss(
    loss_fn: LossFn, params: ArrayTree, rng_key: PRNGKey, batch: ArrayTree, loss_state: ArrayTree
) -> np.dtype:
    """``loss_fn`` returns a real scalar (and a matching loss state); returns its dtype."""
    stateful = loss_state is not None
    arguments = (params, rng_key, batch, loss_state) if stateful else (params, rng_key, batch)
    try:
        output = jax.eval_shape(loss_fn, *arguments)
    except Exception as exc:  # re-raised with the argument named
        form = "(params, rng_key, batch, loss_state)" if stateful else "(params, rng_key, batch)"
        raise ValueError(f"loss_fn{form} failed on one batch: {exc}") from exc
    if stateful:
        if not isinstance(output, (tuple, list)) or len(output) != 2:
            raise ValueError(
                "with loss_state, loss_fn must return (loss, new_loss_state), "
                f"got {type(output).__name__}"
            )
        loss, new_loss_state = output
        expected = jax.eval_shape(lambda: loss_state)
        new_structure = jax.tree.structure(new_loss_state)
        same_structure = new_structure == jax.tree.structure(expected)  # type: ignore[operator]
        if not same_structure or any(
            (new.shape, new.dtype) != (old.shape, old.dtype)
            for new, old in zip(
                jax.tree.leaves(new_loss_state), jax.tree.leaves(expected), strict=True
            )
        ):
            raise ValueError(
                "loss_fn must return a new_loss_state with the structure, shapes and dtypes "
                f"of loss_state: got {new_loss_state}, expected {expected}"
            )
    else:
        loss = output
    if not hasattr(loss, "shape") or loss.shape != ():
        shape = getattr(loss, "shape", type(loss).__name__)
        raise ValueError(f"loss_fn must return a scalar loss, got shape {shape}")
    if not jnp.issubdtype(loss.dtype, jnp.floating):
        raise TypeError(f"loss_fn must return a floating-point loss, got dtype {loss.dtype}")
    return np.dtype(loss.dtype)


def fit(
    rng_key: PRNGKey,
    loss_fn: LossFn,
    params: ArrayTree,
    optimizer: optax.GradientTransformation,
    data: ArrayTree | DataFn,
    *,
    num_steps: int,
    batch_size: int,
    chunk_size: int = 100,
    loss_state: ArrayTree = None,
    ema_decay: float | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool | None = None,
    log_fn: LogFn | None = None,
) -> FitResult:
    """Minimise a minibatch loss with an optax optimizer, in jitted ``lax.scan`` chunks.

    Each step draws a batch :math:`B_t` and a key :math:`\\xi_t`, evaluates
    the loss and its gradient, and applies the optimizer:

    .. math::

       g_t = \\nabla_\\theta L(\\theta_t; \\xi_t, B_t), \\qquad
       (u_t, o_{t+1}) = \\mathrm{update}(g_t, o_t, \\theta_t), \\qquad
       \\theta_{t+1} = \\theta_t + u_t,

    a stochastic-gradient estimate of the lecture's "learning = minimise a
    divergence" (§11.1), e.g. the score-matching objective (11.2) or the
    denoising objective (11.16). With ``rng_key`` split into
    ``(step_root, epoch_root)``, step ``t`` uses
    ``batch_key, loss_key = split(fold_in(step_root, t))``; with an array
    dataset, epoch ``e`` visits the examples in a random order drawn from
    ``fold_in(epoch_root, e)``, ``batch_size`` at a time, dropping the
    incomplete last batch (each example at most once per epoch). The order is
    a keyed bijection of ``range(num_examples)`` evaluated index by index
    (a Feistel network with cycle-walking, the construction of TensorFlow's
    ``index_shuffle``), so no epoch-long permutation is sorted on the device.
    Results therefore depend on ``rng_key`` only, not on ``chunk_size`` nor
    on where a run was interrupted and resumed.

    Parameter average. With ``ema_decay`` :math:`= \\lambda`, an exponential
    moving average of the parameters is kept beside them, started at the
    initial parameters and updated after every optimizer step:

    .. math::

       \\bar\\theta_0 = \\theta_0, \\qquad
       \\bar\\theta_{t+1} = \\lambda \\bar\\theta_t + (1 - \\lambda)\\, \\theta_{t+1},
       \\quad\\text{so}\\quad
       \\bar\\theta_t = \\lambda^t \\theta_0
       + (1 - \\lambda) \\sum_{s=1}^{t} \\lambda^{t-s} \\theta_s,

    a weighted mean of the iterates over the last :math:`\\sim 1/(1 - \\lambda)`
    steps (Polyak averaging with exponential forgetting). It trains nothing:
    ``params`` and the losses are those of the same run without it. There is
    no bias correction: :math:`\\theta_0` keeps the weight
    :math:`\\lambda^t \\approx e^{-t(1 - \\lambda)}`, below 0.001 after
    :math:`6.9/(1 - \\lambda)` steps, so run many times :math:`1/(1 - \\lambda)`
    steps. Diffusion models are sampled with it (Ho et al. 2020:
    :math:`\\lambda = 0.9999`; Song & Ermon 2020: 0.999). The average lives in
    :class:`TrainState`, so checkpoints carry it and a resumed run continues
    it bit for bit; it has the parameters' dtype (updated in at least
    float32) and costs one fused multiply-add per parameter and step.

    Compilation. Numbers that are arrays (``params``, the optimizer state,
    ``loss_state``, the dataset, ``rng_key``) are data: new values never
    recompile. The chunk function compiles again only for

    - a new ``loss_fn`` or ``data`` function object (compared by identity:
      build them once and reuse them);
    - an optimizer whose ``update`` computes something else. Optimizers are
      compared by what their ``update`` closes over, not by identity: two
      ``optax.adam(1e-3)`` built separately share a compilation, but
      ``optax.adam(1e-3)`` and ``optax.adam(2e-3)`` do not, because optax
      closes over the learning rate as a Python float, a constant of the
      compiled program. To sweep hyperparameters without compiling, build the
      optimizer with :func:`optax.inject_hyperparams`, e.g.
      ``optax.inject_hyperparams(optax.adam)(learning_rate=rate)``: the
      numbers then live in the optimizer state, so every rate shares one
      compilation. A schedule (a callable hyperparameter) stays part of the
      program: a new schedule object compiles again;
    - new shapes, dtypes or pytree structures of ``params``, the optimizer
      state, ``loss_state`` or the data (including the number of examples),
      a new ``batch_size``, switching between a stateful and a stateless
      loss, or turning the parameter average on or off (a new ``ema_decay``
      does not compile again);
    - a new chunk length: every chunk has ``chunk_size`` steps except a
      shorter last one (``num_steps`` not a multiple of ``chunk_size``),
      which compiles once more; a multiple avoids it.

    Besides, the :func:`jax.eval_shape` check of ``loss_fn``'s output traces
    it (without compiling) for new shapes or a new ``loss_fn``.

    Non-finite values. The steps of a chunk run unguarded; the chunk records
    whether a loss, or its final state, is NaN/inf. If so, the chunk is run
    again from its start with every step checked (same keys and batches, so
    the same steps), and the state stops updating at the first step whose
    loss or updated state (parameters, optimizer state, loss state, parameter
    average) is not finite; a :class:`NonFiniteLossError` is then raised
    naming the step and carrying the last good state, and no checkpoint is
    written for that chunk, so the previous one stays on disk. A chunk that runs clean costs
    no per-step check.

    Args:
      rng_key: a single key (``jax.random.key(seed)``).
      loss_fn: ``loss_fn(params, rng_key, batch) -> scalar``, as returned by
        the :mod:`ebm_jax.losses` factories; with ``loss_state``,
        ``loss_fn(params, rng_key, batch, loss_state) -> (loss, new_loss_state)``
        (differentiated in ``params`` only; e.g. persistent contrastive
        divergence, whose sampler chains ride in the loss state).
      params: the initial parameters (finite floating arrays).
      optimizer: an :class:`optax.GradientTransformation`.
      data: an array dataset of shape ``(num_examples, *event_shape)`` (or a
        pytree of arrays sharing the leading axis), sampled in minibatches
        without replacement; or a function ``data(rng_key, batch_size) ->
        batch``, e.g. a toy sampler, drawing a fresh batch every step.
      num_steps: total optimizer steps (including those of a resumed
        checkpoint).
      batch_size: examples per step (``<= num_examples`` for a dataset).
      chunk_size: steps per jitted chunk; progress, logging and checkpoints
        happen between chunks. Does not change the result.
      loss_state: the initial loss state; ``None`` for a stateless loss
        (pass ``()`` for a stateful loss with nothing to carry).
      ema_decay: the decay :math:`\\lambda \\in [0, 1)` of the moving average
        of the parameters, returned as ``FitResult.ema_params`` (e.g. 0.999);
        ``None`` (default) keeps none.
      checkpoint_path: if given, the run is checkpointed there after every
        chunk (see :func:`save_checkpoint`; with several processes, process 0
        writes the whole state, a loss state split over them included).
      resume: if ``checkpoint_path`` exists, continue from it (its
        ``batch_size``, dataset size, ``rng_key`` and ``ema_decay`` must
        match: a checkpoint written without a parameter average does not
        resume into a run with ``ema_decay`` set, nor the reverse); otherwise
        start afresh and overwrite it. The optimizer state is restored too, so
        hyperparameters injected with :func:`optax.inject_hyperparams` come
        from the checkpoint, not from ``optimizer``.
      progress: show a tqdm bar with the running loss; default only on a
        terminal. Silently off when tqdm is not installed.
      log_fn: ``log_fn(step, metrics)``, called after each chunk with
        ``metrics = {"step": steps done, "loss": mean loss over the chunk}``.

    Returns:
      A :class:`FitResult`.

    Raises:
      NonFiniteLossError: the loss or the training state became NaN/inf.
      ValueError: before any compilation, if ``loss_fn`` fails or returns a
        non-scalar on one batch, e.g. a :mod:`ebm_jax.losses` loss whose model
        was initialised on a whole batch (the loss says so and how to fix it);
        if ``ema_decay`` is not in ``[0, 1)``; or if the checkpoint at
        ``checkpoint_path`` was written by a different run (``batch_size``,
        dataset size, ``rng_key`` or ``ema_decay``).

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from ebm_jax import training
      >>> data = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 0.0]])
      >>> def loss_fn(params, rng_key, batch):
      ...     return 0.5 * jnp.mean(jnp.sum((batch - params["mean"]) ** 2, axis=-1))
      >>> result = training.fit(
      ...     jax.random.key(0), loss_fn, {"mean": jnp.zeros(2)}, optax.sgd(0.5), data,
      ...     num_steps=60, batch_size=3)
      >>> result.params["mean"].round(2), result.losses.shape
      (Array([3., 2.], dtype=float32), (60,))

      With a parameter average: SGD at rate 1 on :math:`-w` gives
      :math:`w_t = t`, so :math:`\\bar w_3 = (1 - \\lambda)(\\lambda^2 + 2\\lambda + 3)`:

      >>> result = training.fit(
      ...     jax.random.key(0), lambda params, rng_key, batch: -params["w"],
      ...     {"w": jnp.zeros(())}, optax.sgd(1.0), data, num_steps=3, batch_size=1,
      ...     ema_decay=0.5)
      >>> result.params["w"], result.ema_params["w"]
      (Array(3., dtype=float32), Array(2.125, dtype=float32))

    References:
      Robbins & Monro (1951), *A stochastic approximation method*; Kingma & Ba
      (2015), *Adam: a method for stochastic optimization*, arXiv:1412.6980;
      Black & Rogaway (2002), *Ciphers with arbitrary finite domains*, CT-RSA
      (cycle-walking); Luby & Rackoff (1988), *How to construct pseudorandom
      permutations from pseudorandom functions*, SIAM J. Comput. 17(2).
      Polyak & Juditsky (1992), *Acceleration of stochastic approximation by
      averaging*, SIAM J. Control Optim. 30(4); Ho, Jain & Abbeel (2020),
      *Denoising diffusion probabilistic models*, NeurIPS, arXiv:2006.11239;
      Song & Ermon (2020), *Improved techniques for training score-based
      generative models*, NeurIPS, arXiv:2006.09011.
    """
    num_steps, batch_size, chunk_size, ema_decay = _check_fit_arguments(
        rng_key, loss_fn, params, optimizer, num_steps, batch_size, chunk_size, ema_decay,
        log_fn, checkpoint_path,
    )  # fmt: skip
    dataset, data_fn, batch, num_examples = _prepare_data(data, batch_size, rng_key)
    loss_dtype = _check_loss(loss_fn, params, rng_key, batch, loss_state)

    state = TrainState(
        jnp.zeros((), jnp.int32),
        params,
        optimizer.init(params),
        loss_state,
        None if ema_decay is None else params,
    )
    metadata = _run_metadata(batch_size, num_examples, rng_key, ema_decay)
    state, history = _start_or_resume(
        state, checkpoint_path, resume, metadata, num_steps, loss_dtype
    )

    mesh = _data_mesh(batch_size)
    state, dataset, decay = _place_run(state, dataset, ema_decay, mesh)
    run = functools.partial(
        _run_chunk,
        loss_fn=loss_fn,
        optimizer_update=FunctionKey(optimizer.update),
        data_fn=data_fn,
        batch_size=batch_size,
        stateful=loss_state is not None,
        mesh=mesh,
    )
    state = _train_chunks(
        run, state, (rng_key, dataset, decay), history,
        num_steps=num_steps, chunk_size=chunk_size, checkpoint_path=checkpoint_path,
        metadata=metadata, progress=progress, log_fn=log_fn,
    )  # fmt: skip

    losses = jnp.asarray(np.concatenate(history))
    return FitResult(
        state.params, state.opt_state, state.loss_state, losses, state, state.ema_params
    )


def _check_fit_arguments(
    rng_key: Any,
    loss_fn: Any,
    params: Any,
    optimizer: Any,
    num_steps: Any,
    batch_size: Any,
    chunk_size: Any,
    ema_decay: Any,
    log_fn: Any,
    checkpoint_path: Any,
) -> tuple[int, int, int, float | None]:
    """:func:`fit`'s arguments checked, naming the bad one; the numbers as Python numbers."""
    check_key(rng_key)
    check_callable(loss_fn, "loss_fn")
    _check_optimizer(optimizer)
    num_steps = check_int(num_steps, "num_steps", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    chunk_size = check_int(chunk_size, "chunk_size", 1)
    ema_decay = _check_ema_decay(ema_decay)
    if log_fn is not None:
        check_callable(log_fn, "log_fn")
    _check_params(params)
    if checkpoint_path is not None:
        directory = os.path.dirname(os.path.abspath(checkpoint_path))
        if not os.path.isdir(directory):
            raise ValueError(f"checkpoint_path's directory {directory} does not exist")
    return num_steps, batch_size, chunk_size, ema_decay


def _run_metadata(
    batch_size: int, num_examples: int, rng_key: PRNGKey, ema_decay: float | None
) -> dict[str, Any]:
    """The header entries a checkpoint must share with the run that resumes from it."""
    return {
        "batch_size": batch_size,
        "num_examples": num_examples,
        "rng_key": np.asarray(jax.random.key_data(rng_key)).ravel(),
        "ema_decay": ema_decay,
    }


def _start_or_resume(
    state: TrainState,
    checkpoint_path: str | os.PathLike[str] | None,
    resume: bool,
    metadata: dict[str, Any],
    num_steps: int,
    loss_dtype: np.dtype,
) -> tuple[TrainState, list[np.ndarray]]:
    """The initial ``state`` and an empty loss history, or the checkpoint's to resume from.

    The history's length is the number of steps done: the checkpoint's losses
    are checked to be one per step.
    """
    if checkpoint_path is None or not resume or not os.path.exists(checkpoint_path):
        return state, [np.zeros((0,), loss_dtype)]
    checkpoint = load_checkpoint(checkpoint_path, state, expected_metadata=metadata)
    state, history = checkpoint.state, [checkpoint.losses.astype(loss_dtype)]
    if int(state.step) > num_steps:
        raise ValueError(
            f"checkpoint_path {checkpoint_path!s} already holds {int(state.step)} steps, "
            f"more than num_steps={num_steps}"
        )
    if len(checkpoint.losses) != int(state.step):
        raise ValueError(
            f"checkpoint_path {checkpoint_path!s} is inconsistent: "
            f"{len(checkpoint.losses)} losses for {int(state.step)} steps"
        )
    return state, history


def _place_run(
    state: TrainState, dataset: ArrayTree | None, ema_decay: float | None, mesh: Mesh | None
) -> tuple[TrainState, ArrayTree | None, Array | None]:
    """The state, the dataset and the decay, on ``mesh``'s devices when there is a mesh."""
    state = _place(state, mesh)
    if mesh is not None and dataset is not None:
        dataset = jax.device_put(dataset, _sharding(mesh, split=False))
    # An array, so that the decay is data of the compiled chunk, not a constant.
    decay = None if ema_decay is None else jnp.asarray(ema_decay, jnp.result_type(float))
    if mesh is not None and decay is not None:
        decay = jax.device_put(decay, _sharding(mesh, split=False))
    return state, dataset, decay


def _train_chunks(
    run: Callable[..., tuple[TrainState, Array, Array]],
    state: TrainState,
    inputs: tuple[PRNGKey, ArrayTree | None, Array | None],
    history: list[np.ndarray],
    *,
    num_steps: int,
    chunk_size: int,
    checkpoint_path: str | os.PathLike[str] | None,
    metadata: dict[str, Any],
    progress: bool | None,
    log_fn: LogFn | None,
) -> TrainState:
    """The chunks from the steps in ``history`` to ``num_steps``; their losses join ``history``.

    ``run(state, *inputs, num_chunk_steps=..., checked=...)`` runs one chunk.
    After each, the run is checkpointed, the progress bar advanced and
    ``log_fn`` called.
    """
    done = sum(len(losses) for losses in history)
    bar = progress_bar(progress, num_steps, desc="fit", initial=done)
    try:
        while done < num_steps:
            length = min(chunk_size, num_steps - done)
            state, chunk_losses = _finite_chunk(run, state, inputs, length, history, done)
            history.append(chunk_losses)
            done += length
            mean_loss = float(np.mean(chunk_losses))
            if checkpoint_path is not None:
                save_checkpoint(checkpoint_path, state, np.concatenate(history), metadata=metadata)
            if bar is not None:
                bar.update(length)
                bar.set_postfix(loss=f"{mean_loss:.4g}")
            if log_fn is not None:
                log_fn(done, {"step": done, "loss": mean_loss})
    finally:
        if bar is not None:
            bar.close()
    return state


def _finite_chunk(
    run: Callable[..., tuple[TrainState, Array, Array]],
    state: TrainState,
    inputs: tuple[PRNGKey, ArrayTree | None, Array | None],
    length: int,
    history: list[np.ndarray],
    done: int,
) -> tuple[TrainState, np.ndarray]:
    """One chunk of ``length`` steps from step ``done``: its state and losses, all finite.

    Raises:
      NonFiniteLossError: a loss or an updated state of the chunk is not
        finite; it carries the state before that step and the losses before it.
    """
    new_state, chunk_losses, bad_step = run(state, *inputs, num_chunk_steps=length, checked=False)
    if int(bad_step) >= 0:
        # Replay the chunk from its start, guarded: same keys, same batches, so
        # the same steps up to the first bad one, where the state freezes.
        new_state, chunk_losses, bad_step = run(
            state, *inputs, num_chunk_steps=length, checked=True
        )
    losses = np.asarray(chunk_losses)
    bad = int(bad_step)
    if bad >= 0:
        good = np.concatenate([*history, losses[: bad - done]])
        raise NonFiniteLossError(bad, new_state, good)
    return new_state, losses


__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "DataFn",
    "FitResult",
    "LogFn",
    "LossFn",
    "NonFiniteLossError",
    "SavedParams",
    "TrainState",
    "fit",
    "load_checkpoint",
    "load_params",
    "save_checkpoint",
]

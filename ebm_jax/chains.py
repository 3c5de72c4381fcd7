"""Many chains at once: ``vmap`` over chains, ``lax.scan`` over steps, ``jit``.

:func:`run_chains` moves any single-chain :class:`~ebm_jax.samplers.SamplingAlgorithm`
for thousands of chains in parallel. The steps run in jitted chunks from a
host loop, so a progress bar can report steps per second, yet the result is
**bitwise identical for any chunk size**: the key of chain ``c`` at step ``t``
is ``fold_in(split(rng_key, num_chains)[c], t)``, a function of ``(c, t)``
alone. When several local devices are present the chains are sharded across
them with :mod:`jax.sharding` (each chain's numbers do not depend on where it
runs). Across hosts, call :func:`jax.distributed.initialize` first and pass each
host its own slice of ``initial_positions`` with a host-specific key.
"""

from __future__ import annotations

import functools
import math
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ebm_jax import _static
from ebm_jax._progress import progress_bar
from ebm_jax._validation import check_int, check_key
from ebm_jax.types import Array, ArrayTree, PRNGKey

Collect = Literal["samples", "stats"]

_INFO_FIELDS = ("acceptance_rate", "is_accepted", "is_nonfinite", "is_divergent")
"""The info fields read by name; a kernel that lacks one has it reported as absent."""


class ChainInfo(NamedTuple):
    """Per-draw sampler info kept by ``run_chains(..., collect_info=True)``.

    Each field is ``(num_chains, num_kept)``: the info of the transition that
    produced each kept position (every transition when ``thin=1``), or
    ``None`` when the kernel's info has no field of that name (BlackJAX's
    NUTS reports no ``is_nonfinite``, for instance).
    """

    acceptance_rate: Array | None
    is_accepted: Array | None
    is_nonfinite: Array | None
    is_divergent: Array | None


class ChainResult(NamedTuple):
    """What :func:`run_chains` returns (leading axis: chains).

    Positions may be any pytree; ``samples``, ``mean`` and ``variance`` then
    have that pytree's structure, with the axes below in front of each leaf's
    own shape.

    Attributes:
      samples: ``(num_chains, num_kept, *event_shape)`` kept positions, or
        ``None`` with ``collect="stats"``.
      acceptance_rate: ``(num_chains,)`` mean MH acceptance probability over
        the steps after burn-in; NaN when the kernel's info has no
        ``acceptance_rate``.
      num_nonfinite: ``(num_chains,)`` how many NaN/inf proposals were
        rejected (all steps, burn-in included); ``None`` when the kernel's
        info has no ``is_nonfinite``.
      mean: ``(num_chains, *event_shape)`` mean of the kept positions.
      variance: ``(num_chains, *event_shape)`` their (population) variance;
        streamed by Welford's algorithm with ``collect="stats"``.
      num_kept: number of kept positions per chain.
      final_state: the batched state after the last step, to continue from.
      num_divergent: ``(num_chains,)`` divergent transitions after burn-in,
        for kernels whose info has ``is_divergent`` (HMC, NUTS); else ``None``.
      info: a :class:`ChainInfo` with ``collect_info=True``, else ``None``.
    """

    samples: ArrayTree | None
    acceptance_rate: Array
    num_nonfinite: Array | None
    mean: ArrayTree
    variance: ArrayTree
    num_kept: int
    final_state: Any
    num_divergent: Array | None = None
    info: ChainInfo | None = None


class _Accumulator(NamedTuple):
    acceptance_sum: Array | None  # (num_chains,), None if the kernel reports no acceptance
    num_nonfinite: Array | None  # (num_chains,) int32, None if the kernel has no such field
    num_divergent: Array | None  # (num_chains,) int32, after burn-in
    num_folded: Array  # () number of kept positions folded into mean / m2
    mean: ArrayTree  # (num_chains, *event_shape) per leaf
    m2: ArrayTree  # (num_chains, *event_shape) per leaf


class _Kernel(NamedTuple):
    """A kernel split for ``jit``: its arrays are traced, the rest is a static key.

    ``in_axes`` is ``None`` for one kernel shared by all chains. For a kernel
    built per chain from ``chain_parameters`` it is a tuple, one entry per
    array: ``0`` for an array with a leading chain axis (it depends on a
    chain's parameters), ``None`` for one shared by all chains (a mass matrix
    bound in the factory: one copy, one Cholesky factor). For a factory whose
    numbers are not pytree leaves (BlackJAX's closures), ``factory`` is set,
    the arrays are the per-chain parameters (``in_axes`` 0) and the factory is
    called inside the step.
    """

    static: _static.Static | None
    in_axes: Any
    factory: _static.FunctionKey | None


def _info_field(info: Any, name: str) -> Array | None:
    value = getattr(info, name, None)
    return None if value is None else jnp.asarray(value)


def _build(kernel: _Kernel, arrays: Any) -> Any:
    if kernel.factory is not None:
        return kernel.factory.function(**arrays)
    assert kernel.static is not None
    return _static.merge(arrays, kernel.static)


def _step_all(
    kernel: _Kernel, states: Any, chain_keys: PRNGKey, arrays: Any, step_index: Array
) -> tuple[Any, Any]:
    """One transition of every chain, with per-(chain, step) keys."""
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(chain_keys, step_index)
    return jax.vmap(lambda k, s, a: _build(kernel, a).step(k, s), in_axes=(0, 0, _in_axes(kernel)))(
        keys, states, arrays
    )


def _in_axes(kernel: _Kernel) -> Any:
    return list(kernel.in_axes) if isinstance(kernel.in_axes, tuple) else kernel.in_axes


@functools.partial(jax.jit, static_argnames=("kernel", "stream"))
def _init_states(
    positions: ArrayTree, arrays: Any, chain_keys: PRNGKey, *, kernel: _Kernel, stream: bool
) -> tuple[Any, _Accumulator]:
    """Initial state of every chain and zeroed sums; compiled once per kernel structure."""
    states = jax.vmap(lambda x, a: _build(kernel, a).init(x), in_axes=(0, _in_axes(kernel)))(
        positions, arrays
    )
    return states, _new_accumulator(kernel, states, chain_keys, arrays, stream)


@functools.partial(
    jax.jit,
    static_argnames=("kernel", "num_outer", "thin", "record", "stream", "record_info", "burnin"),
)
def _run_segment(
    states: Any,
    accumulator: _Accumulator,
    chain_keys: PRNGKey,
    arrays: Any,
    start_index: Array,
    *,
    kernel: _Kernel,
    num_outer: int,
    thin: int,
    record: bool,
    stream: bool,
    record_info: bool,
    burnin: bool,
) -> tuple[Any, _Accumulator, ArrayTree | None, ChainInfo | None]:
    """``num_outer * thin`` steps; keep the last position of every ``thin`` when ``record``."""

    def inner(carry: tuple[Any, _Accumulator], step_index: Array) -> tuple[Any, Any]:
        states, acc = carry
        states, info = _step_all(kernel, states, chain_keys, arrays, step_index)
        acceptance = _info_field(info, "acceptance_rate")
        nonfinite = _info_field(info, "is_nonfinite")
        divergent = _info_field(info, "is_divergent")
        if acc.acceptance_sum is not None and acceptance is not None:
            acc = acc._replace(
                acceptance_sum=acc.acceptance_sum + acceptance.astype(acc.acceptance_sum.dtype)
            )
        if acc.num_nonfinite is not None and nonfinite is not None:
            acc = acc._replace(num_nonfinite=acc.num_nonfinite + nonfinite.astype(jnp.int32))
        if acc.num_divergent is not None and divergent is not None and not burnin:
            acc = acc._replace(num_divergent=acc.num_divergent + divergent.astype(jnp.int32))
        kept_info = None
        if record_info:
            kept_info = ChainInfo(*(_info_field(info, name) for name in _INFO_FIELDS))
        return (states, acc), kept_info

    def outer(carry: tuple[Any, _Accumulator, Any, Any], block: tuple[Array, Array]) -> Any:
        states, acc, kept, kept_info = carry
        block_index, block_start = block
        if thin == 1:
            (states, acc), info = inner((states, acc), block_start)
        else:
            (states, acc), infos = jax.lax.scan(
                inner, (states, acc), block_start + jnp.arange(thin)
            )
            info = jax.tree.map(lambda leaf: leaf[-1], infos)
        position = states.position
        if stream:
            # Welford's update, one kept position per chain, leaf by leaf.
            num_folded = acc.num_folded + 1
            delta = jax.tree.map(jnp.subtract, position, acc.mean)
            mean = jax.tree.map(lambda m, d: m + d / num_folded.astype(d.dtype), acc.mean, delta)
            m2 = jax.tree.map(lambda m2, d, x, m: m2 + d * (x - m), acc.m2, delta, position, mean)
            acc = acc._replace(num_folded=num_folded, mean=mean, m2=m2)
        if record:
            # Written in place, chain-major: no (num_outer, num_chains) stack to transpose.
            kept = jax.tree.map(
                lambda out, x: jax.lax.dynamic_update_index_in_dim(out, x, block_index, axis=1),
                kept,
                position,
            )
        if record_info:
            kept_info = jax.tree.map(
                lambda out, x: jax.lax.dynamic_update_index_in_dim(out, x, block_index, axis=1),
                kept_info,
                info,
            )
        return (states, acc, kept, kept_info), None

    kept = None
    if record:
        kept = jax.tree.map(
            lambda x: jnp.zeros((x.shape[0], num_outer, *x.shape[1:]), x.dtype), states.position
        )
    kept_info = None
    if record_info:
        _, info_shapes = jax.eval_shape(
            lambda s: _step_all(kernel, s, chain_keys, arrays, start_index), states
        )
        kept_info = ChainInfo(
            *(
                None
                if getattr(info_shapes, name, None) is None
                else jnp.zeros(
                    (jnp.shape(getattr(info_shapes, name))[0], num_outer),
                    getattr(info_shapes, name).dtype,
                )
                for name in _INFO_FIELDS
            )
        )
    blocks = (jnp.arange(num_outer), start_index + thin * jnp.arange(num_outer))
    (states, accumulator, kept, kept_info), _ = jax.lax.scan(
        outer, (states, accumulator, kept, kept_info), blocks
    )
    return states, accumulator, kept, kept_info


def _chain_mesh(num_chains: int) -> Mesh | None:
    devices = jax.local_devices()
    if len(devices) < 2 or num_chains % len(devices):
        return None
    return Mesh(np.array(devices), ("chains",))


def _shard(tree: Any, mesh: Mesh | None) -> Any:
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec("chains"))
    return jax.tree.map(lambda leaf: jax.device_put(leaf, sharding), tree)


def _check_positions(initial_positions: Any) -> tuple[ArrayTree, int]:
    """Floating (pytree) positions sharing a leading chain axis, finite; and ``num_chains``."""
    if isinstance(initial_positions, (int, float)) or not jax.tree.leaves(initial_positions):
        raise ValueError(
            "initial_positions must be an array (num_chains, *event_shape) or a pytree of "
            f"arrays with a leading num_chains axis, got {initial_positions!r}"
        )
    positions = jax.tree.map(jnp.asarray, initial_positions)
    leaves_with_paths = jax.tree_util.tree_leaves_with_path(positions)
    for path, leaf in leaves_with_paths:
        where = f"initial_positions{jax.tree_util.keystr(path)}"
        if leaf.ndim < 1:
            raise ValueError(
                f"{where} must have a leading num_chains axis, shape (num_chains, "
                "*event_shape); got a scalar"
            )
        if not jnp.issubdtype(leaf.dtype, jnp.number):
            raise TypeError(f"{where} must be a numeric array, got dtype {leaf.dtype}")
    positions = jax.tree.map(
        lambda leaf: (
            leaf
            if jnp.issubdtype(leaf.dtype, jnp.floating)
            else leaf.astype(jnp.result_type(float))
        ),
        positions,
    )
    num_chains = jax.tree.leaves(positions)[0].shape[0]
    for path, leaf in jax.tree_util.tree_leaves_with_path(positions):
        where = f"initial_positions{jax.tree_util.keystr(path)}"
        if leaf.shape[0] != num_chains:
            raise ValueError(
                f"every leaf of initial_positions needs the same leading num_chains axis; "
                f"{where} has shape {leaf.shape}, expected {num_chains} chains"
            )
        if not bool(jnp.all(jnp.isfinite(leaf))):
            values = np.asarray(leaf).reshape(num_chains, -1)
            bad = np.nonzero(~np.all(np.isfinite(values), axis=1))[0]
            raise ValueError(f"{where} must be finite; NaN/inf in chains {bad[:10].tolist()}")
    if isinstance(positions, jax.Array) and positions.ndim == 1:
        warnings.warn(
            f"initial_positions of shape {positions.shape} are read as {num_chains} chains "
            f"of scalar positions; for one chain in R^{num_chains} pass shape "
            f"(1, {num_chains}), for {num_chains} chains of 1-D vectors shape "
            f"({num_chains}, 1)",
            UserWarning,
            stacklevel=3,
        )
    return positions, num_chains


def _is_kernel(algorithm: Any) -> bool:
    return callable(getattr(algorithm, "init", None)) and callable(getattr(algorithm, "step", None))


def _check_kernel(
    algorithm: Any,
    chain_parameters: Mapping[str, Any] | None,
    num_chains: int,
) -> tuple[_Kernel, Any]:
    """Split ``algorithm`` into a static key and its traced arrays (see :class:`_Kernel`)."""
    if chain_parameters is None:
        if not _is_kernel(algorithm):
            raise TypeError(
                "algorithm must have init(position) and step(rng_key, state), like "
                "ej.samplers.mala(logdensity_fn, step_size) or a BlackJAX kernel; got "
                f"{type(algorithm).__name__}"
            )
        arrays, static = _static.split(algorithm)
        return _Kernel(static, None, None), arrays
    if not callable(algorithm) or _is_kernel(algorithm):
        raise TypeError(
            "with chain_parameters, algorithm must be a factory returning a kernel, "
            "e.g. functools.partial(ej.samplers.mala, logdensity_fn)"
        )
    if not isinstance(chain_parameters, Mapping):
        raise TypeError("chain_parameters must be a dict of per-chain arrays")
    parameters = {name: jnp.asarray(value) for name, value in chain_parameters.items()}
    for name, value in parameters.items():
        if value.ndim < 1 or value.shape[0] != num_chains:
            raise ValueError(
                f"chain_parameters[{name!r}] must have a leading axis of num_chains="
                f"{num_chains}, got shape {value.shape}"
            )
    # Build every chain's kernel once, not at every step, when its numbers are pytree
    # leaves: arrays that depend on a chain's parameters get a chain axis, the others
    # (a mass matrix bound in the factory) are built once and shared.
    first_parameters = {name: value[0] for name, value in parameters.items()}
    first_arrays, static = _static.split(algorithm(**first_parameters))
    if not first_arrays:  # numbers in closures: call the factory inside the step
        return _Kernel(None, 0, _static.FunctionKey(algorithm)), parameters

    def kernel_arrays(chain: Mapping[str, Array]) -> list[Array]:
        return _static.split(algorithm(**chain))[0]

    per_chain = _depends_on_input(kernel_arrays, first_parameters)
    batched = iter(
        jax.vmap(
            lambda chain: [a for a, dep in zip(kernel_arrays(chain), per_chain, strict=True) if dep]
        )(parameters)
    )
    arrays = [
        next(batched) if dep else shared
        for shared, dep in zip(first_arrays, per_chain, strict=True)
    ]
    in_axes = tuple(0 if dep else None for dep in per_chain)
    return _Kernel(static, in_axes, None), arrays


def _depends_on_input(fn: Callable[[Any], list[Array]], example: Any) -> list[bool]:
    """For each output array of ``fn``, whether it depends on ``fn``'s input (jaxpr dataflow)."""
    jaxpr = jax.make_jaxpr(fn)(example).jaxpr
    dependent = set(jaxpr.invars)
    for equation in jaxpr.eqns:
        if any(not hasattr(var, "val") and var in dependent for var in equation.invars):
            dependent.update(equation.outvars)
    return [not hasattr(var, "val") and var in dependent for var in jaxpr.outvars]


def _check_options(
    rng_key: Any,
    num_steps: int,
    num_burnin: int,
    thin: int,
    collect: str,
    collect_info: Any,
    chunk_size: int | None,
) -> tuple[int, int, int, int | None]:
    """:func:`run_chains`' options checked, naming the bad one; the counts as Python ints."""
    check_key(rng_key)
    num_steps = check_int(num_steps, "num_steps", 1)
    num_burnin = check_int(num_burnin, "num_burnin", 0)
    thin = check_int(thin, "thin", 1)
    if thin > num_steps:
        raise ValueError(f"thin must be <= num_steps ({num_steps}), got {thin}")
    if collect not in ("samples", "stats"):
        raise ValueError(f'collect must be "samples" or "stats", got {collect!r}')
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", 1)
    if not isinstance(collect_info, (bool, np.bool_)):
        raise TypeError(f"collect_info must be a bool, got {type(collect_info).__name__}")
    return num_steps, num_burnin, thin, chunk_size


def _check_initial_logdensity(states: Any) -> None:
    logdensity = getattr(states, "logdensity", None)
    if logdensity is None:
        return
    logdensity = np.asarray(logdensity)
    if not np.all(np.isfinite(logdensity)):
        bad = np.nonzero(~np.isfinite(logdensity))[0]
        raise ValueError(
            "logdensity_fn is not finite at initial_positions of chains "
            f"{bad[:10].tolist()}: start the chains where the density is positive"
        )


def _new_accumulator(
    kernel: _Kernel, states: Any, chain_keys: PRNGKey, arrays: Any, stream: bool
) -> _Accumulator:
    """Zeroed per-chain sums, with a counter for each info field the kernel reports."""
    _, info = jax.eval_shape(
        lambda s: _step_all(kernel, s, chain_keys, arrays, jnp.int32(0)), states
    )
    positions = states.position
    num_chains = chain_keys.shape[0]
    dtype = jnp.result_type(*jax.tree.leaves(positions))

    def stat(leaf: Array) -> Array:
        return jnp.zeros(leaf.shape if stream else (num_chains,), leaf.dtype)

    def counter(name: str, counter_dtype: Any) -> Array | None:
        if getattr(info, name, None) is None:
            return None
        return jnp.zeros(num_chains, counter_dtype)

    return _Accumulator(
        acceptance_sum=counter("acceptance_rate", dtype),
        num_nonfinite=counter("is_nonfinite", jnp.int32),
        num_divergent=counter("is_divergent", jnp.int32),
        num_folded=jnp.zeros((), jnp.int32),
        mean=jax.tree.map(stat, positions),
        m2=jax.tree.map(stat, positions),
    )


def run_chains(
    rng_key: PRNGKey,
    algorithm: Any,
    initial_positions: ArrayTree,
    num_steps: int,
    *,
    num_burnin: int = 0,
    thin: int = 1,
    collect: Collect = "samples",
    collect_info: bool = False,
    chain_parameters: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    progress: bool | None = None,
) -> ChainResult:
    """Run many independent chains of one kernel: jit + vmap + scan, sharded over devices.

    Each chain makes ``num_burnin + num_steps`` transitions; after burn-in,
    every ``thin``-th position is kept (``num_steps // thin`` per chain).

    **Any kernel**: ``algorithm`` is any object with BlackJAX's shape,
    ``init(position) -> state`` and ``step(rng_key, state) -> (state, info)``
    for ONE chain: this library's samplers, or BlackJAX's NUTS, HMC, MALA,
    MCLMC, .... Info fields are read by name where present
    (``acceptance_rate``, ``is_accepted``, ``is_nonfinite``, ``is_divergent``)
    and reported as NaN / ``None`` otherwise.

    **Any position**: a position may be a pytree of arrays (a dict of
    parameters, as NumPyro's and BlackJAX's are); every leaf of
    ``initial_positions`` carries a leading ``num_chains`` axis, and the
    results keep the pytree.

    **What compiles**: the kernel is split into its arrays (traced) and
    everything else (its functions and structure, a static key), so
    ``ej.samplers.mala(f, s)`` for a new step size ``s`` (or mass matrix,
    noise variance, scale) reuses the compiled program; a new ``f``, new
    shapes or dtypes, a new ``thin``, chunk length or ``collect`` option
    compile anew. A kernel whose numbers live in closures rather than pytree
    leaves (BlackJAX's factories) compiles once per kernel object.

    Args:
      rng_key: a single key; chain ``c`` at step ``t`` uses
        ``fold_in(split(rng_key, num_chains)[c], t)``.
      algorithm: a kernel shared by all chains, or, with ``chain_parameters``,
        a factory such as ``functools.partial(ej.samplers.mala, logdensity_fn)``
        called per chain.
      initial_positions: ``(num_chains, *event_shape)``, or a pytree whose
        leaves all have a leading ``num_chains`` axis; finite. A 1-D array is
        read as ``num_chains`` scalar positions (with a warning that says so).
      num_steps: transitions after burn-in (≥ 1).
      num_burnin: transitions discarded first (≥ 0).
      thin: keep every ``thin``-th position (1 ≤ thin ≤ num_steps).
      collect: ``"samples"`` keeps the positions; ``"stats"`` keeps only a
        streaming per-chain mean and variance, so memory does not grow with
        ``num_steps``.
      collect_info: also keep the info of the transition that produced each
        kept position, ``(num_chains, num_kept)`` per field (a
        :class:`ChainInfo`).
      chain_parameters: keyword arguments of ``algorithm`` with a leading
        ``num_chains`` axis (e.g. per-chain ``step_size`` from adaptation).
        Each chain's kernel is built once, not at every step, and what does
        not depend on these parameters is built once for all chains: bind a
        shared mass matrix in the factory,
        ``functools.partial(ej.samplers.mala, f, inverse_mass_matrix=matrix)``,
        and every chain uses one copy and one Cholesky factor.
      chunk_size: transitions per jitted chunk; any value gives bitwise the
        same result. Default: one chunk, or about 100 with a progress bar.
      progress: show a tqdm bar (steps/s); default only on a terminal.

    Returns:
      A :class:`ChainResult`.

    Raises:
      TypeError, ValueError: naming the offending argument.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> alg = ej.samplers.mala(lambda x: -0.5 * jnp.sum(x**2), step_size=0.5)
      >>> result = ej.run_chains(jax.random.key(0), alg, jnp.zeros((8, 2)), 100, thin=10)
      >>> result.samples.shape, result.acceptance_rate.shape
      ((8, 10, 2), (8,))

      A pytree position (a dict of two parameters):

      >>> logdensity_fn = lambda x: -0.5 * (x["mu"] ** 2 + jnp.sum(x["theta"] ** 2))
      >>> positions = {"mu": jnp.zeros(8), "theta": jnp.zeros((8, 3))}
      >>> result = ej.run_chains(
      ...     jax.random.key(0), ej.samplers.mala(logdensity_fn, 0.5), positions, 50
      ... )
      >>> jax.tree.map(jnp.shape, result.samples)
      {'mu': (8, 50), 'theta': (8, 50, 3)}
    """
    num_steps, num_burnin, thin, chunk_size = _check_options(
        rng_key, num_steps, num_burnin, thin, collect, collect_info, chunk_size
    )
    positions, num_chains = _check_positions(initial_positions)
    kernel, arrays = _check_kernel(algorithm, chain_parameters, num_chains)

    mesh = _chain_mesh(num_chains)
    chain_keys = _shard(jax.random.split(rng_key, num_chains), mesh)
    positions = _shard(positions, mesh)
    arrays = _shard_kernel_arrays(kernel, arrays, mesh)
    stream = collect == "stats"
    states, accumulator = _init_states(positions, arrays, chain_keys, kernel=kernel, stream=stream)
    _check_initial_logdensity(states)

    total = num_burnin + num_steps
    if chunk_size is None:
        chunk_size = max(1, math.ceil(total / 100)) if _wants_bar(progress) else total
    bar = progress_bar(progress, total, desc="run_chains")
    run = _segment_runner(kernel, chain_keys, arrays, bar)

    # Burn-in: nothing recorded; acceptance is reset afterwards.
    states, accumulator, _, _ = _run_blocks(
        run, states, accumulator, start=0, num_blocks=num_burnin, thin=1, chunk_size=chunk_size,
        burnin=True,
    )  # fmt: skip
    accumulator = accumulator._replace(
        acceptance_sum=jax.tree.map(jnp.zeros_like, accumulator.acceptance_sum)
    )
    # Sampling: blocks of `thin` transitions, the last position of each kept.
    num_kept = num_steps // thin
    record = collect == "samples"
    states, accumulator, kept_chunks, info_chunks = _run_blocks(
        run, states, accumulator, start=num_burnin, num_blocks=num_kept, thin=thin,
        chunk_size=chunk_size, record=record, stream=stream, collect_info=bool(collect_info),
    )  # fmt: skip
    # num_steps not a multiple of thin: the last transitions run in one segment, kept nowhere.
    leftover = num_steps - num_kept * thin
    states, accumulator, _, _ = _run_blocks(
        run, states, accumulator, start=total - leftover, num_blocks=leftover, thin=1,
        chunk_size=leftover,
    )  # fmt: skip
    if bar is not None:
        bar.close()
    return _result(
        accumulator, states, kept_chunks, info_chunks, record, collect_info, num_steps, num_kept
    )


def _shard_kernel_arrays(kernel: _Kernel, arrays: Any, mesh: Mesh | None) -> Any:
    """The kernel's arrays with a chain axis split over ``mesh``; shared arrays left whole."""
    if kernel.in_axes == 0:
        return _shard(arrays, mesh)
    if kernel.in_axes is not None:
        return [
            _shard(array, mesh) if axis == 0 else array
            for array, axis in zip(arrays, kernel.in_axes, strict=True)
        ]
    return arrays


_Segment = tuple[Any, _Accumulator, ArrayTree | None, ChainInfo | None]


def _segment_runner(
    kernel: _Kernel, chain_keys: PRNGKey, arrays: Any, bar: Any
) -> Callable[..., _Segment]:
    """A function that runs one :func:`_run_segment` and advances the progress bar.

    ``run(states, accumulator, start, **options)`` makes ``options["num_outer"]
    * options["thin"]`` transitions from step ``start``.
    """

    def run(states: Any, accumulator: _Accumulator, start: int, **options: Any) -> _Segment:
        options = {"record_info": False, **options}
        segment = _run_segment(
            states, accumulator, chain_keys, arrays, jnp.int32(start), kernel=kernel, **options
        )
        _advance(bar, options["num_outer"] * options["thin"], segment[0])
        return segment

    return run


def _run_blocks(
    run: Callable[..., _Segment],
    states: Any,
    accumulator: _Accumulator,
    *,
    start: int,
    num_blocks: int,
    thin: int,
    chunk_size: int,
    record: bool = False,
    stream: bool = False,
    collect_info: bool = False,
    burnin: bool = False,
) -> tuple[Any, _Accumulator, list[Any], list[Any]]:
    """``num_blocks`` blocks of ``thin`` transitions from step ``start``, in chunks.

    The last position of each block is kept (``record``) and folded into the
    streaming moments (``stream``), or neither; returns the states, the sums
    and the chunks of kept positions and of their infos.
    """
    blocks_per_chunk = max(1, chunk_size // thin)
    kept_chunks, info_chunks = [], []
    done = 0
    while done < num_blocks:
        blocks = min(blocks_per_chunk, num_blocks - done)
        states, accumulator, chunk, info_chunk = run(
            states, accumulator, start + done * thin,
            num_outer=blocks, thin=thin, record=record, stream=stream,
            record_info=collect_info, burnin=burnin,
        )  # fmt: skip
        kept_chunks.append(chunk)
        info_chunks.append(info_chunk)
        done += blocks
    return states, accumulator, kept_chunks, info_chunks


def _concatenate_kept(chunks: list[Any]) -> Any:
    """Chunks of kept draws, joined along the draw axis (axis 1) leaf by leaf."""
    if len(chunks) == 1:
        return chunks[0]
    return jax.tree.map(lambda *leaves: jnp.concatenate(leaves, axis=1), *chunks)


@jax.jit
def _kept_moments(samples: ArrayTree) -> tuple[ArrayTree, ArrayTree]:
    """Per-chain mean and variance over the kept draws, in one compiled pass."""
    return (
        jax.tree.map(lambda leaf: jnp.mean(leaf, axis=1), samples),
        jax.tree.map(lambda leaf: jnp.var(leaf, axis=1), samples),
    )


def _result(
    accumulator: _Accumulator,
    states: Any,
    kept_chunks: list[Any],
    info_chunks: list[Any],
    record: bool,
    collect_info: bool,
    num_steps: int,
    num_kept: int,
) -> ChainResult:
    if accumulator.acceptance_sum is None:
        num_chains = jax.tree.leaves(accumulator.mean)[0].shape[0]
        dtype = jnp.result_type(*jax.tree.leaves(accumulator.mean))
        acceptance_rate = jnp.full(num_chains, jnp.nan, dtype)
    else:
        acceptance_rate = accumulator.acceptance_sum / num_steps
    if record:
        samples = _concatenate_kept(kept_chunks)
        mean, variance = _kept_moments(samples)
    else:
        samples = None
        mean = accumulator.mean
        variance = jax.tree.map(
            lambda m2: m2 / accumulator.num_folded.astype(m2.dtype), accumulator.m2
        )
    info = _concatenate_kept(info_chunks) if collect_info else None
    return ChainResult(
        samples=samples,
        acceptance_rate=acceptance_rate,
        num_nonfinite=accumulator.num_nonfinite,
        mean=mean,
        variance=variance,
        num_kept=num_kept,
        final_state=states,
        num_divergent=accumulator.num_divergent,
        info=info,
    )


def _wants_bar(progress: bool | None) -> bool:
    return bool(sys.stderr.isatty()) if progress is None else progress


def _advance(bar: Any, num_steps: int, states: Any) -> None:
    if bar is not None:
        jax.block_until_ready(states)
        bar.update(num_steps)


__all__ = ["ChainInfo", "ChainResult", "run_chains"]

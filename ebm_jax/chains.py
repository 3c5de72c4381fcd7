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
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ebm_jax._progress import progress_bar
from ebm_jax._validation import check_int, check_key
from ebm_jax.samplers.base import SamplingAlgorithm
from ebm_jax.types import Array, ArrayLike, PRNGKey

Collect = Literal["samples", "stats"]


class ChainResult(NamedTuple):
    """What :func:`run_chains` returns (leading axis: chains).

    Attributes:
      samples: ``(num_chains, num_kept, *event_shape)`` kept positions, or
        ``None`` with ``collect="stats"``.
      acceptance_rate: ``(num_chains,)`` mean MH acceptance probability over
        the steps after burn-in.
      num_nonfinite: ``(num_chains,)`` how many NaN/inf proposals were
        rejected (all steps, burn-in included).
      mean: ``(num_chains, *event_shape)`` mean of the kept positions.
      variance: ``(num_chains, *event_shape)`` their (population) variance;
        streamed by Welford's algorithm with ``collect="stats"``.
      num_kept: number of kept positions per chain.
      final_state: the batched state after the last step, to continue from.
    """

    samples: Array | None
    acceptance_rate: Array
    num_nonfinite: Array
    mean: Array
    variance: Array
    num_kept: int
    final_state: Any


class _Accumulator(NamedTuple):
    acceptance_sum: Array  # (num_chains,)
    num_nonfinite: Array  # (num_chains,) int32
    num_folded: Array  # () number of kept positions folded into mean / m2
    mean: Array  # (num_chains, *event_shape)
    m2: Array  # (num_chains, *event_shape)


def _step_all(
    algorithm: Any,
    has_parameters: bool,
    states: Any,
    chain_keys: PRNGKey,
    parameters: Any,
    step_index: Array,
) -> tuple[Any, Any]:
    """One transition of every chain, with per-(chain, step) keys."""
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(chain_keys, step_index)
    if has_parameters:
        return jax.vmap(lambda k, s, p: algorithm(**p).step(k, s))(keys, states, parameters)
    return jax.vmap(algorithm.step)(keys, states)


@functools.partial(jax.jit, static_argnames=("algorithm", "has_parameters"))
def _init_states(positions: Array, parameters: Any, *, algorithm: Any, has_parameters: bool) -> Any:
    """Initial state of every chain; jitted once per ``algorithm``, not once per call."""
    if has_parameters:
        return jax.vmap(lambda x, p: algorithm(**p).init(x))(positions, parameters)
    return jax.vmap(algorithm.init)(positions)


@functools.partial(
    jax.jit,
    static_argnames=("algorithm", "has_parameters", "num_outer", "thin", "record", "stream"),
)
def _run_segment(
    states: Any,
    accumulator: _Accumulator,
    chain_keys: PRNGKey,
    parameters: Any,
    start_index: Array,
    *,
    algorithm: Any,
    has_parameters: bool,
    num_outer: int,
    thin: int,
    record: bool,
    stream: bool,
) -> tuple[Any, _Accumulator, Array | None]:
    """``num_outer * thin`` steps; keep the last position of every ``thin`` when ``record``."""

    def inner(carry: tuple[Any, _Accumulator], step_index: Array) -> tuple[Any, None]:
        states, acc = carry
        states, info = _step_all(
            algorithm, has_parameters, states, chain_keys, parameters, step_index
        )
        acc = acc._replace(
            acceptance_sum=acc.acceptance_sum + info.acceptance_rate,
            num_nonfinite=acc.num_nonfinite + info.is_nonfinite.astype(jnp.int32),
        )
        return (states, acc), None

    def outer(
        carry: tuple[Any, _Accumulator, Array | None], block: tuple[Array, Array]
    ) -> tuple[Any, None]:
        states, acc, kept = carry
        block_index, block_start = block
        if thin == 1:
            (states, acc), _ = inner((states, acc), block_start)
        else:
            (states, acc), _ = jax.lax.scan(inner, (states, acc), block_start + jnp.arange(thin))
        position = states.position
        if stream:
            # Welford's update, one kept position per chain.
            num_folded = acc.num_folded + 1
            delta = position - acc.mean
            mean = acc.mean + delta / num_folded.astype(position.dtype)
            acc = acc._replace(
                num_folded=num_folded, mean=mean, m2=acc.m2 + delta * (position - mean)
            )
        if record:
            # Written in place, chain-major: no (num_outer, num_chains) stack to transpose.
            kept = jax.lax.dynamic_update_index_in_dim(kept, position, block_index, axis=1)
        return (states, acc, kept), None

    kept = None
    if record:
        position = states.position
        kept = jnp.zeros((position.shape[0], num_outer, *position.shape[1:]), position.dtype)
    blocks = (jnp.arange(num_outer), start_index + thin * jnp.arange(num_outer))
    (states, accumulator, kept), _ = jax.lax.scan(outer, (states, accumulator, kept), blocks)
    return states, accumulator, kept


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


def run_chains(
    rng_key: PRNGKey,
    algorithm: SamplingAlgorithm | Callable[..., SamplingAlgorithm],
    initial_positions: ArrayLike,
    num_steps: int,
    *,
    num_burnin: int = 0,
    thin: int = 1,
    collect: Collect = "samples",
    chain_parameters: Mapping[str, ArrayLike] | None = None,
    chunk_size: int | None = None,
    progress: bool | None = None,
) -> ChainResult:
    """Run many independent chains of one kernel: jit + vmap + scan, sharded over devices.

    Each chain makes ``num_burnin + num_steps`` transitions; after burn-in,
    every ``thin``-th position is kept (``num_steps // thin`` per chain).

    Args:
      rng_key: a single key; chain ``c`` at step ``t`` uses
        ``fold_in(split(rng_key, num_chains)[c], t)``.
      algorithm: a :class:`~ebm_jax.samplers.SamplingAlgorithm` shared by all
        chains, or, with ``chain_parameters``, a factory such as
        ``functools.partial(ej.samplers.mala, logdensity_fn)`` called per chain.
      initial_positions: ``(num_chains, *event_shape)``, finite.
      num_steps: transitions after burn-in (≥ 1).
      num_burnin: transitions discarded first (≥ 0).
      thin: keep every ``thin``-th position (1 ≤ thin ≤ num_steps).
      collect: ``"samples"`` keeps the positions; ``"stats"`` keeps only a
        streaming per-chain mean and variance, so memory does not grow with
        ``num_steps``.
      chain_parameters: keyword arguments of ``algorithm`` with a leading
        ``num_chains`` axis (e.g. per-chain ``step_size`` from adaptation).
      chunk_size: transitions per jitted chunk; any value gives bitwise the
        same result. Default: one chunk, or about 100 with a progress bar.
      progress: show a tqdm bar (steps/s); default only on a terminal.

    Returns:
      A :class:`ChainResult`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> alg = ej.samplers.mala(lambda x: -0.5 * jnp.sum(x**2), step_size=0.5)
      >>> result = ej.run_chains(jax.random.key(0), alg, jnp.zeros((8, 2)), 100, thin=10)
      >>> result.samples.shape, result.acceptance_rate.shape
      ((8, 10, 2), (8,))
    """
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

    positions = jnp.asarray(initial_positions)
    if positions.ndim < 1:
        raise ValueError(
            "initial_positions must have a leading num_chains axis, shape "
            "(num_chains, *event_shape); got a scalar"
        )
    if not jnp.issubdtype(positions.dtype, jnp.floating):
        positions = positions.astype(jnp.result_type(float))
    if not bool(jnp.all(jnp.isfinite(positions))):
        bad = np.unique(np.nonzero(~np.isfinite(np.asarray(positions)))[0])
        raise ValueError(f"initial_positions must be finite; NaN/inf in chains {bad[:10].tolist()}")
    num_chains = positions.shape[0]

    has_parameters = chain_parameters is not None
    if has_parameters:
        if not callable(algorithm) or isinstance(algorithm, SamplingAlgorithm):
            raise TypeError(
                "with chain_parameters, algorithm must be a factory returning a "
                "SamplingAlgorithm, e.g. functools.partial(ej.samplers.mala, logdensity_fn)"
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
    else:
        if not isinstance(algorithm, SamplingAlgorithm):
            raise TypeError(
                "algorithm must be a SamplingAlgorithm (e.g. ej.samplers.mala(logdensity_fn, "
                f"step_size)), got {type(algorithm).__name__}"
            )
        parameters = {}

    mesh = _chain_mesh(num_chains)
    chain_keys = _shard(jax.random.split(rng_key, num_chains), mesh)
    positions, parameters = _shard((positions, parameters), mesh)
    states = _init_states(positions, parameters, algorithm=algorithm, has_parameters=has_parameters)
    logdensity = np.asarray(getattr(states, "logdensity", jnp.zeros(num_chains)))
    if not np.all(np.isfinite(logdensity)):
        bad = np.nonzero(~np.isfinite(logdensity))[0]
        raise ValueError(
            "logdensity_fn is not finite at initial_positions of chains "
            f"{bad[:10].tolist()}: start the chains where the density is positive"
        )

    event_shape = positions.shape[1:]
    stream = collect == "stats"
    stat_shape = (num_chains, *event_shape) if stream else (num_chains,)
    per_chain = _shard(
        (
            jnp.zeros(num_chains, positions.dtype),
            jnp.zeros(num_chains, jnp.int32),
            jnp.zeros(stat_shape, positions.dtype),
            jnp.zeros(stat_shape, positions.dtype),
        ),
        mesh,
    )
    accumulator = _Accumulator(per_chain[0], per_chain[1], jnp.zeros((), jnp.int32), *per_chain[2:])

    total = num_burnin + num_steps
    if chunk_size is None:
        chunk_size = max(1, math.ceil(total / 100)) if _wants_bar(progress) else total
    bar = progress_bar(progress, total, desc="run_chains")
    run = functools.partial(
        _run_segment, algorithm=algorithm, has_parameters=has_parameters, stream=False
    )

    # Burn-in: nothing recorded; acceptance is reset afterwards.
    done = 0
    while done < num_burnin:
        length = min(chunk_size, num_burnin - done)
        states, accumulator, _ = run(
            states, accumulator, chain_keys, parameters, jnp.int32(done),
            num_outer=length, thin=1, record=False,
        )  # fmt: skip
        done += length
        _advance(bar, length, states)
    accumulator = accumulator._replace(acceptance_sum=jnp.zeros_like(accumulator.acceptance_sum))

    # Sampling: blocks of `thin` transitions, the last position of each kept.
    num_kept = num_steps // thin
    blocks_per_chunk = max(1, chunk_size // thin)
    record = collect == "samples"
    kept_chunks = []
    kept = 0
    run = functools.partial(
        _run_segment, algorithm=algorithm, has_parameters=has_parameters, stream=stream
    )
    while kept < num_kept:
        blocks = min(blocks_per_chunk, num_kept - kept)
        states, accumulator, chunk = run(
            states, accumulator, chain_keys, parameters, jnp.int32(done),
            num_outer=blocks, thin=thin, record=record,
        )  # fmt: skip
        if record:
            kept_chunks.append(chunk)
        kept += blocks
        done += blocks * thin
        _advance(bar, blocks * thin, states)
    leftover = total - done  # num_steps not a multiple of thin: run, keep nothing
    if leftover:
        states, accumulator, _ = run(
            states, accumulator, chain_keys, parameters, jnp.int32(done),
            num_outer=leftover, thin=1, record=False, stream=False,
        )  # fmt: skip
        _advance(bar, leftover, states)
    if bar is not None:
        bar.close()

    acceptance_rate = accumulator.acceptance_sum / num_steps
    if record:
        samples = kept_chunks[0] if len(kept_chunks) == 1 else jnp.concatenate(kept_chunks, 1)
        mean, variance = jnp.mean(samples, axis=1), jnp.var(samples, axis=1)
    else:
        samples = None
        mean = accumulator.mean
        variance = accumulator.m2 / accumulator.num_folded.astype(positions.dtype)
    return ChainResult(
        samples=samples,
        acceptance_rate=acceptance_rate,
        num_nonfinite=accumulator.num_nonfinite,
        mean=mean,
        variance=variance,
        num_kept=num_kept,
        final_state=states,
    )


def _wants_bar(progress: bool | None) -> bool:
    return bool(sys.stderr.isatty()) if progress is None else progress


def _advance(bar: Any, num_steps: int, states: Any) -> None:
    if bar is not None:
        jax.block_until_ready(states)
        bar.update(num_steps)


__all__ = ["ChainResult", "run_chains"]

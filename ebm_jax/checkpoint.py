"""Checkpoint files: a training state written atomically as msgpack, read back checked.

**Format.** A checkpoint is one msgpack map (:func:`flax.serialization.msgpack_serialize`)
with three entries:

- ``header``: a map with ``format`` (:data:`CHECKPOINT_FORMAT`), ``version``
  (:data:`CHECKPOINT_VERSION`, an integer), ``step`` when the state has one,
  and the metadata given to :func:`save_checkpoint` (:func:`~ebm_jax.training.fit`
  records its ``batch_size``, dataset size, ``rng_key`` and ``ema_decay``);
- ``state``: the state dict (:func:`flax.serialization.to_state_dict`) of the
  saved pytree, for :func:`~ebm_jax.training.fit` a :class:`TrainState`
  ``{step, params, opt_state, loss_state, ema_params}``, with ``ema_params``
  left out when the run keeps no average of the parameters;
- ``losses``: the loss history, one entry per step done.

Reading decodes msgpack only: nothing is ever unpickled, so a file from
elsewhere runs no code. Every part is checked before it is used: the format
and version, then the metadata the caller expects, then each entry of the state
against a template, by name, shape and dtype.

**Writes.** :func:`save_checkpoint` writes a temporary file
``<path>.<16 hex digits>.tmp`` beside ``path``, flushes it to disk
(:func:`os.fsync`), renames it over ``path`` (:func:`os.replace`) and flushes
the directory, so ``path`` holds the previous checkpoint or the new one, never
a partial file, even after a crash or a power loss. A write killed midway
leaves its temporary file, never read and removed by the next write of
``path``. The file is created with mode ``0o666``, so the umask (or the
directory's default ACL) sets its permissions, as for any new file.

**Errors.** :func:`load_checkpoint` and :func:`load_params` raise a
``ValueError`` naming the path and what is wrong: the file is empty,
truncated or corrupted; it is not an ebm_jax checkpoint or has another
format version; a header entry differs from the expected metadata; or the
saved state does not match the template (a missing or unexpected entry, or a
leaf of another shape or dtype, named by its path).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import secrets
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization
from jax.experimental import multihost_utils

from ebm_jax.types import Array, ArrayTree

# The name of the module that first wrote these files: kept, so that they still load.
CHECKPOINT_FORMAT = "ebm_jax.training"
CHECKPOINT_VERSION = 1


# Here rather than beside fit because the file format depends on it (a state
# without an average leaves the entry out); ebm_jax.training re-exports it.
class TrainState(NamedTuple):
    """Everything a training run carries from one step to the next.

    Attributes:
      step: ``int32`` scalar, the number of steps done.
      params: the model parameters (a pytree of floating arrays).
      opt_state: the optax optimizer state.
      loss_state: the state of a stateful loss (e.g. persistent sampler
        chains), or ``None``.
      ema_params: the exponential moving average of the parameters (see
        :func:`fit`'s ``ema_decay``), or ``None`` when none is kept.
    """

    step: Array
    params: ArrayTree
    opt_state: optax.OptState
    loss_state: ArrayTree
    ema_params: ArrayTree = None


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns.

    Attributes:
      state: the restored pytree (a :class:`TrainState` for :func:`fit`'s files).
      losses: the loss history saved with it (a NumPy array).
      header: the header dict: ``format``, ``version``, ``step`` and the
        metadata given to :func:`save_checkpoint`.
    """

    state: Any
    losses: np.ndarray
    header: dict[str, Any]


def _plain(value: Any) -> Any:
    """Header values as msgpack returns them (tuples and arrays become lists)."""
    if isinstance(value, (np.ndarray, jax.Array)):
        return np.asarray(value).tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _create_temporary(path: str) -> tuple[int, str]:
    """A new empty file ``<path>.<16 hex digits>.tmp`` beside ``path``, open for writing.

    Created with mode ``0o666``, so the system applies the umask (or the
    directory's default ACL) as it does to any new file, where
    :func:`tempfile.mkstemp` would make it ``0o600``.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = f"{path}.{secrets.token_hex(8)}.tmp"
        with contextlib.suppress(FileExistsError):  # a 64-bit name taken: draw another
            return os.open(temporary, flags, 0o666), temporary


def _fsync_directory(directory: str) -> None:
    """Flush a rename in ``directory`` to disk, where the system allows it (not on Windows)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems do not sync directories
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_stale_temporaries(path: str, started_ns: int) -> None:
    """Delete the temporary files of ``path`` last written before ``started_ns``.

    One writer at a time writes a path, so such a file was left by a write
    that died before its rename (a crash, a kill): it is never read, only
    deleted.
    """
    pattern = glob.escape(path) + "." + "[0-9a-f]" * 16 + ".tmp"
    for temporary in glob.glob(pattern):
        with contextlib.suppress(OSError):  # removed meanwhile, or not ours to remove
            if os.stat(temporary).st_mtime_ns <= started_ns:
                os.remove(temporary)


def _atomic_write(path: str | os.PathLike[str], payload: bytes) -> None:
    """Replace ``path`` by a file holding ``payload``; a reader sees the old file or the new one.

    The bytes go to a temporary file beside ``path``, flushed to disk before
    :func:`os.replace` renames it over ``path``; the directory is flushed
    after, so neither a crash nor a power loss leaves ``path`` empty or
    partial. A write that dies leaves its temporary file, which the next write
    of ``path`` removes.
    """
    path = os.path.abspath(path)
    descriptor, temporary = _create_temporary(path)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            started_ns = os.fstat(handle.fileno()).st_mtime_ns
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    _fsync_directory(os.path.dirname(path))
    _remove_stale_temporaries(path, started_ns)


def save_checkpoint(
    path: str | os.PathLike[str],
    state: Any,
    losses: Any = None,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write a training state to ``path`` as msgpack, atomically.

    The file is a msgpack map ``{"header", "state", "losses"}`` readable by
    :func:`flax.serialization.msgpack_restore` (never pickle). It is written
    to a temporary file ``<path>.<hex>.tmp`` in the same directory, flushed to
    disk (:func:`os.fsync`) and moved over ``path`` with :func:`os.replace`,
    so ``path`` always holds a complete checkpoint, even after a crash or a
    power loss. A write killed midway leaves its temporary file, never read
    and removed by the next write of ``path``. The file gets the permissions
    of any new file (``0o666`` less the umask).

    Under :func:`jax.distributed.initialize`, every process must call it (the
    arrays split over processes are gathered, a collective); process 0 writes
    the file and all wait for it, so ``path`` must be on a filesystem every
    process reads to resume.

    Args:
      path: the file to write.
      state: a pytree of arrays, typically a :class:`TrainState` (arrays
        only: store a PRNG key as :func:`jax.random.key_data`).
      losses: the loss history to store with it (default: none).
      metadata: extra header entries (ints, floats, strings, lists of them),
        checked by :func:`load_checkpoint` with ``expected_metadata``.

    Examples:
      >>> import os, tempfile
      >>> import jax.numpy as jnp
      >>> from ebm_jax import checkpoint
      >>> state = {"w": jnp.arange(3.0)}
      >>> path = os.path.join(tempfile.mkdtemp(), "checkpoint.msgpack")
      >>> checkpoint.save_checkpoint(path, state, metadata={"batch_size": 8})
      >>> restored = checkpoint.load_checkpoint(path, state, expected_metadata={"batch_size": 8})
      >>> restored.state["w"]
      Array([0., 1., 2.], dtype=float32)
    """
    host_state = _to_host(state)
    header: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION}
    step = getattr(host_state, "step", None)
    if step is not None:
        header["step"] = int(step)
    for name, value in (metadata or {}).items():
        if name in ("format", "version", "step"):
            raise ValueError(f"metadata may not set the reserved header entry {name!r}")
        header[name] = _plain(value)
    history = np.zeros((0,), np.float32) if losses is None else np.asarray(losses)
    payload = {"header": header, "state": _state_dict(host_state), "losses": history}
    if jax.process_index() == 0:
        _atomic_write(path, serialization.msgpack_serialize(payload))
    if jax.process_count() > 1:  # nobody reads it before it is complete
        multihost_utils.sync_global_devices(f"ebm_jax.checkpoint.save_checkpoint {path!s}")


def _state_dict(state: Any) -> Any:
    """The state as a msgpack-ready dict; a :class:`TrainState` without an average omits it."""
    state_dict = serialization.to_state_dict(state)
    if isinstance(state, TrainState) and state.ema_params is None:
        # The file then reads as one written before TrainState had ema_params.
        del state_dict["ema_params"]
    return state_dict


def _restore_ema_entry(path: str | os.PathLike[str], template: Any, state_dict: Any) -> Any:
    """A saved :class:`TrainState` dict with an ``ema_params`` entry that matches ``template``'s."""
    if not isinstance(template, TrainState) or not isinstance(state_dict, dict):
        return state_dict
    saved_ema = state_dict.get("ema_params")
    if (saved_ema is None) != (template.ema_params is None):
        found, expected = ("an", "none") if saved_ema is not None else ("no", "one")
        raise ValueError(
            f"checkpoint_path {path!s} holds {found} average of the parameters (ema_params) "
            f"but the template has {expected}"
        )
    return {**state_dict, "ema_params": saved_ema}


def _to_host(state: Any) -> Any:
    """NumPy copies of the leaves; arrays split over several processes are gathered first."""

    def fetch(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return jax.device_get(leaf)

    return jax.tree.map(fetch, state)


_PAYLOAD_ENTRIES = ("header", "state", "losses")


def _describe(value: Any) -> str:
    """A short description of a decoded msgpack value, for error messages."""
    if isinstance(value, dict):
        if not value:
            return "an empty map"
        names = ", ".join(repr(key) for key in list(value)[:6])
        return f"a map with the entries {names}{', ...' if len(value) > 6 else ''}"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return f"a value of type {type(value).__name__}"


def _read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The decoded checkpoint file at ``path``, with its format and version checked."""
    with open(path, "rb") as handle:
        encoded = handle.read()
    if not encoded:
        raise ValueError(f"checkpoint_path {path!s} is truncated or corrupted: the file is empty")
    try:
        payload = serialization.msgpack_restore(encoded)
    except Exception as exc:  # msgpack's and flax's array decoders raise several types
        raise ValueError(
            f"checkpoint_path {path!s} is truncated or corrupted: its {len(encoded)} bytes are "
            f"not one complete msgpack document ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(payload, dict) or not set(_PAYLOAD_ENTRIES) <= payload.keys():
        raise ValueError(
            f"checkpoint_path {path!s} is not an ebm_jax checkpoint: it holds "
            f"{_describe(payload)}, not {_describe(dict.fromkeys(_PAYLOAD_ENTRIES))}"
        )
    header = payload["header"]
    if not isinstance(header, dict):
        raise ValueError(
            f"checkpoint_path {path!s} is not an ebm_jax checkpoint: its header is "
            f"{_describe(header)}, not a map"
        )
    if header.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint_path {path!s} has format {header.get('format')!r}, "
            f"expected {CHECKPOINT_FORMAT!r}"
        )
    version = header.get("version")
    if type(version) is not int or version != CHECKPOINT_VERSION:  # True == 1: not a version
        raise ValueError(
            f"checkpoint_path {path!s} has format version {version!r}; "
            f"this ebm_jax reads version {CHECKPOINT_VERSION}"
        )
    return payload


def _entry_paths(tree: Any, prefix: str) -> set[str]:
    """The paths of a (state-dict) tree's leaves, ``None`` entries included."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda leaf: leaf is None)
    return {prefix + jax.tree_util.keystr(key_path) for key_path, _ in leaves}


def _listed(paths: set[str]) -> str:
    shown = ", ".join(sorted(paths)[:5])
    return shown + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")


def _place_like(leaf: Any, reference: Any) -> Array:
    """``leaf`` as a JAX array, with ``reference``'s sharding when it spans several devices."""
    sharding = getattr(reference, "sharding", None)
    if isinstance(sharding, jax.sharding.Sharding) and len(sharding.device_set) > 1:
        host = np.asarray(leaf, jnp.result_type(reference))
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jnp.asarray(leaf)


def _restore_tree(
    path: str | os.PathLike[str], template: Any, saved: Any, *, name: str, prefix: str
) -> Any:
    """``saved``, a state dict read from ``path``, as a pytree of JAX arrays like ``template``.

    Its entries (all of ``template``'s and no others), shapes and dtypes
    must be ``template``'s; a mismatch raises a ``ValueError`` naming the
    entry (``prefix`` and its path). A leaf that ``template`` shards over
    several devices is restored with that sharding; the others land on the
    default device.
    """
    expected = _entry_paths(serialization.to_state_dict(template), prefix)
    found = _entry_paths(saved, prefix)
    if expected != found:
        differences = [
            f"{what} {_listed(paths)}"
            for what, paths in (("missing", expected - found), ("unexpected", found - expected))
            if paths
        ]
        raise ValueError(
            f"checkpoint_path {path!s} does not match {name}'s structure: " + "; ".join(differences)
        )
    try:
        restored = serialization.from_state_dict(template, saved)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"checkpoint_path {path!s} does not match {name}'s structure: {exc}"
        ) from exc

    def restore_leaf(key_path: Any, reference: Any, leaf: Any) -> Array:
        where = prefix + jax.tree_util.keystr(key_path)
        if not isinstance(leaf, (np.ndarray, np.generic, bool, int, float, complex)):
            raise ValueError(
                f"checkpoint_path {path!s} is corrupted: {where} holds {_describe(leaf)}, "
                "not an array"
            )
        shape, dtype = np.shape(leaf), jnp.result_type(leaf)
        expected_shape = tuple(getattr(reference, "shape", np.shape(reference)))
        expected_dtype = jnp.result_type(reference)
        if shape != expected_shape or dtype != expected_dtype:
            raise ValueError(
                f"checkpoint_path {path!s} does not match {name}: {where} has shape {shape} "
                f"and dtype {dtype}, expected {expected_shape} and {expected_dtype}"
            )
        return _place_like(leaf, reference)

    # Mapped over the template's leaves: a saved subtree where it has a leaf reaches
    # restore_leaf whole.
    return jax.tree_util.tree_map_with_path(restore_leaf, template, restored)


def load_checkpoint(
    path: str | os.PathLike[str],
    template: Any,
    *,
    expected_metadata: Mapping[str, Any] | None = None,
) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (or :func:`fit`).

    Only msgpack is decoded (never pickle), and everything is checked before
    it is used: the header, then the state against ``template``.

    Args:
      path: the file to read.
      template: a pytree with the structure, shapes and dtypes of the saved
        state (e.g. a freshly initialised :class:`TrainState`); its leaves
        may be :class:`jax.ShapeDtypeStruct`. A leaf sharded over several
        devices is restored with its sharding; the others land on the
        default device.
      expected_metadata: header entries that must match, e.g.
        ``{"batch_size": 64}``.

    Returns:
      A :class:`Checkpoint` whose ``state`` has the structure of ``template``
      (JAX arrays) and whose ``losses`` is the saved history.

    Raises:
      ValueError: naming ``path`` and what is wrong: the file is empty,
        truncated or corrupted; it is not an ebm_jax checkpoint or has
        another format version; a header entry differs from
        ``expected_metadata``; or the saved state does not match
        ``template`` (a missing or unexpected entry, or a leaf of another
        shape or dtype, named by its path).
    """
    payload = _read_checkpoint(path)
    header = payload["header"]
    for name, expected in (expected_metadata or {}).items():
        found = header.get(name)
        if found != _plain(expected):
            raise ValueError(
                f"checkpoint_path {path!s} was written with {name}={found!r}, but this run "
                f"has {name}={_plain(expected)!r}; use a new checkpoint_path or resume=False"
            )
    saved_state = _restore_ema_entry(path, template, payload["state"])
    state = _restore_tree(path, template, saved_state, name="the template", prefix="state")
    losses = payload["losses"]
    if not isinstance(losses, np.ndarray):
        raise ValueError(
            f"checkpoint_path {path!s} is corrupted: its losses are {_describe(losses)}, "
            "not an array"
        )
    return Checkpoint(state, losses, header)


class SavedParams(NamedTuple):
    """What :func:`load_params` returns.

    Attributes:
      params: the parameters, with the structure of the template (JAX arrays).
      ema_params: their exponential moving average (:func:`fit`'s
        ``ema_decay``), with the same structure, or ``None`` when the run kept
        none.
      step: the number of optimizer steps behind them, or ``None`` when the
        file does not record it.
    """

    params: ArrayTree
    ema_params: ArrayTree | None
    step: int | None


def load_params(path: str | os.PathLike[str], params_template: ArrayTree) -> SavedParams:
    """Read the parameters, and their moving average if kept, from a checkpoint.

    To sample from or evaluate a trained model, only the parameters are
    needed; :func:`load_checkpoint` would ask for a template of the whole
    :class:`TrainState`, optimizer and loss state included. Both the
    parameters and their average come back, as in :class:`FitResult`: sample
    with ``ema_params`` when the run kept one (as Ho et al. 2020 and Song &
    Ermon 2020 do), e.g.
    ``saved.params if saved.ema_params is None else saved.ema_params``.

    Only msgpack is decoded (never pickle). A checkpoint written by a data
    parallel run holds the whole parameters (replicated or gathered arrays),
    so it loads on any number of devices.

    Args:
      path: a checkpoint written by :func:`fit` (``checkpoint_path``) or by
        :func:`save_checkpoint` of a :class:`TrainState` (or of any state
        with a ``params`` entry).
      params_template: a pytree with the structure, shapes and dtypes of the
        parameters, e.g. the initial ``params`` given to :func:`fit`, or
        ``jax.eval_shape(model.init, rng_key, x)`` to allocate nothing. A
        leaf sharded over several devices (the replicated parameters of a
        data parallel run) is restored with its sharding; the others land on
        the default device. The moving average is checked against it too.

    Returns:
      A :class:`SavedParams` ``(params, ema_params, step)``.

    Raises:
      ValueError: naming ``path`` and what is wrong: the file is empty,
        truncated or corrupted; it is not an ebm_jax checkpoint or has
        another format version; it holds no ``params``; or the parameters
        (or their average) do not match ``params_template`` (a missing or
        unexpected entry, or a leaf of another shape or dtype, named by its
        path).

    Examples:
      >>> import os, tempfile
      >>> import jax.numpy as jnp
      >>> from ebm_jax import checkpoint, training
      >>> params = {"w": jnp.ones(3)}
      >>> state = training.TrainState(jnp.int32(7), params, (), None, ema_params=params)
      >>> path = os.path.join(tempfile.mkdtemp(), "run.msgpack")
      >>> checkpoint.save_checkpoint(path, state)
      >>> saved = checkpoint.load_params(path, {"w": jnp.zeros(3)})
      >>> saved.step, saved.params["w"], saved.ema_params is not None
      (7, Array([1., 1., 1.], dtype=float32), True)
      >>> checkpoint.load_params(path, {"w": jnp.zeros(2)})  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: checkpoint_path ... params['w'] has shape (3,) and dtype float32, expected (2,)...
    """
    payload = _read_checkpoint(path)
    state = payload["state"]
    if not isinstance(state, dict) or "params" not in state:
        raise ValueError(
            f"checkpoint_path {path!s} holds no parameters: its state is {_describe(state)}, "
            "with no 'params' entry (load_params reads the files of fit and of "
            "save_checkpoint of a TrainState)"
        )
    restore = functools.partial(_restore_tree, path, params_template, name="params_template")
    params = restore(state["params"], prefix="params")
    saved_ema = state.get("ema_params")
    ema_params = None if saved_ema is None else restore(saved_ema, prefix="ema_params")
    step = payload["header"].get("step")
    return SavedParams(params, ema_params, step if type(step) is int else None)


__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "SavedParams",
    "load_checkpoint",
    "load_params",
    "save_checkpoint",
]

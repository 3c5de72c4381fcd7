"""Checkpoint files: damaged files named, parameters loaded alone, writes that survive a kill."""

from __future__ import annotations

import os
import pickle
import re
import select
import stat
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

from ebm_jax import training

PARAMS = {"dense": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3)}}
ADAM = optax.adam(1e-2)


def train_state(params=PARAMS, step=5, ema=True):
    """A TrainState as fit writes it: Adam's state, no loss state, an optional average."""
    ema_params = jax.tree.map(lambda leaf: leaf / 2, params) if ema else None
    return training.TrainState(jnp.int32(step), params, ADAM.init(params), None, ema_params)


def write_bytes(path, payload):
    with open(path, "wb") as handle:
        handle.write(payload)
    return path


def write_payload(path, payload):
    return write_bytes(path, serialization.msgpack_serialize(payload))


def saved_payload(path):
    with open(path, "rb") as handle:
        return serialization.msgpack_restore(handle.read())


def assert_trees_equal(actual, desired):
    assert jax.tree.structure(actual) == jax.tree.structure(desired)
    for left, right in zip(jax.tree.leaves(actual), jax.tree.leaves(desired), strict=True):
        assert np.asarray(left).dtype == np.asarray(right).dtype
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))


def both_loaders_raise(path, match):
    """load_checkpoint and load_params both refuse ``path``, naming it and ``match``."""
    pattern = rf"checkpoint_path {re.escape(str(path))} {match}"
    with pytest.raises(ValueError, match=pattern):
        training.load_checkpoint(path, train_state())
    with pytest.raises(ValueError, match=pattern):
        training.load_params(path, PARAMS)


# Damaged and foreign files.


@pytest.mark.parametrize("fraction", [0.0, 1e-3, 0.25, 0.5, 0.9, 0.999])
def test_a_truncated_file_is_named_truncated_or_corrupted(tmp_path, fraction):
    path = tmp_path / "run.msgpack"
    training.save_checkpoint(path, train_state(), np.arange(5.0))
    with open(path, "rb") as handle:
        complete = handle.read()
    cut = int(fraction * len(complete))
    write_bytes(path, complete[:cut])
    expected = "the file is empty" if cut == 0 else f"its {cut} bytes are not one complete msgpack"
    both_loaders_raise(path, f"is truncated or corrupted: {expected}")


def test_trailing_bytes_and_random_bytes_are_named_corrupted(tmp_path):
    path = tmp_path / "run.msgpack"
    training.save_checkpoint(path, train_state())
    with open(path, "ab") as handle:
        handle.write(b"\x00")
    both_loaders_raise(path, "is truncated or corrupted: .*ExtraData")
    rng = np.random.default_rng(0)
    for size in (7, 1000, 100_000):
        write_bytes(path, rng.bytes(size))
        both_loaders_raise(path, "is truncated or corrupted")
    write_bytes(path, b"\x07")  # one byte is a whole msgpack document: the integer 7
    both_loaders_raise(path, "is not an ebm_jax checkpoint: it holds a value of type int")


def test_files_that_are_not_checkpoints_are_named(tmp_path):
    text = write_bytes(tmp_path / "notes.txt", b"step 100: loss 0.25\n")
    both_loaders_raise(text, "is truncated or corrupted")
    np.savez(tmp_path / "arrays.npz", w=np.ones(3))
    both_loaders_raise(tmp_path / "arrays.npz", "is truncated or corrupted")
    # A pickle of a whole checkpoint's contents is refused as bytes: nothing unpickles it.
    training.save_checkpoint(tmp_path / "run.msgpack", train_state())
    contents = pickle.dumps(saved_payload(tmp_path / "run.msgpack"))
    pickled = write_bytes(tmp_path / "run.pkl", contents)
    both_loaders_raise(pickled, "is truncated or corrupted")
    # Valid msgpack, but the parameters alone (flax.serialization.to_bytes), or a list.
    flax_params = write_bytes(tmp_path / "params.msgpack", serialization.to_bytes(PARAMS))
    both_loaders_raise(
        flax_params,
        "is not an ebm_jax checkpoint: it holds a map with the entries 'dense', "
        "not a map with the entries 'header', 'state', 'losses'",
    )
    listed = write_payload(tmp_path / "list.msgpack", [1, 2, 3])
    both_loaders_raise(listed, "is not an ebm_jax checkpoint: it holds a value of type list")


def test_a_damaged_header_is_named(tmp_path):
    path = tmp_path / "run.msgpack"
    training.save_checkpoint(path, train_state())
    payload = saved_payload(path)
    write_payload(path, {**payload, "header": [1]})
    both_loaders_raise(path, "is not an ebm_jax checkpoint: its header is a value of type list")
    write_payload(path, {**payload, "header": {**payload["header"], "format": "other"}})
    both_loaders_raise(path, "has format 'other', expected 'ebm_jax.training'")
    for version in (None, True, 1.0, "1", training.CHECKPOINT_VERSION + 1):
        write_payload(path, {**payload, "header": {**payload["header"], "version": version}})
        both_loaders_raise(path, f"has format version {re.escape(repr(version))};")


def test_a_state_of_the_wrong_shape_is_named(tmp_path):
    path = tmp_path / "run.msgpack"
    training.save_checkpoint(path, train_state(), np.arange(5.0))
    payload = saved_payload(path)
    state = payload["state"]

    def with_params(params):
        return write_payload(path, {**payload, "state": {**state, "params": params}})

    with_params("weights")
    both_loaders_raise(
        path,
        r"does not match (the template|params_template)'s structure: missing .*"
        r"\['dense'\]\['bias'\].*; unexpected .*params",
    )
    with_params({"dense": {**state["params"]["dense"], "scale": np.ones(3, np.float32)}})
    both_loaders_raise(path, r".*structure: unexpected \S*params\S*\['dense'\]\['scale'\]$")
    with_params({"dense": {**state["params"]["dense"], "kernel": "text"}})
    both_loaders_raise(path, r"is corrupted: \S*params\S*\['kernel'\] holds a value of type str")
    with_params({"dense": {**state["params"]["dense"], "bias": np.ones(4, np.float32)}})
    both_loaders_raise(path, r".*\['bias'\] has shape \(4,\) and dtype float32, expected \(3,\)")

    write_payload(path, {**payload, "losses": "none"})
    with pytest.raises(ValueError, match="is corrupted: its losses are a value of type str"):
        training.load_checkpoint(path, train_state())
    write_payload(path, {**payload, "state": [1, 2]})
    with pytest.raises(ValueError, match="holds no parameters: its state is a value of type list"):
        training.load_params(path, PARAMS)


# load_params.


def test_load_params_returns_the_parameters_and_their_average_of_a_fit(tmp_path):
    path = tmp_path / "run.msgpack"

    def loss_fn(params, rng_key, batch):
        return 0.5 * jnp.mean(jnp.sum((batch - params["mean"]) ** 2, axis=-1))

    data = jax.random.normal(jax.random.key(0), (16, 2))
    initial = {"mean": jnp.zeros(2)}
    result = training.fit(
        jax.random.key(1), loss_fn, initial, optax.sgd(0.5), data,
        num_steps=6, batch_size=4, chunk_size=3, ema_decay=0.5, checkpoint_path=path,
    )  # fmt: skip
    saved = training.load_params(path, initial)
    assert isinstance(saved, training.SavedParams)
    assert saved.step == 6
    assert_trees_equal(saved.params, result.params)
    assert_trees_equal(saved.ema_params, result.ema_params)
    # An abstract template allocates nothing and gives the same arrays.
    abstract = training.load_params(path, jax.eval_shape(lambda: initial))
    assert_trees_equal(abstract.params, result.params)


def test_load_params_without_an_average_gives_none(tmp_path):
    path = tmp_path / "run.msgpack"
    state = train_state(step=3, ema=False)
    training.save_checkpoint(path, state)
    assert "ema_params" not in saved_payload(path)["state"]
    saved = training.load_params(path, PARAMS)
    assert saved.ema_params is None and saved.step == 3
    assert_trees_equal(saved.params, PARAMS)
    # A plain dict state with a params entry loads too; it records no step.
    training.save_checkpoint(path, {"params": PARAMS})
    plain = training.load_params(path, PARAMS)
    assert plain.ema_params is None and plain.step is None
    assert_trees_equal(plain.params, PARAMS)


def test_load_params_checks_the_template_leaf_by_leaf(tmp_path):
    path = tmp_path / "run.msgpack"
    training.save_checkpoint(path, train_state())
    prefix = rf"checkpoint_path {re.escape(str(path))} does not match params_template"
    bias = "params['dense']['bias']"
    for template, message in [
        (
            {"dense": {**PARAMS["dense"], "bias": jnp.ones(4)}},
            rf": {re.escape(bias)} has shape \(3,\) and dtype float32, expected \(4,\) and float32",
        ),
        (
            {"dense": {**PARAMS["dense"], "bias": jnp.ones(3, jnp.bfloat16)}},
            r": .*\['bias'\] has shape \(3,\) and dtype float32, expected \(3,\) and bfloat16",
        ),
        ({"dense": PARAMS["dense"]["kernel"]}, r"'s structure: missing params\['dense'\]; unexp"),
        (
            {"dense": {"kernel": PARAMS["dense"]["kernel"]}},
            rf"'s structure: unexpected {re.escape(bias)}$",
        ),
    ]:
        with pytest.raises(ValueError, match=prefix + message):
            training.load_params(path, template)
    # The average is checked too.
    payload = saved_payload(path)
    payload["state"]["ema_params"]["dense"]["bias"] = np.ones(2, np.float32)
    write_payload(path, payload)
    with pytest.raises(ValueError, match=r"ema_params\['dense'\]\['bias'\] has shape \(2,\)"):
        training.load_params(path, PARAMS)


# Writing.


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_checkpoint_gets_the_permissions_of_any_new_file(tmp_path, umask):
    previous = os.umask(umask)
    try:
        training.save_checkpoint(tmp_path / "run.msgpack", train_state())
        with open(tmp_path / "plain", "wb"):
            pass
    finally:
        os.umask(previous)
    mode = stat.S_IMODE(os.stat(tmp_path / "run.msgpack").st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE(os.stat(tmp_path / "plain").st_mode)


def test_the_file_and_then_its_directory_are_flushed_to_disk(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(descriptor):
        synced.append("directory" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "file")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    training.save_checkpoint(tmp_path / "run.msgpack", train_state())
    assert synced == ["file", "directory"] or (os.name != "posix" and synced == ["file"])


def test_a_write_that_fails_keeps_the_previous_checkpoint_and_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "run.msgpack"
    training.save_checkpoint(path, train_state(step=1))

    def failing_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        training.save_checkpoint(path, train_state(step=2))
    assert os.listdir(tmp_path) == ["run.msgpack"]
    assert training.load_params(path, PARAMS).step == 1


# The child writes the next checkpoint through a file object that lets half of the bytes
# reach the temporary file, says how many, and stalls until it is killed.
KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from ebm_jax import training

    class HalfWrite:
        def __init__(self, handle):
            self.handle = handle
        def __enter__(self):
            return self
        def __exit__(self, *exception):
            self.handle.close()
        def fileno(self):
            return self.handle.fileno()
        def write(self, payload):
            self.handle.write(payload[: len(payload) // 2])
            self.handle.flush()
            print(len(payload) // 2, flush=True)
            time.sleep(120)

    real_fdopen = os.fdopen
    os.fdopen = lambda descriptor, mode: HalfWrite(real_fdopen(descriptor, mode))
    size = int(sys.argv[2])
    training.save_checkpoint(sys.argv[1], {"params": {"w": np.full(size, 2.0, np.float32)}})
    """
)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and select on a pipe")
def test_a_write_killed_midway_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "run.msgpack"
    size = 250_000  # a 1 MB checkpoint
    template = {"w": jnp.zeros(size)}
    training.save_checkpoint(path, {"params": {"w": jnp.full(size, 1.0)}})

    errors = tmp_path / "stderr.txt"
    with open(errors, "w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(path), str(size)],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
            env=dict(os.environ, JAX_PLATFORMS="cpu"),
        )  # fmt: skip
    try:
        ready, _, _ = select.select([child.stdout], [], [], 120)
        written = child.stdout.readline() if ready else ""
        assert written, errors.read_text()[-4000:]
    finally:
        child.kill()  # SIGKILL: no handler, no cleanup runs in the child
        child.wait()
        child.stdout.close()
    os.remove(errors)

    # The child died mid-write: half of its file is on disk beside the checkpoint.
    (stray,) = [name for name in os.listdir(tmp_path) if name != "run.msgpack"]
    assert stray.startswith("run.msgpack.") and stray.endswith(".tmp")
    assert os.path.getsize(tmp_path / stray) == int(written)
    # The checkpoint is the previous one, whole; the partial file is never taken for it.
    saved = training.load_params(path, template)
    np.testing.assert_array_equal(saved.params["w"], np.full(size, 1.0, np.float32))
    with pytest.raises(ValueError, match="is truncated or corrupted"):
        training.load_params(tmp_path / stray, template)

    # The next write succeeds, and removes the dead write's temporary file.
    training.save_checkpoint(path, {"params": {"w": jnp.full(size, 3.0)}})
    assert os.listdir(tmp_path) == ["run.msgpack"]
    np.testing.assert_array_equal(training.load_params(path, template).params["w"], 3.0)

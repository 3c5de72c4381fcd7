"""The optax training loop: known optima, bitwise chunk/resume invariance, epochs, checkpoints."""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

from ebm_jax import training
from ebm_jax.models import MLPScore
from tests.helpers import assert_mean_within_mcse

# Module-level losses and optimizers: the chunk function is jitted with them as
# static arguments, so the tests share its compilations.
SGD_HALF = optax.sgd(0.5)
SGD_ONE = optax.sgd(1.0)
ADAM = optax.adam(1e-2)


def quadratic_loss(params, rng_key, batch):
    """½ mean ‖x - μ‖²: minimised by the mean of the data."""
    return 0.5 * jnp.mean(jnp.sum((batch - params["mean"]) ** 2, axis=-1))


SCORE_MODEL = MLPScore((8,))
NOISE_SCALE = 0.3


def denoising_loss(params, rng_key, batch):
    """Denoising score matching at one noise level: uses the key, the batch and a network."""
    noise = jax.random.normal(rng_key, batch.shape)
    scores = jax.vmap(SCORE_MODEL.apply, in_axes=(None, 0))(params, batch + NOISE_SCALE * noise)
    return jnp.mean(jnp.sum((scores + noise / NOISE_SCALE) ** 2, axis=-1))


def counting_denoising_loss(params, rng_key, batch, loss_state):
    """The same loss, stateful: the state counts steps and sums the batch means."""
    count, batch_mean_sum = loss_state
    return denoising_loss(params, rng_key, batch), (count + 1, batch_mean_sum + batch.mean(0))


DATA = jax.random.normal(jax.random.key(10), (40, 2)) * jnp.array([1.0, 0.5]) + 1.0
SCORE_PARAMS = jax.jit(SCORE_MODEL.init)(jax.random.key(11), jnp.zeros(2))
COUNTING_STATE = (jnp.zeros((), jnp.int32), jnp.zeros(2))


def assert_trees_equal(actual, desired):
    assert jax.tree.structure(actual) == jax.tree.structure(desired)
    for left, right in zip(jax.tree.leaves(actual), jax.tree.leaves(desired), strict=True):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))


def fit_denoiser(stateful=False, **kwargs):
    # Chunk lengths used across the tests: 8 and 4; each compiles once.
    arguments = {"num_steps": 24, "batch_size": 8, "chunk_size": 8, **kwargs}
    if stateful:
        return training.fit(
            jax.random.key(1), counting_denoising_loss, SCORE_PARAMS, ADAM, DATA,
            loss_state=COUNTING_STATE, **arguments,
        )  # fmt: skip
    return training.fit(jax.random.key(1), denoising_loss, SCORE_PARAMS, ADAM, DATA, **arguments)


def test_full_batch_gradient_descent_reaches_the_data_mean():
    """With batch_size = num_examples, SGD at rate ½ contracts the error by ½ per step."""
    result = training.fit(
        jax.random.key(0), quadratic_loss, {"mean": jnp.zeros(2)}, SGD_HALF, DATA,
        num_steps=60, batch_size=40,
    )  # fmt: skip
    optimum = np.asarray(DATA).mean(axis=0)
    np.testing.assert_allclose(result.params["mean"], optimum, rtol=1e-5, atol=1e-6)
    # The first loss is at the initial parameters, the last one at the optimum: ½ tr Cov.
    np.testing.assert_allclose(
        result.losses[0], 0.5 * np.mean(np.sum(np.asarray(DATA) ** 2, axis=1)), rtol=1e-5
    )
    np.testing.assert_allclose(
        result.losses[-1], 0.5 * np.sum(np.asarray(DATA).var(axis=0)), rtol=1e-5
    )
    assert result.losses.shape == (60,)
    assert int(result.state.step) == 60


def test_result_is_bitwise_independent_of_chunk_size():
    reference = fit_denoiser()  # chunks of 8; an epoch is 5 steps
    result = fit_denoiser(chunk_size=4)
    assert_trees_equal(result.state, reference.state)
    np.testing.assert_array_equal(result.losses, reference.losses)
    # ...and the training did something: the loss of the denoiser went down.
    assert float(reference.losses[-8:].mean()) < float(reference.losses[:8].mean())


@pytest.mark.parametrize("stateful", [False, True], ids=["stateless", "stateful"])
def test_resume_from_a_checkpoint_is_bit_for_bit(stateful, tmp_path):
    path = tmp_path / "run.msgpack"
    reference = fit_denoiser(stateful)
    first = fit_denoiser(stateful, num_steps=12, checkpoint_path=path)
    assert int(first.state.step) == 12
    resumed = fit_denoiser(stateful, chunk_size=4, checkpoint_path=path)
    assert_trees_equal(resumed.params, reference.params)
    assert_trees_equal(resumed.opt_state, reference.opt_state)
    assert_trees_equal(resumed.loss_state, reference.loss_state)
    np.testing.assert_array_equal(resumed.losses, reference.losses)
    if stateful:
        assert int(resumed.loss_state[0]) == 24


def test_resume_false_starts_afresh(tmp_path):
    path = tmp_path / "run.msgpack"
    fit_denoiser(num_steps=12, checkpoint_path=path)
    restarted = fit_denoiser(num_steps=12, checkpoint_path=path, resume=False)
    np.testing.assert_array_equal(restarted.losses, fit_denoiser(num_steps=12).losses)


def recording_loss(params, rng_key, batch, loss_state):
    """Record the example indices of each batch in the loss state (data = indices)."""
    step, record = loss_state
    record = jax.lax.dynamic_update_index_in_dim(record, batch[:, 0].astype(jnp.int32), step, 0)
    return jnp.sum(params["w"] ** 2), (step + 1, record)


def test_each_epoch_visits_every_example_at_most_once():
    """10 examples, batches of 3: 3 steps an epoch, 9 distinct examples, one dropped."""
    num_examples, batch_size, num_epochs = 10, 3, 4
    steps_per_epoch = num_examples // batch_size
    num_steps = num_epochs * steps_per_epoch
    indices = jnp.arange(num_examples, dtype=jnp.float32)[:, None]
    record = jnp.full((num_steps, batch_size), -1, jnp.int32)

    def visits(chunk_size):
        result = training.fit(
            jax.random.key(3), recording_loss, {"w": jnp.ones(())}, SGD_HALF, indices,
            num_steps=num_steps, batch_size=batch_size, chunk_size=chunk_size,
            loss_state=(jnp.zeros((), jnp.int32), record),
        )  # fmt: skip
        return np.asarray(result.loss_state[1]).reshape(num_epochs, -1)

    by_epoch = visits(chunk_size=num_steps)
    assert by_epoch.min() >= 0
    for epoch in by_epoch:
        assert len(set(epoch.tolist())) == steps_per_epoch * batch_size  # without replacement
    assert len({tuple(epoch.tolist()) for epoch in by_epoch}) == num_epochs  # reshuffled
    assert set(by_epoch.ravel().tolist()) == set(range(num_examples))
    # Chunks of 2 steps straddle the epochs of 3 steps, and see the same batches.
    np.testing.assert_array_equal(visits(chunk_size=2), by_epoch)


TOY_MEAN = jnp.array([2.0, -1.0])


def toy_sampler(rng_key, num_samples):
    return TOY_MEAN + jax.random.normal(rng_key, (num_samples, 2))


def recording_quadratic_loss(params, rng_key, batch, loss_state):
    step, batch_means = loss_state
    batch_means = jax.lax.dynamic_update_index_in_dim(batch_means, batch.mean(0), step, 0)
    return quadratic_loss(params, rng_key, batch), (step + 1, batch_means)


def test_callable_data_draws_a_fresh_batch_every_step():
    """SGD on ½‖x - w‖² with fresh N(μ, I) batches: closed-form stationary spread.

    With rate η and batch means x̄_t ~ N(μ, I/B), w_{t+1} = (1-η) w_t + η x̄_t has
    stationary variance η / (B (2 - η)) per coordinate.
    """
    num_steps, batch_size, rate = 300, 16, 0.5
    loss_state = (jnp.zeros((), jnp.int32), jnp.zeros((num_steps, 2)))
    result = training.fit(
        jax.random.key(4), recording_quadratic_loss, {"mean": jnp.zeros(2)}, SGD_HALF,
        toy_sampler, num_steps=num_steps, batch_size=batch_size, chunk_size=100,
        loss_state=loss_state,
    )  # fmt: skip
    batch_means = np.asarray(result.loss_state[1], np.float64)
    # Independent batches: their means are centred on μ with variance 1/B.
    assert_mean_within_mcse(batch_means, TOY_MEAN, what="batch means")
    variance = batch_means.var(axis=0, ddof=1)
    standard_error = (1.0 / batch_size) * np.sqrt(2.0 / (num_steps - 1))
    assert np.all(np.abs(variance - 1.0 / batch_size) < 4.0 * standard_error), variance
    stationary_sd = np.sqrt(rate / (batch_size * (2.0 - rate)))
    error = np.abs(np.asarray(result.params["mean"]) - np.asarray(TOY_MEAN))
    assert np.all(error < 4.0 * stationary_sd), error


def test_chunk_function_is_traced_once():
    traces = {"count": 0}

    def loss_fn(params, rng_key, batch):
        traces["count"] += 1
        return quadratic_loss(params, rng_key, batch)

    def run(num_steps):
        return training.fit(
            jax.random.key(5), loss_fn, {"mean": jnp.zeros(2)}, SGD_HALF, DATA,
            num_steps=num_steps, batch_size=8, chunk_size=5,
        )  # fmt: skip

    run(20)  # four chunks
    # One trace for the eval_shape check, one for the compiled chunk.
    assert traces["count"] == 2
    run(15)  # same objects and shapes: the compiled chunk is reused
    assert traces["count"] <= 3


class TraceCounter:
    """Counts traces of an optimizer's update, which only the compiled chunk traces."""

    def __init__(self):
        self.count = 0

    def wrap(self, optimizer):
        inner_update = optimizer.update

        def update(updates, opt_state, params=None):
            self.count += 1
            return inner_update(updates, opt_state, params)

        return optax.GradientTransformation(optimizer.init, update)


def fit_quadratic(optimizer):
    return training.fit(
        jax.random.key(6), quadratic_loss, {"mean": jnp.zeros(2)}, optimizer, DATA,
        num_steps=10, batch_size=8, chunk_size=10,
    )  # fmt: skip


def test_injected_hyperparameters_are_data_a_learning_rate_sweep_compiles_once():
    traces = TraceCounter()
    injected_adam = optax.inject_hyperparams(optax.adam)
    slow = fit_quadratic(traces.wrap(injected_adam(learning_rate=0.01)))
    assert traces.count == 1
    fast_optimizer = traces.wrap(injected_adam(learning_rate=0.1))
    fast = fit_quadratic(fast_optimizer)
    assert traces.count == 1  # a new rate, the same program
    fit_quadratic(fast_optimizer)  # the very same objects
    assert traces.count == 1
    # The reused program reads the new rate from the optimizer state: it matches plain Adam.
    reference = fit_quadratic(optax.adam(0.1))
    np.testing.assert_allclose(fast.params["mean"], reference.params["mean"], rtol=1e-5)
    np.testing.assert_allclose(fast.losses, reference.losses, rtol=1e-5)
    assert not np.allclose(slow.params["mean"], fast.params["mean"])


def test_optimizers_built_alike_share_a_compilation_but_a_closed_over_rate_does_not():
    traces = TraceCounter()
    first = fit_quadratic(traces.wrap(optax.adam(0.01)))
    again = fit_quadratic(traces.wrap(optax.adam(0.01)))  # new objects, built the same way
    assert traces.count == 1
    np.testing.assert_array_equal(again.params["mean"], first.params["mean"])
    # optax.adam closes over its rate as a Python float, a constant of the program.
    faster = fit_quadratic(traces.wrap(optax.adam(0.1)))
    assert traces.count == 2
    assert not np.allclose(faster.params["mean"], first.params["mean"])
    fit_quadratic(traces.wrap(optax.sgd(0.01)))  # another update rule
    assert traces.count == 3


def test_log_fn_gets_the_chunk_mean_and_progress_bar_shows(capsys):
    logged = []
    result = training.fit(
        jax.random.key(6), quadratic_loss, {"mean": jnp.zeros(2)}, SGD_HALF, DATA,
        num_steps=15, batch_size=8, chunk_size=5, progress=True,
        log_fn=lambda step, metrics: logged.append((step, metrics)),
    )  # fmt: skip
    assert [step for step, _ in logged] == [5, 10, 15]
    losses = np.asarray(result.losses)
    for (step, metrics), start in zip(logged, [0, 5, 10], strict=True):
        assert metrics["step"] == step
        assert metrics["loss"] == float(np.mean(losses[start:step]))
    assert "fit" in capsys.readouterr().err


def test_progress_bar_is_optional(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # `from tqdm.auto import ...` fails
    result = training.fit(
        jax.random.key(6), quadratic_loss, {"mean": jnp.zeros(2)}, SGD_HALF, DATA,
        num_steps=15, batch_size=8, chunk_size=5, progress=True,
    )  # fmt: skip
    assert result.losses.shape == (15,)


def test_checkpoint_is_msgpack_with_a_header(tmp_path):
    path = tmp_path / "run.msgpack"
    result = fit_denoiser(num_steps=12, checkpoint_path=path)
    with open(path, "rb") as handle:
        payload = serialization.msgpack_restore(handle.read())
    header = payload["header"]
    assert header["format"] == training.CHECKPOINT_FORMAT
    assert header["version"] == training.CHECKPOINT_VERSION
    assert (header["step"], header["batch_size"], header["num_examples"]) == (12, 8, 40)
    np.testing.assert_array_equal(payload["losses"], result.losses)
    assert os.listdir(tmp_path) == ["run.msgpack"]  # the temporary file was moved, not left
    loaded = training.load_checkpoint(path, result.state)
    assert_trees_equal(loaded.state, result.state)


def test_checkpoint_mismatches_are_reported(tmp_path):
    path = tmp_path / "run.msgpack"
    result = fit_denoiser(num_steps=12, checkpoint_path=path)
    with pytest.raises(ValueError, match="batch_size"):
        fit_denoiser(batch_size=4, checkpoint_path=path)
    with pytest.raises(ValueError, match="rng_key"):
        training.fit(
            jax.random.key(99), denoising_loss, SCORE_PARAMS, ADAM, DATA,
            num_steps=24, batch_size=8, checkpoint_path=path,
        )  # fmt: skip
    with pytest.raises(ValueError, match="more than num_steps"):
        fit_denoiser(num_steps=6, checkpoint_path=path)
    with pytest.raises(ValueError, match="template"):
        training.load_checkpoint(path, result.state._replace(params={"other": jnp.zeros(2)}))

    other_version = tmp_path / "old.msgpack"
    training.save_checkpoint(other_version, result.state, result.losses)
    with open(other_version, "rb") as handle:
        payload = serialization.msgpack_restore(handle.read())
    payload["header"]["version"] = training.CHECKPOINT_VERSION + 1
    with open(other_version, "wb") as handle:
        handle.write(serialization.msgpack_serialize(payload))
    with pytest.raises(ValueError, match="version"):
        training.load_checkpoint(other_version, result.state)


def linear_ascent_with_nan_loss(params, rng_key, batch):
    """With SGD at rate 1, w_t = t exactly; the loss is NaN from w = 12 on."""
    w = params["w"]
    return -w + jnp.where(w > 11.5, jnp.nan, 0.0)


def linear_ascent_with_nan_gradient(params, rng_key, batch):
    """Finite loss everywhere; the gradient of sqrt|w - 12| is not finite at w = 12."""
    w = params["w"]
    return -w + jnp.where(w > 11.5, jnp.sqrt(jnp.abs(w - 12.0)), 0.0)


@pytest.mark.parametrize(
    "loss_fn", [linear_ascent_with_nan_loss, linear_ascent_with_nan_gradient], ids=["loss", "grad"]
)
def test_nonfinite_step_stops_training_and_keeps_the_last_good_checkpoint(loss_fn, tmp_path):
    path = tmp_path / "run.msgpack"
    params = {"w": jnp.zeros(())}
    with pytest.raises(training.NonFiniteLossError, match="step 12") as raised:
        training.fit(
            jax.random.key(7), loss_fn, params, SGD_ONE, DATA,
            num_steps=30, batch_size=4, chunk_size=5, checkpoint_path=path,
        )  # fmt: skip
    error = raised.value
    assert isinstance(error, FloatingPointError)
    assert error.step == 12
    # Frozen inside the chunk [10, 15): the state before step 12, not a NaN one.
    assert int(error.last_good_state.step) == 12
    assert float(error.last_good_state.params["w"]) == 12.0
    np.testing.assert_array_equal(error.losses, -np.arange(12.0))
    # The checkpoint of the chunk [5, 10) is still on disk.
    template = training.TrainState(jnp.zeros((), jnp.int32), params, SGD_ONE.init(params), None)
    checkpoint = training.load_checkpoint(path, template)
    assert int(checkpoint.state.step) == 10
    assert float(checkpoint.state.params["w"]) == 10.0
    np.testing.assert_array_equal(checkpoint.losses, -np.arange(10.0))


def linear_ascent_with_nan_gradient_at_14(params, rng_key, batch):
    """The gradient is NaN at w = 14, the LAST step of the chunk [10, 15); the loss stays finite."""
    w = params["w"]
    return -w + jnp.where(w > 13.5, jnp.sqrt(jnp.abs(w - 14.0)), 0.0)


def test_a_nan_made_by_a_chunk_s_last_step_is_caught():
    """No later loss in the chunk sees it: the final-state check triggers the checked replay."""
    with pytest.raises(training.NonFiniteLossError, match="step 14") as raised:
        training.fit(
            jax.random.key(7), linear_ascent_with_nan_gradient_at_14, {"w": jnp.zeros(())},
            SGD_ONE, DATA, num_steps=30, batch_size=4, chunk_size=5,
        )  # fmt: skip
    assert int(raised.value.last_good_state.step) == 14
    assert float(raised.value.last_good_state.params["w"]) == 14.0
    np.testing.assert_array_equal(raised.value.losses, -np.arange(14.0))


def ascent_with_nan_loss_state(params, rng_key, batch, loss_state):
    """A finite loss whose state (a sampler's chains, say) turns NaN at step 6."""
    del rng_key, batch
    new_state = jnp.where(loss_state >= 5.5, jnp.nan, loss_state + 1.0)
    return -params["w"], new_state


def test_a_nonfinite_loss_state_stops_training():
    with pytest.raises(training.NonFiniteLossError, match="step 6") as raised:
        training.fit(
            jax.random.key(7), ascent_with_nan_loss_state, {"w": jnp.zeros(())}, SGD_ONE, DATA,
            num_steps=20, batch_size=4, chunk_size=4, loss_state=jnp.zeros(()),
        )  # fmt: skip
    assert float(raised.value.last_good_state.loss_state) == 6.0


SKIP_NONFINITE = optax.apply_if_finite(optax.sgd(1.0), max_consecutive_errors=100)


def test_an_optimizer_that_drops_nonfinite_gradients_keeps_training():
    """The state stays finite, so training goes on: the NaN gradient at w = 12 is skipped."""
    result = training.fit(
        jax.random.key(7), linear_ascent_with_nan_gradient, {"w": jnp.zeros(())},
        SKIP_NONFINITE, DATA, num_steps=15, batch_size=4, chunk_size=5,
    )  # fmt: skip
    assert float(result.params["w"]) == 12.0  # stuck at the NaN gradient, never NaN
    assert int(result.opt_state.notfinite_count) == 3


@pytest.mark.parametrize("num_examples", [1, 2, 3, 10, 64, 65, 1000, 4096])
def test_index_shuffle_is_a_permutation(num_examples):
    for seed in range(3):
        image = training._index_shuffle(
            jax.random.key(seed), jnp.arange(num_examples), num_examples
        )
        assert sorted(np.asarray(image).tolist()) == list(range(num_examples))


def test_index_shuffle_spreads_every_slot_uniformly():
    """Over 20 000 keys, every (slot, example) pair of 10 examples is hit 1/10 of the time.

    Pearson's statistic over the 10 x 10 table has 81 degrees of freedom (every
    row and every column sums to the number of keys: a bijection per key); its
    1e-4 upper quantile is 137.
    """
    num_examples, num_keys = 10, 20_000
    keys = jax.random.split(jax.random.key(0), num_keys)
    shuffle = jax.vmap(lambda key: training._index_shuffle(key, jnp.arange(10), num_examples))
    images = np.asarray(jax.jit(shuffle)(keys))
    counts = np.stack([np.bincount(images[:, slot], minlength=10) for slot in range(10)])
    expected = num_keys / num_examples
    assert np.sum((counts - expected) ** 2 / expected) < 137.0
    # Pairs too: slot 0 precedes slot 1 in value half the time (binomial sd 0.0035).
    assert abs(np.mean(images[:, 0] < images[:, 1]) - 0.5) < 0.015


def non_scalar_loss(params, rng_key, batch):
    return batch[:, 0] - params["mean"][0]


def wrong_state_loss(params, rng_key, batch, loss_state):
    return quadratic_loss(params, rng_key, batch), jnp.zeros(3)


GOOD = {
    "rng_key": jax.random.key(0),
    "loss_fn": quadratic_loss,
    "params": {"mean": jnp.zeros(2)},
    "optimizer": SGD_HALF,
    "data": DATA,
    "num_steps": 10,
    "batch_size": 8,
}


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"rng_key": 0}, TypeError, "rng_key"),
        ({"loss_fn": "quadratic"}, TypeError, "loss_fn"),
        ({"loss_fn": non_scalar_loss}, ValueError, "loss_fn must return a scalar"),
        ({"loss_fn": lambda params, batch: 0.0}, ValueError, "loss_fn"),
        ({"loss_fn": wrong_state_loss, "loss_state": jnp.zeros(2)}, ValueError, "loss_state"),
        ({"params": {"mean": jnp.array([jnp.nan, 0.0])}}, ValueError, "params"),
        ({"params": {"mean": jnp.zeros(2, jnp.int32)}}, TypeError, "params"),
        ({"optimizer": optax.sgd}, TypeError, "optimizer"),
        ({"data": jnp.zeros((0, 2))}, ValueError, "data is empty"),
        ({"data": DATA.at[3, 1].set(jnp.nan)}, ValueError, "data"),
        ({"data": "data.csv"}, TypeError, "data"),
        ({"data": lambda key, n: jnp.zeros((n + 1, 2))}, ValueError, "batch_size"),
        ({"batch_size": 41}, ValueError, "batch_size"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 8.0}, TypeError, "batch_size"),
        ({"num_steps": 0}, ValueError, "num_steps"),
        ({"chunk_size": -1}, ValueError, "chunk_size"),
        ({"log_fn": "print"}, TypeError, "log_fn"),
        ({"checkpoint_path": "/no/such/directory/run.msgpack"}, ValueError, "checkpoint_path"),
    ],
    ids=lambda value: None if not isinstance(value, str) else value[:24],
)
def test_bad_inputs_are_named(changes, error, match):
    arguments = {**GOOD, **changes}
    positional = [arguments.pop(name) for name in ("rng_key", "loss_fn", "params", "optimizer")]
    with pytest.raises(error, match=match):
        training.fit(*positional, arguments.pop("data"), **arguments)

"""``fit``'s exponential moving average of the parameters: closed forms, bitwise resumption."""

from __future__ import annotations

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

from ebm_jax import training
from ebm_jax.models import MLPScore
from tests.helpers import run_on_forced_host_devices

# Module-level losses and optimizers: the chunk function is jitted with them as
# static arguments, so the tests share its compilations.
SGD_ONE = optax.sgd(1.0)
ADAM = optax.adam(1e-2)
DATA = jax.random.normal(jax.random.key(10), (40, 2)) * jnp.array([1.0, 0.5]) + 1.0


def linear_ascent(params, rng_key, batch):
    """With SGD at rate 1, w_{t+1} = w_t + 1: the parameter trajectory is w_0 + t."""
    return -params["w"]


def linear_ascent_with_nan_loss(params, rng_key, batch):
    """The same ascent from w_0 = 0, with a NaN loss from w = 12 on."""
    w = params["w"]
    return -w + jnp.where(w > 11.5, jnp.nan, 0.0)


def ema_of_linear_ascent(initial, decay, num_steps):
    """The average of w_s = initial + s: initial + t - λ(1 - λ^t)/(1 - λ)."""
    return initial + num_steps - decay * (1.0 - decay**num_steps) / (1.0 - decay)


def test_ema_of_a_linear_trajectory_matches_its_closed_form():
    """ē_t = λ ē_{t-1} + (1-λ) w_t from ē_0 = w_0, with w_t = w_0 + t."""
    initial, decay, num_steps = 5.0, 0.8, 10
    result = training.fit(
        jax.random.key(0), linear_ascent, {"w": jnp.full((), initial)}, SGD_ONE, DATA,
        num_steps=num_steps, batch_size=4, chunk_size=4, ema_decay=decay,
    )  # fmt: skip
    assert float(result.params["w"]) == initial + num_steps
    average = result.ema_params["w"]
    assert average.dtype == jnp.float32
    assert result.state.ema_params is result.ema_params
    expected = ema_of_linear_ascent(initial, decay, num_steps)
    np.testing.assert_allclose(float(average), expected, rtol=1e-6)

    # The closed form is the recursion; the conventions it rules out miss it by far more
    # than the tolerance: a zero start, the parameters before the step, λ and 1-λ swapped.
    def recursion(start, lag, swapped):
        average = start
        for step in range(1, num_steps + 1):
            new = initial + step - lag
            old_weight = 1 - decay if swapped else decay
            average = old_weight * average + (1 - old_weight) * new
        return average

    assert recursion(initial, 0, False) == pytest.approx(expected, rel=1e-12)
    for wrong in (
        recursion(0.0, 0, False),
        recursion(initial, 1, False),
        recursion(initial, 0, True),
    ):
        assert abs(wrong - expected) > 0.1, wrong


def recording_quadratic_loss(params, rng_key, batch, loss_state):
    """½ mean ‖x - μ‖², recording μ_t (the parameters before step t) in the loss state."""
    step, record = loss_state
    record = jax.lax.dynamic_update_index_in_dim(record, params["mean"], step, 0)
    loss = 0.5 * jnp.mean(jnp.sum((batch - params["mean"]) ** 2, axis=-1))
    return loss, (step + 1, record)


def test_ema_equals_the_average_of_the_recorded_parameter_trajectory():
    """Adam on minibatches: ē_T = λ^T θ_0 + (1-λ) Σ_{s=1..T} λ^{T-s} θ_s over the actual θ_s."""
    num_steps, decay = 12, 0.7
    initial = jnp.array([-1.0, 2.0])
    loss_state = (jnp.zeros((), jnp.int32), jnp.zeros((num_steps, 2)))
    result = training.fit(
        jax.random.key(1), recording_quadratic_loss, {"mean": initial}, ADAM, DATA,
        num_steps=num_steps, batch_size=8, chunk_size=5, loss_state=loss_state,
        ema_decay=decay,
    )  # fmt: skip
    record = np.asarray(result.loss_state[1], np.float64)
    np.testing.assert_array_equal(record[0], initial)
    trajectory = np.concatenate([record, np.asarray(result.params["mean"], np.float64)[None]])
    weights = (1 - decay) * decay ** np.arange(num_steps - 1, -1, -1.0)  # θ_1 ... θ_T
    expected = decay**num_steps * trajectory[0] + weights @ trajectory[1:]
    np.testing.assert_allclose(result.ema_params["mean"], expected, rtol=1e-5, atol=1e-6)
    assert np.min(np.abs(expected - trajectory[-1])) > 1e-2  # the average lags the iterate


SCORE_MODEL = MLPScore((8,))
NOISE_SCALE = 0.3
SCORE_PARAMS = jax.jit(SCORE_MODEL.init)(jax.random.key(11), jnp.zeros(2))


def denoising_loss(params, rng_key, batch):
    noise = jax.random.normal(rng_key, batch.shape)
    scores = jax.vmap(SCORE_MODEL.apply, in_axes=(None, 0))(params, batch + NOISE_SCALE * noise)
    return jnp.mean(jnp.sum((scores + noise / NOISE_SCALE) ** 2, axis=-1))


def fit_denoiser(**kwargs):
    arguments = {"num_steps": 24, "batch_size": 8, "chunk_size": 8, "ema_decay": 0.9, **kwargs}
    return training.fit(jax.random.key(1), denoising_loss, SCORE_PARAMS, ADAM, DATA, **arguments)


def assert_trees_equal(actual, desired):
    assert jax.tree.structure(actual) == jax.tree.structure(desired)
    for left, right in zip(jax.tree.leaves(actual), jax.tree.leaves(desired), strict=True):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))


def test_ema_is_bitwise_independent_of_chunk_size_and_of_resumption(tmp_path):
    reference = fit_denoiser()
    assert_trees_equal(fit_denoiser(chunk_size=4).state, reference.state)
    path = tmp_path / "run.msgpack"
    first = fit_denoiser(num_steps=12, chunk_size=4, checkpoint_path=path)
    assert int(first.state.step) == 12
    resumed = fit_denoiser(checkpoint_path=path)  # chunks of 8 from step 12: 12-20, 20-24
    assert_trees_equal(resumed.state, reference.state)
    assert_trees_equal(resumed.ema_params, reference.ema_params)
    np.testing.assert_array_equal(resumed.losses, reference.losses)
    # The average is a state of its own, not a copy of the parameters.
    difference = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), reference.ema_params,
                              reference.params)  # fmt: skip
    assert max(float(leaf) for leaf in jax.tree.leaves(difference)) > 1e-3


def test_without_ema_decay_there_is_no_average_and_training_is_unchanged(tmp_path):
    path = tmp_path / "run.msgpack"
    plain = fit_denoiser(ema_decay=None, checkpoint_path=path)
    assert plain.ema_params is None and plain.state.ema_params is None
    averaged = fit_denoiser()
    # The average only watches: the same parameters, optimizer state and losses.
    assert_trees_equal(averaged.params, plain.params)
    assert_trees_equal(averaged.opt_state, plain.opt_state)
    np.testing.assert_array_equal(averaged.losses, plain.losses)
    # Without an average the checkpoint's state has the four entries it always had...
    with open(path, "rb") as handle:
        payload = serialization.msgpack_restore(handle.read())
    assert set(payload["state"]) == {"step", "params", "opt_state", "loss_state"}
    # ...so it resumes as before, and loads into a four-field TrainState template.
    resumed = fit_denoiser(ema_decay=None, num_steps=32, checkpoint_path=path)
    assert resumed.losses.shape == (32,)
    np.testing.assert_array_equal(resumed.losses[:24], plain.losses)
    template = training.TrainState(plain.state.step, SCORE_PARAMS, ADAM.init(SCORE_PARAMS), None)
    assert_trees_equal(training.load_checkpoint(path, template).state, resumed.state)


def fit_linear(decay, **kwargs):
    return training.fit(
        jax.random.key(2), linear_ascent, {"w": jnp.zeros(())}, SGD_ONE, DATA,
        num_steps=8, batch_size=4, chunk_size=4, ema_decay=decay, **kwargs,
    )  # fmt: skip


def test_a_checkpoint_resumes_only_with_the_ema_decay_it_was_written_with(tmp_path):
    plain_path, averaged_path = tmp_path / "plain.msgpack", tmp_path / "averaged.msgpack"
    plain = fit_linear(None, checkpoint_path=plain_path)
    averaged = fit_linear(0.5, checkpoint_path=averaged_path)
    for path, decay in ((plain_path, 0.5), (averaged_path, None), (averaged_path, 0.25)):
        with pytest.raises(ValueError, match="ema_decay") as raised:
            fit_linear(decay, checkpoint_path=path)
        assert "resume=False" in str(raised.value)
    # load_checkpoint names the mismatch too when the templates disagree.
    with pytest.raises(ValueError, match="ema_params"):
        training.load_checkpoint(averaged_path, plain.state)
    with pytest.raises(ValueError, match="ema_params"):
        training.load_checkpoint(plain_path, averaged.state)
    loaded = training.load_checkpoint(averaged_path, averaged.state)
    assert_trees_equal(loaded.state, averaged.state)
    # resume=False starts afresh, with the average or without it.
    restarted = fit_linear(0.5, checkpoint_path=plain_path, resume=False)
    assert float(restarted.ema_params["w"]) == pytest.approx(ema_of_linear_ascent(0.0, 0.5, 8))
    assert fit_linear(None, checkpoint_path=averaged_path, resume=False).ema_params is None


def test_a_nonfinite_step_freezes_the_average_with_the_rest_of_the_state():
    """The bad step 12 is in the chunk [10, 15): its checked replay stops the average at ē_12."""
    decay = 0.75
    with pytest.raises(training.NonFiniteLossError, match="step 12") as raised:
        training.fit(
            jax.random.key(7), linear_ascent_with_nan_loss, {"w": jnp.zeros(())}, SGD_ONE,
            DATA, num_steps=30, batch_size=4, chunk_size=5, ema_decay=decay,
        )  # fmt: skip
    state = raised.value.last_good_state
    assert int(state.step) == 12 and float(state.params["w"]) == 12.0
    np.testing.assert_allclose(
        float(state.ema_params["w"]), ema_of_linear_ascent(0.0, decay, 12), rtol=1e-6
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [(1.0, ValueError), (1.5, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
     (True, TypeError), ("0.999", TypeError), (jnp.array(0.9), TypeError)],
    ids=str,
)  # fmt: skip
def test_bad_ema_decay_is_named(value, error):
    with pytest.raises(error, match="ema_decay"):
        fit_linear(value)


def test_ema_decay_zero_and_numpy_scalars_are_accepted():
    """λ = 0 keeps the latest parameters; a NumPy float is a float."""
    assert float(fit_linear(0).ema_params["w"]) == 8.0
    result = fit_linear(np.float64(0.5))
    assert float(result.ema_params["w"]) == pytest.approx(ema_of_linear_ascent(0.0, 0.5, 8))


# The subprocess and this process run the same fit: 2 devices there, 1 here.
DATA_PARALLEL_FIT = """
import jax, jax.numpy as jnp, optax
from ebm_jax import training

def data_parallel_quadratic_loss(params, rng_key, batch):
    return 0.5 * jnp.mean(jnp.sum((batch - params["mean"]) ** 2, axis=-1))

fitted = training.fit(
    jax.random.key(3), data_parallel_quadratic_loss, {"mean": jnp.zeros(2)}, optax.sgd(0.3),
    jax.random.normal(jax.random.key(4), (64, 2)) + 1.0,
    num_steps=10, batch_size=16, chunk_size=10, ema_decay=0.8,
)
"""

DATA_PARALLEL_SCRIPT = (
    "import sys\nimport numpy as np\n"
    + DATA_PARALLEL_FIT
    + textwrap.dedent(
        """
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        leaf = fitted.ema_params["mean"]
        assert len(leaf.sharding.device_set) == jax.device_count() == 2, leaf.sharding
        assert leaf.sharding.is_fully_replicated, leaf.sharding
        np.savez(sys.argv[1], params=fitted.params["mean"], ema=leaf)

        # The replicated state's checkpoint gives back the parameters and their average,
        # bit for bit, replicated like the template; a leaf split over the devices too.
        path = sys.argv[1] + ".msgpack"
        training.save_checkpoint(path, fitted.state)
        saved = training.load_params(path, fitted.params)
        for restored, trained in [(saved.params, fitted.params), (saved.ema_params, leaf)]:
            trained = trained["mean"] if isinstance(trained, dict) else trained
            assert restored["mean"].sharding == trained.sharding, restored["mean"].sharding
            assert np.array_equal(restored["mean"], trained)
        split = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec("data"))
        params = {"w": jax.device_put(jnp.arange(8.0), split)}
        training.save_checkpoint(path, training.TrainState(jnp.int32(0), params, (), None))
        restored = training.load_params(path, params).params["w"]
        assert restored.sharding == split, restored.sharding
        assert np.array_equal(restored, np.arange(8.0))
        """
    )
)


def test_data_parallel_average_is_replicated_and_matches_one_device(tmp_path):
    two = run_on_forced_host_devices(DATA_PARALLEL_SCRIPT, 2, tmp_path / "ema.npz")
    namespace: dict = {}
    exec(DATA_PARALLEL_FIT, namespace)
    one = namespace["fitted"]
    # Batch means summed in another order: float32 agreement, not bitwise.
    np.testing.assert_allclose(two["params"], one.params["mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(two["ema"], one.ema_params["mean"], rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(two["ema"] - two["params"])) > 1e-2

"""run_chains: chunk invariance, streaming stats, thinning, sharding, errors."""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej
from ebm_jax import chains
from tests.helpers import run_on_forced_host_devices


def logdensity_fn(x):
    return -0.5 * jnp.sum(x**2 / jnp.array([1.0, 4.0]))


ALGORITHM = ej.samplers.mala(logdensity_fn, 0.8)
INITIAL = jax.random.normal(jax.random.key(9), (32, 2))


def test_bitwise_identical_for_any_chunk_size():
    reference = ej.run_chains(jax.random.key(0), ALGORITHM, INITIAL, 60, num_burnin=13, thin=4)
    for chunk_size in (1, 5, 7, 1000):
        chunked = ej.run_chains(
            jax.random.key(0), ALGORITHM, INITIAL, 60, num_burnin=13, thin=4, chunk_size=chunk_size
        )
        np.testing.assert_array_equal(chunked.samples, reference.samples)
        np.testing.assert_array_equal(chunked.acceptance_rate, reference.acceptance_rate)
        np.testing.assert_array_equal(chunked.final_state.position, reference.final_state.position)


def test_burnin_and_thinning_select_the_right_steps():
    every = ej.run_chains(jax.random.key(1), ALGORITHM, INITIAL, 30, num_burnin=10)
    thinned = ej.run_chains(jax.random.key(1), ALGORITHM, INITIAL, 30, num_burnin=10, thin=3)
    assert every.samples.shape == (32, 30, 2) and thinned.num_kept == 10
    np.testing.assert_array_equal(thinned.samples, every.samples[:, 2::3])
    no_burnin = ej.run_chains(jax.random.key(1), ALGORITHM, INITIAL, 40)
    np.testing.assert_array_equal(no_burnin.samples[:, 10:], every.samples)


def test_leftover_steps_when_thin_does_not_divide():
    result = ej.run_chains(jax.random.key(1), ALGORITHM, INITIAL, 10, thin=4)
    every = ej.run_chains(jax.random.key(1), ALGORITHM, INITIAL, 10)
    assert result.num_kept == 2
    np.testing.assert_array_equal(result.samples, every.samples[:, 3:8:4])
    np.testing.assert_array_equal(result.final_state.position, every.samples[:, -1])


def test_streaming_stats_equal_sample_stats():
    samples = ej.run_chains(jax.random.key(2), ALGORITHM, INITIAL, 90, num_burnin=5, thin=2)
    stats = ej.run_chains(
        jax.random.key(2), ALGORITHM, INITIAL, 90, num_burnin=5, thin=2, collect="stats",
        chunk_size=11,
    )  # fmt: skip
    assert stats.samples is None and stats.num_kept == 45
    np.testing.assert_allclose(stats.mean, samples.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.variance, samples.variance, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(stats.acceptance_rate, samples.acceptance_rate)


def test_progress_bar_does_not_change_results():
    quiet = ej.run_chains(jax.random.key(3), ALGORITHM, INITIAL, 20, progress=False)
    shown = ej.run_chains(jax.random.key(3), ALGORITHM, INITIAL, 20, progress=True, chunk_size=4)
    np.testing.assert_array_equal(quiet.samples, shown.samples)


def test_per_chain_parameters():
    factory = functools.partial(ej.samplers.mala, logdensity_fn)
    shared = ej.run_chains(jax.random.key(4), ALGORITHM, INITIAL, 20)
    same = ej.run_chains(
        jax.random.key(4), factory, INITIAL, 20, chain_parameters={"step_size": jnp.full(32, 0.8)}
    )
    np.testing.assert_array_equal(same.samples, shared.samples)
    step_sizes = jnp.where(jnp.arange(32) < 16, 1e-4, 20.0)
    mixed = ej.run_chains(
        jax.random.key(4), factory, INITIAL, 50, chain_parameters={"step_size": step_sizes}
    )
    assert float(mixed.acceptance_rate[:16].min()) > 0.99
    assert float(mixed.acceptance_rate[16:].max()) < 0.2


def test_nonfinite_proposals_are_counted_not_propagated():
    algorithm = ej.samplers.mala(lambda x: jnp.where(x[0] > 0.5, jnp.nan, -0.5 * x @ x), 0.5)
    result = ej.run_chains(jax.random.key(5), algorithm, jnp.zeros((16, 2)), 100)
    assert np.all(np.isfinite(np.asarray(result.samples)))
    assert np.all(np.asarray(result.num_nonfinite) > 0)


SHARDING_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp, numpy as np
    import ebm_jax as ej
    import functools
    f = lambda x: -0.5 * jnp.sum(x["a"] ** 2 / jnp.array([1.0, 4.0])) - 0.5 * x["b"] ** 2
    alg = ej.samplers.mala(f, 0.8)
    x0 = {"a": jax.random.normal(jax.random.key(9), (16, 2)), "b": jnp.zeros(16)}
    result = ej.run_chains(jax.random.key(0), alg, x0, 40, num_burnin=5, thin=2, chunk_size=7)
    assert len(result.samples["a"].sharding.device_set) == jax.local_device_count()
    stats = ej.run_chains(
        jax.random.key(0), functools.partial(ej.samplers.mala, f), x0, 40, num_burnin=5, thin=2,
        chunk_size=7, collect="stats", chain_parameters={"step_size": jnp.full(16, 0.8)},
        collect_info=True,
    )
    np.testing.assert_allclose(stats.mean["a"], result.mean["a"], rtol=1e-4, atol=1e-5)
    samples = np.concatenate([result.samples["a"].reshape(-1), result.samples["b"].reshape(-1)])
    stats = np.concatenate([stats.mean["a"].reshape(-1), stats.info.acceptance_rate.reshape(-1)])
    np.savez(sys.argv[1], samples=samples, stats=stats)
    """
)


@pytest.mark.slow
def test_sharded_over_four_devices_gives_the_same_numbers(tmp_path):
    outputs = {
        devices: run_on_forced_host_devices(
            SHARDING_SCRIPT, devices, tmp_path / f"samples_{devices}.npz"
        )
        for devices in (1, 4)
    }
    np.testing.assert_array_equal(outputs[1]["samples"], outputs[4]["samples"])
    # Streamed statistics may differ in the last bit (XLA fuses per partition).
    np.testing.assert_allclose(outputs[1]["stats"], outputs[4]["stats"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_steps": 0}, ValueError, "num_steps"),
        ({"num_steps": 2.5}, TypeError, "num_steps"),
        ({"thin": 0}, ValueError, "thin"),
        ({"thin": 200}, ValueError, "thin"),
        ({"num_burnin": -1}, ValueError, "num_burnin"),
        ({"collect": "everything"}, ValueError, "collect"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"initial_positions": jnp.array(1.0)}, ValueError, "initial_positions"),
        ({"initial_positions": jnp.array([[0.0, jnp.nan]])}, ValueError, "initial_positions"),
        (
            {
                "algorithm": ej.samplers.mala(lambda x: -0.5 * x @ x, 0.1),
                "initial_positions": jnp.zeros((4, 3, 2)),
            },
            ValueError,
            "logdensity_fn failed on a position of shape",
        ),
        ({"algorithm": ej.samplers.mala(lambda x: -0.5 * x**2, 0.1)}, ValueError, "scalar"),
        ({"rng_key": 0}, TypeError, "rng_key"),
        ({"rng_key": jax.random.split(jax.random.key(0), 2)}, ValueError, "rng_key"),
        ({"algorithm": logdensity_fn}, TypeError, "algorithm"),
        ({"chain_parameters": {"step_size": jnp.ones(3)}}, TypeError, "factory"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, match):
    arguments = {
        "rng_key": jax.random.key(0),
        "algorithm": ALGORITHM,
        "initial_positions": INITIAL,
        "num_steps": 100,
    }
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        ej.run_chains(
            arguments.pop("rng_key"),
            arguments.pop("algorithm"),
            arguments.pop("initial_positions"),
            arguments.pop("num_steps"),
            **arguments,
        )


def test_mismatched_chain_parameters_and_zero_density_start():
    factory = functools.partial(ej.samplers.mala, logdensity_fn)
    with pytest.raises(ValueError, match="chain_parameters"):
        ej.run_chains(
            jax.random.key(0), factory, INITIAL, 5, chain_parameters={"step_size": jnp.ones(3)}
        )
    support = ej.samplers.mala(lambda x: jnp.where(x[0] > 0, -x @ x, -jnp.inf), 0.1)
    with pytest.raises(ValueError, match="not finite at initial_positions"):
        ej.run_chains(jax.random.key(0), support, -jnp.ones((4, 2)), 5)


# --------------------------------------------------------------------------- pytree positions


def _flat_and_dict_targets():
    scales = jnp.array([1.0, 4.0, 0.25])

    def flat_fn(x):
        return -0.5 * jnp.sum((x - 1.0) ** 2 / scales)

    def dict_fn(x):
        return flat_fn(jnp.concatenate([x["a"], x["b"][None]]))

    return flat_fn, dict_fn


@pytest.mark.parametrize(
    "factory",
    [
        functools.partial(ej.samplers.mala, step_size=0.3),
        functools.partial(ej.samplers.mala, step_size=0.3, inverse_mass_matrix=jnp.eye(3) * 2.0),
        functools.partial(ej.samplers.ula, step_size=0.1, inverse_mass_matrix=jnp.ones(3)),
        functools.partial(ej.samplers.rwmh, scale=0.7),
        functools.partial(ej.samplers.metropolis_within_gibbs, scale=0.7),
    ],
    ids=["mala", "mala-dense", "ula-diagonal", "rwmh", "mwg"],
)
def test_dict_positions_move_exactly_like_the_flattened_vector(factory):
    # The kernels act on ravel_pytree(position): a dict {"a": (2,), "b": ()} chain driven by
    # the same keys must visit exactly the points of the flat 3-vector chain.
    flat_fn, dict_fn = _flat_and_dict_targets()
    flat0 = jax.random.normal(jax.random.key(3), (8, 3))
    dict0 = {"a": flat0[:, :2], "b": flat0[:, 2]}
    flat = ej.run_chains(jax.random.key(4), factory(flat_fn), flat0, 30, thin=3)
    tree = ej.run_chains(jax.random.key(4), factory(dict_fn), dict0, 30, thin=3)
    assert jax.tree.map(jnp.shape, tree.samples) == {"a": (8, 10, 2), "b": (8, 10)}
    np.testing.assert_allclose(tree.samples["a"], flat.samples[..., :2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tree.samples["b"], flat.samples[..., 2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tree.variance["b"], flat.variance[:, 2], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(tree.acceptance_rate, flat.acceptance_rate, rtol=1e-5)


def test_dict_positions_stream_stats_and_recover_the_moments():
    _, dict_fn = _flat_and_dict_targets()
    positions = {"a": jnp.ones((256, 2)), "b": jnp.ones(256)}
    warm = ej.samplers.adapt(jax.random.key(0), "mala", dict_fn, positions, 300)
    assert warm.parameters["inverse_mass_matrix"].shape == (3, 3)  # "auto": dense
    alg = ej.samplers.mala(dict_fn, **warm.parameters)
    result = ej.run_chains(jax.random.key(1), alg, warm.states.position, 400, collect="stats")
    pooled_mean = {name: jnp.mean(leaf, axis=0) for name, leaf in result.mean.items()}
    # 256 independent chains: the chain means' spread gives the standard error directly.
    for name, truth_mean, truth_var in (("a", [1.0, 1.0], [1.0, 4.0]), ("b", 1.0, 0.25)):
        standard_error = jnp.std(result.mean[name], axis=0) / np.sqrt(256)
        z = (pooled_mean[name] - jnp.asarray(truth_mean)) / standard_error
        assert np.all(np.abs(np.asarray(z)) < 4.0), (name, z)
        within = jnp.mean(result.variance[name], axis=0) + jnp.var(result.mean[name], axis=0)
        np.testing.assert_allclose(within, truth_var, rtol=0.1)


def test_mismatched_leading_axes_name_the_leaf():
    _, dict_fn = _flat_and_dict_targets()
    with pytest.raises(ValueError, match=r"initial_positions\['b'\]"):
        ej.run_chains(
            jax.random.key(0),
            ej.samplers.mala(dict_fn, 0.1),
            {"a": jnp.zeros((4, 2)), "b": jnp.zeros(3)},
            5,
        )


def test_one_dimensional_positions_say_how_they_were_read():
    alg = ej.samplers.mala(lambda x: -0.5 * jnp.sum(x**2), 0.5)
    with pytest.warns(UserWarning, match=r"read as 5 chains of scalar positions.*\(1, 5\)"):
        result = ej.run_chains(jax.random.key(0), alg, jnp.zeros(5), 3)
    assert result.samples.shape == (5, 3)


@pytest.mark.parametrize("seed", [0, np.uint32(3), np.array([0, 1], np.uint32)])
def test_step_with_a_seed_instead_of_a_key_names_rng_key(seed):
    alg = ej.samplers.mala(lambda x: -0.5 * jnp.sum(x**2), 0.5)
    with pytest.raises(TypeError, match=r"rng_key must be a jax\.random key"):
        alg.step(seed, alg.init(jnp.zeros(2)))


# --------------------------------------------------------------------------- compilation


def _count_compiles():
    """A list that grows by one entry per XLA compilation while registered."""
    events = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    return events, listener


@pytest.mark.parametrize(
    ("factory", "values"),
    [
        (lambda f, v: ej.samplers.mala(f, v), np.linspace(0.05, 0.5, 10)),
        (lambda f, v: ej.samplers.mala(f, 0.2, inverse_mass_matrix=v * jnp.ones(2)), [0.5, 2.0]),
        (lambda f, v: ej.samplers.mala(f, 0.2, noise_variance=v), [0.3, 0.5]),
        (lambda f, v: ej.samplers.rwmh(f, v), [0.5, 1.0]),
        (lambda f, v: ej.samplers.metropolis_within_gibbs(f, v), [0.5, 1.0]),
    ],
    ids=["mala-step_size", "inverse_mass_matrix", "noise_variance", "rwmh-scale", "mwg-scale"],
)
def test_new_parameter_values_do_not_recompile(factory, values):
    traces = []

    def traced_logdensity_fn(x):
        traces.append(1)
        return -0.5 * jnp.sum(x**2)

    positions = jnp.zeros((4, 2))
    ej.run_chains(jax.random.key(0), factory(traced_logdensity_fn, values[0]), positions, 20)
    compiles, listener = _count_compiles()
    num_traces = len(traces)
    try:
        for value in values[1:]:
            result = ej.run_chains(
                jax.random.key(0), factory(traced_logdensity_fn, value), positions, 20
            )
            jax.block_until_ready(result.samples)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert len(traces) == num_traces, "logdensity_fn was traced again for a new value"
    assert compiles == [], f"{len(compiles)} compilations for new parameter values"


def test_a_new_logdensity_fn_does_recompile():
    # The counter-check of the test above: it can see a recompile.
    positions = jnp.zeros((4, 2))
    ej.run_chains(jax.random.key(0), ej.samplers.mala(lambda x: -jnp.sum(x**2), 0.1), positions, 5)
    compiles, listener = _count_compiles()
    try:
        ej.run_chains(
            jax.random.key(0), ej.samplers.mala(lambda x: -jnp.sum(x**2), 0.1), positions, 5
        )
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles


# --------------------------------------------------------------------------- info, foreign kernels


def test_collect_info_keeps_the_info_of_each_kept_transition():
    every = ej.run_chains(jax.random.key(6), ALGORITHM, INITIAL, 30, collect_info=True)
    assert every.info.acceptance_rate.shape == (32, 30)
    assert every.info.is_nonfinite.dtype == jnp.bool_ and every.info.is_divergent is None
    np.testing.assert_allclose(
        jnp.mean(every.info.acceptance_rate, axis=1), every.acceptance_rate, rtol=1e-5
    )
    thinned = ej.run_chains(jax.random.key(6), ALGORITHM, INITIAL, 30, thin=3, collect_info=True)
    np.testing.assert_array_equal(thinned.info.acceptance_rate, every.info.acceptance_rate[:, 2::3])
    np.testing.assert_array_equal(thinned.info.is_accepted, every.info.is_accepted[:, 2::3])
    moved = np.any(np.diff(np.asarray(every.samples), axis=1) != 0, axis=-1)
    np.testing.assert_array_equal(moved, np.asarray(every.info.is_accepted)[:, 1:])


class _WalkState(NamedTuple):
    position: jax.Array


class _DivergenceInfo(NamedTuple):
    is_divergent: jax.Array


class _ForeignKernel(NamedTuple):
    """A BlackJAX-shaped kernel (closures, a bare info) that is not a SamplingAlgorithm."""

    init: Callable
    step: Callable


def _foreign_kernel(info_type):
    def step(rng_key, state):
        position = state.position + 0.1 * jax.random.normal(rng_key, state.position.shape)
        fields = {name: jnp.linalg.norm(position) > 1.0 for name in info_type._fields}
        return _WalkState(position), info_type(**fields)

    return _ForeignKernel(lambda position: _WalkState(jnp.asarray(position)), step)


def test_a_foreign_kernel_reports_what_its_info_has():
    result = ej.run_chains(
        jax.random.key(0), _foreign_kernel(_DivergenceInfo), jnp.zeros((4, 2)), 200,
        num_burnin=10, collect_info=True,
    )  # fmt: skip
    assert np.all(np.isnan(np.asarray(result.acceptance_rate)))
    assert result.num_nonfinite is None and result.info.acceptance_rate is None
    expected = np.sum(np.linalg.norm(np.asarray(result.samples), axis=-1) > 1.0, axis=1)
    np.testing.assert_array_equal(result.num_divergent, expected)
    np.testing.assert_array_equal(
        result.info.is_divergent, np.linalg.norm(result.samples, axis=-1) > 1
    )


def test_per_chain_step_sizes_share_a_bound_mass_matrix():
    # Step sizes per chain, one dense matrix bound in the factory: the matrix and its
    # Cholesky factor are built once and shared (no chain axis), and the chains move
    # exactly as with one shared kernel when the step sizes agree.
    matrix = jnp.array([[1.0, 0.3], [0.3, 4.0]])
    factory = functools.partial(ej.samplers.mala, logdensity_fn, inverse_mass_matrix=matrix)
    step_sizes = {"step_size": jnp.full(32, 0.8)}
    kernel, arrays = chains._check_kernel(factory, step_sizes, 32)
    shapes = [(axis, array.shape) for axis, array in zip(kernel.in_axes, arrays, strict=True)]
    # init and step each hold the matrix and its factor; step also the two step sizes.
    assert sorted(shapes, key=str) == sorted([(None, (2, 2))] * 4 + [(0, (32,))] * 2, key=str)
    per_chain = ej.run_chains(jax.random.key(8), factory, INITIAL, 20, chain_parameters=step_sizes)
    shared = ej.run_chains(jax.random.key(8), factory(step_size=0.8), INITIAL, 20)
    np.testing.assert_allclose(per_chain.samples, shared.samples, rtol=1e-6, atol=1e-6)

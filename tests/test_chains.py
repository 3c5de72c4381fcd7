"""run_chains: chunk invariance, streaming stats, thinning, sharding, errors."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej


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
    alg = ej.samplers.mala(lambda x: -0.5 * jnp.sum(x**2 / jnp.array([1.0, 4.0])), 0.8)
    x0 = jax.random.normal(jax.random.key(9), (16, 2))
    result = ej.run_chains(jax.random.key(0), alg, x0, 40, num_burnin=5, thin=2, chunk_size=7)
    assert len(result.samples.sharding.device_set) == jax.local_device_count()
    np.save(sys.argv[1], np.asarray(result.samples))
    """
)


def test_sharded_over_four_devices_gives_the_same_numbers(tmp_path):
    outputs = {}
    for devices in (1, 4):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
        env["JAX_PLATFORMS"] = "cpu"
        path = tmp_path / f"samples_{devices}.npy"
        subprocess.run(
            [sys.executable, "-c", SHARDING_SCRIPT, str(path)], env=env, check=True, timeout=300
        )
        outputs[devices] = np.load(path, allow_pickle=False)
    np.testing.assert_array_equal(outputs[1], outputs[4])


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

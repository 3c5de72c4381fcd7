"""Warm-up adaptation: dual averaging, Welford moments, windows and the adapted parameters.

The statistical tests use Gaussian targets, where the truth is known: the
adapted preconditioner must recover the covariance, and fresh chains run
with the returned parameters must accept at the target rate.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej
from ebm_jax.samplers import (
    adapt,
    dual_averaging_init,
    dual_averaging_update,
    welford_init,
    welford_update_batch,
    welford_variance,
    window_schedule,
)

NUM_CHAINS = 512
DIM = 10


def _correlated_covariance(dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=(dim, dim))
    return factor @ factor.T / dim + 0.5 * np.eye(dim)


# Module-level targets: `adapt` caches its compiled scan per logdensity_fn object.
CORRELATED_COV = _correlated_covariance(DIM)
CORRELATED_PRECISION = jnp.asarray(np.linalg.inv(CORRELATED_COV), jnp.float32)
DIAGONAL_VARIANCES = np.logspace(0.0, 3.0, DIM)
_DIAGONAL_VARIANCES = jnp.asarray(DIAGONAL_VARIANCES, jnp.float32)


def correlated_logdensity(x):
    return -0.5 * x @ CORRELATED_PRECISION @ x


def diagonal_logdensity(x):
    return -0.5 * jnp.sum(x**2 / _DIAGONAL_VARIANCES)


def _initial_positions(num_chains=NUM_CHAINS, dim=DIM, seed=0):
    return jax.random.normal(jax.random.key(seed), (num_chains, dim))


def _fresh_acceptance(sampler, logdensity_fn, result, per_chain, num_steps=100):
    """Mean MH acceptance of chains run from ``result.states`` with ``result.parameters``."""
    factory = ej.samplers.mala if sampler == "mala" else ej.samplers.rwmh
    num_chains = result.states.position.shape[0]
    if per_chain:

        def step(chain_parameters, rng_key, state):
            parameters = {**result.parameters, **chain_parameters}
            return factory(logdensity_fn, **parameters).step(rng_key, state)

        def batched_step(keys, states):
            return jax.vmap(step)(result.chain_parameters, keys, states)

    else:
        batched_step = jax.vmap(factory(logdensity_fn, **result.parameters).step)

    @jax.jit
    def run(rng_key, states):
        def one_step(states, key):
            states, info = batched_step(jax.random.split(key, num_chains), states)
            return states, info.acceptance_rate

        return jax.lax.scan(one_step, states, jax.random.split(rng_key, num_steps))[1]

    return float(jnp.mean(run(jax.random.key(123), result.states)))


# --------------------------------------------------------------------------- Welford


def test_welford_batches_match_numpy_over_all_data():
    rng = np.random.default_rng(0)
    # A large offset checks the update stays accurate in float32.
    batches = [100.0 + rng.normal(size=(n, 3, 2)) * [[1.0, 2.0]] for n in (1, 7, 64, 300)]
    state = welford_init((3, 2))
    for batch in batches:
        state = welford_update_batch(state, batch)
    data = np.concatenate(batches)
    assert float(state.count) == len(data)
    np.testing.assert_allclose(state.mean, data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(welford_variance(state), data.var(0, ddof=1), rtol=1e-4)
    np.testing.assert_allclose(welford_variance(state, ddof=0), data.var(0), rtol=1e-4)


def test_welford_dense_matches_numpy_covariance_under_scan():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(20, 50, 4)) @ np.linalg.cholesky(_correlated_covariance(4)).T + 5.0

    state, _ = jax.lax.scan(
        lambda state, batch: (welford_update_batch(state, batch), None),
        welford_init(4, dense=True),
        jnp.asarray(data, jnp.float32),
    )
    flat = data.reshape(-1, 4)
    np.testing.assert_allclose(state.mean, flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(welford_variance(state), np.cov(flat.T), rtol=1e-4, atol=1e-5)


def test_welford_rejects_a_batch_of_the_wrong_shape():
    with pytest.raises(ValueError, match="batch"):
        welford_update_batch(welford_init(3), jnp.zeros((5, 4)))
    with pytest.raises(ValueError, match="batch"):
        welford_update_batch(welford_init(3), jnp.zeros((0, 3)))


# --------------------------------------------------------------------------- dual averaging


def _dual_averaging_on_exp(num_updates, initial_step_size, target):
    """Dual averaging on the synthetic acceptance curve acc(eps) = exp(-eps)."""

    def update(_, state):
        acceptance = jnp.exp(-jnp.exp(state.log_step_size))
        return dual_averaging_update(state, acceptance, target)

    state = jax.lax.fori_loop(0, num_updates, update, dual_averaging_init(initial_step_size))
    return jnp.exp(state.log_step_size_avg)


@pytest.mark.parametrize("initial_step_size", [0.01, 1.0, 30.0])
def test_dual_averaging_converges_to_the_root_at_rate_one_half(initial_step_size):
    # One independent dual averaging per entry: the update broadcasts over chains.
    targets = jnp.array([0.234, 0.574, 0.8])
    roots = -jnp.log(targets)  # exp(-eps) = target
    start = jnp.full(3, initial_step_size)
    error_1k = jnp.abs(_dual_averaging_on_exp(1_000, start, targets) / roots - 1.0)
    error_16k = jnp.abs(_dual_averaging_on_exp(16_000, start, targets) / roots - 1.0)
    assert bool(jnp.all(error_1k < 0.05)), error_1k
    # The averaged iterate's error decays like m^{-1/2}: 16x the steps, 4x smaller.
    order = jnp.log(error_1k / error_16k) / jnp.log(16.0)
    assert bool(jnp.all((order > 0.4) & (order < 0.6))), order


def test_dual_averaging_first_update_moves_from_mu_towards_the_target():
    state = dual_averaging_init(jnp.array([0.1, 0.1]))
    np.testing.assert_allclose(jnp.exp(state.mu), 1.0, rtol=1e-6)  # mu = log(10 eps0)
    state = dual_averaging_update(state, jnp.array([0.9, 0.1]), 0.5)
    too_often, too_rarely = jnp.exp(state.log_step_size)
    # log eps_1 = mu - (delta - alpha) / (gamma (1 + t0)); the average takes it whole.
    np.testing.assert_allclose(jnp.log(too_often), 0.4 / (0.05 * 11), rtol=1e-5)
    np.testing.assert_allclose(jnp.log(too_rarely), -0.4 / (0.05 * 11), rtol=1e-5)
    np.testing.assert_allclose(state.log_step_size_avg, state.log_step_size)


def test_dual_averaging_init_rejects_a_non_positive_step_size():
    with pytest.raises(ValueError, match="initial_step_size"):
        dual_averaging_init(0.0)


# --------------------------------------------------------------------------- schedule


@pytest.mark.parametrize("num_steps", [1, 5, 19, 20, 21, 57, 100, 333, 1000, 4096])
def test_windows_cover_num_steps_and_double(num_steps):
    schedule = window_schedule(num_steps)
    assert schedule.initial_fast + sum(schedule.slow) + schedule.final_fast == num_steps
    if num_steps < 20:
        assert schedule == (num_steps, (), 0)
        return
    assert schedule.final_fast >= 1 and len(schedule.slow) >= 1
    assert all(later >= 2 * earlier for earlier, later in itertools.pairwise(schedule.slow))
    if sum(schedule.slow) >= 25:
        assert min(schedule.slow) >= 25
    assert window_schedule(num_steps, adapt_preconditioner=False) == (num_steps, (), 0)


def test_stan_like_schedule_for_1000_steps():
    assert window_schedule(1000) == (150, (50, 100, 200, 400), 100)


# --------------------------------------------------------------------------- adapt


@pytest.mark.parametrize("per_chain", [False, True], ids=["shared", "per_chain"])
@pytest.mark.parametrize(("sampler", "target"), [("mala", 0.574), ("rwmh", 0.234)])
def test_adapted_parameters_reach_the_target_acceptance(sampler, target, per_chain):
    result = adapt(
        jax.random.key(1),
        sampler,
        correlated_logdensity,
        _initial_positions(),
        1000,
        per_chain=per_chain,
    )
    key = "step_size" if sampler == "mala" else "scale"
    if per_chain:  # one step size per chain, one shared preconditioner
        assert set(result.parameters) == {"inverse_mass_matrix"}
        assert set(result.chain_parameters) == {key}
        assert result.chain_parameters[key].shape == (NUM_CHAINS,)
    else:
        assert set(result.parameters) == {key, "inverse_mass_matrix"}
        assert result.chain_parameters == {}
        assert result.parameters[key].shape == ()
    assert result.parameters["inverse_mass_matrix"].shape == (DIM, DIM)  # "auto": dense
    assert result.info.acceptance_rate.shape == (1000,)
    assert np.bincount(np.asarray(result.info.window)).tolist() == [150, 50, 100, 200, 400, 100]
    acceptance = _fresh_acceptance(sampler, correlated_logdensity, result, per_chain)
    # A shared step size follows the mean over 512 chains and lands within ~0.005;
    # per-chain ones follow one noisy chain each and land within ~0.02 (see `adapt`).
    tolerance = 0.05 if per_chain else 0.02
    assert abs(acceptance - target) < tolerance, acceptance


@pytest.mark.parametrize(("sampler", "target"), [("mala", 0.574), ("rwmh", 0.234)])
def test_diagonal_preconditioner_recovers_variances_over_three_decades(sampler, target):
    result = adapt(
        jax.random.key(2),
        sampler,
        diagonal_logdensity,
        _initial_positions(),
        500,
        preconditioner="diagonal",
    )
    estimate = np.asarray(result.parameters["inverse_mass_matrix"])
    assert estimate.shape == (DIM,)
    np.testing.assert_allclose(estimate, DIAGONAL_VARIANCES, rtol=0.1)

    # The first slow window ends at step 100 and C jumps from I to ~diag(1..1000). The
    # rescaled step size must keep the acceptance on target right away (without the
    # rescaling it drops by ~0.09 for both samplers on this target).
    acceptance = np.asarray(result.info.acceptance_rate)
    assert np.asarray(result.info.window)[99:101].tolist() == [1, 2]
    assert abs(acceptance[100:105].mean() - target) < 0.05, acceptance[100:105]


def test_dense_preconditioner_recovers_a_correlated_covariance():
    result = adapt(
        jax.random.key(3),
        ej.samplers.rwmh,  # the factory is accepted as well as its name
        correlated_logdensity,
        _initial_positions(),
        500,
        preconditioner="dense",
    )
    estimate = np.asarray(result.parameters["inverse_mass_matrix"])
    relative_error = np.linalg.norm(estimate - CORRELATED_COV) / np.linalg.norm(CORRELATED_COV)
    assert relative_error < 0.1, relative_error
    np.testing.assert_allclose(estimate, estimate.T, atol=1e-6)
    acceptance = _fresh_acceptance("rwmh", correlated_logdensity, result, False, num_steps=50)
    assert abs(acceptance - 0.234) < 0.05


@pytest.mark.parametrize("sampler", ["mala", "rwmh"])
def test_dense_and_diagonal_window_ends_agree_on_a_diagonal_covariance(sampler):
    # Private helper, checked directly: the dense step-size rescaling (traces of
    # powers of L^{-1} C_old L^{-T}) must reduce to the diagonal one (means of
    # powers of C_old / C_new) when every matrix is diagonal.
    from ebm_jax.samplers.adaptation import _end_slow_window, _shift
    from ebm_jax.samplers.preconditioning import make_preconditioner

    # Columns of a Hadamard matrix: zero mean and exactly orthogonal, so the sample
    # covariance is exactly diagonal.
    hadamard = np.kron(np.kron([[1, 1], [1, -1]], [[1, 1], [1, -1]]), [[1, 1], [1, -1]])
    batch = jnp.asarray(hadamard[:, 1:5] * [0.5, 1.0, 3.0, 10.0], jnp.float32)
    old_variances = jnp.array([2.0, 1.0, 0.5, 4.0])
    dual_averaging = dual_averaging_init(0.3)
    results = []
    for dense in (False, True):
        welford = welford_update_batch(welford_init(4, dense=dense), batch)
        old = make_preconditioner(jnp.diag(old_variances) if dense else old_variances)
        welford, new, log_factor = _end_slow_window(welford, old, sampler)
        results.append((welford, new, _shift(dual_averaging, log_factor)))
    (_, diagonal, diagonal_da), (_, dense, dense_da) = results
    np.testing.assert_allclose(dense.matrix, jnp.diag(diagonal.matrix), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dense_da.log_step_size, diagonal_da.log_step_size, rtol=1e-5)
    # Stan's regularised estimate, n = 8 samples:
    variances = np.var(np.asarray(batch), axis=0, ddof=1)
    np.testing.assert_allclose(diagonal.matrix, 8 / 13 * variances + 1e-3 * 5 / 13, rtol=1e-6)
    # The rescaling, against its formula; every log step size moves by the same amount.
    ratios = old_variances / diagonal.matrix
    expected = (
        jnp.log(jnp.mean(ratios**3)) / 3 if sampler == "mala" else jnp.log(jnp.mean(ratios)) / 2
    )
    for field in ("log_step_size", "log_step_size_avg", "mu"):
        shift = getattr(diagonal_da, field) - getattr(dual_averaging, field)
        np.testing.assert_allclose(shift, expected, rtol=1e-5)


def test_info_traces_and_step_size_only_adaptation():
    num_steps = 60
    run = functools.partial(
        adapt,
        jax.random.key(4),
        "mala",
        correlated_logdensity,
        _initial_positions(64),
        num_steps,
        preconditioner=None,
    )
    result = run()
    assert set(result.parameters) == {"step_size"}
    assert result.info.acceptance_rate.shape == (num_steps,)
    assert result.info.step_size.shape == (num_steps,)
    # Without a preconditioner the robust warm-up keeps the windows (they pace the
    # lost-chain checks and the switch to one shared step size) ...
    assert np.bincount(np.asarray(result.info.window)).tolist() == [9, 45, 6]
    assert result.info.chain_acceptance_rate.shape == (3, 64)
    assert result.info.num_reset.shape == (3,) and result.info.reset_count.shape == (64,)
    assert result.info.is_lost.shape == (64,) and not bool(jnp.any(result.info.is_lost))
    # ... the plain one is a single step-size window.
    plain = run(robust=False)
    assert bool(jnp.all(plain.info.window == 0))
    assert bool(jnp.all((result.info.acceptance_rate >= 0) & (result.info.acceptance_rate <= 1)))


def test_event_shapes_are_flattened_for_the_preconditioner():
    def logdensity_fn(x):  # x has shape (2, 3)
        return -0.5 * jnp.sum(x**2 / jnp.arange(1.0, 7.0).reshape(2, 3))

    positions = jax.random.normal(jax.random.key(6), (256, 2, 3))
    result = adapt(
        jax.random.key(7),
        "mala",
        logdensity_fn,
        positions,
        500,
        per_chain=True,
        preconditioner="diagonal",
    )
    assert result.chain_parameters["step_size"].shape == (256,)
    assert result.parameters["inverse_mass_matrix"].shape == (6,)
    np.testing.assert_allclose(result.parameters["inverse_mass_matrix"], np.arange(1, 7), rtol=0.2)
    assert result.states.position.shape == (256, 2, 3)

    # Per-chain step sizes plug into run_chains as they are, the shared matrix bound.
    chains = ej.run_chains(
        jax.random.key(8),
        functools.partial(ej.samplers.mala, logdensity_fn, **result.parameters),
        result.states.position,
        50,
        chain_parameters=result.chain_parameters,
    )
    assert abs(float(jnp.mean(chains.acceptance_rate)) - 0.574) < 0.05


@pytest.mark.parametrize(
    ("num_steps", "preconditioner"),
    [(1, "diagonal"), (2, "dense"), (19, "diagonal"), (20, "dense")],
)
def test_short_runs_degrade_gracefully(num_steps, preconditioner):
    result = adapt(
        jax.random.key(8),
        "mala",
        correlated_logdensity,
        _initial_positions(8),
        num_steps,
        preconditioner=preconditioner,
    )
    for value in result.parameters.values():
        assert bool(jnp.all(jnp.isfinite(value)))
    assert float(result.parameters["step_size"]) > 0
    ej.samplers.make_preconditioner(result.parameters["inverse_mass_matrix"])  # valid SPD


@pytest.mark.parametrize(("dim", "shape"), [(128, (128, 128)), (129, (129,))])
def test_auto_preconditioner_is_dense_up_to_128_coordinates(dim, shape):
    positions = jax.random.normal(jax.random.key(9), (4, dim))
    result = adapt(
        jax.random.key(10),
        "mala",
        ej.densities.isotropic_gaussian(jnp.zeros(dim)).logdensity_fn,
        positions,
        20,
    )
    assert result.parameters["inverse_mass_matrix"].shape == shape


def test_a_second_call_with_new_values_does_not_retrace():
    num_traces = 0

    def logdensity_fn(x):
        nonlocal num_traces
        num_traces += 1
        return -0.5 * jnp.sum(x**2)

    def run(seed, initial_step_size, target_acceptance):
        positions = _initial_positions(8, 3, seed=seed)
        return adapt(
            jax.random.key(seed),
            "mala",
            logdensity_fn,
            positions,
            30,
            initial_step_size=initial_step_size,
            target_acceptance=target_acceptance,
        )

    run(0, 0.5, 0.6)
    traces_after_first_call = num_traces
    run(1, 0.1, 0.5)
    assert num_traces == traces_after_first_call


# --------------------------------------------------------------------------- bad input


def _call(**overrides):
    arguments = {
        "rng_key": jax.random.key(0),
        "sampler": "mala",
        "logdensity_fn": correlated_logdensity,
        "initial_positions": _initial_positions(4),
        "num_steps": 10,
    }
    arguments.update(overrides)
    return adapt(**arguments)


@pytest.mark.parametrize(
    ("overrides", "error", "name"),
    [
        ({"sampler": "hmc"}, ValueError, "sampler"),
        ({"sampler": len}, TypeError, "sampler"),
        ({"sampler": "ula"}, ValueError, "ula"),
        ({"sampler": ej.samplers.ula}, ValueError, "ula"),
        ({"num_steps": 0}, ValueError, "num_steps"),
        ({"num_steps": 10.0}, TypeError, "num_steps"),
        ({"target_acceptance": 1.0}, ValueError, "target_acceptance"),
        ({"target_acceptance": 0.0}, ValueError, "target_acceptance"),
        ({"target_acceptance": float("nan")}, ValueError, "target_acceptance"),
        ({"initial_step_size": 0.0}, ValueError, "initial_step_size"),
        ({"initial_step_size": -1.0}, ValueError, "initial_step_size"),
        ({"initial_step_size": float("inf")}, ValueError, "initial_step_size"),
        ({"initial_step_size": jnp.ones(4)}, ValueError, "initial_step_size"),
        ({"initial_positions": jnp.zeros(DIM)}, ValueError, "initial_positions"),
        ({"initial_positions": jnp.full((4, DIM), jnp.nan)}, ValueError, "initial_positions"),
        ({"initial_positions": jnp.zeros((0, DIM))}, ValueError, "initial_positions"),
        ({"preconditioner": "full"}, ValueError, "preconditioner"),
        ({"per_chain": "yes"}, TypeError, "per_chain"),
        ({"robust": 1}, TypeError, "robust"),
        ({"logdensity_fn": "not a function"}, TypeError, "logdensity_fn"),
        ({"logdensity_fn": lambda x: x}, ValueError, "logdensity_fn"),
        ({"rng_key": 0}, TypeError, "rng_key"),
    ],
)
def test_bad_input_raises_naming_the_argument(overrides, error, name):
    with pytest.raises(error, match=name):
        _call(**overrides)

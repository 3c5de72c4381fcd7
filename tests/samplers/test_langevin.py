"""MALA and ULA: MALA's exact MH ratio and proposal law for every (τ, σ², C), MCSE-gated
moments, and the closed forms of DESIGN.md."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_jax as ej
from tests.helpers import assert_mean_within_mcse

COVARIANCE = np.array([[1.0, 0.8], [0.8, 2.0]])
PRECISION = jnp.asarray(np.linalg.inv(COVARIANCE))
MEAN = jnp.array([1.0, -1.0])


def correlated_gaussian(x):
    centred = x - MEAN
    return -0.5 * centred @ PRECISION @ centred


MIXTURE_MEANS = jnp.array([[-1.5, 0.0], [1.5, 0.0]])
MIXTURE_WEIGHTS = jnp.array([0.3, 0.7])


def gaussian_mixture(x):
    """0.3 N((-1.5, 0), I) + 0.7 N((1.5, 0), I): mean (0.6, 0), Var x0 = 1 + 0.84·2.25."""
    squared = jnp.sum((x - MIXTURE_MEANS) ** 2, axis=-1)
    return jax.scipy.special.logsumexp(-0.5 * squared, b=MIXTURE_WEIGHTS)


MIXTURE_MEAN = np.array([0.6, 0.0])
MIXTURE_SECOND_MOMENT = np.array([1.0 + 2.25, 1.0])  # E[x_i^2]


def run(algorithm, initial, num_steps=400, num_burnin=200, seed=0):
    return ej.run_chains(jax.random.key(seed), algorithm, initial, num_steps, num_burnin=num_burnin)


# (τ, σ², C) of MALA's proposal q(y|x) = N(x + τC∇f(x), σ²C): the standard (τ, 2τ), the
# lecture's (η, η), a dense C = Σ, and σ² ≠ 2τ with a dense and a diagonal C.
PROPOSAL_PARAMETERS = {
    "standard": (0.5, 1.0, None),
    "lecture_pair": (0.5, 0.5, None),
    "dense_preconditioned": (1.0, 2.0, COVARIANCE),
    "dense_small_noise": (0.5, 0.8, COVARIANCE),
    "diagonal_large_noise": (0.3, 1.5, np.array([0.5, 2.0])),
}


def mala_with(logdensity_fn, name):
    tau, sigma2, inverse_mass_matrix = PROPOSAL_PARAMETERS[name]
    return ej.samplers.mala(
        logdensity_fn, tau, noise_variance=sigma2, inverse_mass_matrix=inverse_mass_matrix
    )


def as_matrix(inverse_mass_matrix):
    """C as a dense matrix (the identity for None, a diagonal for a vector)."""
    if inverse_mass_matrix is None:
        return np.eye(2)
    return np.diag(inverse_mass_matrix) if inverse_mass_matrix.ndim == 1 else inverse_mass_matrix


@pytest.mark.parametrize("name", list(PROPOSAL_PARAMETERS))
def test_mala_moments_correlated_gaussian(name):
    """Mean and covariance of 256 chains from an overdispersed start, within 4 MCSE."""
    initial = jax.random.normal(jax.random.key(1), (256, 2)) * 2.0
    samples = np.asarray(run(mala_with(correlated_gaussian, name), initial).samples, np.float64)
    assert_mean_within_mcse(samples.mean(axis=1), MEAN, what="mean")
    centred = samples - np.asarray(MEAN)
    outer = np.einsum("cti,ctj->cij", centred, centred) / samples.shape[1]
    assert_mean_within_mcse(outer.reshape(256, 4), COVARIANCE.reshape(4), what="covariance")


def one_step_of_many_chains(algorithm, positions, seed):
    """One step from each of ``positions``: the new positions, whether each proposal
    was accepted and its acceptance probability A(x, y)."""
    states = jax.vmap(algorithm.init)(positions)
    keys = jax.random.split(jax.random.key(seed), positions.shape[0])
    new, info = _one_step(algorithm, keys, states)
    return new.position, info.is_accepted, info.acceptance_rate


@jax.jit
def _one_step(algorithm, keys, states):
    # The kernel is a pytree of its numbers: with a logdensity_fn that is a pytree too
    # (a Partial), a new (τ, σ², C) of the same form reuses the compiled step.
    return jax.vmap(algorithm.step)(keys, states)


def gaussian_logpdf(residuals, covariance):
    """log N(r; 0, Σ) of each row r, in float64 NumPy."""
    solved = np.linalg.solve(covariance, residuals.T).T
    _, log_determinant = np.linalg.slogdet(2.0 * np.pi * covariance)
    return -0.5 * np.sum(residuals * solved, axis=-1) - 0.5 * log_determinant


def test_mala_acceptance_is_the_metropolis_hastings_ratio_of_its_proposal():
    """A(x, y) = min(1, p(y)q(x|y) / p(x)q(y|x)), q(y|x) = N(y; x + τC∇f(x), σ²C), float64.

    For every (τ, σ², C) of ``PROPOSAL_PARAMETERS``, 256 chains on the correlated Gaussian
    take one step from spread-out points. An accepted proposal is observed as the new
    position y; the kernel's acceptance probability must then equal the ratio computed
    here independently, from the two Gaussian densities written out in full (norms,
    determinants), to 1e-9 relative (float64 rounding); at least 30 of them per setting
    must have A < 1, so the check is not vacuous. A rejected proposal needs A < 1.
    """
    precision = np.linalg.inv(COVARIANCE)
    mean = np.array([1.0, -1.0])

    def logdensity(x):
        return -0.5 * np.einsum("ni,ij,nj->n", x - mean, precision, x - mean)

    def score(x):
        return -(x - mean) @ precision

    with jax.enable_x64(True):
        logdensity_fn = jax.tree_util.Partial(
            lambda x: -0.5 * (x - mean) @ jnp.asarray(precision) @ (x - mean)
        )
        positions = mean + 1.5 * np.random.default_rng(0).normal(size=(256, 2))
        for seed, (name, (tau, sigma2, inverse_mass_matrix)) in enumerate(
            PROPOSAL_PARAMETERS.items()
        ):
            algorithm = mala_with(logdensity_fn, name)
            new, accepted, rate = map(
                np.asarray, one_step_of_many_chains(algorithm, jnp.asarray(positions), seed)
            )
            assert np.all(rate[~accepted] < 1.0), name
            x, y = positions[accepted], new[accepted]
            preconditioner = as_matrix(inverse_mass_matrix)
            forward = gaussian_logpdf(
                y - x - tau * score(x) @ preconditioner, sigma2 * preconditioner
            )
            backward = gaussian_logpdf(
                x - y - tau * score(y) @ preconditioner, sigma2 * preconditioner
            )
            log_ratio = logdensity(y) - logdensity(x) + backward - forward
            expected = np.exp(np.minimum(log_ratio, 0.0))
            assert np.sum(expected < 1.0) >= 30, (name, np.sum(expected < 1.0))
            np.testing.assert_allclose(rate[accepted], expected, rtol=1e-9, err_msg=name)


@pytest.mark.parametrize(
    ("name", "slope"),
    [("standard", (1.0, -2.0)), ("lecture_pair", (0.0, 0.0)), ("diagonal_large_noise", (0.0, 0.0))],
    ids=["standard", "lecture_pair", "diagonal_large_noise"],
)
def test_mala_proposes_from_its_stated_gaussian(name, slope):
    """y − x ~ N(τC∇f(x), σ²C): whitened, mean 0 and covariance I within 4 MCSE.

    On f(x) = aᵀx the log MH ratio is aᵀ(y − x)(1 − 2τ/σ²): 0 when σ² = 2τ, or when
    a = 0 for any σ². Every proposal of 4096 independent one-step chains is then
    accepted and observed; the drift τCa is tested with a ≠ 0, the covariance σ²C with
    the lecture's (η, η) and with σ² ≠ 2τ under a diagonal C.
    """
    tau, sigma2, inverse_mass_matrix = PROPOSAL_PARAMETERS[name]
    slope = jnp.asarray(slope)
    algorithm = mala_with(jax.tree_util.Partial(lambda x: slope @ x), name)
    positions = jax.random.normal(jax.random.key(7), (4096, 2))
    new, accepted, _ = one_step_of_many_chains(algorithm, positions, seed=8)
    assert bool(np.all(accepted))
    preconditioner = as_matrix(inverse_mass_matrix)
    residual = np.asarray(new - positions, np.float64) - tau * preconditioner @ (
        np.asarray(slope, np.float64)
    )
    whitened = np.linalg.solve(np.linalg.cholesky(sigma2 * preconditioner), residual.T).T
    assert_mean_within_mcse(whitened, np.zeros(2), what=f"{name}: whitened mean")
    products = np.einsum("ni,nj->nij", whitened, whitened).reshape(-1, 4)
    assert_mean_within_mcse(products, np.eye(2).reshape(4), what=f"{name}: whitened covariance")


def test_mala_moments_gaussian_mixture():
    algorithm = ej.samplers.mala(gaussian_mixture, 0.8)
    initial = jax.random.normal(jax.random.key(2), (512, 2)) * 2.0
    samples = np.asarray(run(algorithm, initial, num_steps=600).samples, dtype=np.float64)
    assert_mean_within_mcse(samples.mean(axis=1), MIXTURE_MEAN, what="mixture mean")
    assert_mean_within_mcse(
        (samples**2).mean(axis=1), MIXTURE_SECOND_MOMENT, what="mixture second moment"
    )


def _stationary_variance(algorithm, sigma2, seed):
    initial = jnp.sqrt(sigma2) * jax.random.normal(jax.random.key(seed), (1024, 1))
    samples = run(algorithm, initial, num_steps=300, num_burnin=100, seed=seed).samples
    return np.asarray(samples, dtype=np.float64)[..., 0] ** 2  # the mean is 0


@pytest.mark.parametrize("step_size", [0.4, 1.0])
def test_ula_stationary_variance_closed_form(step_size):
    """ULA on N(0, s²) has stationary variance s² / (1 - τ / (2 s²))."""
    sigma2 = 1.0
    algorithm = ej.samplers.ula(lambda x: -0.5 * jnp.sum(x**2) / sigma2, step_size)
    squares = _stationary_variance(algorithm, sigma2, seed=3)
    expected = sigma2 / (1.0 - step_size / (2.0 * sigma2))
    assert_mean_within_mcse(squares.mean(axis=1), expected, what="ULA variance")


def test_mala_exact_where_ula_is_biased():
    """At τ = 1 on N(0, 1), ULA's variance is 2 while MALA stays exactly 1."""
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2)
    assert_mean_within_mcse(
        _stationary_variance(ej.samplers.mala(logdensity_fn, 1.0), 1.0, seed=4).mean(axis=1),
        1.0,
        what="MALA variance",
    )
    ula_squares = _stationary_variance(ej.samplers.ula(logdensity_fn, 1.0), 1.0, seed=4)
    ula_var = ula_squares.mean()
    ula_se = ula_squares.mean(axis=1).std(ddof=1) / np.sqrt(ula_squares.shape[0])
    assert abs(ula_var - 1.0) > 10 * ula_se  # ULA is visibly biased
    assert abs(ula_var - 2.0) < 4 * ula_se  # ... by exactly the closed form


def test_uncorrected_lecture_pair_targets_p_squared():
    """Without MH, the lecture's (η, η) step has variance s²/(2 - η/s²) → s²/2: p², not p."""
    step_size = 0.2
    algorithm = ej.samplers.ula(lambda x: -0.5 * jnp.sum(x**2), step_size, noise_variance=step_size)
    squares = _stationary_variance(algorithm, 1.0, seed=5)
    assert_mean_within_mcse(squares.mean(axis=1), 1.0 / (2.0 - step_size), what="(η, η) ULA")


def test_mala_acceptance_is_one_for_tiny_steps_and_small_for_huge():
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2)
    initial = jnp.zeros((64, 4))
    tiny = ej.run_chains(jax.random.key(0), ej.samplers.mala(logdensity_fn, 1e-4), initial, 20)
    huge = ej.run_chains(jax.random.key(0), ej.samplers.mala(logdensity_fn, 50.0), initial, 20)
    assert float(tiny.acceptance_rate.mean()) > 0.99
    assert float(huge.acceptance_rate.mean()) < 0.05


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"step_size": 0.0}, "step_size"),
        ({"step_size": -1.0}, "step_size"),
        ({"step_size": float("nan")}, "step_size"),
        ({"step_size": float("inf")}, "step_size"),
        ({"step_size": "big"}, "step_size"),
        ({"step_size": 0.1, "noise_variance": 0.0}, "noise_variance"),
        ({"step_size": 0.1, "inverse_mass_matrix": jnp.array([1.0, -1.0])}, "inverse_mass_matrix"),
        ({"step_size": 0.1, "inverse_mass_matrix": jnp.ones((2, 3))}, "inverse_mass_matrix"),
        ({"step_size": 0.1, "inverse_mass_matrix": jnp.array([[1.0, 2], [2, 1]])}, "positive"),
    ],
)
@pytest.mark.parametrize("factory", [ej.samplers.mala, ej.samplers.ula])
def test_bad_parameters_are_named(factory, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        factory(correlated_gaussian, **kwargs)


def test_bad_logdensity_and_positions_are_named():
    with pytest.raises(TypeError, match="logdensity_fn"):
        ej.samplers.mala("not a function", 0.1)
    vector_valued = ej.samplers.mala(lambda x: -0.5 * x**2, 0.1)
    with pytest.raises(ValueError, match="logdensity_fn must return a scalar"):
        vector_valued.init(jnp.zeros(2))
    with pytest.raises(ValueError, match="position"):
        ej.samplers.mala(correlated_gaussian, 0.1).init(jnp.array([jnp.nan, 0.0]))
    preconditioned = ej.samplers.mala(correlated_gaussian, 0.1, inverse_mass_matrix=jnp.ones(3))
    with pytest.raises(ValueError, match="inverse_mass_matrix"):
        preconditioned.init(jnp.zeros(2))

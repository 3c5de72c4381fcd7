"""The denoising objective (11.16): its identities, minimiser and the cross term of 11.19–11.21.

- ‖x' + βS − √(1−β)x‖² = β‖ε + √βS‖² exactly (float64), each weighting is
  w(β) times it, and levels come from the schedule's MARGINAL β̄_t;
- for Gaussian data N(μ, Σ), the minimiser of (11.16) at each level is the
  score of p_β = N(√(1−β)μ, C), C = (1−β)Σ + βI: S(x) = −C⁻¹x + C⁻¹√(1−β)μ,
  for every weighting;
- with b = √(1−β)E[x|x'] exact (a Gaussian mixture), the cross term of (11.20)
  vanishes within its MCSE for a wrong S, and (11.17) = the two terms of (11.19).
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import ebm_jax.losses as losses
from ebm_jax import densities
from ebm_jax.diffusion import forward, objective, schedule, tweedie
from tests.diffusion.test_forward import (
    COVARIANCE,
    MEAN,
    MIXTURE_COVARIANCES,
    MIXTURE_MEANS,
    MIXTURE_WEIGHTS,
)
from tests.helpers import assert_mean_within_mcse

DIMENSION = 3
HIDDEN = 8


def init_mlp(seed, output_size):
    rng = np.random.default_rng(seed)
    return {
        "hidden_weights": jnp.asarray(
            rng.normal(size=(DIMENSION + 1, HIDDEN)) / np.sqrt(DIMENSION + 1)
        ),
        "hidden_bias": jnp.zeros(HIDDEN),
        "output_weights": jnp.asarray(rng.normal(size=(HIDDEN, output_size)) / np.sqrt(HIDDEN)),
    }


def mlp_score(params, x, beta):
    """A noise-conditional score network S_w(x, β): β enters as an extra input."""
    inputs = jnp.concatenate([x, jnp.reshape(beta, (1,))])
    hidden = jnp.tanh(inputs @ params["hidden_weights"] + params["hidden_bias"])
    return hidden @ params["output_weights"] - x


def mlp_logdensity(params, x, beta):
    """A noise-conditional energy network f_w(x, β), with a Gaussian envelope."""
    inputs = jnp.concatenate([x, jnp.reshape(beta, (1,))])
    hidden = jnp.tanh(inputs @ params["hidden_weights"] + params["hidden_bias"])
    return (hidden @ params["output_weights"])[0] - 0.5 * jnp.sum(x**2)


SCORE_PARAMS = init_mlp(1, DIMENSION)
ENERGY_PARAMS = init_mlp(0, 1)
BATCH = jnp.asarray(np.random.default_rng(2).normal(size=(5, DIMENSION)), jnp.float32)


def constant_level(beta):
    return lambda rng_key: jnp.asarray(beta)


def reproduced_noise_and_levels(rng_key, batch, marginal_betas=None, beta=None):
    """The loss's draws, as its docstring states: (level_key, noise_key) = split(rng_key)."""
    level_key, noise_key = jax.random.split(rng_key)
    noise = jax.random.normal(noise_key, batch.shape, batch.dtype)
    if marginal_betas is None:
        return noise, jnp.full(batch.shape[0], beta, batch.dtype), noise_key
    steps = jax.random.randint(level_key, (batch.shape[0],), 0, marginal_betas.shape[0])
    return noise, marginal_betas.astype(batch.dtype)[steps], noise_key


def test_epsilon_identity_weightings_and_marginal_levels():
    """Exact in float64, at one fixed β and with per-sample levels drawn from a schedule."""
    with jax.enable_x64(True):
        params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), SCORE_PARAMS)
        batch = jnp.asarray(np.random.default_rng(3).normal(size=(64, DIMENSION)))
        key = jax.random.key(4)
        weight = lambda beta: 1.0 + jnp.sin(beta)

        def literal_terms(noise, betas):
            """The lecture's ‖x' + βS(x', β) − √(1−β)x‖², written as eq. 11.16 reads."""
            scale = jnp.sqrt(1.0 - betas)[:, None]
            x_prime = scale * batch + jnp.sqrt(betas)[:, None] * noise
            scores = jax.vmap(mlp_score, (None, 0, 0))(params, x_prime, betas)
            epsilon_terms = jnp.sum((noise + jnp.sqrt(betas)[:, None] * scores) ** 2, axis=1)
            literal = jnp.sum((x_prime + betas[:, None] * scores - scale * batch) ** 2, axis=1)
            np.testing.assert_allclose(literal, betas * epsilon_terms, rtol=1e-12)
            return np.asarray(literal)

        beta = 0.3
        noise, betas, _ = reproduced_noise_and_levels(key, batch, beta=beta)
        literal = literal_terms(noise, betas)
        expected = {
            "lecture": literal.mean(),
            "epsilon": literal.mean() / beta,
            "score": literal.mean() / beta**2,
            weight: (1.0 + np.sin(beta)) * literal.mean(),
        }
        for weighting, value in expected.items():
            loss_fn = objective.denoising_loss(
                mlp_score, beta_sampler=constant_level(beta), weighting=weighting
            )
            np.testing.assert_allclose(loss_fn(params, key, batch), value, rtol=1e-12)

        noise_schedule = schedule.linear_schedule(10, beta_start=0.05, beta_end=0.3)
        noise, betas, _ = reproduced_noise_and_levels(key, batch, noise_schedule.marginal_betas)
        assert len(np.unique(betas)) > 5  # a spread of levels, all marginal ones
        assert set(np.unique(betas)) <= set(np.asarray(noise_schedule.marginal_betas, np.float64))
        literal = literal_terms(noise, betas)
        betas = np.asarray(betas)
        for weighting, factor in [
            ("lecture", 1.0),
            ("epsilon", 1.0 / betas),
            ("score", 1.0 / betas**2),
            (weight, 1.0 + np.sin(betas)),
        ]:
            loss_fn = objective.denoising_loss(
                mlp_score, schedule=noise_schedule, weighting=weighting
            )
            np.testing.assert_allclose(
                loss_fn(params, key, batch), np.mean(factor * literal), rtol=1e-12
            )


def test_score_weighting_is_twice_denoising_score_matching_and_energy_form_is_its_gradient():
    """w = 1/β² at a fixed β is 2 × Vincent's DSM with σ = √β on data scaled by √(1−β);
    an energy network's loss equals the score form's with its hand-written gradient."""
    with jax.enable_x64(True):
        beta = 0.2
        rng = np.random.default_rng(5)
        params = {"precision": jnp.asarray(rng.normal(size=(2, 2)) + 2 * np.eye(2))}
        params["shift"] = jnp.asarray(rng.normal(size=2))
        batch = jnp.asarray(rng.normal(size=(32, 2)))
        key = jax.random.key(6)

        def quadratic_logdensity(params, x, beta):
            precision = params["precision"] + params["precision"].T
            centred = x - beta * params["shift"]
            return -0.25 * centred @ precision @ centred

        def quadratic_score(params, x, beta):  # ∇ₓ of the above, by hand
            precision = params["precision"] + params["precision"].T
            return -0.5 * precision @ (x - beta * params["shift"])

        levels = constant_level(beta)
        from_score = objective.denoising_loss(
            quadratic_score, beta_sampler=levels, weighting="score"
        )(params, key, batch)
        from_energy = objective.denoising_loss(
            logdensity_fn=quadratic_logdensity, beta_sampler=levels, weighting="score"
        )(params, key, batch)
        np.testing.assert_allclose(from_energy, from_score, rtol=1e-12)

        _, _, noise_key = reproduced_noise_and_levels(key, batch, beta=beta)
        dsm = losses.denoising_score_matching(
            lambda params, x: quadratic_score(params, x, beta), np.sqrt(beta)
        )
        np.testing.assert_allclose(
            from_score, 2.0 * dsm(params, noise_key, np.sqrt(1 - beta) * batch), rtol=1e-12
        )


# --- The minimiser for Gaussian data ---------------------------------------------------------

LEVEL_SCHEDULE = schedule.from_betas([0.1, 0.3, 0.5])  # marginal levels 0.1, 0.37, 0.685
NUM_REPLICATES, NUM_SAMPLES = 16, 2048


def per_level_linear_score(params, x, beta):
    """S(x, β) = A_t x + c_t, with separate (A_t, c_t) for each level of LEVEL_SCHEDULE."""
    level = jnp.argmin(jnp.abs(LEVEL_SCHEDULE.marginal_betas.astype(x.dtype) - beta))
    return params["matrices"][level] @ x + params["offsets"][level]


WEIGHTINGS = ("lecture", "epsilon", "score")


@functools.cache
def exact_minimisers():
    """The exact minimisers of the sampled loss for each weighting, per replicate.

    Each replicate draws fresh data and a fresh loss key, shared by the three
    weightings. The loss is quadratic in (A_t, c_t), so one Newton step from
    zero lands on its minimiser.
    """
    loss_fns = [
        objective.denoising_loss(per_level_linear_score, schedule=LEVEL_SCHEDULE, weighting=w)
        for w in WEIGHTINGS
    ]
    num_levels = LEVEL_SCHEDULE.num_steps
    zeros = {
        "matrices": jnp.zeros((num_levels, 2, 2)),
        "offsets": jnp.zeros((num_levels, 2)),
    }
    flat_zeros, unravel = ravel_pytree(zeros)
    data = densities.gaussian(jnp.asarray(MEAN), jnp.asarray(COVARIANCE))

    def minimisers(rng_key):
        data_key, loss_key = jax.random.split(rng_key)
        batch = data.sample(data_key, NUM_SAMPLES)
        fitted = {}
        for weighting, loss_fn in zip(WEIGHTINGS, loss_fns, strict=True):
            flat_loss = lambda flat, loss_fn=loss_fn: loss_fn(unravel(flat), loss_key, batch)
            gradient = jax.grad(flat_loss)(flat_zeros)
            hessian = jax.hessian(flat_loss)(flat_zeros)
            fitted[weighting] = unravel(-jnp.linalg.solve(hessian, gradient))
        return fitted

    keys = jax.random.split(jax.random.key(7), NUM_REPLICATES)
    return jax.tree.map(np.asarray, jax.jit(jax.vmap(minimisers))(keys))


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_minimiser_for_gaussian_data_is_the_perturbed_score(weighting):
    """A_t → −C_t⁻¹ and c_t → C_t⁻¹√(1−β_t)μ within 4 MCSE (16 replicates of 2048), the same
    minimiser for every weighting, and not the unperturbed data score −Σ⁻¹."""
    with jax.enable_x64(True):
        fitted = exact_minimisers()[weighting]
        for level, beta in enumerate(np.asarray(LEVEL_SCHEDULE.marginal_betas, np.float64)):
            perturbed_covariance = (1 - beta) * COVARIANCE + beta * np.eye(2)
            inverse = np.linalg.inv(perturbed_covariance)
            assert_mean_within_mcse(
                fitted["matrices"][:, level].reshape(NUM_REPLICATES, 4),
                -inverse.reshape(4),
                what=f"A at beta={beta:.3f}",
            )
            assert_mean_within_mcse(
                fitted["offsets"][:, level],
                inverse @ (np.sqrt(1 - beta) * MEAN),
                what=f"c at beta={beta:.3f}",
            )
        with pytest.raises(AssertionError):
            assert_mean_within_mcse(
                fitted["matrices"][:, 2].reshape(NUM_REPLICATES, 4),
                -np.linalg.inv(COVARIANCE).reshape(4),
            )
        # Weightings rescale each level's loss by a constant: the same minimiser.
        chex.assert_trees_all_close(fitted, exact_minimisers()["epsilon"], rtol=1e-8, atol=1e-10)


# --- The cross term of 11.19–11.21 -----------------------------------------------------------


def wrong_score(x_prime):
    """Any S(x') will do for the cross term; this one is far from the perturbed score."""
    return -0.5 * x_prime + jnp.sin(2.0 * x_prime)


def test_cross_term_vanishes_and_the_loss_is_the_sum_of_the_two_remaining_terms():
    """β = 0.4, mixture data, b = √(1−β)E[x|x'] exact: 2E[(x'+βS−b)ᵀ(b−√(1−β)x)] = 0 within
    4 MCSE; the library's (11.17) equals the two terms of (11.19) within 4 MCSE; and with a
    wrong b (b = x', the identity denoiser) the cross term is detected as non-zero."""
    with jax.enable_x64(True):
        beta, num_batches, batch_size = 0.4, 400, 64
        args = tuple(jnp.asarray(a) for a in (MIXTURE_WEIGHTS, MIXTURE_MEANS, MIXTURE_COVARIANCES))
        exact_score = jax.grad(forward.perturbed_gaussian_mixture_logdensity(*args))
        data = densities.gaussian_mixture(*args)
        loss_fn = objective.denoising_loss(
            lambda params, x, beta: wrong_score(x),
            beta_sampler=constant_level(beta),
            weighting="lecture",
        )

        @jax.jit
        def terms(rng_key):
            data_key, noise_key, loss_key = jax.random.split(rng_key, 3)
            x = data.sample(data_key, batch_size)
            x_prime = forward.perturb(noise_key, x, beta)
            denoised = jax.vmap(tweedie.tweedie_mean, (None, 0, None))(exact_score, x_prime, beta)
            b = jnp.sqrt(1.0 - beta) * denoised
            model_term = x_prime + beta * wrong_score(x_prime)
            clean = jnp.sqrt(1.0 - beta) * x

            def split_terms(b):
                return (
                    jnp.sum((model_term - b) ** 2, axis=1),
                    jnp.sum((b - clean) ** 2, axis=1),
                    2.0 * jnp.sum((model_term - b) * (b - clean), axis=1),
                )

            first, second, cross = split_terms(b)
            wrong_cross = split_terms(x_prime)[2]
            loss = loss_fn(None, loss_key, data.sample(jax.random.fold_in(data_key, 1), batch_size))
            return (
                jnp.mean(first + second),
                jnp.mean(cross),
                jnp.mean(wrong_cross),
                loss,
            )

        keys = jax.random.split(jax.random.key(8), num_batches)
        two_terms, cross, wrong_cross, loss = (
            np.asarray(value) for value in jax.lax.map(terms, keys)
        )
        assert_mean_within_mcse(cross, 0.0, what="cross term (11.20)")
        # Independent batches: the library loss and the two terms of (11.19) estimate one value.
        assert_mean_within_mcse(loss - two_terms, 0.0, what="(11.17) - (11.19)")
        assert np.mean(loss) > 10 * np.std(loss - two_terms) / np.sqrt(num_batches)
        with pytest.raises(AssertionError):
            assert_mean_within_mcse(wrong_cross, 0.0, what="cross term with b = x'")


# --- Conformance -----------------------------------------------------------------------------

LOSSES = {
    "score_default": (lambda: objective.denoising_loss(mlp_score), SCORE_PARAMS),
    "energy_cosine_lecture": (
        lambda: objective.denoising_loss(
            logdensity_fn=mlp_logdensity,
            schedule=schedule.cosine_schedule(50),
            weighting="lecture",
        ),
        ENERGY_PARAMS,
    ),
    "score_continuous_levels_callable_weight": (
        lambda: objective.denoising_loss(
            mlp_score,
            beta_sampler=lambda key: jax.random.uniform(key, minval=0.01, maxval=0.99),
            weighting=lambda beta: 1.0 / jnp.sqrt(beta),
        ),
        SCORE_PARAMS,
    ),
}


@pytest.fixture(params=sorted(LOSSES))
def loss_case(request):
    factory, params = LOSSES[request.param]
    return factory(), params


def test_scalar_jit_no_retrace_determinism_and_finite_gradients(loss_case):
    loss_fn, params = loss_case

    @jax.jit
    @chex.assert_max_traces(n=1)
    def value_and_grad(params, key, batch):
        return jax.value_and_grad(loss_fn)(params, key, batch)

    key = jax.random.key(3)
    eager = loss_fn(params, key, BATCH)
    assert eager.shape == () and eager.dtype == jnp.float32
    assert np.isfinite(float(eager))
    jitted, gradient = value_and_grad(params, key, BATCH)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(value_and_grad(params, key, BATCH)[0], jitted)
    assert float(value_and_grad(params, jax.random.key(4), BATCH)[0]) != float(jitted)
    value_and_grad(params, key, BATCH + 1.0)  # new values, same shapes: no retrace
    chex.clear_trace_counter()

    chex.assert_trees_all_equal_shapes(gradient, params)
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(gradient)]
    assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
    assert any(np.any(leaf != 0.0) for leaf in leaves)


BAD_FACTORY_CALLS = [
    (lambda: objective.denoising_loss(), TypeError, "logdensity_fn.*score_fn"),
    (
        lambda: objective.denoising_loss(mlp_score, logdensity_fn=mlp_logdensity),
        TypeError,
        "logdensity_fn.*score_fn",
    ),
    (lambda: objective.denoising_loss("score"), TypeError, "score_fn"),
    (lambda: objective.denoising_loss(logdensity_fn=1.0), TypeError, "logdensity_fn"),
    (
        lambda: objective.denoising_loss(
            mlp_score, schedule=schedule.linear_schedule(10), beta_sampler=constant_level(0.5)
        ),
        TypeError,
        "schedule.*beta_sampler",
    ),
    (lambda: objective.denoising_loss(mlp_score, schedule=[0.1, 0.2]), TypeError, "schedule"),
    (
        lambda: objective.denoising_loss(
            mlp_score,
            schedule=schedule.NoiseSchedule(jnp.ones(2), jnp.zeros(2), jnp.ones(2)),
        ),
        ValueError,
        "marginal_betas",
    ),
    (lambda: objective.denoising_loss(mlp_score, beta_sampler=0.5), TypeError, "beta_sampler"),
    (lambda: objective.denoising_loss(mlp_score, weighting="sigma"), ValueError, "weighting"),
    (lambda: objective.denoising_loss(mlp_score, weighting=2.0), TypeError, "weighting"),
]


@pytest.mark.parametrize(("make_loss", "error", "match"), BAD_FACTORY_CALLS)
def test_bad_factory_arguments_are_named(make_loss, error, match):
    with pytest.raises(error, match=match):
        make_loss()


BAD_LOSS_CALLS = [
    (objective.denoising_loss(mlp_score), SCORE_PARAMS, jnp.float32(1.0), ValueError, "batch"),
    (
        objective.denoising_loss(mlp_score),
        SCORE_PARAMS,
        jnp.zeros((0, DIMENSION)),
        ValueError,
        "batch",
    ),
    (objective.denoising_loss(lambda p, x, b: x[:2]), None, BATCH, ValueError, "score_fn"),
    (objective.denoising_loss(lambda p, x: x), None, BATCH, ValueError, "score_fn"),
    (
        objective.denoising_loss(logdensity_fn=lambda p, x, b: x * b),
        None,
        BATCH,
        ValueError,
        "logdensity_fn",
    ),
    (
        objective.denoising_loss(mlp_score, beta_sampler=lambda key: jnp.full(2, 0.5)),
        SCORE_PARAMS,
        BATCH,
        ValueError,
        "beta_sampler",
    ),
    (
        objective.denoising_loss(mlp_score, weighting=lambda beta: jnp.ones(2)),
        SCORE_PARAMS,
        BATCH,
        ValueError,
        "weighting",
    ),
]


@pytest.mark.parametrize(("loss_fn", "params", "batch", "error", "match"), BAD_LOSS_CALLS)
def test_bad_models_and_batches_are_named(loss_fn, params, batch, error, match):
    with pytest.raises(error, match=match):
        loss_fn(params, jax.random.key(0), batch)


# --- Class-conditional models and label dropout (classifier-free guidance) --------------------

# The unconditional losses of LOSSES at jax.random.key(3) on BATCH, computed before
# label dropout existed: the conditional options must not move the unconditional draws.
# Equal to a few float32 ulps, the room XLA:CPU's code generation has (LLVM's
# optimisations reassociate float sums); other draws move them by 0.1 or more.
UNCONDITIONAL_VALUES = {
    "energy_cosine_lecture": 0.6105824708938599,
    "score_continuous_levels_callable_weight": 1.4853471517562866,
    "score_default": 1.2723990678787231,
}


@pytest.mark.parametrize("name", sorted(UNCONDITIONAL_VALUES))
def test_unconditional_loss_is_unchanged(name):
    factory, params = LOSSES[name]
    value = factory()(params, jax.random.key(3), BATCH)
    np.testing.assert_allclose(value, np.float32(UNCONDITIONAL_VALUES[name]), rtol=5e-7, atol=0)


NUM_CLASSES = 3  # labels 0, 1, 2 and the null label 3


def conditional_mlp_score(params, x, beta, label):
    """mlp_score plus a learned shift per label (the last row for the null label)."""
    return mlp_score(params, x, beta) + params["label_shifts"][label]


CONDITIONAL_PARAMS = {
    **SCORE_PARAMS,
    "label_shifts": jnp.asarray(
        np.random.default_rng(9).normal(size=(NUM_CLASSES + 1, DIMENSION)), jnp.float32
    ),
}
LABELS = jnp.array([0, 1, 2, 3, 1])


def test_conditional_loss_follows_its_documented_draws_and_jits_without_retracing():
    """(level_key, noise_key, label_key) = split(rng_key, 3); a label is dropped where
    bernoulli(label_key, p) is true; the model sees (params, x', β, label). Exact in float64."""
    with jax.enable_x64(True):
        params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), CONDITIONAL_PARAMS)
        batch = jnp.asarray(np.random.default_rng(10).normal(size=(64, DIMENSION)))
        labels = jnp.asarray(np.random.default_rng(11).integers(0, NUM_CLASSES, 64))
        key, dropout = jax.random.key(12), 0.4
        level_key, noise_key, label_key = jax.random.split(key, 3)
        noise = jax.random.normal(noise_key, batch.shape, batch.dtype)
        steps = jax.random.randint(level_key, (64,), 0, LEVEL_SCHEDULE.num_steps)
        betas = LEVEL_SCHEDULE.marginal_betas.astype(batch.dtype)[steps]
        x_prime = jnp.sqrt(1 - betas)[:, None] * batch + jnp.sqrt(betas)[:, None] * noise
        dropped = jax.random.bernoulli(label_key, dropout, labels.shape)
        assert 0 < int(jnp.sum(dropped)) < labels.size

        def expected_loss(seen):
            scores = jax.vmap(conditional_mlp_score, (None, 0, 0, 0))(params, x_prime, betas, seen)
            return jnp.mean(jnp.sum((noise + jnp.sqrt(betas)[:, None] * scores) ** 2, axis=1))

        for label_dropout, seen in [
            (dropout, jnp.where(dropped, NUM_CLASSES, labels)),
            (0.0, labels),  # without dropout the labels are the data's own
        ]:
            loss_fn = objective.denoising_loss(
                conditional_mlp_score,
                schedule=LEVEL_SCHEDULE,
                label_dropout=label_dropout,
                null_label=NUM_CLASSES,
            )
            np.testing.assert_allclose(
                loss_fn(params, key, (batch, labels)), expected_loss(seen), rtol=1e-12
            )
        # A list pair is a pair too.
        np.testing.assert_allclose(
            loss_fn(params, key, [batch, labels]), expected_loss(labels), rtol=1e-12
        )

    loss_fn = objective.denoising_loss(
        conditional_mlp_score, label_dropout=0.2, null_label=NUM_CLASSES
    )

    @jax.jit
    @chex.assert_max_traces(n=1)
    def value_and_grad(params, key, batch):
        return jax.value_and_grad(loss_fn)(params, key, batch)

    value, gradient = value_and_grad(CONDITIONAL_PARAMS, jax.random.key(3), (BATCH, LABELS))
    assert value.dtype == jnp.float32 and np.isfinite(float(value))
    np.testing.assert_allclose(
        value, loss_fn(CONDITIONAL_PARAMS, jax.random.key(3), (BATCH, LABELS)), rtol=1e-5
    )
    value_and_grad(CONDITIONAL_PARAMS, jax.random.key(4), (BATCH + 1.0, (LABELS + 1) % 3))
    chex.clear_trace_counter()
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(gradient))
    assert np.any(np.asarray(gradient["label_shifts"]) != 0)


def label_counts(loss_fn, rng_key, batch):
    """How many samples the model saw with each label, read off the loss's curvature.

    With S(x', β, c) = θ_c·1 at a constant β and the ε weighting, the loss is
    mean_b ‖ε_b + √β θ_{c_b} 1‖², whose second derivative in θ_c is 2βd n_c / B.
    """
    hessian = jax.hessian(lambda theta: loss_fn(theta, rng_key, batch))(jnp.zeros(NUM_CLASSES + 1))
    counts = np.diag(np.asarray(hessian, np.float64)) * batch[0].shape[0] / (2 * 0.5 * DIMENSION)
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)
    return np.round(counts).astype(int)


def label_recording_score(theta, x, beta, label):
    return jnp.full_like(x, theta[label])


@pytest.mark.parametrize("dropout", [0.0, 0.1, 0.5, 1.0])
def test_label_dropout_replaces_each_label_by_the_null_label_with_its_probability(dropout):
    """Counts of dropped labels, overall and per class, within 4 binomial standard deviations
    of n·p (exact at p = 0 and 1); labels already null stay null; new keys, new draws."""
    batch_size = 4000
    rng = np.random.default_rng(13)
    labels = rng.integers(0, NUM_CLASSES + 1, batch_size).astype(np.int32)  # some already null
    batch = (rng.normal(size=(batch_size, DIMENSION)), labels)
    loss_fn = objective.denoising_loss(
        label_recording_score,
        beta_sampler=constant_level(0.5),
        label_dropout=dropout,
        null_label=NUM_CLASSES,
    )
    given = np.bincount(labels, minlength=NUM_CLASSES + 1)
    with jax.enable_x64(True):  # float64, so that the counts come out as integers
        seen = label_counts(loss_fn, jax.random.key(14), batch)
        other_key_seen = label_counts(loss_fn, jax.random.key(15), batch)
    assert seen.sum() == batch_size
    dropped = given[:NUM_CLASSES] - seen[:NUM_CLASSES]
    assert np.all(dropped >= 0)
    assert seen[NUM_CLASSES] - given[NUM_CLASSES] == dropped.sum()
    for count, total in [
        (dropped.sum(), given[:NUM_CLASSES].sum()),
        *zip(dropped, given[:NUM_CLASSES], strict=True),
    ]:
        sd = np.sqrt(total * dropout * (1 - dropout))
        if sd == 0:
            assert count == total * dropout
        else:
            assert abs(count - total * dropout) < 4 * sd, (count, total, dropout)
    if 0 < dropout < 1:
        assert not np.array_equal(other_key_seen, seen)


# Two classes N(μ_c, I) with equal weights: p_β(x | c) = N(√(1−β)μ_c, I), and the best
# affine model of the mixture's score is the Gaussian score with the mixture's moments,
# −C⁻¹(x − √(1−β)μ̄) with C = I + (1−β)·Cov(μ_c).
CLASS_MEANS = np.array([[1.5, 0.5], [-1.5, 0.5]])
GUIDANCE_BETA, GUIDANCE_DROPOUT, GUIDANCE_NULL = 0.3, 0.3, 2


def moment_matched_mixture_score():
    """(A, b) of −C⁻¹(x − √(1−β)μ̄) = A x + b at β = GUIDANCE_BETA."""
    centred = CLASS_MEANS - CLASS_MEANS.mean(axis=0)
    inverse = np.linalg.inv(np.eye(2) + (1 - GUIDANCE_BETA) * centred.T @ centred / 2)
    return -inverse, inverse @ (np.sqrt(1 - GUIDANCE_BETA) * CLASS_MEANS.mean(axis=0))


def draw_two_classes(rng_key, num_samples):
    label_key, noise_key = jax.random.split(rng_key)
    labels = jax.random.randint(label_key, (num_samples,), 0, 2)
    x = jnp.asarray(CLASS_MEANS)[labels] + jax.random.normal(noise_key, (num_samples, 2))
    return x, labels


def per_label_affine_score(params, x, beta, label):
    return params["matrices"][label] @ x + params["offsets"][label]


def test_label_dropout_learns_the_conditional_scores_and_the_mixture_score():
    """The minimiser over per-label affine scores (one Newton step: the loss is quadratic)
    is −I, √(1−β)μ_c for the classes and −C⁻¹, C⁻¹√(1−β)μ̄ for the null label, within
    4 MCSE over 16 replicates of 2048; the null label's is not the classes' −I."""
    loss_fn = objective.denoising_loss(
        per_label_affine_score,
        beta_sampler=constant_level(GUIDANCE_BETA),
        label_dropout=GUIDANCE_DROPOUT,
        null_label=GUIDANCE_NULL,
    )
    with jax.enable_x64(True):
        zeros = {"matrices": jnp.zeros((3, 2, 2)), "offsets": jnp.zeros((3, 2))}
        flat_zeros, unravel = ravel_pytree(zeros)

        def minimiser(rng_key):
            data_key, loss_key = jax.random.split(rng_key)
            batch = draw_two_classes(data_key, NUM_SAMPLES)
            flat_loss = lambda flat: loss_fn(unravel(flat), loss_key, batch)
            gradient, hessian = jax.grad(flat_loss)(flat_zeros), jax.hessian(flat_loss)(flat_zeros)
            return unravel(-jnp.linalg.solve(hessian, gradient))

        keys = jax.random.split(jax.random.key(16), NUM_REPLICATES)
        fitted = jax.tree.map(np.asarray, jax.jit(jax.vmap(minimiser))(keys))

    scale = np.sqrt(1 - GUIDANCE_BETA)
    expected = [
        (-np.eye(2), scale * CLASS_MEANS[0]),
        (-np.eye(2), scale * CLASS_MEANS[1]),
        moment_matched_mixture_score(),
    ]
    for label, (matrix, offset) in enumerate(expected):
        assert_mean_within_mcse(
            fitted["matrices"][:, label].reshape(NUM_REPLICATES, 4),
            matrix.reshape(4),
            what=f"A for label {label}",
        )
        assert_mean_within_mcse(fitted["offsets"][:, label], offset, what=f"b for label {label}")
    with pytest.raises(AssertionError):
        assert_mean_within_mcse(
            fitted["matrices"][:, GUIDANCE_NULL].reshape(NUM_REPLICATES, 4), -np.eye(2).ravel()
        )


def exact_two_class_score(params, x, beta, label):
    """∇ log p_β(x | c) for the classes, the mixture's ∇ log p_β(x) for the null label."""
    del params
    centres = jnp.sqrt(1 - beta) * jnp.asarray(CLASS_MEANS, x.dtype)
    conditional = -(x - centres[jnp.minimum(label, 1)])
    responsibilities = jax.nn.softmax(-0.5 * jnp.sum((x - centres) ** 2, axis=1))
    mixture = -(x - responsibilities @ centres)
    return jnp.where(label == GUIDANCE_NULL, mixture, conditional)


def test_exact_conditional_and_mixture_scores_have_the_lowest_loss():
    """The loss of the exact model is lower, by more than 4 MCSE over 32 keys (about 9 and
    100 are reached), than with the null label given the best affine score (the Gaussian
    with the mixture's moments), or with the two classes' labels swapped."""
    matrix, offset = moment_matched_mixture_score()

    def gaussian_null(params, x, beta, label):
        gaussian = jnp.asarray(matrix, x.dtype) @ x + jnp.asarray(offset, x.dtype)
        return jnp.where(
            label == GUIDANCE_NULL, gaussian, exact_two_class_score(None, x, beta, label)
        )

    def swapped(params, x, beta, label):
        return exact_two_class_score(
            None, x, beta, jnp.where(label == GUIDANCE_NULL, label, 1 - label)
        )

    exact_loss, *other_losses = (
        objective.denoising_loss(
            score_fn,
            beta_sampler=constant_level(GUIDANCE_BETA),
            label_dropout=GUIDANCE_DROPOUT,
            null_label=GUIDANCE_NULL,
        )
        for score_fn in (exact_two_class_score, gaussian_null, swapped)
    )

    @jax.jit
    def excesses(rng_key):
        data_key, loss_key = jax.random.split(rng_key)
        batch = draw_two_classes(data_key, 1024)
        exact = exact_loss(None, loss_key, batch)
        return jnp.stack([loss_fn(None, loss_key, batch) - exact for loss_fn in other_losses])

    excesses = np.asarray(jax.lax.map(excesses, jax.random.split(jax.random.key(17), 32)))
    mcse = np.std(excesses, axis=0, ddof=1) / np.sqrt(excesses.shape[0])
    assert np.all(np.mean(excesses, axis=0) > 4 * mcse), (np.mean(excesses, axis=0), mcse)


BAD_CONDITIONAL_FACTORY_CALLS = [
    ({"label_dropout": -0.1, "null_label": 3}, ValueError, "label_dropout"),
    ({"label_dropout": 1.5, "null_label": 3}, ValueError, "label_dropout"),
    ({"label_dropout": float("nan"), "null_label": 3}, ValueError, "label_dropout"),
    ({"label_dropout": "0.1", "null_label": 3}, TypeError, "label_dropout"),
    ({"label_dropout": 0.1}, ValueError, "null_label"),
    ({"null_label": -1}, ValueError, "null_label"),
    ({"null_label": 3.0}, TypeError, "null_label"),
]


@pytest.mark.parametrize(("options", "error", "match"), BAD_CONDITIONAL_FACTORY_CALLS)
def test_bad_label_dropout_or_null_label_is_named(options, error, match):
    with pytest.raises(error, match=match):
        objective.denoising_loss(conditional_mlp_score, **options)


CONDITIONAL_LOSS = objective.denoising_loss(conditional_mlp_score, null_label=NUM_CLASSES)
BAD_CONDITIONAL_LOSS_CALLS = [
    # A labelled pair for an unconditional loss, and a bare batch for a conditional one.
    (objective.denoising_loss(mlp_score), (BATCH, LABELS), TypeError, "null_label"),
    (CONDITIONAL_LOSS, BATCH, TypeError, r"pair \(x, labels\)"),
    (CONDITIONAL_LOSS, (BATCH, LABELS.astype(jnp.float32)), TypeError, "labels must be integers"),
    (CONDITIONAL_LOSS, (BATCH, LABELS[:3]), ValueError, r"labels must have shape \(batch_size,\)"),
    (CONDITIONAL_LOSS, (BATCH, LABELS.at[0].set(4)), ValueError, "labels must lie in"),
    (CONDITIONAL_LOSS, (BATCH, LABELS.at[0].set(-1)), ValueError, "labels must lie in"),
    (
        objective.denoising_loss(mlp_score, null_label=NUM_CLASSES),
        (BATCH, LABELS),
        ValueError,
        r"score_fn\(params, x, beta, label\)",
    ),
]


@pytest.mark.parametrize(("loss_fn", "batch", "error", "match"), BAD_CONDITIONAL_LOSS_CALLS)
def test_bad_conditional_batches_and_models_are_named(loss_fn, batch, error, match):
    with pytest.raises(error, match=match):
        loss_fn(CONDITIONAL_PARAMS, jax.random.key(0), batch)


def test_an_unlabelled_list_batch_is_not_mistaken_for_a_pair():
    loss_fn = objective.denoising_loss(mlp_score)
    rows = [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]
    np.testing.assert_array_equal(
        loss_fn(SCORE_PARAMS, jax.random.key(0), rows),
        loss_fn(SCORE_PARAMS, jax.random.key(0), jnp.asarray(rows)),
    )

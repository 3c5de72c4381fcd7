"""Noise-conditional score and energy networks: shapes, the ε-prediction scale, the
energy's score and integrability, validation, batching, a short training run of
``denoising_loss`` (eq. 11.16) on a Gaussian whose perturbed score is known in closed
form, and the class-conditional models of classifier-free guidance."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import logsumexp

from ebm_jax.diffusion.objective import denoising_loss
from ebm_jax.models.noise_conditional import (
    NoiseConditionalEnergy,
    NoiseConditionalScore,
    noise_level_features,
    null_label,
)
from tests.helpers import assert_mean_within_mcse

KEY = jax.random.key(0)
SMALL = {"hidden_sizes": (16, 16), "embedding_size": 8}
ARCHITECTURES = {"plain": SMALL, "residual": {**SMALL, "residual": True, "layer_norm": True}}
FORMS = {"score": NoiseConditionalScore, "energy": NoiseConditionalEnergy}
LEVELS = jnp.array([1e-4, 1e-2, 0.5, 0.9999])
# The parameters depend on the form and the architecture only (not on the
# activation nor the envelope), so each pair is initialised once, on 2-D
# samples, and reused. Initialisation runs op by op: compiling it costs more.


def make_model(form, architecture, **overrides):
    return FORMS[form](**{**ARCHITECTURES[architecture], **overrides})


@functools.cache
def initial_params(form, architecture):
    return make_model(form, architecture).init(KEY, jnp.zeros(2), 0.5)


def as_float64(params):
    return jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), params)


def score_fn_of(model):
    """``(params, x, beta) -> S(x, beta)`` for either form (eq. 11.1 for the energy)."""
    if isinstance(model, NoiseConditionalEnergy):
        return jax.grad(model.apply, argnums=1)
    return model.apply


# -- shapes, dtypes and the noise-level features ----------------------------------------


@pytest.mark.parametrize("form", ["score", "energy"])
@pytest.mark.parametrize("setting, dimension", [("toy_2d", 2), ("digits_8x8", 64)])
def test_shapes_and_dtypes_of_both_forms_and_both_settings(form, setting, dimension):
    model = getattr(FORMS[form], setting)()
    x = jnp.ones(dimension)

    def init_and_apply(x, beta):
        params = model.init(KEY, x, beta)
        return model.apply(params, x, beta), score_fn_of(model)(params, x, beta)

    output, score = jax.eval_shape(init_and_apply, x, jnp.float32(0.3))
    assert output.shape == ((dimension,) if form == "score" else ())
    assert output.dtype == score.dtype == jnp.float32
    assert score.shape == (dimension,)


@pytest.mark.parametrize("form", ["score", "energy"])
def test_float64_parameters_give_float64_outputs(form):
    with jax.enable_x64(True):
        model = make_model(form, "residual", param_dtype=jnp.float64)
        x = jnp.ones(3, jnp.float64)
        output = jax.eval_shape(lambda x: model.apply(model.init(KEY, x, 0.3), x, 0.3), x)
    assert output.dtype == jnp.float64


def test_noise_level_features_are_those_of_the_log_snr():
    """β ↦ 1 − β flips the sign of λ = log((1 − β)/β): sines flip, cosines stay."""
    betas = np.array([1e-3, 0.2, 0.7])
    features = np.stack([noise_level_features(beta, 16) for beta in betas])
    mirrored = np.stack([noise_level_features(1 - beta, 16) for beta in betas])
    # float32 rounds 1 − β; the angles reach 4λ ≈ 28.
    np.testing.assert_allclose(mirrored[:, :8], -features[:, :8], atol=2e-4)
    np.testing.assert_allclose(mirrored[:, 8:], features[:, 8:], atol=2e-4)
    # The slowest frequency stays monotone over the schedules' log-SNR range.
    log_snr = np.log1p(-betas) - np.log(betas)
    np.testing.assert_allclose(features[:, 0], np.sin(log_snr / 32), rtol=1e-5)


# -- the score form: noise prediction ------------------------------------------------------


def test_noise_level_features_of_levels_rounded_to_zero_or_one_are_finite():
    """A level of exactly 1.0 (a cosine schedule's last, rounded) reads as the largest below 1."""
    below_one = np.nextafter(np.float32(1.0), np.float32(0.0))
    at_one = noise_level_features(jnp.float32(1.0), 16)
    assert bool(jnp.all(jnp.isfinite(at_one)))
    np.testing.assert_array_equal(at_one, noise_level_features(jnp.float32(below_one), 16))
    assert bool(jnp.all(jnp.isfinite(noise_level_features(jnp.float32(0.0), 16))))


def test_score_is_minus_the_predicted_noise_over_sqrt_beta():
    """S = −ε̂/√β: √β·S is O(1) at every level while S itself grows like 1/√β."""
    model = make_model("score", "plain")
    params = initial_params("score", "plain")
    xs = jax.random.normal(jax.random.key(1), (64, 2))

    @jax.jit
    def scores_and_noise(beta):
        scores = jax.vmap(model.apply, in_axes=(None, 0, None))(params, xs, beta)
        noise = jax.vmap(lambda x: model.apply(params, x, beta, method=model.predict_noise))(xs)
        return scores, noise

    noise_norms, score_norms = [], []
    for beta in LEVELS:
        scores, noise = map(np.asarray, scores_and_noise(beta))
        np.testing.assert_allclose(scores, -noise / np.sqrt(float(beta)), rtol=1e-6)
        noise_norms.append(np.sqrt(np.mean(np.sum(noise**2, axis=1))))
        score_norms.append(np.sqrt(np.mean(np.sum(scores**2, axis=1))))
    noise_norms, score_norms = np.array(noise_norms), np.array(score_norms)
    # The last layer starts small: ε̂ is O(0.1), comparably so at every level...
    assert np.all((noise_norms > 1e-3) & (noise_norms < 1.0)), noise_norms
    assert noise_norms.max() / noise_norms.min() < 10
    # ...so the score spans the factor 1/√β = 100 between β = 1e-4 and β ≈ 1.
    assert score_norms[0] / score_norms[-1] > 10


# -- the energy form: a conservative, integrable model ------------------------------------


@pytest.mark.parametrize("architecture", ["plain", "residual"])
def test_energy_score_is_the_gradient_of_the_scalar(architecture):
    """jax.grad of f against central differences of f, in float64."""
    step = 1e-6
    with jax.enable_x64(True):
        model = make_model("energy", architecture)
        params = as_float64(initial_params("energy", architecture))
        x = jax.random.normal(jax.random.key(2), (2,), jnp.float64)
        shifts = step * jnp.eye(2, dtype=jnp.float64)

        @jax.jit
        def score_and_central_differences(x, beta):
            logdensity = jax.vmap(model.apply, in_axes=(None, 0, None))
            forward, backward = (
                logdensity(params, x + shifts, beta),
                logdensity(params, x - shifts, beta),
            )
            return jax.grad(model.apply, argnums=1)(params, x, beta), (forward - backward) / (
                2 * step
            )

        score, central = score_and_central_differences(x, jnp.float64(0.2))
    assert score.dtype == jnp.float64
    np.testing.assert_allclose(score, central, rtol=1e-7, atol=1e-9)


def test_energy_envelope_and_the_noise_scale_of_its_score():
    """f_s − f_∞ = −‖x‖²/(2s²) exactly; the network part of the score is O(1/√β)."""
    scale = 1.5
    with jax.enable_x64(True):
        enveloped = make_model("energy", "plain", envelope_scale=scale)
        plain = make_model("energy", "plain", envelope_scale=None)
        params = as_float64(initial_params("energy", "plain"))
        xs = 3.0 * jax.random.normal(jax.random.key(3), (32, 2), jnp.float64)

        @jax.jit
        def differences(beta):
            value = jax.vmap(enveloped.apply, in_axes=(None, 0, None))(params, xs, beta)
            value = value - jax.vmap(plain.apply, in_axes=(None, 0, None))(params, xs, beta)
            score_of = lambda model: jax.vmap(
                jax.grad(model.apply, argnums=1), in_axes=(None, 0, None)
            )(params, xs, beta)
            return value, score_of(enveloped) - score_of(plain), score_of(plain)

        network_noise_norms = []
        for beta in LEVELS:
            value_difference, score_difference, network_score = differences(beta)
            np.testing.assert_allclose(
                value_difference, -0.5 * np.sum(np.asarray(xs) ** 2, axis=1) / scale**2, rtol=1e-12
            )
            np.testing.assert_allclose(score_difference, -np.asarray(xs) / scale**2, rtol=1e-12)
            # √β ∇(φ/√β) = ∇φ, the network's implied noise, does not carry β's scale.
            network_noise_norms.append(float(jnp.sqrt(beta) * jnp.max(jnp.abs(network_score))))
    network_noise_norms = np.array(network_noise_norms)
    assert np.all((network_noise_norms > 1e-4) & (network_noise_norms < 1.0))
    assert network_noise_norms.max() / network_noise_norms.min() < 10


@pytest.mark.parametrize("architecture", ["plain", "residual"])
def test_energy_is_integrable_at_every_level(architecture):
    """log ∫ exp f over [−L, L]² does not change when L doubles, even with a large
    network part amplified by 1/√β: the envelope dominates its at most linear growth."""
    model = make_model("energy", architecture)
    params = initial_params("energy", architecture)
    # A larger last layer than at initialisation, so the network part matters.
    last_layer = max(
        (name for name in params["params"] if name.startswith("Dense")),
        key=lambda name: int(name.split("_")[1]),
    )
    params = jax.tree.map(lambda leaf: leaf, params)
    params["params"][last_layer]["kernel"] = 30.0 * params["params"][last_layer]["kernel"]
    logdensity_fn = jax.jit(jax.vmap(model.apply, in_axes=(None, 0, None)))
    # One grid for both boxes, so only the added tails can change the sum.
    spacing, half_width = 0.1, 32.0
    num_points = round(half_width / spacing)
    grid = (spacing * np.arange(-num_points, num_points + 1)).astype(np.float32)
    points = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 2)
    in_near_box = np.max(np.abs(points), axis=1) <= half_width / 2

    for beta in (0.01, 0.9):
        values = np.asarray(logdensity_fn(params, points, jnp.float32(beta)), np.float64)
        far = logsumexp(values) + 2 * np.log(spacing)
        near = logsumexp(values[in_near_box]) + 2 * np.log(spacing)
        assert np.isfinite(far)
        # The envelope alone, exp(−‖x‖²/2), has log Z = log 2π.
        assert abs(near - np.log(2 * np.pi)) > 0.5
        np.testing.assert_allclose(far, near, rtol=1e-6)


@pytest.mark.parametrize(
    "activation",
    [nn.relu, jax.nn.relu6, nn.leaky_relu, nn.hard_tanh, lambda z: jnp.maximum(z, 0.0)],
    ids=["relu", "relu6", "leaky_relu", "hard_tanh", "lambda"],
)
def test_energy_rejects_piecewise_linear_activations_and_score_accepts_them(activation):
    with pytest.raises(ValueError, match="activation"):
        NoiseConditionalEnergy(**SMALL, activation=activation)
    model = NoiseConditionalScore(**SMALL, activation=activation)
    output = jax.eval_shape(lambda x: model.apply(model.init(KEY, x, 0.5), x, 0.5), jnp.zeros(2))
    assert output.shape == (2,)


def test_energy_accepts_a_smooth_activation_and_has_curvature():
    model = make_model("energy", "plain", activation=nn.softplus, envelope_scale=None)
    params = initial_params("energy", "plain")
    hessian = jax.jit(jax.hessian(model.apply, argnums=1))(params, jnp.array([0.3, -0.2]), 0.5)
    assert np.max(np.abs(hessian)) > 0
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-6)


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, error, match",
    [
        ({"hidden_sizes": "abc"}, TypeError, "hidden_sizes"),
        ({"hidden_sizes": ()}, ValueError, "hidden_sizes"),
        ({"hidden_sizes": (8, 0)}, ValueError, r"hidden_sizes\[1\]"),
        ({"hidden_sizes": (8, 16), "residual": True}, ValueError, "hidden_sizes"),
        ({"residual": "yes"}, TypeError, "residual"),
        ({"embedding_size": 7}, ValueError, "embedding_size"),
        ({"embedding_size": 2.0}, TypeError, "embedding_size"),
        ({"activation": "swish"}, TypeError, "activation"),
    ],
)
@pytest.mark.parametrize("form", ["score", "energy"])
def test_bad_settings_raise_named_errors(form, settings, error, match):
    with pytest.raises(error, match=match):
        FORMS[form](**{**SMALL, **settings})


@pytest.mark.parametrize("envelope_scale", [0.0, -1.0, float("inf")])
def test_bad_envelope_scale_raises(envelope_scale):
    with pytest.raises(ValueError, match="envelope_scale"):
        NoiseConditionalEnergy(**SMALL, envelope_scale=envelope_scale)


@pytest.mark.parametrize("form", ["score", "energy"])
def test_bad_sample_or_noise_level_raises_named_errors(form):
    model = make_model(form, "plain")
    params = initial_params(form, "plain")
    with pytest.raises(ValueError, match="x must be ONE sample"):
        model.apply(params, jnp.zeros((5, 2)), 0.5)
    with pytest.raises(ValueError, match="beta must be a scalar"):
        model.apply(params, jnp.zeros(2), jnp.full(2, 0.5))
    for beta in (0.0, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"beta must lie in the open interval \(0, 1\)"):
            model.apply(params, jnp.zeros(2), beta)


# -- batching and conditioning -------------------------------------------------------------


@pytest.mark.parametrize("form, architecture", [("score", "plain"), ("energy", "residual")])
def test_jit_vmap_with_a_beta_per_sample_matches_single_calls(form, architecture):
    model = make_model(form, architecture)
    params = initial_params(form, architecture)
    xs = jax.random.normal(jax.random.key(4), (5, 2))
    betas = jnp.array([1e-3, 0.05, 0.3, 0.7, 0.99])
    batched = jax.jit(jax.vmap(model.apply, in_axes=(None, 0, 0)))(params, xs, betas)
    single = np.stack([model.apply(params, x, beta) for x, beta in zip(xs, betas, strict=True)])
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form, architecture", [("score", "residual"), ("energy", "plain")])
def test_every_parameter_gets_gradient_and_the_output_depends_on_beta(form, architecture):
    # Without the envelope, whose x√β/s² would change with β whatever the network does.
    overrides = {"envelope_scale": None} if form == "energy" else {}
    model = make_model(form, architecture, **overrides)
    params = initial_params(form, architecture)
    x = jnp.array([0.4, -0.8])
    score_fn = score_fn_of(model)

    @jax.jit
    def implied_noise_and_its_gradient(params, beta):
        # The loss of eq. (11.16) differentiates √β·S; for the energy form S
        # is a gradient already, so this is a second derivative.
        implied_noise = lambda params: -jnp.sqrt(beta) * score_fn(params, x, beta)
        return implied_noise(params), jax.grad(lambda params: jnp.sum(implied_noise(params)))(
            params
        )

    noise_low, grads = implied_noise_and_its_gradient(params, 0.1)
    noise_high, _ = implied_noise_and_its_gradient(params, 0.6)
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert float(jnp.max(jnp.abs(leaf))) > 0, f"no gradient reaches {path}"
    # The implied noise changes with β through the embedding, not just by a scale.
    assert np.max(np.abs(np.asarray(noise_low) - np.asarray(noise_high))) > 1e-4


# -- training by the denoising objective (11.16) on a Gaussian ---------------------------

DATA_MEAN = np.array([1.0, -0.5])
DATA_COVARIANCE = np.array([[0.3, 0.2], [0.2, 0.25]])
MIN_BETA, MAX_BETA = 0.05, 0.95


def perturbed_covariance(beta):
    """p_β = N(√(1−β)μ, C) with C = (1−β)Σ + βI for x ~ N(μ, Σ); β of shape (n,)."""
    beta = np.asarray(beta, np.float64)[..., None, None]
    return (1 - beta) * DATA_COVARIANCE + beta * np.eye(2)


def exact_perturbed_score(x, beta):
    """∇ log p_β(x) = −C⁻¹(x − √(1−β)μ), in float64 NumPy; x of shape (n, 2)."""
    beta = np.broadcast_to(beta, x.shape[:1])
    centred = x - np.sqrt(1 - beta)[:, None] * DATA_MEAN
    return -np.linalg.solve(perturbed_covariance(beta), centred[..., None])[..., 0]


def exact_score_model(params, x, beta):
    """S*(x′, β) = −C⁻¹(x′ − √(1−β)μ) as a model of one sample (``params`` unused)."""
    (a, b), (_, d) = (1 - beta) * jnp.asarray(DATA_COVARIANCE, x.dtype) + beta * jnp.eye(2)
    inverse = jnp.array([[d, -b], [-b, a]]) / (a * d - b * b)  # C⁻¹ of a symmetric 2 × 2 C
    return -inverse @ (x - jnp.sqrt(1 - beta) * jnp.asarray(DATA_MEAN, x.dtype))


def uniform_level(rng_key):
    """β ~ U(MIN_BETA, MAX_BETA)."""
    return jax.random.uniform(rng_key, minval=MIN_BETA, maxval=MAX_BETA)


def draw_data(rng_key, batch_size):
    """x ~ N(μ, Σ), shape (batch_size, 2)."""
    cholesky = jnp.asarray(np.linalg.cholesky(DATA_COVARIANCE), jnp.float32)
    normal = jax.random.normal(rng_key, (batch_size, 2))
    return jnp.asarray(DATA_MEAN, jnp.float32) + normal @ cholesky.T


def minimum_epsilon_loss():
    """E_β[d − β tr C_β⁻¹]: at S* the residual ε − E[ε|x′] has covariance I − βC⁻¹."""
    betas = np.linspace(MIN_BETA, MAX_BETA, 2001)
    per_level = 2.0 - betas * np.trace(np.linalg.inv(perturbed_covariance(betas)), axis1=1, axis2=2)
    return float(np.trapezoid(per_level, betas) / (MAX_BETA - MIN_BETA))


@pytest.mark.parametrize("form", ["score", "energy"])
def test_training_on_a_gaussian_learns_the_perturbed_score(form):
    """200 Adam steps of ``denoising_loss`` (eq. 11.16, ε weighting, β ~ U(0.05, 0.95))
    reach its closed-form minimiser, the perturbed score S* = ∇log p_β of eq. (11.15).

    Evaluated by the same loss on 32 independent batches of 128, each model on the
    same batches, levels and noise (the draws depend on the key only): at S* the loss
    must equal the closed-form minimum E_β[d − β tr C⁻¹] within 4 MCSE; the excess of
    a model over S* is E[β‖S − S*‖²] (the cross term of eq. 11.20 vanishes, eq. 11.21),
    above 0.4 at initialisation and below 0.02 after training (0.003–0.005 is reached).
    At β = 0.5 the learned score must be within 2% relative mean-squared error of
    −C⁻¹(x′ − √(1−β)μ) (about 0.2% is reached), while the exact score of the
    neighbouring level β = 0.35 is 10% away: the test tells the levels apart.
    """
    model = FORMS[form](hidden_sizes=(64, 64), embedding_size=16)
    network = {"score_fn": model.apply} if form == "score" else {"logdensity_fn": model.apply}
    loss_fn = denoising_loss(**network, beta_sampler=uniform_level)
    exact_loss_fn = denoising_loss(exact_score_model, beta_sampler=uniform_level)
    optimizer = optax.adam(3e-3)
    evaluation_keys = jax.random.split(jax.random.key(99), 32)
    evaluation_batches = jax.vmap(draw_data, in_axes=(0, None))(evaluation_keys, 128)
    beta = 0.5
    data = np.asarray(draw_data(jax.random.key(5), 2000), np.float64)
    noise = np.random.default_rng(6).normal(size=data.shape)
    perturbed = np.sqrt(1 - beta) * data + np.sqrt(beta) * noise

    def evaluate(loss_fn, params):
        return jax.vmap(loss_fn, in_axes=(None, 0, 0))(params, evaluation_keys, evaluation_batches)

    @jax.jit
    def train_and_evaluate(params, rng_key):
        def step(carry, step_key):
            params, opt_state = carry
            data_key, loss_key = jax.random.split(step_key)
            grads = jax.grad(loss_fn)(params, loss_key, draw_data(data_key, 256))
            updates, opt_state = optimizer.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), None

        (trained, _), _ = jax.lax.scan(
            step, (params, optimizer.init(params)), jax.random.split(rng_key, 200)
        )
        learned = jax.vmap(score_fn_of(model), in_axes=(None, 0, None))(
            trained, jnp.asarray(perturbed, jnp.float32), beta
        )
        # The initial and the trained parameters through one evaluation.
        both = jax.tree.map(lambda *leaves: jnp.stack(leaves), params, trained)
        initial_and_final = jax.vmap(evaluate, in_axes=(None, 0))(loss_fn, both)
        return initial_and_final, evaluate(exact_loss_fn, None), learned

    (initial_losses, final_losses), optimal_losses, learned = jax.tree.map(
        np.asarray,
        train_and_evaluate(model.init(KEY, jnp.zeros(2), 0.5), jax.random.key(1)),
    )

    assert_mean_within_mcse(optimal_losses, minimum_epsilon_loss(), what="loss at S*")
    if form == "score":  # ε̂ ≈ 0 at initialisation, so the loss starts at E‖ε‖² = d
        assert abs(initial_losses.mean() - 2.0) < 0.15
    initial_excess = float(np.mean(initial_losses - optimal_losses))
    final_excess = float(np.mean(final_losses - optimal_losses))
    assert initial_excess > 0.4
    assert final_excess < 0.02, (initial_excess, final_excess)

    exact = exact_perturbed_score(perturbed, beta)
    relative_error = lambda score: float(
        np.mean(np.sum((score - exact) ** 2, -1)) / np.mean(np.sum(exact**2, -1))
    )
    assert relative_error(learned) < 0.02 < relative_error(exact_perturbed_score(perturbed, 0.35))


# -- class-conditional models (classifier-free guidance) ----------------------------------

NUM_CLASSES = 3  # labels 0, 1, 2 and the null label 3


@functools.cache
def conditional_params(form):
    return make_model(form, "plain", num_classes=NUM_CLASSES).init(KEY, jnp.zeros(2), 0.5, 0)


@pytest.mark.parametrize("form", ["score", "energy"])
@pytest.mark.parametrize("setting, dimension", [("toy_2d", 2), ("digits_8x8", 64)])
def test_conditional_settings_give_shapes_dtypes_and_a_table_with_a_null_row(
    form, setting, dimension
):
    model = getattr(FORMS[form], setting)(num_classes=10)
    assert null_label(model) == 10
    xs, betas, labels = jnp.ones((4, dimension)), jnp.full(4, 0.3), jnp.array([0, 5, 9, 10])

    def init_and_apply(xs, betas, labels):
        params = model.init(KEY, xs[0], betas[0], labels[0])
        apply = jax.vmap(model.apply, in_axes=(None, 0, 0, 0))
        score = jax.vmap(score_fn_of(model), in_axes=(None, 0, 0, 0))
        return params, apply(params, xs, betas, labels), score(params, xs, betas, labels)

    params, output, score = jax.eval_shape(init_and_apply, xs, betas, labels)
    assert params["params"]["Embed_0"]["embedding"].shape == (11, model.embedding_size)
    assert output.shape == ((4, dimension) if form == "score" else (4,))
    assert output.dtype == score.dtype == jnp.float32
    assert score.shape == (4, dimension)


@pytest.mark.parametrize("form", ["score", "energy"])
def test_each_label_gives_its_own_output_through_its_own_embedding_row(form):
    """Labels 0..K (K the null label) give distinct, finite scores; the gradient of one
    label's score reaches that label's row of the table and no other."""
    model = make_model(form, "plain", num_classes=NUM_CLASSES)
    params = conditional_params(form)
    x, beta = jnp.array([0.4, -0.8]), 0.2
    score_fn = score_fn_of(model)

    @jax.jit
    def outputs_and_gradient(params, labels):
        apply = jax.vmap(model.apply, in_axes=(None, None, None, 0))(params, x, beta, labels)
        scores = jax.vmap(score_fn, in_axes=(None, None, None, 0))(params, x, beta, labels)
        gradient = jax.grad(lambda params: jnp.sum(score_fn(params, x, beta, labels[1])))(params)
        return apply, scores, gradient

    outputs, scores, gradient = outputs_and_gradient(params, jnp.arange(NUM_CLASSES + 1))
    scores = np.asarray(scores)
    assert np.all(np.isfinite(scores))
    for first in range(NUM_CLASSES + 1):
        for second in range(first):
            assert np.max(np.abs(scores[first] - scores[second])) > 1e-6, (first, second)
    row_norms = np.abs(np.asarray(gradient["params"]["Embed_0"]["embedding"])).sum(axis=1)
    assert row_norms[1] > 0
    np.testing.assert_array_equal(np.delete(row_norms, 1), 0.0)
    # An eager call, with the concrete-label checks, agrees with the batch.
    np.testing.assert_allclose(
        model.apply(params, x, beta, null_label(model)), outputs[-1], rtol=1e-5
    )
    if form == "score":
        noise = model.apply(params, x, beta, 1, method=model.predict_noise)
        np.testing.assert_allclose(-noise / np.sqrt(beta), scores[1], rtol=1e-5)


def test_unconditional_model_has_no_label_table_and_its_parameters_are_unchanged():
    """num_classes only adds the table: the other parameters keep their names and shapes."""
    conditional = jax.tree.map(jnp.shape, conditional_params("score"))["params"]
    unconditional = jax.tree.map(jnp.shape, initial_params("score", "plain"))["params"]
    assert "Embed_0" not in unconditional
    assert conditional.pop("Embed_0") == {"embedding": (NUM_CLASSES + 1, SMALL["embedding_size"])}
    assert conditional == unconditional


@pytest.mark.parametrize("form", ["score", "energy"])
def test_wrong_labels_raise_named_errors(form):
    conditional = make_model(form, "plain", num_classes=NUM_CLASSES)
    params = conditional_params(form)
    x = jnp.zeros(2)
    with pytest.raises(TypeError, match=r"class-conditional.*label"):
        conditional.apply(params, x, 0.5)
    with pytest.raises(TypeError, match="label must be an integer"):
        conditional.apply(params, x, 0.5, 1.0)
    with pytest.raises(TypeError, match="label must be an integer"):
        conditional.apply(params, x, 0.5, True)
    with pytest.raises(ValueError, match="label must be a scalar"):
        conditional.apply(params, x, 0.5, jnp.array([0, 1]))
    for label in (-1, NUM_CLASSES + 1):
        with pytest.raises(ValueError, match=r"label must lie in \{0, ..., 3\}"):
            conditional.apply(params, x, 0.5, label)
    # Under jit a label cannot be checked: out of range, the output is NaN, not another row.
    jitted = jax.jit(conditional.apply)
    for label in (-1, NUM_CLASSES + 1):
        assert np.all(np.isnan(np.asarray(jitted(params, x, 0.5, label))))
    unconditional = make_model(form, "plain")
    with pytest.raises(TypeError, match="unconditional"):
        unconditional.apply(initial_params(form, "plain"), x, 0.5, 0)


@pytest.mark.parametrize(
    "num_classes, error", [(0, ValueError), (2.0, TypeError), (True, TypeError)]
)
def test_bad_num_classes_raises_and_null_label_needs_a_conditional_model(num_classes, error):
    with pytest.raises(error, match="num_classes"):
        NoiseConditionalScore(**SMALL, num_classes=num_classes)
    with pytest.raises(ValueError, match="num_classes"):
        null_label(NoiseConditionalScore(**SMALL))
    with pytest.raises(TypeError, match="model"):
        null_label(nn.Dense(3))


# -- the energy's integrability: activations of at most linear growth ---------------------

LINEAR_GROWTH = [nn.swish, nn.softplus, nn.tanh, nn.gelu, nn.elu, nn.sigmoid]  # nn.silu is nn.swish
SUPERLINEAR_GROWTH = {"square": lambda t: t**2, "exp": jnp.exp, "sinh": jnp.sinh}


@pytest.mark.parametrize("activation", LINEAR_GROWTH, ids=lambda a: a.__name__)
def test_energy_accepts_activations_of_at_most_linear_growth(activation):
    NoiseConditionalEnergy(**SMALL, activation=activation)
    # The probe is a growth ratio, so a scaled Lipschitz activation passes too.
    NoiseConditionalEnergy(**SMALL, activation=lambda t: 3.0 * activation(t) + 5.0)


@pytest.mark.parametrize("name", sorted(SUPERLINEAR_GROWTH))
def test_energy_with_an_envelope_rejects_superlinear_activations(name):
    """t², eᵗ and sinh t break the envelope's integrability: rejected with the envelope on,
    unless residual blocks with layer norm bound the last features; accepted otherwise."""
    activation = SUPERLINEAR_GROWTH[name]
    with pytest.raises(ValueError, match="activation must grow at most linearly"):
        NoiseConditionalEnergy(**SMALL, activation=activation)
    with pytest.raises(ValueError, match="activation"):
        NoiseConditionalEnergy(**SMALL, activation=activation, residual=True)
    NoiseConditionalEnergy(**SMALL, activation=activation, envelope_scale=None)
    NoiseConditionalEnergy(**SMALL, activation=activation, residual=True, layer_norm=True)
    NoiseConditionalScore(**SMALL, activation=activation)


def test_growth_probe_runs_when_the_model_is_built_inside_jit():
    def build(x):
        model = NoiseConditionalEnergy(**SMALL, activation=SUPERLINEAR_GROWTH["square"])
        return model.init(KEY, x, 0.5)

    with pytest.raises(ValueError, match="activation must grow at most linearly"):
        jax.jit(build)(jnp.zeros(2))

"""MLP log-density and score networks: shapes, the envelope's closed form, smoothness, dtypes."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.models import MLPLogDensity, MLPScore

KEY = jax.random.key(0)
HIDDEN_SIZES = (8, 8)
LOG_MODEL = MLPLogDensity(HIDDEN_SIZES)
SCORE_MODEL = MLPScore(HIDDEN_SIZES)
# The parameters do not depend on the activation nor on the envelope, so the
# tests initialise each architecture once (on 2-D samples) and reuse it.


@pytest.fixture(scope="module")
def log_params():
    return jax.jit(LOG_MODEL.init)(KEY, jnp.zeros(2))


@pytest.fixture(scope="module")
def score_params():
    return jax.jit(SCORE_MODEL.init)(KEY, jnp.zeros(2))


def output_shape(model, x):
    """Shape of ``model.apply(model.init(key, x), x)``, traced only, nothing computed."""
    return jax.eval_shape(lambda x: model.apply(model.init(KEY, x), x), x).shape


@pytest.mark.parametrize("event_shape", [(), (2,), (3, 4)])
def test_logdensity_is_a_scalar_and_score_has_the_event_shape(event_shape):
    x = jnp.ones(event_shape)
    assert output_shape(LOG_MODEL, x) == ()
    assert output_shape(SCORE_MODEL, x) == event_shape
    # The score of the log-density model (eq. 11.1) has the event shape too.
    score_of_model = lambda x: jax.grad(LOG_MODEL.apply, argnums=1)(LOG_MODEL.init(KEY, x), x)
    assert jax.eval_shape(score_of_model, x).shape == event_shape


def test_starts_near_zero_and_every_layer_gets_gradient():
    model = MLPLogDensity()
    params = jax.jit(model.init)(KEY, jnp.zeros(2))
    x = jax.random.normal(jax.random.key(2), (2,))
    value, grads = jax.jit(jax.value_and_grad(model.apply))(params, x)
    assert abs(float(value)) < 0.5
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert float(jnp.max(jnp.abs(leaf))) > 0, f"no gradient reaches {path}"


def test_envelope_adds_exactly_the_gaussian_term(log_params):
    """f_s(x) - f_∞(x) = -‖x‖²/(2s²) and ∇²f_s - ∇²f_∞ = -I/s², in float64."""
    scale = 1.5
    with jax.enable_x64(True):
        plain = MLPLogDensity(HIDDEN_SIZES, param_dtype=jnp.float64)
        enveloped = MLPLogDensity(HIDDEN_SIZES, envelope_scale=scale, param_dtype=jnp.float64)
        params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), log_params)
        xs = 4.0 * jax.random.normal(jax.random.key(3), (10, 2), jnp.float64)

        @jax.jit
        def differences(xs):
            value = jax.vmap(lambda x: enveloped.apply(params, x) - plain.apply(params, x))(xs)
            hessian = jax.hessian(enveloped.apply, argnums=1)(params, xs[0]) - jax.hessian(
                plain.apply, argnums=1
            )(params, xs[0])
            return value, hessian

        value_difference, hessian_difference = differences(xs)
    np.testing.assert_allclose(
        value_difference, -0.5 * np.sum(np.asarray(xs) ** 2, axis=1) / scale**2, rtol=1e-12
    )
    np.testing.assert_allclose(hessian_difference, -np.eye(2) / scale**2, atol=1e-12)


def test_envelope_makes_exp_f_integrable_in_2d(log_params):
    """Quadrature of exp f on [-L, L]² no longer changes when L doubles: no mass at infinity."""
    model = MLPLogDensity(HIDDEN_SIZES, envelope_scale=1.0)
    # A larger last layer than at initialisation, so the network part matters.
    params = jax.tree.map(lambda leaf: leaf, log_params)
    params["params"]["Dense_2"]["kernel"] = 30.0 * params["params"]["Dense_2"]["kernel"]
    logdensity_fn = jax.jit(jax.vmap(model.apply, in_axes=(None, 0)))

    def partition_function(half_width, num_points=301):
        grid = np.linspace(-half_width, half_width, num_points)
        points = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 2)
        cell = (grid[1] - grid[0]) ** 2
        return float(np.sum(np.exp(np.asarray(logdensity_fn(params, points), np.float64))) * cell)

    near, far = partition_function(8.0), partition_function(16.0)
    assert np.isfinite(near) and near > 0
    np.testing.assert_allclose(far, near, rtol=1e-4)
    # Far away the envelope dominates: f decreases along a ray, like -r²/2.
    radii = jnp.array([10.0, 100.0, 1000.0])
    far_values = logdensity_fn(params, radii[:, None] * jnp.array([0.6, 0.8]))
    assert np.all(np.diff(np.asarray(far_values)) < 0)
    assert float(far_values[-1]) < -0.4 * 1000.0**2


@pytest.mark.parametrize(
    "activation",
    [
        nn.relu,
        jax.nn.relu,
        jax.nn.relu6,
        nn.leaky_relu,
        nn.hard_tanh,
        jax.nn.hard_sigmoid,
        lambda z: jnp.maximum(z, 0.0),
    ],
    ids=["nn.relu", "jax.nn.relu", "relu6", "leaky_relu", "hard_tanh", "hard_sigmoid", "lambda"],
)
def test_piecewise_linear_activations_are_rejected(activation):
    with pytest.raises(ValueError, match="activation"):
        MLPLogDensity(HIDDEN_SIZES, activation=activation)


def test_activation_check_also_runs_when_the_module_is_built_inside_a_trace():
    def build_and_init(activation):
        def init_fn(x):
            return MLPLogDensity(HIDDEN_SIZES, activation=activation).init(KEY, x)

        return jax.eval_shape(init_fn, jnp.zeros(2))

    build_and_init(lambda z: jnp.log1p(jnp.exp(z)))  # a fresh smooth activation is accepted
    with pytest.raises(ValueError, match="activation"):
        build_and_init(lambda z: jnp.maximum(z, 0.0))


@pytest.mark.parametrize("activation", [nn.swish, nn.softplus, nn.tanh, nn.gelu])
def test_smooth_activations_have_a_nonzero_hessian(activation, log_params):
    model = MLPLogDensity(HIDDEN_SIZES, activation=activation)
    x = jax.random.normal(jax.random.key(4), (2,))

    @jax.jit
    def second_derivatives(params, x):
        hessian = jax.hessian(model.apply, argnums=1)(params, x)
        jacobian_of_score = jax.jacrev(jax.grad(model.apply, argnums=1), argnums=1)(params, x)
        return hessian, jacobian_of_score

    hessian, jacobian_of_score = map(np.asarray, second_derivatives(log_params, x))
    assert hessian.shape == (2, 2)
    assert np.max(np.abs(hessian)) > 0
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-7)
    # Forward-over-reverse and reverse-over-reverse agree.
    np.testing.assert_allclose(hessian, jacobian_of_score, rtol=1e-4, atol=1e-8)


def test_score_network_accepts_relu(score_params):
    model = MLPScore(HIDDEN_SIZES, activation=nn.relu)
    assert model.apply(score_params, jnp.ones(2)).shape == (2,)


@pytest.mark.parametrize(
    ("model", "params_fixture"),
    [
        (MLPLogDensity(HIDDEN_SIZES, envelope_scale=2.0), "log_params"),
        (SCORE_MODEL, "score_params"),
    ],
    ids=["log_density", "score"],
)
def test_vmap_over_a_batch_equals_a_loop(model, params_fixture, request):
    params = request.getfixturevalue(params_fixture)
    xs = jax.random.normal(jax.random.key(5), (4, 2))
    batched = jax.jit(jax.vmap(model.apply, in_axes=(None, 0)))(params, xs)
    looped = jnp.stack([model.apply(params, x) for x in xs])
    np.testing.assert_allclose(batched, looped, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("model_class", "params_fixture"),
    [(MLPLogDensity, "log_params"), (MLPScore, "score_params")],
    ids=["log_density", "score"],
)
def test_float64_parameters_and_outputs(model_class, params_fixture, request):
    """float64 parameters give float64 outputs, equal to the float32 ones to float32 precision."""
    params32 = request.getfixturevalue(params_fixture)
    x32 = jax.random.normal(jax.random.key(6), (2,))
    reference = model_class(HIDDEN_SIZES).apply(params32, x32)
    with jax.enable_x64(True):
        model = model_class(HIDDEN_SIZES, param_dtype=jnp.float64)
        initial = jax.eval_shape(model.init, KEY, jnp.zeros(2, jnp.float64))
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(initial))
        params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), params32)
        output = model.apply(params, jnp.asarray(x32, jnp.float64))
        assert output.dtype == jnp.float64
        np.testing.assert_allclose(output, reference, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"hidden_sizes": (8, 0)}, ValueError, r"hidden_sizes\[1\]"),
        ({"hidden_sizes": (8.0,)}, TypeError, r"hidden_sizes\[0\]"),
        ({"hidden_sizes": "8"}, TypeError, "hidden_sizes"),
        ({"activation": "swish"}, TypeError, "activation"),
        ({"envelope_scale": 0.0}, ValueError, "envelope_scale"),
        ({"envelope_scale": -1.0}, ValueError, "envelope_scale"),
        ({"envelope_scale": float("nan")}, ValueError, "envelope_scale"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        MLPLogDensity(**kwargs)


def test_score_network_checks_its_arguments():
    with pytest.raises(ValueError, match=r"hidden_sizes\[0\]"):
        MLPScore((-1,))
    with pytest.raises(TypeError, match="activation"):
        MLPScore(activation=None)


SUPERLINEAR_GROWTH = {"square": lambda t: t**2, "exp": jnp.exp, "sinh": jnp.sinh}


@pytest.mark.parametrize("name", sorted(SUPERLINEAR_GROWTH))
def test_envelope_rejects_activations_that_grow_faster_than_linearly(name):
    """exp(f) ≤ exp(c(1 + ‖x‖) − ‖x‖²/2s²) is integrable only if f grows at most linearly."""
    activation = SUPERLINEAR_GROWTH[name]
    with pytest.raises(ValueError, match=r"activation must grow at most linearly .* exp\(f\)"):
        MLPLogDensity(HIDDEN_SIZES, activation=activation, envelope_scale=2.0)
    MLPLogDensity(HIDDEN_SIZES, activation=activation)  # no envelope: no guarantee claimed


@pytest.mark.parametrize("activation", [nn.swish, nn.softplus, nn.tanh, nn.gelu, nn.elu])
def test_envelope_accepts_lipschitz_activations(activation):
    MLPLogDensity(HIDDEN_SIZES, activation=activation, envelope_scale=2.0)
    MLPLogDensity(HIDDEN_SIZES, activation=lambda t: 3.0 * activation(t) + 5.0, envelope_scale=2.0)

"""RBMs: free energy and log Z against brute-force enumeration and quadrature, the
block-Gibbs kernel's state and stationarity, and named input errors."""

from __future__ import annotations

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from ebm_jax import diagnostics
from ebm_jax.models.rbm import BernoulliRBM, GaussianBernoulliRBM, RBMGibbsState
from ebm_jax.samplers import MHInfo
from tests.helpers import assert_mean_within_mcse


def random_params(model, num_visible, seed, weight_scale=1.0, dtype=jnp.float32):
    """Parameters far from the near-zero initialisation, so every test sees structure."""
    weights_key, visible_key, hidden_key = jax.random.split(jax.random.key(seed), 3)
    shape = (num_visible, model.num_hidden)
    return {
        "params": {
            "weights": weight_scale * jax.random.normal(weights_key, shape, dtype),
            "visible_bias": 0.5 * jax.random.normal(visible_key, (num_visible,), dtype),
            "hidden_bias": 0.5 * jax.random.normal(hidden_key, (model.num_hidden,), dtype),
        }
    }


def all_binary(num_units, dtype=jnp.float32):
    """Every configuration of ``num_units`` binary units, shape (2^n, n)."""
    return jnp.asarray(list(itertools.product([0, 1], repeat=num_units)), dtype)


VISIBLE_SCALE = 0.7  # σ of the Gaussian–binary RBMs: not 1, so a σ in the wrong place shows


def make_model(kind, num_hidden, dtype=jnp.float32):
    if kind == "binary":
        return BernoulliRBM(num_hidden, param_dtype=dtype)
    return GaussianBernoulliRBM(num_hidden, visible_scale=VISIBLE_SCALE, param_dtype=dtype)


# -- free energy and the joint ------------------------------------------------------------


def numpy_energy(kind, params, visible, hidden, scale=VISIBLE_SCALE):
    """E(v, h) written out in float64 NumPy, one row per pair.

    Binary: E = −bᵀv − cᵀh − vᵀWh. Gaussian–binary with scale σ:
    E = ‖v − b‖²/2σ² − cᵀh − vᵀWh/σ².
    """
    inner = {name: np.asarray(value, np.float64) for name, value in params["params"].items()}
    weights, b, c = inner["weights"], inner["visible_bias"], inner["hidden_bias"]
    interaction = np.einsum("ni,ij,nj->n", visible, weights, hidden)
    if kind == "binary":
        return -(visible @ b) - hidden @ c - interaction
    return (
        np.sum((visible - b) ** 2, axis=-1) / (2 * scale**2) - hidden @ c - interaction / scale**2
    )


@pytest.mark.parametrize("kind", ["binary", "gaussian"])
def test_free_energy_is_the_joint_with_hidden_units_summed_out(kind):
    """eq. 11.3: f(v) = log Σ_h exp(−E(v, h)), the sum over all 2⁵ hidden configurations
    done by brute force in NumPy from the energy written out (σ = 0.7 for the
    Gaussian–binary RBM), float64; and −E itself is ``joint_logdensity``."""
    with jax.enable_x64(True):
        model = make_model(kind, num_hidden=5, dtype=jnp.float64)
        params = random_params(model, 3, seed=0, dtype=jnp.float64)
        hidden = np.asarray(list(itertools.product([0.0, 1.0], repeat=5)))
        visibles = (
            np.asarray(list(itertools.product([0.0, 1.0], repeat=3)))
            if kind == "binary"
            else 1.5 * np.random.default_rng(1).normal(size=(4, 3))
        )
        free_energy = jax.vmap(model.apply, in_axes=(None, 0))(params, jnp.asarray(visibles))
        brute_force = [
            np.log(np.sum(np.exp(-numpy_energy(kind, params, np.tile(v, (32, 1)), hidden))))
            for v in visibles
        ]
        np.testing.assert_allclose(free_energy, brute_force, rtol=1e-12)
        joint = jax.vmap(model.joint_logdensity, in_axes=(None, None, 0))(
            params, jnp.asarray(visibles[-1]), jnp.asarray(hidden)
        )
        np.testing.assert_allclose(
            joint, -numpy_energy(kind, params, np.tile(visibles[-1], (32, 1)), hidden), rtol=1e-12
        )


@pytest.mark.parametrize("kind", ["binary", "gaussian"])
def test_conditionals_are_normalised_ratios_of_the_joint(kind):
    """p(h_j = 1 | v) and E[v | h] (binary v: by enumerating v) from exp(−E), float64."""
    with jax.enable_x64(True):
        model = make_model(kind, num_hidden=3, dtype=jnp.float64)
        params = random_params(model, 4, seed=2, dtype=jnp.float64)
        hidden_configs, visible_configs = all_binary(3, jnp.float64), all_binary(4, jnp.float64)
        joint = jax.vmap(
            jax.vmap(model.joint_logdensity, in_axes=(None, None, 0)), in_axes=(None, 0, None)
        )
        visible = jnp.array([0.0, 1.0, 1.0, 0.0])
        weights_given_v = jax.nn.softmax(joint(params, visible[None], hidden_configs)[0])
        np.testing.assert_allclose(
            model.hidden_probabilities(params, visible),
            weights_given_v @ hidden_configs,
            rtol=1e-12,
        )
        hidden = jnp.array([1.0, 0.0, 1.0])
        if kind == "binary":
            weights_given_h = jax.nn.softmax(joint(params, visible_configs, hidden[None])[:, 0])
            expected_mean = weights_given_h @ visible_configs
        else:
            # −E is quadratic in v with Hessian −I/σ², so its maximiser, the mean of
            # p(v | h), is σ² ∇ᵥ(−E) at v = 0.
            gradient_at_zero = jax.grad(model.joint_logdensity, argnums=1)(
                params, jnp.zeros(4), hidden
            )
            expected_mean = VISIBLE_SCALE**2 * gradient_at_zero
        np.testing.assert_allclose(
            model.visible_mean(params, hidden), expected_mean, rtol=1e-12, atol=1e-12
        )


def test_initialisation_follows_hinton_2010():
    """Weights N(0, 0.01²), zero biases, float32 by default."""
    model = BernoulliRBM(num_hidden=100)
    params = model.init(jax.random.key(0), jnp.zeros(100))["params"]
    assert params["weights"].shape == (100, 100) and params["weights"].dtype == jnp.float32
    weights = np.asarray(params["weights"], np.float64)
    # The sample sd of 10⁴ normals is within 0.7 % of σ (one sd); gate at 5 %.
    assert abs(weights.std() / 0.01 - 1) < 0.05 and abs(weights.mean()) < 4 * 0.01 / 100
    assert not np.any(params["visible_bias"]) and not np.any(params["hidden_bias"])


# -- the exact partition function ----------------------------------------------------------


@pytest.mark.parametrize(
    ("num_visible", "num_hidden"), [(3, 5), (5, 3)], ids=["enumerate_visible", "enumerate_hidden"]
)
@pytest.mark.parametrize("batch_size", [3, 4096])
def test_exact_log_partition_matches_enumeration_of_both_layers(
    num_visible, num_hidden, batch_size
):
    """log Z = logsumexp over all 2^(V+H) pairs of −E(v, h), float64; batch 3 does not
    divide 2^3, so the padded last block is exercised."""
    with jax.enable_x64(True):
        model = BernoulliRBM(num_hidden, param_dtype=jnp.float64)
        params = random_params(model, num_visible, seed=3, dtype=jnp.float64)
        pairs = all_binary(num_visible + num_hidden, jnp.float64)
        joint = jax.vmap(model.joint_logdensity, in_axes=(None, 0, 0))(
            params, pairs[:, :num_visible], pairs[:, num_visible:]
        )
        log_partition = model.exact_log_partition(params, batch_size=batch_size)
        np.testing.assert_allclose(log_partition, jax.nn.logsumexp(joint), rtol=1e-12)


def test_gaussian_log_partition_matches_quadrature():
    """The closed-form Gaussian integral against a trapezoid grid over v ∈ R², float64."""
    with jax.enable_x64(True):
        model = GaussianBernoulliRBM(3, visible_scale=0.8, param_dtype=jnp.float64)
        params = random_params(model, 2, seed=4, dtype=jnp.float64)
        quadrature = diagnostics.nll_2d_quadrature(
            lambda v: model.apply(params, v),
            jnp.zeros((1, 2)),
            ((-9.0, 9.0), (-9.0, 9.0)),
            resolution=256,
        )
        assert float(quadrature.log_partition_error) < 1e-10
        np.testing.assert_allclose(
            model.exact_log_partition(params, batch_size=3), quadrature.log_partition, rtol=1e-10
        )


def test_log_partition_gradient_is_the_model_expectation():
    """∂ log Z / ∂W = E_p[v hᵀ] (the negative phase of the likelihood gradient), float64."""
    with jax.enable_x64(True):
        model = BernoulliRBM(2, param_dtype=jnp.float64)
        params = random_params(model, 3, seed=5, dtype=jnp.float64)
        gradient = jax.grad(lambda p: model.exact_log_partition(p, batch_size=3))(params)
        pairs = all_binary(5, jnp.float64)
        visible, hidden = pairs[:, :3], pairs[:, 3:]
        joint = jax.vmap(model.joint_logdensity, in_axes=(None, 0, 0))(params, visible, hidden)
        probabilities = jax.nn.softmax(joint)
        expected = jnp.einsum("k,ki,kj->ij", probabilities, visible, hidden)
        np.testing.assert_allclose(gradient["params"]["weights"], expected, rtol=1e-10)


@pytest.mark.parametrize(("num_visible", "num_hidden"), [(4, 6), (4, 2)])
def test_binary_likelihood_sums_to_one(num_visible, num_hidden):
    """Σ_v p(v) = 1 over all 2^V visible configurations (float32, jitted)."""
    model = BernoulliRBM(num_hidden)
    params = random_params(model, num_visible, seed=6)
    log_likelihood = jax.jit(model.log_likelihood)(params, all_binary(num_visible))
    assert log_likelihood.shape == (2**num_visible,)
    np.testing.assert_allclose(jnp.sum(jnp.exp(log_likelihood)), 1.0, rtol=2e-6)


def test_log_likelihood_uses_a_given_log_partition():
    model = GaussianBernoulliRBM(3)
    params = random_params(model, 2, seed=7)
    visible = jax.random.normal(jax.random.key(0), (5, 2))
    free_energy = jax.vmap(model.apply, in_axes=(None, 0))(params, visible)
    np.testing.assert_allclose(model.log_likelihood(params, visible, 1.5), free_energy - 1.5)
    np.testing.assert_allclose(
        model.log_likelihood(params, visible),
        free_energy - model.exact_log_partition(params),
        rtol=1e-6,
    )


# -- block Gibbs (the shared sampler conformance suite runs it too) -------------------------

NUM_VISIBLE, NUM_HIDDEN = 4, 3


@pytest.mark.parametrize("kind", ["binary", "gaussian"])
def test_block_gibbs_state_and_info(kind):
    model = make_model(kind, NUM_HIDDEN)
    algorithm = model.block_gibbs(random_params(model, NUM_VISIBLE, seed=8))
    draw = jax.random.bernoulli if kind == "binary" else jax.random.normal
    position = draw(jax.random.key(1), shape=(NUM_VISIBLE,)).astype(jnp.float32)
    state = algorithm.init(position)
    assert isinstance(state, RBMGibbsState) and state.hidden.shape == (NUM_HIDDEN,)
    new_state, info = algorithm.step(jax.random.key(0), state)
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    assert isinstance(info, MHInfo)
    assert float(info.acceptance_rate) == 1.0 and bool(info.is_accepted)
    assert not bool(info.is_nonfinite)
    assert set(np.unique(np.asarray(new_state.hidden))) <= {0.0, 1.0}


def test_integer_positions_are_promoted_and_binary_steps_stay_binary():
    model = BernoulliRBM(NUM_HIDDEN)
    algorithm = model.block_gibbs(random_params(model, NUM_VISIBLE, seed=9))
    state = algorithm.init(jnp.array([1, 0, 0, 1]))
    assert state.position.dtype == jnp.float32
    for seed in range(3):
        state, _ = algorithm.step(jax.random.key(seed), state)
        assert set(np.unique(np.asarray(state.position))) <= {0.0, 1.0}


def test_nonfinite_conditionals_keep_the_state_and_are_flagged():
    """Parameters that turn NaN inside a traced loss: the chain does not move."""
    model = GaussianBernoulliRBM(NUM_HIDDEN)
    params = random_params(model, NUM_VISIBLE, seed=10)
    state = model.block_gibbs(params).init(jnp.ones(NUM_VISIBLE))
    poisoned = jax.tree.map(lambda leaf: leaf.at[0].set(jnp.nan), params)
    step = jax.jit(lambda p, key, s: model.block_gibbs(p).step(key, s))
    new_state, info = step(poisoned, jax.random.key(0), state)
    chex.assert_trees_all_equal(new_state, state)
    assert bool(info.is_nonfinite) and not bool(info.is_accepted)
    assert float(info.acceptance_rate) == 0.0


# -- block Gibbs: stationarity ----------------------------------------------------------------


def run_chains_to_the_end(algorithm, positions, num_steps, seed):
    """Final states of independent chains after ``num_steps`` steps (and per-step positions)."""

    def chain(key, position):
        def transition(state, step_key):
            state, _ = algorithm.step(step_key, state)
            return state, state.position

        return jax.lax.scan(transition, algorithm.init(position), jax.random.split(key, num_steps))

    keys = jax.random.split(jax.random.key(seed), positions.shape[0])
    return jax.jit(jax.vmap(chain))(keys, positions)


def test_binary_block_gibbs_reaches_the_exact_distribution():
    """20 000 chains from v = 0 after 25 sweeps: the counts over the 16 visible
    configurations against N p(v) by Pearson's χ² (15 dof, false alarm 1e-4).

    The exact kernel K(v, v') = Σ_h p(h|v) p(v'|h) bounds the burn-in bias:
    ‖δ₀Kⁿ − p‖_TV is computed and required to be negligible next to the MC error.
    """
    num_chains, num_steps = 20_000, 25
    model = BernoulliRBM(NUM_HIDDEN)
    params = random_params(model, NUM_VISIBLE, seed=11, weight_scale=1.5)
    configurations = all_binary(NUM_VISIBLE)
    exact = np.asarray(jnp.exp(model.log_likelihood(params, configurations)), np.float64)
    assert exact.min() < 0.25 * exact.max()  # a far-from-uniform target

    # The exact law after num_steps sweeps from v = 0 is within 1e-4 of p in TV.
    hidden_configs = all_binary(NUM_HIDDEN)
    hidden_probs = model.hidden_probabilities(params, configurations)  # (16, H)
    p_h_given_v = jnp.prod(
        jnp.where(hidden_configs[None] == 1, hidden_probs[:, None], 1 - hidden_probs[:, None]),
        axis=-1,
    )
    visible_probs = model.visible_mean(params, hidden_configs)  # (8, V)
    p_v_given_h = jnp.prod(
        jnp.where(configurations[None] == 1, visible_probs[:, None], 1 - visible_probs[:, None]),
        axis=-1,
    )
    kernel = np.asarray(p_h_given_v @ p_v_given_h, np.float64)
    np.testing.assert_allclose(exact @ kernel, exact, atol=1e-5)  # p is invariant
    law = np.linalg.matrix_power(kernel, num_steps)[0]
    assert 0.5 * np.abs(law - exact).sum() < 1e-4

    final, _ = run_chains_to_the_end(
        model.block_gibbs(params), jnp.zeros((num_chains, NUM_VISIBLE)), num_steps, seed=0
    )
    codes = np.asarray(final.position, np.int64) @ (2 ** np.arange(NUM_VISIBLE)[::-1])
    counts = np.bincount(codes, minlength=2**NUM_VISIBLE)
    expected = num_chains * exact
    chi_square = np.sum((counts - expected) ** 2 / expected)
    assert chi_square < stats.chi2.ppf(1 - 1e-4, df=2**NUM_VISIBLE - 1), chi_square


def test_gaussian_block_gibbs_matches_the_exact_mixture_moments():
    """Per-chain averages of v and v vᵀ against the exact mixture Σ_h π_h N(b + Wh, σ²I),
    π_h ∝ exp(cᵀh + (‖b + Wh‖² − ‖b‖²)/(2σ²)), gated at 4 MCSE over 128 chains."""
    num_chains, num_burnin, num_kept, scale = 128, 50, 400, 0.7
    model = GaussianBernoulliRBM(NUM_HIDDEN, visible_scale=scale)
    params = random_params(model, 2, seed=12, weight_scale=1.5)
    inner = {key: np.asarray(value, np.float64) for key, value in params["params"].items()}
    hidden_configs = np.asarray(all_binary(NUM_HIDDEN), np.float64)
    means = inner["visible_bias"] + hidden_configs @ inner["weights"].T  # (8, V)
    log_weights = hidden_configs @ inner["hidden_bias"] + (
        np.sum(means**2, axis=1) - np.sum(inner["visible_bias"] ** 2)
    ) / (2 * scale**2)
    mixture_weights = np.exp(log_weights - log_weights.max())
    mixture_weights /= mixture_weights.sum()
    exact_mean = mixture_weights @ means
    exact_second_moment = np.einsum("k,ki,kj->ij", mixture_weights, means, means) + scale**2 * (
        np.eye(2)
    )
    assert mixture_weights.max() < 0.9  # several components carry mass

    _, positions = run_chains_to_the_end(
        model.block_gibbs(params), jnp.zeros((num_chains, 2)), num_burnin + num_kept, seed=1
    )
    samples = np.asarray(positions, np.float64)[:, num_burnin:]
    second_moments = np.einsum("cti,ctj->cij", samples, samples) / num_kept
    assert_mean_within_mcse(samples.mean(axis=1), exact_mean, what="E[v]")
    assert_mean_within_mcse(
        second_moments.reshape(num_chains, -1), exact_second_moment.reshape(-1), what="E[v vᵀ]"
    )


# -- methods on the unbound module, under jit -----------------------------------------------


def test_methods_work_on_the_unbound_module_under_jit():
    model = GaussianBernoulliRBM(NUM_HIDDEN)
    params = random_params(model, NUM_VISIBLE, seed=13)
    visible, hidden = jnp.linspace(-1.0, 1.0, NUM_VISIBLE), jnp.array([1.0, 0.0, 1.0])
    for method, args in [
        (model.joint_logdensity, (params, visible, hidden)),
        (model.hidden_probabilities, (params, visible)),
        (model.visible_mean, (params, hidden)),
        (model.exact_log_partition, (params,)),
        (model.log_likelihood, (params, visible[None])),
    ]:
        chex.assert_trees_all_close(jax.jit(method)(*args), method(*args), rtol=1e-6)


# -- named errors ---------------------------------------------------------------------------


def test_bad_fields_raise_named_errors():
    with pytest.raises(ValueError, match="num_hidden"):
        BernoulliRBM(num_hidden=0)
    with pytest.raises(TypeError, match="num_hidden"):
        GaussianBernoulliRBM(num_hidden=2.5)
    with pytest.raises(ValueError, match="visible_scale"):
        GaussianBernoulliRBM(num_hidden=2, visible_scale=0.0)


def test_too_many_units_for_enumeration_names_the_layers_and_suggests_ais():
    def zero_params(num_visible, num_hidden):
        shapes = {"weights": (num_visible, num_hidden), "visible_bias": (num_visible,)}
        shapes["hidden_bias"] = (num_hidden,)
        return {"params": {name: np.zeros(shape) for name, shape in shapes.items()}}

    binary = BernoulliRBM(num_hidden=21)
    params = zero_params(22, 21)
    with pytest.raises(ValueError, match=r"num_visible=22 and num_hidden=21.*annealed_import"):
        binary.exact_log_partition(params)
    gaussian = GaussianBernoulliRBM(num_hidden=21)
    params = zero_params(2, 21)
    with pytest.raises(ValueError, match=r"num_hidden=21.*annealed_importance_sampling"):
        gaussian.exact_log_partition(params)
    with pytest.raises(ValueError, match="max_units"):
        gaussian.exact_log_partition(params, max_units=31)


def test_bad_positions_and_params_raise_named_errors():
    model = BernoulliRBM(NUM_HIDDEN)
    params = random_params(model, NUM_VISIBLE, seed=14)
    algorithm = model.block_gibbs(params)
    with pytest.raises(ValueError, match="position"):
        algorithm.init(jnp.zeros((2, NUM_VISIBLE)))
    with pytest.raises(ValueError, match="position"):
        algorithm.init(jnp.zeros(NUM_VISIBLE + 1))
    with pytest.raises(ValueError, match=r"position.*binary"):
        algorithm.init(jnp.array([0.0, 1.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match=r"visible_batch.*binary"):
        model.log_likelihood(params, jnp.full((2, NUM_VISIBLE), 2.0))
    with pytest.raises(ValueError, match="visible_batch"):
        model.log_likelihood(params, jnp.zeros(NUM_VISIBLE))
    with pytest.raises(ValueError, match="position"):
        GaussianBernoulliRBM(NUM_HIDDEN).block_gibbs(params).init(jnp.full(NUM_VISIBLE, jnp.nan))
    with pytest.raises(ValueError, match="params"):
        BernoulliRBM(NUM_HIDDEN + 1).block_gibbs(params)
    with pytest.raises(ValueError, match="params"):
        model.exact_log_partition(params["params"])
    with pytest.raises(ValueError, match="visible"):
        model.apply(params, jnp.zeros((2, NUM_VISIBLE)))

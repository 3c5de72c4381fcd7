"""Writes notebooks/03_contrastive_divergence.ipynb (unexecuted) from the cells below."""

from pathlib import Path

from _build import write_notebook

CELLS = [
    (
        "md",
        """# 03 — Learning by maximum likelihood: contrastive divergence (§11.1)

An energy-based model is $p_\\theta(x) = \\exp f_\\theta(x) / Z(\\theta)$ (eq. 11.3). The
lecture's recap lists two ways to learn one, both "minimise a divergence":

$$\\text{KL} \\rightarrow \\text{M.L.E.} \\rightarrow \\text{C.D.}, \\qquad
\\text{Fisher} \\rightarrow \\text{score matching}.$$

Notebook 02 took the Fisher route. This one takes the KL route, on restricted
Boltzmann machines (RBMs), where everything can be checked exactly:

1. minimising $\\mathrm{KL}(\\hat p\\,\\|\\,p_\\theta)$ is maximum likelihood, whose gradient
   needs expectations under the model;
2. an RBM's Gibbs sampler draws those model samples one layer at a time;
3. contrastive divergence (CD-k) and persistent CD (PCD) train an RBM on binarised
   digits, judged by the *exact* test log-likelihood;
4. the bias of the CD-k gradient, measured against the exact gradient;
5. $\\log Z$ by annealed importance sampling, forward and reverse, against the exact value.

Set `EBM_JAX_FAST=1` to run everything at toy sizes (the test suite does).""",
    ),
    (
        "code",
        """import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import ebm_jax as ej
from ebm_jax import partition

FAST = os.environ.get("EBM_JAX_FAST", "0") == "1"
plt.rcParams.update({"figure.dpi": 80, "figure.constrained_layout.use": True})
NUM_HIDDEN = 8 if FAST else 16  # few enough that log Z enumerates the hidden layer
NUM_TRAIN_STEPS = 400 if FAST else 20_000
NUM_EVALUATIONS = 2 if FAST else 10
CD_STEPS = (1, 10) if FAST else (1, 3, 10, 30, 100, 300)
NUM_DATA_REPEATS = 1 if FAST else 16
AIS_CHAINS = 16 if FAST else 256
AIS_TEMPERATURES = (10,) if FAST else (10, 30, 100, 300, 1000)


def all_binary_states(num_units):
    \"\"\"Every configuration of ``num_units`` binary units; row k holds the bits of k.\"\"\"
    bits = jnp.arange(2**num_units)[:, None] >> jnp.arange(num_units)
    return (bits & 1).astype(jnp.float32)


def state_index(states):
    \"\"\"The integer whose bits are a binary configuration (inverse of all_binary_states).\"\"\"
    return (states @ 2.0 ** jnp.arange(states.shape[-1])).astype(jnp.int32)""",
    ),
    (
        "md",
        """## 1. KL → maximum likelihood, and the gradient of $\\log Z$

With eq. 11.3, the KL divergence from the data distribution $\\hat p$ is

$$\\mathrm{KL}(\\hat p\\,\\|\\,p_\\theta) = \\mathbb{E}_{\\hat p}[\\log \\hat p(x)]
- \\mathbb{E}_{\\hat p}[f_\\theta(x)] + \\log Z(\\theta).$$

The first term does not depend on $\\theta$, so minimising the KL is maximising the
likelihood. Differentiating $\\log Z = \\log \\int e^{f_\\theta}$ under the integral,
$\\nabla_\\theta \\log Z = \\int \\frac{e^{f_\\theta}}{Z} \\nabla_\\theta f_\\theta
= \\mathbb{E}_{p_\\theta}[\\nabla_\\theta f_\\theta]$, so

$$\\nabla_\\theta \\mathrm{KL}(\\hat p\\,\\|\\,p_\\theta)
= -\\underbrace{\\mathbb{E}_{\\hat p}[\\nabla_\\theta f_\\theta(x)]}_{\\text{positive phase}}
+ \\underbrace{\\mathbb{E}_{p_\\theta}[\\nabla_\\theta f_\\theta(x)]}_{\\text{negative phase}}.$$

The positive phase averages over the data; the negative phase over the model, and
that is what makes maximum likelihood hard: it needs samples of the model.

**The model.** A binary RBM couples visible units $v \\in \\{0,1\\}^V$ to hidden units
$h \\in \\{0,1\\}^H$ by $-E(v, h) = b^\\top v + c^\\top h + v^\\top W h$. Summing $h$ out gives
the lecture's $f$ in closed form (the negative free energy),
$f(v) = b^\\top v + \\sum_j \\operatorname{softplus}(c_j + (W^\\top v)_j)$ — that is
`rbm.apply(params, v)`. With few units, $Z$ is a finite sum: below,
`exact_log_partition` sums over the 4 hidden units, while the model expectation
enumerates all $2^8$ visible states — two independent routes to the same gradient.""",
    ),
    (
        "code",
        """num_visible_tiny = 8
tiny_rbm = ej.models.BernoulliRBM(num_hidden=4)
weights_key, visible_key, hidden_key = jax.random.split(jax.random.key(1), 3)
# Strong couplings, so the model is far from uniform and its Gibbs chains need a few steps.
tiny_params = {
    "params": {
        "weights": 2.0 * jax.random.normal(weights_key, (num_visible_tiny, 4)),
        "visible_bias": -0.5 + 0.5 * jax.random.normal(visible_key, (num_visible_tiny,)),
        "hidden_bias": 0.5 * jax.random.normal(hidden_key, (4,)),
    }
}
visible_states = all_binary_states(num_visible_tiny)
tiny_logdensities = jax.vmap(tiny_rbm.apply, in_axes=(None, 0))(tiny_params, visible_states)
tiny_probabilities = jax.nn.softmax(tiny_logdensities)  # exact p(v), all 256 states

gradient_fn = jax.vmap(jax.grad(tiny_rbm.apply), in_axes=(None, 0))
model_expectation = jax.tree.map(
    lambda grads: jnp.tensordot(tiny_probabilities, grads, axes=1),
    gradient_fn(tiny_params, visible_states),
)
gradient_of_log_partition = jax.grad(tiny_rbm.exact_log_partition)(tiny_params)

print(
    f"log Z: sum over hidden {float(tiny_rbm.exact_log_partition(tiny_params)):.5f}, "
    f"sum over visible {float(jax.nn.logsumexp(tiny_logdensities)):.5f}"
)
for name, expected in model_expectation["params"].items():
    difference = jnp.max(jnp.abs(gradient_of_log_partition["params"][name] - expected))
    print(
        f"∇ log Z vs E_model[∇f], {name:<12}: max |difference| {float(difference):.1e}"
        f" (entries up to {float(jnp.max(jnp.abs(expected))):.2f})"
    )""",
    ),
    (
        "md",
        """## 2. Gibbs sampling an RBM: whole layers at once

Gibbs sampling (§11.1 recap) draws each variable from its conditional given the rest,
which leaves $p$ invariant. In an RBM there are no visible–visible or hidden–hidden
terms, so both conditionals *factorise*,

$$p(h_j = 1 \\mid v) = \\operatorname{sigmoid}\\big(c_j + (W^\\top v)_j\\big), \\qquad
p(v_i = 1 \\mid h) = \\operatorname{sigmoid}\\big(b_i + (W h)_i\\big),$$

and a *block* Gibbs step draws the whole hidden layer, then the whole visible layer
(`rbm.block_gibbs(params)`, a `SamplingAlgorithm` like the samplers of notebook 01).
For a general binary model, `ej.samplers.binary_gibbs(logdensity_fn)` updates one site at
a time from $p(x_i = 1 \\mid x_{-i}) = \\operatorname{sigmoid}(f(x_{i\\leftarrow 1}) -
f(x_{i\\leftarrow 0}))$ — here on the RBM's marginal $f(v)$, with $h$ summed out; one
sweep costs $V$ evaluations of $f$, a block step two matrix-vector products.

Both are exact, so the distribution of many chains started at one state converges to
$p(v)$; we measure the total-variation distance to the exact $p(v)$ of the tiny RBM,
against the floor that the same number of *exact* samples reaches.""",
    ),
    (
        "code",
        """num_chains, num_gibbs_steps = 1024 if FAST else 8192, 30
start = jnp.zeros((num_chains, num_visible_tiny))
samplers = {
    "block Gibbs (h | v, then v | h)": tiny_rbm.block_gibbs(tiny_params),
    "single-site Gibbs (one sweep)": ej.samplers.binary_gibbs(
        lambda v: tiny_rbm.apply(tiny_params, v)
    ),
}


def total_variation(samples):
    counts = jnp.bincount(state_index(samples), length=2**num_visible_tiny)
    return 0.5 * jnp.sum(jnp.abs(counts / samples.shape[0] - tiny_probabilities))


exact_indices = jax.random.categorical(jax.random.key(2), tiny_logdensities, shape=(num_chains,))
floor = total_variation(visible_states[exact_indices])
fig, ax = plt.subplots(figsize=(5.5, 3.5))
for offset, (name, sampler) in enumerate(samplers.items()):
    chains = ej.run_chains(jax.random.key(3 + offset), sampler, start, num_gibbs_steps)
    distances = jax.vmap(total_variation, in_axes=1)(chains.samples)
    ax.semilogy(np.arange(1, num_gibbs_steps + 1), distances, "o-", ms=3, label=name)
    after = ", ".join(f"{float(distances[t - 1]):.3f}" for t in (1, 3, 10, num_gibbs_steps))
    print(f"{name:<38} TV after 1, 3, 10, {num_gibbs_steps} steps: {after}")
print(f"{'exact samples (the Monte-Carlo floor)':<38} TV {float(floor):.3f}")
ax.axhline(float(floor), color="k", ls="--", label="exact samples")
ax.set(xlabel="Gibbs steps from v = 0", ylabel="TV distance to the exact p(v)")
ax.set_title(f"{num_chains} chains of the tiny RBM ({2**num_visible_tiny} states)")
ax.legend(fontsize=8);""",
    ),
    (
        "md",
        """## 3. Contrastive divergence and persistent CD on binarised digits

Estimating the negative phase with MCMC leaves a choice: where to start the chains.

* **CD-k** (Hinton 2002) starts one chain *at each data point* of the batch and runs $k$
  steps of a kernel that leaves $p_\\theta$ invariant (for an RBM, block Gibbs). The loss
  is the surrogate $\\frac1B\\sum_b [f_\\theta(x^-_b) - f_\\theta(x^+_b)]$ with gradients
  stopped through the negatives $x^-$, so its gradient is the Monte-Carlo version of the
  one above — except that after $k$ steps the negatives are not yet samples of $p_\\theta$.
  `ej.losses.contrastive_divergence(rbm.apply, sampler=rbm.block_gibbs, num_steps=k)`.
* **Persistent CD** (Tieleman 2008) keeps the chains from one update to the next, so
  with a small learning rate they stay near the slowly-moving model.
  `ej.losses.persistent_contrastive_divergence(...)` returns `(init, loss)`; the chains
  ride in `ej.training.fit(..., loss_state=pcd.init(initial_chains))`.

The model: 64 visible units (8×8 digits, thresholded at ½) and 16 hidden units (8 in
fast mode), so the *exact* test log-likelihood $\\frac1n \\sum_i f(v_i) - \\log Z$ is
always available. The scale is set by the *base-rate* model, independent pixels with
the training means; the RBM starts there (visible biases at the pixels' log-odds,
Hinton 2010 §8).""",
    ),
    (
        "code",
        """digits = ej.data.load_digits(scale="binary")
train, test = digits.train, digits.test
base_rate = partition.bernoulli_base(train.mean(axis=0))  # also the AIS base of section 5
base_rate_test = float(jnp.mean(jax.vmap(base_rate.logdensity_fn)(test)))

rbm = ej.models.BernoulliRBM(num_hidden=NUM_HIDDEN)
initial_params = rbm.init(jax.random.key(4), jnp.zeros(train.shape[1]))
pixel_means = jnp.clip(train.mean(axis=0), 1e-3, 1 - 1e-3)
initial_params["params"]["visible_bias"] = jnp.log(pixel_means) - jnp.log1p(-pixel_means)
test_log_likelihood = jax.jit(lambda params: jnp.mean(rbm.log_likelihood(params, test)))

# Plain SGD carries no optimiser state, so cutting a run into segments (to evaluate the
# exact test log-likelihood in between) changes nothing but the random keys.
optimizer = optax.sgd(0.1)
steps_per_segment = NUM_TRAIN_STEPS // NUM_EVALUATIONS


def train_rbm(loss_fn, loss_state=None):
    params, history = initial_params, []
    for segment in range(NUM_EVALUATIONS):
        result = ej.training.fit(
            jax.random.fold_in(jax.random.key(5), segment),
            loss_fn,
            params,
            optimizer,
            train,
            num_steps=steps_per_segment,
            batch_size=100,
            loss_state=loss_state,
            progress=False,
        )
        params, loss_state = result.params, result.loss_state
        history.append(float(test_log_likelihood(params)))
    return params, history


cd1 = ej.losses.contrastive_divergence(rbm.apply, sampler=rbm.block_gibbs, num_steps=1)
pcd = ej.losses.persistent_contrastive_divergence(rbm.apply, sampler=rbm.block_gibbs, num_steps=1)
initial_chains = jax.vmap(base_rate.sample)(jax.random.split(jax.random.key(6), 100))
cd_params, cd_history = train_rbm(cd1)
pcd_params, pcd_history = train_rbm(pcd.loss, pcd.init(initial_chains))

print("test log-likelihood (nats per image), exact log Z:")
print(f"  base-rate model            {base_rate_test:8.2f}")
print(f"  RBM at initialisation      {float(test_log_likelihood(initial_params)):8.2f}")
print(f"  RBM trained by CD-1        {cd_history[-1]:8.2f}")
print(f"  RBM trained by PCD-1       {pcd_history[-1]:8.2f}")
evaluated_at = steps_per_segment * np.arange(1, NUM_EVALUATIONS + 1)
fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(evaluated_at, cd_history, "o-", label="CD-1")
ax.plot(evaluated_at, pcd_history, "s-", label="PCD-1")
ax.axhline(base_rate_test, color="k", ls="--", label="base rate")
ax.set(xlabel="SGD steps", ylabel="test log-likelihood (nats per image)")
ax.set_title(f"RBM with {NUM_HIDDEN} hidden units, exact log Z")
ax.legend();""",
    ),
    (
        "md",
        """What the RBM learned: each hidden unit's weights $W_{:,j}$ form an 8×8 filter, and
free-running block-Gibbs chains, started from base-rate noise, generate digits (shown:
the conditional means $E[v \\mid h]$ of the last step). One chain followed over time shows
how block Gibbs forms a digit from noise and moves between digit classes.""",
    ),
    (
        "code",
        """record_interval = 5 if FAST else 100
num_sample_steps = 16 * record_interval
noise = jax.vmap(base_rate.sample)(jax.random.split(jax.random.key(7), 8))
fig = plt.figure(figsize=(12, 3.6))
filter_row, sample_row, chain_row = fig.subfigures(3, 1)
filters = pcd_params["params"]["weights"].T.reshape(-1, 8, 8)
limit = float(jnp.quantile(jnp.abs(filters), 0.99))  # a few large weights would pale the rest
filter_axes = filter_row.subplots(1, filters.shape[0])
for ax, weights in zip(filter_axes, filters, strict=True):
    image = ax.imshow(weights, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.axis("off")
filter_row.colorbar(image, ax=filter_axes, label="weight", extend="both")
filter_row.suptitle(f"the filters W[:, j] of the {filters.shape[0]} hidden units (PCD-1)")
for subfigure, (name, params) in zip(
    sample_row.subfigures(1, 2), (("CD-1", cd_params), ("PCD-1", pcd_params)), strict=True
):
    sampler = rbm.block_gibbs(params)
    chains = ej.run_chains(
        jax.random.key(8), sampler, noise, num_sample_steps, thin=record_interval
    )
    means = rbm.visible_mean(params, chains.final_state.hidden)
    sample_axes = subfigure.subplots(1, 8)
    for ax, mean in zip(sample_axes, means, strict=True):
        image = ax.imshow(mean.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.axis("off")
    subfigure.suptitle(f"{name}: E[v | h] after {num_sample_steps} steps from noise")
subfigure.colorbar(image, ax=sample_axes, label="P(pixel on)")
chain_axes = chain_row.subplots(1, 16)
for ax, sample in zip(chain_axes, chains.samples[0], strict=True):  # the first PCD-1 chain
    ax.imshow(sample.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
    ax.axis("off")
chain_row.suptitle(f"one PCD-1 chain, every {record_interval} steps (black: pixel on)");""",
    ),
    (
        "md",
        """## 4. The bias of CD-k, against the exact gradient

With $\\log Z$ exact, so is the likelihood gradient: `jax.grad` of
$-\\frac1n\\sum_i f(v_i) + \\log Z$ over the training set. The *expected* CD-k gradient is
estimated by running the CD loss on the training set repeated many times (one chain
per copy). At the parameters CD-1 trained, the CD-1 gradient is a fraction of the size
of the likelihood gradient and points elsewhere: CD-1 has nearly stopped, maximum
likelihood has not. The chains, one step from the data, have not reached $p_\\theta$, and
CD-1 heads to a different point than maximum likelihood (Carreira-Perpiñán & Hinton
2005). As $k$ grows the bias vanishes, down to the
Monte-Carlo floor, measured by replacing the negatives with *exact* samples of the RBM
— drawn by enumerating the $2^H$ hidden configurations,
$p(h) \\propto \\exp\\big(c^\\top h + \\sum_i \\operatorname{softplus}(b_i + (W h)_i)\\big)$,
then $v \\sim p(v \\mid h)$.""",
    ),
    (
        "code",
        """def exact_rbm_samples(rng_key, params, num_samples):
    \"\"\"Exact samples of a binary RBM, h by enumerating its marginal, then v | h; and log Z.\"\"\"
    layers = params["params"]
    hidden_states = all_binary_states(layers["weights"].shape[1])
    visible_logits = layers["visible_bias"] + hidden_states @ layers["weights"].T
    hidden_logits = hidden_states @ layers["hidden_bias"] + jnp.sum(
        jax.nn.softplus(visible_logits), axis=-1
    )
    hidden_key, visible_key = jax.random.split(rng_key)
    # Inverse-CDF sampling: one search per sample, not a (samples × 2^H) Gumbel array.
    cumulative = jnp.cumsum(jax.nn.softmax(hidden_logits))
    indices = jnp.searchsorted(cumulative, jax.random.uniform(hidden_key, (num_samples,)))
    hidden = hidden_states[jnp.minimum(indices, hidden_states.shape[0] - 1)]
    means = rbm.visible_mean(params, hidden)
    visible = (jax.random.uniform(visible_key, means.shape) < means).astype(jnp.float32)
    return visible, jax.nn.logsumexp(hidden_logits)


def flatten(tree):
    return jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(tree)])


batched_logdensity = jax.vmap(rbm.apply, in_axes=(None, 0))
exact_nll = lambda params: (
    -jnp.mean(batched_logdensity(params, train)) + rbm.exact_log_partition(params)
)
exact_gradient = flatten(jax.grad(exact_nll)(cd_params))
repeated_train = jnp.tile(train, (NUM_DATA_REPEATS, 1))


def compare(gradient):
    \"\"\"Relative error, cosine and norm ratio of a gradient against the exact one.\"\"\"
    exact_norm, norm = jnp.linalg.norm(exact_gradient), jnp.linalg.norm(gradient)
    relative_error = jnp.linalg.norm(gradient - exact_gradient) / exact_norm
    cosine = gradient @ exact_gradient / (norm * exact_norm)
    return float(relative_error), float(cosine), float(norm / exact_norm)


rows = {}
for num_steps in CD_STEPS:
    cd_loss = ej.losses.contrastive_divergence(
        rbm.apply, sampler=rbm.block_gibbs, num_steps=num_steps
    )
    cd_gradient = jax.grad(cd_loss)(cd_params, jax.random.key(10 + num_steps), repeated_train)
    rows[f"CD-{num_steps}"] = compare(flatten(cd_gradient))

negatives, log_partition_by_sampling = exact_rbm_samples(
    jax.random.key(11), cd_params, repeated_train.shape[0]
)
exact_sample_surrogate = lambda params: (
    jnp.mean(batched_logdensity(params, negatives))
    - jnp.mean(batched_logdensity(params, repeated_train))
)
rows["exact samples"] = compare(flatten(jax.grad(exact_sample_surrogate)(cd_params)))
print(
    f"log Z inside the exact sampler {float(log_partition_by_sampling):.4f}, "
    f"exact_log_partition {float(rbm.exact_log_partition(cd_params)):.4f}"
)
print(f"{repeated_train.shape[0]} chains, at the CD-1 parameters, against the exact gradient:")
print(f"{'negatives':<16}{'relative error':>16}{'cosine':>10}{'norm ratio':>12}")
for name, (relative_error, cosine, norm_ratio) in rows.items():
    print(f"{name:<16}{relative_error:>16.3f}{cosine:>10.3f}{norm_ratio:>12.3f}")
fig, ax = plt.subplots(figsize=(5, 3.4))
ax.loglog(CD_STEPS, [rows[f"CD-{k}"][0] for k in CD_STEPS], "o-", label="CD-k")
ax.axhline(rows["exact samples"][0], color="k", ls="--", label="exact samples")
ax.set(xlabel="k (block-Gibbs steps)", ylabel="‖g_CD − g_exact‖ / ‖g_exact‖")
ax.set_title("bias of the CD-k gradient")
ax.legend();""",
    ),
    (
        "md",
        """## 5. $\\log Z$ by annealed importance sampling, against the exact value

With more hidden units, $\\log Z$ can no longer be enumerated and the test likelihood
needs an estimate. Annealed importance sampling (Neal 2001; Salakhutdinov & Murray
2008) anneals chains from a normalised base $p_0$ to $e^f$ along
$f_\\beta = (1-\\beta)\\log p_0 + \\beta f$, $0 = \\beta_0 < \\dots < \\beta_T = 1$, with a
Gibbs sweep at each temperature, accumulating importance weights with
$\\mathbb{E}[w] = Z$ (`partition.annealed_importance_sampling`).

* Forward AIS is unbiased for $Z$, so by Jensen $\\mathbb{E}[\\log \\hat Z] \\le \\log Z$:
  a stochastic **lower** bound — which would *overestimate* a test log-likelihood.
* Reverse AIS (`partition.reverse_annealed_importance_sampling`), started from exact
  samples of the model and annealed back to $p_0$, is unbiased for $1/Z$: a stochastic
  **upper** bound (Burda, Grosse & Salakhutdinov 2015).

The estimate $\\log \\hat Z = \\log \\frac1n \\sum_i w_i$ pools $n$ chains, so its bias is
small next to its standard error once the effective sample size is large, and single
runs land on either side of $\\log Z$. Jensen applies chain by chain as well, and the
*average log-weights* bracket $\\log Z$ strictly in expectation with a visible gap:
$\\frac1n\\sum_i \\log w_i \\lesssim \\log Z \\lesssim -\\frac1n\\sum_i \\log \\tilde w_i$,
whose width (the sum of the KL divergences between the forward and reverse annealing
processes) shrinks to 0 as $T$ grows — bidirectional Monte Carlo (Grosse, Ghahramani &
Adams 2015). Bases: the base-rate model (a good base, Salakhutdinov & Murray 2008) and
uniform pixels (a poor one). The target is the PCD-trained RBM, whose exact $\\log Z$
we know.""",
    ),
    (
        "code",
        """logdensity_fn = lambda v: rbm.apply(pcd_params, v)
exact_log_partition = float(rbm.exact_log_partition(pcd_params))
model_samples, _ = exact_rbm_samples(jax.random.key(12), pcd_params, AIS_CHAINS)
uniform = partition.bernoulli_base(jnp.full(train.shape[1], 0.5))
bases = {"base rate": base_rate, "uniform": uniform}
print(f"exact log Z = {exact_log_partition:.3f}; {AIS_CHAINS} chains; errors against it:")
header = ["mean log w", "forward ± se", "ESS", "reverse ± se", "ESS", "-mean log w~"]
print(f"{'base':<10}{'T':>6}{header[0]:>12}{header[1]:>17}{header[2]:>7}", end="")
print(f"{header[3]:>17}{header[4]:>7}{header[5]:>14}")
curves = {name: [] for name in bases}
for name, base in bases.items():
    for num_temperatures in AIS_TEMPERATURES:
        forward = partition.annealed_importance_sampling(
            jax.random.key(13),
            logdensity_fn,
            base,
            num_chains=AIS_CHAINS,
            num_temperatures=num_temperatures,
        )
        reverse = partition.reverse_annealed_importance_sampling(
            jax.random.key(14),
            logdensity_fn,
            base,
            model_samples,
            num_temperatures=num_temperatures,
        )
        errors = {
            "lower": float(jnp.mean(forward.log_weights)) - exact_log_partition,
            "forward": float(forward.log_partition) - exact_log_partition,
            "reverse": float(reverse.log_partition) - exact_log_partition,
            "upper": -float(jnp.mean(reverse.log_weights)) - exact_log_partition,
        }
        curves[name].append(errors)
        if name == "base rate":
            longest_forward = forward
        print(
            f"{name:<10}{num_temperatures:>6}{errors['lower']:>+12.3f}"
            f"{errors['forward']:>+10.3f} ± {float(forward.standard_error):.3f}"
            f"{float(forward.ess):>7.1f}"
            f"{errors['reverse']:>+10.3f} ± {float(reverse.standard_error):.3f}"
            f"{float(reverse.ess):>7.1f}{errors['upper']:>+14.3f}"
        )

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
styles = {
    "lower": ("mean log w (lower)", "v:"),
    "forward": ("forward AIS", "o-"),
    "reverse": ("reverse AIS", "s-"),
    "upper": ("−mean log w̃ (upper)", "^:"),
}
for ax, (name, rows_by_temperature) in zip(axes, curves.items(), strict=True):
    for key_name, (label, style) in styles.items():
        values = [row[key_name] for row in rows_by_temperature]
        ax.plot(AIS_TEMPERATURES, values, style, label=label)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set(xscale="log", xlabel="temperatures T", ylabel="estimate − log Z")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_title(f"base: {name}")
    ax.legend(fontsize=7)
ais_test = float(jnp.mean(rbm.log_likelihood(pcd_params, test, longest_forward.log_partition)))
print(
    f"test log-likelihood with the forward AIS log Z (base rate, T = {AIS_TEMPERATURES[-1]}): "
    f"{ais_test:.3f}; with the exact log Z {pcd_history[-1]:.3f}"
)""",
    ),
    (
        "md",
        """## Takeaways

* Minimising $\\mathrm{KL}(\\hat p\\,\\|\\,p_\\theta)$ is maximum likelihood; its gradient is
  a data term minus a model term, because
  $\\nabla_\\theta \\log Z = \\mathbb{E}_{p_\\theta}[\\nabla_\\theta f_\\theta]$
  (checked to float precision by enumeration).
* In an RBM both conditionals factorise, so block Gibbs updates whole layers; like
  single-site Gibbs it converges to the exact $p(v)$, down to the Monte-Carlo floor.
* CD-1 and PCD-1 both train a digits RBM far above the base rate. But the CD-k
  gradient is biased: at the CD-1 parameters it is far from the likelihood gradient, and
  only long chains (about 100 block-Gibbs steps here) bring it down to the Monte-Carlo
  floor.
* AIS estimates $\\log Z$ where enumeration is impossible. Forward and reverse AIS bound
  it from below and above in expectation, their average log-weights visibly so, and a
  good base (the data's pixel means) needs far fewer temperatures than a uniform one.

References: Hinton (2002), *Training products of experts by minimizing contrastive
divergence*; Carreira-Perpiñán & Hinton (2005), *On contrastive divergence learning*;
Tieleman (2008), *Training RBMs using approximations to the likelihood gradient*;
Hinton (2010), *A practical guide to training RBMs*; Neal (2001), *Annealed importance
sampling*; Salakhutdinov & Murray (2008), *On the quantitative analysis of deep belief
networks*; Burda, Grosse & Salakhutdinov (2015), *Accurate and conservative estimates
of MRF log-likelihood using reverse annealing*; Grosse, Ghahramani & Adams (2015),
*Sandwiching the marginal likelihood using bidirectional Monte Carlo*.""",
    ),
]


def main() -> None:
    write_notebook(CELLS, Path(__file__).with_name("03_contrastive_divergence.ipynb"))


if __name__ == "__main__":
    main()

"""Writes notebooks/02_score_matching.ipynb (unexecuted) from the cells below."""

from pathlib import Path

from _build import write_notebook

CELLS = [
    (
        "md",
        """# 02 — Learning by score matching (§11.2.2–11.2.3)

Maximum likelihood needs $\\nabla_\\theta \\log Z(\\theta)$, i.e. samples from the model.
Score matching avoids $Z$ altogether: it fits the model's score
$s_\\theta(x) = \\nabla_x f_\\theta(x)$ (eq. 11.1, free of $Z$) to the data's score by
minimising the Fisher divergence, which integration by parts turns into a
data-only objective (eq. 11.2):

$$\\mathbb{E}_{p_{\\text{data}}}\\big[\\|s_\\theta(x)\\|^2
+ 2\\,\\mathrm{tr}\\,\\nabla_x s_\\theta(x)\\big].$$

**Normalisation.** The lecture's objective is twice Hyvärinen's
$J(\\theta) = \\mathbb{E}[\\tfrac12\\|s_\\theta\\|^2 + \\mathrm{tr}\\,\\nabla_x s_\\theta]$; the
minimisers agree. `ej.losses` uses Hyvärinen's scale, on which exact, sliced and
denoising score matching all equal ½ · Fisher divergence + a constant.

Set `EBM_JAX_FAST=1` to run everything at toy sizes (the test suite does).""",
    ),
    (
        "code",
        """import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import ebm_jax as ej

FAST = os.environ.get("EBM_JAX_FAST", "0") == "1"
plt.rcParams.update({"figure.dpi": 80, "figure.constrained_layout.use": True})
NUM_TRAIN_STEPS = 200 if FAST else 4000
key = jax.random.key(0)""",
    ),
    (
        "md",
        """## The Jacobian trace: exact, Hutchinson and Hutch++

$\\mathrm{tr}\\,\\nabla_x s$ needs $d$ Jacobian-vector products exactly
(`ej.trace.exact_divergence`, vectorised). Hutchinson's estimator uses probes with
$\\mathbb{E}[vv^\\top] = I$ (Rademacher or standard Gaussian — not unit vectors):
$\\mathbb{E}[v^\\top A v] = \\mathrm{tr}\\,A$ at one JVP per probe. For symmetric $A$ its
variance is $2\\sum_{i\\ne j}A_{ij}^2$ (Rademacher) or $2\\|A\\|_F^2$ (Gaussian);
Hutch++ (Meyer et al. 2021) spends a third of its products on a low-rank sketch and
removes the top of the spectrum from the variance.""",
    ),
    (
        "code",
        """dim = 20
eigenvalues = 1.0 / jnp.arange(1, dim + 1) ** 2  # a decaying spectrum
rotation, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(1), (dim, dim)))
hessian = (rotation * eigenvalues) @ rotation.T
score_fn = lambda x: -hessian @ x  # the score of N(0, A⁻¹): its Jacobian is -A
x = jnp.ones(dim)

exact = ej.trace.exact_divergence(score_fn, x)
keys = jax.random.split(jax.random.key(2), 2000)
estimates = {
    "Hutchinson, Rademacher": jax.vmap(
        lambda k: ej.trace.hutchinson_divergence(k, score_fn, x, num_probes=6)
    )(keys),
    "Hutchinson, Gaussian": jax.vmap(
        lambda k: ej.trace.hutchinson_divergence(k, score_fn, x, num_probes=6, probe="gaussian")
    )(keys),
    "Hutch++": jax.vmap(lambda k: ej.trace.hutchpp_divergence(k, score_fn, x, num_matvecs=6))(keys),
}
off_diagonal = jnp.sum(hessian**2) - jnp.sum(jnp.diag(hessian) ** 2)
print(f"exact trace {float(exact):.4f}")
print(f"Rademacher variance per probe: formula {float(2 * off_diagonal):.4f}")
fig, ax = plt.subplots(figsize=(6, 3))
for name, values in estimates.items():
    print(
        f"{name:<24} mean {float(values.mean()):+.4f}  std {float(values.std()):.4f}  (6 JVPs each)"
    )
    ax.hist(np.asarray(values), bins=60, histtype="step", label=name)
ax.axvline(float(exact), color="k", ls="--", label="exact trace")
ax.set(xlabel="estimate of tr ∇s", ylabel=f"count (of {len(keys)} estimates)")
ax.legend(fontsize=8)
ax.set_title("estimates of tr ∇s with 6 JVPs");""",
    ),
    (
        "md",
        """## A closed form: score matching a Gaussian

For the model $f(x) = -\\tfrac12 (x-\\mu)^\\top P (x-\\mu)$, $J$ is quadratic in $P$ and its
minimiser is the inverse *sample* covariance — the same answer as maximum likelihood.
Denoising score matching at noise $\\sigma$ instead fits the smoothed data, whose
covariance is $S + \\sigma^2 I$.""",
    ),
    (
        "code",
        """def gaussian_logdensity(params, x):
    centred = x - params["mean"]
    precision = params["factor"] @ params["factor"].T
    return -0.5 * centred @ precision @ centred


true_covariance = jnp.array([[2.0, 0.8], [0.8, 1.0]])
data = jax.random.multivariate_normal(jax.random.key(3), jnp.zeros(2), true_covariance, (4000,))
sample_covariance = jnp.cov(data.T, bias=True)
params = {"mean": jnp.zeros(2), "factor": jnp.eye(2)}
sigma = 0.5
results = {}
for name, loss_fn in {
    "exact SM": ej.losses.score_matching(gaussian_logdensity),
    "SSM-VR (4 probes)": ej.losses.sliced_score_matching(
        gaussian_logdensity, num_probes=4, variance_reduction=True
    ),
    f"DSM σ={sigma}": ej.losses.denoising_score_matching(
        ej.score(gaussian_logdensity, argnum=1), sigma
    ),
}.items():
    fit = ej.training.fit(
        key,
        loss_fn,
        params,
        # A decaying step, so that the last iterate is the minimiser over all the data and
        # not over the last few batches.
        optax.adam(optax.cosine_decay_schedule(3e-2, NUM_TRAIN_STEPS)),
        data,
        num_steps=NUM_TRAIN_STEPS,
        batch_size=500,
        progress=False,
    )
    results[name] = jnp.linalg.inv(fit.params["factor"] @ fit.params["factor"].T)
print("sample covariance S\\n", np.round(sample_covariance, 3))
print("S + σ²I\\n", np.round(sample_covariance + sigma**2 * jnp.eye(2), 3))
for name, covariance in results.items():
    print(f"{name}: learned covariance P⁻¹\\n", np.round(covariance, 3))""",
    ),
    (
        "md",
        """## Learning a 2-D EBM with sliced score matching

An MLP log-density with smooth activations (second derivatives are needed) and a
Gaussian envelope, trained on two moons by SSM with `ej.training.fit`. In 2-D, $\\log Z$
is a quadrature away, so the learned model gets an exact test NLL.""",
    ),
    (
        "code",
        """sampler = ej.data.TOY_DATASETS["two_moons"]
train, test = sampler(jax.random.key(4), 20_000), sampler(jax.random.key(5), 2_000)
model = ej.models.MLPLogDensity((64, 64), envelope_scale=4.0)
params = model.init(jax.random.key(6), jnp.zeros(2))
fit = ej.training.fit(
    jax.random.key(7),
    ej.losses.sliced_score_matching(model.apply),
    params,
    optax.adam(optax.cosine_decay_schedule(2e-3, NUM_TRAIN_STEPS)),
    train,
    num_steps=NUM_TRAIN_STEPS,
    batch_size=256,
    progress=False,
)
logdensity_fn = lambda x: model.apply(fit.params, x)
evaluation = ej.diagnostics.nll_2d_quadrature(
    logdensity_fn, test, ej.data.TOY_BOUNDS, resolution=256
)
log_partition_error = float(evaluation.log_partition_error)
print(f"test NLL {float(evaluation.nll):.3f} nats (log Z error ≈ {log_partition_error:.1e})")

(x_min, x_max), (y_min, y_max) = ej.data.TOY_BOUNDS
xx, yy = jnp.meshgrid(jnp.linspace(x_min, x_max, 200), jnp.linspace(y_min, y_max, 200))
grid = jnp.stack([xx.ravel(), yy.ravel()], -1)
density = jnp.exp(jax.vmap(logdensity_fn)(grid) - evaluation.log_partition).reshape(xx.shape)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
axes[0].plot(fit.losses)
axes[0].set(xlabel="training step", ylabel="SSM loss (per batch)", title="sliced score matching")
*_, mesh = axes[1].hist2d(*np.asarray(train).T, bins=100, range=ej.data.TOY_BOUNDS)
fig.colorbar(mesh, ax=axes[1], label="training points per bin")
axes[1].set_title(f"data: {train.shape[0]} points")
image = axes[2].imshow(density, origin="lower", extent=[x_min, x_max, y_min, y_max])
fig.colorbar(image, ax=axes[2], label="learned density p_θ(x)")
axes[2].set_title("learned density (log Z by quadrature)")
for ax in axes[1:]:
    ax.set(xlabel="x₁", ylabel="x₂")""",
    ),
    (
        "md",
        """## Why score matching struggles (1): cost against dimension

The exact trace costs $d$ JVPs, so exact score matching grows $\\propto d$, while a sliced
step costs a constant number of passes. (Timings here are illustrative;
`benchmarks/score_matching.py` measures them properly, side by side.)""",
    ),
    (
        "code",
        """def seconds_per_step(loss_fn, params, dim, repeats=5):
    \"\"\"The fastest of a few compiled steps: the least disturbed by other work.\"\"\"
    batch = jax.random.normal(jax.random.key(8), (64, dim))
    step = jax.jit(jax.value_and_grad(loss_fn))
    jax.block_until_ready(step(params, key, batch))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(params, key, batch))
        times.append(time.perf_counter() - start)
    return min(times)


dims = (2, 16, 64) if FAST else (2, 16, 64, 256, 784)
timings = {"exact": [], "sliced": []}
for dim in dims:
    model_d = ej.models.MLPLogDensity((128, 128))
    params_d = model_d.init(key, jnp.zeros(dim))
    timings["exact"].append(
        seconds_per_step(ej.losses.score_matching(model_d.apply), params_d, dim)
    )
    timings["sliced"].append(
        seconds_per_step(ej.losses.sliced_score_matching(model_d.apply), params_d, dim)
    )
fig, ax = plt.subplots(figsize=(5, 3.2))
for name, values in timings.items():
    ax.loglog(dims, np.asarray(values) * 1e3, "o-", label=name)
ax.set_xticks(dims, [str(dim) for dim in dims])
ax.set_xticks([], minor=True)
ax.set(xlabel="dimension d", ylabel="ms per training step", title="score matching: cost of a step")
ax.legend();""",
    ),
    (
        "md",
        """## Why score matching struggles (2): modes, weights and slow Langevin mixing

Far from the data the Fisher divergence puts no weight, and between separated modes the
score of a mixture barely depends on the mixing weights: $\\pi N(-\\mu, I) + (1-\\pi)
N(\\mu, I)$ has, near each mode, the score of that mode alone. So score matching cannot
see the weights, and Langevin dynamics driven by the exact score — started from a
uniform spread — keeps whatever proportions it started with instead of $\\pi$
(Song & Ermon 2019, §3). Both failures are what noise perturbation fixes (diffusion).""",
    ),
    (
        "code",
        """weights_a, weights_b = jnp.array([0.2, 0.8]), jnp.array([0.5, 0.5])
means = jnp.array([[-5.0, -5.0], [5.0, 5.0]])
mixture_a = ej.densities.gaussian_mixture(weights_a, means, jnp.ones(2))
mixture_b = ej.densities.gaussian_mixture(weights_b, means, jnp.ones(2))
samples_a = mixture_a.sample(jax.random.key(9), 5000)
fisher = 0.5 * jnp.mean(
    jnp.sum(
        (jax.vmap(mixture_a.score_fn)(samples_a) - jax.vmap(mixture_b.score_fn)(samples_a)) ** 2, -1
    )
)
kl = jnp.mean(
    jax.vmap(mixture_a.logdensity_fn)(samples_a) - jax.vmap(mixture_b.logdensity_fn)(samples_a)
)
print(f"weights 0.2/0.8 vs 0.5/0.5:  ½ Fisher divergence {float(fisher):.2e}   KL {float(kl):.3f}")

initial = jax.random.uniform(jax.random.key(10), (2000, 2), minval=-8, maxval=8)
langevin = ej.samplers.ula(mixture_a.logdensity_fn, 0.1)
result = ej.run_chains(jax.random.key(11), langevin, initial, 200 if FAST else 2000, thin=50)
final = result.samples[:, -1]
print(
    f"fraction near the 0.2-weight mode: Langevin {float(jnp.mean(final[:, 0] < 0)):.3f},"
    f" exact samples {float(jnp.mean(samples_a[:, 0] < 0)):.3f}"
)""",
    ),
    (
        "md",
        """## Takeaways

* Score matching (eq. 11.2) never touches $Z$; its minimiser for a Gaussian model is the
  inverse sample covariance. Its trace term costs $d$ JVPs exactly, one per probe sliced.
* Sliced score matching matches exact score matching at a cost independent of $d$.
* The objective is blind where the data has no mass and to the weights of separated
  modes, and Langevin sampling cannot fix the weights either — the motivation for
  noise-perturbed scores and diffusion.""",
    ),
]


def main() -> None:
    write_notebook(CELLS, Path(__file__).with_name("02_score_matching.ipynb"))


if __name__ == "__main__":
    main()

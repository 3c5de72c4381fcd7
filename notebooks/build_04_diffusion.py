"""Writes notebooks/04_diffusion.ipynb (unexecuted) from the cells below."""

from pathlib import Path

from _build import write_notebook

CELLS = [
    (
        "md",
        """# 04 — From energy-based models to diffusion (§11.2.4–11.2.5)

Notebook 02 ended with two failures of score matching: the objective is blind where the
data has no mass, and Langevin dynamics driven by the exact score cannot move mass
between separated modes. The lecture's fix is to *perturb* the data with Gaussian noise
and learn the score of every perturbed distribution with one noise-conditional network.
This notebook follows the derivation step by step, with every claim checked numerically:

1. the perturbation $x' = \\sqrt{1-\\beta}\\,x + \\sqrt\\beta\\,\\varepsilon$ (eqs. 11.4–11.6),
   its forward chain and closed-form marginals, and the noise schedules;
2. Tweedie's formula
   $\\mathbb{E}[x \\mid x'] = (x' + \\beta\\nabla\\log p_\\beta(x'))/\\sqrt{1-\\beta}$
   (eqs. 11.7–11.13), against a Monte-Carlo posterior mean;
3. why perturbation helps: the perturbed scores see the mixture weights and connect the modes;
4. the denoising objective (11.16) and its equivalence with (11.15) (eqs. 11.17–11.21),
   the $\\varepsilon$-prediction identity and the weightings;
5. a noise-conditional score network trained by (11.16) and sampled four ways (ancestral,
   annealed Langevin, predictor-corrector, probability-flow ODE), with exact-score
   references and the probability-flow log-likelihood;
6. the energy view: a noise-conditional *energy*, sampled by annealed MALA;
7. few-step samplers (DDIM, DPM-Solver++) and classifier-free guidance.

The running example is the lecture's kind of failure case, the mixture
$p = 0.8\\,N((5,5), I) + 0.2\\,N((-5,-5), I)$, whose perturbed densities are known in closed
form; the trained networks use the eight-Gaussians toy.

Set `EBM_JAX_FAST=1` to run everything at toy sizes (the test suite does).""",
    ),
    (
        "code",
        """import functools
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import ebm_jax as ej
from ebm_jax.diffusion import ode
from ebm_jax.diffusion import samplers as diffusion_samplers

FAST = os.environ.get("EBM_JAX_FAST", "0") == "1"
plt.rcParams.update({"figure.dpi": 80, "figure.constrained_layout.use": True})
NUM_SAMPLES = 1_000 if FAST else 20_000  # draws from the mixture and its exact-score samplers
NUM_NETWORK_SAMPLES = 256 if FAST else 2_000  # draws from the trained networks
NUM_PRIOR_SAMPLES = 200_000 if FAST else 2_000_000  # for Monte-Carlo posterior means
NUM_TRAIN_STEPS = 150 if FAST else 4_000
BATCH_SIZE = 64 if FAST else 256
NUM_SAMPLER_LEVELS = 50 if FAST else 200
LANGEVIN_STEPS_PER_LEVEL = 10
NUM_ODE_STEPS = 16 if FAST else 64
NUM_LIKELIHOOD_STEPS = 32 if FAST else 64
NUM_LIKELIHOOD_POINTS = 200 if FAST else 1_000

WEIGHTS = jnp.array([0.8, 0.2])
MEANS = jnp.array([[5.0, 5.0], [-5.0, -5.0]])
data_distribution = ej.densities.gaussian_mixture(WEIGHTS, MEANS, 1.0)
# log p_β(x') of the mixture, exactly, for any β (eq. 11.6 in closed form); its gradient in x'
# is the perfect noise-conditional score S*(x', β).
perturbed_logdensity = ej.diffusion.perturbed_gaussian_mixture_logdensity(WEIGHTS, MEANS, 1.0)
exact_score = jax.grad(perturbed_logdensity)
# Batched over samples, β traced: one compilation serves every level.
batched_exact_score = jax.jit(jax.vmap(exact_score, in_axes=(0, None)))
batched_perturbed_logdensity = jax.jit(jax.vmap(perturbed_logdensity, in_axes=(0, None)))
noise_schedule = ej.diffusion.linear_schedule(1000)


def heavy_side_fraction(samples):
    \"\"\"Fraction of samples on the (5, 5) side of the line x₁ + x₂ = 0: the weight 0.8.\"\"\"
    return float(jnp.mean(jnp.sum(samples, axis=-1) > 0))


def heavy_side_probability(beta):
    \"\"\"P(x₁ + x₂ > 0) under p_β: along (1, 1)/√2 each component is N(±5√2·√(1-β), 1).\"\"\"
    shift = 5.0 * np.sqrt(2.0) * np.sqrt(1.0 - beta)
    cdf = jax.scipy.stats.norm.cdf
    return float(WEIGHTS[0] * cdf(shift) + WEIGHTS[1] * cdf(-shift))""",
    ),
    (
        "md",
        """## 1. Perturbation and the forward chain (eqs. 11.4–11.6)

One step of the lecture's Markov chain is the Gaussian transition (11.4)

$$p(x' \\mid x) = N\\big(\\sqrt{1-\\beta}\\,x,\\; \\beta I\\big), \\qquad
x' = \\sqrt{1-\\beta}\\,x + \\sqrt\\beta\\,\\varepsilon,\\quad \\varepsilon \\sim N(0, I)
\\quad (11.5),$$

and the perturbed density is the convolution $p_\\beta(x') = \\int p(x)\\,p_\\beta(x' \\mid x)\\,dx$
(11.6). The factor $\\sqrt{1-\\beta}$ makes the step *variance preserving*: unit-covariance
data stays unit-covariance. Steps $\\beta_1, \\dots, \\beta_T$ compose to the same one-shot
form,

$$x_t = \\sqrt{\\bar\\alpha_t}\\,x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\varepsilon, \\qquad
\\bar\\alpha_t = \\prod_{s \\le t}(1-\\beta_s),$$

so step $t$ of the chain (`ej.diffusion.forward_chain`) has the law of one perturbation
(`ej.diffusion.perturb`) at the *marginal* level $\\bar\\beta_t = 1 - \\bar\\alpha_t$. For a
Gaussian mixture the convolution is again a mixture,
$p_\\beta = \\sum_k w_k N(\\sqrt{1-\\beta}\\,\\mu_k, (1-\\beta)\\Sigma_k + \\beta I)$
(`ej.diffusion.perturbed_gaussian_mixture`). Below, paths of the
mixture, run step by step with the linear schedule of Ho et al. (2020), against one-shot
draws and the closed form: the mean of $x_{t,1}$, its variance, and the fraction on the
heavy side, which drifts from 0.8 to ½ as the modes merge.""",
    ),
    (
        "code",
        """data_samples = data_distribution.sample(jax.random.key(1), NUM_PRIOR_SAMPLES)
x0 = data_samples[:NUM_SAMPLES]
chain_keys = jax.random.split(jax.random.key(2), NUM_SAMPLES)
forward_chains = jax.jit(jax.vmap(ej.diffusion.forward_chain, in_axes=(0, 0, None)))
paths = forward_chains(chain_keys, x0, noise_schedule)
snapshot_steps = (10, 100, 300, 1000)

print(f"{NUM_SAMPLES} paths of the linear schedule (T = 1000); x₁ = first coordinate")
header = f"{'t':>5}{'β̄_t':>9}  {'E[x₁]: chain':>16}{'one-shot':>9}{'exact':>8}"
print(header + f"  {'Var[x₁]: chain':>15}{'exact':>7}  {'heavy side: chain':>18}{'exact':>7}")
fig, axes = plt.subplots(1, 5, figsize=(17, 3.3))
grid_1d = np.linspace(-8, 8, 120)
grid = jnp.asarray(np.stack(np.meshgrid(grid_1d, grid_1d), axis=-1).reshape(-1, 2), jnp.float32)
for ax, step in zip(axes, snapshot_steps, strict=False):
    beta_bar = float(noise_schedule.marginal_betas[step - 1])
    chain = paths[:, step - 1]
    one_shot = ej.diffusion.perturb(jax.random.key(step), x0, beta_bar)
    exact = ej.diffusion.perturbed_gaussian_mixture(WEIGHTS, MEANS, 1.0, beta_bar)
    standard_error = float(jnp.std(chain[:, 0])) / np.sqrt(NUM_SAMPLES)
    print(
        f"{step:>5}{beta_bar:>9.4f}  {float(chain[:, 0].mean()):>+9.3f} ± {standard_error:.3f}"
        f"{float(one_shot[:, 0].mean()):>+9.3f}{float(exact.mean[0]):>+8.3f}"
        f"  {float(chain[:, 0].var()):>15.3f}{float(exact.covariance[0, 0]):>7.3f}"
        f"  {heavy_side_fraction(chain):>18.3f}{heavy_side_probability(beta_bar):>7.3f}"
    )
    density = np.exp(np.asarray(batched_perturbed_logdensity(grid, beta_bar))).reshape(120, 120)
    ax.contour(grid_1d, grid_1d, density, levels=6, colors="k", linewidths=0.6)
    ax.scatter(*np.asarray(chain[:500]).T, s=2, alpha=0.5, label="chain x_t")
    ax.set(title=f"t = {step} (β̄ = {beta_bar:.3f})", xlim=(-8, 8), ylim=(-8, 8))
    ax.set(xlabel="x₁", ylabel="x₂")
    ax.set_aspect("equal")
axes[0].plot([], [], "k-", lw=0.6, label="closed-form p_β̄")
axes[0].legend(fontsize=7, loc="upper left", markerscale=3)

cosine = ej.diffusion.cosine_schedule(1000)
steps = np.arange(1, 1001)
for name, schedule in (("linear", noise_schedule), ("cosine", cosine)):
    alphas_cumprod = np.asarray(schedule.alphas_cumprod, dtype=np.float64)
    axes[4].plot(steps, alphas_cumprod, label=f"{name}: ᾱ_t")
    half = int(np.argmax(alphas_cumprod < 0.5)) + 1
    print(
        f"{name:>6} schedule: ᾱ_T = {alphas_cumprod[-1]:.1e}, ᾱ_t < ½ from t = {half}, "
        f"{np.mean(alphas_cumprod < 0.01):.0%} of the steps with ᾱ_t < 0.01 (almost pure noise)"
    )
axes[4].set(xlabel="step t", ylabel="ᾱ_t", title="signal kept, ᾱ_t = 1 − β̄_t")
axes[4].legend(fontsize=8);""",
    ),
    (
        "md",
        """The chain's marginals match the one-shot draws and the closed form (the one-shot
draws share the clean $x_0$ with the chain, so the two move together), including the
heavy-side fraction as the two modes slide towards each other and merge. The schedules
differ in *where* they spend their steps: the linear one destroys the signal early and
spends the last third of its steps on nearly pure noise, while the cosine schedule
(Nichol & Dhariwal 2021) spreads its steps more evenly in signal-to-noise ratio.

## 2. Tweedie's formula (eqs. 11.7–11.13)

Differentiating (11.6) under the integral and dividing by $p_\\beta(x')$ turns the perturbed
score into a posterior expectation (11.7–11.10); with the Gaussian transition (11.11),

$$\\nabla_{x'}\\log p_\\beta(x')
= \\mathbb{E}_{x \\mid x'}\\Big[-\\frac{x' - \\sqrt{1-\\beta}\\,x}{\\beta}\\Big]
\\;\\Longrightarrow\\;
x' + \\beta\\,\\nabla_{x'}\\log p_\\beta(x') = \\sqrt{1-\\beta}\\;\\mathbb{E}[x \\mid x']
\\quad (11.12\\text{–}11.13).$$

The score of the *perturbed* density alone gives the optimal denoiser
(`ej.diffusion.tweedie_mean`); nothing else about $p$ is needed. The check: at $\\beta = ½$,
the Tweedie mean from the exact perturbed score of the mixture against a Monte-Carlo
posterior mean, by self-normalised importance sampling with prior draws $x_i \\sim p$ and
weights $p_\\beta(x' \\mid x_i)$, at points $x' = s\\,(1, 1)$ along the diagonal.""",
    ),
    (
        "code",
        """beta = 0.5
prior_samples = data_samples[NUM_SAMPLES:]  # independent of the queries below
# One compiled denoiser for every level (β traced) and every batch size.
denoise = jax.jit(
    jax.vmap(
        lambda x_prime, level: ej.diffusion.tweedie_mean(exact_score, x_prime, level),
        in_axes=(0, None),
    )
)


@jax.jit
@jax.vmap
def monte_carlo_posterior_mean(x_prime):
    \"\"\"E[x | x'] by self-normalised importance sampling, with its standard error and ESS.\"\"\"
    log_weights = -jnp.sum((x_prime - jnp.sqrt(1 - beta) * prior_samples) ** 2, -1) / (2 * beta)
    weights = jax.nn.softmax(log_weights)
    mean = weights @ prior_samples
    standard_error = jnp.sqrt(weights**2 @ (prior_samples - mean) ** 2)  # delta method
    return mean, standard_error, 1.0 / jnp.sum(weights**2)


positions = jnp.array([-6.0, -3.5, -1.0, 0.0, 1.0, 3.5, 6.0])
queries = positions[:, None] * jnp.ones(2)
tweedie = denoise(queries, beta)
monte_carlo, standard_errors, ess = monte_carlo_posterior_mean(queries)
print(f"β = {beta}, {NUM_PRIOR_SAMPLES} prior draws; first coordinate of E[x | x′] shown")
print(f"{'x′ = s(1,1), s':>15}{'Tweedie':>10}{'Monte Carlo':>20}{'ESS':>9}{'max |z|':>9}")
rows = zip(positions, tweedie, monte_carlo, standard_errors, ess, strict=True)
for s, mean, estimate, error, size in rows:
    z = float(jnp.max(jnp.abs(mean - estimate) / error))
    print(f"{float(s):>15.1f}{float(mean[0]):>+10.3f}", end="")
    print(f"{float(estimate[0]):>+12.3f} ± {float(error[0]):.3f}{float(size):>9.0f}{z:>9.2f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
# Batches of NUM_SAMPLES points throughout, so the compiled programs are reused.
noisy = ej.diffusion.perturb(jax.random.key(4), x0, beta)  # exact draws of p_β
denoised = denoise(noisy, beta)[:300]
noisy = noisy[:300]
axes[0].scatter(*np.asarray(x0[300:800]).T, s=2, c="0.7", label="data x")
axes[0].quiver(
    *np.asarray(noisy).T,
    *np.asarray(denoised - noisy).T,
    angles="xy",
    scale_units="xy",
    scale=1,
    width=0.003,
    alpha=0.5,
)
axes[0].scatter(*np.asarray(noisy).T, s=4, label="x′ at β = ½")
axes[0].set(title="x′ → E[x | x′] (Tweedie)", xlim=(-9, 9), ylim=(-9, 9))
axes[0].set(xlabel="x₁", ylabel="x₂")
axes[0].legend(fontsize=8, loc="upper left")
along_diagonal = np.linspace(-7, 7, NUM_SAMPLES)
diagonal = jnp.asarray(np.stack([along_diagonal, along_diagonal], -1), jnp.float32)
for level in (0.05, 0.5, 0.9, 0.99):
    denoised_first = np.asarray(denoise(diagonal, level)[:, 0])
    axes[1].plot(along_diagonal, denoised_first, label=f"β = {level}")
axes[1].set(xlabel="s, with x′ = s(1, 1)", ylabel="E[x₁ | x′]", title="the optimal denoiser")
axes[1].legend(fontsize=8);""",
    ),
    (
        "md",
        """Tweedie's mean agrees with the Monte-Carlo posterior mean to within a few standard
errors everywhere. Within one component $N(\\mu, I)$ the denoiser is linear,
$\\mathbb{E}[x \\mid x'] = \\sqrt{1-\\beta}\\,x' + \\beta\\mu$ (e.g. $-6.743$ at $s = -6$); between
the modes it is a soft step, an *average* of the two modes weighted by their posterior
probabilities. It is a posterior mean, not a sample: one Tweedie step from pure noise
lands near the data mean $(3, 3)$, between the modes, which is why samplers take many
small steps. At large $\\beta$ the denoiser returns nearly that mean whatever $x'$ is —
pulled to the heavy mode: the weights show.

## 3. Why perturbation helps: the noisy scores see the weights

Near each mode of $p$, the score of $0.8\\,N(\\mu_1, I) + 0.2\\,N(\\mu_2, I)$ is the score of
that component alone; the weights only enter in the gap, where $p$ has no mass. Score
matching (which averages over $p$) and Langevin dynamics (which follow the score locally)
are both blind to them: below, the Fisher divergence between the 0.8/0.2 mixture and the
0.5/0.5 one is 0 to float32 precision up to $\\beta = ½$, although their KL divergence is
0.19, and unadjusted Langevin with the exact score, started uniformly on $[-10, 10]^2$,
keeps the initial half-and-half split. At large $\\beta$ the perturbed components overlap,
the perturbed scores differ wherever the mass is, and annealed Langevin dynamics (Song &
Ermon 2019) through decreasing levels $\\bar\\beta_T \\to \\bar\\beta_1$ carries the mass to
the right modes (up to the small bias of an unadjusted chain, which pulls the weights
towards equal ones).""",
    ),
    (
        "code",
        """balanced_logdensity = ej.diffusion.perturbed_gaussian_mixture_logdensity(
    jnp.array([0.5, 0.5]), MEANS, 1.0
)
batched_balanced_score = jax.jit(jax.vmap(jax.grad(balanced_logdensity), in_axes=(0, None)))


@jax.jit
@functools.partial(jax.vmap, in_axes=(None, 0))
def divergences(rng_key, level):
    \"\"\"½ Fisher divergence and KL divergence of p_β from q_β, by exact draws of p_β.\"\"\"
    samples = ej.diffusion.perturb(rng_key, x0, level)
    difference = batched_exact_score(samples, level) - batched_balanced_score(samples, level)
    log_ratio = jax.vmap(lambda x: perturbed_logdensity(x, level) - balanced_logdensity(x, level))
    return 0.5 * jnp.mean(jnp.sum(difference**2, -1)), jnp.mean(log_ratio(samples))


levels = (1e-4, 0.1, 0.5, 0.9, 0.99)
fisher, kl = divergences(jax.random.key(5), jnp.array(levels))
print("p = 0.8/0.2 mixture, q = 0.5/0.5 mixture, both perturbed at level β:")
print(f"{'β':>8}{'½ E_p‖∇log p_β − ∇log q_β‖²':>30}{'KL(p_β ‖ q_β)':>16}")
for level, fisher_at, kl_at in zip(levels, fisher, kl, strict=True):
    print(f"{level:>8}{float(fisher_at):>30.2e}{float(kl_at):>16.3f}")

initial_uniform = jax.random.uniform(jax.random.key(6), (NUM_SAMPLES, 2), minval=-10, maxval=10)
num_langevin_steps = 200 if FAST else 2000
langevin = ej.samplers.ula(data_distribution.logdensity_fn, 0.1)
chains = ej.run_chains(
    jax.random.key(7), langevin, initial_uniform, num_langevin_steps, thin=num_langevin_steps
)
initial_noise = diffusion_samplers.initial_noise(jax.random.key(8), NUM_SAMPLES, (2,))
annealed = diffusion_samplers.annealed_langevin_sample(
    jax.random.key(9),
    exact_score,
    noise_schedule,
    initial_noise,
    step_size=1e-5,
    num_steps=NUM_SAMPLER_LEVELS,
    num_steps_per_level=LANGEVIN_STEPS_PER_LEVEL,
)
rows = {
    "uniform start on [-10, 10]²": initial_uniform,
    f"{num_langevin_steps} ULA steps on p (exact score)": chains.samples[:, -1],
    f"annealed Langevin on p_β ({annealed.num_function_evaluations} NFE)": annealed.samples,
}
standard_error = np.sqrt(0.8 * 0.2 / NUM_SAMPLES)
print(f"\\nfraction on the heavy side (exact 0.8; standard error {standard_error:.3f})")
for name, samples in rows.items():
    print(f"  {name:<42}{heavy_side_fraction(samples):.3f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
along_diagonal = np.linspace(-9, 9, NUM_SAMPLES)
diagonal = jnp.asarray(np.stack([along_diagonal, along_diagonal], -1), jnp.float32)
along = lambda scores: np.asarray(scores.sum(-1) / np.sqrt(2.0))  # the (1, 1)/√2 component
for level, color in ((1e-4, "C0"), (0.9, "C1"), (0.99, "C2")):
    heavy = along(batched_exact_score(diagonal, level))
    balanced = along(batched_balanced_score(diagonal, level))
    axes[0].plot(along_diagonal, heavy, color=color, label=f"β = {level}: 0.8/0.2")
    axes[0].plot(along_diagonal, balanced, "--", color=color, label="0.5/0.5")
axes[0].set(xlabel="s, with x′ = s(1, 1)", ylabel="score along (1,1)/√2", ylim=(-12, 12))
axes[0].set_title("perturbed scores: 0.8/0.2 (solid) and 0.5/0.5 (dashed)")
axes[0].legend(fontsize=7, ncol=3)
for name, samples in list(rows.items())[1:]:
    projections = np.asarray(samples.sum(-1) / np.sqrt(2.0))
    axes[1].hist(projections, bins=80, histtype="step", density=True, label=name)
axes[1].set(xlabel="(x₁ + x₂)/√2", ylabel="density", title="the heavy mode holds 0.8 of the mass")
axes[1].legend(fontsize=8);""",
    ),
    (
        "md",
        """## 4. The objective (11.16) and why it works (eqs. 11.15–11.21)

Parametrise the perturbed score by a noise-conditional network,
$S_w(x', \\beta) \\approx \\nabla_{x'}\\log p_\\beta(x')$. Tweedie (11.13) says what it should
satisfy, $x' + \\beta S_w(x', \\beta) = b$ with $b = \\sqrt{1-\\beta}\\,\\mathbb{E}[x \\mid x']$ —
the regression (11.15), whose model argument should read $S_w(x', \\beta)$: the network only
ever sees the perturbed sample. The posterior mean $b$ is unknown, so (11.16) regresses on
the clean sample instead:

$$\\min_w\\; \\mathbb{E}_\\beta\\,\\mathbb{E}_{x, x'}\\,
\\big\\|x' + \\beta S_w(x', \\beta) - \\sqrt{1-\\beta}\\,x\\big\\|^2 \\quad (11.16).$$

Adding and subtracting $b$ (11.18) and expanding the square gives (11.19) — a term that
measures the model, a term that does not depend on $w$ — plus a cross term. The lecture's
(11.20) writes that cross term as a *product* of two expectations; it is the expectation
of an inner product,
$2\\,\\mathbb{E}\\big[(x' + \\beta S_w - b)^\\top(b - \\sqrt{1-\\beta}\\,x)\\big]$, which vanishes
by the tower property (11.21): the first factor is a function of $x'$ alone and
$\\mathbb{E}[b - \\sqrt{1-\\beta}\\,x \\mid x'] = 0$. So (11.16) and (11.15) have the same
minimiser, the true perturbed score. Below, at $\\beta = 0.3$ and with a deliberately
imperfect model — the score of the Gaussian with $p_\\beta$'s mean and covariance — each term
is estimated with its standard error. Since $x' + \\beta S_w - b = \\beta(S_w - S^*)$, the
first term is $\\beta^2$ times the Fisher divergence of the model.""",
    ),
    (
        "code",
        """def gaussian_fit_score(x_prime, level):
    \"\"\"The score of the Gaussian with p_β's mean and covariance: an imperfect S_w.\"\"\"
    mean = jnp.sqrt(1 - level) * data_distribution.mean  # the closed forms of section 1
    covariance = (1 - level) * data_distribution.covariance + level * jnp.eye(2)
    return -jnp.linalg.solve(covariance, x_prime - mean)


@jax.jit
def objective_terms(rng_key, beta):
    \"\"\"Per pair (x, x′), x from x0: the terms of eqs. (11.17)–(11.21), and the ε form.\"\"\"
    x_prime, noise = ej.diffusion.perturb_with_noise(rng_key, x0, beta)
    true_score = batched_exact_score(x_prime, beta)
    model_score = jax.vmap(gaussian_fit_score, in_axes=(0, None))(x_prime, beta)
    b = x_prime + beta * true_score  # = √(1-β) E[x | x'], eq. (11.12)
    model_residual = x_prime + beta * model_score - b
    data_residual = b - jnp.sqrt(1 - beta) * x0
    terms = (
        jnp.sum((model_residual + data_residual) ** 2, -1),
        jnp.sum(model_residual**2, -1),
        beta**2 * jnp.sum((model_score - true_score) ** 2, -1),
        jnp.sum(data_residual**2, -1),
        2 * jnp.sum(model_residual * data_residual, -1),
    )
    # The ε form of the residual, which the library uses for its precision at small β.
    epsilon_form = beta * jnp.sum((noise + jnp.sqrt(beta) * model_score) ** 2, -1)
    posterior_noise = jax.vmap(ej.diffusion.tweedie_noise, in_axes=(None, 0, None))(
        exact_score, x_prime, beta
    )
    return terms, epsilon_form, noise, posterior_noise


def mean_and_error(values):
    return f"{float(values.mean()):>9.4f} ± {float(values.std()) / np.sqrt(values.size):.4f}"


term_names = (
    "(11.17) ‖x′ + βS_w − √(1−β)x‖²",
    "(11.19) ‖x′ + βS_w − b‖²",
    "        = β²‖S_w − S*‖²",
    "(11.19) ‖b − √(1−β)x‖²",
    "(11.21) 2(x′ + βS_w − b)ᵀ(b − √(1−β)x)",
)
beta = 0.3
terms, epsilon_form, noise, posterior_noise = objective_terms(jax.random.key(11), beta)
print(f"β = {beta}, {NUM_SAMPLES} pairs (x, x′); each term: mean ± standard error")
for name, values in zip(term_names, terms, strict=True):
    print(f"  {name:<42}{mean_and_error(values)}")
cross = terms[-1]
z = float(cross.mean() / (cross.std() / np.sqrt(cross.size)))
print(f"cross term: per-pair standard deviation {float(cross.std()):.3f}, z = mean / SE = {z:+.2f}")
left = terms[0]
relative = float(jnp.max(jnp.abs(left - epsilon_form) / epsilon_form))
print(f"‖x′ + βS_w − √(1−β)x‖² vs β‖ε + √β S_w‖²: max relative difference {relative:.1e} (float32)")
# If ε̂ = E[ε | x′], the tower property makes the least-squares slope of ε on ε̂ exactly 1.
slope = float(jnp.sum(noise * posterior_noise) / jnp.sum(posterior_noise**2))
print(f"least-squares slope of ε on E[ε | x′] = −√β S*(x′): {slope:.3f} (exact 1)")""",
    ),
    (
        "md",
        """The cross term averages to 0 within its standard error although each pair's value
is far from 0, and (11.17) splits into the model's term plus the irreducible posterior
variance $\\mathbb{E}\\|b - \\sqrt{1-\\beta}\\,x\\|^2$, which the exact score attains. With
$x' = \\sqrt{1-\\beta}\\,x + \\sqrt\\beta\\,\\varepsilon$ the residual is
$\\sqrt\\beta\\,\\varepsilon + \\beta S_w$, so

$$\\big\\|x' + \\beta S_w - \\sqrt{1-\\beta}\\,x\\big\\|^2
= \\beta\\,\\big\\|\\varepsilon + \\sqrt\\beta\\,S_w\\big\\|^2,
\\qquad S^* = -\\frac{\\mathbb{E}[\\varepsilon \\mid x']}{\\sqrt\\beta},$$

the $\\varepsilon$-prediction loss of Ho et al. (2020) up to the factor $\\beta$ — checked per
pair above, to float32 rounding. `ej.diffusion.tweedie_noise` gives
$\\mathbb{E}[\\varepsilon \\mid x']$ from a score; regressing $\\varepsilon$ on it gives slope 1, as
the tower property requires of a conditional expectation.

**Weightings.** Per level, (11.16) is $\\beta^2\\,\\mathbb{E}_{p_\\beta}\\|S_w - S^*\\|^2$ plus a
constant, so the lecture's unweighted average over $\\beta$ all but ignores the small levels
that decide the fine detail of the samples. `ej.diffusion.denoising_loss` multiplies level
$\\beta$ by $w(\\beta) = 1$ (`"lecture"`), $1/\\beta$ (`"epsilon"`, the default: Ho et al.'s
loss) or $1/\\beta^2$ (`"score"`: Vincent's denoising score matching, exactly the Fisher
divergence per level). A weighting changes the balance between levels, never the minimiser
at a level: for the family $S_c = c\\,S^*$ every weighting's loss is a quadratic in $c$
whose minimiser is $c = 1$ (up to Monte-Carlo error, largest for `"score"`, whose variance
grows like $1/\\beta$). The right panel shows the balance for the Gaussian-fit model of
above, level by level.""",
    ),
    (
        "code",
        """def scaled_exact_score(scale, x, beta):
    return scale * exact_score(x, beta)


losses_by_weighting = {
    weighting: ej.diffusion.denoising_loss(
        scaled_exact_score, schedule=noise_schedule, weighting=weighting
    )
    for weighting in ej.diffusion.objective.WEIGHTINGS
}


@jax.jit
def loss_values(scale, rng_key, batch):
    \"\"\"Every weighting's loss; with one key, all share the levels and the noise.\"\"\"
    return {name: loss_fn(scale, rng_key, batch) for name, loss_fn in losses_by_weighting.items()}


batch = data_samples[: 10 * NUM_SAMPLES]  # the 1/β² weighting needs many samples
# Each loss is quadratic in c, so its values at c = 0, 1, 2 determine it.
at_0, at_1, at_2 = (loss_values(scale, jax.random.key(13), batch) for scale in (0.0, 1.0, 2.0))
print(f"minimiser c* of L(c) for S_c = c·S*, linear schedule, {batch.shape[0]} samples (exact: 1)")
for name in losses_by_weighting:
    curvature = float(at_2[name] - 2 * at_1[name] + at_0[name]) / 2
    minimiser = -float(at_1[name] - at_0[name] - curvature) / (2 * curvature)
    print(f"  {name:<8} c* = {minimiser:.3f}")


@jax.jit
@functools.partial(jax.vmap, in_axes=(None, 0))
def gaussian_fit_fisher(rng_key, level):
    \"\"\"E_{p_β}‖S_w − S*‖² of the Gaussian-fit model, at one level.\"\"\"
    samples = ej.diffusion.perturb(rng_key, x0, level)  # exact draws of p_β
    model = jax.vmap(gaussian_fit_score, in_axes=(0, None))(samples, level)
    return jnp.mean(jnp.sum((model - batched_exact_score(samples, level)) ** 2, -1))


levels = np.geomspace(1e-4, 0.999, 16)
fisher = np.asarray(gaussian_fit_fisher(jax.random.key(14), jnp.asarray(levels, jnp.float32)))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].loglog(levels, fisher, "o-")
axes[0].set(xlabel="β", ylabel="E‖S_w − S*‖²", title="Gaussian-fit model: Fisher divergence")
weights_by_name = {"lecture, w = 1": 1.0, "epsilon, w = 1/β": 1 / levels}
weights_by_name["score, w = 1/β²"] = 1 / levels**2
for name, weight in weights_by_name.items():
    contribution = weight * levels**2 * fisher
    axes[1].loglog(levels, contribution / contribution.sum(), "o-", label=name)
axes[1].set(xlabel="β", ylabel="share of the model term", title="w(β)·β²·E‖S_w − S*‖²")
axes[1].legend(fontsize=8);""",
    ),
    (
        "md",
        """## 5. Training a noise-conditional score network, and sampling it

The network is `ej.models.NoiseConditionalScore.toy_2d()`: an MLP whose hidden layers are
modulated (FiLM) by features of the log signal-to-noise ratio of $\\beta$, parametrised by
noise prediction, $S_w = -\\hat\\varepsilon_w/\\sqrt\\beta$. It is trained on the eight-Gaussians
toy (scaled to unit variance, as the variance-preserving perturbation expects) with
`ej.diffusion.denoising_loss` — eq. (11.16) with the $\\varepsilon$ weighting, $\\beta$ drawn
from the marginal levels $\\bar\\beta_t$ of the linear schedule — and `ej.training.fit`,
on a training set of fresh draws of the toy.""",
    ),
    (
        "code",
        """DATA_SCALE = np.sqrt(4.125)  # the toy's standard deviation (see ej.data.eight_gaussians)
num_toy_points = 2 * NUM_NETWORK_SAMPLES + 10 * NUM_SAMPLES
toy_data = ej.data.eight_gaussians(jax.random.key(20), num_toy_points) / DATA_SCALE
toy_test = toy_data[:NUM_NETWORK_SAMPLES]
toy_reference = toy_data[NUM_NETWORK_SAMPLES : 2 * NUM_NETWORK_SAMPLES]
toy_train = toy_data[2 * NUM_NETWORK_SAMPLES :]
optimizer = optax.adam(optax.warmup_cosine_decay_schedule(0.0, 2e-3, 50, NUM_TRAIN_STEPS))

score_model = ej.models.NoiseConditionalScore.toy_2d()
score_fit = ej.training.fit(
    jax.random.key(22),
    ej.diffusion.denoising_loss(score_model.apply, schedule=noise_schedule),
    score_model.init(jax.random.key(23), jnp.zeros(2), 0.5),
    optimizer,
    toy_train,
    num_steps=NUM_TRAIN_STEPS,
    batch_size=BATCH_SIZE,
    chunk_size=NUM_TRAIN_STEPS,
    progress=False,
)
# One partial for all samplers: the model is a static argument of their compiled loops.
learned_score = functools.partial(score_model.apply, score_fit.params)

# The toy is itself a Gaussian mixture, so its perturbed score is exact too: it gives the
# irreducible part of the loss (the second term of 11.19), the floor the network aims at.
angles = np.arange(8) * np.pi / 4
toy_means = 2 * np.sqrt(2) * np.stack([np.cos(angles), np.sin(angles)], -1) / DATA_SCALE
toy_variance = (np.sqrt(2) / 4 / DATA_SCALE) ** 2
toy_logdensity = ej.diffusion.perturbed_gaussian_mixture_logdensity(
    jnp.ones(8), toy_means, toy_variance
)
toy_score = jax.grad(toy_logdensity)
floor_loss = ej.diffusion.denoising_loss(lambda params, x, beta: toy_score(x, beta))
floor = float(jax.jit(floor_loss)(None, jax.random.key(24), toy_train))
losses = np.asarray(score_fit.losses)
window = max(1, NUM_TRAIN_STEPS // 10)
print(f"ε-loss ‖ε + √β S_w‖²: first {window} steps {losses[:window].mean():.3f}, ", end="")
print(f"last {window} {losses[-window:].mean():.3f}; at the exact score {floor:.3f}")""",
    ),
    (
        "md",
        """Four samplers of the same network, all starting from $x_T \\sim N(0, I)$ and all built
on the reverse of the forward chain (`ebm_jax.diffusion.samplers`, `ebm_jax.diffusion.ode`):

* **ancestral** (Ho et al. 2020): each step is the Tweedie mean (11.13) of the *one-step*
  perturbation from the next level down, plus fresh noise;
* **annealed Langevin** (Song & Ermon 2019): Langevin steps on each $p_{\\bar\\beta}$, noisiest
  first, with step sizes proportional to $\\bar\\beta$, and a final Tweedie denoising;
* **predictor-corrector** (Song et al. 2021): an ancestral predictor and a Langevin
  corrector whose step is set by a signal-to-noise ratio;
* **probability-flow ODE** (Song et al. 2021): the deterministic flow with the same
  marginals, $dx/d\\bar\\beta = -(x + S(x, \\bar\\beta))/(2(1-\\bar\\beta))$.

Quality is judged against held-out samples by the (unbiased) squared MMD and the sliced
Wasserstein distance, next to the same distances between two independent data sets (the
Monte-Carlo floor); NFE counts network evaluations per sample.""",
    ),
    (
        "code",
        """def run_samplers(score_fn, initial_positions):
    \"\"\"Draws from one noise-conditional score by the four samplers, with their NFE.\"\"\"
    levels = {"num_steps": NUM_SAMPLER_LEVELS}
    results = {
        "ancestral": diffusion_samplers.ancestral_sample(
            jax.random.key(30), score_fn, noise_schedule, initial_positions, **levels
        ),
        "annealed Langevin": diffusion_samplers.annealed_langevin_sample(
            jax.random.key(31),
            score_fn,
            noise_schedule,
            initial_positions,
            step_size=1e-5,
            num_steps_per_level=LANGEVIN_STEPS_PER_LEVEL,
            **levels,
        ),
        "predictor-corrector": diffusion_samplers.predictor_corrector_sample(
            jax.random.key(32), score_fn, noise_schedule, initial_positions, **levels
        ),
        "probability-flow ODE": ode.probability_flow_sample(
            score_fn, noise_schedule, initial_positions, num_steps=NUM_ODE_STEPS
        ),
    }
    return {name: (result[0], result[1]) for name, result in results.items()}


def distances(samples):
    \"\"\"Squared MMD (unbiased) and sliced Wasserstein-2 distance to the held-out toy data.\"\"\"
    mmd = float(ej.diagnostics.mmd(samples, toy_test))
    wasserstein = float(ej.diagnostics.sliced_wasserstein(jax.random.key(33), samples, toy_test))
    return mmd, wasserstein


network_noise = initial_noise[:NUM_NETWORK_SAMPLES]
learned_samples = run_samplers(learned_score, network_noise)
print(f"{NUM_NETWORK_SAMPLES} draws against as many held-out points")
print(f"{'eight Gaussians, learned score':<32}{'NFE':>6}{'MMD²':>11}{'sliced W₂':>11}")
mmd, wasserstein = distances(toy_reference)
print(f"{'fresh data (the floor)':<32}{'':>6}{mmd:>11.5f}{wasserstein:>11.4f}")
fig, axes = plt.subplots(1, 5, figsize=(17, 3.4))
axes[0].scatter(*np.asarray(toy_reference).T, s=2)
axes[0].set_title("fresh data")
for ax, (name, (samples, nfe)) in zip(axes[1:], learned_samples.items(), strict=True):
    mmd, wasserstein = distances(samples)
    print(f"{name:<32}{nfe:>6}{mmd:>11.5f}{wasserstein:>11.4f}")
    ax.scatter(*np.asarray(samples).T, s=2)
    ax.set_title(f"{name} (NFE {nfe})")
for ax in axes:
    ax.set(xlim=(-2.2, 2.2), ylim=(-2.2, 2.2), xlabel="x₁", ylabel="x₂")
    ax.set_aspect("equal")

exact_samples = run_samplers(exact_score, initial_noise)
print(f"\\nthe 0.8/0.2 mixture with its exact perturbed score, {NUM_SAMPLES} draws:")
print(f"{'':<24}{'NFE':>6}{'heavy side (0.8)':>18}{'E[x₁] (3.0)':>13}")
for name, (samples, nfe) in exact_samples.items():
    heavy, mean = heavy_side_fraction(samples), float(samples[:, 0].mean())
    print(f"{name:<24}{nfe:>6}{heavy:>18.3f}{mean:>+13.3f}")
mean_error = float(x0[:, 0].std()) / np.sqrt(NUM_SAMPLES)
print(f"(standard errors {standard_error:.3f} and {mean_error:.3f})")""",
    ),
    (
        "md",
        """With the exact score all four samplers recover the weights 0.8/0.2 that Langevin on
$p$ could not — annealed Langevin, unadjusted, a little short of them, the bias noted in
section 3 (the ODE's output is at $\\bar\\beta_1$, not denoised, which changes nothing at
this scale). The learned score's samples approach the data-versus-data floor.

**Likelihood.** The probability-flow ODE is an invertible map from data to noise, so the
instantaneous change of variables (Chen et al. 2018) gives exact log-likelihoods,
$\\log p_{\\bar\\beta_1}(x) = \\log \\pi(z) + \\int \\nabla\\cdot v\\,d\\lambda$ along the encoding
path to the latent $z$ (`ode.probability_flow_log_likelihood`, with the divergence exact
by Jacobian-vector products and the prior $\\pi = N(0, I)$ by default). With the exact
mixture score, and the exact prior $p_{\\bar\\beta_T}$ to isolate the integrator's error, it
reproduces the closed-form $\\log p_{\\bar\\beta_1}$. With the learned score it gives the model's
test log-likelihood, to compare with the exact density of the scaled toy (the toy is the
mixture of eight $N(2\\sqrt2(\\cos\\frac{k\\pi}{4}, \\sin\\frac{k\\pi}{4}), \\frac18 I)$ of
`ej.data.eight_gaussians`, so its perturbed density is closed-form too; the scaling's
Jacobian is included).""",
    ),
    (
        "code",
        """smallest_level = float(noise_schedule.marginal_betas[0])
largest_level = float(noise_schedule.marginal_betas[-1])
mixture_points = x0[:NUM_LIKELIHOOD_POINTS]
closed_form = batched_perturbed_logdensity(mixture_points, smallest_level)
# The exact prior p_β̄_T isolates the integrator's error; N(0, I), the default, is what a
# learned model uses, and differs by the signal left at T (√ᾱ_T ≈ 0.006).
flow = ode.probability_flow_log_likelihood(
    jax.random.key(41),
    exact_score,
    noise_schedule,
    mixture_points,
    num_steps=NUM_LIKELIHOOD_STEPS,
    method="rk4",
    prior_logdensity_fn=lambda z: perturbed_logdensity(z, largest_level),
)
error = jnp.abs(flow.log_likelihood - closed_form)
standard_normal = -0.5 * jnp.sum(flow.latents**2, -1) - jnp.log(2 * jnp.pi)
print(
    f"mixture, exact score, {flow.num_function_evaluations} NFE: mean log p_β̄₁ by the flow "
    f"{float(flow.log_likelihood.mean()):.4f}, closed form {float(closed_form.mean()):.4f}; "
    f"|error| mean {float(error.mean()):.1e}, max {float(error.max()):.1e}"
)
prior_gap = float(jnp.mean(jnp.abs(standard_normal - flow.prior_logdensity)))
print(f"  |log N(z; 0, I) − log p_β̄_T(z)| at the latents: mean {prior_gap:.1e}")

toy_points = toy_test[:NUM_LIKELIHOOD_POINTS]
learned_flow = ode.probability_flow_log_likelihood(
    jax.random.key(42),
    learned_score,
    noise_schedule,
    toy_points,
    num_steps=NUM_LIKELIHOOD_STEPS,
    method="rk4",
)
exact_toy = jax.jit(jax.vmap(toy_logdensity, in_axes=(0, None)))(toy_points, smallest_level)
# ej.data's own log-density, on the unscaled toy, with the Jacobian of the scaling.
true_toy = jax.jit(jax.vmap(ej.data.eight_gaussians_logdensity))(toy_points * DATA_SCALE)
true_toy = true_toy + 2 * np.log(DATA_SCALE)
# N(0, I) is the maximum-likelihood Gaussian of the scaled toy (mean 0, covariance I).
best_gaussian = -0.5 * jnp.sum(toy_points**2, -1) - jnp.log(2 * jnp.pi)
print(f"eight Gaussians, mean log-likelihood of {toy_points.shape[0]} held-out points:")
print(f"  learned score, probability flow  {float(learned_flow.log_likelihood.mean()):8.3f}")
print(f"  exact log p_β̄₁, closed form      {float(exact_toy.mean()):8.3f}")
print(f"  exact log p (ej.data)            {float(true_toy.mean()):8.3f}")
print(f"  the best Gaussian, N(0, I)       {float(best_gaussian.mean()):8.3f}")""",
    ),
    (
        "md",
        """## 6. The energy view: a noise-conditional energy and annealed MALA

The lecture's starting point is an energy-based model $p_\\theta = e^{f_\\theta}/Z$ (11.3).
Parametrising $f_w(x', \\beta)$ instead of the score, with $S_w = \\nabla_{x'} f_w$ (11.1, by
`jax.grad`), gives a proper unnormalised density at every level
(`ej.models.NoiseConditionalEnergy`), trained by the same objective
(`denoising_loss(logdensity_fn=...)`). What the energy buys is the Metropolis–Hastings
correction: each level can be sampled by MALA rather than unadjusted Langevin, and the
acceptance rate reports how well the steps fit the level (annealed MALA with an ancestral
predictor between levels, Du et al. 2023). The step at level $\\bar\\beta$ is
$\\tau = \\epsilon\\,\\bar\\beta/\\bar\\beta_{\\min}$, as for annealed Langevin, so the noisy
levels take large steps.""",
    ),
    (
        "code",
        """energy_model = ej.models.NoiseConditionalEnergy.toy_2d()
energy_fit = ej.training.fit(
    jax.random.key(51),
    ej.diffusion.denoising_loss(logdensity_fn=energy_model.apply, schedule=noise_schedule),
    energy_model.init(jax.random.key(52), jnp.zeros(2), 0.5),
    optimizer,
    toy_train,
    num_steps=NUM_TRAIN_STEPS,
    batch_size=BATCH_SIZE,
    chunk_size=NUM_TRAIN_STEPS,
    progress=False,
)
learned_energy = functools.partial(energy_model.apply, energy_fit.params)
losses = np.asarray(energy_fit.losses)
print(f"energy network ε-loss, first {window} steps {losses[:window].mean():.3f}, ", end="")
print(f"the last {window} {losses[-window:].mean():.3f}; at the exact score {floor:.3f}")
mala_learned = diffusion_samplers.annealed_mala_sample(
    jax.random.key(53),
    learned_energy,
    noise_schedule,
    network_noise,
    step_size=5e-5,
    num_steps=NUM_SAMPLER_LEVELS,
    num_steps_per_level=3,
)
mmd, wasserstein = distances(mala_learned.samples)
print(
    f"eight Gaussians, learned energy, annealed MALA ({mala_learned.num_function_evaluations} NFE):"
    f" MMD² {mmd:.5f}, sliced W₂ {wasserstein:.4f}"
)
levels = np.asarray(mala_learned.noise_levels)
rates = np.asarray(mala_learned.acceptance_rate)
print("MALA acceptance rate by level (noisiest first):")
for index in np.linspace(0, NUM_SAMPLER_LEVELS - 1, 6).astype(int):
    print(f"  β̄ = {levels[index]:<10.4g}{rates[index]:.3f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].semilogx(levels, rates, "o-", ms=3)
axes[0].set(xlabel="level β̄ (visited from right to left)", ylabel="MALA acceptance rate")
axes[0].set(ylim=(0, 1.05), title="acceptance by level, learned energy")
axes[1].scatter(*np.asarray(mala_learned.samples).T, s=2)
axes[1].set(title="annealed MALA, learned energy", xlim=(-2.2, 2.2), ylim=(-2.2, 2.2))
axes[1].set(xlabel="x₁", ylabel="x₂")
axes[1].set_aspect("equal");""",
    ),
    (
        "md",
        """## 7. Few-step samplers and classifier-free guidance

**DDIM** (Song, Meng & Ermon 2021) writes the step from $t$ to the next visited $s$ through
the model's noise and data estimates, $\\hat\\varepsilon = -\\sqrt{\\bar\\beta_t}\\,S_w$ and
$\\hat x_0 = (x_t + \\bar\\beta_t S_w)/\\sqrt{\\bar\\alpha_t}$ (Tweedie, 11.13):

$$x_s = \\sqrt{\\bar\\alpha_s}\\,\\hat x_0 + \\sqrt{\\bar\\beta_s - \\sigma^2}\\;\\hat\\varepsilon
+ \\sigma z, \\qquad \\sigma^2 = \\eta^2\\,\\frac{\\bar\\beta_s}{\\bar\\beta_t}\\,\\beta_{t|s}.$$

At $\\eta = 1$ this *is* the ancestral step (the coefficient of $S_w$ reduces to
$\\beta_{t|s}/\\sqrt{1-\\beta_{t|s}}$); at $\\eta = 0$ it is deterministic, the first-order
*exponential integrator* of the probability-flow ODE. **DPM-Solver++** (Lu et al. 2022b)
writes that ODE in the half log-SNR $\\lambda = \\log(\\alpha/\\sigma)$,
$\\alpha = \\sqrt{\\bar\\alpha}$, $\\sigma = \\sqrt{\\bar\\beta}$, as
$x_s = \\frac{\\sigma_s}{\\sigma_t}x_t + \\sigma_s\\int e^{\\lambda} \\hat x_0\\,d\\lambda$,
integrates the linear part exactly and the data prediction by a polynomial through the last
evaluations; its second-order multistep update is

$$x_s = \\frac{\\sigma_s}{\\sigma_t}x_t - \\alpha_s\\big(e^{-h}-1\\big)\\Big(D_0 + \\frac{D_0 -
D_{-1}}{2r_0}\\Big), \\qquad h = \\lambda_s - \\lambda_t,\\; r_0 = h_{-1}/h,$$

one network evaluation per step. With the exact score of the mixture, the (median) distance
to the probability flow's own end points (RK4 with many steps, then the Tweedie mean) falls like
$h^1$ for DDIM and $h^2$, $h^3$ for DPM-Solver++ of orders 2 and 3.

**Guidance.** A class-conditional model trained with labels dropped to a null label
$\\varnothing$ (`denoising_loss(..., label_dropout=p, null_label=K)`) knows both
$S(x,\\beta,c)$ and $S(x,\\beta,\\varnothing)$; classifier-free guidance (Ho & Salimans 2022)
samples with

$$\\tilde S = S(x,\\beta,\\varnothing) + w\\big(S(x,\\beta,c) - S(x,\\beta,\\varnothing)\\big)
= \\nabla_x \\log\\big(p_\\beta(x)^{1-w}\\,p_\\beta(x\\mid c)^{w}\\big),$$

a *sum of energies* $(1-w)f(x,\\beta,\\varnothing) + wf(x,\\beta,c)$ that annealed MALA
samples exactly at each level (Du et al. 2023). Below the two modes of the mixture are the
two classes and the exact scores play the trained network. At $w = 1/2$ the product
$p^{1/2}p(\\cdot\\mid c)^{1/2}$ has practically all its mass in the requested class (the
other mode's $p(x \\mid c)$ is $e^{-50}$ there): annealed MALA, exact at every level, finds
that, while DPM-Solver++ follows the guided score along a path of levels that are not the
product's own perturbations, a known gap of score guidance.""",
    ),
    (
        "code",
        """# Orders of convergence against the probability flow's own end points (exact score).
smallest_level = noise_schedule.marginal_betas[0]
flow_noise = network_noise[:256]
reference = ode.probability_flow_sample(
    exact_score, noise_schedule, flow_noise, num_steps=400 if FAST else 2000, method="rk4"
).positions
reference = jax.vmap(lambda y: ej.diffusion.tweedie_mean(exact_score, y, smallest_level))(reference)
step_counts = [25, 50, 100] if FAST else [25, 50, 100, 200, 400]
fast_samplers = {
    "DDIM (η = 0)": lambda n: (
        ej.diffusion.ddim_sample(
            jax.random.key(60), exact_score, noise_schedule, flow_noise, n
        ).samples
    ),
    "DPM-Solver++ 2M": lambda n: (
        ej.diffusion.dpm_solver_sample(
            exact_score, noise_schedule, flow_noise, n, spacing="linear"
        ).samples
    ),
    "DPM-Solver++ 3M": lambda n: (
        ej.diffusion.dpm_solver_sample(
            exact_score, noise_schedule, flow_noise, n, order=3, spacing="linear"
        ).samples
    ),
}
# The median distance: a sample that starts on the boundary between the modes may flow to
# the other one at some step count, a jump of ~14 that would swamp a mean.
errors = {
    name: [float(jnp.median(jnp.linalg.norm(run(n) - reference, axis=-1))) for n in step_counts]
    for name, run in fast_samplers.items()
}
for name, values in errors.items():
    rates = np.log2(np.array(values[:-1]) / np.array(values[1:]))
    print(f"{name:17s} error {values[0]:.2e} -> {values[-1]:.2e}; order {rates.round(2)}")

# Guidance: class 0 = N((5, 5), I), class 1 = N((-5, -5), I), null label 2 = the mixture.
mode_logdensities = [
    ej.diffusion.perturbed_gaussian_mixture_logdensity(jnp.ones(1), MEANS[c : c + 1], 1.0)
    for c in range(2)
]


def class_logdensity(x, beta, label):
    one_mode = jnp.stack([logdensity(x, beta) for logdensity in mode_logdensities])
    return jnp.where(label == 2, perturbed_logdensity(x, beta), one_mode[jnp.clip(label, 0, 1)])


class_score = jax.grad(class_logdensity)
wanted = jnp.ones(flow_noise.shape[0], jnp.int32)  # ask for the light class, weight 0.2
print("fraction of samples in the requested class (the light one, weight 0.2):")
for scale in (0.0, 0.5, 1.0):
    guidance = {"class_labels": wanted, "guidance_scale": scale, "null_label": 2}
    guided = ej.diffusion.dpm_solver_sample(class_score, noise_schedule, flow_noise, 20, **guidance)
    energy_guided = diffusion_samplers.annealed_mala_sample(
        jax.random.key(61),
        class_logdensity,
        noise_schedule,
        flow_noise,
        step_size=5e-5,
        num_steps=NUM_SAMPLER_LEVELS,
        num_steps_per_level=3,
        **guidance,
    )
    print(
        f"  w = {scale:3.1f}: DPM-Solver++ {1 - heavy_side_fraction(guided.samples):.3f} "
        f"({guided.num_function_evaluations} NFE), annealed MALA (energy sum) "
        f"{1 - heavy_side_fraction(energy_guided.samples):.3f}"
    )

fig, ax = plt.subplots(figsize=(5.5, 3.8))
for name, values in errors.items():
    ax.loglog(step_counts, values, "o-", label=name)
ax.set_xticks(step_counts, [str(count) for count in step_counts])
ax.set_xticks([], minor=True)
ax.set(xlabel="steps = network evaluations", ylabel="median distance to the flow's end")
ax.set_title("few-step samplers, exact score")
ax.legend();""",
    ),
    (
        "md",
        """## Takeaways

* The perturbation (11.5) composes: $T$ steps of the chain (11.4) are one perturbation at
  $\\bar\\beta_t = 1 - \\prod_s(1-\\beta_s)$, and for Gaussian mixtures $p_\\beta$ is known in
  closed form (11.6).
* Tweedie (11.13): the perturbed score *is* the optimal denoiser,
  $\\mathbb{E}[x \\mid x'] = (x' + \\beta\\nabla\\log p_\\beta(x'))/\\sqrt{1-\\beta}$ —
  confirmed against a Monte-Carlo posterior mean.
* The scores of $p$ hide the weights of separated modes; the perturbed scores reveal them,
  and annealing through the levels puts the mass back where it belongs.
* Eq. (11.16) is (11.15) plus a constant: the cross term is the expectation of an inner
  product (not the product of expectations of (11.20)) and vanishes by the tower property
  (11.21). In the $\\varepsilon$ form it is noise prediction; weightings rebalance the levels
  without moving any level's minimiser.
* One network trained by (11.16) is sampled by ancestral, annealed-Langevin,
  predictor-corrector and probability-flow samplers, and the flow gives exact
  log-likelihoods; an energy parametrisation adds Metropolis–Hastings corrections.
* DDIM and DPM-Solver++ reach the flow's samples in tens of evaluations, at their orders;
  guidance is a sum of scores, or of energies that MALA samples exactly at each level.

References: Sohl-Dickstein et al. (2015), *Deep unsupervised learning using nonequilibrium
thermodynamics*; Ho, Jain & Abbeel (2020), *Denoising diffusion probabilistic models*;
Nichol & Dhariwal (2021), *Improved denoising diffusion probabilistic models*; Robbins
(1956) and Efron (2011), *Tweedie's formula and selection bias*; Vincent (2011), *A
connection between score matching and denoising autoencoders*; Song & Ermon (2019),
*Generative modeling by estimating gradients of the data distribution*; Song et al. (2021),
*Score-based generative modeling through stochastic differential equations*; Chen et al.
(2018), *Neural ordinary differential equations*; Du et al. (2023), *Reduce, reuse,
recycle: compositional generation with energy-based diffusion models and MCMC*; Song, Meng
& Ermon (2021), *Denoising diffusion implicit models*; Lu et al. (2022), *DPM-Solver++:
fast solver for guided sampling of diffusion probabilistic models*; Ho & Salimans (2022),
*Classifier-free diffusion guidance*.""",
    ),
]


def main() -> None:
    write_notebook(CELLS, Path(__file__).with_name("04_diffusion.ipynb"))


if __name__ == "__main__":
    main()

"""Writes notebooks/01_sampling.ipynb (unexecuted) from the cells below."""

from pathlib import Path

from _build import write_notebook

CELLS = [
    (
        "md",
        """# 01 — Sampling as generation (§11.1 recap, §11.2.1)

An energy-based model is an unnormalised log-density $f_\\theta$,
$p_\\theta(x) = \\exp f_\\theta(x) / Z(\\theta)$. Generating from it means running a
Markov chain whose stationary law is $p_\\theta$. This notebook runs the lecture's
samplers — Langevin, Metropolis-Hastings, Langevin with an MH correction (MALA) and
Gibbs — on analytic targets whose answers are known exactly, so every claim is checked.

Set `EBM_JAX_FAST=1` to run everything at toy sizes (the test suite does).""",
    ),
    (
        "code",
        """import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import ebm_jax as ej

FAST = os.environ.get("EBM_JAX_FAST", "0") == "1"
plt.rcParams.update({"figure.dpi": 80, "figure.constrained_layout.use": True})
NUM_CHAINS = 256 if FAST else 4096
NUM_STEPS = 200 if FAST else 2000
key = jax.random.key(0)""",
    ),
    (
        "md",
        """## Targets and their scores (eq. 11.1)

$\\nabla_x \\log p_\\theta(x) = \\nabla_x f_\\theta(x)$: the normaliser does not depend on
$x$, so the score of an unnormalised model is exact. `ej.score` is `jax.grad`.""",
    ),
    (
        "code",
        """mixture = ej.densities.gaussian_mixture(
    weights=jnp.array([0.6, 0.4]),
    means=jnp.array([[-1.5, 0.0], [1.5, 0.5]]),
    covariances=jnp.array([0.5, 0.4]),
)
banana = ej.densities.banana()
score_fn = ej.score(mixture.logdensity_fn)
print("score at the origin:", score_fn(jnp.zeros(2)))

grid = jnp.linspace(-4, 4, 150)
xx, yy = jnp.meshgrid(grid, grid)
points = jnp.stack([xx.ravel(), yy.ravel()], -1)
density = jnp.exp(jax.vmap(mixture.logdensity_fn)(points)).reshape(xx.shape)
exact = mixture.sample(jax.random.key(1), 2000)
fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.contour(xx, yy, density, levels=8, colors="k", linewidths=0.8)
ax.plot([], [], "k-", lw=0.8, label="density contours")
ax.scatter(exact[:, 0], exact[:, 1], s=1, alpha=0.4, label="exact samples")
ax.set(xlabel="x₁", ylabel="x₂", title="the mixture: density and exact samples")
ax.set_aspect("equal")
ax.legend(loc="upper left", fontsize=8, markerscale=5);""",
    ),
    (
        "md",
        """## Langevin dynamics, and why the lecture's step needs its MH correction

The lecture proposes $y = x + \\eta\\nabla\\log p(x) + \\sqrt{\\eta}\\,\\varepsilon$.
*With* the MH correction that is exact for any $\\eta$. *Without* it, that is an
Euler step of the Langevin diffusion for $p^2$, not $p$: the correct unadjusted
step (ULA) is $y = x + \\tau\\nabla\\log p(x) + \\sqrt{2\\tau}\\,\\varepsilon$. Even
ULA is biased at finite $\\tau$: on $N(0, \\sigma^2)$ its stationary variance is
$\\sigma^2 / (1 - \\tau / 2\\sigma^2)$.""",
    ),
    (
        "code",
        """standard_normal = lambda x: -0.5 * jnp.sum(x**2)
initial = jax.random.normal(jax.random.key(2), (NUM_CHAINS, 1))
rows = []
for tau in (0.1, 0.5, 1.0):
    for name, alg, theory in [
        ("ULA (τ, 2τ)", ej.samplers.ula(standard_normal, tau), 1 / (1 - tau / 2)),
        (
            "ULA (η, η), lecture",
            ej.samplers.ula(standard_normal, tau, noise_variance=tau),
            1 / (2 - tau),
        ),
        ("MALA (τ, 2τ)", ej.samplers.mala(standard_normal, tau), 1.0),
        ("MALA (η, η), lecture", ej.samplers.mala(standard_normal, tau, noise_variance=tau), 1.0),
    ]:
        result = ej.run_chains(key, alg, initial, NUM_STEPS, num_burnin=100, collect="stats")
        variance = float(jnp.mean(result.variance + result.mean**2))
        rows.append((tau, name, variance, theory, float(result.acceptance_rate.mean())))
print(f"{'τ':>4} {'sampler':<22} {'variance':>9} {'theory':>7} {'accept':>7}")
for tau, name, variance, theory, accept in rows:
    print(f"{tau:>4} {name:<22} {variance:>9.3f} {theory:>7.3f} {accept:>7.3f}")""",
    ),
    (
        "md",
        """## Metropolis-Hastings

$A(x, y) = \\min\\big(1, \\frac{p(y)q(x|y)}{p(x)q(y|x)}\\big)$ — one shared accept step
(`ej.samplers.mh_accept`) serves every MH kernel. Random-walk MH uses a symmetric
proposal, so the $q$ terms cancel. On the banana (twisted Gaussian) a full-covariance
proposal helps; the warm-up estimates it from the chains.""",
    ),
    (
        "code",
        """initial = jax.random.normal(jax.random.key(3), (NUM_CHAINS, 2))
warmup = ej.samplers.adapt(
    jax.random.key(4), "rwmh", banana.logdensity_fn, initial, NUM_STEPS // 2, preconditioner="dense"
)
rwmh = ej.samplers.rwmh(banana.logdensity_fn, **warmup.parameters)
result = ej.run_chains(jax.random.key(5), rwmh, warmup.states.position, NUM_STEPS)
print("acceptance", float(result.acceptance_rate.mean()), "(target 0.234)")
print("mean", result.samples.mean(axis=(0, 1)), "exact", banana.mean)
rhat = ej.diagnostics.rhat(result.samples)
print("bulk ESS", ej.diagnostics.ess(result.samples), "R-hat", rhat)
if (rhat > 1.01).any():
    print("WARNING: R-hat > 1.01: these chains have not mixed; do not trust the mean yet")
fig, ax = plt.subplots(figsize=(5, 3.5))
final = result.samples[:, -1]
ax.scatter(final[:, 0], final[:, 1], s=1, alpha=0.4)
ax.set(xlabel="x₁", ylabel="x₂", title=f"RWMH on the banana: the {NUM_CHAINS} final states");""",
    ),
    (
        "md",
        """Read R̂ before the mean. Random-walk proposals move slowly along the banana's long,
curved ridge: a few thousand steps give each chain only a handful of effective draws,
and R̂ above 1.01 (Vehtari et al. 2021's threshold) says the chains still disagree.
Longer chains, or proposals that follow the gradient, are the remedy; a sharp R̂ is
the warning a single long chain cannot give.""",
    ),
    (
        "md",
        """## MALA: Langevin with the MH correction

MALA is exact at step sizes where ULA is visibly biased. Dual averaging adapts the
step size to the optimal acceptance 0.574 (Roberts & Rosenthal 1998) and the warm-up
returns the parameters.""",
    ),
    (
        "code",
        """initial = 3 * jax.random.normal(jax.random.key(6), (NUM_CHAINS, 2))
warmup = ej.samplers.adapt(
    jax.random.key(7), "mala", mixture.logdensity_fn, initial, NUM_STEPS // 2
)
mala = ej.samplers.mala(mixture.logdensity_fn, **warmup.parameters)
result = ej.run_chains(jax.random.key(8), mala, warmup.states.position, NUM_STEPS)
print("parameters", {k: np.asarray(v).round(3) for k, v in warmup.parameters.items()})
print("acceptance", float(result.acceptance_rate.mean()))
print("mean", result.samples.mean(axis=(0, 1)), "exact", mixture.mean)
subset = result.samples[:1000, -1]
print(
    "KSD",
    float(ej.diagnostics.kernel_stein_discrepancy(subset, score_fn)),
    "exact samples",
    float(ej.diagnostics.kernel_stein_discrepancy(exact[:1000], score_fn)),
)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(warmup.info.acceptance_rate, label="mean over chains")
axes[0].axhline(0.574, color="k", ls="--", label="target 0.574")
axes[0].set(xlabel="warm-up step", ylabel="acceptance rate", title="MALA warm-up (dual averaging)")
axes[0].legend(fontsize=8)
axes[1].plot(result.samples[:4, :, 0].T, lw=0.6)
axes[1].set(xlabel="step after warm-up", ylabel="x₁", title="trace of x₁, 4 of the chains");""",
    ),
    (
        "md",
        """## Gibbs sampling

Where conditionals are known, Gibbs draws them exactly: coordinate-wise for a Gaussian,
and for the Ising model $f(s) = J\\sum_{\\langle ij \\rangle} s_i s_j + h\\sum_i s_i$ the
checkerboard colours are updated in parallel. On a 4×4 torus, exact enumeration of all
$2^{16}$ states gives $\\langle E\\rangle$ and $\\langle|m|\\rangle$ to compare with.""",
    ),
    (
        "code",
        """side, coupling = 4, 0.4
exact_ising = ej.densities.ising_exact_expectations(side, coupling)
gibbs = ej.samplers.ising_gibbs(coupling)
spins = jnp.where(jax.random.bernoulli(jax.random.key(9), 0.5, (NUM_CHAINS, side, side)), 1.0, -1.0)
result = ej.run_chains(jax.random.key(10), gibbs, spins, NUM_STEPS, num_burnin=100)
energy = -jax.vmap(jax.vmap(ej.densities.ising(side, coupling).logdensity_fn))(result.samples)
abs_m = jnp.abs(result.samples.mean(axis=(-1, -2)))
energy_error = float(energy.mean(1).std() / NUM_CHAINS**0.5)
abs_m_error = float(abs_m.mean(1).std() / NUM_CHAINS**0.5)
print(f"<E>   Gibbs {float(energy.mean()):.3f} ± {energy_error:.3f}", end="")
print(f"   exact {exact_ising.energy:.3f}")
print(
    f"<|m|> Gibbs {float(abs_m.mean()):.4f} ± {abs_m_error:.4f}"
    f"   exact {exact_ising.abs_magnetization:.4f}"
)""",
    ),
    (
        "md",
        """## Takeaways

* Uncorrected Langevin is biased at every finite step, and with the lecture's
  $(\\eta, \\eta)$ pair it targets $p^2$; the MH correction makes either proposal exact.
* One vectorised kernel runs thousands of chains (`ej.run_chains`: `vmap` over chains,
  `lax.scan` over steps), so ESS, R̂ and MCSE come from many short chains.
* Mixing between well-separated modes is still slow — the lecture's "Langevin needs
  infinitely many steps", which motivates the noise-perturbed targets of diffusion.""",
    ),
]


def main() -> None:
    write_notebook(CELLS, Path(__file__).with_name("01_sampling.ipynb"))


if __name__ == "__main__":
    main()

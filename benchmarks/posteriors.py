"""Posterior benchmark: ebm_jax MALA beside BlackJAX NUTS and BlackJAX MALA.

Run as ``python benchmarks/posteriors.py``; ``--quick`` is a smoke run (tiny
chains, under a minute), ``--posteriors a,b`` and ``--methods a,b`` choose
rows, ``--make-references`` regenerates ``benchmarks/references/*.json``.
Results go to ``benchmarks/results/posteriors.json`` and ``.md`` (or beside
``--out``; a ``--quick`` run without ``--out`` writes under ``out/benchmarks/quick/``).

**Posteriors**, each a flat unconstrained vector with the log-Jacobians of its
transforms included, compared on constrained quantities:

======================  ====  ==========================================================
name                    dim   reference
======================  ====  ==========================================================
eight_schools_ncp       10    posteriordb (Stan NUTS, 10 x 1000 draws), means, sds, MCSEs
garch11                 4     posteriordb, as above
breast_cancer_logistic  31    long BlackJAX NUTS run (``benchmarks/references``)
diabetes_hierarchical   13    long BlackJAX NUTS run (``benchmarks/references``)
gaussian_ill_cond       100   exact: sds log-spaced over 3 decades, axis-aligned
funnel (hard)           10    exact: v ~ N(0, 3^2), x_i | v ~ N(0, e^v); x_i sds not compared
collinear_reg. (hard)   3     exact (conjugate Gaussian), posterior correlation -0.99
gaussian_mixture (hard) 5     exact: two unit-covariance modes 4.5 sds apart, weights 0.3/0.7
======================  ====  ==========================================================

**Methods**, every chain started as Stan starts one, uniform(-2, 2) in the
unconstrained space (the same draws for every method):

* ``ebm_mala``: ``ej.samplers.adapt(key, "mala", ...)`` with its defaults
  (the robust many-chain warm-up, ``preconditioner="auto"``: dense up to 128
  coordinates, so dense on every posterior here), then ``ej.run_chains``
  with ``ej.samplers.mala(**result.parameters)``.
* ``ebm_mala_plain``: the warm-up's previous default,
  ``adapt(..., robust=False, preconditioner="diagonal")``: one step size on
  the acceptance averaged over all chains, a diagonal preconditioner from all
  chains; skipped when ``adapt`` has no ``robust`` keyword.
* ``blackjax_nuts``: ``blackjax.window_adaptation(blackjax.nuts, ...)`` with
  its defaults, run on every chain (``vmap``, Stan's per-chain protocol: each
  chain adapts its own step size and diagonal mass matrix from its own
  uniform(-2, 2) start), then ``jit(scan(vmap(nuts kernel)))`` with the
  per-chain parameters.
* ``blackjax_nuts_dense``: the same with ``is_mass_matrix_diagonal=False``
  (a dense mass matrix per chain), the like-for-like match of ``ebm_mala``.
* ``blackjax_mala``: ``blackjax.mala`` without preconditioner; its one
  shared step size is tuned by BlackJAX's dual averaging
  (``blackjax.adaptation.step_size.dual_averaging_adaptation``, target
  0.574, driven by the acceptance averaged over chains, the same rule ebm_jax
  uses) during the warm-up, then fixed.

**Work**: every method makes 1000 warm-up iterations and keeps 1000 draws per
chain; the MALAs keep every 4th of 4000 steps (4 gradients per kept draw,
against NUTS's 5 to 35 here), NUTS keeps every draw. The MALAs run 256
chains, NUTS 64, since one NUTS iteration costs up to 1023 gradients and
``vmap`` runs the chains in lockstep (each step lasts as long as the
longest trajectory). The efficiency columns divide by the time actually
spent, so the chain counts do not favour anyone: ESS/s over the sampling
seconds, and over warm-up plus sampling seconds. Gradients per draw (the
mean number of leapfrog steps, for NUTS) are reported beside them.

**Metrics** on the constrained draws, ``(chains, draws, quantities)``: max
rank-R̂ and min bulk ESS (``ej.diagnostics``), and for each quantity with a
reference ``z = (estimate - reference) / sqrt(MCSE^2 + reference_se^2)`` for
its mean and its sd (MCSEs from ``ej.diagnostics.mcse``); a method passes a
posterior when ``max |z| <= 4`` and ``max R̂ <= 1.01``.

**Timing**, waited for with ``block_until_ready``, compilation apart
("compile s", warm-up plus sampling): the BlackJAX programs are compiled
ahead of time (``jit(f).lower(...).compile()``, timed) and then run once;
ebm_jax compiles inside ``adapt`` and ``run_chains``, so each of its phases
is called twice with the same arguments, the second call is the run time and
the first call's surplus the compile time. A method that reuses a program an
earlier one compiled (the plain warm-up's sampler) shows little compile time.
Timing is in one process on whatever the machine is; on a shared CPU, take
ratios below about 1.5x as noise.

``--quick`` runs 16 MALA and 4 NUTS chains of 150 + 100 iterations on
eight_schools_ncp and breast_cancer_logistic only (``--posteriors`` for
others): it checks that everything runs, not that anything passes.

References: ``benchmarks/references/<name>.json`` hold the NUTS references
(32 chains x 4000 draws after 1000 warm-up iterations, per-chain window
adaptation, float32; the file records how it was made); the posteriordb
ones are read from ``tests/data/posteriordb``.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from _common import environment as common_environment
from _common import optional_blackjax, out_help, output_path, quick_note, write_json

import ebm_jax as ej

RESULTS_FILE = "posteriors.json"
REFERENCES_DIR = Path(__file__).resolve().parent / "references"
POSTERIORDB_DIRS = (Path(__file__).resolve().parents[1] / "tests" / "data" / "posteriordb",)
MAX_ABS_Z = 4.0
MAX_RHAT = 1.01
MALA_TARGET_ACCEPTANCE = 0.574
_MOMENT_KEYS = ("mean", "sd", "mean_se", "sd_se")


class Settings(NamedTuple):
    """Iterations per chain and chain counts of one run."""

    num_warmup: int
    num_samples: int
    mala_chains: int
    nuts_chains: int
    mala_thin: int = 1  # MALA steps per kept draw


FULL = Settings(num_warmup=1000, num_samples=1000, mala_chains=256, nuts_chains=64, mala_thin=4)
QUICK = Settings(num_warmup=150, num_samples=100, mala_chains=16, nuts_chains=4)
# The reference runs: long BlackJAX NUTS, many draws per chain.
REFERENCE = Settings(num_warmup=1000, num_samples=4000, mala_chains=0, nuts_chains=32)


class Unavailable(Exception):
    """A posterior or method that cannot run here (a module or a file is missing)."""


# --------------------------------------------------------------------------------------
# posteriors
# --------------------------------------------------------------------------------------


Posterior = ej.densities.Posterior  # a flat unconstrained vector, log-Jacobians in


class Case(NamedTuple):
    """A posterior with its reference moments.

    ``reference`` holds arrays ``mean``, ``sd``, ``mean_se``, ``sd_se`` aligned
    with ``posterior.names``; a NaN reference is not compared.
    """

    posterior: Posterior
    reference: dict[str, np.ndarray]
    reference_source: str
    hard: str | None = None  # why the posterior is hard, or None


def _identity(position: jax.Array) -> jax.Array:
    return position


def _standardise(values: np.ndarray) -> np.ndarray:
    return (values - values.mean(axis=0)) / values.std(axis=0)


def _exact_reference(mean: Any, sd: Any) -> dict[str, np.ndarray]:
    mean, sd = np.asarray(mean, np.float64), np.asarray(sd, np.float64)
    return {"mean": mean, "sd": sd, "mean_se": np.zeros_like(mean), "sd_se": np.zeros_like(sd)}


def _aligned(reference: dict[str, Any], names: tuple[str, ...], source: str) -> dict:
    """Reference arrays reordered to ``names`` (every name must be present)."""
    index = {name: i for i, name in enumerate(reference["names"])}
    missing = [name for name in names if name not in index]
    if missing:
        raise ValueError(f"{source} has no reference for {missing}")
    order = [index[name] for name in names]
    return {key: np.asarray(reference[key], np.float64)[order] for key in _MOMENT_KEYS}


def _posteriordb_case(factory_name: str, file_stem: str) -> Case:
    posterior = getattr(ej.densities, factory_name)(dtype=jnp.float32)
    for folder in POSTERIORDB_DIRS:
        path = folder / f"{file_stem}.json"
        if path.exists():
            reference = json.loads(path.read_text())["reference"]
            return Case(posterior, _aligned(reference, posterior.names, str(path)), str(path))
    raise Unavailable(f"no reference file {file_stem}.json in {[str(p) for p in POSTERIORDB_DIRS]}")


def eight_schools_ncp() -> Case:
    """posteriordb eight_schools-eight_schools_noncentered: theta[1..8], mu, tau."""
    return _posteriordb_case("eight_schools_noncentered", "eight_schools_noncentered")


def garch11() -> Case:
    """posteriordb garch-garch11: mu, alpha0, alpha1, beta1."""
    return _posteriordb_case("garch11", "garch11")


def _sklearn_datasets() -> Any:
    try:
        from sklearn import datasets
    except ImportError:
        raise Unavailable("scikit-learn is not installed") from None
    return datasets


def breast_cancer_logistic_posterior() -> Posterior:
    """Logistic regression on scikit-learn's breast-cancer data, d = 31.

    Standardised features and an intercept, independent N(0, 1) priors on
    all 31 coefficients: :math:`\\log p(w \\mid y) = \\sum_n [y_n \\eta_n -
    \\log(1 + e^{\\eta_n})] - \\|w\\|^2 / 2` with :math:`\\eta = [1, X] w`.
    The data are nearly separable, so the likelihood alone is improper in
    some directions and the prior shapes them.
    """
    data = _sklearn_datasets().load_breast_cancer()
    design = np.column_stack([np.ones(len(data.target)), _standardise(data.data)])
    design_j = jnp.asarray(design, jnp.float32)
    labels = jnp.asarray(data.target, jnp.float32)

    def logdensity_fn(position: jax.Array) -> jax.Array:
        eta = design_j @ position
        return jnp.sum(labels * eta - jax.nn.softplus(eta)) - 0.5 * jnp.sum(position**2)

    names = ("intercept", *(f"beta[{name}]" for name in data.feature_names))
    return Posterior("breast_cancer_logistic", logdensity_fn, _identity, names, design.shape[1])


def diabetes_hierarchical_posterior() -> Posterior:
    """Linear regression on scikit-learn's diabetes data with a shrinkage prior, d = 13.

    Standardised features and response (442 patients, 10 features),

    .. math::

       y_n \\sim N(\\alpha + x_n^\\top \\beta, \\sigma^2), \\quad
       \\beta_j \\mid \\tau \\sim N(0, \\tau^2), \\quad
       \\tau \\sim \\mathrm{Cauchy}^+(0, 1), \\quad
       \\sigma \\sim N^+(0, 1), \\quad \\alpha \\sim N(0, 1),

    on the unconstrained vector :math:`(\\alpha, \\beta, \\log\\tau, \\log\\sigma)`
    (log-Jacobians :math:`\\log\\tau + \\log\\sigma` added). The global scale
    couples the coefficients (a mild funnel in the centred parameterisation)
    and the serum features s1, s2 (total and LDL cholesterol) are strongly
    collinear.
    """
    data = _sklearn_datasets().load_diabetes()
    features = jnp.asarray(_standardise(data.data), jnp.float32)
    response = jnp.asarray(_standardise(data.target), jnp.float32)
    num_data, num_features = features.shape

    def logdensity_fn(position: jax.Array) -> jax.Array:
        alpha, beta = position[0], position[1 : 1 + num_features]
        log_tau, log_sigma = position[1 + num_features], position[2 + num_features]
        residual = response - alpha - features @ beta
        log_likelihood = -0.5 * jnp.sum(residual**2) * jnp.exp(-2.0 * log_sigma)
        log_likelihood -= num_data * log_sigma
        log_prior_beta = -0.5 * jnp.sum(beta**2) * jnp.exp(-2.0 * log_tau)
        log_prior_beta -= num_features * log_tau
        log_prior_tau = -jnp.log1p(jnp.exp(2.0 * log_tau)) + log_tau  # half-Cauchy, Jacobian
        log_prior_sigma = -0.5 * jnp.exp(2.0 * log_sigma) + log_sigma  # half-normal, Jacobian
        return log_likelihood + log_prior_beta + log_prior_tau + log_prior_sigma - 0.5 * alpha**2

    def constrain_fn(position: jax.Array) -> jax.Array:
        return position.at[-2:].set(jnp.exp(position[-2:]))

    names = ("alpha", *(f"beta[{name}]" for name in data.feature_names), "tau", "sigma")
    return Posterior("diabetes_hierarchical", logdensity_fn, constrain_fn, names, num_features + 3)


def _nuts_reference_case(build: Callable[[], Posterior]) -> Case:
    posterior = build()
    path = REFERENCES_DIR / f"{posterior.name}.json"
    if not path.exists():
        raise Unavailable(f"no reference {path}; make it with --make-references")
    reference = json.loads(path.read_text())["reference"]
    return Case(posterior, _aligned(reference, posterior.names, str(path)), str(path))


def breast_cancer_logistic() -> Case:
    return _nuts_reference_case(breast_cancer_logistic_posterior)


def diabetes_hierarchical() -> Case:
    return _nuts_reference_case(diabetes_hierarchical_posterior)


def gaussian_ill_cond(dim: int = 100, decades: float = 3.0) -> Case:
    """N(1, diag(sd^2)) with sds log-spaced from 10^-2 to 10^(decades - 2)."""
    sds = np.logspace(-2.0, decades - 2.0, dim)
    mean = np.ones(dim)
    target = ej.densities.diagonal_gaussian(jnp.asarray(mean), jnp.asarray(sds**2))
    names = tuple(f"x[{i}]" for i in range(dim))
    posterior = Posterior("gaussian_ill_cond", target.logdensity_fn, _identity, names, dim)
    return Case(posterior, _exact_reference(mean, sds), "exact")


def funnel(dim: int = 10, scale: float = 3.0) -> Case:
    """Neal's funnel, ``ej.densities.funnel``: v ~ N(0, scale^2), x_i | v ~ N(0, e^v).

    The sds of the x_i (exactly :math:`e^{\\sigma^2/4}`) are not compared:
    their kurtosis is :math:`3e^{\\sigma^2} \\approx 24{,}000`, so no chain's
    MCSE of them can be trusted.
    """
    target = ej.densities.funnel(dim, scale)
    names = ("v", *(f"x[{i}]" for i in range(1, dim)))
    posterior = Posterior("funnel", target.logdensity_fn, _identity, names, dim)
    sd = np.full(dim, np.nan)
    sd[0] = scale
    return Case(
        posterior,
        _exact_reference(np.zeros(dim), sd),
        "exact",
        hard="the neck (v < -3) needs step sizes far below the mouth's",
    )


def collinear_regression(num_data: int = 100, jitter: float = 0.1) -> Case:
    """Linear regression, y = b0 + b1 x1 + b2 x2 + N(0, 1), with x2 = x1 + 0.1 N(0, 1).

    Known noise scale 1 and N(0, 10^2) priors: the posterior is Gaussian with
    precision :math:`X^\\top X + I/100` and correlation ≈ -0.99 between b1
    and b2; its moments are exact (float64 NumPy).
    """
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=num_data)
    x2 = x1 + jitter * rng.normal(size=num_data)
    design = np.column_stack([np.ones(num_data), x1, x2])
    response = design @ np.array([1.0, 1.0, 1.0]) + rng.normal(size=num_data)
    precision = design.T @ design + np.eye(3) / 100.0
    covariance = np.linalg.inv(precision)
    mean = covariance @ design.T @ response
    design_j = jnp.asarray(design, jnp.float32)
    response_j = jnp.asarray(response, jnp.float32)

    def logdensity_fn(position: jax.Array) -> jax.Array:
        residual = response_j - design_j @ position
        return -0.5 * jnp.sum(residual**2) - 0.5 * jnp.sum(position**2) / 100.0

    posterior = Posterior("collinear_regression", logdensity_fn, _identity, ("b0", "b1", "b2"), 3)
    return Case(
        posterior,
        _exact_reference(mean, np.sqrt(np.diag(covariance))),
        "exact",
        hard="correlation -0.99: a diagonal preconditioner cannot whiten it",
    )


def gaussian_mixture(dim: int = 5) -> Case:
    """0.3 N(-1, I) + 0.7 N(+1, I) in 5-d: modes 2√5 ≈ 4.5 sds apart.

    Chains started uniformly in (-2, 2)^5 land near either mode about
    equally often, so a sampler must move between modes to get the 0.3/0.7
    weights (mean 0.4, sd √1.84 per coordinate).
    """
    means = jnp.stack([-jnp.ones(dim), jnp.ones(dim)])
    target = ej.densities.gaussian_mixture(jnp.array([0.3, 0.7]), means, 1.0)
    names = tuple(f"x[{i}]" for i in range(dim))
    posterior = Posterior("gaussian_mixture", target.logdensity_fn, _identity, names, dim)
    sd = np.sqrt(np.diag(np.asarray(target.covariance, np.float64)))
    return Case(
        posterior,
        _exact_reference(np.asarray(target.mean), sd),
        "exact",
        hard="two modes: the chains must cross a density ratio of e^-2.5 to reach 0.3/0.7",
    )


CASES: dict[str, Callable[[], Case]] = {
    "eight_schools_ncp": eight_schools_ncp,
    "garch11": garch11,
    "breast_cancer_logistic": breast_cancer_logistic,
    "diabetes_hierarchical": diabetes_hierarchical,
    "gaussian_ill_cond": gaussian_ill_cond,
    "funnel": funnel,
    "collinear_regression": collinear_regression,
    "gaussian_mixture": gaussian_mixture,
}
# The quick run's posteriors: one with a posteriordb and one with a NUTS reference.
QUICK_POSTERIORS = ("eight_schools_ncp", "breast_cancer_logistic")
NUTS_REFERENCES: dict[str, Callable[[], Posterior]] = {
    "breast_cancer_logistic": breast_cancer_logistic_posterior,
    "diabetes_hierarchical": diabetes_hierarchical_posterior,
}


# --------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------


class Timed(NamedTuple):
    value: Any
    run_s: float
    compile_s: float


def _wall(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = jax.block_until_ready(fn())
    return value, time.perf_counter() - start


def timed_twice(fn: Callable[[], Any]) -> Timed:
    """Two identical calls of ``fn``: the second is the run, the first's surplus the compile."""
    _, first_s = _wall(fn)
    value, run_s = _wall(fn)
    return Timed(value, run_s, max(0.0, first_s - run_s))


def timed_ahead_of_time(jitted: Any, *args: Any) -> Timed:
    """Compile ``jitted`` for ``args`` ahead of time (timed apart), then one timed run."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - start
    value, run_s = _wall(lambda: compiled(*args))
    return Timed(value, run_s, compile_s)


# --------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------


class MethodRun(NamedTuple):
    """What one method produced: unconstrained draws and its costs."""

    draws: jax.Array  # (chains, draws, dim)
    warmup: Timed
    sampling: Timed
    gradients_per_draw: float  # sampling phase; 1 for MALA
    details: dict[str, Any]


def _has_robust_keyword() -> bool:
    return "robust" in inspect.signature(ej.samplers.adapt).parameters


def run_ebm_mala(
    rng_key: jax.Array, posterior: Posterior, positions: jax.Array, settings: Settings, **options
) -> MethodRun:
    """``ej.samplers.adapt`` (defaults plus ``options``), then ``ej.run_chains``; timed twice."""
    logdensity_fn = posterior.logdensity_fn
    warmup_key, sample_key = jax.random.split(rng_key)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warmup = timed_twice(
            lambda: ej.samplers.adapt(
                warmup_key, "mala", logdensity_fn, positions, settings.num_warmup, **options
            )
        )
    adapted = warmup.value
    algorithm = ej.samplers.mala(logdensity_fn, **adapted.parameters)
    sampling = timed_twice(
        lambda: ej.run_chains(
            sample_key,
            algorithm,
            adapted.states.position,
            settings.num_samples * settings.mala_thin,
            thin=settings.mala_thin,
            progress=False,
        )
    )
    chains = sampling.value
    info = adapted.info
    final_window = info.acceptance_rate[info.window == info.window[-1]]
    details = {
        "step_size": float(adapted.parameters["step_size"]),
        "acceptance_rate": float(jnp.mean(chains.acceptance_rate)),
        "warmup_final_window_acceptance": float(jnp.mean(final_window)),
        "num_nonfinite": int(jnp.sum(chains.num_nonfinite))
        if chains.num_nonfinite is not None
        else None,
        "warmup_warnings": sorted({str(warning.message) for warning in caught}),
    }
    # Fields of the robust warm-up's info, where this version of ebm_jax has them.
    if hasattr(info, "is_lost"):
        details["num_lost_after_warmup"] = int(jnp.sum(info.is_lost))
    if hasattr(info, "num_reset"):
        details["num_reset_in_warmup"] = int(jnp.sum(info.num_reset))
    return MethodRun(
        chains.samples, warmup._replace(value=None), sampling, settings.mala_thin, details
    )


def run_ebm_mala_plain(
    rng_key: jax.Array, posterior: Posterior, positions: jax.Array, settings: Settings
) -> MethodRun:
    """The warm-up's previous default: plain windows, diagonal preconditioner."""
    if not _has_robust_keyword():
        raise Unavailable("ej.samplers.adapt has no robust keyword")
    return run_ebm_mala(
        rng_key, posterior, positions, settings, robust=False, preconditioner="diagonal"
    )


def _blackjax() -> Any:
    blackjax = optional_blackjax()
    if blackjax is None:
        raise Unavailable("blackjax is not installed")
    return blackjax


def run_blackjax_nuts(
    rng_key: jax.Array,
    posterior: Posterior,
    positions: jax.Array,
    settings: Settings,
    *,
    dense: bool = False,
) -> MethodRun:
    """Per-chain ``window_adaptation`` (vmap), then NUTS with each chain's parameters."""
    blackjax = _blackjax()
    from blackjax.adaptation.base import get_filter_adapt_info_fn

    logdensity_fn = posterior.logdensity_fn
    num_chains = positions.shape[0]
    window_adaptation = blackjax.window_adaptation(
        blackjax.nuts,
        logdensity_fn,
        is_mass_matrix_diagonal=not dense,
        adaptation_info_fn=get_filter_adapt_info_fn(info_keys={"num_integration_steps"}),
    )

    @jax.jit
    def warm_up(keys: jax.Array, positions: jax.Array) -> Any:
        def one_chain(rng_key: jax.Array, position: jax.Array) -> Any:
            (state, parameters), info = window_adaptation.run(
                rng_key, position, settings.num_warmup
            )
            return state, parameters, info.info.num_integration_steps

        return jax.vmap(one_chain)(keys, positions)

    kernel = blackjax.nuts.build_kernel()

    def step(rng_key, state, step_size, inverse_mass_matrix):
        return kernel(rng_key, state, logdensity_fn, step_size, inverse_mass_matrix)

    @jax.jit
    def sample(rng_key: jax.Array, states: Any, step_size: jax.Array, inverse_mass_matrix: Any):
        def one_step(states, step_key):
            keys = jax.random.split(step_key, num_chains)
            states, info = jax.vmap(step)(keys, states, step_size, inverse_mass_matrix)
            kept = (
                states.position,
                info.num_integration_steps,
                info.is_divergent,
                info.acceptance_rate,
            )
            return states, kept

        step_keys = jax.random.split(rng_key, settings.num_samples)
        _, (draws, num_steps, divergent, acceptance) = jax.lax.scan(one_step, states, step_keys)
        return jnp.swapaxes(draws, 0, 1), num_steps, divergent, acceptance

    warmup_key, sample_key = jax.random.split(rng_key)
    warmup = timed_ahead_of_time(warm_up, jax.random.split(warmup_key, num_chains), positions)
    states, parameters, warmup_steps = warmup.value
    sampling = timed_ahead_of_time(
        sample, sample_key, states, parameters["step_size"], parameters["inverse_mass_matrix"]
    )
    draws, num_steps, divergent, acceptance = sampling.value
    step_sizes = np.asarray(parameters["step_size"])
    details = {
        "step_size_median": float(np.median(step_sizes)),
        "step_size_range": [float(step_sizes.min()), float(step_sizes.max())],
        "acceptance_rate": float(jnp.mean(acceptance)),
        "num_divergent": int(jnp.sum(divergent)),
        "warmup_gradients_per_iteration": float(jnp.mean(warmup_steps)),
        "max_integration_steps": int(jnp.max(num_steps)),
    }
    gradients_per_draw = float(jnp.mean(num_steps))
    return MethodRun(draws, warmup._replace(value=None), sampling, gradients_per_draw, details)


def run_blackjax_mala(
    rng_key: jax.Array, posterior: Posterior, positions: jax.Array, settings: Settings
) -> MethodRun:
    """BlackJAX dual averaging of one shared step size over all chains, then fixed-step MALA."""
    blackjax = _blackjax()
    from blackjax.adaptation.step_size import dual_averaging_adaptation

    logdensity_fn = posterior.logdensity_fn
    num_chains, dim = positions.shape
    kernel = blackjax.mala.build_kernel()
    da_init, da_update, da_final = dual_averaging_adaptation(MALA_TARGET_ACCEPTANCE)

    def step(rng_key, state, step_size):
        return kernel(rng_key, state, logdensity_fn, step_size)

    @jax.jit
    def warm_up(rng_key: jax.Array, positions: jax.Array) -> Any:
        states = jax.vmap(lambda position: blackjax.mala.init(position, logdensity_fn))(positions)

        def one_step(carry, step_key):
            states, da_state = carry
            keys = jax.random.split(step_key, num_chains)
            step_size = jnp.exp(da_state.log_step_size)
            states, info = jax.vmap(step, (0, 0, None))(keys, states, step_size)
            acceptance = jnp.mean(jnp.nan_to_num(info.acceptance_rate))
            return (states, da_update(da_state, acceptance)), acceptance

        step_keys = jax.random.split(rng_key, settings.num_warmup)
        # The initial step size ebm_jax's adapt uses for MALA: d^(-1/3).
        carry = (states, da_init(jnp.asarray(dim ** (-1 / 3), positions.dtype)))
        (states, da_state), acceptance = jax.lax.scan(one_step, carry, step_keys)
        return states, da_final(da_state), acceptance

    @jax.jit
    def sample(rng_key: jax.Array, states: Any, step_size: jax.Array) -> Any:
        def one_step(states, step_key):
            keys = jax.random.split(step_key, num_chains)
            states, info = jax.vmap(step, (0, 0, None))(keys, states, step_size)
            return states, info.acceptance_rate

        def one_draw(states, draw_key):  # mala_thin steps, the last one kept
            thin_keys = jax.random.split(draw_key, settings.mala_thin)
            states, acceptance = jax.lax.scan(one_step, states, thin_keys)
            return states, (states.position, jnp.mean(acceptance, axis=0))

        draw_keys = jax.random.split(rng_key, settings.num_samples)
        _, (draws, acceptance) = jax.lax.scan(one_draw, states, draw_keys)
        return jnp.swapaxes(draws, 0, 1), acceptance

    warmup_key, sample_key = jax.random.split(rng_key)
    warmup = timed_ahead_of_time(warm_up, warmup_key, positions)
    states, step_size, warmup_acceptance = warmup.value
    sampling = timed_ahead_of_time(sample, sample_key, states, step_size)
    draws, acceptance = sampling.value
    final_window = warmup_acceptance[-max(1, settings.num_warmup // 10) :]
    details = {
        "step_size": float(step_size),
        "acceptance_rate": float(jnp.mean(acceptance)),
        "warmup_final_window_acceptance": float(jnp.mean(final_window)),
    }
    return MethodRun(draws, warmup._replace(value=None), sampling, settings.mala_thin, details)


class Method(NamedTuple):
    label: str
    run: Callable[..., MethodRun]
    is_nuts: bool


METHODS: dict[str, Method] = {
    "ebm_mala": Method("ebm_jax MALA", run_ebm_mala, False),
    "ebm_mala_plain": Method("ebm_jax MALA (plain warm-up)", run_ebm_mala_plain, False),
    "blackjax_nuts": Method("BlackJAX NUTS", run_blackjax_nuts, True),
    "blackjax_nuts_dense": Method(
        "BlackJAX NUTS (dense)", functools.partial(run_blackjax_nuts, dense=True), True
    ),
    "blackjax_mala": Method("BlackJAX MALA", run_blackjax_mala, False),
}


# --------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------


def moments_and_diagnostics(constrained: jax.Array) -> dict[str, np.ndarray]:
    """Pooled mean and sd (ddof=1), their MCSEs, rank-R̂ and bulk ESS per quantity."""
    diagnostics = ej.diagnostics
    pooled = np.asarray(constrained, np.float64).reshape(-1, constrained.shape[-1])
    return {
        "mean": pooled.mean(axis=0),
        "sd": pooled.std(axis=0, ddof=1),
        "mcse_mean": np.asarray(diagnostics.mcse(constrained, method="mean"), np.float64),
        "mcse_sd": np.asarray(diagnostics.mcse(constrained, method="sd"), np.float64),
        "rhat": np.asarray(diagnostics.rhat(constrained), np.float64),
        "ess_bulk": np.asarray(diagnostics.ess(constrained), np.float64),
    }


def evaluate(case: Case, run: MethodRun) -> dict[str, Any]:
    """The metrics of one (posterior, method) run; see the module docstring."""
    posterior, reference = case.posterior, case.reference
    constrained = jax.vmap(jax.vmap(posterior.constrain_fn))(run.draws)
    num_chains, num_draws = constrained.shape[:2]
    warmup_s, sampling_s = run.warmup.run_s, run.sampling.run_s
    row: dict[str, Any] = {
        "num_chains": int(num_chains),
        "num_draws": int(num_draws),
        "warmup_s": warmup_s,
        "sampling_s": sampling_s,
        "warmup_compile_s": run.warmup.compile_s,
        "sampling_compile_s": run.sampling.compile_s,
        "gradients_per_draw": run.gradients_per_draw,
        **run.details,
    }
    if not bool(jnp.all(jnp.isfinite(constrained))):
        return row | {"finite": False, "max_rhat": math.inf, "max_abs_z": math.inf, "pass": False}
    stats = moments_and_diagnostics(constrained)
    z_mean = _z(stats["mean"], stats["mcse_mean"], reference["mean"], reference["mean_se"])
    z_sd = _z(stats["sd"], stats["mcse_sd"], reference["sd"], reference["sd_se"])
    abs_z = np.abs(np.concatenate([z_mean, z_sd]))
    max_rhat = float(np.nanmax(stats["rhat"]))
    min_ess = float(np.nanmin(stats["ess_bulk"]))
    max_abs_z = float(np.nanmax(abs_z))
    worst = int(np.nanargmax(abs_z))
    moment = "sd" if worst >= len(z_mean) else "mean"
    num_gradients = num_chains * num_draws * run.gradients_per_draw
    return row | {
        "finite": True,
        "max_rhat": max_rhat,
        "worst_rhat": posterior.names[int(np.nanargmax(stats["rhat"]))],
        "min_ess_bulk": min_ess,
        "ess_per_s": min_ess / sampling_s,
        "ess_per_s_with_warmup": min_ess / (warmup_s + sampling_s),
        "ess_per_1k_gradients": 1000.0 * min_ess / num_gradients,
        "max_abs_z": max_abs_z,
        "worst_z": f"{moment}({posterior.names[worst % len(z_mean)]})",
        "pass": bool(max_abs_z <= MAX_ABS_Z and max_rhat <= MAX_RHAT),
        "per_quantity": {
            "names": list(posterior.names),
            **{key: _json_list(value) for key, value in stats.items()},
            "z_mean": _json_list(z_mean),
            "z_sd": _json_list(z_sd),
        },
    }


def _z(estimate: np.ndarray, mcse: np.ndarray, reference: np.ndarray, reference_se: np.ndarray):
    """z = (estimate - reference) / sqrt(MCSE^2 + reference_se^2); NaN where no reference."""
    return (estimate - reference) / np.sqrt(mcse**2 + reference_se**2)


def _json_list(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(value) else float(value) for value in np.asarray(values)]


# --------------------------------------------------------------------------------------
# benchmark and references
# --------------------------------------------------------------------------------------


def initial_positions(rng_key: jax.Array, num_chains: int, dim: int) -> jax.Array:
    """Stan's default initialisation: uniform(-2, 2) in the unconstrained space."""
    return jax.random.uniform(rng_key, (num_chains, dim), jnp.float32, -2.0, 2.0)


def bench_case(
    name: str, case: Case, methods: list[str], settings: Settings, seed: int
) -> list[dict[str, Any]]:
    posterior = case.posterior
    init_key, *method_keys = jax.random.split(
        jax.random.fold_in(jax.random.key(seed), 0), len(METHODS) + 1
    )
    positions = initial_positions(
        init_key, max(settings.mala_chains, settings.nuts_chains), posterior.dim
    )
    rows = []
    for method_name in methods:
        method = METHODS[method_name]
        num_chains = settings.nuts_chains if method.is_nuts else settings.mala_chains
        row: dict[str, Any] = {
            "posterior": name,
            "method": method_name,
            "label": method.label,
            "hard": case.hard,
        }
        try:
            rng_key = method_keys[list(METHODS).index(method_name)]
            run = method.run(rng_key, posterior, positions[:num_chains], settings)
        except Unavailable as reason:
            rows.append(row | {"skipped": str(reason)})
            print(f"  {method.label:<30} skipped: {reason}", flush=True)
            continue
        row |= evaluate(case, run)
        rows.append(row)
        print("  " + _progress_line(row), flush=True)
    return rows


def make_reference(name: str, seed: int) -> dict[str, Any]:
    """A long BlackJAX NUTS run (``REFERENCE`` settings): means, sds and their MCSEs."""
    posterior = NUTS_REFERENCES[name]()
    init_key, run_key = jax.random.split(jax.random.key(10_000 + seed))
    positions = initial_positions(init_key, REFERENCE.nuts_chains, posterior.dim)
    start = time.perf_counter()
    run = run_blackjax_nuts(run_key, posterior, positions, REFERENCE)
    constrained = jax.vmap(jax.vmap(posterior.constrain_fn))(run.draws)
    stats = moments_and_diagnostics(constrained)
    seconds = time.perf_counter() - start
    blackjax = _blackjax()
    report = {
        "name": name,
        "method": {
            "sampler": "blackjax.nuts after blackjax.window_adaptation (diagonal mass "
            "matrix), adapted per chain (vmap), float32",
            "blackjax": blackjax.__version__,
            "jax": jax.__version__,
            "num_chains": REFERENCE.nuts_chains,
            "num_warmup": REFERENCE.num_warmup,
            "num_samples": REFERENCE.num_samples,
            "init": "uniform(-2, 2) in the unconstrained space",
            "seed": 10_000 + seed,
            "seconds": seconds,
            "num_divergent": run.details["num_divergent"],
            "gradients_per_draw": run.gradients_per_draw,
            "max_rhat": float(np.max(stats["rhat"])),
            "ess_bulk_min": float(np.min(stats["ess_bulk"])),
            "summary": "mean and sd pooled over all draws (sd with ddof=1); mean_se and "
            "sd_se are ej.diagnostics.mcse(method='mean' / 'sd'), ArviZ's estimators",
            "made_by": "python benchmarks/posteriors.py --make-references",
        },
        "reference": {
            "names": list(posterior.names),
            "mean": stats["mean"].tolist(),
            "sd": stats["sd"].tolist(),
            "mean_se": stats["mcse_mean"].tolist(),
            "sd_se": stats["mcse_sd"].tolist(),
            "ess_bulk": stats["ess_bulk"].tolist(),
            "rhat": stats["rhat"].tolist(),
        },
    }
    path = REFERENCES_DIR / f"{name}.json"
    write_json(path, report, quick=False)
    method = report["method"]
    print(
        f"  {name}: {seconds:.0f} s, max R̂ {method['max_rhat']:.4f}, min ESS "
        f"{method['ess_bulk_min']:.0f}, {method['num_divergent']} divergent, "
        f"{method['gradients_per_draw']:.1f} gradients/draw",
        flush=True,
    )
    return report


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------

TABLE_HEADER = (
    "| posterior | method | chains x draws | warm-up s | sampling s | compile s | grads/draw "
    "| max R̂ | min ESS | ESS/s | ESS/s incl. warm-up | max \\|z\\| (worst) | pass |"
)


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-" if value is None else str(value)
    return format(value, fmt)


def table_row(row: dict[str, Any]) -> str:
    name = row["posterior"] + (" (hard)" if row.get("hard") else "")
    if "skipped" in row:
        return f"| {name} | {row['label']} | skipped: {row['skipped']} |" + " |" * 10
    compile_s = row["warmup_compile_s"] + row["sampling_compile_s"]
    worst = f" ({row['worst_z']})" if row.get("worst_z") else ""
    cells = [
        name,
        row["label"],
        f"{row['num_chains']} x {row['num_draws']}",
        f"{row['warmup_s']:.3g}",
        f"{row['sampling_s']:.3g}",
        f"{compile_s:.1f}",
        f"{row['gradients_per_draw']:.1f}",
        _cell(row.get("max_rhat"), ".3f"),
        _cell(row.get("min_ess_bulk"), ".0f"),
        _cell(row.get("ess_per_s"), ".0f"),
        _cell(row.get("ess_per_s_with_warmup"), ".0f"),
        _cell(row.get("max_abs_z"), ".1f") + worst,
        "yes" if row["pass"] else "**no**",
    ]
    return "| " + " | ".join(cells) + " |"


def _progress_line(row: dict[str, Any]) -> str:
    lost = row.get("num_lost_after_warmup")
    return (
        f"{row['label']:<30} warm-up {row['warmup_s']:6.3f} s, sampling {row['sampling_s']:6.3f} s "
        f"(compile {row['warmup_compile_s'] + row['sampling_compile_s']:4.1f} s), "
        f"R̂ {_cell(row.get('max_rhat'), '.3f')}, ESS {_cell(row.get('min_ess_bulk'), '.0f')}, "
        f"|z| {_cell(row.get('max_abs_z'), '.1f')}: {'pass' if row['pass'] else 'FAIL'}"
        + (f" ({lost} chains lost after warm-up)" if lost else "")
    )


def markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        "# Posterior benchmark" + quick_note(settings["quick"]),
        "",
        f"{settings['mala_chains']} MALA chains, {settings['nuts_chains']} NUTS chains; "
        f"{settings['num_warmup']} warm-up iterations + {settings['num_samples']} kept draws per "
        f"chain (MALA: every {settings.get('mala_thin', 1)}th step kept), all started "
        f"uniform(-2, 2); seed {settings['seed']}.",
        f"Pass: max |z| <= {MAX_ABS_Z:g} over the means and sds of the constrained quantities "
        f"and max R̂ <= {MAX_RHAT}. ESS is the min bulk ESS over quantities; seconds exclude "
        "compilation (the compile column).",
        "",
        TABLE_HEADER,
        "|" + "---|" * 13,
        *(table_row(row) for row in report["rows"]),
        "",
    ]
    hard = {row["posterior"]: row["hard"] for row in report["rows"] if row.get("hard")}
    lines += [f"- {name} is hard: {why}." for name, why in hard.items()]
    lines += [f"- {name}: {reason}" for name, reason in report["skipped_posteriors"].items()]
    env = report["environment"]
    lines += [
        "",
        f"jax {env['jax']} on {env['backend']} ({env['device_kind']}, {env['cpu_count']} CPUs), "
        f"blackjax {env['blackjax']}, ebm_jax {env['ebm_jax']}; {env['date']}.",
        "",
    ]
    return "\n".join(lines)


def _names(text: str | None, known: list[str], what: str) -> list[str]:
    if text is None:
        return []
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; choose from {known}")
    return names


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (< 1 min)")
    parser.add_argument("--posteriors", help=f"comma-separated subset of {list(CASES)}")
    parser.add_argument("--methods", help=f"comma-separated subset of {list(METHODS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=out_help("JSON results file; the .md goes beside it", RESULTS_FILE),
    )
    parser.add_argument(
        "--make-references",
        action="store_true",
        help=f"rerun the long NUTS references of {list(NUTS_REFERENCES)} first",
    )
    args = parser.parse_args(argv)
    args.out = output_path(RESULTS_FILE, args.out, quick=args.quick)
    default_posteriors = list(QUICK_POSTERIORS) if args.quick else list(CASES)
    posteriors = _names(args.posteriors, list(CASES), "posteriors") or default_posteriors
    methods = _names(args.methods, list(METHODS), "methods") or list(METHODS)
    settings = QUICK if args.quick else FULL

    environment = common_environment("blackjax")
    print(
        f"jax {environment['jax']} on {environment['backend']} ({environment['device_kind']}); "
        f"blackjax {environment['blackjax']}; {settings}{quick_note(args.quick)}",
        flush=True,
    )
    if args.make_references:
        print("\nReferences (long BlackJAX NUTS runs)", flush=True)
        for name in NUTS_REFERENCES:
            if name in posteriors:
                make_reference(name, args.seed)

    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    start = time.perf_counter()
    for name in posteriors:
        try:
            case = CASES[name]()
        except Unavailable as reason:
            skipped[name] = f"skipped: {reason}"
            print(f"\n{name}: skipped: {reason}", flush=True)
            continue
        hard = f" (hard: {case.hard})" if case.hard else ""
        print(f"\n{name}, d = {case.posterior.dim}{hard}", flush=True)
        rows += bench_case(name, case, methods, settings, args.seed)
    total_s = time.perf_counter() - start

    report: dict[str, Any] = {
        "environment": environment,
        "settings": settings._asdict()
        | {
            "quick": args.quick,
            "seed": args.seed,
            "max_abs_z": MAX_ABS_Z,
            "max_rhat": MAX_RHAT,
            "robust_keyword": _has_robust_keyword(),
            "total_s": total_s,
        },
        "rows": rows,
        "skipped_posteriors": skipped,
    }
    text = markdown(report)
    print("\n" + text, flush=True)
    print(f"total {total_s:.0f} s", flush=True)
    write_json(args.out, report, quick=args.quick)
    args.out.with_suffix(".md").write_text(text)
    return report


if __name__ == "__main__":
    main()

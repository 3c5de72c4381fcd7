"""Reference chains for the diagnostics tests: stationary AR(1), with known ESS."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import special


def ar1_chains(seed: int, num_chains: int, num_draws: int, rho: float) -> np.ndarray:
    """Stationary AR(1) chains x_t = ρ x_{t-1} + sqrt(1 − ρ²) ε_t, unit marginal variance."""
    noise = np.random.default_rng(seed).normal(size=(num_chains, num_draws))
    chains = np.empty_like(noise)
    chains[:, 0] = noise[:, 0]
    for t in range(1, num_draws):
        chains[:, t] = rho * chains[:, t - 1] + math.sqrt(1 - rho**2) * noise[:, t]
    return chains


def mixed_coordinates(num_chains: int, num_draws: int) -> np.ndarray:
    """Coordinates that exercise every branch of ArviZ's ESS / R̂ code, stacked last.

    Strong positive correlation (long Geyer sequence), negative correlation (early
    truncation), rounded draws (tied ranks), a per-chain offset (between-chain
    variance), iid draws and a constant coordinate (ESS = size, R̂ = NaN).
    """
    coordinates = [
        ar1_chains(0, num_chains, num_draws, 0.9),
        ar1_chains(1, num_chains, num_draws, -0.6),
        np.round(ar1_chains(2, num_chains, num_draws, 0.5)),
        ar1_chains(3, num_chains, num_draws, 0.3) + np.linspace(0, 0.5, num_chains)[:, None],
        ar1_chains(4, num_chains, num_draws, 0.0),
        np.full((num_chains, num_draws), 1.5),
    ]
    return np.stack(coordinates, axis=-1)


def arviz_per_coordinate(az, function, samples: np.ndarray, **kwargs) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN R̂ of the constant coordinate
        return np.asarray(function(az.convert_to_dataset(samples), **kwargs)["x"].values)


NUM_CHAINS = 4


def posterior_draws(num_draws: int) -> dict[str, np.ndarray]:
    """Fixed-seed AR(1) chains: a scalar ``mu`` and a ``theta`` of 3 coordinates.

    ``theta[0]`` is Cauchy-distributed (heavy tails: tail ESS far from bulk ESS),
    ``theta[1]`` log-normal (skewed), ``theta[2]`` has one chain shifted by 1.5
    (R̂ well above 1.01).
    """
    mu = ar1_chains(0, NUM_CHAINS, num_draws, 0.2)
    uniform = special.ndtr(ar1_chains(1, NUM_CHAINS, num_draws, 0.3))
    cauchy = np.tan(np.pi * (uniform - 0.5))
    lognormal = np.exp(1.5 * ar1_chains(2, NUM_CHAINS, num_draws, 0.8))
    shifted = ar1_chains(3, NUM_CHAINS, num_draws, 0.5)
    shifted[0] += 1.5
    return {"mu": mu, "theta": np.stack([cauchy, lognormal, shifted], axis=-1)}


def stacked(draws: dict[str, np.ndarray]) -> np.ndarray:
    """The same draws as one (chains, draws, 4) array: one compilation serves both forms."""
    return np.concatenate([draws["mu"][..., None], draws["theta"]], axis=-1)

"""Regenerate ``eight_schools_numpyro.json``: the eight-schools reference posterior by NumPyro NUTS.

Run once, from the repository root, and commit the JSON it writes::

    python -m tests.data.make_eight_schools_reference

It runs NumPyro's NUTS in float64 on the non-centred model of
:mod:`tests.data.eight_schools` (16 chains x 125,000 draws after 5,000 warm-up
steps, ``target_accept_prob=0.95``, fixed seed) and stores, for mu, tau and
theta[0..7] in constrained space, the posterior mean and sd with their ArviZ
Monte-Carlo standard errors (``arviz.mcse`` with ``method="mean"`` and
``method="sd"``), bulk ESS and rank R-hat, with the provenance (versions, seed,
draws, date). The tests read only the JSON, so they need neither this run nor
its time (one to three minutes on two CPU cores).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.data import eight_schools

OUTPUT = Path(__file__).with_name("eight_schools_numpyro.json")
SEED = 20240610
NUM_CHAINS = 16
NUM_WARMUP = 5_000
NUM_SAMPLES = 125_000
TARGET_ACCEPT_PROB = 0.95


def run(num_samples: int, num_warmup: int) -> tuple[Any, int]:
    """NUTS draws of the constrained quantities (an ArviZ InferenceData), and the divergences."""
    # Imported here (and x64 switched on in main), so that importing this module,
    # as pytest --doctest-modules does, changes nothing and needs neither package.
    import arviz as az
    from numpyro.infer import MCMC, NUTS

    kernel = NUTS(eight_schools.model, target_accept_prob=TARGET_ACCEPT_PROB)
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=NUM_CHAINS,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(
        jax.random.key(SEED),
        jnp.asarray(eight_schools.SIGMA),
        jnp.asarray(eight_schools.Y),
        extra_fields=("diverging",),
    )
    draws = mcmc.get_samples(group_by_chain=True)
    posterior = {name: np.asarray(draws[name]) for name in eight_schools.QUANTITIES}
    num_divergent = int(np.sum(mcmc.get_extra_fields()["diverging"]))
    return az.from_dict(posterior=posterior), num_divergent


def flat(dataset: Any, name: str) -> list[float]:
    """One variable of an xarray Dataset as a flat list of floats (JSON-ready)."""
    return [float(value) for value in np.ravel(np.asarray(dataset[name]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=NUM_SAMPLES)
    parser.add_argument("--num-warmup", type=int, default=NUM_WARMUP)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    import arviz as az
    import numpyro

    idata, num_divergent = run(args.num_samples, args.num_warmup)
    posterior = idata.posterior
    mean = posterior.mean(dim=("chain", "draw"))
    sd = posterior.std(dim=("chain", "draw"), ddof=1)
    mcse_mean = az.mcse(idata, method="mean")
    mcse_sd = az.mcse(idata, method="sd")
    ess_bulk = az.ess(idata, method="bulk")
    rhat = az.rhat(idata, method="rank")
    quantities = {
        name: {
            "mean": flat(mean, name),
            "sd": flat(sd, name),
            "mcse_mean": flat(mcse_mean, name),
            "mcse_sd": flat(mcse_sd, name),
            "ess_bulk": flat(ess_bulk, name),
            "rhat": flat(rhat, name),
        }
        for name in eight_schools.QUANTITIES
    }
    reference = {
        "name": "eight_schools_noncentered",
        "description": (
            "Posterior mean and sd of mu, tau and theta[0..7] (constrained space) of the "
            "non-centred eight-schools model (posteriordb "
            "eight_schools-eight_schools_noncentered), "
            "by NumPyro NUTS; mcse_mean / mcse_sd are arviz.mcse(method='mean' / 'sd')."
        ),
        "provenance": {
            "script": "tests/data/make_eight_schools_reference.py",
            "sampler": "numpyro.infer.NUTS",
            "target_accept_prob": TARGET_ACCEPT_PROB,
            "num_chains": NUM_CHAINS,
            "num_warmup": args.num_warmup,
            "num_samples": args.num_samples,
            "seed": SEED,
            "precision": "float64",
            "num_divergent": num_divergent,
            "numpyro": numpyro.__version__,
            "jax": jax.__version__,
            "arviz": az.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "date": datetime.date.today().isoformat(),
        },
        "data": {"y": eight_schools.Y.tolist(), "sigma": eight_schools.SIGMA.tolist()},
        "quantities": quantities,
    }
    args.output.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {args.output}: {num_divergent} divergent transitions")
    for name, values in quantities.items():
        print(name, np.round(values["mean"], 3), np.round(values["sd"], 3))


if __name__ == "__main__":
    main()

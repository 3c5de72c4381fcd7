"""Eight schools, non-centred: posteriordb's ``eight_schools_noncentered`` as a NumPyro model.

.. math::

   \\mu \\sim N(0, 5^2), \\quad \\tau \\sim \\mathrm{HalfCauchy}(5), \\quad
   \\tilde\\theta_j \\sim N(0, 1), \\quad \\theta_j = \\mu + \\tau \\tilde\\theta_j, \\quad
   y_j \\sim N(\\theta_j, \\sigma_j^2), \\qquad j = 1, \\dots, 8.

The sampler sees NumPyro's unconstrained coordinates, a dict
``{"mu": (), "tau": () holding log tau, "theta_trans": (8,)}``; NumPyro's
``potential_fn`` is the negative log-density there, log-Jacobian of
:math:`\\tau = e^{\\log\\tau}` included. NumPyro is imported lazily, so this
module imports without it.

References:
  Rubin (1981), *Estimation in parallel randomized experiments*, J. Educ.
  Stat. 6(4). Gelman et al. (2013), *Bayesian Data Analysis*, 3rd ed., §5.5.
  posteriordb (github.com/stan-dev/posteriordb), ``eight_schools-eight_schools_noncentered``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
NUM_SCHOOLS = len(Y)
QUANTITIES = ("mu", "tau", "theta")
"""The constrained quantities compared with the reference (theta has 8 entries)."""


def model(sigma: Any, y: Any = None) -> None:
    """The NumPyro model: ``numpyro.infer.MCMC(NUTS(model)).run(key, SIGMA, Y)``."""
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(sigma)):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_trans)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def logdensity_fn(dtype: Any = jnp.float32) -> Callable[[dict[str, jax.Array]], jax.Array]:
    """``position -> log p(position | y)`` up to a constant, in unconstrained coordinates.

    Args:
      dtype: the floating dtype of the data the density closes over.

    Returns:
      The negated ``potential_fn`` of :func:`numpyro.infer.util.initialize_model`,
      a function of one dict position ``{"mu", "tau" (log tau), "theta_trans"}``.
    """
    from numpyro.infer.util import initialize_model

    model_info = initialize_model(
        jax.random.key(0),
        model,
        model_args=(jnp.asarray(SIGMA, dtype), jnp.asarray(Y, dtype)),
    )
    potential_fn = model_info.potential_fn

    def logdensity(position: dict[str, jax.Array]) -> jax.Array:
        return -potential_fn(position)

    return logdensity


def initial_positions(rng_key: jax.Array, num_chains: int, dtype: Any = jnp.float32) -> dict:
    """Stan's default start: uniform(-2, 2) in the unconstrained space, one dict per chain."""
    mu_key, tau_key, theta_key = jax.random.split(rng_key, 3)

    def uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return jax.random.uniform(key, (num_chains, *shape), dtype, -2.0, 2.0)

    return {
        "mu": uniform(mu_key, ()),
        "tau": uniform(tau_key, ()),
        "theta_trans": uniform(theta_key, (NUM_SCHOOLS,)),
    }


def constrained(position: dict[str, Any]) -> dict[str, Any]:
    """mu, tau = exp(log tau) and theta = mu + tau * theta_trans, for any leading axes."""
    mu = position["mu"]
    tau = jnp.exp(position["tau"])
    theta = mu[..., None] + tau[..., None] * position["theta_trans"]
    return {"mu": mu, "tau": tau, "theta": theta}

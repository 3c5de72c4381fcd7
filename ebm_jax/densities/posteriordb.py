"""Real Bayesian posteriors from posteriordb, in Stan's unconstrained coordinates.

Each factory returns a :class:`Posterior`: ``logdensity_fn`` of ONE flat
unconstrained position :math:`z \\in \\mathbb{R}^d`, which is
:math:`\\log p(y, \\theta(z)) + \\log|\\det \\partial\\theta / \\partial z|`, the log
posterior density of :math:`z` up to the additive constant :math:`\\log p(y)`;
and ``constrain_fn``, mapping :math:`z` to the constrained quantities that
posteriordb's reference draws summarise, in posteriordb's order (``names``).
The transforms are Stan's (log for :math:`(0, \\infty)`, logit for :math:`(0, 1)`
and for a bound that depends on another parameter), so posteriordb's
reference means and sds, made with Stan's NUTS, apply directly to
``constrain_fn`` of a sampler's draws. Stan starts its chains at
:math:`z \\sim U(-2, 2)^d`.

**Eight schools, non-centred** (posterior ``eight_schools-eight_schools_noncentered``).
Treatment effects :math:`y_j` with known standard errors :math:`\\sigma_j`,
:math:`j = 1, \\dots, 8`:

.. math::

   \\tilde\\theta_j \\sim N(0, 1), \\quad \\mu \\sim N(0, 5^2), \\quad
   \\tau \\sim \\mathrm{HalfCauchy}(0, 5), \\quad
   \\theta_j = \\mu + \\tau \\tilde\\theta_j, \\quad y_j \\sim N(\\theta_j, \\sigma_j^2).

The position is :math:`z = (\\tilde\\theta_1, \\dots, \\tilde\\theta_8, \\mu, \\log\\tau)`
(:math:`d = 10`); :math:`\\tau = e^{z_{10}}` has log-Jacobian :math:`+\\log\\tau`. The
constrained quantities are :math:`(\\theta_1, \\dots, \\theta_8, \\mu, \\tau)`. The
posterior has a funnel in :math:`\\log\\tau` (weaker than the centred model's).

**GARCH(1, 1)** (posterior ``garch-garch11``). A series :math:`y_1, \\dots, y_T`,
:math:`T = 200`, with conditional volatility

.. math::

   \\sigma_1 = \\sigma_{\\mathrm{init}} = 0.5, \\quad
   \\sigma_t^2 = \\alpha_0 + \\alpha_1 (y_{t-1} - \\mu)^2 + \\beta_1 \\sigma_{t-1}^2, \\quad
   y_t \\sim N(\\mu, \\sigma_t^2),

for :math:`\\mu \\in \\mathbb{R}`, :math:`\\alpha_0 > 0`, :math:`0 < \\alpha_1 < 1`,
:math:`0 < \\beta_1 < 1 - \\alpha_1` and, as in the Stan model (which has no prior
statements), a flat improper prior on these constrained parameters. The
position is :math:`z = (\\mu, \\log\\alpha_0, \\operatorname{logit}\\alpha_1,
\\operatorname{logit}(\\beta_1 / (1 - \\alpha_1)))` (:math:`d = 4`), so with
:math:`s(u) = 1 / (1 + e^{-u})`, :math:`\\alpha_1 = s(z_3)` and
:math:`\\beta_1 = (1 - \\alpha_1)\\, s(z_4)`, and the map is triangular with
log-Jacobian

.. math::

   \\log\\alpha_0 + \\log\\alpha_1(1 - \\alpha_1)
   + \\log(1 - \\alpha_1) + \\log s(z_4)\\bigl(1 - s(z_4)\\bigr).

Every :math:`\\log s` is computed as :func:`jax.nn.log_sigmoid` (and
:math:`1 - s(u) = s(-u)`), :math:`\\log(1 + (\\tau/5)^2)` as a softplus of
:math:`2\\log(\\tau/5)`, and the volatility recursion by :func:`jax.lax.scan`, so
the log-density and its gradient are finite far beyond Stan's initial box (in
float32, for every :math:`|z_i| \\le 30`; further out the eight-schools
likelihood underflows to :math:`-\\infty` and GARCH gradients of points with
log-densities near :math:`-10^{20}` overflow).

The log-density includes the normalising constants of every proper factor
(normal, half-Cauchy), so for eight schools it is exactly the log joint
density :math:`\\log p(y, z)`, the evidence :math:`\\log p(y)` being unknown; GARCH's
flat prior is improper, so there the constant is arbitrary. The data are
embedded below as float64 numpy constants and cast to the factory's
``dtype``, as is the position.

References:
  Rubin (1981), *Estimation in parallel randomized experiments*, J. Educ.
  Stat. 6(4), 377-401. Gelman et al. (2013), *Bayesian Data Analysis*, 3rd
  ed., §5.5. Bollerslev (1986), *Generalized autoregressive conditional
  heteroskedasticity*, J. Econometrics 31(3), 307-327. Magnusson et al.
  (2024), *posteriordb: Testing, benchmarking and developing Bayesian
  inference algorithms*, arXiv:2407.04967; models and data from
  github.com/stan-dev/posteriordb at commit
  28f8d3d6e975315f42aa274a8399f21e07a43b30.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax.types import Array, ArrayLike

POSTERIORDB_REPOSITORY = "github.com/stan-dev/posteriordb"
POSTERIORDB_COMMIT = "28f8d3d6e975315f42aa274a8399f21e07a43b30"

_LOG_2PI = math.log(2.0 * math.pi)

# posteriordb: posterior_database/data/data/eight_schools.json.zip (J = 8),
# model posterior_database/models/stan/eight_schools_noncentered.stan.
EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])

# posteriordb: posterior_database/data/data/garch.json.zip (T = 200, sigma1 = 0.5),
# model posterior_database/models/stan/garch11.stan.
GARCH_SIGMA1 = 0.5
GARCH_Y = np.array(
    """
    4.93766971429527 4.88991682691714 5.02546102172474 4.35567646855897 3.83573942983642
    6.42511887092803 6.21749586660123 5.3789444976392 6.12027104532381 5.11431135803513
    7.62457311139258 -1.85880465801379 5.50934094468543 6.44932572011709 5.16341923767196
    3.44639039155509 4.16984880016615 4.10647082236182 4.36148384673768 5.95804655550286
    4.04595627245859 3.12687467791699 3.00142716630907 7.2568532076393 0.61810605683697
    -0.15291709516414 9.15201288380591 4.29291689602198 8.47976545249241 3.47121085936776
    -0.784460219373412 6.36436891988627 7.39246053097208 7.44821619115044 7.94629579597174
    7.45200888445898 4.91606840711583 7.07837403999095 2.27557165708769 4.3338510473374
    5.33566695925365 7.71334572132416 3.84655561617135 6.52277390763314 3.80731058719347
    5.58548359748507 4.01715099033084 3.99054536155583 5.35642303503983 5.63897529833076
    5.88953070348908 6.0430888347862 7.01663715231427 5.23984726391001 7.57048294871051
    7.13717882232103 5.06474214308508 3.92938942862014 3.45541765853083 4.32754476686183
    8.21224580731755 5.41823304477533 4.7841770188398 3.98404860623278 8.26915241265127
    3.33760533950886 2.06569492404492 1.52754216877548 1.83133082640754 3.42725863604394
    10.6728548009461 9.15169891973432 5.02377347267432 9.33700652969614 6.24136721930321
    6.04950849404453 5.17506455628691 3.58392003232125 2.59548292998048 4.83907375200728
    3.9602637043862 5.82758884414387 4.23546269160095 7.22893684131873 2.60125320616005
    4.69064165912038 1.917174792991 4.61001408936943 5.47954161943213 5.15996686350891
    6.18193831796684 4.34440919258801 4.41345809585902 6.68698472933847 3.34899504117051
    6.83270263119169 4.19524438239594 6.78734463138665 3.38096383063052 6.91863284632495
    3.68888260517761 6.26224092273241 3.44745116922359 0.562152528549508 12.0983927062903
    -3.94763062989095 -3.21518975215137 8.91901621444987 6.99251510307547 8.61130426328963
    0.797295048827984 0.740760529949786 6.65043900610575 -1.01025333900225 6.01005412829945
    1.05968301738299 6.82927188819709 4.16367619052275 5.12177225953856 5.35883603151306
    2.94569636117111 3.09787782500013 4.25886372386817 7.36761963610972 2.14698605072961
    7.37538509459182 4.82724178713162 4.51204391935278 5.7304457229641 4.41939636949817
    2.75590613231484 4.36446893309357 7.16011150309803 8.29841612795873 2.81665431246841
    3.91796707566114 9.79524802733078 -4.72428858409434 5.45486794214529 6.54469009993541
    6.59733683725192 6.24159998957624 3.03968503954618 1.20935471921342 5.26368419728504
    8.64378679332718 7.49105975619705 6.47364152057565 4.52510633927136 6.72266533476532
    4.93413298122964 4.1566114170922 4.51007640371052 6.29506991633892 3.19826524212404
    5.09675013075576 3.26616721687184 5.53757602277581 6.2441927282187 7.20513067270488
    3.07048867275673 2.74547867330073 0.981956903350417 5.28944484748336 3.86378897330756
    3.21330962237709 5.91416547847592 7.2122398161631 5.72358999506731 6.87125883837987
    2.78265012775101 3.91399869941797 5.8714783101321 4.82252986065352 6.44606353404703
    4.90138575295631 4.76091881679865 6.56447269598981 2.61578044200192 7.23060033317138
    4.3068921412352 3.94182008251131 8.92724502984271 3.4283380296237 1.1672300640445
    0.854351423641126 12.1460655745991 -6.35075237496737 7.70559312712892 4.51365529175356
    4.9229184146353 6.46218817415156 0.285691312540926 3.64479965114781 6.24383143375988
    7.63031493398196 8.84031816593506 6.91529144961031 4.10490141415172 5.28480409924716
    """.split(),
    dtype=np.float64,
)


class Posterior(NamedTuple):
    """A posteriordb posterior in unconstrained coordinates.

    Attributes:
      name: the posteriordb name, ``"<data>-<model>"``.
      logdensity_fn: ``z -> log p(z | y)`` up to a constant, for one flat
        unconstrained position of shape ``(dim,)``; the log-Jacobian of the
        constraining transform is included.
      constrain_fn: ``z -> (len(names),)`` constrained quantities, in ``names`` order.
      names: posteriordb's names of the constrained quantities (Stan's, 1-based).
      dim: the unconstrained dimension.
    """

    name: str
    logdensity_fn: Callable[[Array], Array]
    constrain_fn: Callable[[Array], Array]
    names: tuple[str, ...]
    dim: int


def eight_schools_noncentered(dtype: Any = jnp.float32) -> Posterior:
    """posteriordb's ``eight_schools-eight_schools_noncentered``, unconstrained.

    .. math::

       f(z) = \\sum_{j=1}^{8} \\bigl[\\log N(\\tilde\\theta_j; 0, 1)
              + \\log N(y_j; \\mu + \\tau\\tilde\\theta_j, \\sigma_j^2)\\bigr]
              + \\log N(\\mu; 0, 5^2) + \\log \\mathrm{HalfCauchy}(\\tau; 0, 5) + \\log\\tau,
       \\qquad z = (\\tilde\\theta, \\mu, \\log\\tau).

    Args:
      dtype: the floating dtype of the computation (data and position are cast to
        it); float64 needs ``jax_enable_x64``, without which JAX truncates to float32.

    Returns:
      A :class:`Posterior` with ``dim = 10`` and names
      ``("theta[1]", ..., "theta[8]", "mu", "tau")``.

    Raises:
      TypeError: if ``dtype`` is not a floating dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax import densities
      >>> posterior = densities.eight_schools_noncentered()
      >>> posterior.dim, posterior.names[-2:]
      (10, ('mu', 'tau'))
      >>> z = jnp.zeros(posterior.dim).at[-1].set(jnp.log(2.0))  # theta = mu = 0, tau = 2
      >>> posterior.constrain_fn(z)[-2:]
      Array([0., 2.], dtype=float32)
      >>> value = posterior.logdensity_fn(z)
      >>> value.dtype, round(float(value), 2)
      (dtype('float32'), -42.85)

    References:
      Rubin (1981), J. Educ. Stat. 6(4). Gelman et al. (2013), *Bayesian Data
      Analysis*, 3rd ed., §5.5. Magnusson et al. (2024), arXiv:2407.04967.
    """
    dtype = _check_dtype(dtype)
    y = jnp.asarray(EIGHT_SCHOOLS_Y, dtype)
    sigma = jnp.asarray(EIGHT_SCHOOLS_SIGMA, dtype)
    num_schools = len(EIGHT_SCHOOLS_Y)
    dim = num_schools + 2
    prior_scale = 5.0
    # Normalisers of N(0, 1)^8, N(0, 5^2), the likelihood, and of
    # HalfCauchy(τ; 0, 5) = 2 / (π 5 (1 + (τ/5)^2)).
    constant = jnp.asarray(
        -0.5 * (2 * num_schools + 1) * _LOG_2PI
        - math.log(prior_scale)
        - float(np.sum(np.log(EIGHT_SCHOOLS_SIGMA)))
        + math.log(2.0 / (math.pi * prior_scale)),
        dtype,
    )

    def unpack(position: ArrayLike) -> tuple[Array, Array, Array]:
        z = _as_position(position, dim, dtype)
        return z[:num_schools], z[num_schools], z[num_schools + 1]

    def logdensity_fn(position: ArrayLike) -> Array:
        theta_trans, mu, log_tau = unpack(position)
        theta = mu + jnp.exp(log_tau) * theta_trans
        # log(1 + (τ/5)^2) = softplus(2 log(τ/5)): finite for any log τ.
        log_cauchy_kernel = jax.nn.softplus(2.0 * (log_tau - math.log(prior_scale)))
        return (
            -0.5 * jnp.sum(theta_trans**2)
            - 0.5 * jnp.sum(((y - theta) / sigma) ** 2)
            - 0.5 * (mu / prior_scale) ** 2
            - log_cauchy_kernel
            + log_tau  # log-Jacobian of τ = exp(log τ)
            + constant
        )

    def constrain_fn(position: ArrayLike) -> Array:
        theta_trans, mu, log_tau = unpack(position)
        tau = jnp.exp(log_tau)
        return jnp.concatenate([mu + tau * theta_trans, mu[None], tau[None]])

    names = (*(f"theta[{j}]" for j in range(1, num_schools + 1)), "mu", "tau")
    return Posterior(
        name="eight_schools-eight_schools_noncentered",
        logdensity_fn=logdensity_fn,
        constrain_fn=constrain_fn,
        names=names,
        dim=dim,
    )


def garch11(dtype: Any = jnp.float32) -> Posterior:
    """posteriordb's ``garch-garch11`` (GARCH(1, 1) volatility), unconstrained.

    .. math::

       f(z) = \\sum_{t=1}^{T} \\log N(y_t; \\mu, \\sigma_t^2)
              + \\log\\alpha_0 + \\log\\alpha_1 + 2\\log(1 - \\alpha_1)
              + \\log s(z_4) + \\log s(-z_4),

    with :math:`\\sigma_1 = 0.5`, :math:`\\sigma_t^2 = \\alpha_0 + \\alpha_1 (y_{t-1} - \\mu)^2
    + \\beta_1 \\sigma_{t-1}^2`, :math:`z = (\\mu, \\log\\alpha_0, \\operatorname{logit}\\alpha_1,
    \\operatorname{logit}(\\beta_1 / (1 - \\alpha_1)))` and flat priors on
    :math:`(\\mu, \\alpha_0, \\alpha_1, \\beta_1)`, as in the Stan model.

    Args:
      dtype: the floating dtype of the computation (data and position are cast to
        it); float64 needs ``jax_enable_x64``, without which JAX truncates to float32.

    Returns:
      A :class:`Posterior` with ``dim = 4`` and names
      ``("mu", "alpha0", "alpha1", "beta1")``.

    Raises:
      TypeError: if ``dtype`` is not a floating dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax import densities
      >>> posterior = densities.garch11()
      >>> posterior.dim, posterior.names
      (4, ('mu', 'alpha0', 'alpha1', 'beta1'))
      >>> z = jnp.array([5.0, 0.0, 0.0, 0.0])  # alpha0 = 1, alpha1 = 1/2, beta1 = 1/4
      >>> posterior.constrain_fn(z)
      Array([5.  , 1.  , 0.5 , 0.25], dtype=float32)
      >>> value = posterior.logdensity_fn(z)
      >>> value.dtype, bool(jnp.isfinite(value))
      (dtype('float32'), True)

    References:
      Bollerslev (1986), J. Econometrics 31(3), 307-327. Magnusson et al.
      (2024), arXiv:2407.04967.
    """
    dtype = _check_dtype(dtype)
    y = jnp.asarray(GARCH_Y, dtype)
    initial_variance = jnp.asarray(GARCH_SIGMA1**2, dtype)
    dim = 4
    constant = jnp.asarray(-0.5 * len(GARCH_Y) * _LOG_2PI, dtype)

    def transform(position: ArrayLike) -> tuple[Array, Array, Array, Array, Array]:
        """``(mu, alpha0, alpha1, beta1, log-Jacobian)`` of one position."""
        z = _as_position(position, dim, dtype)
        mu, log_alpha0, logit_alpha1, logit_fraction = z
        # Products of sigmoids keep alpha1 and beta1 relatively accurate when tiny;
        # 1 - alpha1 = s(-logit alpha1) is never formed by cancellation.
        alpha1 = jax.nn.sigmoid(logit_alpha1)
        beta1 = jax.nn.sigmoid(-logit_alpha1) * jax.nn.sigmoid(logit_fraction)
        log_jacobian = (
            log_alpha0
            + jax.nn.log_sigmoid(logit_alpha1)
            + 2.0 * jax.nn.log_sigmoid(-logit_alpha1)
            + jax.nn.log_sigmoid(logit_fraction)
            + jax.nn.log_sigmoid(-logit_fraction)
        )
        return mu, jnp.exp(log_alpha0), alpha1, beta1, log_jacobian

    def logdensity_fn(position: ArrayLike) -> Array:
        mu, alpha0, alpha1, beta1, log_jacobian = transform(position)
        squared_residuals = (y - mu) ** 2

        def volatility_step(variance: Array, previous_squared_residual: Array):
            variance = alpha0 + alpha1 * previous_squared_residual + beta1 * variance
            return variance, variance

        _, later_variances = jax.lax.scan(volatility_step, initial_variance, squared_residuals[:-1])
        variances = jnp.concatenate([initial_variance[None], later_variances])
        log_likelihood = -0.5 * jnp.sum(jnp.log(variances) + squared_residuals / variances)
        return log_likelihood + constant + log_jacobian

    def constrain_fn(position: ArrayLike) -> Array:
        mu, alpha0, alpha1, beta1, _ = transform(position)
        return jnp.stack([mu, alpha0, alpha1, beta1])

    return Posterior(
        name="garch-garch11",
        logdensity_fn=logdensity_fn,
        constrain_fn=constrain_fn,
        names=("mu", "alpha0", "alpha1", "beta1"),
        dim=dim,
    )


def _check_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as a numpy dtype; a ``TypeError`` naming it unless floating."""
    try:
        resolved = None if dtype is None else jnp.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or not jnp.issubdtype(resolved, jnp.floating):
        raise TypeError(f"dtype must be a floating dtype such as jnp.float32, got {dtype!r}")
    return resolved


def _as_position(position: ArrayLike, dim: int, dtype: np.dtype) -> Array:
    """One flat unconstrained position of shape ``(dim,)``, cast to ``dtype``."""
    z = jnp.asarray(position)
    if z.shape != (dim,):
        raise ValueError(
            f"position must be one flat unconstrained position of shape ({dim},), "
            f"got shape {z.shape}; batch with jax.vmap"
        )
    return z.astype(dtype)


__all__ = [
    "EIGHT_SCHOOLS_SIGMA",
    "EIGHT_SCHOOLS_Y",
    "GARCH_SIGMA1",
    "GARCH_Y",
    "POSTERIORDB_COMMIT",
    "POSTERIORDB_REPOSITORY",
    "Posterior",
    "eight_schools_noncentered",
    "garch11",
]

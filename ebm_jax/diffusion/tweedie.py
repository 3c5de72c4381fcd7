"""Tweedie's formula: the posterior mean of the clean data from the perturbed score (11.7–11.13).

Differentiating :math:`p_\\beta(x') = \\int p(x)\\, p_\\beta(x' \\mid x)\\, dx`
(eq. 11.6) under the integral and dividing by :math:`p_\\beta(x')` turns the
perturbed score into a posterior expectation of the Gaussian transition's score
(eqs. 11.7–11.10):

.. math::

   \\nabla_{x'} \\log p_\\beta(x')
   = \\mathbb{E}_{x \\mid x'}\\big[\\nabla_{x'} \\log p_\\beta(x' \\mid x)\\big]
   = \\mathbb{E}_{x \\mid x'}\\Big[-\\frac{x' - \\sqrt{1-\\beta}\\, x}{\\beta}\\Big]
   \\quad \\text{(11.11)},

that is

.. math::

   x' + \\beta \\nabla_{x'} \\log p_\\beta(x') = \\sqrt{1-\\beta}\\;
   \\mathbb{E}[x \\mid x'] \\quad \\text{(11.12–11.13)}.

Equivalently, as :math:`x' = \\sqrt{1-\\beta}\\, x + \\sqrt\\beta\\, \\varepsilon`,
the posterior mean of the noise is :math:`\\mathbb{E}[\\varepsilon \\mid x'] =
-\\sqrt\\beta\\, \\nabla_{x'} \\log p_\\beta(x')`: a score model and a
noise-prediction model are the same object up to the factor
:math:`-\\sqrt\\beta`. The formula needs no knowledge of :math:`p` beyond the
score of :math:`p_\\beta`, which is what the denoising objective (11.16) learns.

References:
  Robbins (1956), *An empirical Bayes approach to statistics*, Proc. Third
  Berkeley Symposium 1.
  Efron (2011), *Tweedie's formula and selection bias*, JASA 106(496).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ebm_jax._validation import as_floating, check_callable
from ebm_jax.diffusion.forward import check_beta
from ebm_jax.types import Array, ArrayLike

NoiseConditionalScoreFn = Callable[[Array, Array], Array]
"""``score_fn(x_prime, beta) -> S(x', β)``: the score of :math:`p_\\beta` at ONE sample."""


def _score(score_fn: NoiseConditionalScoreFn, x_prime: ArrayLike, beta: ArrayLike) -> Array:
    """The checked score :math:`S(x', \\beta)`, of the shape of ``x_prime``."""
    check_callable(score_fn, "score_fn")
    if isinstance(x_prime, (bool, str)) or x_prime is None:
        raise TypeError(f"x_prime must be a real array, got {type(x_prime).__name__}")
    x_prime = as_floating(x_prime)
    check_beta(beta)
    beta = jnp.asarray(beta, x_prime.dtype)
    try:
        out = jax.eval_shape(score_fn, x_prime, beta)
    except Exception as exc:  # re-raised with the argument named
        raise ValueError(
            f"score_fn(x_prime, beta) failed on x_prime of shape {x_prime.shape}: {exc}"
        ) from exc
    if getattr(out, "shape", None) != x_prime.shape:
        raise ValueError(
            f"score_fn(x_prime, beta) must have the shape of x_prime {x_prime.shape}, got "
            f"{getattr(out, 'shape', type(out).__name__)}; it scores ONE sample (vmap for a batch)"
        )
    return score_fn(x_prime, beta)


def tweedie_mean(score_fn: NoiseConditionalScoreFn, x_prime: ArrayLike, beta: ArrayLike) -> Array:
    """The denoised posterior mean :math:`\\mathbb{E}[x \\mid x']` by Tweedie's formula (11.13).

    .. math::

       \\mathbb{E}[x \\mid x'] = \\frac{x' + \\beta\\, S(x', \\beta)}{\\sqrt{1-\\beta}},
       \\qquad S(x', \\beta) = \\nabla_{x'} \\log p_\\beta(x'),

    exact when ``score_fn`` is the true score of the perturbed density
    :math:`p_\\beta` of eq. (11.6) (eq. 11.12 rearranged); with a learned
    :math:`S_w` it is the model's estimate. Note the :math:`\\sqrt{1-\\beta}`: the
    forward process shrinks the data before adding noise, so the right-hand side
    of (11.12) is :math:`\\sqrt{1-\\beta}\\,\\mathbb{E}[x \\mid x']`, not
    :math:`\\mathbb{E}[x \\mid x']`.

    Args:
      score_fn: ``score_fn(x_prime, beta) -> S`` of the shape of ``x_prime``,
        the noise-conditional score of ONE sample. A parametric model passes
        ``functools.partial(score_fn, params)``; an energy network
        ``jax.grad(logdensity_fn)``.
      x_prime: the perturbed sample :math:`x'`.
      beta: its noise level :math:`\\beta \\in (0, 1)`, a scalar (traceable;
        the marginal level :math:`\\bar\\beta_t` for step :math:`t` of a
        schedule).

    Returns:
      :math:`\\mathbb{E}[x \\mid x']`, of the shape of ``x_prime``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax.diffusion import tweedie
      >>> # x ~ N(0, I) stays N(0, I) under (11.5), so S = -x' and E[x|x'] = √(1-β) x'.
      >>> tweedie.tweedie_mean(lambda x, beta: -x, jnp.array([2.0, -1.0]), 0.75)
      Array([ 1. , -0.5], dtype=float32)

    References:
      Robbins (1956); Efron (2011), JASA 106(496).
    """
    score = _score(score_fn, x_prime, beta)
    x_prime = as_floating(x_prime)
    beta = jnp.asarray(beta, x_prime.dtype)
    return (x_prime + beta * score) / jnp.sqrt(1.0 - beta)


def tweedie_noise(score_fn: NoiseConditionalScoreFn, x_prime: ArrayLike, beta: ArrayLike) -> Array:
    """The posterior mean of the added noise, :math:`\\mathbb{E}[\\varepsilon \\mid x']`.

    .. math::

       \\mathbb{E}[\\varepsilon \\mid x'] = -\\sqrt{\\beta}\\, S(x', \\beta),
       \\qquad x' = \\sqrt{1-\\beta}\\, \\mathbb{E}[x \\mid x'] + \\sqrt{\\beta}\\,
       \\mathbb{E}[\\varepsilon \\mid x'],

    the conditional expectation of (11.5) combined with (11.13). It is what an
    :math:`\\varepsilon`-prediction network (Ho et al. 2020) outputs, and the
    minimiser of (11.16) is :math:`S^* = -\\mathbb{E}[\\varepsilon \\mid x'] / \\sqrt\\beta`.

    Args:
      score_fn: ``score_fn(x_prime, beta) -> S``, as for :func:`tweedie_mean`.
      x_prime: the perturbed sample :math:`x'`.
      beta: its noise level :math:`\\beta \\in (0, 1)`, a scalar (traceable).

    Returns:
      :math:`\\mathbb{E}[\\varepsilon \\mid x']`, of the shape of ``x_prime``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax.diffusion import tweedie
      >>> tweedie.tweedie_noise(lambda x, beta: -x, jnp.array([2.0, -1.0]), 0.36)
      Array([ 1.2, -0.6], dtype=float32)

    References:
      Ho, Jain & Abbeel (2020), arXiv:2006.11239; Efron (2011), JASA 106(496).
    """
    score = _score(score_fn, x_prime, beta)
    beta = jnp.asarray(beta, score.dtype)
    return -jnp.sqrt(beta) * score


__all__ = ["NoiseConditionalScoreFn", "tweedie_mean", "tweedie_noise"]

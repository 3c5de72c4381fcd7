"""Score matching with the exact trace, and sliced score matching (§11.2.2-11.2.3).

Normalisation, stated once here and in every docstring. The lecture's
eq. (11.2) integrates by parts to :math:`\\mathbb{E}[\\|s\\|^2 + 2
\\operatorname{tr} \\nabla_x s]`; we minimise Hyvärinen's

.. math::

   J(\\theta) = \\mathbb{E}_{\\hat p}\\big[\\tfrac12 \\|s_\\theta(x)\\|^2
   + \\operatorname{tr} \\nabla_x s_\\theta(x)\\big]
   = \\tfrac12\\, \\mathbb{E}_{\\hat p} \\|s_\\theta - \\nabla_x \\log \\hat p\\|^2 - C,

ONE HALF of the lecture's objective: same minimiser, and on this scale score
matching, sliced score matching (with or without variance reduction) and
denoising score matching all equal :math:`\\tfrac12 \\times` a Fisher
divergence plus a constant.

A model enters either as an unnormalised log-density ``logdensity_fn(params,
x)`` (the score is :math:`\\nabla_x f` by :func:`jax.grad`, eq. 11.1) or as a
score network ``score_fn(params, x)``. Every factory returns
``loss_fn(params, rng_key, batch) -> scalar``, the per-sample term averaged
over ``batch`` of shape ``(batch_size, *event_shape)``.

References:
  Hyvärinen (2005), *Estimation of non-normalized statistical models by score
  matching*, JMLR 6.
  Song, Garg, Shi & Ermon (2019), *Sliced score matching: a scalable approach
  to density and score estimation*, UAI, arXiv:1905.07088.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ebm_jax import trace
from ebm_jax._validation import check_callable, check_int, check_key, check_one_sample_output
from ebm_jax.types import Array, ArrayLike, ArrayTree, PRNGKey

LossFn = Callable[[ArrayTree, PRNGKey, Array], Array]
"""``loss_fn(params, rng_key, batch) -> scalar``."""

ParametricFn = Callable[[ArrayTree, Array], Array]
"""``(params, x) -> f(x)`` (a scalar) or ``(params, x) -> s(x)`` (the shape of ``x``)."""


def as_batch(batch: ArrayLike) -> Array:
    """A floating array with a leading batch axis, ``(batch_size, *event_shape)``."""
    batch = jnp.asarray(batch)
    if batch.ndim < 1 or batch.shape[0] < 1:
        raise ValueError(
            "batch must have shape (batch_size, *event_shape) with batch_size >= 1, "
            f"got shape {batch.shape}"
        )
    if not jnp.issubdtype(batch.dtype, jnp.floating):
        batch = batch.astype(jnp.result_type(float))
    return batch


def check_score_fn(
    score_fn: ParametricFn, params: ArrayTree, sample: Array, call: str = "score_fn(params, x)"
) -> None:
    """``score_fn(params, x)`` must have the shape of ONE sample ``x`` (by ``jax.eval_shape``)."""
    check_one_sample_output(lambda x: score_fn(params, x), sample, call, returns="sample")


def _model(
    logdensity_fn: ParametricFn | None, score_fn: ParametricFn | None
) -> tuple[ParametricFn, Callable[[ArrayTree, Array], None]]:
    """The score ``(params, x) -> s(x)`` of whichever model was given, and its shape check."""
    if (logdensity_fn is None) == (score_fn is None):
        raise TypeError(
            "give exactly one of logdensity_fn (an unnormalised log-density) or "
            "score_fn (a score network), got " + ("neither" if logdensity_fn is None else "both")
        )
    if logdensity_fn is not None:
        check_callable(logdensity_fn, "logdensity_fn")

        def check_logdensity_fn(params: ArrayTree, sample: Array) -> None:
            check_one_sample_output(
                lambda x: logdensity_fn(params, x), sample, "logdensity_fn(params, x)"
            )

        # eq. (11.1), as ej.score(logdensity_fn, argnum=1) computes it.
        return jax.grad(logdensity_fn, argnums=1), check_logdensity_fn
    assert score_fn is not None
    check_callable(score_fn, "score_fn")
    return score_fn, lambda params, sample: check_score_fn(score_fn, params, sample)


def _sum_event(values: Array) -> Array:
    """Sum over the event axes of ``(num_probes, *event_shape)``."""
    return jnp.sum(values.reshape(values.shape[0], -1), axis=1)


def score_matching(
    logdensity_fn: ParametricFn | None = None, *, score_fn: ParametricFn | None = None
) -> LossFn:
    """Score matching with the exact Jacobian trace (Hyvärinen 2005; eq. 11.2).

    .. math::

       J(\\theta) = \\frac{1}{B} \\sum_{b=1}^{B} \\Big[\\tfrac12 \\|s_\\theta(x_b)\\|^2
       + \\operatorname{tr} \\nabla_x s_\\theta(x_b)\\Big],

    ONE HALF of the lecture's :math:`\\mathbb{E}[\\|s\\|^2 + 2 \\operatorname{tr}
    \\nabla s]` (same minimiser); :math:`J = \\tfrac12` Fisher divergence to the
    data :math:`-` a constant. The trace costs :math:`d` JVPs per sample
    (:func:`ebm_jax.trace.value_and_exact_divergence`, which returns
    :math:`s(x)` from the same linearisation): the reason §11.2.3 gives for
    score matching failing in high dimension. For a Gaussian model the
    minimiser is the sample mean and the inverse sample covariance.

    Args:
      logdensity_fn: ``(params, x) -> f(x)``, unnormalised log-density of one
        sample; the score is :math:`\\nabla_x f` (eq. 11.1).
      score_fn: keyword-only alternative, a score network ``(params, x) -> s(x)``
        of the shape of ``x``. Give exactly one of the two.

    Returns:
      ``loss_fn(params, rng_key, batch) -> scalar``; ``rng_key`` is accepted
      for a uniform signature and unused. ``batch`` has shape
      ``(batch_size, *event_shape)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import losses
      >>> logdensity_fn = lambda precision, x: -0.5 * precision * jnp.sum(x**2)
      >>> loss_fn = losses.score_matching(logdensity_fn)
      >>> batch = jnp.array([[1.0, -1.0], [1.0, 1.0]])  # sample second moment 1
      >>> loss_fn(1.0, jax.random.key(0), batch)  # ½ P² E‖x‖² − P d = 1 − 2
      Array(-1., dtype=float32)

    References:
      Hyvärinen (2005), JMLR 6.
    """
    score_of, check_model = _model(logdensity_fn, score_fn)

    def per_sample(params: ArrayTree, x: Array) -> Array:
        score, divergence = trace.value_and_exact_divergence(lambda y: score_of(params, y), x)
        return 0.5 * jnp.sum(score**2) + divergence

    def loss_fn(params: ArrayTree, rng_key: PRNGKey, batch: ArrayLike) -> Array:
        del rng_key  # the exact trace is deterministic
        batch = as_batch(batch)
        check_model(params, batch[0])
        return jnp.mean(jax.vmap(per_sample, in_axes=(None, 0))(params, batch))

    return loss_fn


def _directional_derivatives(
    logdensity_at: Callable[[Array], Array], x: Array, direction: Array
) -> tuple[Array, Array]:
    """:math:`(v^\\top \\nabla f(x),\\; v^\\top \\nabla^2 f(x)\\, v)` by nested JVPs.

    The first two Taylor coefficients of :math:`t \\mapsto f(x + t v)`: pure
    forward mode, no reverse pass, so cheaper than forward-over-reverse when
    the full score is not needed.
    """

    def first(y: Array) -> Array:
        return jax.jvp(logdensity_at, (y,), (direction,))[1]

    return jax.jvp(first, (x,), (direction,))


def sliced_score_matching(
    logdensity_fn: ParametricFn | None = None,
    *,
    score_fn: ParametricFn | None = None,
    num_probes: int = 1,
    probe: str = "rademacher",
    variance_reduction: bool = False,
) -> LossFn:
    """Sliced score matching (SSM) and its variance-reduced form (SSM-VR).

    .. math::

       J_{\\text{SSM}} = \\frac{1}{BK} \\sum_{b,k} \\Big[v_{bk}^\\top \\nabla_x
       s_\\theta(x_b)\\, v_{bk} + \\tfrac12 \\big(v_{bk}^\\top s_\\theta(x_b)\\big)^2\\Big],
       \\qquad
       J_{\\text{SSM-VR}} = \\frac{1}{BK} \\sum_{b,k} \\Big[v_{bk}^\\top \\nabla_x
       s_\\theta(x_b)\\, v_{bk} + \\tfrac12 \\|s_\\theta(x_b)\\|^2\\Big],

    with probes :math:`v_{bk}` drawn independently per sample from ``rng_key``,
    :math:`\\mathbb{E}[v v^\\top] = I`. Both are unbiased for score matching's
    :math:`J = \\mathbb{E}[\\tfrac12 \\|s\\|^2 + \\operatorname{tr} \\nabla s]`,
    ONE HALF of the lecture's eq. (11.2) objective (same minimiser;
    :math:`\\tfrac12` Fisher divergence :math:`-` a constant). SSM-VR replaces
    :math:`\\tfrac12 (v^\\top s)^2` by its expectation :math:`\\tfrac12 \\|s\\|^2`.

    Cost per probe: one JVP instead of :math:`d`. With a score network,
    :math:`s` and :math:`(\\nabla s) v` come from ONE :func:`jax.jvp`. With a
    log-density, SSM needs only :math:`v^\\top s` and :math:`v^\\top (\\nabla^2
    f) v`, the first two directional derivatives of :math:`f` along :math:`v`,
    taken by nested JVPs (forward-over-forward, no reverse pass: for an MLP
    training step about 30% fewer FLOPs than forward-over-reverse); SSM-VR needs
    the full score, so it linearises :math:`\\nabla_x f` once
    (forward-over-reverse) for :math:`s` and every :math:`(\\nabla s) v_k`.

    Args:
      logdensity_fn: ``(params, x) -> f(x)``, unnormalised log-density of one sample.
      score_fn: keyword-only alternative, a score network ``(params, x) -> s(x)``.
        Give exactly one of the two.
      num_probes: probes per sample :math:`K \\ge 1`.
      probe: ``"rademacher"`` (default, lower variance) or ``"gaussian"``.
      variance_reduction: use SSM-VR.

    Returns:
      ``loss_fn(params, rng_key, batch) -> scalar``, ``batch`` of shape
      ``(batch_size, *event_shape)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import losses
      >>> logdensity_fn = lambda precision, x: -0.5 * precision * jnp.sum(x**2)
      >>> loss_fn = losses.sliced_score_matching(logdensity_fn, variance_reduction=True)
      >>> batch = jnp.array([[1.0, -1.0], [1.0, 1.0]])
      >>> loss_fn(1.0, jax.random.key(0), batch)  # exact here: vᵀ(−I)v = −2 for ±1 probes
      Array(-1., dtype=float32)

    References:
      Song, Garg, Shi & Ermon (2019), arXiv:1905.07088.
    """
    score_of, check_model = _model(logdensity_fn, score_fn)
    num_probes = check_int(num_probes, "num_probes", 1)
    trace._check_probe(probe)
    if not isinstance(variance_reduction, bool):
        raise TypeError(
            f"variance_reduction must be a bool, got {type(variance_reduction).__name__}"
        )
    by_directional_derivatives = logdensity_fn is not None and not variance_reduction

    def per_sample(params: ArrayTree, x: Array, probes: Array) -> Array:
        if by_directional_derivatives:
            assert logdensity_fn is not None
            logdensity_at = lambda y: logdensity_fn(params, y)
            along = lambda direction: _directional_derivatives(logdensity_at, x, direction)
            # A vmap over a single probe adds a unit axis that slows the matmuls down.
            if num_probes == 1:
                slope, curvature = along(probes[0])
                return curvature + 0.5 * slope**2
            slopes, curvatures = jax.vmap(along)(probes)
            return jnp.mean(curvatures + 0.5 * slopes**2)
        score, products = trace.value_and_jvps(lambda y: score_of(params, y), x, probes)
        curvatures = _sum_event(probes * products)
        if variance_reduction:
            return jnp.mean(curvatures) + 0.5 * jnp.sum(score**2)
        slopes = _sum_event(probes * score[None])
        return jnp.mean(curvatures + 0.5 * slopes**2)

    def loss_fn(params: ArrayTree, rng_key: PRNGKey, batch: ArrayLike) -> Array:
        check_key(rng_key)
        batch = as_batch(batch)
        check_model(params, batch[0])
        # One draw for the whole batch: (num_probes, batch_size, *event_shape).
        probes = trace.sample_probes(rng_key, batch.shape, num_probes, probe, batch.dtype)
        per_sample_terms = jax.vmap(per_sample, in_axes=(None, 0, 1))(params, batch, probes)
        return jnp.mean(per_sample_terms)

    return loss_fn


__all__ = ["LossFn", "ParametricFn", "score_matching", "sliced_score_matching"]

"""The denoising objective of eq. (11.16), over a distribution of noise levels (§11.2.5).

The lecture parametrises the perturbed score by a noise-conditional model
:math:`S_w(x', \\beta) \\approx \\nabla_{x'} \\log p_\\beta(x')` and, by Tweedie's
formula (11.13), would like to regress :math:`x' + \\beta S_w(x', \\beta)` on
:math:`\\sqrt{1-\\beta}\\,\\mathbb{E}[x \\mid x']` (eq. 11.15 — whose model
argument should read :math:`S_w(x', \\beta)`, not :math:`S_w(x, \\beta)`: the
model only ever sees the perturbed sample). The posterior mean is unknown, so
(11.16) regresses on the clean sample itself:

.. math::

   L(w) = \\mathbb{E}_\\beta\\, \\mathbb{E}_{x \\sim p}\\,
   \\mathbb{E}_{x' \\mid x} \\big\\|x' + \\beta S_w(x', \\beta) - \\sqrt{1-\\beta}\\, x\\big\\|^2 .

Why this is the same problem (11.17–11.21). Put :math:`b = \\sqrt{1-\\beta}\\,
\\mathbb{E}[x \\mid x']`, add and subtract it (11.18) and expand the square:

.. math::

   L(w) = \\mathbb{E} \\|x' + \\beta S_w - b\\|^2 + \\mathbb{E} \\|b - \\sqrt{1-\\beta}\\, x\\|^2
   + 2\\, \\mathbb{E}\\big[(x' + \\beta S_w - b)^\\top (b - \\sqrt{1-\\beta}\\, x)\\big].

The lecture's eq. (11.20) writes the cross term as a *product* of two
expectations; it is the expectation of an inner product, and it vanishes by the
tower property (11.21): :math:`x' + \\beta S_w - b` is a function of
:math:`x'` alone and :math:`\\mathbb{E}[b - \\sqrt{1-\\beta}\\, x \\mid x'] = 0`.
The second term does not depend on :math:`w`, so (11.16) and (11.15) have the
same minimiser, :math:`S^* = \\nabla_{x'} \\log p_\\beta` at every level.

With :math:`x' = \\sqrt{1-\\beta}\\, x + \\sqrt\\beta\\, \\varepsilon` the residual
is :math:`\\sqrt\\beta\\,\\varepsilon + \\beta S_w`, so

.. math::

   \\big\\|x' + \\beta S_w - \\sqrt{1-\\beta}\\, x\\big\\|^2
   = \\beta\\, \\big\\|\\varepsilon + \\sqrt\\beta\\, S_w\\big\\|^2,
   \\qquad S^* = -\\mathbb{E}[\\varepsilon \\mid x'] / \\sqrt\\beta,

and, per level, :math:`\\mathbb{E}\\|x' + \\beta S_w - \\sqrt{1-\\beta}\\, x\\|^2 =
\\beta^2\\, \\mathbb{E}_{p_\\beta} \\|S_w - \\nabla \\log p_\\beta\\|^2 + (1-\\beta)\\,
\\mathbb{E}\\|x - \\mathbb{E}[x \\mid x']\\|^2`: :math:`\\beta^2` times the Fisher
divergence plus the posterior variance. The lecture's unweighted form therefore
all but ignores small noise levels; :func:`denoising_loss` offers the usual
re-weightings :math:`w(\\beta)`, which change the balance between levels but not
the minimiser at any level.

Class-conditional models :math:`S_w(x', \\beta, c)` learn the conditional scores
:math:`\\nabla \\log p_\\beta(x' \\mid c)` by the same objective on labelled pairs
:math:`(x, c)`; replacing each label by a null label :math:`\\varnothing` with
probability :math:`p` (label dropout) trains the unconditional score
:math:`S_w(x', \\beta, \\varnothing) \\approx \\nabla \\log p_\\beta(x')` in the same
network, which classifier-free guidance combines with the conditional one.

References:
  Vincent (2011), *A connection between score matching and denoising
  autoencoders*, Neural Computation 23(7).
  Song & Ermon (2019), *Generative modeling by estimating gradients of the
  data distribution*, NeurIPS, arXiv:1907.05600.
  Ho, Jain & Abbeel (2020), *Denoising diffusion probabilistic models*,
  NeurIPS, arXiv:2006.11239.
  Ho & Salimans (2022), *Classifier-free diffusion guidance*, arXiv:2207.12598.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._validation import (
    check_callable,
    check_int,
    check_key,
    check_one_sample_output,
    is_concrete,
)
from ebm_jax.diffusion.schedule import NoiseSchedule, linear_schedule
from ebm_jax.losses.score_matching import LossFn, as_batch, check_score_fn
from ebm_jax.types import Array, ArrayLike, ArrayTree, PRNGKey

NoiseConditionalFn = Callable[[ArrayTree, Array, Array], Array]
"""``(params, x, beta) -> S_w(x, β)`` (the shape of ``x``) or ``-> f_w(x, β)`` (a scalar)."""

ClassConditionalFn = Callable[[ArrayTree, Array, Array, Array], Array]
"""``(params, x, beta, label) -> S_w(x, β, c)`` or ``-> f_w(x, β, c)``, ``label`` an int scalar."""

BetaSampler = Callable[[PRNGKey], Array]
"""``beta_sampler(rng_key) -> beta``: one noise level in (0, 1), a scalar."""

WEIGHTINGS = ("lecture", "epsilon", "score")
"""The named weightings :math:`w(\\beta) = 1,\\ 1/\\beta,\\ 1/\\beta^2`."""


def _residual_scale(weighting: str | Callable[[Array], Array]) -> Callable[[Array], Array]:
    """:math:`w(\\beta)\\beta`, the factor of :math:`\\|\\varepsilon + \\sqrt\\beta S\\|^2`.

    The loss is computed in the :math:`\\varepsilon` form rather than as
    :math:`\\|x' - \\sqrt{1-\\beta}\\, x + \\beta S\\|^2`, whose first two terms
    cancel to :math:`\\sqrt\\beta\\,\\varepsilon` and lose precision at small
    :math:`\\beta`; the named weightings are written out so that no factor
    :math:`\\beta / \\beta` is rounded.
    """
    if isinstance(weighting, str):
        if weighting == "lecture":
            return lambda beta: beta
        if weighting == "epsilon":
            return lambda beta: jnp.ones_like(beta)
        if weighting == "score":
            return lambda beta: 1.0 / beta
        raise ValueError(
            f"weighting must be one of {WEIGHTINGS} or a callable w(beta), got {weighting!r}"
        )
    if not callable(weighting):
        raise TypeError(
            f"weighting must be one of {WEIGHTINGS} or a callable w(beta), "
            f"got {type(weighting).__name__}"
        )
    return lambda beta: weighting(beta) * beta


def _noise_conditional_score(
    logdensity_fn: Callable[..., Array] | None, score_fn: Callable[..., Array] | None
) -> Callable[..., Array]:
    """The model's score ``(params, x, beta[, label]) -> S_w``, whichever form was given."""
    if (logdensity_fn is None) == (score_fn is None):
        raise TypeError(
            "give exactly one of logdensity_fn (an energy network f_w(x, beta)) or "
            "score_fn (a score network S_w(x, beta)), got "
            + ("neither" if logdensity_fn is None else "both")
        )
    if logdensity_fn is not None:
        check_callable(logdensity_fn, "logdensity_fn")
        return jax.grad(logdensity_fn, argnums=1)  # eq. (11.1): S_w = ∇ₓ f_w
    assert score_fn is not None
    check_callable(score_fn, "score_fn")
    return score_fn


def _check_scalar_output(fn: Callable[..., Any], name: str, *args: Any) -> None:
    """``fn(*args)`` must be a real floating scalar (checked by ``jax.eval_shape``)."""
    try:
        out = jax.eval_shape(fn, *args)
    except Exception as exc:  # re-raised with the argument named
        raise ValueError(f"{name} failed: {exc}") from exc
    if getattr(out, "shape", None) != ():
        raise ValueError(
            f"{name} must return a scalar, got shape {getattr(out, 'shape', type(out).__name__)}"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{name} must return a floating-point scalar, got dtype {out.dtype}")


def _check_schedule(schedule: Any) -> Array:
    """The marginal levels :math:`\\bar\\beta_t` of a schedule, checked to lie in (0, 1)."""
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    marginal_betas = jnp.asarray(schedule.marginal_betas)
    if marginal_betas.ndim != 1 or marginal_betas.shape[0] < 1:
        raise ValueError(
            f"schedule.marginal_betas must have shape (T,) with T >= 1, got {marginal_betas.shape}"
        )
    if is_concrete(marginal_betas):
        values = np.asarray(marginal_betas, dtype=np.float64)
        if not np.all((values > 0) & (values < 1)):  # also rejects NaN
            raise ValueError("schedule.marginal_betas must lie in the open interval (0, 1)")
    return marginal_betas


def _check_label_dropout(label_dropout: Any, null_label: Any) -> None:
    """``label_dropout`` a probability in [0, 1]; ``null_label`` an int >= 0, required if p > 0."""
    if null_label is not None:
        check_int(null_label, "null_label", 0)
    if isinstance(label_dropout, bool) or not isinstance(label_dropout, (int, float, np.floating)):
        raise TypeError(
            f"label_dropout must be a float in [0, 1], got {type(label_dropout).__name__}"
        )
    if not 0.0 <= float(label_dropout) <= 1.0:  # also rejects NaN
        raise ValueError(f"label_dropout must lie in [0, 1], got {label_dropout}")
    if label_dropout > 0 and null_label is None:
        raise ValueError(
            f"label_dropout={label_dropout} replaces labels by the null label, so null_label "
            "must be given: a class-conditional model's num_classes "
            "(ebm_jax.models.null_label(model))"
        )


def _is_labelled_pair(batch: Any) -> bool:
    """Whether ``batch`` looks like ``(x, labels)`` rather than a list of equal samples."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        return False
    if any(np.ndim(part) < 1 for part in batch):
        return False
    if np.shape(batch[0]) != np.shape(batch[1]):
        return True
    dtypes = [part.dtype if hasattr(part, "dtype") else np.asarray(part).dtype for part in batch]
    return not jnp.issubdtype(dtypes[0], jnp.integer) and jnp.issubdtype(dtypes[1], jnp.integer)


def _split_batch(batch: Any, null_label: int | None) -> tuple[Array, Array | None]:
    """``(x, labels)`` of a class-conditional loss, or ``(x, None)`` of an unconditional one."""
    if null_label is None:
        if _is_labelled_pair(batch):
            raise TypeError(
                "batch looks like a pair (x, labels), but null_label is None, so the loss is "
                "unconditional and takes the samples x alone; for a class-conditional model "
                "give null_label (its num_classes, ebm_jax.models.null_label(model))"
            )
        return as_batch(batch), None
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(
            "with null_label given the model is class-conditional, and batch must be a pair "
            "(x, labels), x of shape (batch_size, *event_shape) and labels integers of shape "
            f"(batch_size,); got {type(batch).__name__}"
        )
    x, labels = as_batch(batch[0]), jnp.asarray(batch[1])
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"batch labels must be integers, got dtype {labels.dtype}")
    if labels.shape != x.shape[:1]:
        raise ValueError(
            f"batch labels must have shape (batch_size,) = {x.shape[:1]}, one per sample of x, "
            f"got shape {labels.shape}"
        )
    if is_concrete(labels):
        values = np.asarray(labels)
        if np.any(values < 0) or np.any(values > null_label):
            raise ValueError(
                f"batch labels must lie in {{0, ..., null_label={null_label}}}, got values from "
                f"{values.min()} to {values.max()}"
            )
    return x, labels


def denoising_loss(
    score_fn: NoiseConditionalFn | ClassConditionalFn | None = None,
    *,
    logdensity_fn: NoiseConditionalFn | ClassConditionalFn | None = None,
    schedule: NoiseSchedule | None = None,
    beta_sampler: BetaSampler | None = None,
    weighting: str | Callable[[Array], Array] = "epsilon",
    label_dropout: float = 0.0,
    null_label: int | None = None,
) -> LossFn:
    """The denoising objective (11.16) of a noise-conditional model, over random noise levels.

    .. math::

       L(w) = \\frac{1}{B} \\sum_{b=1}^{B} w(\\beta_b)\\,
       \\big\\|x_b' + \\beta_b S_w(x_b', \\beta_b) - \\sqrt{1-\\beta_b}\\, x_b\\big\\|^2
       = \\frac{1}{B} \\sum_{b=1}^{B} w(\\beta_b)\\, \\beta_b\\,
       \\big\\|\\varepsilon_b + \\sqrt{\\beta_b}\\, S_w(x_b', \\beta_b)\\big\\|^2,

    with :math:`x_b' = \\sqrt{1-\\beta_b}\\, x_b + \\sqrt{\\beta_b}\\,\\varepsilon_b`
    (eq. 11.5), one level :math:`\\beta_b` and one :math:`\\varepsilon_b \\sim
    N(0, I)` per sample, and no factor :math:`\\tfrac12`. By the vanishing cross
    term (11.19–11.21) its expectation at each level is
    :math:`w(\\beta)\\beta^2\\, \\mathbb{E}_{p_\\beta}\\|S_w - \\nabla \\log
    p_\\beta\\|^2` plus a constant, minimised by the perturbed score
    :math:`S^*(x', \\beta) = \\nabla_{x'} \\log p_\\beta(x')` whatever the weighting.
    (The lecture's eq. 11.15 should read :math:`S_w(x', \\beta)`; its eq. 11.20
    writes the cross term as a product of expectations, but it is
    :math:`\\mathbb{E}[(x' + \\beta S_w - b)^\\top (b - \\sqrt{1-\\beta}\\, x)] = 0`.)

    Weightings :math:`w(\\beta)`:

    - ``"lecture"``: :math:`w = 1`, eq. (11.16) as written; per level
      :math:`\\beta^2 \\times` the Fisher divergence.
    - ``"epsilon"`` (default): :math:`w = 1/\\beta`, the loss
      :math:`\\|\\varepsilon + \\sqrt\\beta S_w\\|^2`: Ho et al.'s
      :math:`\\varepsilon`-prediction loss with :math:`\\hat\\varepsilon =
      -\\sqrt\\beta S_w`, and Song & Ermon's :math:`\\lambda(\\sigma) = \\sigma^2`
      with :math:`\\sigma^2 = \\beta`; per level :math:`\\beta \\times` the Fisher
      divergence, every level's loss of order :math:`d`.
    - ``"score"``: :math:`w = 1/\\beta^2`, the loss :math:`\\|S_w +
      \\varepsilon/\\sqrt\\beta\\|^2`: Vincent's denoising score matching per
      level, exactly the Fisher divergence plus a constant (twice
      :func:`ebm_jax.losses.denoising_score_matching` with :math:`\\sigma =
      \\sqrt\\beta` on data scaled by :math:`\\sqrt{1-\\beta}`); its variance
      grows like :math:`1/\\beta` at small levels.
    - a callable ``w(beta) -> scalar``, applied per sample.

    Class-conditional models and label dropout (classifier-free guidance).
    With ``null_label`` given, the batch is labelled pairs :math:`(x_b, c_b)`,
    the model is :math:`S_w(x', \\beta, c)`, and each label is replaced by the
    null label :math:`\\varnothing` independently with probability :math:`p =`
    ``label_dropout``:

    .. math::

       L(w) = \\frac{1}{B} \\sum_{b=1}^{B} w(\\beta_b)\\, \\beta_b\\,
       \\big\\|\\varepsilon_b + \\sqrt{\\beta_b}\\, S_w(x_b', \\beta_b, \\tilde c_b)\\big\\|^2,
       \\qquad \\tilde c_b = \\begin{cases} \\varnothing & \\text{with probability } p, \\\\
       c_b & \\text{otherwise.} \\end{cases}

    The dropping is independent of :math:`(x, c)`, so the dropped samples are
    draws of the marginal :math:`p(x) = \\sum_c \\pi_c\\, p(x \\mid c)`, and the
    expected loss is :math:`(1 - p)\\, \\mathbb{E}_c L_c + p\\, L_\\varnothing`,
    where :math:`L_c` is the loss above on :math:`p(x \\mid c)` with the model
    :math:`S_w(\\cdot, \\cdot, c)` and :math:`L_\\varnothing` the loss on
    :math:`p(x)` with :math:`S_w(\\cdot, \\cdot, \\varnothing)`. Each term
    involves its own label input, so (for a flexible enough network) both are
    minimised at once, by

    .. math::

       S^*(x', \\beta, c) = \\nabla_{x'} \\log p_\\beta(x' \\mid c), \\qquad
       S^*(x', \\beta, \\varnothing) = \\nabla_{x'} \\log p_\\beta(x'):

    one network learns the conditional and the unconditional model. Guidance
    at sampling time combines them as :math:`\\tilde S = S(x', \\beta, \\varnothing)
    + \\gamma\\, (S(x', \\beta, c) - S(x', \\beta, \\varnothing))`, the score of
    :math:`p_\\beta(x')\\, p_\\beta(c \\mid x')^\\gamma` up to normalisation
    (:math:`\\gamma` is the guidance scale of :mod:`ebm_jax.diffusion.guidance`:
    1 gives the conditional model, 0 the unconditional one; Ho & Salimans
    write it :math:`1 + w`). Labels already equal to ``null_label`` in the data
    (unlabelled examples) train the unconditional model only.

    Args:
      score_fn: a noise-conditional score network ``(params, x, beta) -> S_w``
        of the shape of ``x``, for ONE sample ``x`` and a scalar ``beta``.
      logdensity_fn: keyword-only alternative, an energy network ``(params, x,
        beta) -> f_w(x, beta)``, a scalar; the model is :math:`S_w = \\nabla_x f_w`
        (eq. 11.1, by :func:`jax.grad`), the lecture's EBM view of diffusion.
        Give exactly one of ``score_fn`` and ``logdensity_fn``.
      schedule: draw the level of each sample as :math:`\\beta =
        \\bar\\beta_t` (``schedule.marginal_betas[t - 1]``) with :math:`t` uniform
        on :math:`1, \\dots, T`. The default, when ``beta_sampler`` is not given
        either, is :func:`~ebm_jax.diffusion.schedule.linear_schedule` with
        :math:`T = 1000`.
      beta_sampler: alternative to ``schedule``, a continuous level distribution
        ``beta_sampler(rng_key) -> beta`` returning a scalar in (0, 1) (not
        checked inside ``jit``).
      weighting: ``"lecture"``, ``"epsilon"`` (default), ``"score"``, or a
        callable ``w(beta)``.
      label_dropout: the probability :math:`p \\in [0, 1]` that a sample's label
        is replaced by ``null_label`` (default 0: never); needs ``null_label``.
        Ho & Salimans use 0.1–0.2.
      null_label: ``None`` (default) for an unconditional model; or the null
        label of a class-conditional one, ``num_classes`` for the models of
        :mod:`ebm_jax.models.noise_conditional`
        (:func:`~ebm_jax.models.null_label`). The model is then called
        ``score_fn(params, x, beta, label)`` (or ``logdensity_fn(params, x,
        beta, label)``) with an integer scalar ``label``, and the batch is a
        pair ``(x, labels)``.

    Returns:
      ``loss_fn(params, rng_key, batch) -> scalar``. Without ``null_label``,
      ``batch`` has shape ``(batch_size, *event_shape)`` and ``rng_key`` is
      split into ``(level_key, noise_key)``: the levels are drawn from
      ``level_key``, the noise is ``jax.random.normal(noise_key, batch.shape)``.
      With ``null_label``, ``batch`` is a pair ``(x, labels)`` (a tuple, as
      :func:`ebm_jax.training.fit` batches a dataset ``(x, labels)``), ``x`` of
      shape ``(batch_size, *event_shape)`` and ``labels`` integers from 0 to
      ``null_label`` of shape ``(batch_size,)``; ``rng_key`` is split into
      three, ``(level_key, noise_key, label_key)``, the first two used as
      above (on ``x``), and a label is dropped where
      ``jax.random.bernoulli(label_key, label_dropout, labels.shape)`` is
      true.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.diffusion import objective
      >>> # The exact score of N(0, I) data, which (11.5) leaves invariant: S*(x', β) = -x'.
      >>> score_fn = lambda scale, x, beta: -scale * x
      >>> loss_fn = objective.denoising_loss(score_fn)
      >>> batch = jax.random.normal(jax.random.key(0), (4096, 2))
      >>> losses = [loss_fn(s, jax.random.key(1), batch) for s in (0.5, 1.0, 2.0)]
      >>> bool(losses[1] < losses[0] and losses[1] < losses[2])
      True

      Two classes, :math:`p(x \\mid c) = N(m_c, I)`, whose perturbed scores are
      :math:`-(x' - \\sqrt{1-\\beta}\\, m_c)`; the null label is 2:

      >>> means = jnp.array([[2.0, 0.0], [-2.0, 0.0]])
      >>> labels = jnp.arange(4096) % 2
      >>> x = means[labels] + jax.random.normal(jax.random.key(2), (4096, 2))
      >>> def class_score(uses_label, x, beta, label):
      ...     return -(x - uses_label * jnp.sqrt(1 - beta) * means[label])
      >>> loss_fn = objective.denoising_loss(class_score, null_label=2)
      >>> with_label, without = (loss_fn(u, jax.random.key(1), (x, labels)) for u in (1.0, 0.0))
      >>> bool(with_label < without)
      True

    References:
      Vincent (2011), Neural Computation 23(7); Song & Ermon (2019),
      arXiv:1907.05600; Ho, Jain & Abbeel (2020), arXiv:2006.11239; Ho &
      Salimans (2022), arXiv:2207.12598 (label dropout, guidance).
    """
    score_of = _noise_conditional_score(logdensity_fn, score_fn)
    residual_scale = _residual_scale(weighting)
    _check_label_dropout(label_dropout, null_label)
    if schedule is not None and beta_sampler is not None:
        raise TypeError("give at most one of schedule and beta_sampler, got both")

    if beta_sampler is None:
        marginal_betas = _check_schedule(linear_schedule(1000) if schedule is None else schedule)

        def draw_levels(rng_key: PRNGKey, batch_size: int, dtype: Any) -> Array:
            steps = jax.random.randint(rng_key, (batch_size,), 0, marginal_betas.shape[0])
            return marginal_betas.astype(dtype)[steps]

    else:
        check_callable(beta_sampler, "beta_sampler")

        def draw_levels(rng_key: PRNGKey, batch_size: int, dtype: Any) -> Array:
            keys = jax.random.split(rng_key, batch_size)
            return jax.vmap(beta_sampler)(keys).astype(dtype)

    def check_model(params: ArrayTree, sample: Array, beta: Array, label: Array | None) -> None:
        # The label, if any, is the model's last argument.
        extra = () if label is None else (label,)
        arguments = "params, x, beta" + ("" if label is None else ", label")
        if logdensity_fn is not None:
            check_one_sample_output(
                lambda x: logdensity_fn(params, x, beta, *extra),
                sample,
                f"logdensity_fn({arguments})",
            )
        else:
            assert score_fn is not None
            check_score_fn(
                lambda p, x: score_fn(p, x, beta, *extra), params, sample, f"score_fn({arguments})"
            )

    def per_sample(
        params: ArrayTree, x: Array, noise: Array, beta: Array, label: Array | None
    ) -> Array:
        x_prime = jnp.sqrt(1.0 - beta) * x + jnp.sqrt(beta) * noise  # eq. (11.5)
        extra = () if label is None else (label,)
        residual = noise + jnp.sqrt(beta) * score_of(params, x_prime, beta, *extra)
        return residual_scale(beta) * jnp.sum(residual**2)

    def loss_fn(params: ArrayTree, rng_key: PRNGKey, batch: ArrayLike) -> Array:
        check_key(rng_key)
        x, labels = _split_batch(batch, null_label)
        probe_beta = jnp.asarray(0.5, x.dtype)
        check_model(params, x[0], probe_beta, None if labels is None else labels[0])
        if beta_sampler is not None:
            _check_scalar_output(beta_sampler, "beta_sampler", rng_key)
        if callable(weighting):
            _check_scalar_output(weighting, "weighting", probe_beta)
        if labels is None:
            level_key, noise_key = jax.random.split(rng_key)
        else:
            level_key, noise_key, label_key = jax.random.split(rng_key, 3)
            if label_dropout > 0:
                dropped = jax.random.bernoulli(label_key, label_dropout, labels.shape)
                labels = jnp.where(dropped, jnp.asarray(null_label, labels.dtype), labels)
        betas = draw_levels(level_key, x.shape[0], x.dtype)
        noise = jax.random.normal(noise_key, x.shape, x.dtype)
        per_sample_terms = jax.vmap(per_sample, in_axes=(None, 0, 0, 0, 0))(
            params, x, noise, betas, labels
        )
        return jnp.mean(per_sample_terms)

    return loss_fn


__all__ = [
    "WEIGHTINGS",
    "BetaSampler",
    "ClassConditionalFn",
    "NoiseConditionalFn",
    "denoising_loss",
]

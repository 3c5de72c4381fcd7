"""Classifier-free guidance: conditional and unconditional models combined at sampling time.

A class-conditional model is trained on pairs :math:`(x, c)` with the label
replaced by a *null* label :math:`\\varnothing` with probability :math:`p`
(:func:`ebm_jax.diffusion.denoising_loss` with ``label_dropout``), so one
network learns both :math:`S(x, \\beta, c) \\approx \\nabla \\log p_\\beta(x
\\mid c)` and :math:`S(x, \\beta, \\varnothing) \\approx \\nabla \\log
p_\\beta(x)`. At sampling time the guided score is

.. math::

   \\tilde S(x, \\beta, c) = S(x, \\beta, \\varnothing)
   + w\\, \\big(S(x, \\beta, c) - S(x, \\beta, \\varnothing)\\big)
   = \\nabla_x \\log\\big(p_\\beta(x)^{1 - w}\\, p_\\beta(x \\mid c)^{w}\\big),

with the guidance scale :math:`w` (diffusers' ``guidance_scale``; Ho &
Salimans write :math:`1 + w`): :math:`w = 1` is the conditional model,
:math:`w = 0` the unconditional one, and :math:`w > 1` sharpens
:math:`p_\\beta(x \\mid c)` by the implicit classifier
:math:`p_\\beta(c \\mid x)^{w - 1}`, since :math:`p(x)^{1-w} p(x \\mid c)^w
\\propto p(x \\mid c)\\, p(c \\mid x)^{w-1}`. For an energy network
:math:`f(x, \\beta, c)` the same combination of log-densities,

.. math::

   \\tilde f(x, \\beta, c) = (1 - w)\\, f(x, \\beta, \\varnothing) + w\\, f(x, \\beta, c),

is an unnormalised log-density whose score is :math:`\\tilde S`, so a
Metropolis–Hastings sampler of each level targets the guided product
*exactly* (Du et al. 2023), where a score sampler only follows its gradient.

Every sampler of :mod:`ebm_jax.diffusion` that takes a model takes
``class_labels`` (one integer label per sample), ``guidance_scale`` (:math:`w`,
a traced number: a new value never recompiles) and ``null_label``. With
``class_labels`` the model is called ``model(x, beta, label)``; with
``null_label`` too, twice per step (conditional and null labels in one
batch of twice the size), so the NFE doubles. Without ``null_label`` the
scale must be 1: the conditional model alone.

References:
  Ho & Salimans (2022), *Classifier-free diffusion guidance*, arXiv:2207.12598.
  Dhariwal & Nichol (2021), *Diffusion models beat GANs on image synthesis*,
  NeurIPS, arXiv:2105.05233 (classifier guidance, the implicit classifier).
  Du et al. (2023), *Reduce, reuse, recycle*, ICML, arXiv:2302.11552 (guidance
  as a product of energies, sampled with MCMC).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._validation import is_concrete
from ebm_jax.types import Array, ArrayLike


class Guidance(NamedTuple):
    """The per-call data of classifier-free guidance (traced: new values never recompile).

    Attributes:
      class_labels: ``(num_samples,)`` integer labels, one per sample.
      guidance_scale: :math:`w`, a scalar of the positions' dtype.
      null_label: the null label, an integer scalar, or ``None`` for the
        conditional model alone (:math:`w = 1`).
    """

    class_labels: Array
    guidance_scale: Array
    null_label: Array | None


def check_guidance(
    class_labels: ArrayLike | None,
    guidance_scale: ArrayLike,
    null_label: int | ArrayLike | None,
    num_samples: int,
    dtype: Any,
) -> Guidance | None:
    """Validate the guidance arguments of a sampler; ``None`` for an unconditional model.

    Args:
      class_labels: ``None`` or ``(num_samples,)`` integer labels.
      guidance_scale: :math:`w`, a finite real scalar; 1 unless ``null_label``
        is given.
      null_label: ``None`` or the integer null label.
      num_samples: the leading size of the positions.
      dtype: the positions' dtype, for :math:`w`.

    Returns:
      A :class:`Guidance`, or ``None`` when ``class_labels`` is ``None``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax.diffusion import guidance
      >>> g = guidance.check_guidance(jnp.array([0, 1]), 3.0, 10, 2, jnp.float32)
      >>> g.guidance_scale, int(g.null_label)
      (Array(3., dtype=float32), 10)
    """
    if isinstance(guidance_scale, bool) or np.ndim(guidance_scale) != 0:
        raise TypeError(f"guidance_scale must be a real scalar, got {guidance_scale!r}")
    scale = jnp.asarray(guidance_scale, dtype)
    if is_concrete(scale) and not np.isfinite(float(scale)):
        raise ValueError(f"guidance_scale must be finite, got {guidance_scale!r}")
    if class_labels is None:
        if null_label is not None or (is_concrete(scale) and float(scale) != 1.0):
            raise ValueError(
                "guidance_scale and null_label need class_labels (one label per sample) "
                "and a class-conditional model(x, beta, label)"
            )
        return None
    labels = jnp.asarray(class_labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer) or labels.shape != (num_samples,):
        raise ValueError(
            f"class_labels must be integers of shape (num_samples,) = ({num_samples},), "
            f"got dtype {labels.dtype} and shape {labels.shape}"
        )
    if null_label is None:
        if is_concrete(scale) and float(scale) != 1.0:
            raise ValueError(
                f"guidance_scale = {float(scale)} needs null_label (the label the model was "
                "trained with for 'no class'); without it only the conditional model is "
                "sampled (guidance_scale = 1)"
            )
        return Guidance(labels, scale, None)
    null = jnp.asarray(null_label)
    if not jnp.issubdtype(null.dtype, jnp.integer) or null.ndim != 0:
        raise ValueError(f"null_label must be an integer scalar, got {null_label!r}")
    return Guidance(labels, scale, null.astype(labels.dtype))


def evaluations_per_step(guidance: Guidance | None) -> int:
    """Model evaluations per sample and step: 2 with a null label, else 1."""
    return 2 if guidance is not None and guidance.null_label is not None else 1


def batched(
    model_fn: Callable[..., Array], guidance: Guidance | None
) -> Callable[[Array, Array], Array]:
    """``(x_batch, beta) -> outputs``: ``model_fn`` vmapped over samples, guided if asked.

    ``model_fn`` is ``(x, beta) -> out`` without guidance and ``(x, beta, label)
    -> out`` with it; ``out`` is a score or a log-density, combined as
    :math:`o_\\varnothing + w (o_c - o_\\varnothing)` (one batch of twice the
    size when a null label is given).
    """
    if guidance is None:
        return jax.vmap(model_fn, in_axes=(0, None))
    labels, scale, null_label = guidance
    conditional = jax.vmap(model_fn, in_axes=(0, None, 0))
    if null_label is None:
        return lambda x, beta: conditional(x, beta, labels)

    def guided(x: Array, beta: Array) -> Array:
        both = conditional(
            jnp.concatenate([x, x]),
            beta,
            jnp.concatenate([labels, jnp.full_like(labels, null_label)]),
        )
        with_label, without_label = jnp.split(both, 2)
        return without_label + scale * (with_label - without_label)

    return guided


def per_sample(
    model_fn: Callable[..., Array], guidance: Guidance | None
) -> Callable[[Array, Array, Array | None], Array]:
    """``(x, beta, label) -> out`` for ONE sample, guided if asked (``label`` unused without)."""
    if guidance is None:
        return lambda x, beta, label: model_fn(x, beta)
    _, scale, null_label = guidance
    if null_label is None:
        return lambda x, beta, label: model_fn(x, beta, label)

    def guided(x: Array, beta: Array, label: Array | None) -> Array:
        with_label = model_fn(x, beta, label)
        without_label = model_fn(x, beta, null_label)
        return without_label + scale * (with_label - without_label)

    return guided


__all__ = ["Guidance", "batched", "check_guidance", "evaluations_per_step", "per_sample"]

"""Noise-conditional networks :math:`S_w(x', \\beta)` and :math:`f_w(x', \\beta)` (§11.2.4–11.2.5).

The lecture learns the score of the perturbed density :math:`p_\\beta`
(eq. 11.6) with one network for every noise level, :math:`S_w(x', \\beta)
\\approx \\nabla_{x'} \\log p_\\beta(x')` (eq. 11.13). Two forms are given,
both :mod:`flax.linen` modules called as ``model.apply(params, x, beta)`` on
ONE sample ``x`` of shape ``(d,)`` and a scalar :math:`\\beta \\in (0, 1)`, the
*marginal* noise level of eq. (11.5) (:math:`\\bar\\beta_t = 1 - \\bar\\alpha_t`
of a :class:`~ebm_jax.diffusion.schedule.NoiseSchedule`):

- :class:`NoiseConditionalScore`, ``score_fn(params, x, beta)``: the score
  directly, parametrised by a noise prediction :math:`S_w = -\\hat\\varepsilon_w
  / \\sqrt\\beta`;
- :class:`NoiseConditionalEnergy`, ``logdensity_fn(params, x, beta)``: a scalar
  :math:`f_w(x', \\beta)` whose score :math:`\\nabla_{x'} f_w` is the model
  score (the lecture's EBM view, eq. 11.3), so Metropolis–Hastings corrections
  and likelihoods can use :math:`f_w` itself.

The noise level enters through sinusoidal features of the log signal-to-noise
ratio :math:`\\lambda = \\log((1 - \\beta)/\\beta)`, which feed every hidden
layer by a FiLM scale and shift. Batches, with one :math:`\\beta` per sample,
are ``jax.vmap(model.apply, in_axes=(None, 0, 0))``. The networks assume data
of roughly unit scale (standardise the data first), as the variance-preserving
perturbation (11.5) does.

Class-conditional models, for classifier-free guidance (Ho & Salimans 2022),
are the same networks with ``num_classes`` :math:`K` set: they are called as
``model.apply(params, x, beta, label)`` with an integer scalar label in
:math:`\\{0, \\dots, K\\}`, where the label :math:`K` itself
(:func:`null_label`) means *no class*, the convention of DiT (Peebles & Xie
2023): an embedding table of :math:`K + 1` rows, the last one for the
unconditional model. The label embedding is added to the noise-level features
before the conditioning network, so the label, like the level, modulates every
hidden layer; one network then gives both :math:`S_w(x', \\beta, c) \\approx
\\nabla \\log p_\\beta(x' \\mid c)` and :math:`S_w(x', \\beta, \\varnothing)
\\approx \\nabla \\log p_\\beta(x')`, trained together by
:func:`~ebm_jax.diffusion.objective.denoising_loss` with ``label_dropout``.

Two settings are provided: :meth:`NoiseConditionalScore.toy_2d` (a plain
:math:`3 \\times 128` MLP) for 2-D toys and :meth:`NoiseConditionalScore.digits_8x8`
(three pre-norm residual blocks of width 256) for flattened 8×8 digits.

References:
  Perez et al. (2018), *FiLM: visual reasoning with a general conditioning
  layer*, AAAI, arXiv:1709.07871; He et al. (2016), *Identity mappings in deep
  residual networks*, arXiv:1603.05027 (pre-activation residual blocks);
  Song et al. (2021), *Score-based generative modeling through stochastic
  differential equations*, ICLR, arXiv:2011.13456 (noise-conditional score
  networks with Fourier features of the noise level); Ho & Salimans (2022),
  *Classifier-free diffusion guidance*, arXiv:2207.12598; Peebles & Xie
  (2023), *Scalable diffusion models with transformers*, ICCV,
  arXiv:2212.09748 (a null class as the last row of the label embedding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Self

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from ebm_jax._validation import (
    as_floating,
    check_callable,
    check_int,
    check_positive_scalar,
    is_concrete,
)
from ebm_jax.models.mlp import (
    _check_hidden_sizes,
    _check_linear_growth,
    _check_smooth_activation,
    _output_init,
)
from ebm_jax.types import Array

# The log-SNR of the linear and cosine schedules spans about [-20, 10]. The
# lowest frequency keeps the slowest feature monotone over that range (a
# "linear" feature), the highest resolves changes of a few tenths in λ.
_MIN_FREQUENCY = 1.0 / 32.0
_MAX_FREQUENCY = 4.0

TOY_2D_SETTINGS: dict[str, Any] = {
    "hidden_sizes": (128, 128, 128),
    "residual": False,
    "layer_norm": False,
    "embedding_size": 32,
}
"""Settings for 2-D toy data: a plain MLP of three FiLM-conditioned layers of 128."""

DIGITS_8X8_SETTINGS: dict[str, Any] = {
    "hidden_sizes": (256, 256, 256),
    "residual": True,
    "layer_norm": True,
    "embedding_size": 64,
}
"""Settings for flattened 8×8 digits (64-D): three pre-norm residual blocks of width 256."""


def noise_level_features(beta: Array, embedding_size: int) -> Array:
    """Sinusoidal features of the log signal-to-noise ratio of a noise level.

    .. math::

       \\lambda = \\log\\frac{1 - \\beta}{\\beta}, \\qquad
       \\gamma(\\beta) = \\big(\\sin(\\omega_k \\lambda)_{k=1}^{K},\\,
       \\cos(\\omega_k \\lambda)_{k=1}^{K}\\big), \\quad K = \\text{embedding\\_size}/2,

    with frequencies :math:`\\omega_k` geometrically spaced in
    :math:`[1/32, 4]`. The log-SNR is the natural coordinate of a noise level:
    the linear and cosine schedules spread their steps over it, whereas
    :math:`\\beta` itself crowds most steps near 1.

    Args:
      beta: the marginal noise level :math:`\\beta \\in (0, 1)`, a scalar. A
        level that rounded to 0 or 1 in its dtype is clipped to the nearest
        representable level inside (0, 1).
      embedding_size: the even number :math:`2K` of features.

    Returns:
      The features, shape ``(embedding_size,)``, in the dtype of ``beta``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax.models.noise_conditional import noise_level_features
      >>> noise_level_features(jnp.float32(0.5), 8).tolist()  # λ = 0
      [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]

    References:
      Vaswani et al. (2017), *Attention is all you need*, arXiv:1706.03762
      (sinusoidal embeddings); Kingma et al. (2021), *Variational diffusion
      models*, arXiv:2107.00630 (the log-SNR as the noise coordinate).
    """
    beta = as_floating(beta)
    # A level that rounded to 0 or 1 in its dtype (a cosine schedule's last level,
    # 1 - 2.4e-9, is 1.0 in float32) is read as the nearest representable interior level,
    # so the features stay finite: log-SNR within about ±16.6 in float32.
    info = jnp.finfo(beta.dtype)
    beta = jnp.clip(beta, info.tiny, 1.0 - info.epsneg)
    log_snr = jnp.log1p(-beta) - jnp.log(beta)
    frequencies = jnp.asarray(
        np.geomspace(_MIN_FREQUENCY, _MAX_FREQUENCY, embedding_size // 2), beta.dtype
    )
    angles = log_snr * frequencies
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)])


def _check_sample_and_level(x: Any, beta: Any, dtype: Any) -> tuple[Array, Array]:
    """``x`` as ONE sample of shape (d,), ``beta`` as a scalar of the same float dtype."""
    x = as_floating(jnp.asarray(x, dtype))
    if x.ndim != 1:
        raise ValueError(
            f"x must be ONE sample of shape (d,), got shape {x.shape}; flatten images, and "
            "batch with jax.vmap(model.apply, in_axes=(None, 0, 0))"
        )
    beta_array = jnp.asarray(beta)
    if beta_array.shape != ():
        raise ValueError(
            f"beta must be a scalar noise level, got shape {beta_array.shape}; a per-sample "
            "beta is batched with jax.vmap(model.apply, in_axes=(None, 0, 0))"
        )
    if is_concrete(beta_array):
        value = float(np.asarray(beta_array, dtype=np.float64))
        if not 0.0 < value < 1.0:
            raise ValueError(
                f"beta must lie in the open interval (0, 1) (the marginal noise level of "
                f"eq. 11.5), got {value}"
            )
    return x, beta_array.astype(x.dtype)


def _check_label(label: Any, num_classes: int | None) -> Array | None:
    """``label`` as an integer scalar in {0, ..., num_classes}, or ``None`` for a model without."""
    if num_classes is None:
        if label is not None:
            raise TypeError(
                "label was given to an unconditional model (num_classes=None), which is "
                "called as model.apply(params, x, beta); set num_classes for a "
                "class-conditional model"
            )
        return None
    if label is None:
        raise TypeError(
            f"this model is class-conditional (num_classes={num_classes}) and must be called "
            f"with a label, model.apply(params, x, beta, label), label in "
            f"{{0, ..., {num_classes}}}; the null label {num_classes} (null_label(model)) "
            "gives the unconditional model"
        )
    label_array = jnp.asarray(label)
    if not jnp.issubdtype(label_array.dtype, jnp.integer):
        raise TypeError(f"label must be an integer class index, got dtype {label_array.dtype}")
    if label_array.shape != ():
        raise ValueError(
            f"label must be a scalar class index, got shape {label_array.shape}; a label per "
            "sample is batched with jax.vmap(model.apply, in_axes=(None, 0, 0, 0))"
        )
    if is_concrete(label_array):
        value = int(label_array)
        if not 0 <= value <= num_classes:
            raise ValueError(
                f"label must lie in {{0, ..., {num_classes}}} (num_classes={num_classes} is the "
                f"null label), got {value}"
            )
    return label_array


def _label_embedding(label: Array, module: _NoiseConditionalNetwork) -> Array:
    """The label's row of a learned table of ``num_classes + 1`` rows (the last: no class).

    A label outside {0, ..., num_classes} cannot be rejected under ``jit``; it
    embeds as NaN, so the output is NaN rather than another class's (``jnp.take``
    would wrap −1 round to the null label).
    """
    assert module.num_classes is not None
    embedding = nn.Embed(
        module.num_classes + 1,
        module.embedding_size,
        dtype=module.dtype,
        param_dtype=module.param_dtype,
    )(label)
    in_range = (label >= 0) & (label <= module.num_classes)
    return jnp.where(in_range, embedding, jnp.nan)


def _noise_conditional_features(
    x: Array, beta: Array, label: Array | None, module: _NoiseConditionalNetwork
) -> Array:
    """The last hidden features of ``(x, beta)``, with the noise level fed to every layer.

    A ``label`` is embedded and added to the noise-level features, so it enters
    exactly where the level does. Called from a compact method of ``module``, so
    the layers belong to it.
    """
    dense = lambda width: nn.Dense(width, dtype=module.dtype, param_dtype=module.param_dtype)
    activation = module.activation

    conditioning = noise_level_features(beta, module.embedding_size)
    if label is not None:
        conditioning = conditioning + _label_embedding(label, module)
    conditioning = activation(dense(module.embedding_size)(conditioning))
    conditioning = activation(dense(module.embedding_size)(conditioning))

    def film(hidden: Array) -> Array:
        # Feature-wise scale and shift (FiLM): the noise level can rescale a
        # feature as well as move it, which a concatenated input cannot.
        scale, shift = jnp.split(dense(2 * hidden.shape[-1])(conditioning), 2)
        return hidden * (1 + scale) + shift

    def normalise(hidden: Array) -> Array:
        if not module.layer_norm:
            return hidden
        return nn.LayerNorm(dtype=module.dtype, param_dtype=module.param_dtype)(hidden)

    if not module.residual:
        hidden = x
        for width in module.hidden_sizes:
            hidden = activation(film(dense(width)(hidden)))
        return hidden

    # Pre-norm residual blocks (He et al. 2016): the identity path keeps the
    # input reachable through every block, so depth does not blur it.
    width = module.hidden_sizes[0]
    hidden = dense(width)(x)
    for _ in module.hidden_sizes:
        branch = dense(width)(activation(normalise(hidden)))
        branch = dense(width)(activation(film(branch)))
        hidden = hidden + branch
    return activation(normalise(hidden))


class _NoiseConditionalNetwork(nn.Module):
    """Fields, validation and settings shared by the score and the energy form."""

    hidden_sizes: Sequence[int] = TOY_2D_SETTINGS["hidden_sizes"]
    activation: Callable[[Array], Array] = nn.swish
    residual: bool = False
    layer_norm: bool = False
    embedding_size: int = TOY_2D_SETTINGS["embedding_size"]
    dtype: Any = None
    param_dtype: Any = jnp.float32
    num_classes: int | None = None

    def __post_init__(self) -> None:
        _check_hidden_sizes(self.hidden_sizes)
        if len(self.hidden_sizes) == 0:
            raise ValueError(
                "hidden_sizes must hold at least one width: the noise level enters "
                "through the hidden layers"
            )
        if self.residual and len(set(self.hidden_sizes)) != 1:
            raise ValueError(
                f"hidden_sizes must all be equal when residual=True (the blocks add their "
                f"input to their output), got {tuple(self.hidden_sizes)}"
            )
        for flag in ("residual", "layer_norm"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be a bool, got {type(getattr(self, flag)).__name__}")
        check_int(self.embedding_size, "embedding_size", 2)
        if self.embedding_size % 2:
            raise ValueError(
                f"embedding_size must be even (sine and cosine pairs), got {self.embedding_size}"
            )
        if self.num_classes is not None:
            check_int(self.num_classes, "num_classes", 1)
        self._check_activation()
        super().__post_init__()

    def _check_activation(self) -> None:
        check_callable(self.activation, "activation")

    @classmethod
    def toy_2d(cls, **overrides: Any) -> Self:
        """The settings for 2-D toys (:data:`TOY_2D_SETTINGS`), with any field overridden."""
        return cls(**{**TOY_2D_SETTINGS, **overrides})

    @classmethod
    def digits_8x8(cls, **overrides: Any) -> Self:
        """The settings for flattened 8×8 digits (:data:`DIGITS_8X8_SETTINGS`), overridable."""
        return cls(**{**DIGITS_8X8_SETTINGS, **overrides})


def null_label(model: _NoiseConditionalNetwork) -> int:
    """The null (unconditional) label of a class-conditional model: ``model.num_classes``.

    A model with ``num_classes`` :math:`K` takes labels :math:`0, \\dots, K - 1`
    for the classes and :math:`K` for *no class* (the last row of its label
    embedding), so that :math:`S_w(x', \\beta, K)` models the unconditional
    :math:`\\nabla \\log p_\\beta(x')`. Pass it to
    :func:`~ebm_jax.diffusion.objective.denoising_loss` as ``null_label``.

    Args:
      model: a :class:`NoiseConditionalScore` or :class:`NoiseConditionalEnergy`
        with ``num_classes`` set.

    Returns:
      The null label, an ``int``.

    Examples:
      >>> from ebm_jax.models import NoiseConditionalScore, null_label
      >>> null_label(NoiseConditionalScore.toy_2d(num_classes=10))
      10

    References:
      Ho & Salimans (2022), arXiv:2207.12598; Peebles & Xie (2023), arXiv:2212.09748.
    """
    if not isinstance(model, _NoiseConditionalNetwork):
        raise TypeError(
            "model must be a NoiseConditionalScore or NoiseConditionalEnergy, got "
            f"{type(model).__name__}"
        )
    if model.num_classes is None:
        raise ValueError(
            "model must be class-conditional (num_classes set) to have a null label, got "
            "num_classes=None"
        )
    return int(model.num_classes)


class NoiseConditionalScore(_NoiseConditionalNetwork):
    """A noise-conditional score :math:`S_w(x', \\beta)`, parametrised by noise prediction.

    .. math::

       S_w(x', \\beta) = -\\frac{\\hat\\varepsilon_w(x', \\beta)}{\\sqrt{\\beta}},

    where the network :math:`\\hat\\varepsilon_w` predicts the noise of
    :math:`x' = \\sqrt{1-\\beta}\\,x + \\sqrt\\beta\\,\\varepsilon` (eq. 11.5).
    The parametrisation follows from the objective: with that :math:`x'`,
    :math:`\\lVert x' + \\beta S - \\sqrt{1-\\beta}\\,x \\rVert^2 = \\beta
    \\lVert \\varepsilon + \\sqrt\\beta S \\rVert^2` (eq. 11.16), minimised by
    :math:`S^* = -\\mathbb{E}[\\varepsilon \\mid x'] / \\sqrt\\beta`. The target of
    :math:`\\hat\\varepsilon_w` is then :math:`\\mathbb{E}[\\varepsilon \\mid x']`,
    of norm at most :math:`O(\\sqrt d)` at every level, while the score itself
    grows like :math:`1/\\sqrt\\beta` as :math:`\\beta \\to 0`; the division
    puts that growth in the formula rather than in the weights. The last layer
    starts small, so :math:`\\hat\\varepsilon_w \\approx 0` at initialisation.
    By Tweedie (eq. 11.13) the model's denoised estimate is
    :math:`\\mathbb{E}[x \\mid x'] \\approx (x' - \\sqrt\\beta\\,\\hat\\varepsilon_w)
    / \\sqrt{1-\\beta}`.

    ``model.apply(params, x, beta)`` is the score;
    ``model.apply(params, x, beta, method="predict_noise")`` is
    :math:`\\hat\\varepsilon_w`. The score is not a gradient field in general,
    so the model has no log-density (see :class:`NoiseConditionalEnergy`).

    Attributes:
      hidden_sizes: widths of the hidden layers (all equal when ``residual``,
        one residual block per entry).
      activation: elementwise nonlinearity, applied to 1-D arrays.
      residual: pre-norm residual blocks instead of a plain MLP.
      layer_norm: layer normalisation at the input of each residual block
        and before the output layer (used only when ``residual``).
      embedding_size: the even number of sinusoidal log-SNR features, also
        the width of the two-layer embedding network on top of them and of
        the label embedding.
      dtype: computation dtype (``None``: inferred from the input and params).
      param_dtype: dtype of the parameters.
      num_classes: ``None`` (default) for an unconditional model, called
        ``model.apply(params, x, beta)``; or the number of classes :math:`K
        \\ge 1` of a class-conditional one, called ``model.apply(params, x,
        beta, label)`` with an integer scalar ``label`` in :math:`\\{0, \\dots,
        K\\}`, :math:`K` (:func:`null_label`) meaning no class. A label out of
        that range raises a ``ValueError``, or gives NaN under ``jit``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.models import NoiseConditionalScore
      >>> model = NoiseConditionalScore.toy_2d()
      >>> params = model.init(jax.random.key(0), jnp.zeros(2), 0.5)
      >>> model.apply(params, jnp.array([0.5, -1.0]), 0.1).shape
      (2,)
      >>> xs, betas = jnp.ones((4, 2)), jnp.array([0.01, 0.1, 0.5, 0.9])
      >>> jax.vmap(model.apply, in_axes=(None, 0, 0))(params, xs, betas).shape
      (4, 2)

      Class-conditional, with the null label :math:`K = 10` for no class:

      >>> from ebm_jax.models import null_label
      >>> model = NoiseConditionalScore.toy_2d(num_classes=10)
      >>> params = model.init(jax.random.key(0), jnp.zeros(2), 0.5, 0)
      >>> labels = jnp.array([0, 3, 9, null_label(model)])
      >>> jax.vmap(model.apply, in_axes=(None, 0, 0, 0))(params, xs, betas, labels).shape
      (4, 2)

    References:
      Ho, Jain & Abbeel (2020), *Denoising diffusion probabilistic models*,
      arXiv:2006.11239 (noise prediction); Song & Ermon (2019), *Generative
      modeling by estimating gradients of the data distribution*,
      arXiv:1907.05600.
    """

    @nn.compact
    def predict_noise(self, x: Array, beta: Array, label: Array | None = None) -> Array:
        """The predicted noise :math:`\\hat\\varepsilon_w(x', \\beta)`.

        The network itself, the estimate of :math:`\\mathbb{E}[\\varepsilon \\mid
        x']` (or :math:`\\mathbb{E}[\\varepsilon \\mid x', c]` given a label),
        before the division by :math:`\\sqrt\\beta`; same arguments as ``__call__``.
        """
        x, beta = _check_sample_and_level(x, beta, self.dtype)
        label = _check_label(label, self.num_classes)
        features = _noise_conditional_features(x, beta, label, self)
        output_layer = nn.Dense(
            x.shape[0],
            kernel_init=_output_init(),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        return output_layer(features)

    def __call__(self, x: Array, beta: Array, label: Array | None = None) -> Array:
        """:math:`S_w(x', \\beta[, c])` for ONE sample ``x`` of shape ``(d,)``, a scalar ``beta``.

        ``label``, an integer scalar, is required when ``num_classes`` is set
        and refused otherwise (``TypeError``).
        """
        noise = self.predict_noise(x, beta, label)
        return -noise / jnp.sqrt(jnp.asarray(beta, noise.dtype))


class NoiseConditionalEnergy(_NoiseConditionalNetwork):
    """A noise-conditional log-density :math:`f_w(x', \\beta)`, with score :math:`\\nabla_{x'} f_w`.

    .. math::

       f_w(x', \\beta) = \\frac{\\varphi_w(x', \\beta)}{\\sqrt\\beta}
         - \\frac{\\lVert x' \\rVert^2}{2 s^2},
       \\qquad
       S_w(x', \\beta) = \\nabla_{x'} f_w = \\frac{\\nabla_{x'} \\varphi_w}{\\sqrt\\beta}
         - \\frac{x'}{s^2},

    with :math:`\\varphi_w` a scalar network (a linear, bias-free last layer
    on the hidden features) and the envelope term present only when
    ``envelope_scale`` :math:`s` is given (default 1). This is the
    noise-prediction parametrisation of :class:`NoiseConditionalScore` made
    conservative: the implied noise estimate is :math:`\\hat\\varepsilon_w =
    -\\sqrt\\beta\\, S_w = x'\\sqrt\\beta / s^2 - \\nabla_{x'}\\varphi_w`, so
    one unit of :math:`\\nabla\\varphi_w` is one unit of noise at every level
    and the score scales like :math:`1/\\sqrt\\beta`, as the optimum
    :math:`-\\mathbb{E}[\\varepsilon \\mid x'] / \\sqrt\\beta` does. With
    :math:`s = 1` the envelope is exactly :math:`\\log p_\\beta` when the data
    are :math:`N(0, I)` (which eq. 11.5 leaves invariant), so the network
    learns the departure from a standard normal, and :math:`\\varphi_w
    \\approx 0` at initialisation gives the score :math:`\\approx -x'`.

    Guarantee: with an activation of at most linear growth (any Lipschitz
    one: swish, softplus, tanh, gelu, elu, sigmoid), or with ``residual`` and
    ``layer_norm`` (the last layer then acts on normalised, hence bounded,
    features), :math:`|\\varphi_w(x', \\beta)| \\le a + b\\lVert x' \\rVert`
    for each :math:`\\beta` (and each label), so :math:`e^{f_w(\\cdot, \\beta)}`
    is integrable for every :math:`\\beta \\in (0, 1)` and every parameter
    value: each level is a proper density, which the Metropolis–Hastings
    corrections and likelihoods rely on. When the envelope is on and the
    guarantee rests on the activation, an activation that grows faster than
    linearly (:math:`t^2`, :math:`e^t`, :math:`\\sinh t`) raises a
    ``ValueError``: it is probed at :math:`|t| = 10^2` and :math:`10^4`, where
    :math:`|a|` may grow by at most a factor 200 (a heuristic that catches
    powers :math:`|t|^p` with :math:`p > 1.15`, not a proof). Without the
    envelope nothing is guaranteed, and nothing is checked. A class label
    enters only through the conditioning vector, as :math:`\\beta` does, so the
    guarantee holds for every label.

    Samplers and likelihoods differentiate the score, so :math:`f_w` must be
    twice differentiable: piecewise-linear activations (relu, ...) raise a
    ``ValueError``, as for :class:`~ebm_jax.models.MLPLogDensity`.

    Attributes:
      hidden_sizes: widths of the hidden layers (all equal when ``residual``,
        one residual block per entry).
      activation: smooth elementwise nonlinearity, applied to 1-D arrays.
      residual: pre-norm residual blocks instead of a plain MLP.
      layer_norm: layer normalisation at the input of each residual block
        and before the output layer (used only when ``residual``).
      embedding_size: the even number of sinusoidal log-SNR features, also
        the width of the two-layer embedding network on top of them and of
        the label embedding.
      envelope_scale: :math:`s > 0`, or ``None`` for no envelope.
      dtype: computation dtype (``None``: inferred from the input and params).
      param_dtype: dtype of the parameters.
      num_classes: ``None`` (default) for an unconditional model; or the
        number of classes :math:`K \\ge 1`, the model then being called
        ``model.apply(params, x, beta, label)`` with ``label`` in
        :math:`\\{0, \\dots, K\\}`, :math:`K` (:func:`null_label`) meaning no
        class. A label out of that range raises a ``ValueError``, or gives NaN
        under ``jit``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> from ebm_jax.models import NoiseConditionalEnergy
      >>> model = NoiseConditionalEnergy.toy_2d()
      >>> params = model.init(jax.random.key(0), jnp.zeros(2), 0.5)
      >>> model.apply(params, jnp.array([0.5, -1.0]), 0.1).shape
      ()
      >>> score_fn = ej.score(model.apply, argnum=1)  # (params, x, beta) -> ∇ₓ f, eq. (11.1)
      >>> score_fn(params, jnp.array([0.5, -1.0]), 0.1).shape
      (2,)
      >>> conditional = NoiseConditionalEnergy.toy_2d(num_classes=3)  # labels 0, 1, 2; 3: none
      >>> params = conditional.init(jax.random.key(0), jnp.zeros(2), 0.5, 3)
      >>> ej.score(conditional.apply, argnum=1)(params, jnp.array([0.5, -1.0]), 0.1, 2).shape
      (2,)

    References:
      Salimans & Ho (2021), *Should EBMs model the energy or the score?*,
      ICLR EBM workshop (energy networks, differentiated for their score,
      match score networks of comparable structure; their parametrisation of
      the energy differs from the one here); Du et al. (2023),
      *Reduce, reuse, recycle: compositional generation with energy-based
      diffusion models and MCMC*, ICML, arXiv:2302.11552 (MH-corrected
      samplers of noise-conditional energies).
    """

    envelope_scale: float | None = 1.0

    def _check_activation(self) -> None:
        _check_smooth_activation(self.activation)
        if self.envelope_scale is not None:
            check_positive_scalar(self.envelope_scale, "envelope_scale")
            if not (self.residual and self.layer_norm):
                _check_linear_growth(
                    self.activation,
                    what="exp(f_w) at every noise level",
                    remedies="or residual=True with layer_norm=True, or envelope_scale=None "
                    "(no integrability guarantee)",
                )

    @nn.compact
    def __call__(self, x: Array, beta: Array, label: Array | None = None) -> Array:
        """:math:`f_w(x', \\beta[, c])`, a scalar, for ONE sample ``x`` of shape ``(d,)``.

        ``label``, an integer scalar, is required when ``num_classes`` is set
        and refused otherwise (``TypeError``).
        """
        x, beta = _check_sample_and_level(x, beta, self.dtype)
        label = _check_label(label, self.num_classes)
        features = _noise_conditional_features(x, beta, label, self)
        output_layer = nn.Dense(
            1,
            use_bias=False,
            kernel_init=_output_init(),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        potential = output_layer(features)[0]
        logdensity = potential / jnp.sqrt(beta.astype(potential.dtype))
        if self.envelope_scale is not None:
            scale = jnp.asarray(self.envelope_scale, logdensity.dtype)
            logdensity = logdensity - 0.5 * jnp.sum(jnp.square(x)) / scale**2
        return logdensity


__all__ = [
    "DIGITS_8X8_SETTINGS",
    "TOY_2D_SETTINGS",
    "NoiseConditionalEnergy",
    "NoiseConditionalScore",
    "noise_level_features",
    "null_label",
]

"""Multilayer perceptrons for a log-density :math:`f_\\theta(x)` and a score :math:`s_w(x)`.

Both are :mod:`flax.linen` modules taking ONE sample of any event shape (the
event is flattened), so ``model.apply`` has the library's parametric
signature: ``logdensity_fn = model.apply`` is ``(params, x) -> f_θ(x)``, a
scalar (eq. 11.3), and ``score_fn = model.apply`` is ``(params, x) -> s_w(x)``
of the shape of ``x``. Batches are handled by
``jax.vmap(model.apply, in_axes=(None, 0))`` at the call site.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._validation import check_callable, check_int, check_positive_scalar
from ebm_jax.types import Array

# A small last layer starts the network near f = 0 (or s = 0) without making
# it exactly zero: a zero last layer would also zero every gradient reaching
# the hidden layers on the first step, and the Hessian of f at initialisation.
_OUTPUT_VARIANCE_SCALE = 1e-2

# Away from the integers, where relu, relu6, hard_tanh, hard_sigmoid and the
# like have their kinks; a piecewise-linear map has zero curvature at all of them.
_CURVATURE_PROBES = np.linspace(-3.3, 3.7, 15, dtype=np.float32)


def _curvature_at_probes(activation: Callable[[Array], Array]) -> np.ndarray:
    """:math:`\\sigma''` at the probe points (the Hessian-vector product with ones)."""
    with jax.ensure_compile_time_eval():  # module construction may happen inside a trace
        points = jnp.asarray(_CURVATURE_PROBES)
        gradient_fn = jax.grad(lambda z: jnp.sum(activation(z)))
        _, curvature = jax.jvp(gradient_fn, (points,), (jnp.ones_like(points),))
        return np.asarray(curvature)


def _has_curvature(activation: Callable[[Array], Array]) -> bool:
    return bool(np.any(_curvature_at_probes(activation) != 0))


@functools.lru_cache(maxsize=128)
def _cached_probe(probe: Callable[[Any], bool], activation: Callable[[Array], Array]) -> bool:
    return probe(activation)


def _probe_activation(probe: Callable[[Any], bool], activation: Any, requirement: str) -> bool:
    """``probe(activation)``, cached per activation; a failure names the argument.

    Models are built often (inside ``jit``, per ``init``), so each activation is
    probed once; an unhashable callable is probed every time instead.
    """
    try:
        try:
            return _cached_probe(probe, activation)
        except TypeError as exc:
            if "unhashable" not in str(exc):
                raise
            return probe(activation)
    except Exception as exc:  # re-raised with the argument named
        raise ValueError(
            f"activation must map a 1-D array to an array of the same shape{requirement}; "
            f"probing it failed: {exc}"
        ) from exc


def _check_smooth_activation(activation: Any) -> None:
    """Reject activations with zero second derivative (relu, leaky_relu, hard_tanh, ...)."""
    check_callable(activation, "activation")
    if not _probe_activation(_has_curvature, activation, " and be twice differentiable by jax"):
        name = getattr(activation, "__name__", repr(activation))
        raise ValueError(
            f"activation must be smooth with a non-zero second derivative, got {name}: "
            "score matching differentiates f twice (the trace of its Hessian, eq. 11.2) "
            "and a (piecewise-)linear activation such as relu has zero Hessian almost "
            "everywhere; use nn.swish, nn.softplus, nn.gelu, nn.tanh or nn.elu"
        )


# The integrability guarantees of MLPLogDensity and NoiseConditionalEnergy (a Gaussian
# envelope) need activations of at most linear growth. A probe cannot prove that; it
# catches the usual offenders (t², exp, sinh, ...): from |t| = 1e2 to |t| = 1e4, a
# factor 100, |a| may grow by at most a factor 200, which a power |t|^p passes only
# for p <= 1.15. The test is a ratio, so a Lipschitz activation passes whatever its
# constant.
_GROWTH_PROBES = np.array([-1e2, 1e2], np.float32)
_GROWTH_FACTOR = np.float32(100.0)
_GROWTH_SLACK = 2.0


def _growth_at_probes(activation: Callable[[Array], Array]) -> tuple[np.ndarray, np.ndarray]:
    """``|a(t)|`` and ``|a(100 t)|`` at ``t = ±1e2``, in float64."""
    with jax.ensure_compile_time_eval():  # module construction may happen inside a trace
        near = np.asarray(activation(jnp.asarray(_GROWTH_PROBES)), np.float64)
        far = np.asarray(activation(jnp.asarray(_GROWTH_FACTOR * _GROWTH_PROBES)), np.float64)
    if near.shape != _GROWTH_PROBES.shape or far.shape != _GROWTH_PROBES.shape:
        raise ValueError(f"a 1-D input of shape {_GROWTH_PROBES.shape} gave shape {near.shape}")
    return np.abs(near), np.abs(far)


def _has_linear_growth(activation: Callable[[Array], Array]) -> bool:
    near, far = _growth_at_probes(activation)
    # An activation that overflows already at |t| = 100 (exp, sinh) grows far faster than linearly.
    finite = np.all(np.isfinite(near)) and np.all(np.isfinite(far))
    return bool(finite and np.all(far <= _GROWTH_SLACK * float(_GROWTH_FACTOR) * (1.0 + near)))


def _check_linear_growth(activation: Callable[[Array], Array], *, what: str, remedies: str) -> None:
    """Reject activations that grow faster than linearly (t², exp, sinh, ...).

    ``what`` says what the envelope makes integrable; ``remedies`` lists the
    ways out besides a Lipschitz activation.
    """
    if not _probe_activation(_has_linear_growth, activation, ""):
        name = getattr(activation, "__name__", repr(activation))
        near, far = _growth_at_probes(activation)
        raise ValueError(
            f"activation must grow at most linearly for the envelope to make {what} "
            f"integrable, got {name}: |a(t)| = {near.tolist()} at "
            f"t = {_GROWTH_PROBES.tolist()} and {far.tolist()} at 100 t, which must be finite "
            f"and at most {_GROWTH_SLACK:g} x 100 x (1 + |a(t)|); use a Lipschitz activation "
            f"(nn.swish, nn.softplus, nn.tanh, nn.gelu, nn.elu), {remedies}"
        )


def _check_hidden_sizes(hidden_sizes: Any) -> None:
    if isinstance(hidden_sizes, (str, bytes)) or not isinstance(hidden_sizes, Sequence):
        raise TypeError(
            f"hidden_sizes must be a sequence of ints, got {type(hidden_sizes).__name__}"
        )
    for index, width in enumerate(hidden_sizes):
        check_int(width, f"hidden_sizes[{index}]", 1)


def _hidden_features(
    x: Array,
    hidden_sizes: Sequence[int],
    activation: Callable[[Array], Array],
    dtype: Any,
    param_dtype: Any,
) -> Array:
    """The flattened sample through the hidden ``Dense -> activation`` layers.

    Called from a compact ``__call__``, so the layers belong to the caller.
    """
    hidden = x
    for width in hidden_sizes:
        hidden = activation(nn.Dense(width, dtype=dtype, param_dtype=param_dtype)(hidden))
    return hidden


def _output_init() -> Callable[..., Array]:
    return nn.initializers.variance_scaling(_OUTPUT_VARIANCE_SCALE, "fan_in", "truncated_normal")


class MLPLogDensity(nn.Module):
    """An MLP unnormalised log-density :math:`f_\\theta(x)` of one sample (eq. 11.3).

    .. math::

       f_\\theta(x) = w^\\top h_L(x) - \\frac{\\lVert x \\rVert^2}{2 s^2},
       \\qquad h_\\ell = \\sigma(W_\\ell h_{\\ell-1} + b_\\ell),\\; h_0 = \\operatorname{vec}(x),

    with the envelope term present only when ``envelope_scale`` :math:`s` is
    given. The last layer is linear and has no bias: an additive constant in
    :math:`f` cancels in :math:`p_\\theta = e^{f_\\theta}/Z(\\theta)` and gets
    no gradient from score matching. It starts small, so :math:`f \\approx 0`
    at initialisation, yet every layer receives gradient from the first step.

    With a Lipschitz activation (swish, softplus, tanh, gelu, elu) the network
    part grows at most linearly in :math:`\\lVert x \\rVert`, so the Gaussian
    envelope makes :math:`e^{f}` integrable for every :math:`\\theta` — a
    proper model whatever the training does. With the envelope on, an
    activation that grows faster than linearly (:math:`t^2`, :math:`e^t`,
    :math:`\\sinh t`) raises a ``ValueError``: a probe of its growth from
    :math:`|t| = 10^2` to :math:`10^4`, a heuristic that catches the usual
    offenders. Without the envelope, integrability is not guaranteed (score
    matching does not need :math:`Z`, but sampling does).

    Attributes:
      hidden_sizes: widths of the hidden layers; ``()`` gives a linear
        :math:`f` (a Gaussian with learnable mean under the envelope).
      activation: elementwise nonlinearity :math:`\\sigma`, applied to 1-D
        arrays. It must have a non-zero second derivative: score matching
        needs :math:`\\operatorname{tr} \\nabla_x^2 f` (eq. 11.2), which is zero
        almost everywhere for relu and other piecewise-linear maps, so those
        raise a ``ValueError``.
      envelope_scale: :math:`s > 0`, or ``None`` for no envelope.
      dtype: computation dtype (``None``: inferred from the input and params).
      param_dtype: dtype of the parameters.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.models import MLPLogDensity
      >>> model = MLPLogDensity((32, 32), envelope_scale=3.0)
      >>> params = model.init(jax.random.key(0), jnp.zeros(2))
      >>> model.apply(params, jnp.array([0.5, -1.0])).shape
      ()
      >>> batch = jnp.ones((5, 2))
      >>> jax.vmap(model.apply, in_axes=(None, 0))(params, batch).shape
      (5,)
      >>> score_fn = jax.grad(model.apply, argnums=1)  # eq. (11.1)
      >>> score_fn(params, jnp.array([0.5, -1.0])).shape
      (2,)

    References:
      Hyvärinen (2005), *Estimation of non-normalized statistical models by
      score matching*, JMLR 6; Ramachandran, Zoph & Le (2017), *Searching for
      activation functions* (swish), arXiv:1710.05941.
    """

    hidden_sizes: Sequence[int] = (128, 128)
    activation: Callable[[Array], Array] = nn.swish
    envelope_scale: float | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        _check_hidden_sizes(self.hidden_sizes)
        _check_smooth_activation(self.activation)
        if self.envelope_scale is not None:
            check_positive_scalar(self.envelope_scale, "envelope_scale")
            _check_linear_growth(
                self.activation,
                what="exp(f)",
                remedies="or envelope_scale=None (no integrability guarantee)",
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """:math:`f_\\theta(x)`, a scalar, for ONE sample ``x`` of any shape."""
        x = jnp.asarray(x, self.dtype).reshape(-1)
        hidden = _hidden_features(
            x, self.hidden_sizes, self.activation, self.dtype, self.param_dtype
        )
        output_layer = nn.Dense(
            1,
            use_bias=False,
            kernel_init=_output_init(),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        logdensity = output_layer(hidden)[0]
        if self.envelope_scale is not None:
            scale = jnp.asarray(self.envelope_scale, logdensity.dtype)
            logdensity = logdensity - 0.5 * jnp.sum(jnp.square(x)) / scale**2
        return logdensity


class MLPScore(nn.Module):
    """An MLP score network :math:`s_w(x)` of one sample, with the shape of ``x``.

    .. math::

       s_w(x) = W_{\\text{out}}\\, h_L(x) + b_{\\text{out}},
       \\qquad h_\\ell = \\sigma(W_\\ell h_{\\ell-1} + b_\\ell),\\; h_0 = \\operatorname{vec}(x),

    reshaped to the shape of ``x``. It models :math:`\\nabla_x \\log p(x)`
    directly (eq. 11.1 without the potential), as trained by denoising score
    matching. It is not a gradient field in general, so it has no log-density.
    Denoising and sliced score matching differentiate :math:`s_w` at most
    once in :math:`x`, so any activation, relu included, is allowed. The last
    layer starts small, so :math:`s_w \\approx 0` at initialisation.

    Attributes:
      hidden_sizes: widths of the hidden layers.
      activation: elementwise nonlinearity, applied to 1-D arrays.
      dtype: computation dtype (``None``: inferred from the input and params).
      param_dtype: dtype of the parameters.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.models import MLPScore
      >>> model = MLPScore((32, 32))
      >>> params = model.init(jax.random.key(0), jnp.zeros((2, 3)))
      >>> model.apply(params, jnp.ones((2, 3))).shape
      (2, 3)
      >>> jax.vmap(model.apply, in_axes=(None, 0))(params, jnp.ones((4, 2, 3))).shape
      (4, 2, 3)

    References:
      Vincent (2011), *A connection between score matching and denoising
      autoencoders*, Neural Computation 23(7); Song & Ermon (2019),
      *Generative modeling by estimating gradients of the data distribution*,
      arXiv:1907.05600.
    """

    hidden_sizes: Sequence[int] = (128, 128)
    activation: Callable[[Array], Array] = nn.swish
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        _check_hidden_sizes(self.hidden_sizes)
        check_callable(self.activation, "activation")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """:math:`s_w(x)` for ONE sample ``x``, of the shape of ``x``."""
        x = jnp.asarray(x, self.dtype)
        hidden = _hidden_features(
            x.reshape(-1), self.hidden_sizes, self.activation, self.dtype, self.param_dtype
        )
        output_layer = nn.Dense(
            x.size,
            kernel_init=_output_init(),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        return output_layer(hidden).reshape(x.shape)


__all__ = ["MLPLogDensity", "MLPScore"]

"""Restricted Boltzmann machines: the classic EBM with an exact Gibbs sampler, §11.1.

An RBM couples visible units :math:`v \\in \\mathbb{R}^V` to binary hidden
units :math:`h \\in \\{0, 1\\}^H` through a bipartite energy :math:`E(v, h)`,
with no visible–visible and no hidden–hidden terms. Summing the hidden units
out gives the lecture's unnormalised log-density of one sample,

.. math::

   p(v) = \\frac{\\exp f(v)}{Z}, \\qquad
   f(v) = \\log \\sum_{h} e^{-E(v, h)}, \\qquad
   Z = \\sum_{h} \\int e^{-E(v, h)}\\, dv

(the sum over :math:`v` for binary visible units), known in closed form
because the hidden units are conditionally independent given :math:`v`. So
``rbm.apply`` is ``logdensity_fn(params, v)`` (eq. 11.3) and its gradient in
:math:`v` the score of eq. (11.1). Both conditionals :math:`p(h \\mid v)` and
:math:`p(v \\mid h)` factorise, so Gibbs sampling — the lecture's classic
sampler of §11.1 — updates a whole layer at once (*block* Gibbs), and
:math:`Z` is a sum over the :math:`2^{\\min(V, H)}` configurations of the
smaller binary layer, exact for small models.

Two models, one parameter layout
``{"params": {"weights": (V, H), "visible_bias": (V,), "hidden_bias": (H,)}}``:

* :class:`BernoulliRBM`: binary visible units (Smolensky 1986; Hinton 2002).
* :class:`GaussianBernoulliRBM`: real visible units with a fixed scale
  :math:`\\sigma` (Krizhevsky 2009; Cho, Ilin & Raiko 2011).

The methods taking explicit ``params`` work on the unbound module (no
``apply``) and under :func:`jax.jit`: ``joint_logdensity``,
``hidden_probabilities``, ``visible_mean``, ``block_gibbs`` (a
:class:`~ebm_jax.samplers.SamplingAlgorithm`, the ``sampler`` of
contrastive divergence), ``exact_log_partition`` and ``log_likelihood``.

References:
  Smolensky (1986), *Information processing in dynamical systems: foundations
  of harmony theory*, in Parallel Distributed Processing, vol. 1, MIT Press;
  Hinton (2002), *Training products of experts by minimizing contrastive
  divergence*, Neural Computation 14(8); Hinton (2010), *A practical guide to
  training restricted Boltzmann machines*, UTML TR 2010-003; Salakhutdinov &
  Murray (2008), *On the quantitative analysis of deep belief networks*,
  ICML; Krizhevsky (2009), *Learning multiple layers of features from tiny
  images*, tech. report, University of Toronto; Cho, Ilin & Raiko (2011),
  *Improved learning of Gaussian-Bernoulli restricted Boltzmann machines*,
  ICANN.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.dtypes import promote_dtype

from ebm_jax._validation import (
    as_floating,
    check_finite_array,
    check_int,
    check_positive_scalar,
    is_concrete,
)
from ebm_jax.samplers.base import SamplingAlgorithm
from ebm_jax.samplers.proposal import MHInfo, is_finite_tree, select_state
from ebm_jax.types import Array, ArrayLike, ArrayTree, PRNGKey

# Hinton (2010), section 8: small random weights, zero biases.
_WEIGHT_INIT_STD = 0.01

# Block indices are int32 (the default integer dtype): 2^30 configurations is
# the most that fits, and far beyond what enumeration can afford anyway.
_MAX_ENUMERATED_UNITS = 30

_DEFAULT_BATCH_SIZE = 4096


class RBMGibbsState(NamedTuple):
    """One block-Gibbs chain of an RBM.

    Attributes:
      position: the visible configuration :math:`v`, shape ``(V,)``.
      hidden: the hidden sample :math:`h \\sim p(h \\mid v_{\\text{prev}})` drawn by
        the last step, shape ``(H,)``; zeros before the first step.
    """

    position: Array
    hidden: Array


class _RBMParams(NamedTuple):
    weights: Array
    visible_bias: Array
    hidden_bias: Array


def _enumerate_log_sum(
    log_weight_fn: Callable[[Array], Array], num_units: int, batch_size: int, dtype: Any
) -> Array:
    """:math:`\\log \\sum_{u \\in \\{0,1\\}^n} e^{g(u)}`, ``batch_size`` configurations at a time.

    Configuration :math:`k` has the bits of the integer :math:`k` as units, so
    a block is made from its indices and :func:`jax.lax.map` keeps one
    ``(batch_size, n)`` block in memory at a time. Indices past :math:`2^n`
    (padding of the last block) get :math:`-\\infty`.
    """
    num_configurations = 2**num_units
    batch_size = min(batch_size, num_configurations)
    num_blocks = -(-num_configurations // batch_size)
    unit_shifts = jnp.arange(num_units, dtype=jnp.int32)

    def block_log_sum(block: Array) -> Array:
        indices = block * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
        units = ((indices[:, None] >> unit_shifts) & 1).astype(dtype)
        log_weights = jnp.where(indices < num_configurations, log_weight_fn(units), -jnp.inf)
        return jax.nn.logsumexp(log_weights)

    block_sums = jax.lax.map(block_log_sum, jnp.arange(num_blocks, dtype=jnp.int32))
    return jax.nn.logsumexp(block_sums)


# Modules hash and compare by their fields, so equal models share one compilation
# across eager calls (e.g. a test log-likelihood after every epoch).
@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _compiled_log_partition(
    model: _RBM, params: _RBMParams, max_units: int, batch_size: int
) -> Array:
    return model._log_partition(params, max_units, batch_size)


class _RBM(nn.Module):
    """What both RBMs share: parameters, :math:`p(h \\mid v)`, block Gibbs, :math:`\\log p(v)`.

    A subclass defines the visible units: its fields (``num_hidden``,
    ``dtype``, ``param_dtype`` and, if it has one, a visible scale), the
    visible part of the energy, :math:`p(v \\mid h)` and :math:`\\log Z`.
    """

    if TYPE_CHECKING:  # fields of the subclasses, which fix their order
        num_hidden: int
        dtype: Any
        param_dtype: Any

    def _validate_fields(self) -> None:
        check_int(self.num_hidden, "num_hidden", 1)

    # -- per-model pieces -------------------------------------------------------------

    @nn.nowrap
    def _scale(self) -> float:
        """:math:`\\sigma`, dividing the interaction :math:`v^\\top W h / \\sigma^2`."""
        return 1.0

    @nn.nowrap
    def _visible_logdensity(self, params: _RBMParams, visible: Array) -> Array:
        raise NotImplementedError

    @nn.nowrap
    def _visible_mean(self, params: _RBMParams, hidden: Array) -> Array:
        raise NotImplementedError

    @nn.nowrap
    def _sample_visible(self, rng_key: PRNGKey, mean: Array) -> Array:
        raise NotImplementedError

    @nn.nowrap
    def _check_visible_values(self, visible: Array, name: str) -> None:
        check_finite_array(visible, name)

    @nn.nowrap
    def _log_partition(self, params: _RBMParams, max_units: int, batch_size: int) -> Array:
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------

    @nn.compact
    def __call__(self, visible: ArrayLike) -> Array:
        """:math:`f(v)`, the free-energy log-density of ONE visible vector, a scalar."""
        visible = jnp.asarray(visible)
        if visible.ndim != 1:
            raise ValueError(
                f"visible must be one visible vector of shape (num_visible,), got shape "
                f"{visible.shape}; batch with jax.vmap(rbm.apply, in_axes=(None, 0))"
            )
        num_visible, num_hidden = visible.shape[0], self.num_hidden
        param_dtype = self.param_dtype
        params = _RBMParams(
            self.param(
                "weights",
                nn.initializers.normal(_WEIGHT_INIT_STD),
                (num_visible, num_hidden),
                param_dtype,
            ),
            self.param("visible_bias", nn.initializers.zeros, (num_visible,), param_dtype),
            self.param("hidden_bias", nn.initializers.zeros, (num_hidden,), param_dtype),
        )
        params, [visible] = self._promote(params, visible)
        return self._free_energy(params, visible)

    @nn.nowrap
    def _promote(self, params: _RBMParams, *arrays: ArrayLike) -> tuple[_RBMParams, list[Array]]:
        """Parameters and inputs in the computation dtype (``dtype``, else promoted)."""
        promoted = promote_dtype(*params, *arrays, dtype=self.dtype)
        return _RBMParams(*promoted[:3]), list(promoted[3:])

    @nn.nowrap
    def _hidden_logits(self, params: _RBMParams, visible: Array) -> Array:
        return params.hidden_bias + visible @ params.weights / self._scale() ** 2

    @nn.nowrap
    def _free_energy(self, params: _RBMParams, visible: Array) -> Array:
        hidden_term = jnp.sum(jax.nn.softplus(self._hidden_logits(params, visible)))
        return self._visible_logdensity(params, visible) + hidden_term

    @nn.nowrap
    def _unpack(self, params: ArrayTree) -> _RBMParams:
        """The three parameter arrays of ``rbm.init``'s output, shapes checked."""
        try:
            inner = params["params"]
            leaves = (inner["weights"], inner["visible_bias"], inner["hidden_bias"])
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(
                'params must be the output of rbm.init: {"params": {"weights": (V, H), '
                f'"visible_bias": (V,), "hidden_bias": (H,)}}}}, missing {exc}'
            ) from exc
        unpacked = _RBMParams(*(jnp.asarray(leaf) for leaf in leaves))
        weights_shape = unpacked.weights.shape
        num_hidden = self.num_hidden
        if len(weights_shape) != 2 or weights_shape[1] != num_hidden:
            raise ValueError(
                f"params['params']['weights'] must have shape (num_visible, {num_hidden}) "
                f"for num_hidden={num_hidden}, got {weights_shape}"
            )
        if unpacked.visible_bias.shape != (weights_shape[0],) or unpacked.hidden_bias.shape != (
            num_hidden,
        ):
            raise ValueError(
                f"params biases must have shapes ({weights_shape[0]},) and ({num_hidden},) "
                f"to match the weights {weights_shape}, got {unpacked.visible_bias.shape} "
                f"and {unpacked.hidden_bias.shape}"
            )
        return unpacked

    @nn.nowrap
    def joint_logdensity(self, params: ArrayTree, visible: ArrayLike, hidden: ArrayLike) -> Array:
        """:math:`-E(v, h)`, the unnormalised joint log-density of one pair.

        .. math::

           -E(v, h) = \\phi(v) + c^\\top h + \\frac{v^\\top W h}{\\sigma^2},

        with :math:`\\phi(v) = b^\\top v` and :math:`\\sigma = 1` for the
        binary RBM, :math:`\\phi(v) = -\\lVert v - b\\rVert^2 / (2\\sigma^2)` for
        the Gaussian–binary one.

        Args:
          params: the output of ``rbm.init``.
          visible: :math:`v`, shape ``(V,)``.
          hidden: :math:`h \\in \\{0, 1\\}^H`, shape ``(H,)``.

        Returns:
          A scalar.
        """
        unpacked = self._unpack(params)
        unpacked, [visible, hidden] = self._promote(unpacked, visible, hidden)
        interaction = visible @ unpacked.weights @ hidden / self._scale() ** 2
        visible_term = self._visible_logdensity(unpacked, visible)
        return visible_term + unpacked.hidden_bias @ hidden + interaction

    @nn.nowrap
    def hidden_probabilities(self, params: ArrayTree, visible: ArrayLike) -> Array:
        """:math:`p(h_j = 1 \\mid v)`, the factorised hidden conditional.

        .. math::

           p(h_j = 1 \\mid v) = \\operatorname{sigmoid}\\big(c_j + (W^\\top v)_j / \\sigma^2\\big)

        (:math:`\\sigma = 1` for the binary RBM). Also the features an RBM
        gives a downstream model.

        Args:
          params: the output of ``rbm.init``.
          visible: :math:`v`, shape ``(V,)`` (or a batch ``(..., V)``).

        Returns:
          Probabilities of shape ``(H,)`` (or ``(..., H)``).
        """
        unpacked = self._unpack(params)
        unpacked, [visible] = self._promote(unpacked, visible)
        return jax.nn.sigmoid(self._hidden_logits(unpacked, visible))

    @nn.nowrap
    def block_gibbs(self, params: ArrayTree) -> SamplingAlgorithm:
        """The exact block-Gibbs kernel over visible configurations (one chain).

        A step draws the whole hidden layer from :math:`p(h \\mid v)`, then
        the whole visible layer from :math:`p(v \\mid h)`:

        .. math::

           h \\sim \\prod_j \\operatorname{Bernoulli}\\big(
           \\operatorname{sigmoid}(c_j + (W^\\top v)_j / \\sigma^2)\\big), \\qquad
           v' \\sim p(v \\mid h),

        with :math:`p(v \\mid h)` Bernoulli with means
        :math:`\\operatorname{sigmoid}(b + W h)` (binary) or
        :math:`N(b + W h, \\sigma^2 I)` (Gaussian–binary). Each half is an exact
        Gibbs update of the joint :math:`p(v, h)`, so the chain of :math:`v`
        leaves :math:`p(v)` invariant (§11.1); nothing is rejected. The
        kernel is the ``sampler`` of contrastive divergence: ``k`` steps from
        the data give CD-k, steps from persistent chains PCD (Hinton 2002;
        Tieleman 2008).

        Args:
          params: the output of ``rbm.init`` (may be traced, e.g. inside a loss).

        Returns:
          A :class:`~ebm_jax.samplers.SamplingAlgorithm` whose states are
          :class:`RBMGibbsState` and infos :class:`~ebm_jax.samplers.MHInfo`
          with ``acceptance_rate`` 1. ``init`` takes one visible vector of
          shape ``(V,)`` (binary values for the binary RBM; integers are
          promoted) and casts it to the parameters' dtype. If a conditional
          is NaN/inf the chain keeps its state and the step is flagged
          ``is_nonfinite`` with ``acceptance_rate`` 0.

        References:
          Geman & Geman (1984); Hinton (2002); Tieleman (2008), *Training
          restricted Boltzmann machines using approximations to the likelihood
          gradient*, ICML.
        """
        unpacked = self._unpack(params)
        for name, value in zip(_RBMParams._fields, unpacked, strict=True):
            check_finite_array(value, f"params['params']['{name}']")
        unpacked, _ = self._promote(unpacked)
        dtype = unpacked.weights.dtype
        num_visible, num_hidden = unpacked.weights.shape

        def init_fn(position: ArrayLike) -> RBMGibbsState:
            position = as_floating(position)
            if position.shape != (num_visible,):
                raise ValueError(
                    f"position must be one visible vector of shape ({num_visible},), got "
                    f"shape {position.shape}; batch chains with jax.vmap or ej.run_chains"
                )
            self._check_visible_values(position, "position")
            return RBMGibbsState(position.astype(dtype), jnp.zeros((num_hidden,), dtype))

        def step_fn(rng_key: PRNGKey, state: RBMGibbsState) -> tuple[RBMGibbsState, MHInfo]:
            hidden_key, visible_key = jax.random.split(rng_key)
            hidden_probabilities = jax.nn.sigmoid(self._hidden_logits(unpacked, state.position))
            uniforms = jax.random.uniform(hidden_key, (num_hidden,), dtype)
            hidden = (uniforms < hidden_probabilities).astype(dtype)
            visible_mean = self._visible_mean(unpacked, hidden)
            visible = self._sample_visible(visible_key, visible_mean)
            finite = is_finite_tree(hidden_probabilities, visible_mean)
            new_state = select_state(finite, RBMGibbsState(visible, hidden), state)
            one = jnp.ones((), dtype)
            return new_state, MHInfo(jnp.where(finite, one, 0 * one), finite, ~finite)

        return SamplingAlgorithm(init_fn, step_fn)

    @nn.nowrap
    def visible_mean(self, params: ArrayTree, hidden: ArrayLike) -> Array:
        """:math:`E[v \\mid h]`, the mean of the factorised visible conditional.

        .. math::

           E[v \\mid h] = \\operatorname{sigmoid}(b + W h) \\;\\text{(binary)}, \\qquad
           E[v \\mid h] = b + W h \\;\\text{(Gaussian–binary)}.

        Args:
          params: the output of ``rbm.init``.
          hidden: :math:`h`, shape ``(H,)`` (or a batch ``(..., H)``).

        Returns:
          The conditional mean of the visible units, shape ``(V,)`` (or ``(..., V)``).
        """
        unpacked = self._unpack(params)
        unpacked, [hidden] = self._promote(unpacked, hidden)
        return self._visible_mean(unpacked, hidden)

    @nn.nowrap
    def exact_log_partition(
        self, params: ArrayTree, *, max_units: int = 20, batch_size: int = _DEFAULT_BATCH_SIZE
    ) -> Array:
        """:math:`\\log Z` exactly, by enumerating a binary layer of at most ``max_units`` units.

        The binary RBM enumerates the smaller layer, summing the other out in
        closed form (the two layers play symmetric roles); the Gaussian–binary
        RBM enumerates the hidden layer and integrates :math:`v` as a Gaussian
        (formulas in the class docstrings). Configurations are visited in
        blocks of ``batch_size`` under :func:`jax.lax.map`, accumulated by
        logsumexp, so :math:`2^{20}` of them never sit in memory at once. The
        result is differentiable in ``params``: its gradient is the model
        expectation of :math:`\\partial(-E)/\\partial\\theta`, the negative phase
        of the exact likelihood gradient. Runs under :func:`jax.jit` (the
        number of configurations depends on shapes only).

        Args:
          params: the output of ``rbm.init``.
          max_units: refuse to enumerate a layer with more units than this
            (:math:`2^{\\text{max\\_units}}` configurations); at most 30.
          batch_size: configurations per block (need not divide their number).

        Returns:
          :math:`\\log Z`, a scalar.

        Raises:
          ValueError: when the enumerated layer has more than ``max_units``
            units; estimate :math:`\\log Z` by annealed importance sampling
            (Salakhutdinov & Murray 2008) instead.
        """
        max_units = check_int(max_units, "max_units", 1)
        if max_units > _MAX_ENUMERATED_UNITS:
            raise ValueError(
                f"max_units must be <= {_MAX_ENUMERATED_UNITS} (2^{_MAX_ENUMERATED_UNITS} "
                f"configurations), got {max_units}"
            )
        batch_size = check_int(batch_size, "batch_size", 1)
        unpacked, _ = self._promote(self._unpack(params))
        return _compiled_log_partition(self, unpacked, max_units, batch_size)

    @nn.nowrap
    def log_likelihood(
        self,
        params: ArrayTree,
        visible_batch: ArrayLike,
        log_partition: ArrayLike | None = None,
        *,
        max_units: int = 20,
    ) -> Array:
        """Exact :math:`\\log p(v) = f(v) - \\log Z` of every visible vector of a batch.

        Args:
          params: the output of ``rbm.init``.
          visible_batch: shape ``(n, V)`` (binary values for the binary RBM).
          log_partition: :math:`\\log Z` if already known (e.g. from
            :meth:`exact_log_partition`, or an AIS estimate); computed exactly
            when ``None``.
          max_units: passed to :meth:`exact_log_partition`.

        Returns:
          :math:`\\log p(v_i)` for each row, shape ``(n,)``; their mean is the
          test log-likelihood.
        """
        unpacked = self._unpack(params)
        num_visible = unpacked.weights.shape[0]
        visible_batch = as_floating(visible_batch)
        if visible_batch.ndim != 2 or visible_batch.shape[1] != num_visible:
            raise ValueError(
                f"visible_batch must have shape (n, {num_visible}), got {visible_batch.shape}"
            )
        self._check_visible_values(visible_batch, "visible_batch")
        if log_partition is None:
            log_partition = self.exact_log_partition(params, max_units=max_units)
        unpacked, [visible_batch] = self._promote(unpacked, visible_batch)
        free_energies = jax.vmap(self._free_energy, in_axes=(None, 0))(unpacked, visible_batch)
        return free_energies - log_partition


class BernoulliRBM(_RBM):
    """Binary–binary RBM: :math:`v \\in \\{0,1\\}^V`, :math:`h \\in \\{0,1\\}^H`.

    .. math::

       E(v, h) = -b^\\top v - c^\\top h - v^\\top W h, \\qquad
       f(v) = \\log \\sum_h e^{-E(v, h)}
            = b^\\top v + \\sum_{j=1}^H \\operatorname{softplus}\\big(c_j + (W^\\top v)_j\\big),

    the negative free energy, an unnormalised log-density of ONE visible
    vector (§11.1, eq. 11.3: :math:`p(v) = e^{f(v)} / Z`). The conditionals
    factorise:

    .. math::

       p(h_j = 1 \\mid v) = \\operatorname{sigmoid}\\big(c_j + (W^\\top v)_j\\big),
       \\qquad p(v_i = 1 \\mid h) = \\operatorname{sigmoid}\\big(b_i + (W h)_i\\big).

    The roles of the layers are symmetric, so :math:`Z` sums over the
    smaller one with the other summed out in closed form:

    .. math::

       \\log Z = \\operatorname{logsumexp}_{v \\in \\{0,1\\}^V} f(v)
               = \\operatorname{logsumexp}_{h \\in \\{0,1\\}^H}
                 \\Big[c^\\top h
                 + \\sum_{i=1}^V \\operatorname{softplus}\\big(b_i + (W h)_i\\big)\\Big].

    ``params = rbm.init(rng_key, visible)`` gives ``{"params": {"weights":
    (V, H), "visible_bias": b (V,), "hidden_bias": c (H,)}}``, weights
    :math:`N(0, 0.01^2)` and zero biases (Hinton 2010).

    Attributes:
      num_hidden: :math:`H \\ge 1`.
      dtype: computation dtype (``None``: promoted from the input and params).
      param_dtype: dtype of the parameters.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.models import BernoulliRBM
      >>> rbm = BernoulliRBM(num_hidden=3)
      >>> params = rbm.init(jax.random.key(0), jnp.zeros(4))
      >>> rbm.apply(params, jnp.array([1.0, 0.0, 1.0, 1.0])).shape
      ()
      >>> # W ≈ 0 and zero biases: every (v, h) nearly equally likely, Z ≈ 2^(4 + 3).
      >>> round(float(rbm.exact_log_partition(params)), 1), round(7 * float(jnp.log(2.0)), 1)
      (4.9, 4.9)
      >>> sampler = rbm.block_gibbs(params)
      >>> state, info = sampler.step(jax.random.key(1), sampler.init(jnp.ones(4)))
      >>> state.position.shape, state.hidden.shape, bool(info.is_accepted)
      ((4,), (3,), True)

    References:
      Smolensky (1986); Hinton (2002); Hinton (2010); Salakhutdinov & Murray
      (2008).
    """

    num_hidden: int
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        self._validate_fields()
        super().__post_init__()

    @nn.nowrap
    def _visible_logdensity(self, params: _RBMParams, visible: Array) -> Array:
        return visible @ params.visible_bias

    @nn.nowrap
    def _visible_mean(self, params: _RBMParams, hidden: Array) -> Array:
        return jax.nn.sigmoid(params.visible_bias + hidden @ params.weights.T)

    @nn.nowrap
    def _sample_visible(self, rng_key: PRNGKey, mean: Array) -> Array:
        return (jax.random.uniform(rng_key, mean.shape, mean.dtype) < mean).astype(mean.dtype)

    @nn.nowrap
    def _check_visible_values(self, visible: Array, name: str) -> None:
        # NumPy, not jnp: a concrete array closed over by a caller's jit must not be traced.
        if is_concrete(visible):
            values = np.asarray(visible)
            if not bool(np.all((values == 0) | (values == 1))):
                raise ValueError(f"{name} must contain only binary values 0 and 1")

    @nn.nowrap
    def _log_partition(self, params: _RBMParams, max_units: int, batch_size: int) -> Array:
        num_visible, num_hidden = params.weights.shape
        if min(num_visible, num_hidden) > max_units:
            raise ValueError(
                f"exact_log_partition enumerates the smaller layer, but num_visible="
                f"{num_visible} and num_hidden={num_hidden} both exceed max_units={max_units} "
                f"(2^{min(num_visible, num_hidden)} configurations); estimate log Z with "
                "ej.partition.annealed_importance_sampling instead"
            )
        if num_visible <= num_hidden:
            weights, enumerated_bias, summed_bias = (
                params.weights,
                params.visible_bias,
                params.hidden_bias,
            )
        else:
            weights, enumerated_bias, summed_bias = (
                params.weights.T,
                params.hidden_bias,
                params.visible_bias,
            )

        def log_weight(units: Array) -> Array:
            logits = summed_bias + units @ weights
            return units @ enumerated_bias + jnp.sum(jax.nn.softplus(logits), axis=-1)

        return _enumerate_log_sum(log_weight, weights.shape[0], batch_size, weights.dtype)


class GaussianBernoulliRBM(_RBM):
    """Gaussian–binary RBM: real visible units, binary hidden units, a fixed scale.

    .. math::

       E(v, h) = \\frac{\\lVert v - b\\rVert^2}{2\\sigma^2} - c^\\top h
                 - \\frac{v^\\top W h}{\\sigma^2}, \\qquad
       f(v) = -\\frac{\\lVert v - b\\rVert^2}{2\\sigma^2}
              + \\sum_{j=1}^H \\operatorname{softplus}\\big(c_j + (W^\\top v)_j / \\sigma^2\\big).

    Completing the square in :math:`v` gives the conditionals

    .. math::

       p(h_j = 1 \\mid v) = \\operatorname{sigmoid}\\big(c_j + (W^\\top v)_j / \\sigma^2\\big),
       \\qquad p(v \\mid h) = N(b + W h,\\; \\sigma^2 I),

    so :math:`p(v)` is a mixture of :math:`2^H` Gaussians
    :math:`N(m_h, \\sigma^2 I)`, :math:`m_h = b + W h`, with weights
    :math:`\\propto \\exp(c^\\top h + (\\lVert m_h\\rVert^2 - \\lVert b\\rVert^2)/(2\\sigma^2))`,
    and integrating :math:`v` out of each term,

    .. math::

       \\log Z = \\operatorname{logsumexp}_{h \\in \\{0,1\\}^H}
       \\Big[c^\\top h + \\frac{2 b^\\top W h + \\lVert W h\\rVert^2}{2\\sigma^2}\\Big]
       + \\frac{V}{2} \\log(2\\pi\\sigma^2),

    where :math:`2 b^\\top W h + \\lVert W h\\rVert^2 = \\lVert m_h\\rVert^2 -
    \\lVert b\\rVert^2`, written without the cancellation. The scale is fixed
    (not learned): standardise the data and use :math:`\\sigma = 1`, the usual
    practice (Hinton 2010, section 13.2; Cho, Ilin & Raiko 2011 learn it).
    Parameters and initialisation as in :class:`BernoulliRBM`.

    Attributes:
      num_hidden: :math:`H \\ge 1`.
      visible_scale: :math:`\\sigma > 0`.
      dtype: computation dtype (``None``: promoted from the input and params).
      param_dtype: dtype of the parameters.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax.models import GaussianBernoulliRBM
      >>> rbm = GaussianBernoulliRBM(num_hidden=4, visible_scale=0.5)
      >>> params = rbm.init(jax.random.key(0), jnp.zeros(2))
      >>> score = jax.grad(rbm.apply, argnums=1)(params, jnp.array([0.3, -0.2]))  # eq. (11.1)
      >>> score.shape
      (2,)
      >>> logp = rbm.log_likelihood(params, jnp.zeros((5, 2)))
      >>> logp.shape
      (5,)

    References:
      Krizhevsky (2009), chapter 1 and appendix; Cho, Ilin & Raiko (2011);
      Hinton (2010).
    """

    num_hidden: int
    visible_scale: float = 1.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        self._validate_fields()
        check_positive_scalar(self.visible_scale, "visible_scale")
        super().__post_init__()

    @nn.nowrap
    def _scale(self) -> float:
        return float(self.visible_scale)

    @nn.nowrap
    def _visible_logdensity(self, params: _RBMParams, visible: Array) -> Array:
        return -0.5 * jnp.sum(jnp.square(visible - params.visible_bias)) / self._scale() ** 2

    @nn.nowrap
    def _visible_mean(self, params: _RBMParams, hidden: Array) -> Array:
        return params.visible_bias + hidden @ params.weights.T

    @nn.nowrap
    def _sample_visible(self, rng_key: PRNGKey, mean: Array) -> Array:
        return mean + self._scale() * jax.random.normal(rng_key, mean.shape, mean.dtype)

    @nn.nowrap
    def _log_partition(self, params: _RBMParams, max_units: int, batch_size: int) -> Array:
        num_visible, num_hidden = params.weights.shape
        if num_hidden > max_units:
            raise ValueError(
                f"exact_log_partition enumerates the hidden layer, but num_hidden={num_hidden} "
                f"exceeds max_units={max_units} (2^{num_hidden} configurations); estimate "
                "log Z with ej.partition.annealed_importance_sampling instead"
            )
        variance = self._scale() ** 2

        def log_weight(hidden: Array) -> Array:
            shift = hidden @ params.weights.T  # W h, one row per configuration
            quadratic = 2.0 * shift @ params.visible_bias + jnp.sum(jnp.square(shift), axis=-1)
            return hidden @ params.hidden_bias + 0.5 * quadratic / variance

        log_gaussian_integral = 0.5 * num_visible * math.log(2.0 * math.pi * variance)
        dtype = params.weights.dtype
        return _enumerate_log_sum(log_weight, num_hidden, batch_size, dtype) + (
            log_gaussian_integral
        )


__all__ = ["BernoulliRBM", "GaussianBernoulliRBM", "RBMGibbsState"]

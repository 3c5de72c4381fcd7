"""The shape every analytic target has: exact log-density, score by autodiff, exact samples.

A :class:`Target` bundles what a test or a benchmark needs to check a sampler
or a learned model against the truth: the log-density :math:`f` of ONE
sample (normalised, :math:`\\int e^{f} = 1`, whenever the normaliser is known
in closed form), exact iid samples, and the first two moments where they are
known in closed form. The score :math:`\\nabla_x f` is never written by hand: it
is :func:`ebm_jax.score` of ``logdensity_fn`` (eq. 11.1).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ebm_jax._validation import check_finite_array, check_int
from ebm_jax.scores import score
from ebm_jax.types import Array, LogDensityFn, PRNGKey, ScoreFn

SampleFn = Callable[[PRNGKey, int], Array]
"""``(rng_key, num_samples) -> samples`` of shape ``(num_samples, *event_shape)``."""


class Target(NamedTuple):
    """An analytic target distribution (immutable).

    Attributes:
      logdensity_fn: ``x -> f(x)``, the log-density of ONE sample of shape
        ``event_shape``; normalised exactly when ``is_normalized``.
      sample: ``(rng_key, num_samples) -> (num_samples, *event_shape)`` exact
        iid samples. ``num_samples`` is a Python int (it fixes a shape), so
        under ``jit`` mark it static.
      event_shape: the shape of one sample.
      is_normalized: whether :math:`\\int e^{f(x)}\\, dx = 1` (sum, for discrete
        targets).
      mean: :math:`E[x]`, of shape ``event_shape``, or ``None`` when not known
        in closed form.
      covariance: :math:`\\mathrm{Cov}[x]` of the *flattened* sample, shape
        ``(size, size)``, or ``None`` when not known in closed form.
      name: a short human-readable name.
      parameters: read-only mapping of the family's parameters (e.g. the
        Gaussian's ``precision``, the Ising model's ``coupling``).
    """

    logdensity_fn: LogDensityFn
    sample: SampleFn
    event_shape: tuple[int, ...]
    is_normalized: bool
    mean: Array | None
    covariance: Array | None
    name: str
    parameters: Mapping[str, Any]

    @property
    def score_fn(self) -> ScoreFn:
        """:math:`x \\mapsto \\nabla_x f(x)`, by :func:`jax.grad` (eq. 11.1)."""
        return score(self.logdensity_fn)


def make_target(
    *,
    logdensity_fn: LogDensityFn,
    draw: Callable[[PRNGKey, int], Array],
    event_shape: tuple[int, ...],
    is_normalized: bool,
    mean: Array | None,
    covariance: Array | None,
    name: str,
    parameters: Mapping[str, Any],
) -> Target:
    """Assemble a :class:`Target`, validating ``num_samples`` in ``sample``.

    ``logdensity_fn`` and ``draw`` are wrapped in :func:`jax.jit` (``num_samples``
    static), so that eager calls run as one compiled program rather than op by
    op; inside a user's ``jit``, ``grad`` or ``vmap`` this changes nothing.
    """
    jitted_draw = jax.jit(draw, static_argnums=1)

    def sample(rng_key: PRNGKey, num_samples: int) -> Array:
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        return jitted_draw(rng_key, num_samples)

    return Target(
        logdensity_fn=jax.jit(logdensity_fn),
        sample=sample,
        event_shape=tuple(int(n) for n in event_shape),
        is_normalized=bool(is_normalized),
        mean=mean,
        covariance=covariance,
        name=name,
        parameters=types.MappingProxyType(dict(parameters)),
    )


def as_float_array(value: Any, name: str, *, ndim: int | None = None) -> Array:
    """``value`` as a finite floating-point array (default float dtype for ints)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        raise TypeError(f"{name} must be a real array, got {type(value).__name__}")
    try:
        array = jnp.asarray(value)
    except TypeError as exc:
        raise TypeError(f"{name} must be a real array, got {type(value).__name__}") from exc
    if jnp.issubdtype(array.dtype, jnp.complexfloating) or array.dtype == jnp.bool_:
        raise TypeError(f"{name} must be real, got dtype {array.dtype}")
    if not jnp.issubdtype(array.dtype, jnp.floating):
        array = array.astype(jnp.result_type(float))
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    check_finite_array(array, name)
    return array


__all__ = ["SampleFn", "Target", "as_float_array", "make_target"]

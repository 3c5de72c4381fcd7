"""Export chains to ArviZ: :func:`to_inference_data`.

ArviZ is an optional dependency (``pip install arviz``), imported only when
:func:`to_inference_data` is called. Everything else in
:mod:`ebm_jax.diagnostics` works without it.

References:
  Kumar, Carroll, Hartikainen & Martin (2019), *ArviZ a unified library for
  exploratory analysis of Bayesian models in Python*, JOSS 4(33).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ebm_jax.diagnostics._trees import named_leaves

# ChainInfo field -> ArviZ sample_stats name ("diverging" is the one ArviZ's plots read).
_PER_DRAW_STATS = (
    ("acceptance_rate", "acceptance_rate"),
    ("is_nonfinite", "nonfinite"),
    ("is_divergent", "diverging"),
)
_PER_CHAIN_STATS = ("acceptance_rate", "num_nonfinite", "num_divergent")


def _import_arviz() -> Any:
    try:
        import arviz
    except ImportError as exc:
        raise ImportError(
            "to_inference_data needs ArviZ, an optional dependency: pip install arviz"
        ) from exc
    return arviz


def _posterior(samples: Any, var_names: Sequence[str] | None) -> dict[str, np.ndarray]:
    """Variables named after the leaves, every one ``(num_chains, num_kept, *event_shape)``."""
    posterior: dict[str, np.ndarray] = {}
    leading: tuple[int, int] | None = None
    for name, label, leaf in named_leaves(samples, var_names):
        values = np.asarray(leaf)
        if values.ndim < 2:
            raise ValueError(
                f"result.{label} must have shape (num_chains, num_kept, *event_shape), "
                f"got shape {values.shape}"
            )
        if leading is None:
            leading = values.shape[:2]
        elif values.shape[:2] != leading:
            raise ValueError(
                f"every leaf of result.samples must share (num_chains, num_kept) = {leading}, "
                f"got result.{label} of shape {values.shape}"
            )
        posterior[name] = values
    return posterior


def _sample_stats(result: Any, num_chains: int, num_kept: int) -> tuple[dict, dict]:
    """Per-draw statistics from ``result.info`` (if any), else per-chain totals."""
    info = getattr(result, "info", None)
    per_draw: dict[str, np.ndarray] = {}
    per_chain: dict[str, np.ndarray] = {}
    if info is not None:
        for field, name in _PER_DRAW_STATS:
            value = getattr(info, field, None)
            if value is None:
                continue
            value = np.asarray(value)
            if value.shape != (num_chains, num_kept):
                raise ValueError(
                    f"result.info.{field} must have shape (num_chains, num_kept) = "
                    f"{(num_chains, num_kept)} like result.samples, got {value.shape}"
                )
            per_draw[name] = value.astype(bool) if field != "acceptance_rate" else value
        return per_draw, per_chain
    for field in _PER_CHAIN_STATS:
        value = getattr(result, field, None)
        if value is None:
            continue
        value = np.asarray(value)
        if value.shape != (num_chains,):
            raise ValueError(
                f"result.{field} must have shape (num_chains,) = ({num_chains},), got {value.shape}"
            )
        # A kernel without an acceptance probability reports NaN: nothing to export.
        if field == "acceptance_rate" and np.all(np.isnan(value)):
            continue
        per_chain[field] = value
    return per_draw, per_chain


def to_inference_data(result: Any, var_names: Sequence[str] | None = None) -> Any:
    """Convert the result of :func:`ebm_jax.run_chains` to an ArviZ ``InferenceData``.

    Groups:

    - ``posterior``: one variable per leaf of ``result.samples``, with dims
      ``("chain", "draw", "<name>_dim_0", ...)`` (ArviZ's default names for
      the event axes). Dict keys name the variables (nested dicts joined
      with ``"."``), positions in a tuple or list give ``x_0, x_1, ...`` and
      a single array is ``x``; ``var_names`` overrides them.
    - ``sample_stats``: with ``run_chains(..., collect_info=True)``, the
      per-draw ``acceptance_rate``, ``nonfinite`` (bool) and ``diverging``
      (bool, the name ArviZ's plots read), each where the kernel reports it,
      with dims ``("chain", "draw")``. Without ``info``, the per-chain
      ``acceptance_rate`` (unless the kernel reports none: NaN),
      ``num_nonfinite`` and ``num_divergent``, where present, with dims
      ``("chain",)``.

    Then ``arviz.summary(idata)``, ``arviz.ess(idata)`` and ArviZ's plots
    work on the chains; ``arviz.summary`` agrees with :func:`summary`.

    Args:
      result: a :class:`~ebm_jax.ChainResult` (or any object with its fields
        ``samples``, ``acceptance_rate`` and optionally ``num_nonfinite``,
        ``num_divergent``, ``info``), from ``run_chains(..., collect="samples")``.
        Leaves of ``samples`` have shape ``(num_chains, num_kept, *event_shape)``.
      var_names: one variable name per leaf of ``result.samples``, in
        flattening order (dict keys sorted).

    Returns:
      An ``arviz.InferenceData`` with groups ``posterior`` and, when there is
      anything to put in it, ``sample_stats``.

    Raises:
      ImportError: ArviZ is not installed (``pip install arviz``).
      ValueError: ``result.samples`` is None (``collect="stats"``), shapes do
        not match, or ``var_names`` does not hold one unique name per leaf.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import ebm_jax as ej
      >>> from ebm_jax import diagnostics
      >>> logdensity_fn = lambda x: -0.5 * jnp.sum(x["mu"] ** 2) - 0.5 * jnp.sum(x["theta"] ** 2)
      >>> algorithm = ej.samplers.mala(logdensity_fn, 0.5)
      >>> positions = {"mu": jnp.zeros((4,)), "theta": jnp.zeros((4, 3))}
      >>> result = ej.run_chains(jax.random.key(0), algorithm, positions, 200)
      >>> idata = diagnostics.to_inference_data(result)
      >>> idata.posterior["theta"].dims
      ('chain', 'draw', 'theta_dim_0')
      >>> idata.sample_stats["acceptance_rate"].dims
      ('chain',)

    References:
      Kumar, Carroll, Hartikainen & Martin (2019), JOSS 4(33); the ArviZ
      InferenceData schema, https://python.arviz.org/en/stable/schema/schema.html.
    """
    samples = getattr(result, "samples", None)
    if samples is None:
        raise ValueError(
            "result.samples is None: run_chains(..., collect='stats') keeps no draws; "
            "run it with collect='samples' to export the chains"
        )
    posterior = _posterior(samples, var_names)
    num_chains, num_kept = next(iter(posterior.values())).shape[:2]
    per_draw, per_chain = _sample_stats(result, num_chains, num_kept)

    arviz = _import_arviz()
    import xarray

    import ebm_jax

    groups = {"posterior": arviz.dict_to_dataset(posterior, library=ebm_jax)}
    if per_draw:
        groups["sample_stats"] = arviz.dict_to_dataset(per_draw, library=ebm_jax)
    elif per_chain:
        groups["sample_stats"] = xarray.Dataset(
            {name: (("chain",), value) for name, value in per_chain.items()},
            coords={"chain": np.arange(num_chains)},
            attrs=groups["posterior"].attrs,
        )
    return arviz.InferenceData(**groups)


__all__ = ["to_inference_data"]

"""Tests for to_inference_data: the ArviZ export of run_chains results."""

from __future__ import annotations

import sys
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax import diagnostics
from tests.diagnostics.chains import posterior_draws

NUM_CHAINS, NUM_KEPT = 4, 100


class ChainInfo(NamedTuple):
    """Per-draw kernel information, as ``run_chains(..., collect_info=True)`` keeps it."""

    acceptance_rate: Any
    is_accepted: Any
    is_nonfinite: Any
    is_divergent: Any


class ChainResultLike(NamedTuple):
    """The fields of ``ebm_jax.ChainResult`` that the export reads, and the others."""

    samples: Any
    acceptance_rate: Any
    num_nonfinite: Any = None
    num_divergent: Any = None
    mean: Any = None
    variance: Any = None
    num_kept: int = NUM_KEPT
    final_state: Any = None
    info: Any = None


def two_leaves() -> dict[str, jax.Array]:
    keys = jax.random.split(jax.random.key(0))
    return {
        "mu": jax.random.normal(keys[0], (NUM_CHAINS, NUM_KEPT)),
        "theta": jax.random.normal(keys[1], (NUM_CHAINS, NUM_KEPT, 3)),
    }


def per_draw_info(with_divergences: bool) -> ChainInfo:
    keys = jax.random.split(jax.random.key(1), 3)
    shape = (NUM_CHAINS, NUM_KEPT)
    return ChainInfo(
        acceptance_rate=jax.random.uniform(keys[0], shape),
        is_accepted=jax.random.bernoulli(keys[0], 0.7, shape),
        is_nonfinite=jax.random.bernoulli(keys[1], 0.1, shape),
        is_divergent=jax.random.bernoulli(keys[2], 0.05, shape) if with_divergences else None,
    )


@pytest.fixture(scope="module")
def export(az):
    """to_inference_data with the `az` fixture's import (quiet) done first."""
    return diagnostics.to_inference_data


def test_posterior_round_trip_with_per_chain_stats(export):
    samples = two_leaves()
    result = ChainResultLike(
        samples=samples,
        acceptance_rate=jnp.array([0.5, 0.6, 0.7, 0.8]),
        num_nonfinite=jnp.array([0, 1, 0, 2], jnp.int32),
        num_divergent=jnp.array([3, 0, 0, 1], jnp.int32),
    )
    idata = export(result)
    posterior = idata.posterior
    assert list(posterior.data_vars) == ["mu", "theta"]
    assert posterior["mu"].dims == ("chain", "draw")
    assert posterior["theta"].dims == ("chain", "draw", "theta_dim_0")
    assert posterior["theta"].shape == (NUM_CHAINS, NUM_KEPT, 3)
    np.testing.assert_array_equal(posterior["chain"], np.arange(NUM_CHAINS))
    np.testing.assert_array_equal(posterior["draw"], np.arange(NUM_KEPT))
    for name, values in samples.items():
        np.testing.assert_array_equal(posterior[name].values, np.asarray(values))

    stats = idata.sample_stats
    assert sorted(stats.data_vars) == ["acceptance_rate", "num_divergent", "num_nonfinite"]
    for name in stats.data_vars:
        assert stats[name].dims == ("chain",)
        np.testing.assert_array_equal(stats[name].values, np.asarray(getattr(result, name)))


def test_per_draw_stats_from_info_use_arviz_names(export):
    samples = two_leaves()
    info = per_draw_info(with_divergences=True)
    idata = export(ChainResultLike(samples, jnp.full(NUM_CHAINS, 0.7), info=info))
    stats = idata.sample_stats
    assert sorted(stats.data_vars) == ["acceptance_rate", "diverging", "nonfinite"]
    for name, field in (("acceptance_rate", "acceptance_rate"), ("nonfinite", "is_nonfinite")):
        assert stats[name].dims == ("chain", "draw")
        np.testing.assert_array_equal(stats[name].values, np.asarray(getattr(info, field)))
    assert stats["diverging"].dtype == bool and stats["nonfinite"].dtype == bool
    np.testing.assert_array_equal(stats["diverging"].values, np.asarray(info.is_divergent))

    # A kernel that reports no divergences: no "diverging" variable at all.
    idata = export(ChainResultLike(samples, jnp.full(NUM_CHAINS, 0.7), info=per_draw_info(False)))
    assert sorted(idata.sample_stats.data_vars) == ["acceptance_rate", "nonfinite"]


def test_unreported_per_chain_stats_are_left_out(export):
    # NaN acceptance (a kernel without an MH step) and no nonfinite/divergence counts.
    result = ChainResultLike(two_leaves(), jnp.full(NUM_CHAINS, jnp.nan))
    idata = export(result)
    assert idata.groups() == ["posterior"]
    counts_only = result._replace(num_nonfinite=jnp.zeros(NUM_CHAINS, jnp.int32))
    assert list(export(counts_only).sample_stats.data_vars) == ["num_nonfinite"]


def test_variable_names_of_other_pytrees(export):
    leaves = two_leaves()
    rate = jnp.full(NUM_CHAINS, 0.5)
    single = export(ChainResultLike(leaves["theta"], rate))
    assert list(single.posterior.data_vars) == ["x"]
    pair = export(ChainResultLike((leaves["mu"], leaves["theta"]), rate))
    assert list(pair.posterior.data_vars) == ["x_0", "x_1"]
    assert pair.posterior["x_1"].dims == ("chain", "draw", "x_1_dim_0")
    nested = export(ChainResultLike({"a": {"b": leaves["mu"]}, "c": leaves["theta"]}, rate))
    assert list(nested.posterior.data_vars) == ["a.b", "c"]
    renamed = export(ChainResultLike(leaves, rate), var_names=["alpha", "beta"])
    assert list(renamed.posterior.data_vars) == ["alpha", "beta"]
    np.testing.assert_array_equal(renamed.posterior["beta"].values, np.asarray(leaves["theta"]))


def test_arviz_summary_and_ess_of_the_export_equal_ours(x64, az):
    samples = posterior_draws(300)
    idata = diagnostics.to_inference_data(ChainResultLike(samples, jnp.full(NUM_CHAINS, 0.5)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = az.summary(idata, round_to="none")
        expected_ess = az.ess(idata, method="tail")
    table = diagnostics.summary(samples)
    assert list(table.row_names) == list(expected.index)
    for column in expected.columns:
        np.testing.assert_allclose(table.columns[column], expected[column], rtol=1e-6)
    ours = diagnostics.ess(samples, method="tail")
    for name in samples:
        np.testing.assert_allclose(ours[name], expected_ess[name].values, rtol=1e-6)


@pytest.mark.parametrize(
    "make_result, kwargs, match",
    [
        (lambda s: ChainResultLike(None, jnp.zeros(NUM_CHAINS)), {}, "collect='samples'"),
        (lambda s: ChainResultLike(s, jnp.zeros(NUM_CHAINS)), {"var_names": ["a"]}, "var_names"),
        (
            lambda s: ChainResultLike(s, jnp.zeros(NUM_CHAINS)),
            {"var_names": ["a", "a"]},
            "var_names",
        ),
        (
            lambda s: ChainResultLike({**s, "mu": s["mu"][:, :10]}, jnp.zeros(NUM_CHAINS)),
            {},
            r"\(num_chains, num_kept\) = \(4, 10\), got result.samples\['theta'\]",
        ),
        (
            lambda s: ChainResultLike({"mu": s["mu"][0]}, jnp.zeros(NUM_CHAINS)),
            {},
            r"result.samples\['mu'\]",
        ),
        (
            lambda s: ChainResultLike(
                s, jnp.zeros(NUM_CHAINS), info=per_draw_info(True)._replace(is_nonfinite=s["mu"].T)
            ),
            {},
            "result.info.is_nonfinite",
        ),
        (
            lambda s: ChainResultLike(s, jnp.zeros(NUM_CHAINS), num_nonfinite=jnp.zeros(3)),
            {},
            "result.num_nonfinite",
        ),
    ],
)
def test_bad_results_raise_value_errors_naming_the_field(export, make_result, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export(make_result(two_leaves()), **kwargs)


def test_missing_arviz_raises_an_import_error_saying_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "arviz", None)  # `import arviz` now raises ImportError
    with pytest.raises(ImportError, match="pip install arviz"):
        diagnostics.to_inference_data(ChainResultLike(two_leaves(), jnp.zeros(NUM_CHAINS)))

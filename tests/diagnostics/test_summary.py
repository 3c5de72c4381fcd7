"""Tests for tail ESS, pytree inputs and ``summary``: equal to ArviZ in float64."""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax
import numpy as np
import pytest

from ebm_jax import diagnostics
from tests.diagnostics.chains import posterior_draws, stacked


def arviz(function, data, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(data, **kwargs)


def test_tail_ess_equals_arviz_and_differs_from_bulk(x64, az):
    samples = stacked(posterior_draws(300))
    tail = np.asarray(diagnostics.ess(samples, method="tail"))
    expected = np.asarray(arviz(az.ess, az.convert_to_dataset(samples), method="tail")["x"])
    np.testing.assert_allclose(tail, expected, rtol=1e-6)
    bulk = np.asarray(diagnostics.ess(samples, method="bulk"))
    # Heavy (theta[0]) and skewed (theta[1]) tails are explored more slowly than the
    # bulk here: if "tail" were the bulk ESS under another name, these ratios would be 1.
    assert np.all(np.abs(tail[1:3] / bulk[1:3] - 1) > 0.1), (tail, bulk)


def test_tail_ess_of_independent_draws_is_about_their_number():
    # For iid draws every indicator I(θ ≤ θ_q) is iid too: ESS_tail / S → 1.
    draws = np.random.default_rng(0).standard_t(df=3, size=(4, 5000)).astype(np.float32)
    ratio = float(diagnostics.ess(draws, method="tail")) / draws.size
    assert abs(ratio - 1) < 0.1, ratio


def test_pytree_ess_rhat_mcse_equal_arviz_leaf_by_leaf(x64, az):
    draws = posterior_draws(300)
    dataset = az.convert_to_dataset(draws)
    # Every method is checked per coordinate in test_convergence.py; here the pytree
    # path, with methods whose programs the other tests of this module compile too.
    calls = [
        (diagnostics.ess, az.ess, {"method": "bulk"}),
        (diagnostics.ess, az.ess, {"method": "tail"}),
        (diagnostics.rhat, az.rhat, {"method": "rank"}),
        (diagnostics.mcse, az.mcse, {"method": "sd"}),
    ]
    for ours_fn, arviz_fn, kwargs in calls:
        ours = ours_fn(draws, **kwargs)
        expected = arviz(arviz_fn, dataset, **kwargs)
        assert set(ours) == {"mu", "theta"}
        assert ours["mu"].shape == () and ours["theta"].shape == (3,)
        for name in ours:
            np.testing.assert_allclose(ours[name], expected[name], rtol=1e-6, err_msg=str(kwargs))
    # The shifted chain of theta[2] is caught; the mixed mu is not flagged.
    rank = diagnostics.rhat(draws)
    assert float(rank["theta"][2]) > 1.1 and float(rank["mu"]) < 1.01


def test_pytree_structure_is_kept_and_a_plain_array_unchanged(x64):
    draws = posterior_draws(300)
    theta = draws["theta"]
    nested = (draws["mu"], {"a": theta[..., :2], "b": [theta[..., 2]]})
    result = diagnostics.ess(nested, method="tail")
    assert isinstance(result, tuple) and isinstance(result[1]["b"], list)
    assert result[1]["a"].shape == (2,) and result[1]["b"][0].shape == ()
    flat = np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(result)])
    expected = diagnostics.ess(stacked(draws), method="tail")
    np.testing.assert_allclose(flat, expected, rtol=1e-12)
    # A nested list of numbers is still one array, as NumPy reads it.
    as_lists = stacked(draws).tolist()
    np.testing.assert_array_equal(
        diagnostics.mcse(as_lists, method="sd"), diagnostics.mcse(stacked(draws), method="sd")
    )


@pytest.mark.parametrize("num_draws", [300, 301])  # odd: the middle draw is dropped
def test_summary_equals_arviz_summary(x64, az, num_draws):
    draws = posterior_draws(num_draws)
    table = diagnostics.summary(draws)
    expected = arviz(az.summary, draws, round_to="none")
    assert list(table.row_names) == list(expected.index)
    assert list(table.columns) == list(expected.columns)
    assert table.row_names == ("mu", "theta[0]", "theta[1]", "theta[2]")
    for column in expected.columns:
        np.testing.assert_allclose(
            table.columns[column], expected[column].to_numpy(), rtol=1e-6, err_msg=column
        )
    r_hat = dict(zip(table.row_names, table.columns["r_hat"], strict=True))
    assert r_hat["theta[2]"] > 1.01 and r_hat["mu"] < 1.01


def test_summary_names_rows_like_arviz(x64, az):
    draws = posterior_draws(300)
    matrix = stacked(draws).reshape(4, 300, 2, 2)  # event shape (2, 2)
    table = diagnostics.summary(matrix)
    expected = arviz(az.summary, matrix, round_to="none")
    assert table.row_names == ("x[0, 0]", "x[0, 1]", "x[1, 0]", "x[1, 1]")
    assert list(table.row_names) == list(expected.index)
    for column in expected.columns:
        np.testing.assert_allclose(table.columns[column], expected[column], rtol=1e-6)

    # One chain: R̂ is undefined (NaN, as ArviZ).
    single = diagnostics.summary({"mu": draws["mu"][:1]})
    assert single.row_names == ("mu",) and math.isnan(single.columns["r_hat"][0])
    reference = arviz(az.summary, {"mu": draws["mu"][:1]}, round_to="none")
    for column in reference.columns:
        np.testing.assert_allclose(single.columns[column], reference[column], rtol=1e-6)

    # Tuples give x_0, x_1; nested dicts join keys with "."; var_names overrides.
    pair = (draws["mu"], draws["theta"])
    assert diagnostics.summary(pair).row_names[:2] == ("x_0", "x_1[0]")
    nested = diagnostics.summary({"a": {"b": draws["mu"], "c": draws["theta"]}})
    assert nested.row_names[:2] == ("a.b", "a.c[0]")
    renamed = diagnostics.summary(pair, var_names=["sigma", "tau"])
    assert renamed.row_names == ("sigma", "tau[0]", "tau[1]", "tau[2]")
    np.testing.assert_array_equal(renamed.columns["ess_bulk"], nested.columns["ess_bulk"])


def test_summary_is_an_immutable_printable_table(x64, az):
    draws = posterior_draws(300)
    table = diagnostics.summary(draws, hdi_prob=0.9)
    expected = arviz(az.summary, draws, hdi_prob=0.9, round_to="none")
    assert list(table.columns)[2:4] == ["hdi_5%", "hdi_95%"]
    for column in ("hdi_5%", "hdi_95%"):
        np.testing.assert_array_equal(table.columns[column], expected[column])
    lines = str(table).splitlines()
    assert len(lines) == 1 + len(table.row_names)
    assert len({len(line) for line in lines}) == 1  # fixed width
    assert lines[0].split() == list(table.columns)
    assert [line.split()[0] for line in lines[1:]] == list(table.row_names)
    assert repr(table) == str(table)

    as_dict = table.to_dict()
    assert list(as_dict) == list(table.columns)
    assert as_dict["ess_bulk"]["theta[1]"] == float(table.columns["ess_bulk"][2])
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.row_names = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        table.columns["mean"] = np.zeros(4)  # type: ignore[index]
    with pytest.raises(ValueError, match="read-only"):
        table.columns["mean"][0] = 0.0


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda d: diagnostics.summary(d, var_names=["mu"]), ValueError, "var_names"),
        (lambda d: diagnostics.summary(d, var_names=["a", "a"]), ValueError, "var_names"),
        (lambda d: diagnostics.summary(d, var_names="mu"), TypeError, "var_names"),
        (lambda d: diagnostics.summary(d, hdi_prob=1.0), ValueError, "hdi_prob"),
        (lambda d: diagnostics.summary({"mu": d["mu"][:, :3]}), ValueError, r"samples\['mu'\]"),
        (lambda d: diagnostics.ess({"theta": d["mu"][0]}), ValueError, r"samples\['theta'\]"),
        (lambda d: diagnostics.rhat({"mu": d["mu"][:1]}), ValueError, r"samples\['mu'\]"),
        (lambda d: diagnostics.ess(d, method="median"), ValueError, "method"),
        (lambda d: diagnostics.ess({}), ValueError, "samples"),
    ],
)
def test_bad_inputs_raise_errors_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call(posterior_draws(300))

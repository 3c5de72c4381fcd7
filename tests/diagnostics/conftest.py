"""Fixtures of the diagnostics tests: float64 for exactness checks, ArviZ as the reference."""

from __future__ import annotations

import warnings

import jax
import pytest


@pytest.fixture
def x64():
    """Run one test in float64 (exactness checks), restoring the previous setting."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(scope="module")
def az():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ announces its refactor on import
        return pytest.importorskip("arviz")

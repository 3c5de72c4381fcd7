"""How the suite compiles, and the order tests start in."""

from __future__ import annotations

import os

import pytest

from tests.helpers import QUICK_COMPILE_ENV

# Set before JAX is first imported (this file loads before any test module): the suite
# checks what the programs compute, which XLA's HLO passes fix, not how fast XLA:CPU's
# backend makes them; skipping LLVM's optimisations takes about a third off the suite's
# CPU time, most of it compilation. `JAX_DISABLE_MOST_OPTIMIZATIONS=0 make test` runs
# the suite on the fully optimised build; the benchmarks and `make demo` always do.
for _name, _value in QUICK_COMPILE_ENV.items():
    os.environ.setdefault(_name, _value)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the tests marked ``slow`` first, in collection order otherwise.

    Under pytest-xdist with ``--maxschedchunk 1`` (``make test``) a worker
    takes the next test whenever it finishes one, so long tests started first
    are evened out by the many short ones after them, where a long test
    started last would run on alone at the end.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)

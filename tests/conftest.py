"""The order tests start in."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the tests marked ``slow`` first, in collection order otherwise.

    Under pytest-xdist with ``--maxschedchunk 1`` (``make test``) a worker
    takes the next test whenever it finishes one, so long tests started first
    are evened out by the many short ones after them, where a long test
    started last would run on alone at the end.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)

"""docs/equations.md points at tests that exist: every ``path::name`` is a test function."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_referenced_test_exists():
    table = (ROOT / "docs" / "equations.md").read_text()
    references = 0
    for row in table.splitlines():
        if not row.startswith("|"):
            continue
        cell = row.rstrip("|").rsplit("|", 1)[-1]
        current = None
        for path, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?", cell):
            if path:
                current = ROOT / path
                assert current.is_file(), f"{path} does not exist ({row[:60]}...)"
            if name:
                assert current is not None, f"::{name} without a file in {row[:60]}..."
                assert name in _test_functions(current), f"{current.name}::{name} does not exist"
                references += 1
    assert references > 20

"""The README's tour runs as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import run_python

README = Path(__file__).resolve().parents[1] / "README.md"

# The blocks (a JSON list on stdin) in order, in one namespace, as one reader's session.
SCRIPT = """
import json, sys
namespace = {}
for block in json.load(sys.stdin):
    exec(compile(block, sys.argv[1], "exec"), namespace)
print("result.samples.shape", tuple(namespace["result"].samples.shape))
"""


@pytest.mark.slow
def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python tour"
    # A process of its own: the tour is compile-bound (QUICK_COMPILE_ENV).
    completed = run_python(["-c", SCRIPT, README], input=json.dumps(blocks), timeout=900)
    assert completed.stdout.splitlines()[-1] == "result.samples.shape (1024, 100, 2)"

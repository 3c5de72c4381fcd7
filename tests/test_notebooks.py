"""Every notebook runs top to bottom in its fast mode; the committed ones carry their outputs.

The committed notebooks are built by ``notebooks/build_*.py`` and executed in full mode by
``make notebooks``; the cheap checks below keep them in step with their build scripts.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
MAX_BYTES = 2 * 2**20


def code_outputs(notebook):
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch):
    # The kernel inherits the suite's environment, QUICK_COMPILE_ENV included (conftest.py):
    # at toy sizes a notebook is compile-bound.
    monkeypatch.setenv("EBM_JAX_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv(
        "PYTHONPATH", str(path.parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    assert not [out for out in code_outputs(notebook) if out.output_type == "error"]


def test_every_notebook_has_a_build_script():
    built = {path.name.removeprefix("build_") for path in NOTEBOOK_DIR.glob("build_*.py")}
    assert {path.with_suffix(".py").name for path in NOTEBOOKS} == built


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_committed_notebook_carries_its_outputs(path):
    assert path.stat().st_size < MAX_BYTES
    notebook = nbformat.read(path, as_version=4)
    outputs = code_outputs(notebook)
    assert not [out for out in outputs if out.output_type == "error"]
    assert any("image/png" in out.get("data", {}) for out in outputs)
    # Every code cell was executed, in order, in one kernel session.
    counts = [cell.execution_count for cell in notebook.cells if cell.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))
    # No execution timestamps, and no object reprs whose addresses change run to run.
    assert not [cell for cell in notebook.cells if "execution" in cell.metadata]
    texts = [out.get("data", {}).get("text/plain", "") for out in outputs]
    assert not [text for text in texts if " at 0x" in text]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_committed_notebook_matches_its_build_script(path, tmp_path, monkeypatch):
    """Outputs cannot go stale: the cells are exactly those the build script writes."""
    monkeypatch.syspath_prepend(str(NOTEBOOK_DIR))
    build = importlib.import_module(f"build_{path.stem}")
    rebuilt_path = tmp_path / path.name
    build.write_notebook(build.CELLS, rebuilt_path)
    rebuilt = nbformat.read(rebuilt_path, as_version=4)
    committed = nbformat.read(path, as_version=4)
    cells = lambda notebook: [(cell.id, cell.cell_type, cell.source) for cell in notebook.cells]
    assert cells(committed) == cells(rebuilt), "rebuild and re-run it: make notebooks"
    assert committed.metadata == rebuilt.metadata

"""Rebuilds each notebook from its build script and executes it in full mode, in place.

    python notebooks/_execute.py            # every notebook
    python notebooks/_execute.py 02 04      # those whose names start so

The notebook is written back with its outputs and figures (PNG). Execution timestamps are
not recorded, the notebook metadata stays as built and each cell's printed text is one
output however the kernel flushed it, so re-running an unchanged notebook changes only what
varies from run to run (the timings of notebook 02).
"""

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent
# Seconds per cell: full mode's longest cells take a minute or two on a 2-core CPU; a run
# stalled in XLA's CPU runtime fails instead of waiting forever.
CELL_TIMEOUT = 600


def build(build_script: Path) -> Path:
    """Runs ``build_<name>.py``, which writes ``<name>.ipynb``; returns that path."""
    importlib.import_module(build_script.stem).main()
    return NOTEBOOKS / build_script.with_suffix(".ipynb").name.removeprefix("build_")


def coalesce_streams(cell) -> None:
    """Joins consecutive stdout (or stderr) outputs, which the kernel splits at random."""
    outputs = []
    for output in cell.outputs:
        previous = outputs[-1] if outputs else None
        if (
            output.output_type == "stream"
            and previous is not None
            and previous.output_type == "stream"
            and previous.name == output.name
        ):
            previous.text += output.text
        else:
            outputs.append(output)
    cell.outputs = outputs


def execute(path: Path) -> float:
    """Executes a notebook top to bottom and writes it back; returns the wall time in seconds."""
    notebook = nbformat.read(path, as_version=4)
    metadata = dict(notebook.metadata)
    start = time.perf_counter()
    NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()
    seconds = time.perf_counter() - start
    for cell in notebook.cells:
        if cell.cell_type == "code":
            coalesce_streams(cell)
    # The kernel adds language_info, which names the interpreter's exact version.
    notebook.metadata = nbformat.from_dict(metadata)
    nbformat.write(notebook, path)
    return seconds


def report(path: Path, seconds: float) -> None:
    notebook = nbformat.read(path, as_version=4)
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    images = sum("image/png" in out.get("data", {}) for out in outputs)
    size = path.stat().st_size / 2**20
    print(f"{path.name}: {seconds:.0f} s, {images} figures, {size:.2f} MiB")
    for out in outputs:
        if out.output_type == "stream" and out.name == "stderr":
            print(f"  stderr: {out.text.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="notebook name prefixes (default: all)")
    prefixes = tuple(parser.parse_args().prefixes) or ("",)
    scripts = sorted(NOTEBOOKS.glob("build_*.py"))
    scripts = [s for s in scripts if s.stem.removeprefix("build_").startswith(prefixes)]
    if not scripts:
        parser.error(f"no build script matches {prefixes}")
    # Full mode, and the kernel's own inline backend for the figures.
    os.environ.pop("EBM_JAX_FAST", None)
    os.environ.pop("MPLBACKEND", None)
    repository = str(NOTEBOOKS.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [repository, os.getenv("PYTHONPATH")]))
    sys.path.insert(0, str(NOTEBOOKS))
    for script in scripts:
        path = build(script)
        report(path, execute(path))


if __name__ == "__main__":
    main()

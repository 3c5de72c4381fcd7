"""Writes a notebook (unexecuted) from a list of ``("md" | "code", source)`` cells."""

from pathlib import Path

import nbformat


def write_notebook(cells: list[tuple[str, str]], path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for index, (kind, source) in enumerate(cells):
        make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        # Stable ids, so rebuilding an unchanged notebook changes nothing.
        notebook.cells.append(make(source, id=f"cell-{index:02d}"))
    nbformat.write(notebook, path)
    print(f"wrote {path}")

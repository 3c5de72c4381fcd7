"""The documentation site builds with warnings as errors, and documents every public name.

A docstring whose reStructuredText is malformed, a broken page or a notebook that
does not render fails here. The notebooks are rendered with their committed
outputs, never executed.
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

import ebm_jax
from tests.helpers import run_python

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _expected_ids() -> set[str]:
    """``ebm_jax.<subpackage>.<name>`` for every public name, ``ebm_jax.<name>`` for
    the top-level functions and classes (``ej.run_chains``)."""
    expected = set()
    for name in ebm_jax.__all__:
        value = getattr(ebm_jax, name)
        if isinstance(value, types.ModuleType):
            expected |= {
                f"ebm_jax.{name}.{member}"
                for member in value.__all__
                if not isinstance(getattr(value, member), types.ModuleType)
            }
        elif name != "__version__":
            expected.add(f"ebm_jax.{name}")
    return expected


@pytest.mark.slow
def test_docs_build_with_warnings_as_errors_and_document_every_public_name(tmp_path):
    pytest.importorskip("sphinx", reason="pip install 'ebm_jax[docs]'")
    pytest.importorskip("myst_nb", reason="pip install 'ebm_jax[docs]'")
    html, doctrees = tmp_path / "html", tmp_path / "doctrees"
    build = ["-W", "--keep-going", "-q", "-b", "html", "-d", str(doctrees), str(DOCS), str(html)]
    run_python(["-m", "sphinx", *build], stderr_tail=8000)

    documented = set()
    for page in (html / "api").glob("*.html"):
        documented |= set(re.findall(r'id="(ebm_jax[\w.]*)"', page.read_text()))
    assert not _expected_ids() - documented
    for notebook in sorted((DOCS.parent / "notebooks").glob("*.ipynb")):
        assert (html / "notebooks" / notebook.with_suffix(".html").name).is_file()

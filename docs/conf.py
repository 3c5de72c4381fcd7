"""Sphinx configuration of the ebm_jax documentation.

The docstrings are reStructuredText with ``:math:`` and Google-style sections,
rendered by autodoc, napoleon and MathJax. Markdown pages and the notebooks go
through MyST-NB, which renders the notebooks' committed outputs and never
executes them. Three things are gathered at build time, so that new files and
names appear without editing this folder: the notebooks are copied into
``docs/notebooks/`` (git-ignored), the committed benchmark results are appended
to the benchmarks page, and each API page documents its module's ``__all__``.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import pkgutil
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

from docutils.parsers.rst import Directive, directives
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.inspect import stringify_signature
from sphinx.util.nodes import make_refnode

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import flax.linen  # noqa: E402

import ebm_jax  # noqa: E402

project = "ebm_jax"
author = "The ebm_jax developers"
copyright = "2026, The ebm_jax developers"
release = version = ebm_jax.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

html_theme = "furo"
html_title = f"ebm_jax {release}"

# Notebooks are rendered with the outputs they were committed with.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = False  # the docstrings state shapes; "jax.jaxlib._jax.Array" says less


# --- Notebooks: copied from ../notebooks, outputs included.

NOTEBOOK_SOURCE = ROOT / "notebooks"
NOTEBOOK_COPY = DOCS / "notebooks"


def _copy_notebooks() -> None:
    """Mirror ``notebooks/*.ipynb`` into ``docs/notebooks``; copy2 keeps mtimes, so an
    unchanged notebook is not re-read by an incremental build."""
    NOTEBOOK_COPY.mkdir(exist_ok=True)
    wanted = {path.name for path in NOTEBOOK_SOURCE.glob("*.ipynb")}
    for stale in NOTEBOOK_COPY.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    for name in wanted:
        source, copy = NOTEBOOK_SOURCE / name, NOTEBOOK_COPY / name
        if not copy.exists() or copy.read_bytes() != source.read_bytes():
            shutil.copy2(source, copy)


_copy_notebooks()


# --- Benchmark results: every committed benchmarks/results/<device>/*.md.

RESULTS = ROOT / "benchmarks" / "results"


def benchmark_result_files() -> list[Path]:
    """The committed Markdown results, one folder per device (every one outside a git checkout)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--", "benchmarks/results/*/*.md"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        files = [ROOT / name for name in listed]
    except (OSError, subprocess.CalledProcessError):
        files = list(RESULTS.glob("*/*.md"))
    return sorted(path for path in files if path.is_file())


def _benchmark_sections() -> str:
    lines = []
    device = None
    for path in benchmark_result_files():
        if path.parent.name != device:
            device = path.parent.name
            lines += ["", f"## Results: `{device}`", ""]
        relative = Path("..") / path.relative_to(ROOT)
        lines += ["", f"```{{include}} {relative.as_posix()}", ":heading-offset: 2", "```", ""]
    return "\n".join(lines)


def _append_benchmark_results(app, docname: str, source: list[str]) -> None:
    if docname == "benchmarks":
        source[0] += "\n" + _benchmark_sections()


def _benchmarks_always_outdated(app, env, added, changed, removed) -> list[str]:
    # A new result file is not a dependency Sphinx knows of: re-read the page every build.
    return ["benchmarks"] if "benchmarks" in env.found_docs else []


# --- API pages: one directive per module, documenting its public names.


def _public_names(module: types.ModuleType) -> list[str]:
    """``__all__``, or else the functions and classes the module itself defines."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    ]


def _public_submodules(module: types.ModuleType) -> list[str]:
    """A package's modules whose names do not start with an underscore, in file order."""
    if not hasattr(module, "__path__"):
        return []
    return [
        f"{module.__name__}.{info.name}"
        for info in pkgutil.iter_modules(module.__path__)
        if not info.name.startswith("_")
    ]


class PublicNames(Directive):
    """``.. public-names:: ebm_jax.samplers``: the module's docstring, a summary table of
    its public names (``__all__``, submodules left out), the documentation of each name
    and, for a package, the docstrings of its modules, where the mathematics is written out.

    ``:namespace: ebm_jax`` documents the names where users reach them (``ej.run_chains``)
    instead of in the module that defines them.
    """

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {"namespace": directives.unchanged}

    def run(self):
        module_name = self.arguments[0]
        module = importlib.import_module(module_name)
        namespace = self.options.get("namespace", module_name)
        names = [
            name
            for name in _public_names(module)
            if not isinstance(getattr(module, name), types.ModuleType) and name != "__version__"
        ]
        lines = [f".. automodule:: {module_name}", ""]
        lines += [f".. currentmodule:: {namespace}", "", ".. autosummary::", ""]
        lines += [f"   {name}" for name in names] + [""]
        for name in names:
            value = getattr(module, name)
            if inspect.isclass(value):
                lines += [f".. autoclass:: {name}", "   :members:", "   :inherited-members:", ""]
            elif inspect.isfunction(value) or inspect.isbuiltin(value):
                lines += [f".. autofunction:: {name}", ""]
            else:
                lines += [f".. autodata:: {name}", ""]
        submodules = _public_submodules(module)
        if submodules:
            lines += ["Modules", "-------", ""]
            for submodule in submodules:
                lines += [f".. automodule:: {submodule}"]
                if submodule.rsplit(".", 1)[-1] in names:
                    # ``ej.densities.banana`` is the function; its module stays unindexed.
                    lines += ["   :no-index:"]
                lines += [""]
        source, _ = self.state_machine.get_source_and_line(self.lineno)
        self.state_machine.insert_input(lines, source)
        return []


def _skip_class_member(app, what, name, obj, skip, options):
    """Keep the methods and properties that ebm_jax defines (a private base class's
    included); leave out what tuple, Exception or flax.linen.Module define, and class
    data. A class's data (NamedTuple fields, Flax dataclass fields) is described by the
    "Attributes:" section of its docstring; autodoc would repeat it, from the docstring
    of the default value (``nn.swish``) or as "Alias for field number k"."""
    if what != "class" or skip:
        return None
    function = obj.fget if isinstance(obj, property) else getattr(obj, "__func__", obj)
    module = getattr(function, "__module__", None) or ""
    if "." in getattr(function, "__qualname__", "") and module.startswith("ebm_jax"):
        return None
    return True


class _Default:
    """A default value shown by name in a signature (``silu``, not ``<PjitFunction ...>``)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _shown_default(value: object) -> object:
    if callable(value):
        return _Default(getattr(value, "__name__", repr(value)))
    return value


def _flax_module_signature(app, what, name, obj, options, signature, return_annotation):
    # A Flax module's constructor is its fields; ``parent`` and ``name`` are Flax's own.
    if what != "class" or not (inspect.isclass(obj) and issubclass(obj, flax.linen.Module)):
        return None
    parameters = [
        parameter.replace(default=_shown_default(parameter.default))
        for parameter in inspect.signature(obj).parameters.values()
        if parameter.name not in ("parent", "name")
    ]
    shown = inspect.Signature(parameters)
    return stringify_signature(shown, unqualified_typehints=True), return_annotation


def _attribute_docstring(value: object, name: str) -> list[str] | None:
    """The docstring written under a module-level assignment, found in the module of the
    package that defines it (autodoc looks only in the module that re-exports it)."""
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("ebm_jax") or getattr(module, name, None) is not value:
            continue
        try:
            attribute_docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
        except PycodeError:
            continue
        if ("", name) in attribute_docs:
            return list(attribute_docs[("", name)])
    return None


def _data_docstring(app, what, name, obj, options, lines):
    if what != "data":
        return
    documented = _attribute_docstring(obj, name.rsplit(".", 1)[-1])
    if documented is not None:
        lines[:] = documented
    elif "\n".join(lines).strip() == (inspect.getdoc(obj) or "").strip():
        # autodoc fell back to the docstring of the value's type (dict, typing.Callable).
        lines[:] = []


def _resolve_reexported(app, env, node, contnode):
    """Link ``:func:`window_schedule``` written in ``ebm_jax.samplers.adaptation`` to
    ``ebm_jax.samplers.window_schedule``, where it is documented: the documented name that
    ends with the target, or of several, the one sharing most of the current module."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].removeprefix(".")
    if target.startswith("ebm_jax."):  # a defining module's path: ebm_jax.diffusion.tweedie.x
        suffix, module = "." + target.rsplit(".", 1)[-1], target
    else:
        suffix, module = "." + target, node.get("py:module") or ""
    objects = env.get_domain("py").objects
    matches = [name for name in objects if name.startswith("ebm_jax") and name.endswith(suffix)]
    if not matches:
        return None

    def shared_prefix(name: str) -> int:
        pairs = zip(name.split("."), module.split("."), strict=False)
        return len(list(itertools.takewhile(lambda pair: pair[0] == pair[1], pairs)))

    best = max(shared_prefix(name) for name in matches)
    matches = [name for name in matches if shared_prefix(name) == best]
    if len(matches) != 1:
        return None
    entry = objects[matches[0]]
    return make_refnode(
        app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, matches[0]
    )


def setup(app):
    app.add_directive("public-names", PublicNames)
    app.connect("source-read", _append_benchmark_results)
    app.connect("env-get-outdated", _benchmarks_always_outdated)
    app.connect("autodoc-skip-member", _skip_class_member)
    app.connect("autodoc-process-signature", _flax_module_signature)
    app.connect("autodoc-process-docstring", _data_docstring)
    app.connect("missing-reference", _resolve_reexported)

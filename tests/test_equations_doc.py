"""docs/equations.md proves what it says: each row's tests exist and exercise the row's functions.

A row reads Lecture | Statement | Function | Test. Its Function cell names code
in backticks: a function, class, method or parameter of :mod:`ebm_jax`
(``ej.samplers.mala(..., noise_variance=step_size)`` names ``mala``; the
last component of the leading dotted name counts), a path of the repository
(``samplers/proposal.py``: it must exist), a string value (``"dopri5"``), or
one of :data:`NOT_CODE`, spans that name a convention or a command. Its Test
cell names ``tests/...py::test_name`` (optionally ``[parametrize_id]``), a
bare ``::test_name`` of the last file named, or a bare ``tests/...py``.

The AST check, per row:

- every span of the Function cell resolves: a name defined in ``ebm_jax``
  (a module, a function, a class, a field, a parameter), an existing path, a
  string value, or an entry of :data:`NOT_CODE`;
- every named test exists (its parametrize id among its decorators' strings)
  and *references* at least one of the row's names; a bare file reference
  needs at least one ``test_*`` function of the file that does;
- every name of the row is referenced by at least one of the row's tests.

A test references a name when the name appears as an identifier (a ``Name``,
an ``Attribute``'s last component, a keyword argument, an imported name or
its alias) in the test's own code (body, decorators, so its parametrize
lists) or in the module-level definitions reachable from it: the helpers,
constants and fixtures (by argument name, also from the ``conftest.py`` files
above it) it names, followed transitively within the module. A module-level
string that parses as Python (a script the test runs in a subprocess) counts
as code. The Errata's test references must exist too.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "equations.md"

# Backticked spans of the Function column that are neither code names nor paths.
NOT_CODE = {
    # The convention every log-density of the library follows, not one function;
    # its row names `ej.from_energy` beside it, which its test must call.
    "logdensity_fn(x) -> scalar": "the log-density convention",
    # The command that runs the demo; its row names `demo.main`, which its test calls.
    "make demo": "a make target",
}

_TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?(?:\[([\w-]+)\])?`")


@dataclass(frozen=True)
class Row:
    line: int
    lecture: str
    functions: tuple[str, ...]  # raw backticked spans of the Function cell
    tests: tuple[tuple[str, str | None, str | None], ...]  # (path, name, parametrize id)

    def __str__(self) -> str:
        return f"docs/equations.md:{self.line} ({self.lecture})"


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _test_references(text: str, where: str) -> list[tuple[str, str | None, str | None]]:
    references, current = [], None
    for path, name, parameter_id in _TEST_REFERENCE.findall(text):
        if path:
            current = path
        if not path and not name:
            continue
        assert current is not None, f"{where}: `::{name}` comes before any test file"
        references.append((current, name or None, parameter_id or None))
    return references


@functools.cache
def _rows() -> tuple[Row, ...]:
    rows = []
    for number, line in enumerate(DOC.read_text().splitlines(), start=1):
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = _cells(line)
        assert len(cells) == 4, (
            f"docs/equations.md:{number} has {len(cells)} cells, not 4 (escape a | as \\|)"
        )
        lecture, _statement, function, test = cells
        if lecture == "Lecture":
            continue
        where = f"docs/equations.md:{number}"
        rows.append(
            Row(
                number,
                lecture,
                tuple(re.findall(r"`([^`]+)`", function)),
                tuple(_test_references(test, where)),
            )
        )
    return tuple(rows)


# -- what the package defines ----------------------------------------------------------


@functools.cache
def _package_names() -> frozenset[str]:
    """Modules, functions, classes, fields and parameters defined anywhere in ebm_jax."""
    names = {"ej", "ebm_jax"}
    for path in (ROOT / "ebm_jax").rglob("*.py"):
        names.add(path.stem)
        names.update(part for part in path.relative_to(ROOT).parts[:-1])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                arguments = node.args
                names.update(
                    argument.arg
                    for argument in (*arguments.args, *arguments.kwonlyargs, *arguments.posonlyargs)
                )
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Assign):
                names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return frozenset(names)


def _row_names(row: Row) -> set[str]:
    """The code names of a row's Function cell, each checked to resolve."""
    names = set()
    for span in row.functions:
        if span in NOT_CODE or span.startswith(('"', "'")):
            continue
        if "/" in span or span.endswith(".py"):
            assert (ROOT / span).exists() or (ROOT / "ebm_jax" / span).exists(), (
                f"{row}: the path `{span}` does not exist"
            )
            continue
        leading = re.match(r"[A-Za-z_][\w.]*", span)
        assert leading, f"{row}: `{span}` is not a code name; add it to NOT_CODE if it is prose"
        name = leading.group().rstrip(".").split(".")[-1]
        assert name in _package_names(), (
            f"{row}: `{span}` names `{name}`, which ebm_jax does not define "
            "(add the span to NOT_CODE if it names no code)"
        )
        names.add(name)
    assert names, f"{row}: the Function cell names no code"
    return names


# -- what a test references ------------------------------------------------------------


def _own_identifiers(node: ast.AST) -> set[str]:
    names = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            names.add(child.id)
        elif isinstance(child, ast.Attribute):
            names.add(child.attr)
        elif isinstance(child, ast.keyword) and child.arg:
            names.add(child.arg)
        elif isinstance(child, ast.alias):
            names.update(filter(None, (child.name.split(".")[-1], child.asname)))
    return names


def _script_identifiers(node: ast.AST) -> set[str]:
    """Identifiers of multi-line strings that parse as Python: scripts run in a subprocess."""
    names = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str) and "\n" in child.value:
            try:
                names |= _own_identifiers(ast.parse(child.value))
            except SyntaxError:
                pass
    return names


def _arguments(node: ast.AST) -> set[str]:
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return set()
    arguments = node.args
    return {argument.arg for argument in (*arguments.args, *arguments.kwonlyargs)}


@dataclass(frozen=True)
class Module:
    functions: dict[str, ast.FunctionDef]  # every function of the file, tests included
    definitions: dict[str, ast.AST]  # module-level functions, classes and assignments
    fixtures: dict[str, ast.AST]  # from the conftest.py files above the module
    aliases: dict[str, str]  # imported alias -> imported name


def _top_level(tree: ast.Module) -> tuple[dict[str, ast.AST], dict[str, str]]:
    definitions, aliases = {}, {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            definitions[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        definitions[name.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            definitions[node.target.id] = node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name.split(".")[-1]
    return definitions, aliases


@functools.cache
def _module(path: str) -> Module:
    tree = ast.parse((ROOT / path).read_text())
    definitions, aliases = _top_level(tree)
    functions = {
        node.name: node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    fixtures: dict[str, ast.AST] = {}
    for directory in (ROOT / path).parents:  # the nearest conftest.py first
        conftest = directory / "conftest.py"
        if conftest.is_file():
            found, _ = _top_level(ast.parse(conftest.read_text()))
            fixtures = {**found, **fixtures}
        if directory == ROOT / "tests":
            break
    return Module(functions, definitions, fixtures, aliases)


def _reachable(module: Module, roots: list[ast.AST]) -> list[ast.AST]:
    """``roots`` and the module-level definitions they name, transitively.

    Names are followed from identifiers and, for functions, from argument
    names (fixtures: the module's own, else the nearest ``conftest.py``'s).
    """
    reached: list[ast.AST] = []
    seen: set[int] = set()
    pending = list(roots)
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        reached.append(node)
        for name in _own_identifiers(node) | _script_identifiers(node):
            if name in module.definitions:
                pending.append(module.definitions[name])
        for argument in _arguments(node):
            if argument in module.definitions:
                pending.append(module.definitions[argument])
            elif argument in module.fixtures:
                pending.append(module.fixtures[argument])
    return reached


def _referenced(module: Module, test: ast.FunctionDef) -> set[str]:
    """Identifiers of the test and of every module-level definition reachable from it."""
    names: set[str] = set()
    for node in _reachable(module, [test]):
        names |= _own_identifiers(node) | _script_identifiers(node)
    return names | {module.aliases[name] for name in names if name in module.aliases}


def _parametrize_ids(module: Module, test: ast.FunctionDef) -> set[str]:
    """Strings of the test's decorators, and of the module-level values they name."""
    return {
        node.value
        for root in _reachable(module, list(test.decorator_list))
        for node in ast.walk(root)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


# -- the tests -------------------------------------------------------------------------


def test_the_table_has_rows_and_tests():
    rows = _rows()
    assert len(rows) > 40
    assert sum(name is not None for row in rows for _, name, _ in row.tests) > 60
    assert all(row.tests for row in rows), [str(row) for row in rows if not row.tests]
    spans = {span for row in rows for span in row.functions}
    assert set(NOT_CODE) <= spans, f"NOT_CODE entries no row uses: {set(NOT_CODE) - spans}"


def test_every_referenced_test_exists():
    text = DOC.read_text()
    errata = text[text.index("## Errata") :]
    references = [ref for row in _rows() for ref in row.tests]
    references += _test_references(errata, "docs/equations.md, Errata")
    for path, name, parameter_id in references:
        assert (ROOT / path).is_file(), f"{path} does not exist"
        if name is None:
            continue
        functions = _module(path).functions
        assert name in functions, f"{path}::{name} does not exist"
        if parameter_id is not None:
            assert parameter_id in _parametrize_ids(_module(path), functions[name]), (
                f"{path}::{name} has no parametrize id {parameter_id!r}"
            )


def test_every_row_s_tests_reference_the_row_s_functions():
    failures = []
    for row in _rows():
        try:
            names = _row_names(row)
        except AssertionError as error:
            failures.append(str(error))
            continue
        covered: set[str] = set()
        for path, test_name, _ in row.tests:
            module = _module(path)
            if test_name is None:
                referenced = [
                    _referenced(module, test) & names
                    for name, test in module.functions.items()
                    if name.startswith("test_")
                ]
                found = set().union(*referenced)
                if not found:
                    failures.append(f"{row}: no test in {path} references any of {sorted(names)}")
            else:
                found = _referenced(module, module.functions[test_name]) & names
                if not found:
                    failures.append(
                        f"{row}: {path}::{test_name} references none of {sorted(names)}"
                    )
            covered |= found
        if covered and names - covered:
            failures.append(f"{row}: no test of the row references {sorted(names - covered)}")
    assert not failures, "\n".join(failures)

"""One package per audience: cnnlib is the student library and knows nothing of the grader;
cnngrader's kernel side imports nothing of its pipeline."""
from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

GRADER_ONLY = ("nbgrader", "nbformat", "nbconvert", "nbclient", "jupyter_client", "traitlets", "ipykernel",
               "jupytext", "cnngrader")
# Import names of cnnlib's declared dependencies (pyproject.toml) that differ from their distribution names.
IMPORT_NAME = {"scikit-learn": "sklearn"}


def imported_roots(folder: Path) -> dict[str, set[str]]:
    """Top-level modules imported anywhere in each .py file of folder (absolute imports only)."""
    out = {}
    for path in sorted(folder.rglob("*.py")):
        roots = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
        out[str(path.relative_to(REPO))] = roots
    return out


def test_no_cnnlib_module_imports_the_grader_or_nbgrader():
    bad = {f: sorted(r & set(GRADER_ONLY)) for f, r in imported_roots(REPO / "cnnlib").items() if r & set(GRADER_ONLY)}
    assert not bad, bad


def test_cnnlib_imports_only_its_declared_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {IMPORT_NAME.get(name, name) for name in
                (dep.split(">")[0].split("=")[0].split("<")[0].strip() for dep in project["dependencies"])}
    allowed = declared | set(sys.stdlib_module_names) | {"cnnlib"}
    extra = {f: sorted(r - allowed) for f, r in imported_roots(REPO / "cnnlib").items() if r - allowed}
    assert not extra, f"cnnlib imports undeclared packages: {extra}"


BLOCKER = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent in this test)")
sys.meta_path.insert(0, Absent())
"""


def test_import_cnnlib_works_without_the_grader_and_loads_none_of_it():
    code = BLOCKER.format(blocked=set(GRADER_ONLY)) + (
        "import pkgutil, importlib, cnnlib\n"
        "for m in pkgutil.iter_modules(cnnlib.__path__):\n"
        "    importlib.import_module('cnnlib.' + m.name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {set(GRADER_ONLY)!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_kernel_side_of_the_grader_imports_nothing_of_the_pipeline():
    kernel = imported_roots(REPO / "cnngrader" / "kernel")
    pipeline_only = set(GRADER_ONLY) - {"cnngrader"}
    assert not {f: r & pipeline_only for f, r in kernel.items() if r & pipeline_only}
    for path in (REPO / "cnngrader" / "kernel").glob("*.py"):
        assert "cnngrader.pipeline" not in path.read_text(), path


@pytest.mark.parametrize("package", ["cnnlib", "cnngrader"])
def test_packaging_declares_both_packages(package):
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert f"{package}*" in config["tool"]["setuptools"]["packages"]["find"]["include"]
    if package == "cnngrader":
        extra = " ".join(config["project"]["optional-dependencies"]["grader"])
        assert all(name in extra for name in ("nbgrader", "nbformat", "nbclient", "jupyter_client", "traitlets"))


# -- the grader's own structure: no import cycle, no long function -------------------------------------------
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str = "cnngrader") -> dict[str, set[str]]:
    """module -> the package's modules it imports, from the AST: every import statement, at the top of
    the module or inside a function, relative or absolute. `from a.b import c` counts as an import of the
    module a.b.c when there is one, else of a.b (a package itself is imported only as its __init__)."""
    paths = {_module_name(p): p for p in sorted((REPO / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        is_pkg = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:
                    full = f"{module}.{alias.name}"
                    targets.add(full if full in paths else module)
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> ... -> a) through each strongly connected group of modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, set(group), group[0]) for group in groups]


def _cycle_in(graph: dict[str, set[str]], group: set[str], start: str) -> list[str]:
    """A shortest path start -> ... -> start inside group (breadth first)."""
    paths = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph[v] & group):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                todo.append(w)
    return [start]


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_grader_has_no_import_cycle():
    graph = import_graph("cnngrader")
    assert "cnngrader.pipeline.config" in graph["cnngrader.pipeline.grade"]  # the graph sees the imports
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def long_functions(package: str = "cnngrader", limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """(file:function, lines) of each function or method, nested ones included, longer than limit lines
    (from its def line to its last line)."""
    out = []
    for path in sorted((REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    out.append((f"{path.relative_to(REPO)}:{node.name}", lines))
    return out


def test_no_function_in_the_grader_is_over_60_lines():
    found = long_functions()
    assert not found, "over 60 lines: " + ", ".join(f"{name} ({n})" for name, n in found)


def imports_without_a_reason(package: str = "cnngrader", root: Path = REPO) -> list[str]:
    """file:line of each import statement inside a function with no comment saying why it is not at the top:
    on its own line(s), or for a run of consecutive imports (blank lines allowed) on the run's first line or
    on a comment line directly above it."""
    out = []
    for path in sorted((root / package).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        commented = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                     if tok.type == tokenize.COMMENT}
        above = {n for n in commented if lines[n - 1].lstrip().startswith("#")}

        def said(stmt: ast.stmt) -> bool:
            return any(n in commented for n in range(stmt.lineno, stmt.end_lineno + 1))

        found = set()
        for func in ast.walk(ast.parse(text)):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                for field in ("body", "orelse", "finalbody"):
                    body = getattr(node, field, None)
                    if not isinstance(body, list):
                        continue
                    run_said = False
                    for i, stmt in enumerate(body):
                        if not isinstance(stmt, (ast.Import, ast.ImportFrom)):
                            continue
                        if i == 0 or not isinstance(body[i - 1], (ast.Import, ast.ImportFrom)):
                            run_said = said(stmt) or stmt.lineno - 1 in above
                        if not (run_said or said(stmt)):
                            found.add(f"{path.relative_to(root)}:{stmt.lineno}")
        out += sorted(found, key=lambda s: int(s.rsplit(":", 1)[1]))
    return out


def test_the_reason_finder_sees_a_bare_import_in_a_function(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text(
        "import os\n\n"
        "def bare():\n    import json\n    return json\n\n"
        "def said():\n    import csv  # slow\n    return csv\n\n"
        "def run():\n    # heavy: only here\n    import gzip\n\n    import zlib\n    return gzip, zlib\n\n"
        "def after_code():\n    # heavy\n    import bz2\n    x = 1\n    import lzma\n    return bz2, lzma, x\n",
        encoding="utf-8")
    assert imports_without_a_reason("pkg", tmp_path) == ["pkg/m.py:4", "pkg/m.py:22"]


def test_every_import_inside_a_grader_function_says_why():
    found = imports_without_a_reason()
    assert not found, "imports inside a function with no comment saying why they are not at the top: " + \
        ", ".join(found)

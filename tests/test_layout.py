"""One package per audience: cnnlib is the student library and knows nothing of the grader;
cnngrader's kernel side imports nothing of its pipeline."""
from __future__ import annotations

import ast
import subprocess
import sys
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

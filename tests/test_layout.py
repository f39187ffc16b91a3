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

"""A static look at a submission's code, in the trusted process, before its checks run.

Two findings fail hidden checks, each with a reason the student can read:

- a **route**: the code a checked function runs (its definition, and the top-level functions,
  classes and names it uses, transitively) names something its policy forbids, such as
  `torch.nn.functional.conv2d`, `numpy.pad`, `scipy.signal`, `torch.ops` or cnnlib's private
  engine, whatever alias or `getattr(module, "name")` it goes through;
- **tampering**, anywhere in the notebook: code that reaches into the grader or the
  interpreter's machinery (`cnngrader`, `sys.modules`, `torch.library`, dispatch modes,
  IPython's input transformers...). It fails every check of the notebook.

Names are resolved through the notebook's imports: `import numpy as np` then `np.pad` is
`numpy.pad`; `from torch.nn import functional as F` then `F.conv2d` is
`torch.nn.functional.conv2d`. A cell that does not parse is skipped (it fails on its own).
"""
from __future__ import annotations

import ast
import re
from typing import Iterable, NamedTuple

# Code that reaches into the grader or the interpreter: no correct solution needs any of it.
TAMPERING = (
    "cnngrader", "sys.modules", "sys.setprofile", "sys.settrace", "sys._getframe", "builtins", "__builtins__",
    "torch.library", "torch.utils._python_dispatch", "torch.overrides.TorchFunctionMode",
    "torch._C._set_torch_function_mode", "torch._C._push_on_torch_function_stack", "torch._C._dispatch",
    "torch._C._unset_dispatch_mode", "gc.get_referrers", "gc.get_objects", "inspect.currentframe",
    "inspect.stack", "inspect.getouterframes", "ctypes", "importlib.reload",
)
# get_ipython() attributes a notebook may use; any other reaches into the shell that runs the checks.
_IPYTHON_OK = {"run_line_magic", "run_cell_magic", "system", "getoutput"}
# The one way into cnngrader a notebook may take: the student's pre-submission check (a no-op when graded).
PRECHECK = ("cnngrader.precheck", "cnngrader.precheck.check_all")
_MAGIC = re.compile(r"^\s*[%!]")


class Finding(NamedTuple):
    name: str  # the dotted name used
    cell: int  # index of the cell in the notebook
    line: int  # line within that cell

    def where(self) -> str:
        return f"cell {self.cell + 1}, line {self.line}"


class _Cell(NamedTuple):
    index: int
    tree: ast.Module


def parse(sources: Iterable[tuple[int, str]]) -> list[_Cell]:
    """The cells that parse; magics (%timeit, !ls) are blanked first."""
    out = []
    for index, source in sources:
        text = "\n".join("" if _MAGIC.match(line) else line for line in source.splitlines())
        try:
            out.append(_Cell(index, ast.parse(text)))
        except (SyntaxError, ValueError):
            continue
    return out


def _aliases(cells: list[_Cell]) -> dict[str, str]:
    """Local name -> dotted module or object name, from every import in the notebook."""
    names: dict[str, str] = {}
    for cell in cells:
        for node in ast.walk(cell.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        names[a.asname] = a.name
                    else:
                        root = a.name.split(".")[0]
                        names.setdefault(root, root)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    names[a.asname or a.name] = f"{node.module}.{a.name}"
    for _ in range(2):  # F = torch.nn.functional; conv = F.conv2d
        for cell in cells:
            for stmt in cell.tree.body:
                if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                    value = _dotted(stmt.value, names)
                    if value and "." in value and not value.startswith("get_ipython()"):
                        names[stmt.targets[0].id] = value
    return names


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The dotted name an expression stands for: a.b.c, getattr(a, "b"), importlib.import_module("x")."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, ast.Call):
        fn = _dotted(node.func, aliases)
        args = node.args
        if fn in ("getattr",) and len(args) >= 2 and isinstance(args[1], ast.Constant) and isinstance(args[1].value, str):
            base = _dotted(args[0], aliases)
            return f"{base}.{args[1].value}" if base else None
        if fn in ("importlib.import_module", "__import__") and args and isinstance(args[0], ast.Constant) \
                and isinstance(args[0].value, str):
            return args[0].value
        if fn == "get_ipython":
            return "get_ipython()"
    return None


def _uses(tree: ast.AST, aliases: dict[str, str]) -> list[tuple[str, int]]:
    """Every dotted name used in tree, with its line (the longest chain of each expression)."""
    found = []
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Name, ast.Call)) and id(node) not in inner:
            name = _dotted(node, aliases)
            if name:
                found.append((name, getattr(node, "lineno", 0)))
                for child in ast.walk(node):
                    if child is not node and isinstance(child, (ast.Attribute, ast.Name)):
                        inner.add(id(child))
    return found


def _matches(name: str, prefixes: Iterable[str]) -> str | None:
    for p in prefixes:
        if name == p or name.startswith(p + "."):
            return p
    return None


def tampering(cells: list[_Cell]) -> Finding | None:
    """The first use, anywhere, of something that reaches into the grader or the interpreter."""
    aliases = _aliases(cells)
    for cell in cells:
        for name, line in _uses(cell.tree, aliases):
            if _matches(name, TAMPERING) and name not in PRECHECK:
                return Finding(name, cell.index, line)
            if name.startswith("get_ipython().") and name.split(".")[1] not in _IPYTHON_OK:
                return Finding(name, cell.index, line)
    return None


def _definitions(cells: list[_Cell]) -> dict[str, list[tuple[int, ast.AST]]]:
    """Top-level name -> the statements that define it (def, class, assignment), with their cell."""
    defs: dict[str, list[tuple[int, ast.AST]]] = {}
    for cell in cells:
        for stmt in cell.tree.body:
            targets: list[str] = []
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                targets = [stmt.name]
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]):
                    targets += [n.id for n in ast.walk(t) if isinstance(n, ast.Name)]
            for name in targets:
                defs.setdefault(name, []).append((cell.index, stmt))
    return defs


def route(cells: list[_Cell], name: str, forbidden: Iterable[str]) -> Finding | None:
    """The first forbidden name that the code of `name` uses, following the notebook's own
    top-level names it refers to."""
    forbidden = tuple(forbidden)
    if not forbidden:
        return None
    aliases = _aliases(cells)
    defs = _definitions(cells)
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for index, stmt in defs.get(current, []):
            for used, line in _uses(stmt, aliases):
                if _matches(used, forbidden):
                    return Finding(used, index, line)
                head = used.split(".")[0]
                if head in defs and head not in seen:
                    todo.append(head)
    return None


def tampering_reason(found: Finding) -> str:
    """The reason every check of a notebook with tampering fails."""
    return (f"the notebook reaches into the grader or the interpreter ({found.name}, at {found.where()}), so its "
            f"hidden tests cannot be trusted: remove that code.")


def route_reason(name: str, found: Finding) -> str:
    """The reason the check of `name` fails when its code uses a forbidden route."""
    return (f"{name} uses {found.name} (at {found.where()}): the assignment asks you to write {name} yourself, "
            f"without that shortcut.")


def reason(cells: list[_Cell], name: str, forbidden: Iterable[str]) -> str | None:
    """Why the static scan fails the check of `name` (tampering anywhere, else a forbidden route in its
    code), or None."""
    found = tampering(cells)
    if found is not None:
        return tampering_reason(found)
    found = route(cells, name, forbidden)
    return None if found is None else route_reason(name, found)

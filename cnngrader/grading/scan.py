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
`torch.nn.functional.conv2d`. Each cell is first transformed the way IPython transforms it before
running it (`x = %pwd` becomes `x = get_ipython().run_line_magic("pwd", "")`, and the body of a
`%%time` cell is scanned as code); a cell that still does not parse is skipped, since IPython
cannot run it either (it fails on its own).
"""
from __future__ import annotations

import ast
import functools
from typing import Iterable, NamedTuple

# Code that reaches into the grader or the interpreter: no correct solution needs any of it.
TAMPERING = (
    "cnngrader", "sys.modules", "sys.setprofile", "sys.settrace", "sys._getframe", "builtins", "__builtins__",
    "torch.library", "torch.utils._python_dispatch", "torch.overrides.TorchFunctionMode",
    "torch._C._set_torch_function_mode", "torch._C._push_on_torch_function_stack", "torch._C._dispatch",
    "torch._C._unset_dispatch_mode", "gc.get_referrers", "gc.get_objects", "inspect.currentframe",
    "inspect.getouterframes", "inspect.getargvalues", "inspect.getclosurevars", "inspect.getinnerframes",
    "inspect.trace", "sys._current_frames", "traceback.walk_stack", "traceback.walk_tb", "ctypes",
    "importlib.reload",
)
# Attributes that lead from a frame, function or generator into the state of the code that holds it:
# inspect.stack() may be printed while debugging, but no correct solution walks into the frames.
FRAME_ATTRS = frozenset({
    "f_locals", "f_globals", "f_back", "f_builtins", "tb_frame", "gi_frame", "cr_frame", "ag_frame",
    "__globals__", "__closure__", "cell_contents", "__code__", "__defaults__", "__kwdefaults__",
})
# What importlib.reload may reload: the course's library (reloading it changes nothing the grader uses).
RELOAD_OK = ("cnnlib",)
# Cell magics whose body IPython runs as Python code in the notebook's namespace.
_PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug"}
# get_ipython() attributes a notebook may use; any other reaches into the shell that runs the checks.
_IPYTHON_OK = {"run_line_magic", "run_cell_magic", "system", "getoutput"}
# The one way into cnngrader a notebook may take: the student's pre-submission check (a no-op when graded).
PRECHECK = ("cnngrader.precheck", "cnngrader.precheck.check_all")


class Finding(NamedTuple):
    name: str  # the dotted name used
    cell: int  # index of the cell in the notebook
    line: int  # line within that cell

    def where(self) -> str:
        return f"cell {self.cell + 1}, line {self.line}"


class _Cell(NamedTuple):
    index: int
    tree: ast.Module


@functools.lru_cache(maxsize=4096)  # each hidden cell of a notebook scans the same cells again
def _transform(source: str) -> str:
    """The code IPython runs for a cell's source (magics, shell escapes and help syntax turned into calls)."""
    from IPython.core.inputtransformer2 import TransformerManager  # could be at the top: cnngrader.kernel loads IPython

    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # IPython cannot run what it cannot transform: the cell is then skipped
        return source


def _trees(source: str, depth: int = 0) -> list[ast.Module]:
    """The parsed code of one cell: its own, then the bodies of its Python cell magics (%%time...)."""
    try:
        tree = ast.parse(_transform(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    out = [tree]
    for stmt in tree.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if (depth < 4 and isinstance(call, ast.Call) and _dotted(call.func, {}) == "get_ipython().run_cell_magic"
                and len(call.args) == 3 and all(isinstance(a, ast.Constant) for a in call.args)
                and call.args[0].value in _PYTHON_CELL_MAGICS and isinstance(call.args[2].value, str)):
            out += _trees(call.args[2].value, depth + 1)
    return out


def parse(sources: Iterable[tuple[int, str]]) -> list[_Cell]:
    """The cells that parse, as IPython runs them."""
    out = []
    for index, source in sources:
        if not isinstance(source, str):
            continue
        out += [_Cell(index, tree) for tree in _trees(source)]
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
        if (fn in ("getattr",) and len(args) >= 2
                and isinstance(args[1], ast.Constant) and isinstance(args[1].value, str)):
            base = _dotted(args[0], aliases)
            return f"{base}.{args[1].value}" if base else None
        if fn in ("importlib.import_module", "__import__") and args and isinstance(args[0], ast.Constant) \
                and isinstance(args[0].value, str):
            return args[0].value
        if fn == "get_ipython":
            return "get_ipython()"
    return None


def _uses_nodes(tree: ast.AST, aliases: dict[str, str]) -> list[tuple[ast.AST, str, int]]:
    """Every dotted name used in tree, with its node and line (the longest chain of each expression)."""
    found = []
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Name, ast.Call)) and id(node) not in inner:
            name = _dotted(node, aliases)
            if name:
                found.append((node, name, getattr(node, "lineno", 0)))
                for child in ast.walk(node):
                    if child is not node and isinstance(child, (ast.Attribute, ast.Name)):
                        inner.add(id(child))
    return found


def _uses(tree: ast.AST, aliases: dict[str, str]) -> list[tuple[str, int]]:
    """Every dotted name used in tree, with its line (the longest chain of each expression)."""
    return [(name, line) for _, name, line in _uses_nodes(tree, aliases)]


def _matches(name: str, prefixes: Iterable[str]) -> str | None:
    for p in prefixes:
        if name == p or name.startswith(p + "."):
            return p
    return None


def _harmless(tree: ast.AST, aliases: dict[str, str]) -> set[int]:
    """Nodes whose use of a TAMPERING name is harmless: `"google.colab" in sys.modules` (a membership
    test), and importlib.reload of the course's library."""
    ok: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and all(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            ok.update(id(c) for c in node.comparators if _dotted(c, aliases) == "sys.modules")
        elif isinstance(node, ast.Call) and _dotted(node.func, aliases) == "importlib.reload" \
                and len(node.args) == 1 and not node.keywords and _matches(_dotted(node.args[0], aliases) or "",
                                                                           RELOAD_OK):
            ok.add(id(node.func))
    return ok


def _imports(tree: ast.AST) -> tuple[str, int] | None:
    """An import of something that reaches into the grader or the interpreter, used or not."""
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _matches(node.module, TAMPERING):
            names = [f"{node.module}.{a.name}" for a in node.names]  # (from importlib import reload: its uses)
        for name in names:
            if _matches(name, TAMPERING) and name not in PRECHECK:
                return name, node.lineno
    return None


def _frame_walk(tree: ast.AST) -> tuple[str, int] | None:
    """An attribute (or getattr with a constant name) that walks into frames or functions' state."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in FRAME_ATTRS:
            return node.attr, node.lineno
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in FRAME_ATTRS:
            return node.value, node.lineno
    return None


def tampering(cells: list[_Cell]) -> Finding | None:
    """The first use, anywhere, of something that reaches into the grader or the interpreter."""
    aliases = _aliases(cells)
    for cell in cells:
        harmless = _harmless(cell.tree, aliases)
        for node, name, line in _uses_nodes(cell.tree, aliases):
            if id(node) in harmless:
                continue
            if _matches(name, TAMPERING) and name not in PRECHECK:
                return Finding(name, cell.index, line)
            if name.startswith("get_ipython().") and name.split(".")[1] not in _IPYTHON_OK:
                return Finding(name, cell.index, line)
        imported = _imports(cell.tree)
        if imported is not None:
            return Finding(imported[0], cell.index, imported[1])
        walked = _frame_walk(cell.tree)
        if walked is not None:
            return Finding(walked[0], cell.index, walked[1])
    return None


@functools.lru_cache(maxsize=64)
def tampering_in(sources: tuple[tuple[int, str], ...]) -> Finding | None:
    """tampering() of the cells with these (index, source): the same for every hidden cell of a notebook."""
    return tampering(parse(sources))


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

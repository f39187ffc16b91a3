"""Hidden test cells, graded by the trusted process: the kernel never runs them.

GradingExecute hands each hidden test cell to grade_cell(). The calls it makes come from the
gradebook's copy of the cell (the instructor's source, out of the sandbox's reach), never from
the submission: `check("<name>", <name>)` lines inside the hidden-tests block. For each call:

1. the static scan (cnngrader.grading.scan) looks at the submission's own code: tampering
   anywhere, or a forbidden route in the code the function runs, fails the check;
2. otherwise cnngrader.grading.run_check runs the check with a RemoteRunner, which has the
   kernel run only the student's function on inputs drawn here from the run's secret;
3. the cell's outputs are written here: a line per passing check, or an error output with the
   reason, which nbgrader scores 0. Nothing the kernel prints or raises reaches them.
"""
from __future__ import annotations

import ast
from typing import Any, Callable

import nbformat
from nbformat.notebooknode import NotebookNode

from cnngrader.pipeline import credit
from cnngrader.pipeline.authoring import HIDDEN_MARKERS

CHECK_IMPORT = "from cnngrader.grading import check"


class HiddenCellError(ValueError):
    """A hidden test cell in the gradebook that is not a list of check("<name>", <name>) calls."""


def hidden_calls(source: str) -> list[str]:
    """The names checked by a hidden test cell's source (check("corr2d", corr2d) checks the
    notebook's corr2d with the checks named corr2d); [] when it has no hidden-tests block."""
    begin, end = HIDDEN_MARKERS
    lines, inside, found = source.splitlines(), False, []
    block: list[str] = []
    for line in lines:
        if line.strip() == begin:
            inside, block = True, []
        elif line.strip() == end:
            inside = False
            found.append("\n".join(block))
        elif inside:
            block.append(line)
    calls = []
    for text in found:
        for stmt in ast.parse(text).body:
            if isinstance(stmt, ast.ImportFrom) and ast.unparse(stmt) == CHECK_IMPORT:
                continue
            call = stmt.value if isinstance(stmt, ast.Expr) else None
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "check"
                    and len(call.args) == 2 and not call.keywords and isinstance(call.args[0], ast.Constant)
                    and isinstance(call.args[1], ast.Name) and call.args[0].value == call.args[1].id):
                calls.append(call.args[1].id)
            else:
                raise HiddenCellError(f"a hidden tests block may only hold {CHECK_IMPORT!r} and "
                                      f"check('<name>', <name>) lines, not {ast.unparse(stmt)!r}")
    return calls


def gradebook_hidden_cells(db_url: str, notebook: str, assignment: str) -> dict[str, list[str]]:
    """grade_id -> its calls, for every grade cell of the notebook whose gradebook source has a
    hidden-tests block."""
    from nbgrader.api import Gradebook, MissingEntry

    out = {}
    with Gradebook(db_url) as gb:
        try:
            nb = gb.find_notebook(notebook, assignment)
        except MissingEntry:
            return {}
        for cell in nb.grade_cells:
            try:
                source = gb.find_source_cell(cell.name, notebook, assignment).source
            except MissingEntry:
                continue
            calls = hidden_calls(source)
            if calls:
                out[cell.name] = calls
    return out


def student_sources(nb: NotebookNode, trusted_ids: set[str], before: int | None = None) -> list[tuple[int, str]]:
    """(index, source) of the code cells whose source is the student's: every code cell but the
    locked ones the gradebook restores (trusted_ids); with `before`, only the cells above that index
    (what the kernel has run when the cell at `before` is graded)."""
    out = []
    for index, cell in enumerate(nb.cells):
        if before is not None and index >= before:
            break
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("locked") and meta.get("grade_id") in trusted_ids:
            continue
        out.append((index, cell.source))
    return out


def top_level_calls(source: str, defined: set[str]) -> set[str]:
    """The names of `defined` (the notebook's functions and classes) that a cell's source uses outside
    the bodies of the functions it defines: what running the cell runs."""
    from cnngrader.grading import scan

    cells = scan.parse([(0, source)])
    if not cells:
        return set()
    found: set[str] = set()
    todo: list[ast.AST] = list(cells[0].tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue  # defining a function runs nothing of its body
        if isinstance(node, ast.Name) and node.id in defined:
            found.add(node.id)
        todo.extend(ast.iter_child_nodes(node))
    return found


def top_level_defines(source: str) -> set[str]:
    """The functions and classes a cell defines at its top level."""
    from cnngrader.grading import scan

    cells = scan.parse([(0, source)])
    return {s.name for s in cells[0].tree.body
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))} if cells else set()


def reaches(sources: list[tuple[int, str]], roots: set[str], targets: dict[str, str]) -> str | None:
    """The first of `targets` that running any of `roots` may run, following the notebook's own top-level
    names through their definitions in `sources`; None if none."""
    from cnngrader.grading import scan

    if not targets:
        return None
    cells = scan.parse(sources)
    defs, aliases = scan._definitions(cells), scan._aliases(cells)
    seen, todo = set(), sorted(roots)
    while todo:
        current = todo.pop()
        if current in targets:
            return current
        if current in seen:
            continue
        seen.add(current)
        for _, stmt in defs.get(current, []):
            todo.extend(used.split(".")[0] for used, _ in scan._uses(stmt, aliases) if used.split(".")[0] in defs)
    return None


def defined_names(sources: list[tuple[int, str]]) -> set[str]:
    """The notebook's top-level functions and classes."""
    from cnngrader.grading import scan

    return {name for name, stmts in scan._definitions(scan.parse(sources)).items()
            if any(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for _, s in stmts)}


def hung_reason(name: str, hung: str, why: str) -> str:
    """Why the check of `name` (or a cell) is not run: `hung` (it, or what it calls) timed out before."""
    via = "" if hung == name else ", which it calls,"
    return (f"{name} was not run: {hung}{via} did not return {why} (an endless loop?), and would only make "
            f"this check wait out its time limit again.")


def grade_cell(calls: list[str], send: Callable[[str], str], secret: int, sources: list[tuple[int, str]],
               course_root: str | None = None, hung: dict[str, str] | None = None,
               everything: list[tuple[int, str]] | None = None, points: float | None = None) -> list[NotebookNode]:
    """The outputs of a hidden test cell: its checks (those of the course in course_root, default
    find_root()), run through the kernel with `send`. `sources` are the student's cells above this one
    (where a route is looked for); `everything`, all of them (where tampering is; default `sources`);
    `hung` maps the functions that timed out earlier to when: a check that would run one fails at once.
    A check that earns part of the cell's `points` adds its score as the cell's result (credit.py)."""
    from cnngrader import grading
    from cnngrader.grading import core, scan
    from cnngrader.grading.runners import RemoteRunner

    reg = grading.registry(course_root)
    cells = scan.parse(sources)
    tamper = scan.tampering(cells if everything is None else scan.parse(everything))
    outputs: list[NotebookNode] = []
    passed, credits = [], []
    for name in calls:
        reason = None
        stuck = reaches(sources, {name}, hung or {})
        if tamper is not None:
            reason = scan.tampering_reason(tamper)
        elif stuck is not None:
            reason = hung_reason(name, stuck, (hung or {})[stuck])
        else:
            route = _route_reason(name, cells, reg.forbidden.get(name))
            got: list = []
            reason = _checked(name, lambda: got.append(grading.run_check(name, RemoteRunner(send, secret), reg)))
            reason = core.route_and_values(route, reason)
            credits += [g for g in got if g is not None] if reason is None else []
        if reason is None:
            passed.append(name)
        else:
            outputs.append(nbformat.v4.new_output("error", ename="GradingError", evalue=reason,
                                                  traceback=[f"GradingError: {reason}"]))
            break  # the cell scores 0; its later checks would not change that
    if not outputs:
        outputs.append(nbformat.v4.new_output("stream", name="stdout",
                                              text="".join(f"hidden tests of {n}: passed\n" for n in passed)))
        outputs += credit.outputs(credits, points)
    return outputs


def _checked(name: str, run: Callable[[], None]) -> str | None:
    """run()'s verdict: None when it passes, else the reason. A reply that parsed but does not hold
    what the check expects (a probe log with a stray entry, a value of the wrong kind) makes the
    check raise something other than GradingError: that too is this cell's 0, never the batch's end."""
    from cnngrader.grading.core import GradingError

    try:
        run()
    except GradingError as e:
        return str(e)
    except (Exception, RecursionError) as e:  # noqa: BLE001 - the kernel's reply is untrusted input
        return (f"{name} could not be checked: the kernel's reply did not hold what the check expects "
                f"({type(e).__name__}: {str(e)[:200]})")
    return None


def _route_reason(name: str, cells: list, forbidden: Any) -> str | None:
    from cnngrader.grading import scan

    found = scan.route(cells, name, forbidden.static if forbidden is not None else ())
    return None if found is None else scan.route_reason(name, found)

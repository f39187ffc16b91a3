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
from nbgrader.api import Gradebook, MissingEntry

from cnngrader import check_verdict, grading
from cnngrader.cells import hidden_calls
from cnngrader.grading import scan
from cnngrader.grading.runners import RemoteRunner
from cnngrader.pipeline import credit


def gradebook_hidden_cells(db_url: str, notebook: str, assignment: str) -> dict[str, list[str]]:
    """grade_id -> its calls, for every grade cell of the notebook whose gradebook source has a
    hidden-tests block."""
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


def top_level_calls(source: str, defined: set[str]) -> set[str]:
    """The names of `defined` (the notebook's functions and classes) that a cell's source uses outside
    the bodies of the functions it defines: what running the cell runs."""
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
    cells = scan.parse([(0, source)])
    return {s.name for s in cells[0].tree.body
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))} if cells else set()


def reaches(sources: list[tuple[int, str]], roots: set[str], targets: dict[str, str]) -> str | None:
    """The first of `targets` that running any of `roots` may run, following the notebook's own top-level
    names through their definitions in `sources`; None if none."""
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
    reg = grading.registry(course_root)
    cells = scan.parse(sources)
    tamper = scan.tampering_in(tuple((i, s) for i, s in (sources if everything is None else everything)))
    hung = hung or {}

    def early(name: str) -> str | None:
        if tamper is not None:
            return scan.tampering_reason(tamper)
        stuck = reaches(sources, {name}, hung)
        return None if stuck is None else hung_reason(name, stuck, hung[stuck])

    found = check_verdict.cell_verdict(calls, lambda: RemoteRunner(send, secret), reg,
                                       static=lambda name: _route_reason(name, cells, reg.forbidden.get(name)),
                                       early=early)
    if found.status != check_verdict.PASS:  # the cell scores 0
        return [nbformat.v4.new_output("error", ename="GradingError", evalue=found.reason,
                                       traceback=[f"GradingError: {found.reason}"])]
    return [nbformat.v4.new_output("stream", name="stdout",
                                   text="".join(f"hidden tests of {n}: passed\n" for n in found.passed)),
            *credit.outputs(list(found.credits), points)]


def _route_reason(name: str, cells: list, forbidden: Any) -> str | None:
    found = scan.route(cells, name, forbidden.static if forbidden is not None else ())
    return None if found is None else scan.route_reason(name, found)

"""The course's cell format, read the same way by authoring, grading and the pre-submission check.

- A solution cell holds the instructor's answer between SOLUTION_MARKERS; the release replaces it.
- A hidden test cell is a locked grade cell whose grade_id is HIDDEN_PREFIX + <name> and whose source holds,
  between HIDDEN_MARKERS, the line CHECK_IMPORT and one `check("<name>", <name>)` call (hidden_calls).
- The student's code is every code cell but the locked ones (student_sources): what the static scan reads.

Standard library only: the pre-submission check imports this in a student's kernel and in the grading
sandbox, where neither nbformat nor the grader is importable. A notebook is a plain dict here (nbformat's
NotebookNode is one), its cell sources a string or a list of lines.
"""
from __future__ import annotations

import ast
from typing import Collection

# Spelled in parts: this module is published with the checker, and the publisher's last check searches the
# published tree for these lines, whose presence there would mean that a solution or hidden test leaked.
_BEGIN, _END = "### BEGIN ", "### END "
SOLUTION_MARKERS = (_BEGIN + "SOLUTION", _END + "SOLUTION")
HIDDEN_MARKERS = (_BEGIN + "HIDDEN TESTS", _END + "HIDDEN TESTS")
HIDDEN_PREFIX = "hidden_"  # a hidden test cell's grade_id is hidden_<name>; it runs check("<name>", <name>)
CHECK_IMPORT = "from cnngrader.grading import check"


class HiddenCellError(ValueError):
    """A hidden test cell in the gradebook that is not a list of check("<name>", <name>) calls."""


def source_of(cell: dict) -> str:
    """A cell's source as one string (a notebook file may store it as a list of lines)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def nbgrader_meta(cell: dict) -> dict:
    """A cell's nbgrader metadata ({} when it has none)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def checked_name(grade_id: str) -> str:
    """The check a graded cell runs, from its grade_id: hidden_<name> runs <name>; "" for any other cell."""
    return grade_id[len(HIDDEN_PREFIX):] if grade_id.startswith(HIDDEN_PREFIX) else ""


def _hidden_blocks(source: str) -> list[str]:
    """The text between each pair of HIDDEN_MARKERS lines."""
    begin, end = HIDDEN_MARKERS
    inside, found, block = False, [], []
    for line in source.splitlines():
        if line.strip() == begin:
            inside, block = True, []
        elif line.strip() == end:
            inside = False
            found.append("\n".join(block))
        elif inside:
            block.append(line)
    return found


def _is_check_call(stmt: ast.stmt) -> bool:
    """check("<name>", <name>), the string naming the very variable passed."""
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    return (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "check"
            and len(call.args) == 2 and not call.keywords and isinstance(call.args[0], ast.Constant)
            and isinstance(call.args[1], ast.Name) and call.args[0].value == call.args[1].id)


def hidden_calls(source: str) -> list[str]:
    """The names checked by a hidden test cell's source (check("corr2d", corr2d) checks the
    notebook's corr2d with the checks named corr2d); [] when it has no hidden-tests block.
    HiddenCellError when a block holds anything else."""
    calls = []
    for text in _hidden_blocks(source):
        for stmt in ast.parse(text).body:
            if isinstance(stmt, ast.ImportFrom) and ast.unparse(stmt) == CHECK_IMPORT:
                continue
            if not _is_check_call(stmt):
                raise HiddenCellError(f"a hidden tests block may only hold {CHECK_IMPORT!r} and "
                                      f"check('<name>', <name>) lines, not {ast.unparse(stmt)!r}")
            calls.append(stmt.value.args[1].id)  # type: ignore[attr-defined]
    return calls


def student_sources(nb: dict, trusted_ids: Collection[str] | None = None,
                    before: int | None = None) -> list[tuple[int, str]]:
    """(index, source) of the code cells whose source is the student's, for the static scan: every code
    cell but the locked ones. Which cells are locked: with `trusted_ids` (the grader's gradebook), a
    locked cell whose grade_id the gradebook restores from the instructor's source; without (the
    pre-submission check, which has no gradebook), every cell the notebook's metadata calls locked.
    With `before`, only the cells above that index (what the kernel has run when that cell is graded)."""
    out = []
    for index, cell in enumerate(nb.get("cells", [])):
        if before is not None and index >= before:
            break
        if cell.get("cell_type") != "code":
            continue
        meta = nbgrader_meta(cell)
        if meta.get("locked") and (trusted_ids is None or meta.get("grade_id") in trusted_ids):
            continue
        out.append((index, source_of(cell)))
    return out


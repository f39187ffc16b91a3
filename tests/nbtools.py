"""Notebook helpers for the grading tests: an assignment's points, find a cell by grade id, edit copies,
write submissions."""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import nbformat

from conftest import REPO


@functools.cache
def points(aid: str) -> dict[str, float]:
    """grade id -> points of each graded cell of an assignment (the hidden checks: the visible tests
    are the student's self-check), from the nbgrader metadata of solutions/<aid>/<aid>.ipynb. Tests
    read scores from here, never hard-code them: a new graded cell changes the totals."""
    nb = nbformat.read(REPO / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"])
            for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}


def total(aid: str) -> float:
    """An assignment's maximum score: the points of all its graded cells."""
    return sum(points(aid).values())


def cell(nb, gid):
    found = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid]
    assert len(found) == 1, f"no cell {gid}"
    return found[0]


def with_cells(base, **sources):
    """A copy of base with the cells of these grade ids given new sources."""
    nb = copy.deepcopy(base)
    for gid, src in sources.items():
        cell(nb, gid).source = src
    return nb


def with_new_cell(base, source: str, before: str | None = None, after: str | None = None):
    """A copy of base with a new, unmarked code cell before or after the cell of a grade id."""
    nb = copy.deepcopy(base)
    at = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells].index(before or after)
    nb.cells.insert(at if before else at + 1, nbformat.v4.new_code_cell(source))
    return nb


def write_submissions(root: Path, subs) -> None:
    """subs: student -> assignment -> notebook, written as root/submitted/<student>/<id>/<id>.ipynb."""
    for sid, nbs in subs.items():
        for aid, nb in nbs.items():
            dest = root / "submitted" / sid / aid
            dest.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, dest / f"{aid}.ipynb")

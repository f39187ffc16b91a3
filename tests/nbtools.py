"""Notebook helpers for the grading tests: find a cell by grade id, edit copies, write submissions."""
from __future__ import annotations

import copy
from pathlib import Path

import nbformat


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

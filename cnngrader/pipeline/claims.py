"""Which cells of a submission are what their nbgrader metadata claims: the gradebook decides, never the cell.

A student's notebook carries each cell's nbgrader metadata (grade_id, locked, points...), and a student
can edit it. nbgrader trusts it in two places where a forged claim leaves the submission ungraded or
graded wrongly:

- a cell with a grade id the assignment does not have (an extra grade cell worth 100 points) makes
  nbgrader's SaveAutoGrades fail on a grade the gradebook cannot find;
- two cells that claim the same grade id (a solution cell that copied the locked setup cell's metadata,
  checksum included): DeduplicateIds keeps the last one's claim, and OverwriteCells then replaces
  that cell's code (the student's solution) with the setup cell's source.

forged_claims() finds both, from the gradebook's copy of the assignment's notebook: an unknown grade id
is forged; of several cells claiming one id, the one whose nbgrader checksum is the gradebook's (an
untouched locked cell) is genuine, else the one whose source is closest to the gradebook's source,
and the others are forged. DropForgedClaims (a sanitize preprocessor, before DeduplicateIds) removes
the forged cells' nbgrader metadata: they run as the plain code they are, and earn nothing.
"""
from __future__ import annotations

from difflib import SequenceMatcher
from typing import Any

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.utils import compute_checksum

CLAIMS = ("grade", "solution", "locked", "task")  # the flags that make nbgrader treat a cell as its own


def _meta(cell: NotebookNode) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def _claims(cell: NotebookNode) -> bool:
    return any(_meta(cell).get(flag) for flag in CLAIMS)


def _checksum(cell: NotebookNode) -> str | None:
    try:
        return compute_checksum(cell)
    except Exception:  # forged metadata (points that are not a number...): no checksum
        return None


def _genuine(nb: NotebookNode, claimants: list[int], source_cell: Any) -> int:
    """Of the cells claiming source_cell's grade id, the one that is it."""
    same = [i for i in claimants if _checksum(nb.cells[i]) == source_cell.checksum]
    if same:
        return same[0]
    ratio = {i: SequenceMatcher(None, str(nb.cells[i].get("source", "")), source_cell.source or "").ratio()
             for i in claimants}
    return max(claimants, key=lambda i: (ratio[i], -i))


def _what(meta: dict) -> str:
    if meta.get("grade"):
        return f"a grade cell worth {meta.get('points')!r} points"
    return "a locked cell" if meta.get("locked") else "a solution cell"


def forged_claims(nb: NotebookNode, source_nb: Any) -> list[tuple[int, str]]:
    """(cell index, why) for each cell of `nb` whose nbgrader claim `source_nb` (the gradebook's
    notebook: its source_cells) does not vouch for, in cell order."""
    sources = {c.name: c for c in source_nb.source_cells}
    claimants: dict[str, list[int]] = {}
    out = []
    for i, cell in enumerate(nb.cells):
        if not _claims(cell):
            continue
        gid = _meta(cell).get("grade_id")
        if not isinstance(gid, str) or gid not in sources:
            out.append((i, f"claims to be {_what(_meta(cell))} {gid!r}, which the assignment does not have"))
        else:
            claimants.setdefault(gid, []).append(i)
    for gid, cells in claimants.items():
        if len(cells) > 1:
            keep = _genuine(nb, cells, sources[gid])
            out += [(i, f"claims to be {gid!r}, which is cell {keep + 1}") for i in cells if i != keep]
    return sorted(out)


def gradebook_forged_claims(gb: Any, notebook: str, assignment: str, nb: NotebookNode) -> list[tuple[int, str]]:
    """forged_claims against the open gradebook gb's notebook; [] when it has no such notebook."""
    try:
        return forged_claims(nb, gb.find_notebook(notebook, assignment))
    except MissingEntry:
        return []


class DropForgedClaims(NbGraderPreprocessor):
    """Remove the nbgrader metadata of every cell whose claim the gradebook does not vouch for
    (forged_claims): such a cell runs as plain code and earns nothing."""

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        info = resources.get("nbgrader", {})
        if not all(info.get(k) for k in ("db_url", "notebook", "assignment")):
            return nb, resources
        with Gradebook(info["db_url"]) as gb:
            forged = gradebook_forged_claims(gb, info["notebook"], info["assignment"], nb)
        for i, why in forged:
            self.log.warning("Cell %d %s: graded as a plain cell, it earns nothing", i + 1, why)
            nb.cells[i].metadata.pop("nbgrader", None)
        return nb, resources

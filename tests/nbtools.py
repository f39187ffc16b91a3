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


def stdout_of(outputs) -> str:
    """The text a cell wrote, checking that it wrote only to stdout (no stderr, no error). A kernel may
    send one print as several stream outputs, so they are joined."""
    kinds = {(o.output_type, o.get("name")) for o in outputs}
    assert kinds == {("stream", "stdout")}, outputs
    return "".join(o.text for o in outputs)


def statuses(stdout: str, gids) -> dict[str, str]:
    """grade_id -> the status word of its line in a pre-submission check's report ("pass", "FAIL",
    "checked when graded", "not checked here", "graded by hand"), for the grade ids `gids`."""
    out = {}
    for line in stdout.splitlines():
        words = line.split()
        if words and words[0] in gids:
            out[words[0]] = line.split(" points: " if " points: " in line else " point: ")[1].split(":")[0]
    return out


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def score_line(points: dict[str, float], status: dict[str, str]) -> str:
    """The "Would score about ..." a report shows for these cells' statuses: the points of the cells that
    pass, out of all, and how many of them are checked only when graded (a conceptual answer whose secret
    answers file is not there)."""
    earned = sum(p for gid, p in points.items() if status[gid] == "pass")
    later = sum(p for gid, p in points.items()
                if status[gid] in ("checked when graded", "not checked here", "graded by hand"))
    line = f"Would score about {_num(earned)}/{_num(sum(points.values()))}"
    if later:
        line += f" ({_num(later)} of these points {'is' if later == 1 else 'are'} checked only when graded)"
    return line + "."


def scores_of(batch, student: str) -> dict[str, float]:
    """A graded batch's scores of one student, by grade cell (the rows of gradebook_rows)."""
    return {r["cell"]: r["score"] for r in batch.rows if r["student"] == student}


def maxima(batch, student: str, automatic: bool = False) -> dict[str, float]:
    """The most each of the student's grade cells can score; automatic=True: only the hidden-test cells (a cell
    graded by hand waits for its grader, pending: no part of the automatic score)."""
    return {r["cell"]: r["max_score"] for r in batch.rows
            if r["student"] == student and (not automatic or r["cell"].startswith("hidden_"))}


def connect_probe(port: int) -> str:
    """Code that tries to reach the host's 127.0.0.1:port and prints, as JSON, "connected" or the error's name."""
    return f"""import json, socket
s = socket.socket(); s.settimeout(2)
try:
    s.connect(("127.0.0.1", {port})); r = "connected"
except OSError as e:
    r = type(e).__name__
print(json.dumps(r))"""

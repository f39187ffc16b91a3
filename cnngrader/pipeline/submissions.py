"""Submissions for tests and benchmarks: students who hand in the reference solution."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import nbformat

from cnngrader.course import Course, load_course
from cnngrader.pipeline import authoring


def solution_code(source: str) -> str:
    """A solution cell's source as a student who solved it would hand it in: markers removed."""
    return "\n".join(line for line in source.splitlines() if line.strip() not in authoring.SOLUTION_MARKERS)


def solution_submission(assignment: str, release: str | Path | None = None,
                        course: Course | None = None) -> nbformat.NotebookNode:
    """The released notebook of `assignment` with every solution cell filled with the reference
    solution: what a student who solved everything hands in."""
    course = course or load_course()
    release = Path(release) if release else course.root / "exercises"
    nb = nbformat.read(release / assignment / f"{assignment}.ipynb", as_version=4)
    src = nbformat.read(course.root / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    solutions = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in src.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            cell.source = solution_code(solutions[meta["grade_id"]])
    return nb


def make_submissions(
    root: str | Path,
    count: int = 8,
    assignments: Sequence[str] | None = None,
    prefix: str = "student",
    release: str | Path | None = None,
    course: Course | None = None,
) -> list[str]:
    """Write `count` students who hand in the reference solution for every assignment into
    root/submitted/<student>/<assignment>/; returns the student ids (prefix01, prefix02, ...)."""
    root = Path(root)
    course = course or load_course()
    students = [f"{prefix}{i:02d}" for i in range(1, count + 1)]
    for aid in assignments or course.ids:
        nb = solution_submission(aid, release, course)
        for sid in students:
            dest = root / "submitted" / sid / aid
            dest.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, dest / f"{aid}.ipynb")
    return students

"""The export step: the whole gradebook as grades.csv, nbgrader's CSV columns plus a status.

`make grade` writes it, and so does `nbgrader export` (nbgrader_hooks.GradesExport)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from traitlets.config import Config

from cnngrader.pipeline import csvsafe
from cnngrader.pipeline.config import CoursePaths

PENDING = "submitted, manual grading pending"  # grades.csv's status while a cell waits for its grader
GRADES_FIELDS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                 "raw_score", "late_submission_penalty", "score", "max_score", "status"]


def export_grades(cfg: Config | CoursePaths, dest: str | Path | None = None) -> Path:
    """The whole gradebook as root/grades.csv (or dest), as grade_rows gives it."""
    paths = CoursePaths.of(cfg)
    dest = Path(dest) if dest else paths.grades_csv
    with paths.gradebook() as gb:
        write_grades(grade_rows(gb), dest)
    return dest


def grade_rows(gb, students: Iterable[str] = (), assignments: Iterable[str] = ()) -> list[dict[str, str]]:
    """nbgrader's CSV export as rows (its columns, one row per assignment and student, sorted by
    assignment then student) plus a status column, "submitted", PENDING (a cell waits for a manual grade:
    the score is the rest so far) or "missing". A missing submission has empty scores, not nbgrader's 0.0;
    a submitted blank notebook scores 0. students, assignments: only these ids (default: all)."""
    students, assignments = set(students), set(assignments)
    subs = {(s.assignment.name, s.student.id): s for a in gb.assignments for s in a.submissions}
    rows = []
    for a in gb.assignments:
        if assignments and a.name not in assignments:
            continue
        for st in gb.students:
            if students and st.id not in students:
                continue
            row = {"assignment": a.name, "duedate": a.duedate, "student_id": st.id, "last_name": st.last_name,
                   "first_name": st.first_name, "email": st.email, "max_score": a.max_score}
            sub = subs.get((a.name, st.id))
            if sub is None:
                row.update(timestamp="", raw_score="", late_submission_penalty="", score="", status="missing")
            else:
                row.update(timestamp=sub.timestamp, raw_score=sub.score,
                           late_submission_penalty=sub.late_submission_penalty or 0.0, score=final_score(sub),
                           status=PENDING if sub.needs_manual_grade else "submitted")
            rows.append({k: "" if v is None else str(v) for k, v in row.items()})
    rows.sort(key=lambda r: (r["assignment"], r["student_id"]))
    return rows


def final_score(sub) -> float:
    """A gradebook submission's score after its late penalty, never below 0."""
    return max(0.0, float(sub.score) - float(sub.late_submission_penalty or 0.0))


def write_grades(rows: list[dict[str, str]], dest: str | Path) -> None:
    with open(dest, "w", newline="") as fh:
        writer = csvsafe.DictWriter(fh, fieldnames=GRADES_FIELDS)
        writer.writeheader()
        writer.writerows(rows)

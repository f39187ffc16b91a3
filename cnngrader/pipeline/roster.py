"""The roster: student ids -> names and LMS ids (roster.csv in the grading directory)."""
from __future__ import annotations

import csv
from typing import Iterable

from nbgrader.api import Gradebook, MissingEntry
from traitlets.config import Config

from cnngrader.pipeline.config import CoursePaths

ROSTER_FIELDS = ("id", "first_name", "last_name", "lms_user_id", "sis_user_id", "section", "email")


def load_roster(cfg: Config | CoursePaths) -> dict[str, dict[str, str]]:
    """root/roster.csv as student id -> its row (ROSTER_FIELDS; absent columns are ""); {} without one.

    The header names the columns (id is required, the others optional, any order)."""
    path = CoursePaths.of(cfg).roster
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "id" not in [f.strip() for f in reader.fieldnames]:
            raise ValueError(f"{path}: the header must name an 'id' column (columns: {', '.join(ROSTER_FIELDS)})")
        out = {}
        for row in reader:
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if row.get("id"):
                out[row["id"]] = {f: row.get(f, "") for f in ROSTER_FIELDS}
    return out


def sync_students(gb: Gradebook, paths: CoursePaths, students: Iterable[str]) -> None:
    """Put the roster's students and `students` into the gradebook with their names and LMS ids.

    Without a roster entry a student keeps the names the gradebook has; one with none gets the
    student id as last name (nbgrader's formgrader would show "None, None")."""
    roster = load_roster(paths)
    for sid in sorted(set(students) | set(roster)):
        if sid in roster:
            r = roster[sid]
            gb.update_or_create_student(sid, first_name=r["first_name"], last_name=r["last_name"] or sid,
                                        lms_user_id=r["lms_user_id"] or None, email=r["email"] or None)
            continue
        try:
            student = gb.find_student(sid)
        except MissingEntry:
            student = None
        if student is None or (not student.last_name and not student.first_name):
            gb.update_or_create_student(sid, last_name=sid, first_name="")

"""CSV files that a spreadsheet opens as data, never as formulas, and the student ids they may name.

Every CSV the course writes (grades.csv, reports/*.csv, canvas.csv, `nbgrader export`) goes through
`DictWriter` or `writer` here. A cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return
is a formula to Excel, LibreOffice and Google Sheets (`=HYPERLINK(...)` chosen as a student id, a
failure reason): it is written with a leading `'`, OWASP's rule for CSV injection, so the spreadsheet
shows the text as it was. A plain number (`-1.5`, `+2`, `1e-05`) is left as it is: it cannot be a
formula, and a quote would turn it into text. The course's scores are never negative, so in practice
this keeps exponents and signs of derived figures only.
"""
from __future__ import annotations

import csv
import re
from typing import Any, Iterable

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# A student id names a folder (submitted/<id>/) and a CSV cell: letters, digits, '.', '_' and '-'.
STUDENT_ID = re.compile(r"[A-Za-z0-9._-]+")


def cell(value: Any) -> str:
    """value as a CSV cell that no spreadsheet evaluates."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_START) and not NUMBER.fullmatch(text):
        return "'" + text
    return text


class DictWriter(csv.DictWriter):
    """csv.DictWriter whose cells (the header too) go through cell(); lines end with "\\n"."""

    def __init__(self, fh, fieldnames, **kw) -> None:
        kw.setdefault("lineterminator", "\n")
        super().__init__(fh, fieldnames, **kw)

    def _dict_to_list(self, rowdict):
        return [cell(v) for v in super()._dict_to_list(rowdict)]


class writer:  # a drop-in for csv.writer
    """csv.writer whose cells go through cell(); lines end with "\\n"."""

    def __init__(self, fh, **kw) -> None:
        kw.setdefault("lineterminator", "\n")
        self._w = csv.writer(fh, **kw)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._w.writerow([cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def student_id_problem(student: str) -> str:
    """Why `student` cannot be a student id ("" when it can): ids are made of [A-Za-z0-9._-], and
    not "." or ".."."""
    if not STUDENT_ID.fullmatch(student) or student in (".", ".."):
        return (f"the student id {student!r} has characters outside A-Z, a-z, 0-9, '.', '_' and '-'"
                if student not in (".", "..") else f"{student!r} is not a student id")
    return ""

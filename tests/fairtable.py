"""The fair-grading table: each fixture of the grader's fairness and boundary items, its fair score, and the
score (or outcome) the real pipeline gave it in this test run.

The tests that grade fixtures through the real pipeline (test_corpus.py, test_tamper_trusted.py,
test_tamper_odd.py) and run the real collect (test_trusted_side.py) call `record` next to the assertion
that fair equals measured, so a row exists only for a fixture that was actually graded. At the end of the
session, conftest.py merges the rows into benchmarks/results/fair_table.json (rows of earlier sessions are kept, a
fixture graded again replaces its row) and writes benchmarks/results/fair_table.md from it:

    .venv/bin/python -m pytest tests/test_corpus.py tests/test_tamper_trusted.py tests/test_tamper_odd.py \
        tests/test_trusted_side.py
    cat benchmarks/results/fair_table.md
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

ITEMS = {
    "1": "device bugs show without a GPU",
    "2": "a ban only where the task's text states it",
    "3": "reasons point at the bug",
    "4": "a looping function costs seconds",
    "5": "nothing a student wrote runs in a browser",
    "6": "the trusted side never follows a student's link",
    "7": "a safe collect",
    "8": "exports carry no formula",
    "9": "one submission cannot starve the others",
    "corpus": "student-style code graded fairly",
}

_ROWS: list[dict] = []


def record(item: str, fixture: str, fair: object, measured: object, where: str) -> None:
    """One row: the issue's item ("1".."9", or "corpus"), the fixture, its fair score and the measured one
    (numbers or short words), and the test that graded it."""
    assert item in ITEMS, item
    _ROWS.append({"item": item, "fixture": fixture, "fair": _plain(fair), "measured": _plain(measured),
                  "where": where, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})


def _plain(v: object) -> object:
    if isinstance(v, float) and v == int(v):
        return int(v)
    return v if isinstance(v, (int, float, str)) or v is None else str(v)


def _order(row: dict) -> tuple:
    item = row["item"]
    return (int(item) if item.isdigit() else 99, row["fixture"])


def markdown(rows: list[dict]) -> str:
    lines = ["| item | fixture | fair | measured | same | graded by |", "|---|---|---|---|---|---|"]
    for row in sorted(rows, key=_order):
        same = "yes" if row["fair"] == row["measured"] else "**no**"
        label = f"{row['item']}. {ITEMS[row['item']]}" if row["item"].isdigit() else ITEMS[row["item"]]
        lines.append(f"| {label} | {row['fixture']} | {row['fair']} | {row['measured']} | {same} | {row['where']} |")
    return "\n".join(lines) + "\n"


def write(folder: Path) -> Path | None:
    """Merge this session's rows into folder/fair_table.json and rewrite folder/fair_table.md; None if none."""
    if not _ROWS:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / "fair_table.json"
    rows = {}
    if store.is_file():
        try:
            rows = {(r["item"], r["fixture"]): r for r in json.loads(store.read_text())}
        except (ValueError, KeyError, TypeError):
            rows = {}
    rows.update({(r["item"], r["fixture"]): r for r in _ROWS})
    merged = sorted(rows.values(), key=_order)
    store.write_text(json.dumps(merged, indent=1) + "\n")
    out = folder / "fair_table.md"
    out.write_text(markdown(merged))
    return out

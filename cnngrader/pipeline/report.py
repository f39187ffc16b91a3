"""Grade analytics for the instructor: reports/ from the nbgrader gradebook.

Writes, for every graded assignment:
- cells.csv: pass rate and mean score of every graded cell (a cell passes at full points);
- assignments.csv: submissions, mean / median / min / max score;
- students.csv: each student's score per assignment and total;
- flags.csv: submissions whose solution code does something a solution never needs to
  (touch IPython, rewrite modules or builtins, patch a library, control the process): the
  tests run in the student's own kernel, so such code deserves a human look;
- <assignment>.png: pass rate per test cell and the histogram of scores;
- report.md: all of the above as Markdown tables, with the figures.
"""
from __future__ import annotations

import csv
import re
import statistics
from pathlib import Path
from typing import Any

import nbformat
from traitlets.config import Config

from cnngrader.pipeline.grade import UNSANDBOXED, sandbox_enabled

FLAGS = (
    ("touches IPython", re.compile(r"get_ipython|\bIPython\b|InteractiveShell|showtraceback")),
    ("rewrites modules or builtins", re.compile(r"sys\.modules|__builtins__|\bbuiltins\b|importlib|__import__")),
    ("patches a library", re.compile(
        r"^\s*(?:torch|np|numpy|cnnlib|F|nn|math)(?:\.\w+)+\s*=(?!=)|setattr\(\s*(?:torch|np|numpy|cnnlib|F|nn)\b",
        re.M)),
    ("controls the process", re.compile(
        r"os\._exit|sys\.exit|\bsignal\.|\bresource\.|ctypes|subprocess|os\.system|os\.kill|multiprocessing")),
)


def gradebook_rows(cfg: Config) -> list[dict[str, Any]]:
    """One row per (student, assignment, notebook, graded cell), sorted; what the gradebook
    holds about it (scores and the autograder's comment on solution cells)."""
    from nbgrader.api import Gradebook

    rows = []
    with Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id) as gb:
        for assignment in gb.assignments:
            for sub in assignment.submissions:
                for snb in sub.notebooks:
                    comments = {c.name: c.auto_comment for c in snb.comments}
                    for g in snb.grades:
                        rows.append({
                            "student": sub.student.id,
                            "assignment": assignment.name,
                            "notebook": snb.name,
                            "cell": g.name,
                            "max_score": float(g.max_score),
                            "auto_score": g.auto_score,
                            "manual_score": g.manual_score,
                            "score": float(g.score),
                            "needs_manual_grade": bool(g.needs_manual_grade),
                            "comment": comments.get(g.name),
                        })
    rows.sort(key=lambda r: (r["student"], r["assignment"], r["notebook"], r["cell"]))
    return rows


def _cell_order(cfg: Config) -> dict[tuple[str, str, str], int]:
    """Position of every graded cell in its source notebook (for the tables' row order)."""
    source = Path(cfg.CourseDirectory.root, cfg.CourseDirectory.get("source_directory", "source"))
    order = {}
    for path in source.glob("*/*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid:
                order[(path.parent.name, path.stem, gid)] = i
    return order


def flag_submissions(root: Path) -> list[dict[str, str]]:
    """Flags raised by the solution cells of every autograded notebook under root/autograded."""
    out = []
    for path in sorted(Path(root, "autograded").glob("*/*/*.ipynb")):
        student, assignment = path.parent.parent.name, path.parent.name
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code" or not meta.get("solution"):
                continue
            for label, rx in FLAGS:
                m = rx.search(cell.source)
                if m:
                    out.append({"student": student, "assignment": assignment, "notebook": path.stem,
                                "cell": meta.get("grade_id", "?"), "flag": label,
                                "match": m.group(0).strip()[:60]})
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _md_table(rows: list[dict[str, Any]], fields: list[str]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    lines += ["| " + " | ".join(fmt(r[f]) for f in fields) + " |" for r in rows]
    return "\n".join(lines)


def write_report(cfg: Config, out: Path) -> Path:
    """Write the analytics of the gradebook into `out` (created); returns `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = gradebook_rows(cfg)
    order = _cell_order(cfg)
    assignments = sorted({r["assignment"] for r in rows})
    students = sorted({r["student"] for r in rows})

    # per cell
    cells: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        cells.setdefault((r["assignment"], r["notebook"], r["cell"]), []).append(r)
    cell_rows = []
    for key in sorted(cells, key=lambda k: (k[0], k[1], order.get(k, 0), k[2])):
        rs = cells[key]
        passed = sum(r["score"] >= r["max_score"] for r in rs)
        cell_rows.append({
            "assignment": key[0], "notebook": key[1], "cell": key[2], "points": rs[0]["max_score"],
            "submissions": len(rs), "passed": passed, "pass_rate": passed / len(rs),
            "mean_score": statistics.fmean(r["score"] for r in rs),
        })
    _write_csv(out / "cells.csv", cell_rows, list(cell_rows[0]) if cell_rows else ["assignment"])

    # per assignment and per student
    totals: dict[tuple[str, str], float] = {}
    max_scores: dict[str, float] = {}
    for r in rows:
        totals[(r["student"], r["assignment"])] = totals.get((r["student"], r["assignment"]), 0.0) + r["score"]
    for a in assignments:
        max_scores[a] = sum(c["points"] for c in cell_rows if c["assignment"] == a)
    assignment_rows = []
    for a in assignments:
        scores = [v for (s, aa), v in totals.items() if aa == a]
        assignment_rows.append({
            "assignment": a, "max_score": max_scores[a], "submissions": len(scores),
            "mean": statistics.fmean(scores), "median": float(statistics.median(scores)),
            "min": min(scores), "max": max(scores),
        })
    _write_csv(out / "assignments.csv", assignment_rows,
               ["assignment", "max_score", "submissions", "mean", "median", "min", "max"])
    student_rows = []
    for s in students:
        row: dict[str, Any] = {"student": s}
        for a in assignments:
            row[a] = totals.get((s, a), 0.0)
        row["total"] = sum(row[a] for a in assignments)
        student_rows.append(row)
    _write_csv(out / "students.csv", student_rows, ["student", *assignments, "total"])

    flags = flag_submissions(Path(cfg.CourseDirectory.root))
    _write_csv(out / "flags.csv", flags, ["student", "assignment", "notebook", "cell", "flag", "match"])

    # figures
    for a in assignments:
        crs = [c for c in cell_rows if c["assignment"] == a]
        scores = [v for (s, aa), v in totals.items() if aa == a]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, max(3.0, 0.35 * len(crs) + 1.5)))
        names = [c["cell"] for c in crs]
        ax1.barh(range(len(crs)), [100 * c["pass_rate"] for c in crs], color="tab:blue")
        ax1.set_yticks(range(len(crs)), names, fontsize=8)
        ax1.invert_yaxis()
        ax1.set_xlim(0, 100)
        ax1.set_xlabel("students passing (%)")
        ax1.set_title("pass rate per graded cell")
        top = max_scores[a] or 1.0
        ax2.hist(scores, bins=min(20, max(5, len(scores))), range=(0, top), color="tab:orange", edgecolor="black")
        ax2.set_xlabel(f"score (out of {top:g})")
        ax2.set_ylabel("students")
        ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax2.set_title("scores")
        fig.suptitle(f"{a}: {len(scores)} submission(s)")
        fig.tight_layout()
        fig.savefig(out / f"{a}.png", dpi=100)
        plt.close(fig)

    md = ["# Grade report", ""]
    if not sandbox_enabled(cfg):
        md += [f"**Warning: {UNSANDBOXED}.**", ""]
    md += [f"{len(students)} student(s), {len(assignments)} assignment(s). A cell passes at full points.", ""]
    md += ["## Assignments", "", _md_table(assignment_rows, ["assignment", "max_score", "submissions", "mean",
                                                             "median", "min", "max"]), ""]
    for a in assignments:
        md += [f"## {a}", "", f"![{a}]({a}.png)", "",
               _md_table([c for c in cell_rows if c["assignment"] == a],
                         ["notebook", "cell", "points", "submissions", "passed", "pass_rate", "mean_score"]), ""]
    md += ["## Students", "", _md_table(student_rows, ["student", *assignments, "total"]), ""]
    md += ["## Flags for a human look", ""]
    md += [_md_table(flags, ["student", "assignment", "cell", "flag", "match"]) if flags else "None.", ""]
    (out / "report.md").write_text("\n".join(md))
    return out

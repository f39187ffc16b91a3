"""Grade analytics for the instructor: reports/ from the nbgrader gradebook.

Writes, for every graded assignment:
- cells.csv: pass rate and mean score of every graded cell (a cell passes at full points);
- assignments.csv: submissions, missing ones, mean / median / min / max score;
- students.csv: each student's score per assignment (after late penalties; empty when nothing
  was submitted, 0 for a submitted blank notebook), total and the number of missing ones;
- tests.csv: one row per student, one column per hidden test cell (assignment:cell): pass,
  fail or missing;
- failures.csv / failures.md: the reasons the hidden tests gave, grouped by kind across the
  class ("corr2d uses F.conv2d": the students it applies to);
- late.csv: submissions after their assignment's due date, with nbgrader's penalty;
- canvas.csv: the scores in Canvas's gradebook import format (names and LMS ids from roster.csv);
- flags.csv: submissions whose solution code does something a solution never needs to
  (touch IPython, rewrite modules or builtins, patch a library, control the process): the
  tests run in the student's own kernel, so such code deserves a human look;
- <assignment>.png: pass rate per test cell and the histogram of scores;
- report.md: all of the above as Markdown tables, with the figures, and a link to the similarity report
  (reports/similarity/, `make similarity`) with the pairs it flagged: pairs worth a look, never a grade.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from traitlets.config import Config

from cnngrader.pipeline import csvsafe
from cnngrader.pipeline.config import UNSANDBOXED, CoursePaths, sandbox_enabled
from cnngrader.pipeline.export import final_score
from cnngrader.pipeline.roster import load_roster
from cnngrader.pipeline.similarity import similarity_md

MISSING = "missing"  # a submission that was never handed in, in the Markdown tables (empty in the CSVs)

FLAGS = (
    ("touches IPython", re.compile(r"get_ipython|\bIPython\b|InteractiveShell|showtraceback")),
    ("rewrites modules or builtins", re.compile(r"sys\.modules|__builtins__|\bbuiltins\b|importlib|__import__")),
    ("patches a library", re.compile(
        r"^\s*(?:torch|np|numpy|cnnlib|F|nn|math)(?:\.\w+)+\s*=(?!=)|setattr\(\s*(?:torch|np|numpy|cnnlib|F|nn)\b",
        re.M)),
    ("controls the process", re.compile(
        r"os\._exit|sys\.exit|\bsignal\.|\bresource\.|ctypes|subprocess|os\.system|os\.kill|multiprocessing")),
)


def gradebook_rows(cfg: Config | CoursePaths) -> list[dict[str, Any]]:
    """One row per (student, assignment, notebook, graded cell), sorted; what the gradebook
    holds about it (scores and the autograder's comment on solution cells)."""
    with CoursePaths.of(cfg).gradebook() as gb:
        return _gradebook_rows(gb)


def _gradebook_rows(gb) -> list[dict[str, Any]]:
    rows = []
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


def _cell_order(paths: CoursePaths) -> dict[tuple[str, str, str], int]:
    """Position of every graded cell in its source notebook (for the tables' row order)."""
    order = {}
    for path in paths.sources.glob("*/*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid:
                order[(path.parent.name, path.stem, gid)] = i
    return order


def _autograded_notebooks(root: Path) -> dict[Path, NotebookNode]:
    """Every notebook under root/autograded/<student>/<assignment>/, read once for the report, in path order."""
    return {path: nbformat.read(path, as_version=4) for path in sorted(Path(root, "autograded").glob("*/*/*.ipynb"))}


def flag_submissions(root: Path, notebooks: dict[Path, NotebookNode] | None = None) -> list[dict[str, str]]:
    """Flags raised by the solution cells of every autograded notebook under root/autograded
    (notebooks: those notebooks, already read)."""
    out = []
    for path, nb in (notebooks if notebooks is not None else _autograded_notebooks(root)).items():
        student, assignment = path.parent.parent.name, path.parent.name
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


def gradebook_overview(cfg: Config | CoursePaths) -> dict[str, Any]:
    """Students, assignments and submissions of the gradebook.

    {"students": [{id, first_name, last_name, lms_user_id}], "assignments": [{name, duedate,
    max_score, cells: [(notebook, grade cell, points)]}], "submissions": {(student, assignment):
    {score (raw), penalty, final, timestamp, seconds_late, cells: {(notebook, cell): score}}}}."""
    paths = CoursePaths.of(cfg)
    with paths.gradebook() as gb:
        return _overview(gb, _cell_order(paths))


def _overview(gb, order: dict[tuple[str, str, str], int]) -> dict[str, Any]:
    out: dict[str, Any] = {"students": [], "assignments": [], "submissions": {}}
    for st in gb.students:
        out["students"].append({"id": st.id, "first_name": st.first_name, "last_name": st.last_name,
                                "lms_user_id": st.lms_user_id})
    for a in gb.assignments:
        cells = [(nb.name, gc.name, float(gc.max_score)) for nb in a.notebooks for gc in nb.grade_cells]
        cells.sort(key=lambda c: (c[0], order.get((a.name, c[0], c[1]), 0), c[1]))
        out["assignments"].append({"name": a.name, "duedate": a.duedate, "max_score": float(a.max_score),
                                   "cells": cells})
        for sub in a.submissions:
            out["submissions"][(sub.student.id, a.name)] = {
                "score": float(sub.score), "penalty": float(sub.late_submission_penalty or 0.0),
                "final": final_score(sub),
                "timestamp": sub.timestamp, "seconds_late": float(sub.total_seconds_late or 0.0),
                "cells": {(snb.name, g.name): float(g.score) for snb in sub.notebooks for g in snb.grades},
                "pending": {(snb.name, g.name) for snb in sub.notebooks for g in snb.grades
                            if g.needs_manual_grade},
            }
    out["students"].sort(key=lambda s: s["id"])
    out["assignments"].sort(key=lambda a: a["name"])
    return out


def test_table(overview: dict[str, Any]) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows): one row per student, one column "assignment:cell" per hidden test cell
    (the graded cells), each pass (full points), partial, fail, pending (waiting for a manual grade) or
    missing (nothing handed in)."""
    columns = [f"{a['name']}:{cell}" for a in overview["assignments"] for _nb, cell, _pts in a["cells"]]
    rows = []
    for st in overview["students"]:
        row = {"student": st["id"]}
        for a in overview["assignments"]:
            sub = overview["submissions"].get((st["id"], a["name"]))
            for nb, cell, pts in a["cells"]:
                if sub is None or (nb, cell) not in sub["cells"]:
                    row[f"{a['name']}:{cell}"] = MISSING
                else:
                    row[f"{a['name']}:{cell}"] = cell_status(sub, (nb, cell), pts)
        rows.append(row)
    return columns, rows


def cell_status(sub: dict[str, Any], key: tuple[str, str], points: float) -> str:
    """A handed-in cell's status: pending while it waits for a manual grade (its score is not a 0), else
    pass at full points, partial with some, fail with none."""
    if key in sub.get("pending", ()):
        return "pending"
    score = sub["cells"][key]
    return "pass" if score >= points else "partial" if score > 0 else "fail"


# -- failure reasons, grouped ----------------------------------------------------------------
_PAREN = re.compile(r"\s*\([^()]+\)")
_CUT = re.compile(r":\s|;\s| for | while | on (?:cpu|cuda)")


def reason_kind(ename: str, evalue: str) -> str:
    """The kind of a hidden test's failure, the same for every student it applies to: the reason's
    first clause, without the failing case, locations and numbers ("corr2d uses F.conv2d (at
    cell 3, line 4): ..." -> "corr2d uses F.conv2d"). Errors other than the grader's verdict
    (a dead kernel, a timeout) keep their error name in front."""
    text = " ".join(evalue.split())
    while _PAREN.search(text):
        text = _PAREN.sub("", text)
    if ename == "GradingError":
        head = _CUT.split(text, maxsplit=1)[0]
    else:
        head = re.sub(r"^not run:\s*", "", text).split("; ")[0]
    head = re.sub(r"(?<![\w.])-?\d+(?:\.\d+)?\b", "N", head).strip(" .,")  # numbers, not corr2d's 2
    head = head[:100] or "failed"
    return head if ename == "GradingError" else f"{ename}: {head}"


def failure_reasons(root: Path, overview: dict[str, Any],
                    notebooks: dict[Path, NotebookNode] | None = None) -> list[dict[str, Any]]:
    """One row per (assignment, cell, kind of reason), most students first: the students whose
    hidden test cell failed that way, with one full reason as an example. Read from the graded
    cells' outputs in root/autograded (written by the grader, never by the student's kernel);
    notebooks: those notebooks, already read (_autograded_notebooks)."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    graded = {a["name"]: {cell for _nb, cell, _p in a["cells"]} for a in overview["assignments"]}
    by_folder: dict[Path, list[Path]] = {}
    for path in notebooks or ():
        by_folder.setdefault(path.parent, []).append(path)
    for (sid, aid), sub in sorted(overview["submissions"].items()):
        folder = Path(root, "autograded", sid, aid)
        for path in sorted(by_folder.get(folder, []) if notebooks is not None else folder.glob("*.ipynb")):
            nb = notebooks[path] if notebooks is not None else nbformat.read(path, as_version=4)
            for cell in nb.cells:
                gid = cell.metadata.get("nbgrader", {}).get("grade_id")
                if cell.cell_type != "code" or gid not in graded.get(aid, ()):
                    continue
                errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
                if not errors:
                    continue
                ename, evalue = str(errors[0].get("ename", "")), str(errors[0].get("evalue", ""))
                key = (aid, gid, reason_kind(ename, evalue))
                g = groups.setdefault(key, {"assignment": aid, "cell": gid, "kind": key[2], "students": [],
                                            "example": " ".join(evalue.split())[:300]})
                if sid not in g["students"]:
                    g["students"].append(sid)
    rows = sorted(groups.values(), key=lambda g: (-len(g["students"]), g["assignment"], g["cell"], g["kind"]))
    for g in rows:
        g["count"] = len(g["students"])
    return rows


def late_submissions(overview: dict[str, Any]) -> list[dict[str, Any]]:
    """Submissions handed in after their assignment's due date (nbgrader's timestamp.txt against
    the gradebook's duedate), with the penalty nbgrader's late submission plugin gave."""
    due = {a["name"]: a["duedate"] for a in overview["assignments"]}
    rows = []
    for (sid, aid), sub in sorted(overview["submissions"].items()):
        if sub["seconds_late"] > 0:
            rows.append({"student": sid, "assignment": aid, "duedate": str(due[aid] or ""),
                         "timestamp": str(sub["timestamp"] or ""), "hours_late": round(sub["seconds_late"] / 3600, 2),
                         "raw_score": sub["score"], "penalty": sub["penalty"], "score": sub["final"]})
    return rows


CANVAS_HEADER = ["Student", "ID", "SIS User ID", "Section"]


def write_canvas(cfg: Config | CoursePaths, overview: dict[str, Any], path: Path) -> Path:
    """path: the scores in Canvas's gradebook import format. The header is Student, ID (Canvas's
    user id), SIS User ID, Section, then one column per assignment; a "Points Possible" row
    follows it, as in Canvas's own export. Student is "Last, First" from roster.csv (the
    student id without a roster entry); a missing submission is an empty cell, which Canvas
    leaves ungraded. Scores are after late penalties."""
    roster = load_roster(cfg)
    names = [a["name"] for a in overview["assignments"]]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csvsafe.writer(fh)
        w.writerow(CANVAS_HEADER + names)
        w.writerow(["Points Possible", "", "", ""] + [f"{a['max_score']:g}" for a in overview["assignments"]])
        for st in overview["students"]:
            r = roster.get(st["id"], {})
            first, last = r.get("first_name") or st["first_name"] or "", r.get("last_name") or st["last_name"] or ""
            name = f"{last}, {first}" if first and last and last != st["id"] else st["id"]
            scores = []
            for aid in names:
                sub = overview["submissions"].get((st["id"], aid))
                scores.append("" if sub is None else f"{sub['final']:g}")
            w.writerow([name, r.get("lms_user_id") or st["lms_user_id"] or "", r.get("sis_user_id", ""),
                        r.get("section", "")] + scores)
    return path


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    with open(path, "w", newline="") as fh:
        w = csvsafe.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def _md_table(rows: list[dict[str, Any]], fields: list[str]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    lines += ["| " + " | ".join(fmt(r[f]) for f in fields) + " |" for r in rows]
    return "\n".join(lines)


@dataclass
class Tables:
    """What the report shows, computed once from the gradebook and the autograded notebooks."""

    overview: dict[str, Any]  # gradebook_overview
    cells: list[dict[str, Any]]  # one row per graded cell of a graded assignment
    assignments: list[dict[str, Any]]  # one row per assignment of the gradebook
    students: list[dict[str, Any]]
    test_columns: list[str]
    tests: list[dict[str, str]]
    failures: list[dict[str, Any]]
    late: list[dict[str, Any]]
    flags: list[dict[str, str]]

    @property
    def graded(self) -> list[str]:
        """The assignments with at least one graded cell in the gradebook."""
        return sorted({c["assignment"] for c in self.cells})

    @property
    def names(self) -> list[str]:
        return [a["name"] for a in self.overview["assignments"]]

    def scores(self, assignment: str) -> list[float]:
        """The final scores of the assignment's submissions."""
        return [v["final"] for (_s, a), v in self.overview["submissions"].items() if a == assignment]


ASSIGNMENT_FIELDS = ["assignment", "max_score", "submissions", "missing", "mean", "median", "min", "max"]
FAILURE_FIELDS = ["assignment", "cell", "kind", "count", "students", "example"]
LATE_FIELDS = ["student", "assignment", "duedate", "timestamp", "hours_late", "raw_score", "penalty", "score"]
FLAG_FIELDS = ["student", "assignment", "notebook", "cell", "flag", "match"]


def write_report(cfg: Config, out: Path) -> Path:
    """Write the analytics of the gradebook into `out` (created); returns `out`."""
    paths = CoursePaths.from_config(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    order = _cell_order(paths)
    with paths.gradebook() as gb:
        rows = _gradebook_rows(gb)
        overview = _overview(gb, order)
    notebooks = _autograded_notebooks(paths.root)
    cells = cell_rows(rows, order)
    _write_csv(out / "cells.csv", cells, list(cells[0]) if cells else ["assignment"])
    test_columns, tests = test_table(overview)
    t = Tables(overview, cells, assignment_rows(overview), student_rows(overview), test_columns, tests,
               failure_reasons(paths.root, overview, notebooks), late_submissions(overview),
               flag_submissions(paths.root, notebooks))
    _write_csv(out / "assignments.csv", t.assignments, ASSIGNMENT_FIELDS)
    _write_csv(out / "students.csv", t.students, ["student", *t.names, "total", "missing"])
    _write_csv(out / "tests.csv", t.tests, ["student", *t.test_columns])
    _write_csv(out / "failures.csv", [{**f, "students": " ".join(f["students"])} for f in t.failures],
               FAILURE_FIELDS)
    _write_csv(out / "late.csv", t.late, LATE_FIELDS)
    write_canvas(paths, overview, out / "canvas.csv")
    _write_csv(out / "flags.csv", t.flags, FLAG_FIELDS)
    for a in t.graded:
        plot_assignment(t, a, out / f"{a}.png")
    (out / "report.md").write_text("\n".join(report_md(t, sandbox_enabled(cfg)) + similarity_md(out)))
    (out / "failures.md").write_text("\n".join(["# Why hidden tests failed", ""] + failures_md(t.failures)[2:]))
    return out


def cell_rows(rows: list[dict[str, Any]], order: dict[tuple[str, str, str], int]) -> list[dict[str, Any]]:
    """One row per graded cell (gradebook_rows grouped), in notebook order: pass rate, mean score."""
    cells: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        cells.setdefault((r["assignment"], r["notebook"], r["cell"]), []).append(r)
    out = []
    for key in sorted(cells, key=lambda k: (k[0], k[1], order.get(k, 0), k[2])):
        rs = cells[key]
        passed = sum(r["score"] >= r["max_score"] for r in rs)
        out.append({
            "assignment": key[0], "notebook": key[1], "cell": key[2], "points": rs[0]["max_score"],
            "submissions": len(rs), "passed": passed, "pass_rate": passed / len(rs),
            "mean_score": statistics.fmean(r["score"] for r in rs),
        })
    return out


def assignment_rows(overview: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per assignment, from its submissions (a missing one is not a 0): ASSIGNMENT_FIELDS."""
    out = []
    for a in overview["assignments"]:
        scores = [v["final"] for (_s, aa), v in overview["submissions"].items() if aa == a["name"]]
        stats = ({"mean": statistics.fmean(scores), "median": float(statistics.median(scores)),
                  "min": min(scores), "max": max(scores)} if scores
                 else dict.fromkeys(("mean", "median", "min", "max"), ""))
        out.append({"assignment": a["name"], "max_score": a["max_score"], "submissions": len(scores),
                    "missing": len(overview["students"]) - len(scores), **stats})
    return out


def student_rows(overview: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per student: the final score of each assignment ("" when missing), total, missing."""
    names = [a["name"] for a in overview["assignments"]]
    totals = {k: v["final"] for k, v in overview["submissions"].items()}
    out = []
    for st in overview["students"]:
        s = st["id"]
        row: dict[str, Any] = {"student": s}
        for a in names:
            row[a] = totals.get((s, a), "")
        row["total"] = sum(v for v in (totals.get((s, a)) for a in names) if v is not None)
        row["missing"] = sum((s, a) not in totals for a in names)
        out.append(row)
    return out


def plot_assignment(t: Tables, assignment: str, path: Path) -> None:
    """path: the pass rate per graded cell and the histogram of scores of one assignment."""
    # matplotlib is imported only here: it is slow to import, and its Agg backend must be chosen first
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use("Agg"): the backend is chosen before pyplot loads
    from matplotlib.ticker import MaxNLocator

    crs = [c for c in t.cells if c["assignment"] == assignment]
    scores = t.scores(assignment)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, max(3.0, 0.35 * len(crs) + 1.5)))
    ax1.barh(range(len(crs)), [100 * c["pass_rate"] for c in crs], color="tab:blue")
    ax1.set_yticks(range(len(crs)), [c["cell"] for c in crs], fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlim(0, 100)
    ax1.set_xlabel("students passing (%)")
    ax1.set_title("pass rate per graded cell")
    top = next(a["max_score"] for a in t.overview["assignments"] if a["name"] == assignment) or 1.0
    ax2.hist(scores, bins=min(20, max(5, len(scores))), range=(0, top), color="tab:orange", edgecolor="black")
    ax2.set_xlabel(f"score (out of {top:g})")
    ax2.set_ylabel("students")
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_title("scores")
    fig.suptitle(f"{assignment}: {len(scores)} submission(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report_md(t: Tables, sandboxed: bool = True) -> list[str]:
    """report.md's lines, up to its similarity section."""
    md = ["# Grade report", ""]
    if not sandboxed:
        md += [f"**Warning: {UNSANDBOXED}.**", ""]
    md += [f"{len(t.overview['students'])} student(s), {len(t.names)} assignment(s). A cell passes at full points; "
           f"\"{MISSING}\" means nothing was handed in (a blank notebook handed in scores 0).", ""]
    md += ["## Assignments", "", _md_table(t.assignments, ASSIGNMENT_FIELDS), ""]
    for a in t.graded:
        md += [f"## {a}", "", f"![{a}]({a}.png)", "",
               _md_table([c for c in t.cells if c["assignment"] == a],
                         ["notebook", "cell", "points", "submissions", "passed", "pass_rate", "mean_score"]), ""]
    shown = [{k: (MISSING if v == "" else v) for k, v in r.items()} for r in t.students]
    md += ["## Students", "", "Scores after late penalties.", "",
           _md_table(shown, ["student", *t.names, "total", "missing"]), ""]
    md += ["## Hidden tests per student", "", "Also in tests.csv.", "",
           _md_table(t.tests, ["student", *t.test_columns]) if t.tests else "(none)", ""]
    md += failures_md(t.failures)
    md += ["## Late submissions", ""]
    md += [_md_table(t.late, LATE_FIELDS) if t.late else "(none)", ""]
    md += ["## Flags for a human look", ""]
    md += [_md_table(t.flags, ["student", "assignment", "cell", "flag", "match"]) if t.flags else "(none)", ""]
    return md  # similarity_md comes last: `make similarity` rewrites that section


def failures_md(failures: list[dict[str, Any]]) -> list[str]:
    """The grouped failure reasons as a Markdown section (report.md and failures.md)."""
    md = ["## Why hidden tests failed", ""]
    if not failures:
        return md + ["No hidden test failed.", ""]
    md += ["Each line: the kind of reason, the hidden test cell, how many students, who.", ""]
    for f in failures:
        who = ", ".join(f["students"][:12]) + (", ..." if len(f["students"]) > 12 else "")
        md.append(f"- **{f['kind']}** in {f['assignment']}:{f['cell']}: {f['count']} student(s) ({who})")
        md.append(f"  e.g. {f['example']}")
    return md + [""]

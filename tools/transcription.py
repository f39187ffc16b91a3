"""How much of the graded work a student could copy: one row per graded task of every assignment.

For each hidden test cell (grade_id hidden_<name>), and each markdown cell graded by hand, this measures
whether the solution of <name> is printed somewhere a student can read it:

- the chapter the assignment goes with (book/<chapter>.md);
- the assignment's own text (every cell of assignments/<id>/<id>.md outside the solution blocks);
- the installed cnnlib source (cnnlib/*.py, which a student can open).

The measure is the share of the solution's lines found verbatim in that source, whitespace ignored: a line
counts when it has at least MIN_CHARS characters once its whitespace and trailing comment are removed and
is not boilerplate that every solution shares (BOILERPLATE: a loop header over a range, `return name`,
unpacking a shape, `with torch.no_grad():`), and it is found when it occurs, so normalised, in the source
so normalised. A task is *transcription* when half
or more of its lines are found in one source (SHARE), or when the assignment's classification says that the
solution is printed in another form (a `copied_from` reason: the same formula in words, another variable name).

The classification lives in one place, each assignment's answers.toml (instructor-only, never published):

    [tasks.<name>]
    kind = "implementation" | "derivation" | "conceptual" | "experiment" | "written"
    tests = "what the task tests, in a few words"
    copied_from = "where and in what form its solution is printed"   # optional: the manual override
    printed = "what is printed that is not its solution (a special case)"  # optional, shown in the table

    python tools/transcription.py             # the markdown table and the shares of points
    python tools/transcription.py --json      # the same rows as JSON
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIN_CHARS = 8  # shorter lines (`return Y`, `else:`) say nothing about where the code came from
SHARE = 0.5  # half the lines found in one source: a copy
KINDS = ("implementation", "derivation", "conceptual", "experiment", "written")
CATEGORIES = ("transcription", "derivation", "experiment+written", "conceptual", "implementation")
_BEGIN, _END = "### BEGIN SOLUTION", "### END SOLUTION"
# Lines (normalised) that say nothing about where a solution came from.
BOILERPLATE = re.compile(r"for\w+inrange\(\w+\):|for_inrange\(\w+\):|return\w+(\.detach\(\))?|"
                         r"[\w,]+=\w+\.shape(\[[^]]*\])?|withtorch\.no_grad\(\):|\w+\.backward\(\)")


class Task(NamedTuple):
    assignment: str
    name: str
    points: float
    kind: str
    tests: str
    shares: dict  # source -> share of the solution's lines found there
    copied_from: str  # the override's reason, or ""
    printed: str  # what of it is printed without being its solution (a special case, the idea), or ""

    @property
    def sources(self) -> list[str]:
        found = [f"{src} ({share:.0%} of lines)" for src, share in self.shares.items() if share >= SHARE]
        if self.copied_from:
            found.append(self.copied_from)
        return found

    @property
    def category(self) -> str:
        if self.sources:
            return "transcription"
        return "experiment+written" if self.kind in ("experiment", "written") else self.kind


def normalise(line: str) -> str:
    """A line without its whitespace and its trailing comment (a `#` after code, outside quotes)."""
    code = line
    if "#" in line and not re.search(r"['\"][^'\"]*#", line):
        code = line.split("#", 1)[0]
    return re.sub(r"\s+", "", code)


def solution_lines(source: str) -> list[str]:
    """The substantive lines between the solution markers, normalised."""
    out, inside = [], False
    for line in source.splitlines():
        if line.strip() == _BEGIN:
            inside = True
        elif line.strip() == _END:
            inside = False
        elif inside:
            norm = normalise(line)
            if len(norm) >= MIN_CHARS and not norm.startswith("#") and not BOILERPLATE.fullmatch(norm):
                out.append(norm)
    return out


def without_solutions(source: str) -> str:
    keep, inside = [], False
    for line in source.splitlines():
        if line.strip() == _BEGIN:
            inside = True
        elif line.strip() == _END:
            inside = False
        elif not inside:
            keep.append(line)
    return "\n".join(keep)


def flat_text(text: str) -> str:
    return "\n".join(normalise(line) for line in text.splitlines())


def share_in(lines: list[str], text: str) -> float:
    if not lines:
        return 0.0
    return sum(line in text for line in lines) / len(lines)


def _cells(path: Path) -> list:
    import jupytext

    return jupytext.read(path).cells


def assignment_tasks(root: Path, aid: str, chapter: str, cnnlib_text: str) -> list[Task]:
    path = root / "assignments" / aid / f"{aid}.md"
    cells = _cells(path)
    answers_file = path.with_name("answers.toml")
    meta = tomllib.loads(answers_file.read_text(encoding="utf-8")).get("tasks", {}) if answers_file.is_file() else {}
    texts = {
        "chapter": flat_text((root / chapter).read_text(encoding="utf-8")),
        "task text": flat_text("\n".join(without_solutions(cell.source) for cell in cells)),
        "cnnlib source": cnnlib_text,
    }
    solutions = {cell.metadata.get("nbgrader", {}).get("grade_id"): cell.source for cell in cells
                 if cell.metadata.get("nbgrader", {}).get("solution")}
    tasks, last_solution = [], ""
    for cell in cells:
        nb = cell.metadata.get("nbgrader", {})
        if nb.get("solution"):
            last_solution = cell.source
        gid = str(nb.get("grade_id", ""))
        by_hand = cell.cell_type == "markdown" and nb.get("grade") and nb.get("solution")
        if not (by_hand or (nb.get("grade") and gid.startswith("hidden_"))):
            continue
        name = gid.removeprefix("hidden_")
        # a cell graded by hand is its own answer: a student's prose, which no source prints
        lines = [] if by_hand else solution_lines(solutions.get(name, last_solution))
        info = meta.get(name, {})
        tasks.append(Task(aid, name, float(nb.get("points", 0)), str(info.get("kind", "unclassified")),
                          str(info.get("tests", "")), {src: share_in(lines, text) for src, text in texts.items()},
                          str(info.get("copied_from", "")), str(info.get("printed", ""))))
    return tasks


def course_tasks(root: Path = ROOT) -> list[Task]:
    course = tomllib.loads((root / "course.toml").read_text(encoding="utf-8"))
    cnnlib_text = flat_text("\n".join(p.read_text(encoding="utf-8") for p in sorted((root / "cnnlib").glob("*.py"))))
    tasks = []
    for entry in course["assignment"]:
        tasks += assignment_tasks(root, entry["id"], entry["chapter"], cnnlib_text)
    return tasks


def shares(tasks: list[Task]) -> dict[str, float]:
    total = sum(t.points for t in tasks) or 1.0
    return {cat: sum(t.points for t in tasks if t.category == cat) / total for cat in CATEGORIES}


def _num(v: float) -> str:
    return str(int(v)) if v == int(v) else f"{v:g}"


def table(tasks: list[Task]) -> str:
    rows = ["| task | points | what it tests | category | could be copied from |", "|---|---|---|---|---|"]
    for t in tasks:
        where = "; ".join(t.sources) or (f"nowhere as graded ({t.printed})" if t.printed else "nowhere")
        rows.append(f"| {t.assignment[:2]} `{t.name}` | {_num(t.points)} | {t.tests or '?'} | {t.category} | "
                    f"{where} |")
    total = sum(t.points for t in tasks)
    lines = ["", f"Shares of the {_num(total)} points:", ""]
    for cat, share in shares(tasks).items():
        points = sum(t.points for t in tasks if t.category == cat)
        lines.append(f"- {cat}: {_num(points)} points, {share:.1%}")
    unclassified = [t.name for t in tasks if t.kind == "unclassified"]
    if unclassified:
        lines.append(f"- unclassified (no [tasks.<name>] in answers.toml): {', '.join(unclassified)}")
    return "\n".join(rows + lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    tasks = course_tasks()
    if args.json:
        print(json.dumps([{**t._asdict(), "category": t.category, "sources": t.sources} for t in tasks], indent=1))
    else:
        print(table(tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())

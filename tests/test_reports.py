"""The instructor's analytics (cnngrader/pipeline/report.py) and the exports of `make grade`,
from one small class graded through the real nbgrader pipeline (sandboxed):

- "ghost" is on the roster and handed in nothing; "blank" handed in the untouched exercise;
- "conv1" and "conv2" wrote corr2d with F.conv2d (conv2's convolve2d cell also loops forever);
- "late" handed in the reference solution after the due date, with nbgrader's "zero" penalty;
- "conv1" also handed in 01_fc_to_conv, which nobody else did.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbtools import total, with_cells, write_submissions
from traitlets.config import Config

from cnngrader.pipeline.grade import course_config, generate, grade_course, solution_submission, summary
from cnngrader.pipeline.kernel_start import stop_zygote

pytestmark = pytest.mark.slow

AID, OTHER = "02_cross_correlation", "01_fc_to_conv"
TIMEOUT = 5  # seconds per cell: conv2's endless loop costs this much
DUE, HANDED_IN = "2026-01-10 12:00:00 UTC", "2026-01-12 12:00:00 UTC"  # two days late
TORCH_CONV = ("import torch.nn.functional as F\n\ndef corr2d(X, K):\n"
              "    return F.conv2d(X[None, None], K[None, None])[0, 0]\n")
ROSTER = ("id,first_name,last_name,lms_user_id,sis_user_id,section\n"
          "conv1,Ada,Lovelace,9001,S-1,Sec A\n"
          "ghost,Grace,Hopper,9002,S-2,Sec B\n")


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    generate([AID, OTHER], root, build_sources=False, release_directory=root / "release")
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        gb.update_or_create_assignment(AID, duedate=DUE)
    sol = solution_submission(AID, root / "release")
    blank = nbformat.read(root / "release" / AID / f"{AID}.ipynb", as_version=4)
    conv2 = with_cells(sol, corr2d=TORCH_CONV)
    conv2 = with_cells(conv2, convolve2d="while True:\n    pass\n")
    write_submissions(root, {
        "blank": {AID: blank},
        "conv1": {AID: with_cells(sol, corr2d=TORCH_CONV), OTHER: solution_submission(OTHER, root / "release")},
        "conv2": {AID: conv2},
        "late": {AID: sol},
    })
    (root / "submitted" / "late" / AID / "timestamp.txt").write_text(HANDED_IN)
    (root / "roster.csv").write_text(ROSTER)
    cfg = Config()
    cfg.Execute.timeout = TIMEOUT
    cfg.GradingExecute.unresponsive_grace = 3.0
    cfg.LateSubmissionPlugin.penalty_method = "zero"  # nbgrader's: a late submission scores 0
    result = grade_course(root, config=cfg)
    stop_zygote()
    yield SimpleNamespace(root=root, result=result, reports=root / "reports")


def test_graded_without_failures(graded):
    assert graded.result.failures == []
    assert sorted(graded.result.submissions) == [("blank", AID), ("conv1", OTHER), ("conv1", AID),
                                                 ("conv2", AID), ("late", AID)]


def test_missing_and_blank_differ_in_every_export(graded):
    grades = {(r["student_id"], r["assignment"]): r for r in read_csv(graded.root / "grades.csv")}
    assert grades[("ghost", AID)]["status"] == "missing" and grades[("ghost", AID)]["score"] == ""
    assert grades[("blank", OTHER)]["status"] == "missing" and grades[("blank", OTHER)]["raw_score"] == ""
    assert grades[("blank", AID)]["status"] == "submitted" and float(grades[("blank", AID)]["score"]) == 0
    students = {r["student"]: r for r in read_csv(graded.reports / "students.csv")}
    assert students["ghost"][AID] == "" and students["ghost"]["missing"] == "2"
    assert float(students["blank"][AID]) == 0 and students["blank"][OTHER] == ""
    assert students["blank"]["missing"] == "1"
    canvas = {r["Student"]: r for r in csv.DictReader(io.StringIO((graded.reports / "canvas.csv").read_text()))}
    assert canvas["Hopper, Grace"][AID] == "" and canvas["blank"][AID] == "0"
    md = (graded.reports / "report.md").read_text()
    ghost_row = next(line for line in md.splitlines() if line.startswith("| ghost |"))
    col = 2 + sorted([AID, OTHER]).index(AID)  # | student | 01_fc_to_conv | 02_cross_correlation | ...
    assert ghost_row.split("|")[col].strip() == "missing"
    blank_row = next(line for line in md.splitlines() if line.startswith("| blank |"))
    assert blank_row.split("|")[col].strip() == "0.00"
    assignments = {r["assignment"]: r for r in read_csv(graded.reports / "assignments.csv")}
    assert assignments[AID]["submissions"] == "4" and assignments[AID]["missing"] == "1"
    assert assignments[OTHER]["submissions"] == "1" and assignments[OTHER]["missing"] == "4"


def test_student_by_test_table(graded):
    rows = {r["student"]: r for r in read_csv(graded.reports / "tests.csv")}
    assert set(rows) == {"blank", "conv1", "conv2", "ghost", "late"}
    hidden = [k for k in rows["ghost"] if k != "student"]
    assert f"{AID}:hidden_corr2d" in hidden and all(k.split(":")[0] in (AID, OTHER) for k in hidden)
    assert {rows["ghost"][k] for k in hidden} == {"missing"}
    assert {rows["blank"][k] for k in hidden if k.startswith(AID)} == {"fail"}
    assert {rows["late"][k] for k in hidden if k.startswith(AID)} == {"pass"}  # the cells pass; the penalty is apart
    assert rows["conv1"][f"{AID}:hidden_corr2d"] == "fail"
    assert {rows["conv1"][k] for k in hidden if k.startswith(OTHER)} == {"pass"}
    assert f"| {AID}:hidden_corr2d |" in (graded.reports / "report.md").read_text().replace("| student | ", "| ")


def test_failure_reasons_are_grouped_across_the_class(graded):
    rows = read_csv(graded.reports / "failures.csv")
    conv = [r for r in rows if r["cell"] == "hidden_corr2d" and "conv2d" in r["kind"]]
    assert len(conv) == 1, rows
    assert conv[0]["kind"].startswith("corr2d ") and conv[0]["count"] == "2"
    assert conv[0]["students"].split() == ["conv1", "conv2"]
    assert "(at" not in conv[0]["kind"] and ":" not in conv[0]["kind"]
    blank = [r for r in rows if r["students"] == "blank" and r["cell"] == "hidden_corr2d"]
    assert [r["kind"] for r in blank] == ["corr2d raised NotImplementedError"]
    for text in ((graded.reports / "failures.md").read_text(), (graded.reports / "report.md").read_text()):
        line = next(line for line in text.splitlines() if conv[0]["kind"] in line)
        assert "2 student(s)" in line and "conv1, conv2" in line


def test_late_submissions_with_their_penalties(graded):
    late = read_csv(graded.reports / "late.csv")
    assert [(r["student"], r["assignment"]) for r in late] == [("late", AID)]
    assert float(late[0]["hours_late"]) == pytest.approx(48.0)
    full = total(AID)  # late handed in the solution: all of it is the penalty
    assert float(late[0]["raw_score"]) == full and float(late[0]["penalty"]) == full and float(late[0]["score"]) == 0
    grades = {(r["student_id"], r["assignment"]): r for r in read_csv(graded.root / "grades.csv")}
    assert float(grades[("late", AID)]["late_submission_penalty"]) == full
    assert "## Late submissions" in (graded.reports / "report.md").read_text()


def test_canvas_gradebook_import_format(graded):
    lines = (graded.reports / "canvas.csv").read_text().splitlines()
    assert lines[0] == f"Student,ID,SIS User ID,Section,{OTHER},{AID}"
    assert lines[1] == f"Points Possible,,,,{total(OTHER):g},{total(AID):g}"
    rows = list(csv.reader(lines[2:]))
    assert ["Lovelace, Ada", "9001", "S-1", "Sec A"] == rows[[r[0] for r in rows].index("Lovelace, Ada")][:4]
    names = [r[0] for r in rows]
    assert sorted(names) == sorted(["Lovelace, Ada", "Hopper, Grace", "blank", "conv2", "late"])
    late = rows[names.index("late")]
    assert late[1:4] == ["", "", ""] and late[5] == "0"  # after the late penalty


def test_names_come_from_the_roster_never_none(graded):
    from nbgrader.api import Gradebook

    with Gradebook(course_config(graded.root).CourseDirectory.db_url) as gb:
        names = {s.id: (s.last_name, s.first_name, s.lms_user_id) for s in gb.students}
    assert names["conv1"] == ("Lovelace", "Ada", "9001") and names["ghost"] == ("Hopper", "Grace", "9002")
    assert names["blank"][:2] == ("blank", "")  # no roster entry: the id, not None
    for path in (graded.root / "grades.csv", *graded.reports.glob("*.csv")):
        fields = [f for row in csv.reader(io.StringIO(path.read_text())) for f in row]
        assert "None" not in fields and "None, None" not in fields, path
    assert "None, None" not in (graded.reports / "report.md").read_text()


def test_feedback_wraps_long_reasons(graded):
    page = graded.root / "feedback" / "conv1" / AID / f"{AID}.html"
    soup = BeautifulSoup(page.read_text(), "html.parser")
    reasons = [pre for pre in soup.find_all("pre") if "GradingError" in pre.get_text()]
    assert reasons and all(len(line) > 100 for pre in reasons for line in pre.get_text().strip().splitlines()[:1])
    style = soup.find("style", id="cnngrader-wrap")
    assert style is not None and "white-space: pre-wrap" in style.string
    selectors = style.string.split("{")[0].split(",")
    wrapped = {id(pre) for sel in selectors for pre in soup.select(sel.strip())}
    assert all(id(pre) in wrapped for pre in reasons), "a failure reason's <pre> is not matched by the wrap rule"


def test_timeout_message_says_the_limit(graded):
    nb = nbformat.read(graded.root / "autograded" / "conv2" / AID / f"{AID}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "convolve2d")
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert any(f"exceeded the {TIMEOUT} s limit per cell" in o.evalue for o in errors), errors


def test_summary_prints_each_notebook_time(graded):
    text = summary(graded.result)
    for sid, aid in graded.result.submissions:
        line = next(line for line in text.splitlines() if line.split()[:2] == [sid, aid])
        assert float(line.split()[2]) > 0
    assert "per notebook, " not in text  # no average in place of the times

"""Incremental `make grade`: only new or changed submissions are graded (cnngrader/pipeline/cache.py,
Cache), through the real nbgrader pipeline (sandboxed) on two students x two assignments.

One module-scoped sequence of runs on the same grading directory; each test checks one step:
first run, unchanged rerun (also through the command line), a changed notebook, a changed
assignment source, the STUDENT and ASSIGNMENT filters, and FORCE. The assignment digest covers the
assignment's folder (checks, answers) and the grader's code.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from conftest import REPO
from nbgrader.api import Gradebook

from cnngrader.pipeline import cache
from cnngrader.pipeline.grade import (
    assignment_digest,
    course_config,
    generate,
    grade_course,
    grader_files,
    make_submissions,
    read_state,
    summary,
)
from cnngrader.pipeline.kernel_start import stop_zygote

pytestmark = pytest.mark.slow

AIDS = ["01_fc_to_conv", "02_cross_correlation"]
STUDENTS = ["inc01", "inc02"]
ALL = sorted((s, a) for s in STUDENTS for a in AIDS)


def edit_notebook(path: Path, text: str) -> None:
    """Append a markdown cell: the submission's bytes change, its grade does not."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell(text))
    nbformat.write(nb, path)


def mtimes(root: Path) -> dict[tuple[str, str], int]:
    return {(s, a): (root / "autograded" / s / a / f"{a}.ipynb").stat().st_mtime_ns for s, a in ALL}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("incremental")
    source = root / "source"  # a copy of solutions/, so that a test can change an assignment's source
    for aid in AIDS:
        shutil.copytree(REPO / "solutions" / aid, source / aid)
    generate(AIDS, root, build_sources=False, release_directory=root / "release", source_directory=source)
    make_submissions(root, count=2, assignments=AIDS, prefix="inc", release=root / "release")

    def grade(**kw):
        return grade_course(root, source_directory=source, **kw)

    out = SimpleNamespace(root=root)
    out.first = grade()
    out.first_mtimes = mtimes(root)
    out.second = grade()
    out.second_mtimes = mtimes(root)
    # the same unchanged run through the command line `make grade` calls
    out.cli = subprocess.run([sys.executable, "-m", "cnngrader.pipeline", "grade", "--root", str(root)], cwd=REPO,
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, "CNNGRADER_COURSE": str(REPO)})
    edit_notebook(root / "submitted" / "inc01" / AIDS[1] / f"{AIDS[1]}.ipynb", "changed after grading")
    with Gradebook(course_config(root).CourseDirectory.db_url) as gb:  # a TA's manual grade: new feedback
        gb.find_grade("hidden_corr2d", AIDS[1], AIDS[1], "inc02").manual_score = 1.0
        gb.db.commit()
    out.changed = grade()
    edit_notebook(source / AIDS[0] / f"{AIDS[0]}.ipynb", "the instructor reworded the assignment")
    out.source = grade()
    for sid in STUDENTS:
        edit_notebook(root / "submitted" / sid / AIDS[0] / f"{AIDS[0]}.ipynb", "second change")
    out.student = grade(students=["inc02"])
    out.assignment = grade(assignments=[AIDS[0]])
    out.force = grade(force=True)
    stop_zygote()
    return out


def test_first_run_grades_everything(runs):
    assert runs.first.failures == [] and sorted(runs.first.submissions) == ALL and runs.first.up_to_date == []
    state = read_state(course_config(runs.root))
    assert sorted(state) == [f"{s}/{a}" for s, a in ALL]


def test_unchanged_rerun_grades_nothing_and_keeps_the_results(runs):
    second = runs.second
    assert second.failures == [] and second.submissions == [] and sorted(second.up_to_date) == ALL
    assert runs.second_mtimes == runs.first_mtimes  # the autograded notebooks were kept, not rewritten
    assert "nothing graded" in summary(second) and "up to date, kept: 4" in summary(second)
    assert second.feedback == [] and sorted(runs.first.feedback) == ALL  # unchanged grades: feedback kept
    assert second.seconds["execute"] < 1.0 < runs.first.seconds["execute"]
    for s, a in ALL:  # feedback, grades.csv and reports/ are still written for everyone
        assert (runs.root / "feedback" / s / a / f"{a}.html").is_file()
    assert len((runs.root / "grades.csv").read_text().splitlines()) == 1 + len(ALL)
    assert len((runs.root / "reports" / "students.csv").read_text().splitlines()) == 1 + len(STUDENTS)


def test_unchanged_rerun_on_the_command_line(runs):
    assert runs.cli.returncode == 0, runs.cli.stdout + runs.cli.stderr
    out = runs.cli.stdout + runs.cli.stderr
    assert "nothing graded" in out and "up to date, kept: 4 notebook(s)" in out


def test_the_summary_ends_with_the_rate_and_a_log_gets_no_bar(runs):
    rate = re.compile(r"  (\d+) notebook\(s\) in [0-9.]+ s: [0-9.]+ notebooks per minute")
    last = rate.fullmatch(summary(runs.first).splitlines()[-1])
    assert last and last.group(1) == "4"
    cli = runs.cli.stderr.rstrip().splitlines()[-1]  # the command line's stderr is a pipe, not a terminal
    assert rate.fullmatch(cli) and cli.startswith("  0 notebook(s)"), runs.cli.stderr
    assert "\r" not in runs.cli.stderr and "%|" not in runs.cli.stderr  # no progress bar in a log


def test_a_changed_notebook_is_regraded(runs):
    assert runs.changed.failures == []
    assert runs.changed.submissions == [("inc01", AIDS[1])]
    assert runs.changed.feedback == [("inc01", AIDS[1]), ("inc02", AIDS[1])]  # regraded, manually graded
    assert sorted(runs.changed.up_to_date) == [sa for sa in ALL if sa != ("inc01", AIDS[1])]


def test_a_changed_assignment_source_regrades_that_assignment(runs):
    assert runs.source.failures == []
    assert sorted(runs.source.submissions) == [(s, AIDS[0]) for s in STUDENTS]


@pytest.mark.parametrize("changed", ["checks.py", "answers.toml"])
def test_a_changed_checks_module_or_answer_changes_the_assignment_digest(tmp_path, changed):
    """The digest covers course_root/assignments/<id>/ (what grades the hidden cells)."""
    cfg = course_config(tmp_path)
    shutil.copytree(REPO / "assignments" / AIDS[1], tmp_path / "course" / "assignments" / AIDS[1])
    cfg.GradingExecute.course_root = str(tmp_path / "course")
    before = assignment_digest(cfg, AIDS[1])
    assert assignment_digest(cfg, AIDS[1]) == before
    with open(tmp_path / "course" / "assignments" / AIDS[1] / changed, "a") as fh:
        fh.write("\n# a changed check\n")
    assert assignment_digest(cfg, AIDS[1]) != before
    assert assignment_digest(cfg, AIDS[0]) != before


def test_the_digest_covers_the_grader_and_the_reference_library(tmp_path, monkeypatch):
    cfg = course_config(tmp_path)
    names = {name for name, _ in grader_files(cfg)}
    assert {"cnngrader/grading/core.py", "cnngrader/kernel/guard.py", "cnngrader/pipeline/execute.py",
            "cnnlib/ops.py", "cnnlib/layers.py", "nbgrader_config.py"} <= names
    assert not any("__pycache__" in name for name in names)
    before = assignment_digest(cfg, AIDS[0])
    fake = tmp_path / "core.py"
    fake.write_text("CHANGED = 1\n")
    real = cache.grader_files
    monkeypatch.setattr(cache, "grader_files", lambda c: [(n, fake if n == "cnngrader/grading/core.py" else p)
                                                           for n, p in real(c)])
    assert assignment_digest(cfg, AIDS[0]) != before


def test_student_and_assignment_filters(runs):
    assert runs.student.submissions == [("inc02", AIDS[0])]  # inc01's change waits for its own run
    assert sorted(runs.student.up_to_date) == [("inc02", AIDS[1])]
    assert runs.assignment.submissions == [("inc01", AIDS[0])]
    assert sorted(runs.assignment.up_to_date) == [("inc02", AIDS[0])]


def test_force_regrades_all(runs):
    assert runs.force.failures == [] and sorted(runs.force.submissions) == ALL and runs.force.up_to_date == []


def test_make_grade_passes_the_variables():
    cmd = ["make", "-n", "grade", "STUDENT=alice,bob", "ASSIGNMENT=02_cross_correlation", "FORCE=1", "JOBS=2",
           "PROGRESS=log"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60).stdout.replace("\\\n", " ")
    line = next(line for line in out.splitlines() if "cnngrader.pipeline grade" in line)
    assert "--force" in line and '--student "alice,bob"' in line and line.rstrip().endswith("02_cross_correlation")
    assert "--jobs 2" in line and "--progress log" in line
    plain = subprocess.run(["make", "-n", "grade"], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    assert "--force" not in plain and "--student" not in plain and "--progress" not in plain

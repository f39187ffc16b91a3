"""A JupyterHub course through nbgrader's exchange, as docs/instructors.md's "Running the course on JupyterHub"
describes it: the instructor releases and collects with the course's nbgrader_config.py, each student
runs nbgrader from a home of their own with the two-line student configuration, and `python -m
cnngrader.pipeline grade` (what `make grade` runs) grades in between, sandboxed.

Everything runs as one OS account here, for which nbgrader's student id would be that account's
name; so each student passes `--student NAME` to submit and fetch_feedback, nbgrader's own option for
naming the student (on a hub, each student is a user and needs no option). For the same reason
`collect` runs with `--ExchangeCollect.check_owner=False`: on a hub each entry must be owned by the
student its name claims (test_trusted_side.py checks that)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import REPO
from nbtools import points, total

from cnngrader.pipeline.grade import solution_submission

pytestmark = pytest.mark.slow

AID = "02_cross_correlation"
NBGRADER = str(Path(sys.executable).parent / "nbgrader")
NOISE = ("is not absolute", "SAWarning", "coalesce_streams", "Traceback")
STUDENT_CONFIG = 'c = get_config()\nc.CourseDirectory.course_id = "cnn"\nc.Exchange.root = "{root}"\n'


def run(args: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{out}"
    for noise in NOISE:
        assert noise not in out, f"{' '.join(args)} printed {noise!r}:\n{out}"
    return out


def clean_env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "NBGRADER", "CNNGRADER")) and k != "PYTHONPATH"}
    return {**env, "HOME": str(home), **extra}


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """The instructor's copy of the course: what grading needs (no submitted/, no gradebook)."""
    root = tmp_path_factory.mktemp("course")
    for name in ("course.toml", "nbgrader_config.py"):
        shutil.copy(REPO / name, root / name)
    for name in ("assignments", "solutions", "exercises"):
        shutil.copytree(REPO / name, root / name)
    return root


def test_release_fetch_submit_collect_grade_feedback(course, tmp_path):
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)  # as on a hub: every user writes to it
    instructor = clean_env(tmp_path / "instructor", NBGRADER_EXCHANGE=str(exchange))
    (tmp_path / "instructor").mkdir()

    out = run([NBGRADER, "release_assignment", AID], course, instructor)
    assert f"Released as: cnn {AID}" in out

    solved = solution_submission(AID, course / "exercises")
    homes = {}
    for student in ("alice", "bob"):
        home = homes[student] = tmp_path / student
        (home / ".jupyter").mkdir(parents=True)
        (home / ".jupyter" / "nbgrader_config.py").write_text(STUDENT_CONFIG.format(root=exchange))
        env = clean_env(home)
        run([NBGRADER, "fetch_assignment", AID], home, env)
        fetched = home / AID / f"{AID}.ipynb"
        nb = nbformat.read(fetched, as_version=4)
        if student == "alice":
            nb = solved  # everything solved
        else:  # bob solves corr2d only
            sol = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solved.cells
                   if c.metadata.get("nbgrader", {}).get("solution")}
            for c in nb.cells:
                if c.metadata.get("nbgrader", {}).get("grade_id") == "corr2d":
                    c.source = sol["corr2d"]
        nbformat.write(nb, fetched)
        run([NBGRADER, "submit", AID, "--student", student], home, env)

    # one OS account owns every submission here: the owner check is turned off, and collect says so
    out = run([NBGRADER, "collect", AID, "--ExchangeCollect.check_owner=False"], course, instructor)
    assert "Collecting submission: alice" in out and "Collecting submission: bob" in out
    assert "owners are not checked" in out
    for student in homes:
        assert (course / "submitted" / student / AID / "submission_secret.txt").is_file()
    # carol handed her notebook in by hand (an e-mail), under a browser's download name
    carol = course / "submitted" / "carol" / AID
    carol.mkdir(parents=True)
    nbformat.write(solved, carol / f"{AID} (1).ipynb")

    out = run([sys.executable, "-m", "cnngrader.pipeline", "grade", AID], course, instructor)
    assert "FAILED" not in out and "UNSANDBOXED" not in out, out

    grades = (course / "grades.csv").read_text().splitlines()
    score = {row.split(",")[3]: float(row.split(",")[9]) for row in grades[1:]}
    full, bob = total(AID), points(AID)["hidden_corr2d"]  # bob solved corr2d only
    assert score == {"alice": full, "bob": bob, "carol": full}

    # a feedback folder whose timestamp.txt went missing gets one from the submission's mtime
    (course / "feedback" / "bob" / AID / "timestamp.txt").unlink()
    out = run([NBGRADER, "release_feedback", AID], course, instructor)
    assert "Releasing feedback for student 'alice'" in out and "Releasing feedback for student 'bob'" in out
    assert re.search(r"bob/02_cross_correlation had no timestamp.txt: wrote \d{4}-", out), out
    assert "carol/02_cross_correlation was not submitted through the exchange" in out
    assert "Releasing feedback for student 'carol'" not in out

    for student, expected in (("alice", f"{full:.1f} / {full:.1f}"), ("bob", f"{bob:.1f} / {full:.1f}")):
        home = homes[student]
        run([NBGRADER, "fetch_feedback", AID, "--student", student], home, clean_env(home))
        html = list((home / AID / "feedback").glob(f"*/{AID}.html"))
        assert len(html) == 1, html
        assert f"Score: {expected}" in html[0].read_text()
    assert (course / "feedback" / "carol" / AID / f"{AID}.html").is_file()

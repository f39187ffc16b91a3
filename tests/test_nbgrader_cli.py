"""The plain nbgrader command line from a fresh clone, as docs/instructors.md's "The plain nbgrader
command line" shows it: its commands are read from that guide and run exactly as written, in a `git clone`
of this repository's HEAD (commit first) whose `.venv` is a link to the environment running the
tests. Then, through the same CLI: a notebook renamed by a browser download is graded, the
feedback of hand-placed submissions is released without a crash, `nbgrader export` tells a missing
submission from a blank one, and no command prints the noise nbgrader used to print with this
configuration."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import REPO
from nbtools import total
from test_docs import code_blocks

from cnngrader.pipeline.grade import solution_submission

pytestmark = pytest.mark.slow

AID = "02_cross_correlation"
GUIDE = REPO / "docs" / "instructors.md"
SECTION = "## The plain nbgrader command line"
NOISE = ("is not absolute", "SAWarning", "coalesce_streams", "Traceback")


def guide_commands() -> list[str]:
    """The command lines of the guide's first shell block in SECTION."""
    text = GUIDE.read_text()
    assert SECTION in text, f"{GUIDE.name} has no {SECTION!r} section"
    body = text.split(SECTION, 1)[1].split("\n#", 1)[0]
    blocks = [content for lang, content in code_blocks(body) if lang == "sh"]
    assert blocks, f"no commands in {GUIDE.name}'s {SECTION!r}"
    return [line for line in blocks[0].splitlines() if line.strip()]


def shell(cmd: str, cwd: Path, env: dict, ok: bool = True) -> str:
    proc = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    if ok:
        assert proc.returncode == 0, f"{cmd!r} failed ({proc.returncode}):\n{out}"
    return out


def grade_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def scores(clone: Path) -> dict[tuple[str, str], float]:
    """(assignment, student) -> score of each submitted row of grades.csv."""
    return {(r["assignment"], r["student_id"]): float(r["score"]) for r in grade_rows(clone / "grades.csv")
            if r["status"] == "submitted"}


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh clone of HEAD, the guide's commands run in it: (path, env, their outputs)."""
    base = tmp_path_factory.mktemp("cli")
    dest = base / "course"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(dest)], check=True)
    subprocess.run(["git", "checkout", "-q", "--detach", head], cwd=dest, check=True)
    (dest / ".venv").symlink_to(Path(sys.prefix))
    (base / "home").mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "NBGRADER", "CNNGRADER")) and k != "PYTHONPATH"}
    env["HOME"] = str(base / "home")
    outputs = {cmd: shell(cmd, dest, env) for cmd in guide_commands()}
    return dest, env, outputs


def test_guide_commands_work_from_a_fresh_clone(clone):
    dest, _, outputs = clone
    assert any("nbgrader autograde" in cmd for cmd in outputs), list(outputs)
    assert scores(dest) == {(AID, "alice"): total(AID)}  # the guide grades the solution
    assert (dest / "feedback" / "alice" / AID / f"{AID}.html").is_file()
    # generate_assignment regenerated exercises/ byte for byte: the clone is unchanged
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=dest,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status


def test_no_noise(clone):
    for cmd, out in clone[2].items():
        for noise in NOISE:
            assert noise not in out, f"{cmd!r} printed {noise!r}:\n{out}"


def test_renamed_notebook_is_graded_and_logged(clone):
    dest, env, _ = clone
    nb = solution_submission(AID, dest / "exercises", None)
    folder = dest / "submitted" / "bob" / AID
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{AID} (1).ipynb")
    out = shell(f".venv/bin/nbgrader autograde {AID} --student bob", dest, env)
    assert f"bob/{AID}: graded '{AID} (1).ipynb' as '{AID}.ipynb'" in out, out
    assert "did you forget" not in out
    for noise in NOISE:
        assert noise not in out, out
    shell(".venv/bin/nbgrader export", dest, env)
    assert scores(dest)[(AID, "bob")] == total(AID)


def test_release_feedback_of_hand_placed_submissions(clone, tmp_path):
    dest, env, _ = clone
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    out = shell(f".venv/bin/nbgrader release_feedback {AID}", dest, {**env, "NBGRADER_EXCHANGE": str(exchange)})
    assert f"alice/{AID} was not submitted through the exchange" in out, out
    assert str(dest / "feedback" / "alice" / AID) in out
    for noise in NOISE:
        assert noise not in out, out


def test_the_configuration_works_without_an_exchange(clone):
    dest, env, _ = clone
    env = {**env, "NBGRADER_EXCHANGE": str(dest / "no-such-exchange")}
    out = shell(".venv/bin/nbgrader db assignment list", dest, env)
    assert AID in out
    out = shell(f".venv/bin/nbgrader release_assignment {AID}", dest, env, ok=False)
    assert "no-such-exchange" in out  # the exchange commands say where they looked


def test_two_misnamed_notebooks_are_named_in_the_error(clone):
    dest, env, _ = clone
    nb = solution_submission(AID, dest / "exercises", None)
    folder = dest / "submitted" / "dave" / AID
    folder.mkdir(parents=True)
    for name in (f"{AID} (1).ipynb", f"{AID} (2).ipynb"):
        nbformat.write(nb, folder / name)
    out = shell(f".venv/bin/nbgrader autograde {AID} --student dave", dest, env, ok=False)
    assert (f"dave/{AID}: none of its 2 notebooks ({AID} (1).ipynb, {AID} (2).ipynb) is named {AID}.ipynb"
            in out), out
    assert not (dest / "autograded" / "dave").exists()


def test_export_tells_missing_from_submitted(clone):
    """`nbgrader export` writes make grade's grades.csv: a student who handed nothing in is "missing" with
    empty scores (nbgrader's own exporter writes 0.0); --to and --student work as in nbgrader."""
    dest, env, _ = clone
    shell(".venv/bin/nbgrader db student add carol --first-name Carol --last-name Cole", dest, env)
    out = shell(".venv/bin/nbgrader export --to all.csv", dest, env)
    for noise in NOISE:
        assert noise not in out, out
    rows = {r["student_id"]: r for r in grade_rows(dest / "all.csv") if r["assignment"] == AID}
    assert (rows["carol"]["status"], rows["carol"]["score"], rows["carol"]["raw_score"]) == ("missing", "", "")
    assert (rows["alice"]["status"], float(rows["alice"]["score"])) == ("submitted", total(AID))
    shell(".venv/bin/nbgrader export --to alice.csv --student alice", dest, env)
    assert {r["student_id"] for r in grade_rows(dest / "alice.csv")} == {"alice"}


def test_make_exercises_in_a_fresh_clone_changes_nothing(clone):
    """grading.md and instructors.md: in a fresh clone, `make exercises` rebuilds solutions/ and exercises/ as
    they are committed. -o: this environment counts as installed (the clone's .venv is a link to it)."""
    dest, env, _ = clone
    proc = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", "exercises"], cwd=dest, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=dest,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status

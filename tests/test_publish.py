"""`make publish DEST=...` (tools/publish.py): the student-facing course with its pre-submission checker,
and nothing secret.

The real repository is published into a temporary folder and searched for every solution and
hidden-test line of solutions/ (the leak detection of test_book.py), for nbgrader's markers, and for
the source of the grading pipeline and of the assignments. The published checker must work from there:
run from the published tree, and installed from it (a wheel, no source tree), on a solved and a blank
notebook. A small fake repository checks that grading modules still inside cnnlib/ and instructor
folders are left out.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT
from nbtools import cell, points, score_line, statuses
from test_book import MARKERS, secret_lines

sys.path.insert(0, str(ROOT / "tools"))
import publish

sys.path.pop(0)

GRADER_FILES = ("grading.py", "autograde.py")
# The checker, published on purpose: the kernel side and the checks of cnngrader, and each checks.py.
CHECKER = ("cnngrader/__init__.py", "cnngrader/cells.py", "cnngrader/check_verdict.py", "cnngrader/course.py",
           "cnngrader/kernel_rpc.py", "cnngrader/tolerances.py", "cnngrader/precheck.py",
           "cnngrader/kernel/__init__.py", "cnngrader/kernel/probes.py", "cnngrader/grading/__init__.py",
           "cnngrader/grading/core.py", "cnngrader/grading/runners.py", "cnngrader/grading/scan.py")
# Hidden-test lines that name a check and nothing more: the feedback shows them, the README documents them.
CALL_LINE = re.compile(r"""from cnngrader\.grading import check|check\((['"])\w+\1, \w+\)""")
AID = "02_cross_correlation"
POINTS = points(AID)  # grade_id -> points, from the solution's nbgrader metadata


def checked_when_graded() -> set[str]:
    """The graded cells of AID whose answers are in the secret answers file: published without it, the
    checker can check only their form, and reports them "checked when graded"."""
    from cnngrader.grading import core

    known = core.answers(str(ROOT / "assignments" / AID / "checks.py")) or {}
    return {gid for gid in POINTS if gid.removeprefix("hidden_") in known}


def run_publish(dest: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "publish.py"), str(dest), *extra],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    dest = tmp_path_factory.mktemp("published") / "course"
    proc = run_publish(dest)
    assert proc.returncode == 0, proc.stderr
    return dest, proc.stdout


def test_publish_says_what_it_published(published):
    dest, out = published
    assert out.startswith("published book (") and out.rstrip().endswith(f"into {dest}")
    for name in ("exercises", "cnnlib", "requirements.txt", "binder"):
        assert name in out


def test_published_tree_is_the_student_course(published):
    dest, _ = published
    for path in ("book/06_lenet.md", "book/_ext/course_site.py", "_config.yml", "_toc.yml", "references.bib",
                 "requirements.txt", "pyproject.toml", "LICENSE", "README.md", "cnnlib/ops.py", "cnnlib/data.py"):
        assert (dest / path).is_file(), path
    for assignment in ("01_fc_to_conv", "06_lenet"):
        assert (dest / "exercises" / assignment / f"{assignment}.ipynb").is_file()
        # the checker: each assignment's checks, also bundled in the package with the release notebooks
        assert (dest / "assignments" / assignment / "checks.py").is_file()
        assert (dest / "cnngrader" / "_course" / "assignments" / assignment / "checks.py").is_file()
        assert (dest / "cnngrader" / "_course" / "exercises" / assignment / f"{assignment}.ipynb").is_file()
    for path in CHECKER:
        assert (dest / path).read_bytes() == (ROOT / path).read_bytes(), path
    assert (dest / "cnngrader" / "_course" / "course.toml").read_bytes() == (ROOT / "course.toml").read_bytes()
    # Binder installs the requirements, then cnnlib itself.
    assert "-r ../requirements.txt" in (dest / "binder" / "requirements.txt").read_text()
    postbuild = dest / "binder" / "postBuild"
    assert "pip install --no-deps -e ." in postbuild.read_text() and postbuild.stat().st_mode & 0o111


def test_published_tree_holds_nothing_secret(published):
    dest, _ = published
    names = {p.relative_to(dest).as_posix() for p in dest.rglob("*")}
    for secret in ("solutions", "cnngrader/pipeline", "gradebook.db", "submitted", "autograded", "feedback",
                   "reports", "tests", "nbgrader_config.py", "Makefile", ".git"):
        assert secret not in names, secret
    assert not [n for n in names if "pipeline" in Path(n).parts], "the grading pipeline was published"
    assert not [n for n in names if Path(n).name == "answers.toml"], "an answers file was published"
    sources = [n for n in names if n.startswith(("assignments/", "cnngrader/_course/assignments/"))
               and not n.endswith(("/checks.py", "/assignments")) and Path(n).suffix]
    assert not sources, f"assignment sources were published: {sources}"
    grader = [n for n in names if Path(n).name in GRADER_FILES or Path(n).name.startswith("_autograde_")]
    assert not grader, f"the grader was published: {grader}"

    secret = {line for line in secret_lines() if not CALL_LINE.fullmatch(line)}
    # The pipeline's source and the assignments' sources (and any answers) must not be published either.
    private = [*(ROOT / "cnngrader" / "pipeline").rglob("*.py"), *(ROOT / "assignments").glob("*/*.md"),
               *(ROOT / "assignments").glob("*/answers.toml")]
    grader_lines = set()
    for path in private:
        grader_lines |= {line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                         if len(line.strip()) >= 40 and not line.strip().startswith(("#", '"', "import", "from"))}
    public = [*(ROOT / "cnnlib").glob("*.py"), *(ROOT / "exercises").glob("*/*.ipynb"),
              *(ROOT / path for path in CHECKER), *(ROOT / "assignments").glob("*/checks.py"),
              *(ROOT / "cnngrader" / "kernel").glob("*.py"), *(ROOT / "cnngrader" / "grading").glob("*.py")]
    published_text = "\n".join(path.read_text(encoding="utf-8") for path in public if not publish.excluded(path))
    grader_lines = {line for line in grader_lines if line not in published_text}  # shared idioms say nothing
    assert grader_lines, "found no pipeline or source lines to look for"
    leaks = []
    for path in dest.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        leaks += [f"{path.relative_to(dest)}: marker {m!r}" for m in MARKERS if m in text]
        leaks += [f"{path.relative_to(dest)}: {line!r}" for line in secret if line in text]
        leaks += [f"{path.relative_to(dest)}: grader line {line!r}" for line in grader_lines if line in text]
    assert not leaks, "secret content in the published course:\n" + "\n".join(leaks[:50])


def test_publish_refuses_to_write_what_must_never_be_published(tmp_path):
    (tmp_path / "cnngrader" / "pipeline").mkdir(parents=True)
    (tmp_path / "assignments" / "q").mkdir(parents=True)
    for rel in ("cnngrader/pipeline/grade.py", "assignments/q/q.md", "assignments/q/answers.toml",
                "assignments/q/checks.py", "exercises/q/q.ipynb"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert publish.never_published(tmp_path) == ["assignments/q/answers.toml", "assignments/q/q.md",
                                                 "cnngrader/pipeline", "cnngrader/pipeline/grade.py"]


def blank_and_solved(folder: Path) -> tuple[Path, Path]:
    """The released notebook as handed out, and the same with the solutions filled in, outside any course."""
    release = nbformat.read(ROOT / "exercises" / AID / f"{AID}.ipynb", as_version=4)
    source = nbformat.read(ROOT / "solutions" / AID / f"{AID}.ipynb", as_version=4)
    folder.mkdir()
    blank = folder / f"{AID}.ipynb"
    nbformat.write(release, blank)
    for c in release.cells:
        if c.metadata.get("nbgrader", {}).get("solution"):
            c.source = cell(source, c.metadata.nbgrader.grade_id).source
    solved = folder / f"{AID} (1).ipynb"  # as a browser names a second download
    nbformat.write(release, solved)
    return blank, solved


def check_from(pythonpath: Path, notebook: Path) -> subprocess.CompletedProcess:
    """The checker as found on pythonpath (not this repository), run in the notebook's folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("CNNGRADER_COURSE", "PYTHONPATH")}
    env["PYTHONPATH"] = str(pythonpath)
    code = ("import sys, cnngrader.precheck as p; assert p.__file__.startswith(sys.argv[1]), p.__file__; "
            "sys.argv = ['cnn-check', sys.argv[2]]; sys.exit(p.main())")
    return subprocess.run([sys.executable, "-c", code, str(pythonpath), str(notebook)], capture_output=True,
                          text=True, timeout=600, cwd=notebook.parent, env=env)


def assert_solved(solved: subprocess.CompletedProcess) -> None:
    """Every cell passes, but those whose answers are secret: checked when graded, and said so."""
    assert solved.returncode == 0, solved.stdout + solved.stderr
    got = statuses(solved.stdout, POINTS)
    later = checked_when_graded()
    assert later, "no answer checked only when graded: nothing to test the published checker's report on"
    assert got == {gid: "checked when graded" if gid in later else "pass" for gid in POINTS}, solved.stdout
    assert score_line(POINTS, got) in solved.stdout, solved.stdout


def assert_reports(blank: subprocess.CompletedProcess, solved: subprocess.CompletedProcess) -> None:
    assert_solved(solved)
    assert blank.returncode == 1, blank.stdout + blank.stderr
    got = statuses(blank.stdout, POINTS)
    assert got == dict.fromkeys(POINTS, "FAIL") and blank.stdout.count("FAIL: ") == len(POINTS), blank.stdout
    assert score_line(POINTS, got) in blank.stdout and "Would score about 0/" in blank.stdout


def test_the_published_checker_works_from_the_published_tree(published, tmp_path):
    dest, _ = published
    blank, solved = blank_and_solved(tmp_path / "downloads")
    assert_reports(check_from(dest, blank), check_from(dest, solved))


def test_the_published_checker_works_when_installed(published, tmp_path):
    """pip install of the published course: a wheel with the bundled course, no course folder around the
    notebook, no pipeline; `cnn-check` passes the solved notebook (dependencies: this environment's)."""
    dest, _ = published
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(dest)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (target / "cnngrader" / "_course" / "assignments" / AID / "checks.py").is_file()
    assert not (target / "cnngrader" / "pipeline").exists()
    blank, solved = blank_and_solved(tmp_path / "downloads")
    env = {k: v for k, v in os.environ.items() if k != "CNNGRADER_COURSE"}
    env["PYTHONPATH"] = str(target)
    proc = subprocess.run([str(target / "bin" / "cnn-check"), str(solved)], capture_output=True, text=True,
                          timeout=600, cwd=solved.parent, env=env)  # the console script
    assert_solved(proc)


def test_grading_modules_inside_cnnlib_are_left_out(tmp_path):
    repo = tmp_path / "repo"
    for path, text in {
        "_config.yml": "title: x\n", "_toc.yml": "root: book/intro\n", "book/intro.md": "# Intro\n",
        "cnnlib/__init__.py": "", "cnnlib/ops.py": "def f(): pass\n", "cnnlib/grading.py": "HIDDEN = 1\n",
        "cnnlib/autograde.py": "GRADER = 1\n", "cnnlib/_autograde_zygote.py": "Z = 1\n",
        "cnnlib/grading/__init__.py": "HIDDEN = 2\n", "solutions/01/01.ipynb": "{}",
        "exercises/01/01.ipynb": "{}", "exercises/01/gradebook.db": "x", "gradebook.db": "x",
    }.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    dest = tmp_path / "out"
    proc = run_publish(dest, "--source", str(repo))
    assert proc.returncode == 0, proc.stderr
    got = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert got == ["README.md", "_config.yml", "_toc.yml", "binder/postBuild", "binder/requirements.txt",
                   "book/intro.md", "cnnlib/__init__.py", "cnnlib/ops.py", "exercises/01/01.ipynb"]


def test_publish_refuses_bad_destinations(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    proc = run_publish(full)
    assert proc.returncode == 2 and "must be empty" in proc.stderr
    proc = run_publish(ROOT / "inside")
    assert proc.returncode == 2 and "outside the repository" in proc.stderr
    with pytest.raises(ValueError, match="source must be the course repository"):
        publish.publish(tmp_path / "new", source=tmp_path)
    with pytest.raises(ValueError, match="dest must be a folder path"):
        publish.publish("")

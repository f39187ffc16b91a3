"""`make publish DEST=...` (tools/publish.py): the student-facing course, and nothing secret.

The real repository is published into a temporary folder and searched for every solution and
hidden-test line of solutions/ (the leak detection of test_book.py), for nbgrader's markers, and for
the grader's source. A small fake repository checks that grading modules still inside cnnlib/ and
instructor folders are left out.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from test_book import MARKERS, secret_lines

sys.path.insert(0, str(ROOT / "tools"))
import publish  # noqa: E402

sys.path.pop(0)

GRADER_FILES = ("grading.py", "autograde.py")


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
    # Binder installs the requirements, then cnnlib itself.
    assert "-r ../requirements.txt" in (dest / "binder" / "requirements.txt").read_text()
    postbuild = dest / "binder" / "postBuild"
    assert "pip install --no-deps -e ." in postbuild.read_text() and postbuild.stat().st_mode & 0o111


def test_published_tree_holds_nothing_secret(published):
    dest, _ = published
    names = {p.relative_to(dest).as_posix() for p in dest.rglob("*")}
    for secret in ("solutions", "assignments", "cnngrader", "gradebook.db", "submitted", "autograded", "feedback",
                   "reports", "tests", "nbgrader_config.py", "Makefile", ".git"):
        assert secret not in names, secret
    grader = [n for n in names if Path(n).name in GRADER_FILES or Path(n).name.startswith("_autograde_")]
    assert not grader, f"the grader was published: {grader}"

    secret = secret_lines()
    # The grader's own source and the hidden checks must not be published either.
    grader_lines = set()
    for path in [*(ROOT / "cnngrader").rglob("*.py"), *(ROOT / "assignments").glob("*/checks.py")]:
        grader_lines |= {line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                         if len(line.strip()) >= 40 and not line.strip().startswith(("#", '"', "import", "from"))}
    student_library = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "cnnlib").glob("*.py")
                                 if not publish.excluded(path))
    grader_lines = {line for line in grader_lines if line not in student_library}  # shared idioms say nothing
    leaks = []
    for path in dest.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        leaks += [f"{path.relative_to(dest)}: marker {m!r}" for m in MARKERS if m in text]
        leaks += [f"{path.relative_to(dest)}: {line!r}" for line in secret if line in text]
        leaks += [f"{path.relative_to(dest)}: grader line {line!r}" for line in grader_lines if line in text]
    assert not leaks, "secret content in the published course:\n" + "\n".join(leaks[:50])


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

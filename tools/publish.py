"""Export the student-facing course into a folder: `make publish DEST=...` runs this.

What is copied is an explicit allow-list: the course (PUBLISHED) and the pre-submission checker
(CHECKER: the kernel side and the checks of cnngrader, cnngrader/precheck.py, and each assignment's
assignments/<id>/checks.py, also bundled as cnngrader/_course/ so that a pip-installed course finds them).
Everything else stays behind, above all the grading pipeline (cnngrader/pipeline/), the assignment
sources (assignments/<id>/<id>.md), their secret answers (answers.toml), solutions/ (nbgrader's source,
with solutions and hidden tests), the gradebook and graded work. Grading-module names are also refused
inside the course's folders, and the copy is searched for what must never be published, as second lines.

    python tools/publish.py DEST [--source REPO]

DEST must be empty or not exist yet. The script prints `published <what> into <DEST>`.
"""
from __future__ import annotations

import argparse
import fnmatch
import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Files and folders that students get, relative to the repository root.
PUBLISHED = (
    "book",
    "exercises",
    "cnnlib",
    "course.toml",
    "_config.yml",
    "_toc.yml",
    "references.bib",
    "requirements.txt",
    "pyproject.toml",
    "LICENSE",
)
# The pre-submission checker (cnngrader.precheck) and what it imports; never cnngrader/pipeline/.
CHECKER = (
    "cnngrader/__init__.py",
    "cnngrader/cells.py",
    "cnngrader/check_verdict.py",
    "cnngrader/course.py",
    "cnngrader/kernel_rpc.py",
    "cnngrader/tolerances.py",
    "cnngrader/kernel",
    "cnngrader/grading",
    "cnngrader/precheck.py",
)
CHECKS = "assignments/{id}/checks.py"  # each assignment's hidden checks, for the course.toml ids
BUNDLE = "cnngrader/_course"  # course.toml, the checks and the release notebooks, inside the package
# Never copied, wherever they are: caches and instructor state.
JUNK = ("gradebook*.db*", "*.ipynb_checkpoints", "__pycache__", "*.pyc", ".nbgrader.log")
# Grading modules inside the course's own folders (cnnlib, book, exercises) are never copied either.
GRADER_NAMES = ("grading.py", "autograde*.py", "_autograde_*", "grading")
EXCLUDED = GRADER_NAMES + JUNK
SECRET_FOLDERS = ("solutions", "assignments", "cnngrader", "source", "submitted", "autograded", "feedback", "release",
                  "reports")
# Refused anywhere in the published copy (relative paths, fnmatch patterns): publish fails if one is there.
NEVER = ("cnngrader/pipeline", "cnngrader/pipeline/*", "*answers.toml", "assignments/*/*.md", "solutions",
         "solutions/*", "gradebook*.db*", "nbgrader_config.py", "submitted", "autograded", "feedback")

BINDER_REQUIREMENTS = """\
# Binder (repo2docker) installs this file, then runs binder/postBuild.
-r ../requirements.txt
"""
BINDER_POSTBUILD = """\
#!/bin/bash
# Binder: install the course library, so that `import cnnlib` works in every notebook.
set -euo pipefail
python -m pip install --no-deps -e .
"""
README = """\
# Convolutional Neural Networks: the course

The course book (`book/`, MyST Markdown notebooks), the graded exercises (`exercises/<id>/<id>.ipynb`),
`cnnlib`, the small library every chapter and exercise imports, and `cnn-check`, the pre-submission check.

    python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/pip install -e .
    .venv/bin/jupyter lab                  # open a chapter or an exercise
    .venv/bin/jupyter-book build .         # build the book into _build/html

Before you submit an exercise, run its hidden tests on new random cases and see what would fail and why
(the graded cases are drawn when it is graded, so the grade may still differ):

    .venv/bin/cnn-check exercises/02_cross_correlation/02_cross_correlation.ipynb

The LeNet chapter trains on Fashion-MNIST: on Debian, `apt-get install dataset-fashion-mnist`.
On Binder, the launch buttons of the book open this repository with `cnnlib` installed
(`binder/`). Licences: see LICENSE.
"""


def excluded(path: Path, patterns: tuple[str, ...] = EXCLUDED) -> bool:
    return any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns)


def copy_tree(src: Path, dst: Path, patterns: tuple[str, ...] = EXCLUDED,
              secret: tuple[str, ...] = SECRET_FOLDERS) -> int:
    """Copy src into dst, leaving out names matching `patterns` and folders named in `secret`; returns
    the number of files copied."""
    if excluded(src, patterns) or src.name in secret:
        return 0
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        return 1
    return sum(copy_tree(child, dst / child.name, patterns, secret) for child in sorted(src.iterdir()))


def course_ids(source: Path) -> list[str]:
    """The assignment ids of the course's course.toml (none without one)."""
    path = source / "course.toml"
    if not path.is_file():
        return []
    return [str(a["id"]) for a in tomllib.loads(path.read_text(encoding="utf-8")).get("assignment", [])]


def copy_checker(source: Path, dest: Path) -> int:
    """The pre-submission checker: CHECKER, each assignment's checks, and the same bundled in the package."""
    count = sum(copy_tree(source / rel, dest / rel, JUNK, ("pipeline",)) for rel in CHECKER if (source / rel).exists())
    if not (source / "cnngrader" / "precheck.py").is_file():
        return count
    bundle = dest / BUNDLE
    for aid in course_ids(source):
        checks = source / CHECKS.format(id=aid)
        if checks.is_file():
            for where in (dest, bundle):
                count += copy_tree(checks, where / CHECKS.format(id=aid), JUNK, ())
        release = source / "exercises" / aid / f"{aid}.ipynb"
        if release.is_file():  # the points of each hidden test cell, for a notebook call away from the course
            count += copy_tree(release, bundle / "exercises" / aid / f"{aid}.ipynb", JUNK, ())
    if course_ids(source):
        count += copy_tree(source / "course.toml", bundle / "course.toml", JUNK, ())
    return count


def never_published(dest: Path) -> list[str]:
    """Paths in dest matching NEVER: what must not be published."""
    found = []
    for path in dest.rglob("*"):
        rel = path.relative_to(dest).as_posix()
        if any(fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(path.name, pattern) for pattern in NEVER):
            found.append(rel)
    return sorted(found)


def publish(dest: str | Path, source: str | Path = ROOT) -> dict[str, int]:
    """Copy the allow-listed course into `dest`, add binder/ and a README; returns files per entry."""
    if not isinstance(dest, (str, Path)) or not str(dest):
        raise ValueError(f"dest must be a folder path, got {dest!r}")
    source, dest = Path(source).resolve(), Path(dest).resolve()
    if not (source / "_config.yml").is_file():
        raise ValueError(f"source must be the course repository (no _config.yml in {source})")
    if dest == source or source in dest.parents:
        raise ValueError(f"dest must be outside the repository {source}, got {dest}")
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"dest must be empty or not exist yet: {dest} holds files")
    dest.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in PUBLISHED:
        if (source / name).exists():
            counts[name] = copy_tree(source / name, dest / name)
    checker = copy_checker(source, dest)
    if checker:
        counts["the pre-submission checker"] = checker
    leaked = never_published(dest)
    if leaked:
        shutil.rmtree(dest)
        raise RuntimeError(f"refusing to publish {', '.join(leaked)}: a bug in tools/publish.py")
    (dest / "binder").mkdir()
    (dest / "binder" / "requirements.txt").write_text(BINDER_REQUIREMENTS)
    (dest / "binder" / "postBuild").write_text(BINDER_POSTBUILD)
    (dest / "binder" / "postBuild").chmod(0o755)
    (dest / "README.md").write_text(README)
    counts["binder"], counts["README.md"] = 2, 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", help="an empty or new folder")
    parser.add_argument("--source", default=str(ROOT), help="the course repository (default: this one)")
    args = parser.parse_args(argv)
    try:
        counts = publish(args.dest, args.source)
    except ValueError as e:
        print(f"publish: {e}", file=sys.stderr)
        return 2
    what = ", ".join(f"{name} ({n} files)" if n != 1 else name for name, n in counts.items())
    print(f"published {what} into {Path(args.dest).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

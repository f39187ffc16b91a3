"""Export the student-facing course into a folder: `make publish DEST=...` runs this.

What is copied is an explicit allow-list (PUBLISHED); everything else stays behind, above all
assignments/ and solutions/ (the assignment sources and nbgrader's, with solutions and hidden tests),
cnngrader/ (the grader), the gradebook and graded work. Grading-module names are also refused
inside the allowed folders, as a second line.

    python tools/publish.py DEST [--source REPO]

DEST must be empty or not exist yet. The script prints `published <what> into <DEST>`.
"""
from __future__ import annotations

import argparse
import fnmatch
import shutil
import sys
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
# Never copied, wherever they are in the allowed folders: the grader and instructor state.
EXCLUDED = (
    "grading.py", "autograde*.py", "_autograde_*", "grading",
    "gradebook*.db*", "*.ipynb_checkpoints", "__pycache__", "*.pyc", ".nbgrader.log",
)
SECRET_FOLDERS = ("solutions", "assignments", "cnngrader", "source", "submitted", "autograded", "feedback", "release",
                  "reports")

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

The course book (`book/`, MyST Markdown notebooks), the graded exercises (`exercises/<id>/<id>.ipynb`)
and `cnnlib`, the small library every chapter and exercise imports.

    python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/pip install -e .
    .venv/bin/jupyter lab                  # open a chapter or an exercise
    .venv/bin/jupyter-book build .         # build the book into _build/html

The LeNet chapter trains on Fashion-MNIST: on Debian, `apt-get install dataset-fashion-mnist`.
On Binder, the launch buttons of the book open this repository with `cnnlib` installed
(`binder/`). Licences: see LICENSE.
"""


def excluded(path: Path) -> bool:
    return any(fnmatch.fnmatch(path.name, pattern) for pattern in EXCLUDED)


def copy_tree(src: Path, dst: Path) -> int:
    """Copy src into dst, leaving out EXCLUDED names; returns the number of files copied."""
    if excluded(src) or src.name in SECRET_FOLDERS:
        return 0
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        return 1
    return sum(copy_tree(child, dst / child.name) for child in sorted(src.iterdir()))


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

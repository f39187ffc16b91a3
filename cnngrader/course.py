"""The course manifest (course.toml) and the course directory it sits in.

Every part of the course that needs the list of assignments reads it from here:

    from cnngrader.course import load_course
    course = load_course()            # $CNNGRADER_COURSE, else the nearest course.toml above the cwd
    course.ids                        # ("01_fc_to_conv", ..., "06_lenet")
    course.source(aid)                # assignments/<id>/<id>.md, the text notebook an instructor edits

This module imports only the standard library, so the grading kernel can use it cheaply.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "course.toml"
ENV_VAR = "CNNGRADER_COURSE"  # a course directory, to run the pipeline from another working directory
ASSIGNMENTS_DIR = "assignments"  # assignments/<id>/<id>.md (source) and assignments/<id>/checks.py
_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]*\Z")


class CourseError(ValueError):
    """course.toml is missing or malformed."""


@dataclass(frozen=True)
class Assignment:
    id: str
    title: str
    chapter: str  # path of its chapter, relative to the course directory


@dataclass(frozen=True)
class Course:
    root: Path
    id: str
    title: str
    assignments: tuple[Assignment, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(a.id for a in self.assignments)

    def get(self, aid: str) -> Assignment:
        for a in self.assignments:
            if a.id == aid:
                return a
        raise KeyError(f"no assignment {aid!r} in {self.root / MANIFEST}; known: {', '.join(self.ids)}")

    def folder(self, aid: str) -> Path:
        """assignments/<id>/: the assignment's source notebook and its checks module."""
        return self.root / ASSIGNMENTS_DIR / self.get(aid).id

    def source(self, aid: str) -> Path:
        return self.folder(aid) / f"{aid}.md"

    def checks(self, aid: str) -> Path:
        return self.folder(aid) / "checks.py"


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The course directory: $CNNGRADER_COURSE when set, else the nearest folder holding
    course.toml at or above `start` (default: the working directory)."""
    env = os.environ.get(ENV_VAR)
    if env and start is None:
        root = Path(env).resolve()
        if not (root / MANIFEST).is_file():
            raise CourseError(f"${ENV_VAR} is {env!r}, which holds no {MANIFEST}")
        return root
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / MANIFEST).is_file():
            return folder
    raise CourseError(f"no {MANIFEST} in {here} or any folder above it; run from the course directory "
                      f"or set ${ENV_VAR}")


def load_course(root: str | os.PathLike | None = None) -> Course:
    """Read course.toml in `root` (default: find_root())."""
    root = Path(root).resolve() if root is not None else find_root()
    path = root / MANIFEST
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CourseError(f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise CourseError(f"{path} is not valid TOML: {e}") from None
    meta = data.get("course", {})
    entries = data.get("assignment", [])
    if not isinstance(entries, list) or not entries:
        raise CourseError(f"{path} lists no [[assignment]]")
    assignments, seen = [], set()
    for k, entry in enumerate(entries):
        missing = [key for key in ("id", "title", "chapter") if not isinstance(entry.get(key), str)]
        if missing:
            raise CourseError(f"{path}: assignment {k + 1} needs string {', '.join(missing)}")
        aid = entry["id"]
        if not _ID.match(aid):
            raise CourseError(f"{path}: assignment id {aid!r} must be letters, digits, '_' and '-'")
        if aid in seen:
            raise CourseError(f"{path}: assignment id {aid!r} is listed twice")
        seen.add(aid)
        assignments.append(Assignment(aid, entry["title"], entry["chapter"]))
    return Course(root, str(meta.get("id", "course")), str(meta.get("title", "")), tuple(assignments))

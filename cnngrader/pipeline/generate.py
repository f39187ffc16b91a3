"""Generating the assignments: assignments/<id>/<id>.md -> solutions/ -> exercises/, and each
assignment's copy in the gradebook (nbgrader generate_assignment)."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Iterable

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory
from nbgrader.utils import capture_log

from cnngrader.course import Course, load_course
from cnngrader.pipeline import authoring
from cnngrader.pipeline.config import course_config, coursedir

log = logging.getLogger("cnngrader.pipeline")


def generate(
    assignments: Iterable[str] | None = None, root: str | Path | None = None, course: Course | None = None,
    build_sources: bool = True, **paths: str | Path,
) -> list[str]:
    """Build solutions/<id>/<id>.ipynb from assignments/<id>/<id>.md (build_sources), then run
    nbgrader generate_assignment --force for each assignment; returns the ids done.

    paths: CourseDirectory overrides (release_directory, db_url, source_directory)."""
    course = course or load_course()
    assignments = list(assignments or course.ids)
    if build_sources:
        authoring.write_sources(course, assignments)
    cfg = course_config(root, course, **paths)
    done = []
    for aid in assignments:
        cd = coursedir(cfg)
        if not Path(cd.format_path(cd.source_directory, ".", aid)).is_dir():
            raise FileNotFoundError(f"no source for assignment {aid!r} in {cd.source_directory}")
        generate_assignment(cd, cfg, aid)
        done.append(aid)
    return done


def generate_assignment(cd: CourseDirectory, config, assignment_id: str) -> None:
    """nbgrader generate_assignment --force for `assignment_id`, creating it in the gradebook, into
    the release directory of cd; RuntimeError with nbgrader's log when it fails."""
    cd.assignment_id = assignment_id
    app = GenerateAssignment(coursedir=cd, config=config)
    app.force = True
    app.create_assignment = True
    result = capture_log(app)
    if not result["success"]:
        raise RuntimeError(f"generate_assignment {assignment_id} failed:\n{result.get('log', '')}\n"
                           f"{result.get('error') or ''}")


def add_missing_assignments(cd: CourseDirectory, config, assignment_ids) -> tuple[list[str], list[str]]:
    """Put each assignment that is not in the gradebook into it, from the source directory
    (generate_assignment into a scratch release directory: exercises/ stays as committed).
    Returns (added, unknown): unknown ones are neither in the gradebook nor in the source
    directory, and cannot be graded. Used by the autograde hook and by `make grade`."""
    missing = []
    with Gradebook(cd.db_url, cd.course_id) as gb:
        for aid in sorted(set(assignment_ids)):
            try:
                gb.find_assignment(aid)
            except MissingEntry:
                missing.append(aid)
    unknown = [aid for aid in missing if not Path(cd.format_path(cd.source_directory, ".", aid)).is_dir()]
    added = [aid for aid in missing if aid not in unknown]
    with tempfile.TemporaryDirectory(prefix="nbgrader-release-") as scratch:
        for aid in added:
            gen_cd = CourseDirectory(config=config)
            for key in ("root", "source_directory", "db_url", "course_id"):
                setattr(gen_cd, key, getattr(cd, key))
            gen_cd.release_directory = scratch
            generate_assignment(gen_cd, config, aid)
    return added, unknown


def ensure_assignments(cfg, assignments: Iterable[str]) -> list[str]:
    """Put every assignment into the gradebook if it is not there yet. Returns the assignments
    that are neither in the gradebook nor in the source directory (they cannot be graded)."""
    added, unknown = add_missing_assignments(coursedir(cfg), cfg, assignments)
    if added:
        log.info("added %s to the gradebook", ", ".join(added))
    return unknown

"""The plan step: which submissions to grade, and the gradebook made ready for them.

find_submissions lists submitted/<student>/<assignment>/; each is prepared (prepare.py) or
reported as not gradable; those unchanged since they were graded are kept (cache.Cache). Then the
gradebook gets the assignments and students the others need, before any worker copies it.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from nbformat import NotebookNode
from traitlets.config import Config

from cnngrader.pipeline.cache import Cache, Submission, autograded_submissions
from cnngrader.pipeline.claims import gradebook_forged_claims
from cnngrader.pipeline.config import CoursePaths
from cnngrader.pipeline.generate import ensure_assignments
from cnngrader.pipeline.prepare import prepare_notebooks
from cnngrader.pipeline.roster import sync_students

log = logging.getLogger("cnngrader.pipeline")


@dataclass
class Plan:
    """What a run grades: todo (in the order found), kept (up to date), and why others are not graded."""

    todo: list[Submission]
    kept: list[Submission] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    digests: dict[Submission, tuple[str, str]] = field(default_factory=dict)  # Cache.digests
    notebooks: dict[Submission, dict[Path, NotebookNode]] = field(default_factory=dict)  # as prepared

    def in_grading_order(self, seconds: dict[str, float] | None = None) -> list[Submission]:
        """todo, the assignments that took longest to execute last time first (`seconds`: Cache.typical_seconds;
        one never timed comes before them all), then by assignment and student. Started last, one long notebook
        would keep its worker busy after every other worker has finished."""
        seconds = seconds or {}
        return sorted(self.todo, key=lambda sa: (-seconds.get(sa[1], math.inf), sa[1], sa[0]))


def find_submissions(cfg: Config | CoursePaths, students: Iterable[str] | None = None,
                     assignments: Iterable[str] | None = None) -> list[Submission]:
    """(student, assignment) pairs under submitted/ that contain at least one notebook."""
    base = CoursePaths.of(cfg).submitted
    want_s = set(students) if students else None
    want_a = set(assignments) if assignments else None
    found = []
    for sdir in sorted(p for p in base.glob("*") if _real_dir(p)):
        for adir in sorted(p for p in sdir.glob("*") if _real_dir(p)):
            if want_s is not None and sdir.name not in want_s:
                continue
            if want_a is not None and adir.name not in want_a:
                continue
            if any(p.suffix == ".ipynb" and not p.name.startswith(".") for p in adir.iterdir()):
                found.append((sdir.name, adir.name))
    return found


def _real_dir(path: Path) -> bool:
    """A folder, not a link to one (a link is skipped with a line: the grader follows no student link)."""
    if path.is_symlink():
        log.warning("%s is a symbolic link: skipped", path)
        return False
    return path.is_dir()


def plan(paths: CoursePaths, cache: Cache, students: Iterable[str] | None = None,
         assignments: Iterable[str] | None = None, force: bool = False) -> Plan:
    """The submissions to grade: found, prepared, and not up to date (unless force)."""
    found = find_submissions(paths, students, assignments)
    out = Plan(todo=[])
    for sa in found:
        why, notebooks = prepare_notebooks(paths, *sa)
        if why:
            out.failures.append(why)
        else:
            out.notebooks[sa] = notebooks
    out.todo = [sa for sa in found if sa in out.notebooks]
    out.digests = cache.digests(out.todo)
    if not force and out.todo and paths.autograded.is_dir():
        with paths.gradebook() as gb:
            done = autograded_submissions(gb, paths)
        out.todo, out.kept = cache.split(out.todo, out.digests, done)
    if not out.todo and not out.kept:
        log.warning("nothing to grade in %s", paths.root / "submitted")
    for sid, aid in out.kept:
        log.info("%s/%s: up to date", sid, aid)
    if out.kept and not out.todo:
        log.info("nothing graded: %d submission(s) up to date (FORCE=1 / --force regrades)", len(out.kept))
    return out


def ready_gradebook(cfg: Config, paths: CoursePaths, planned: Plan) -> None:
    """Put the assignments and students of planned.todo into the gradebook (an assignment that is
    nowhere is dropped from planned.todo, with a failure line), and log each forged cell claim."""
    unknown = ensure_assignments(cfg, {a for _, a in planned.todo})
    for sid, aid in [sa for sa in planned.todo if sa[1] in unknown]:
        planned.failures.append(f"unknown assignment {sid}/{aid}: not in the gradebook nor in the source directory")
    planned.todo = [sa for sa in planned.todo if sa[1] not in unknown]
    with paths.gradebook() as gb:
        sync_students(gb, paths, {s for s, _ in planned.todo})  # names from roster.csv, before the workers copy it
        note_forged_claims(gb, planned)


def note_forged_claims(gb, planned: Plan) -> None:
    """One log line for each cell whose nbgrader metadata claims what the gradebook does not vouch for
    (an extra grade cell, a second 'setup' cell); sanitizing (claims.DropForgedClaims) neutralises it."""
    for sid, aid in planned.todo:
        for path, nb in planned.notebooks[(sid, aid)].items():
            try:
                forged = gradebook_forged_claims(gb, path.stem, aid, nb)
            except Exception as e:  # only a log line is at stake; sanitizing decides
                log.warning("%s/%s: could not check the cells of %s: %s", sid, aid, path.name, e)
                continue
            for i, why in forged:
                log.warning("%s/%s: cell %d of %s %s: graded as a plain cell, it earns nothing", sid, aid,
                            i + 1, path.name, why)

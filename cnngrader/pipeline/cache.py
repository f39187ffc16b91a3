"""Incremental grading: what was graded, from which bytes (autograded/.cnngrader.json).

A submission is up to date when it is autograded and its files and what grades it (its
assignment's source, checks and answers, and the grader's code) hash to what they were when it was
last graded successfully. Its feedback is up to date when the gradebook's facts it shows (scores,
comments, late penalty) hash to what they were when it was written.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import statistics
from pathlib import Path
from typing import Iterable, Sequence

from traitlets.config import Config

import cnngrader
from cnngrader.pipeline import safefiles
from cnngrader.pipeline.config import CoursePaths

STATE_FILE = ".cnngrader.json"  # autograded/.cnngrader.json: "student/assignment" -> the digests it was graded from

Submission = tuple[str, str]  # (student, assignment)


def _digest(files: Iterable[tuple[str, Path]]) -> str:
    """sha256 over (name, bytes) pairs, in name order; each file is read as a stream."""
    h = hashlib.sha256()
    for name, path in sorted(files):
        h.update(name.encode() + b"\0")
        safefiles.file_digest(path, h)
        h.update(b"\0")
    return h.hexdigest()


def submission_digest(cfg: Config | CoursePaths, student: str, assignment: str) -> str:
    """Hash of every file of submitted/<student>/<assignment>/ (notebooks, timestamp.txt, data)."""
    return _digest(safefiles.tree(CoursePaths.of(cfg).submission(student, assignment)))


def assignment_digest(cfg: Config | CoursePaths, assignment: str) -> str:
    """Hash of what grades the assignment: its source notebooks (hidden cells, points), its folder
    course_root/assignments/<id>/ (checks.py, answers.toml), and the grader itself (grader_files)."""
    paths = CoursePaths.of(cfg)
    files = safefiles.tree(paths.source(assignment), "source/")
    files += safefiles.tree(paths.assignment_folder(assignment), "assignment/")
    return _digest(files + grader_files(paths))


def grader_files(cfg: Config | CoursePaths) -> list[tuple[str, Path]]:
    """The code every hidden check runs, as (name, path): the cnngrader and cnnlib packages that grade
    (the reference implementations are cnnlib's) and the course's nbgrader_config.py."""
    files = []
    for name, folder in (("cnngrader", Path(cnngrader.__file__).parent),
                         ("cnnlib", Path(importlib.util.find_spec("cnnlib").origin).parent)):  # no torch import
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder)
            if not safefiles.SKIP_DIRS.intersection(rel.parts):
                files.append((f"{name}/{rel.as_posix()}", path))
    config = CoursePaths.of(cfg).course_root / "nbgrader_config.py"
    return files + ([("nbgrader_config.py", config)] if config.is_file() else [])


def autograded_submissions(gb, paths: CoursePaths) -> list[Submission]:
    """(student, assignment) of every submission the gradebook gb has, with notebooks in autograded/; sorted."""
    recorded = {(s.student.id, a.name) for a in gb.assignments for s in a.submissions}
    return sorted(sa for sa in recorded if any(paths.autograded.joinpath(*sa).glob("*.ipynb")))


def grade_fingerprints(gb) -> dict[Submission, str]:
    """(student, assignment) -> a hash of everything its feedback shows from the gradebook gb: scores
    (auto, manual, extra credit), comments and the late penalty. A manual grade changes it."""
    out = {}
    for a in gb.assignments:
        for sub in a.submissions:
            facts = [str(sub.timestamp), sub.late_submission_penalty]
            for snb in sorted(sub.notebooks, key=lambda n: n.name):
                facts += sorted((snb.name, g.name, g.auto_score, g.manual_score, g.extra_credit) for g in snb.grades)
                facts += sorted((snb.name, c.name, c.auto_comment or "", c.manual_comment or "") for c in snb.comments)
            out[(sub.student.id, a.name)] = hashlib.sha256(json.dumps(facts, default=str).encode()).hexdigest()
    return out


def read_state(cfg: Config | CoursePaths) -> dict[str, dict]:
    """The digests each submission was last graded from ({} when none or unreadable)."""
    return Cache(CoursePaths.of(cfg)).read()


class Cache:
    """autograded/.cnngrader.json of a grading directory: "student/assignment" -> {submission,
    assignment: the digests it was graded from; seconds; feedback: the grades its feedback shows}."""

    def __init__(self, paths: CoursePaths):
        self.paths = paths
        self.file = paths.autograded / STATE_FILE

    def read(self) -> dict[str, dict]:
        """The file's entries ({} when none or unreadable)."""
        try:
            state = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def digests(self, subs: Iterable[Submission]) -> dict[Submission, tuple[str, str]]:
        """(submission digest, assignment digest) of each submission; each assignment hashed once."""
        subs = list(subs)
        by_assignment = {aid: assignment_digest(self.paths, aid) for aid in {a for _, a in subs}}
        return {(sid, aid): (submission_digest(self.paths, sid, aid), by_assignment[aid]) for sid, aid in subs}

    def split(self, subs: Sequence[Submission], digests: dict[Submission, tuple[str, str]],
              autograded: Iterable[Submission]) -> tuple[list[Submission], list[Submission]]:
        """(to grade, up to date): up to date is autograded (in the gradebook, with notebooks in
        autograded/) and graded last from the same digests."""
        state, done = self.read(), set(autograded)
        todo, kept = [], []
        for sa in subs:
            entry = state.get("/".join(sa), {})
            same = (entry.get("submission"), entry.get("assignment")) == digests[sa]
            (kept if same and sa in done else todo).append(sa)
        return todo, kept

    def typical_seconds(self) -> dict[str, float]:
        """assignment -> the median of the seconds its submissions took to execute when last graded."""
        taken: dict[str, list[float]] = {}
        for key, entry in self.read().items():
            if isinstance(entry, dict) and isinstance(entry.get("seconds"), (int, float)) and "/" in key:
                taken.setdefault(key.split("/", 1)[1], []).append(float(entry["seconds"]))
        return {aid: statistics.median(values) for aid, values in taken.items()}

    def graded(self, sa: Submission, digests: tuple[str, str], seconds: float) -> None:
        """The submission was graded from these digests (its entry replaced: its feedback is due)."""
        self.write({"/".join(sa): dict(zip(("submission", "assignment"), digests), seconds=round(seconds, 2))})

    def feedback_due(self, autograded: Iterable[Submission], prints: dict[Submission, str],
                     graded_now: set[Submission]) -> list[Submission]:
        """The autograded submissions whose feedback is to be (re)written: graded in this run, without a
        page, or whose grades (prints, from grade_fingerprints) changed since their page was written."""
        state = self.read()
        return [sa for sa in autograded
                if sa in graded_now or not any(self.paths.feedback.joinpath(*sa).glob("*.html"))
                or state.get("/".join(sa), {}).get("feedback") != prints.get(sa)]

    def write(self, entries: dict[str, dict], merge: bool = False) -> None:
        """Set submissions' entries (merge: update them), into the file as it is now (another machine
        grading its share of the class into the same directory keeps its entries)."""
        self.file.parent.mkdir(parents=True, exist_ok=True)
        state = self.read()
        for key, entry in entries.items():
            state[key] = {**state.get(key, {}), **entry} if merge else entry
        tmp = self.file.with_name(f"{self.file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
        tmp.replace(self.file)  # a run killed half-way leaves the old state, never a torn one

"""The feedback step: nbgrader's GenerateFeedback for every autograded submission whose grades
changed since its feedback was written (cache.Cache.feedback_due), then the pages made safe to open.

Feedback only reads the gradebook, so the workers share it. One converter per student: its HTML
templates are compiled once for all of that student's notebooks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from nbgrader.converters import GenerateFeedback
from traitlets.config import Config

from cnngrader.pipeline import safefiles
from cnngrader.pipeline.cache import Cache, Submission, autograded_submissions, grade_fingerprints
from cnngrader.pipeline.config import CoursePaths, coursedir, last_line, run_app
from cnngrader.pipeline.sanitize import add_csp

# Long reasons wrap instead of scrolling sideways (nbconvert's output <pre> does not wrap).
WRAP_CSS = ('<style id="cnngrader-wrap">.jp-OutputArea-output pre, .output_area pre, .output pre '
            '{ white-space: pre-wrap; overflow-wrap: anywhere; }</style>')


def write_feedback(cfg: Config, paths: CoursePaths, cache: Cache, graded_now: set[Submission],
                   map_fn: Callable = map) -> tuple[list[Submission], list[str]]:
    """Feedback for the submissions that need it; (those whose feedback was written, failure lines).
    map_fn: how feedback_student runs over the students (workers.Workers.map: in the worker processes)."""
    with paths.gradebook() as gb:
        prints = grade_fingerprints(gb)
        autograded = autograded_submissions(gb, paths)
    by_student: dict[str, list[str]] = {}
    for sid, aid in cache.feedback_due(autograded, prints, graded_now):
        by_student.setdefault(sid, []).append(aid)
    args = [(cfg, paths, sid, aids) for sid, aids in by_student.items()]
    failures, done = [], {}
    for sid, error in map_fn(feedback_student, *zip(*args)):
        if error:
            failures.append(f"feedback {sid}: {last_line(error)}")
        else:
            done.update({f"{sid}/{aid}": {"feedback": prints.get((sid, aid))} for aid in by_student[sid]})
    cache.write(done, merge=True)
    wrap_feedback(paths.feedback)
    return sorted((sid, aid) for sid, aids in by_student.items() for aid in aids), failures


def feedback_student(cfg: Config, paths: CoursePaths, student: str, assignments: Sequence[str]
                     ) -> tuple[str, str | None]:
    """Feedback for the student's autograded submissions among `assignments`; (student, error or None)."""
    autograded = paths.autograded / student
    have = [a for a in assignments if (autograded / a).is_dir()]
    if not have:
        return student, None  # nothing was recorded (already reported)
    if len(have) == len(assignments) == len([p for p in autograded.iterdir() if p.is_dir()]):
        return student, generate_feedback(cfg, student, "*")
    errors = [e for e in (generate_feedback(cfg, student, a) for a in have) if e]
    return student, errors[0] if errors else None


def generate_feedback(cfg: Config, student: str, assignment: str) -> str | None:
    """nbgrader generate_feedback for a student's autograded submission(s) (`assignment` may be
    "*", every one of them); the error text or None. feedback_student calls it for autograded ones only."""
    app = GenerateFeedback(coursedir=coursedir(cfg, student_id=student, assignment_id=assignment), config=cfg)
    app.force = True
    return run_app(app)


def wrap_feedback(folder: Path) -> int:
    """Add WRAP_CSS and the Content-Security-Policy (sanitize.add_csp: no script runs) to every
    feedback page under folder that lacks them; returns the pages changed."""
    changed = 0
    for rel in safefiles.scan(folder, safefiles.NO_LIMITS).files:
        page = Path(folder, rel)
        if page.suffix != ".html":
            continue
        text = page.read_text(encoding="utf-8", errors="replace")
        new = add_csp(text)
        if 'id="cnngrader-wrap"' not in new and "</head>" in new:
            new = new.replace("</head>", WRAP_CSS + "\n</head>", 1)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed += 1
    return changed

"""Hooks through which the plain nbgrader command line grades as `make grade` does.

nbgrader_config.py installs them with nbgrader's own configuration points:

- `autograde_pre_convert` (c.Autograde.pre_convert_hook), before each submission of
  `nbgrader autograde`:
  - a student id outside [A-Za-z0-9._-], or a folder over safefiles.FileLimits, is not graded;
    symlinks, FIFOs, devices and hard links to outside files are removed from the folder
    (safefiles.clean), a line each, as `make grade` does;
  - an assignment missing from the gradebook is added from the source directory (solutions/),
    as `make grade` does; exercises/ is not touched;
  - a single notebook saved under another name (a browser's "02_cross_correlation (1).ipynb")
    is renamed to the assignment's notebook name, and the log says so;
  - named pipes, sockets and device files in the submission are removed, and a hidden `..ipynb`
    ignored, one line in the log each (set_aside_odd_files).
- `feedback_post_convert` (c.GenerateFeedback.post_convert_hook): the feedback pages get the
  Content-Security-Policy and the wrapping style of `make grade`.
- `ReleaseFeedback` (c.ExchangeFactory.release_feedback), nbgrader's release_feedback for
  submissions placed in submitted/ by hand, which lack the exchange's timestamp.txt and
  submission_secret.txt.
- `GradesExport` (c.ExportApp.plugin_class), `nbgrader export` writing the grades.csv that
  `make grade` writes: a missing submission has empty scores and the status "missing", where
  nbgrader's CSV exporter writes 0.0 as for a blank one.

The hook acts only under the `nbgrader autograde` command (an AutogradeApp instance). The
grading pipeline (cnngrader.pipeline.grade) loads the same configuration, but it prepares its
submissions itself (the same prepare.py) and its workers grade against private gradebooks: there
the hook does nothing.
"""
from __future__ import annotations

import datetime
import glob
import os
from pathlib import Path

from nbgrader.apps.autogradeapp import AutogradeApp
from nbgrader.apps.generatefeedbackapp import GenerateFeedbackApp
from nbgrader.exchange.default.release_feedback import ExchangeReleaseFeedback
from nbgrader.plugins import ExportPlugin

from cnngrader.pipeline import csvsafe, safefiles
from cnngrader.pipeline.export import grade_rows, write_grades
from cnngrader.pipeline.feedback import wrap_feedback
from cnngrader.pipeline.generate import add_missing_assignments
from cnngrader.pipeline.prepare import graded_notebooks, rename_single_notebook, set_aside_odd_files


def _autograde_app():
    """The running `nbgrader autograde` application, or None (the grading pipeline, the formgrader)."""
    return AutogradeApp.instance() if AutogradeApp.initialized() else None


def autograde_pre_convert(assignment: str, student: str, notebooks: list[str]) -> None:
    """c.Autograde.pre_convert_hook: nbgrader calls it with the submission's notebook paths,
    submitted/<student>/<assignment>/*.ipynb, before it checks them against the gradebook.
    `notebooks` is nbgrader's own list: a renamed notebook is replaced in it."""
    app = _autograde_app()
    if app is None or not notebooks:
        return
    folder = Path(notebooks[0]).parent
    student_id, assignment_id = folder.parent.name, folder.name
    why = csvsafe.student_id_problem(student_id)
    try:
        if not why:  # links, FIFOs, devices go before nbgrader copies the folder (it follows links)
            safefiles.clean(folder, label=f"{student_id}/{assignment_id}", logger=app.log)
    except (safefiles.TooBig, OSError) as e:
        why = f"the submission is too big or unreadable ({e})"
    if why:
        app.log.error("%r/%s: %s; not graded", student_id, assignment_id, why)
        notebooks[:] = []
        return
    try:
        if add_missing_assignments(app.coursedir, app.config, [assignment_id])[0]:
            app.log.info("%s was not in the gradebook: added it from %s", assignment_id,
                         app.coursedir.format_path(app.coursedir.source_directory, ".", assignment_id))
        for line in set_aside_odd_files(folder):
            app.log.warning("%s/%s: %s", student_id, assignment_id, line)
        graded = graded_notebooks(folder)
        notebooks[:] = [n for n in notebooks if Path(n) in graded]
        cd = app.coursedir
        renamed = rename_single_notebook(Path(cd.format_path(cd.source_directory, ".", assignment_id)), folder)
    except Exception as e:  # nbgrader would log a hook's failure at INFO only
        app.log.error("%s/%s: could not prepare the submission: %s", student_id, assignment_id, e)
        return
    expected = f"{assignment_id}.ipynb"
    present = sorted(Path(n).name for n in notebooks)
    if not renamed and expected not in present and len(present) > 1:
        app.log.error("%s/%s: none of its %d notebooks (%s) is named %s: rename the one to grade",
                      student_id, assignment_id, len(present), ", ".join(present), expected)
    if renamed:
        old, new = renamed
        app.log.warning("%s/%s: graded %r as %r, the assignment's only notebook (renamed in %s)",
                        student_id, assignment_id, old.name, new.name, folder)
        notebooks[:] = [str(new) if Path(n) == old else n for n in notebooks]


def feedback_post_convert(assignment: str, student: str, notebooks: list[str]) -> None:
    """c.GenerateFeedback.post_convert_hook: the feedback pages nbgrader just wrote get the
    Content-Security-Policy and the wrapping style of `make grade` (feedback.wrap_feedback)."""
    app = GenerateFeedbackApp.instance() if GenerateFeedbackApp.initialized() else None
    if notebooks and app is not None:
        cd = app.coursedir
        folder = Path(cd.format_path(cd.feedback_directory, Path(notebooks[0]).parent.parent.name,
                                     Path(notebooks[0]).parent.name))
        if folder.is_dir():
            wrap_feedback(folder)


class ReleaseFeedback(ExchangeReleaseFeedback):
    """nbgrader's release_feedback, for submissions that did not come through the exchange.

    - No timestamp.txt in feedback/<student>/<assignment>/ (nbgrader would crash): one is written
      there from the submitted notebook's modification time (the gradebook and late penalties
      are not changed), and the log says so.
    - No submission_secret.txt (a hand-placed submission): the exchange cannot deliver the
      feedback, since `fetch_feedback` finds it by that secret of the student's own submission.
      The student is skipped with a warning saying where the feedback file is, and the others are
      released.
    """

    def copy_files(self):
        skipped = []
        for html in sorted(glob.glob(os.path.join(self.src_path, "*.html"))):
            folder = Path(html).parent
            student_id = folder.parent.name
            if not (folder / "submission_secret.txt").is_file():
                if student_id not in skipped:
                    skipped.append(student_id)
                    self.log.warning(
                        "%s/%s was not submitted through the exchange (no submission_secret.txt): "
                        "give the student %s directly", student_id, self.coursedir.assignment_id, folder)
                continue
            stamp = folder / "timestamp.txt"
            if not stamp.is_file():
                submitted = Path(self.coursedir.format_path(
                    self.coursedir.submitted_directory, student_id, self.coursedir.assignment_id))
                nb = submitted / (Path(html).stem + ".ipynb")
                mtime = (nb if nb.is_file() else Path(html)).stat().st_mtime
                when = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc)
                stamp.write_text(when.strftime(self.timestamp_format))
                self.log.warning("%s/%s had no timestamp.txt: wrote %s from %s's modification time",
                                 student_id, self.coursedir.assignment_id, stamp.read_text(), nb.name)
        if skipped:
            excluded = [s for s in (self.coursedir.student_id_exclude or "").split(",") if s]
            self.coursedir.student_id_exclude = ",".join(excluded + skipped)
        super().copy_files()


class GradesExport(ExportPlugin):
    """`nbgrader export [--to FILE] [--student ...] [--assignment ...]`: cnngrader's grades.csv."""

    def export(self, gradebook) -> None:
        dest = self.to or "grades.csv"
        self.log.info("Exporting grades to %s (a missing submission: empty scores, status 'missing')", dest)
        write_grades(grade_rows(gradebook, [str(s) for s in self.student], [str(a) for a in self.assignment]), dest)

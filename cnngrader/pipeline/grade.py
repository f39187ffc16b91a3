"""Generating and grading the course's assignments, on top of nbgrader (the CLI: cnngrader.pipeline.__main__).

Every step reads the course's nbgrader_config.py, next to course.toml; only the paths change
when submissions in another directory (a test's temporary one) are graded.

Grading runs in two phases, so that N workers give the very gradebook one worker gives:

1. execute (parallel): each (student, assignment) submission is sanitized and executed by
   nbgrader's Autograde converter with GradingExecute as its only autograde preprocessor,
   in a worker process with its own copy of the SQLite gradebook (SQLite takes one writer
   at a time; the copies only ever see the student/submission rows nbgrader creates; with a
   PostgreSQL gradebook the copy is a SQLite snapshot of the assignments, see _phase1_db);
2. record (in the main process only, no kernels): as soon as a submission has run, nbgrader's
   Autograde converter runs again in the course directory with ReplayExecute in place of
   GradingExecute, so IgnorePattern, LimitOutput, SaveAutoGrades and AssignLatePenalties write
   the gradebook exactly as a plain `nbgrader autograde` would; the main process is its only
   writer. Recording overlaps with the workers' execution of the next submissions.

Only new or changed submissions are graded: autograded/.cnngrader.json records the hashes of
each submission's files and of what grades it (its assignment's source, checks and answers, and the
grader's code) at its grading (split_up_to_date). Then feedback (nbgrader's GenerateFeedback, for the submissions whose
gradebook grades changed; it only reads the gradebook, so the workers share it), grades.csv
(nbgrader's CSV columns plus a status, missing or submitted) and the analytics report (reports/).
The Python API for benchmarks is grade_course() and make_submissions().
"""
from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable, Sequence

import nbformat
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from cnngrader.course import Course, load_course
from cnngrader.pipeline import authoring, csvsafe, safefiles

EXECUTE = "cnngrader.pipeline.execute.GradingExecute"
REPLAY = "cnngrader.pipeline.execute.ReplayExecute"

log = logging.getLogger("cnngrader.pipeline")

# nbgrader runs the `alembic` script by name when it creates a gradebook: make this
# environment's scripts reachable even when it was not activated (.venv/bin/python -m ...).
# nbgrader 0.9 with SQLAlchemy 2 warns about its own session use on every submission.
warnings.filterwarnings("ignore", module="nbgrader")
warnings.filterwarnings("ignore", message=".*not in session.*")

_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")


# ---------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------
def course_config(root: str | Path | None = None, course: Course | None = None, **paths: str | Path) -> Config:
    """The course's nbgrader configuration (its nbgrader_config.py) for a grading directory.

    root: where submitted/, autograded/, feedback/ and the gradebook live (default: the course
    directory). course: default load_course(), found from $CNNGRADER_COURSE or the working
    directory. paths: CourseDirectory overrides, e.g. release_directory=..., db_url="sqlite:///..."
    (an absolute path is used as is). When root is not the course directory, source_directory
    defaults to the course's solutions/ and the gradebook to root/gradebook.db.
    """
    course = course or load_course()
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(course.root)).load_config()
    root = Path(root).resolve() if root is not None else course.root
    cfg.CourseDirectory.root = str(root)
    if root != course.root:
        cfg.CourseDirectory.source_directory = str(course.root / "solutions")
    if "db_url" not in cfg.CourseDirectory or root != course.root:
        cfg.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    for key, value in paths.items():
        setattr(cfg.CourseDirectory, key, str(value))
    cfg.GradingExecute.course_root = str(course.root)  # whose hidden checks grade the submissions
    return cfg


def _coursedir(cfg: Config, **ids: str):
    from nbgrader.coursedir import CourseDirectory

    coursedir = CourseDirectory(config=cfg)
    for key, value in ids.items():
        setattr(coursedir, key, value)
    return coursedir


def _run_app(app) -> dict:
    """Start an nbgrader converter; its log and any error come back in a dict (nbgrader's capture_log)."""
    from nbgrader.utils import capture_log

    return capture_log(app)


# ---------------------------------------------------------------------------------------
# generate: solutions/ -> exercises/ (and the gradebook's copy of each assignment)
# ---------------------------------------------------------------------------------------
def generate(
    assignments: Iterable[str] | None = None, root: str | Path | None = None, course: Course | None = None,
    build_sources: bool = True, **paths: str | Path,
) -> list[str]:
    """Build solutions/<id>/<id>.ipynb from assignments/<id>/<id>.md (build_sources), then run
    nbgrader generate_assignment --force for each assignment; returns the ids done.

    paths: CourseDirectory overrides (release_directory, db_url, source_directory)."""
    from .nbgrader_hooks import generate_assignment

    course = course or load_course()
    assignments = list(assignments or course.ids)
    if build_sources:
        authoring.write_sources(course, assignments)
    cfg = course_config(root, course, **paths)
    done = []
    for aid in assignments:
        coursedir = _coursedir(cfg)
        if not Path(coursedir.format_path(coursedir.source_directory, ".", aid)).is_dir():
            raise FileNotFoundError(f"no source for assignment {aid!r} in {coursedir.source_directory}")
        generate_assignment(coursedir, cfg, aid)
        done.append(aid)
    return done


# ---------------------------------------------------------------------------------------
# submissions for tests and benchmarks
# ---------------------------------------------------------------------------------------
def solution_code(source: str) -> str:
    """A solution cell's source as a student who solved it would hand it in: markers removed."""
    return "\n".join(line for line in source.splitlines() if line.strip() not in authoring.SOLUTION_MARKERS)


def solution_submission(assignment: str, release: str | Path | None = None,
                        course: Course | None = None) -> nbformat.NotebookNode:
    """The released notebook of `assignment` with every solution cell filled with the reference
    solution: what a student who solved everything hands in."""
    course = course or load_course()
    release = Path(release) if release else course.root / "exercises"
    nb = nbformat.read(release / assignment / f"{assignment}.ipynb", as_version=4)
    src = nbformat.read(course.root / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    solutions = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in src.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            cell.source = solution_code(solutions[meta["grade_id"]])
    return nb


def make_submissions(
    root: str | Path,
    count: int = 8,
    assignments: Sequence[str] | None = None,
    prefix: str = "student",
    release: str | Path | None = None,
    course: Course | None = None,
) -> list[str]:
    """Write `count` students who hand in the reference solution for every assignment into
    root/submitted/<student>/<assignment>/; returns the student ids (prefix01, prefix02, ...)."""
    root = Path(root)
    course = course or load_course()
    students = [f"{prefix}{i:02d}" for i in range(1, count + 1)]
    for aid in assignments or course.ids:
        nb = solution_submission(aid, release, course)
        for sid in students:
            dest = root / "submitted" / sid / aid
            dest.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, dest / f"{aid}.ipynb")
    return students


# ---------------------------------------------------------------------------------------
# grade
# ---------------------------------------------------------------------------------------
@dataclass
class GradeResult:
    """What grade_course did. Seconds are wall-clock."""

    root: Path
    jobs: int
    submissions: list[tuple[str, str]]  # (student, assignment), in grading order
    # phase -> seconds: prepare, execute (wall time of execution and recording, which overlap),
    # record (the part of it spent recording), feedback, export, report, and total
    seconds: dict[str, float] = field(default_factory=dict)
    execute_seconds: dict[tuple[str, str], float] = field(default_factory=dict)  # one submission's execution
    failures: list[str] = field(default_factory=list)  # submissions nbgrader could not grade (not student errors)
    grades_csv: Path | None = None
    report_dir: Path | None = None
    sandboxed: bool = True  # False: kernels ran without a sandbox (the unsafe flag)
    up_to_date: list[tuple[str, str]] = field(default_factory=list)  # unchanged since graded: kept, not regraded
    feedback: list[tuple[str, str]] = field(default_factory=list)  # whose feedback was (re)generated

    @property
    def notebooks(self) -> int:
        return len(self.submissions)

    def per_student(self) -> dict[str, float]:
        """Execution seconds per student (summed over that student's submissions)."""
        out: dict[str, float] = {}
        for (sid, _aid), sec in self.execute_seconds.items():
            out[sid] = out.get(sid, 0.0) + sec
        return out


def find_submissions(cfg: Config, students: Iterable[str] | None = None,
                     assignments: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """(student, assignment) pairs under submitted/ that contain at least one notebook."""
    from nbgrader.coursedir import CourseDirectory

    cd = CourseDirectory(config=cfg)
    base = Path(cd.root, cd.submitted_directory)
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


def prepare_submission(cfg: Config, student: str, assignment: str) -> str | None:
    """Make a submission gradable, or say in one line why it is not.

    The student id must be one a CSV and a path can carry (csvsafe.student_id_problem). Entries
    that are not plain files or folders (symlinks, FIFOs, sockets, devices, hard links to outside
    files) are removed from the folder, a line each, and a folder over safefiles.FileLimits (file
    count, apparent size) is not graded.

    A hidden `..ipynb` is ignored, with a line (set_aside_odd_files). A single notebook saved under
    another name (a browser's "02_cross_correlation (1).ipynb") is renamed to the assignment's
    notebook name, and the log says so. A notebook that is not a readable notebook (corrupt JSON,
    truncated) is reported and left ungraded."""
    from nbgrader.coursedir import CourseDirectory

    from .nbgrader_hooks import graded_notebooks, rename_single_notebook, set_aside_odd_files

    cd = CourseDirectory(config=cfg)
    folder = Path(cd.format_path(cd.submitted_directory, student, assignment))
    if why := csvsafe.student_id_problem(student):
        return f"{student!r}/{assignment}: {why}; not graded"
    too_deep = _too_deep(folder)
    if too_deep:
        return (f"{student}/{assignment}: the submission holds folders nested more than {MAX_TREE_DEPTH} deep "
                f"({too_deep}/...); not graded")
    try:  # before nbgrader lists or copies anything of it: links, FIFOs, devices go; sizes are checked
        safefiles.clean(folder, label=f"{student}/{assignment}")
    except safefiles.TooBig as e:
        return f"{student}/{assignment}: the submission is too big ({e}); not graded"
    except OSError as e:
        return f"{student}/{assignment}: the submission cannot be read ({e.strerror or e}); not graded"
    for line in set_aside_odd_files(folder):
        log.warning("%s/%s: %s", student, assignment, line)
    renamed = rename_single_notebook(cd, folder, assignment)
    if renamed:
        log.info("%s/%s: graded %r as %r, the assignment's notebook", student, assignment, renamed[0].name,
                 renamed[1].name)
    for name in [p.name for p in graded_notebooks(folder)]:
        try:
            nbformat.read(str(folder / name), as_version=4)
        except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return f"{student}/{assignment}: {name} is not a readable notebook ({why[:200]}); not graded"
    return None


def note_forged_claims(cfg: Config, subs: Iterable[tuple[str, str]]) -> None:
    """One log line for each cell whose nbgrader metadata claims what the gradebook does not vouch for
    (an extra grade cell, a second 'setup' cell); sanitizing (claims.DropForgedClaims) neutralises it."""
    from nbgrader.api import Gradebook
    from nbgrader.coursedir import CourseDirectory

    from .claims import gradebook_forged_claims
    from .nbgrader_hooks import graded_notebooks

    cd = CourseDirectory(config=cfg)
    with Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id) as gb:
        for sid, aid in subs:
            for path in graded_notebooks(Path(cd.format_path(cd.submitted_directory, sid, aid))):
                try:
                    forged = gradebook_forged_claims(gb, path.stem, aid, nbformat.read(str(path), as_version=4))
                except Exception as e:  # noqa: BLE001 - only a log line is at stake; sanitizing decides
                    log.warning("%s/%s: could not check the cells of %s: %s", sid, aid, path.name, e)
                    continue
                for i, why in forged:
                    log.warning("%s/%s: cell %d of %s %s: graded as a plain cell, it earns nothing", sid, aid,
                                i + 1, path.name, why)


def _ensure_assignments(cfg: Config, assignments: Iterable[str]) -> list[str]:
    """Put every assignment into the gradebook if it is not there yet. Returns the assignments
    that are neither in the gradebook nor in the source directory (they cannot be graded)."""
    from .nbgrader_hooks import add_missing_assignments

    added, unknown = add_missing_assignments(_coursedir(cfg), cfg, assignments)
    if added:
        log.info("added %s to the gradebook", ", ".join(added))
    return unknown


# -- phase 1: execute, in worker processes -------------------------------------------------
KERNEL_START_FAILURES = ("Kernel died before replying to kernel_info", "Kernel didn't respond")
_WORKER_DB: dict[tuple[int, str, str], str] = {}


def _phase1_db(cfg: Config, assignments: Iterable[str], work: Path) -> str:
    """The SQLite gradebook the workers copy: the course's own when it is SQLite; otherwise
    (PostgreSQL, ...) a snapshot with the assignments regenerated from the source directory,
    so that workers never write to the course database. (If solutions/ changed since the
    release, ReplayExecute notices that the executed cells differ and reports the submission.)"""
    db_url = cfg.CourseDirectory.db_url
    if db_url.startswith("sqlite:///"):
        return db_url
    snapshot = f"sqlite:///{work / 'gradebook-phase1.db'}"
    paths = {"source_directory": cfg.CourseDirectory.source_directory} if "source_directory" in cfg.CourseDirectory else {}
    generate(sorted(set(assignments)), cfg.CourseDirectory.root, build_sources=False,
             release_directory=work / "release-phase1", db_url=snapshot, **paths)
    return snapshot


def _worker_db_url(db_url: str, work: Path) -> str:
    """This process's private copy of a SQLite gradebook."""
    key = (os.getpid(), str(work), db_url)  # a forked worker inherits its parent's entries
    if key not in _WORKER_DB:
        copy = work / f"gradebook-worker{os.getpid()}.db"
        src = sqlite3.connect(db_url[len("sqlite:///"):])
        dst = sqlite3.connect(copy)
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
        _WORKER_DB[key] = f"sqlite:///{copy}"
    return _WORKER_DB[key]


def _execute_one(cfg: Config, work: str, jobs: int, student: str, assignment: str,
                 source_db: str | None = None) -> tuple[str, str, float, str | None]:
    """Sanitize and execute one submission into work/executed; (student, assignment, seconds, error)."""
    from nbgrader.converters import Autograde

    t0 = time.perf_counter()
    c = copy.deepcopy(cfg)
    c.CourseDirectory.autograded_directory = str(Path(work, "executed"))
    c.CourseDirectory.db_url = _worker_db_url(source_db or cfg.CourseDirectory.db_url, Path(work))
    c.Autograde.autograde_preprocessors = [EXECUTE]
    c.GradingExecute.parallel_jobs = jobs
    for attempt in (1, 2):
        app = Autograde(coursedir=_coursedir(c, student_id=student, assignment_id=assignment), config=c)
        app.force = True
        result = _run_app(app)
        error = None if result["success"] else (result.get("log", "") + "\n" + (result.get("error") or ""))
        # a kernel that never came up is the machine's problem, not the student's: once more
        if not error or not any(s in error for s in KERNEL_START_FAILURES):
            break
        log.warning("%s/%s: the kernel did not start (attempt %d)", student, assignment, attempt)
    return student, assignment, time.perf_counter() - t0, error


def _record(cfg: Config, work: Path, student: str, assignment: str) -> str | None:
    """Phase 2 for one submission: nbgrader's autograde with the executed outputs replayed."""
    from nbgrader.converters import Autograde

    c = copy.deepcopy(cfg)
    c.Autograde.autograde_preprocessors = [
        REPLAY if _name(p) == EXECUTE else p for p in cfg.Autograde.autograde_preprocessors
    ]
    c.ReplayExecute.executed_directory = str(work / "executed")
    app = Autograde(coursedir=_coursedir(c, student_id=student, assignment_id=assignment), config=c)
    app.force = True
    result = _run_app(app)
    return None if result["success"] else (result.get("log", "") + "\n" + (result.get("error") or ""))


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed"


def _name(p) -> str:
    return p if isinstance(p, str) else f"{p.__module__}.{p.__qualname__}"


# ---------------------------------------------------------------------------------------
# incremental grading: what was graded, from which bytes
# ---------------------------------------------------------------------------------------
STATE_FILE = ".cnngrader.json"  # autograded/.cnngrader.json: "student/assignment" -> the digests it was graded from
_SKIP_DIRS = {".ipynb_checkpoints", "__pycache__"}


def _digest(files: Iterable[tuple[str, Path]]) -> str:
    """sha256 over (name, bytes) pairs, in name order; each file is read as a stream."""
    h = hashlib.sha256()
    for name, path in sorted(files):
        h.update(name.encode() + b"\0")
        safefiles.file_digest(path, h)
        h.update(b"\0")
    return h.hexdigest()


MAX_TREE_DEPTH = 64  # folders below a submission's or an assignment's folder that are looked at
_NO_LIMITS = safefiles.FileLimits(max_bytes=sys.maxsize, max_files=sys.maxsize)  # the grader's own folders
MAX_TREE_FILES = 10_000


def _tree(folder: Path, label: str = "") -> list[tuple[str, Path]]:
    """(label + relative path, path) of the regular files under folder: one linear listing, walked
    iteratively and bounded (MAX_TREE_DEPTH, MAX_TREE_FILES), never following a link, so that a folder
    nested thousands deep costs no more than a shallow one."""
    if not folder.is_dir():
        return []
    out: list[tuple[str, Path]] = []
    todo = [(folder, 0)]
    while todo and len(out) < MAX_TREE_FILES:
        here, depth = todo.pop()
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if depth < MAX_TREE_DEPTH and entry.name not in _SKIP_DIRS:
                    todo.append((path, depth + 1))
            elif entry.is_file(follow_symlinks=False) and len(out) < MAX_TREE_FILES:
                out.append((f"{label}{path.relative_to(folder)}", path))
    return out


def _too_deep(folder: Path, max_folders: int = MAX_TREE_FILES) -> str | None:
    """The first folder (relative) deeper than MAX_TREE_DEPTH under folder, or None; found by an
    iterative walk that looks at no more than max_folders folders (nbgrader's own walk recurses
    and would fail on such a tree)."""
    todo, looked = [(folder, 0)], 0
    while todo and looked < max_folders:
        here, depth = todo.pop()
        looked += 1
        try:
            subs = [Path(e.path) for e in os.scandir(here) if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        if subs and depth + 1 > MAX_TREE_DEPTH:
            return str(here.relative_to(folder))[:80]
        todo += [(sub, depth + 1) for sub in subs]
    return None


def submission_digest(cfg: Config, student: str, assignment: str) -> str:
    """Hash of every file of submitted/<student>/<assignment>/ (notebooks, timestamp.txt, data)."""
    from nbgrader.coursedir import CourseDirectory

    cd = CourseDirectory(config=cfg)
    return _digest(_tree(Path(cd.format_path(cd.submitted_directory, student, assignment))))


def assignment_digest(cfg: Config, assignment: str) -> str:
    """Hash of what grades the assignment: its source notebooks (hidden cells, points), its folder
    course_root/assignments/<id>/ (checks.py, answers.toml), and the grader itself (grader_files)."""
    from nbgrader.coursedir import CourseDirectory

    cd = CourseDirectory(config=cfg)
    files = _tree(Path(cd.format_path(cd.source_directory, ".", assignment)), "source/")
    files += _tree(Path(cfg.GradingExecute.course_root, "assignments", assignment), "assignment/")
    return _digest(files + grader_files(cfg))


def grader_files(cfg: Config) -> list[tuple[str, Path]]:
    """The code every hidden check runs, as (name, path): the cnngrader and cnnlib packages that grade
    (the reference implementations are cnnlib's) and the course's nbgrader_config.py."""
    import importlib.util

    import cnngrader

    files = []
    for name, folder in (("cnngrader", Path(cnngrader.__file__).parent),
                         ("cnnlib", Path(importlib.util.find_spec("cnnlib").origin).parent)):  # no torch import
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder)
            if not _SKIP_DIRS.intersection(rel.parts):
                files.append((f"{name}/{rel.as_posix()}", path))
    config = Path(cfg.GradingExecute.course_root, "nbgrader_config.py")
    return files + ([("nbgrader_config.py", config)] if config.is_file() else [])


def _state_path(cfg: Config) -> Path:
    return Path(cfg.CourseDirectory.root, "autograded", STATE_FILE)


def read_state(cfg: Config) -> dict[str, dict]:
    """The digests each submission was last graded from ({} when none or unreadable)."""
    try:
        state = json.loads(_state_path(cfg).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _record_state(cfg: Config, entries: dict[str, dict], merge: bool = False) -> None:
    """Set submissions' entries (merge: update them), into the file as it is now (another machine
    grading its share of the class into the same directory keeps its entries)."""
    path = _state_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = read_state(cfg)
    for key, entry in entries.items():
        state[key] = {**state.get(key, {}), **entry} if merge else entry
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)  # a run killed half-way leaves the old state, never a torn one


def split_up_to_date(cfg: Config, subs: Sequence[tuple[str, str]], digests: dict[tuple[str, str], tuple[str, str]]
                     ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(to grade, up to date). A submission is up to date when it is autograded (autograded_submissions)
    and its files and what grades it (assignment_digest) hash to what they were when it was last
    graded successfully."""
    state = read_state(cfg)
    done = set(autograded_submissions(cfg))
    todo, kept = [], []
    for sid, aid in subs:
        entry = state.get(f"{sid}/{aid}", {})
        same = (entry.get("submission"), entry.get("assignment")) == digests[(sid, aid)]
        if same and (sid, aid) in done:
            kept.append((sid, aid))
        else:
            todo.append((sid, aid))
    return todo, kept


# ---------------------------------------------------------------------------------------
# the roster: student ids -> names and LMS ids (roster.csv in the grading directory)
# ---------------------------------------------------------------------------------------
ROSTER = "roster.csv"
ROSTER_FIELDS = ("id", "first_name", "last_name", "lms_user_id", "sis_user_id", "section", "email")


def load_roster(cfg: Config) -> dict[str, dict[str, str]]:
    """root/roster.csv as student id -> its row (ROSTER_FIELDS; absent columns are ""); {} without one.

    The header names the columns (id is required, the others optional, any order)."""
    path = Path(cfg.CourseDirectory.root, ROSTER)
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "id" not in [f.strip() for f in reader.fieldnames]:
            raise ValueError(f"{path}: the header must name an 'id' column (columns: {', '.join(ROSTER_FIELDS)})")
        out = {}
        for row in reader:
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if row.get("id"):
                out[row["id"]] = {f: row.get(f, "") for f in ROSTER_FIELDS}
    return out


def sync_students(cfg: Config, students: Iterable[str]) -> None:
    """Put the roster's students and `students` into the gradebook with their names and LMS ids.

    Without a roster entry a student keeps the names the gradebook has; one with none gets the
    student id as last name (nbgrader's formgrader would show "None, None")."""
    from nbgrader.api import Gradebook, MissingEntry

    roster = load_roster(cfg)
    with Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id) as gb:
        for sid in sorted(set(students) | set(roster)):
            if sid in roster:
                r = roster[sid]
                gb.update_or_create_student(sid, first_name=r["first_name"], last_name=r["last_name"] or sid,
                                            lms_user_id=r["lms_user_id"] or None, email=r["email"] or None)
                continue
            try:
                student = gb.find_student(sid)
            except MissingEntry:
                student = None
            if student is None or (not student.last_name and not student.first_name):
                gb.update_or_create_student(sid, last_name=sid, first_name="")


def grade_course(
    root: str | Path | None = None,
    jobs: int = 1,
    students: Iterable[str] | None = None,
    assignments: Iterable[str] | None = None,
    feedback: bool = True,
    report: bool = True,
    config: Config | None = None,
    course: Course | None = None,
    force: bool = False,
    **paths: str | Path,
) -> GradeResult:
    """Grade the new and changed submissions in root/submitted/<student>/<assignment>/ (all of
    them with force=True) with `jobs` workers; `students` and `assignments` limit the run.

    A submission is up to date (kept, not regraded) when it and what grades it (its assignment's
    source, checks and answers, and the grader's code) are unchanged since it was last graded
    (split_up_to_date). Writes the gradebook,
    root/autograded/, root/feedback/ (feedback=True) for every autograded submission,
    root/grades.csv and root/reports/ (report=True). `config` is merged over the course
    configuration (tests use it for a short Execute.timeout); `paths` are CourseDirectory
    overrides. The gradebook, grades.csv and feedback do not depend on `jobs`.
    """
    t_start = time.perf_counter()
    cfg = course_config(root, course, **paths)
    if config is not None:
        cfg.merge(config)
    if cfg.GradingExecute.get("secret") is None:
        cfg.GradingExecute.secret = secrets.randbits(62)  # one per run, in memory: the workers get it with cfg
    jobs = max(1, int(jobs))
    root = Path(cfg.CourseDirectory.root)
    sandboxed = sandbox_enabled(cfg)
    if sandboxed:  # no silent fallback: stop before any kernel starts
        from cnngrader.pipeline.sandbox import check_available

        check_available()
    subs = find_submissions(cfg, students, assignments)
    unreadable = {sa: why for sa in subs if (why := prepare_submission(cfg, *sa))}
    subs = [sa for sa in subs if sa not in unreadable]
    assignment_digests = {aid: assignment_digest(cfg, aid) for aid in {a for _, a in subs}}
    digests = {(sid, aid): (submission_digest(cfg, sid, aid), assignment_digests[aid]) for sid, aid in subs}
    kept: list[tuple[str, str]] = []
    if not force and subs and Path(cfg.CourseDirectory.root, "autograded").is_dir():
        subs, kept = split_up_to_date(cfg, subs, digests)
    result = GradeResult(root=root, jobs=jobs, submissions=subs, sandboxed=sandboxed, up_to_date=kept)
    result.failures.extend(unreadable.values())
    if not subs and not kept:
        log.warning("nothing to grade in %s", root / "submitted")
    for sid, aid in kept:
        log.info("%s/%s: up to date", sid, aid)
    if kept and not subs:
        log.info("nothing graded: %d submission(s) up to date (FORCE=1 / --force regrades)", len(kept))
    with tempfile.TemporaryDirectory(prefix="cnn-grade-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        unknown = _ensure_assignments(cfg, {a for _, a in subs})
        for sid, aid in [sa for sa in subs if sa[1] in unknown]:
            result.failures.append(f"unknown assignment {sid}/{aid}: not in the gradebook nor in the source directory")
        subs = result.submissions = [sa for sa in subs if sa[1] not in unknown]
        sync_students(cfg, {s for s, _ in subs})  # names from roster.csv, before the workers copy the gradebook
        note_forged_claims(cfg, subs)
        source_db = _phase1_db(cfg, {a for _, a in subs}, work)
        result.seconds["prepare"] = time.perf_counter() - t

        # phases 1 and 2, pipelined: the workers execute, and this process records each
        # submission as soon as its notebook has run (the gradebook sees one writer, here)
        t = time.perf_counter()
        tasks = sorted(subs, key=lambda sa: (sa[1], sa[0]))
        recording = 0.0

        def record(outcome: tuple[str, str, float, str | None]) -> None:
            nonlocal recording
            sid, aid, sec, error = outcome
            result.execute_seconds[(sid, aid)] = sec
            if error:  # could not be executed: reported, not recorded
                result.failures.append(f"execute {sid}/{aid}: {_last_line(error)}")
                log.error("executing %s/%s failed:\n%s", sid, aid, error)
                return
            t0 = time.perf_counter()
            error = _record(cfg, work, sid, aid)
            recording += time.perf_counter() - t0
            if error:
                result.failures.append(f"record {sid}/{aid}: {_last_line(error)}")
                log.error("recording %s/%s failed:\n%s", sid, aid, error)
                return
            _record_state(cfg, {f"{sid}/{aid}": dict(zip(("submission", "assignment"), digests[(sid, aid)]),
                                                     seconds=round(sec, 2))})
            log.info("graded %s/%s in %.1f s", sid, aid, sec)

        pool = None
        if jobs > 1:
            # Workers compute the hidden checks' references with torch: fork them from a clean
            # forkserver, never from this process, whose torch thread pools a fork would deadlock.
            ctx = get_context("forkserver") if sys.platform.startswith("linux") else get_context("spawn")
            if sys.platform.startswith("linux"):
                ctx.set_forkserver_preload(["torch", "nbgrader.converters"])
            pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx)
        try:
            if pool is None:
                for s, a in tasks:
                    record(_execute_one(cfg, tmp, 1, s, a, source_db))
            else:
                futures = [pool.submit(_execute_one, cfg, tmp, jobs, s, a, source_db) for s, a in tasks]
                for future in as_completed(futures):
                    record(future.result())
            result.seconds["execute"] = time.perf_counter() - t  # wall time, recording included
            result.seconds["record"] = recording

            # feedback only reads the gradebook: the workers share it. One converter per student
            # (its HTML templates are compiled once for all of that student's notebooks).
            if feedback:  # for every autograded submission whose grades changed since its feedback
                t = time.perf_counter()
                prints = grade_fingerprints(cfg)
                state = read_state(cfg)
                graded_now = set(result.execute_seconds)
                by_student: dict[str, list[str]] = {}
                for sid, aid in autograded_submissions(cfg):
                    html = any(Path(root, "feedback", sid, aid).glob("*.html"))
                    if (sid, aid) in graded_now or not html or state.get(f"{sid}/{aid}", {}).get("feedback") != prints.get((sid, aid)):
                        by_student.setdefault(sid, []).append(aid)
                args = [(cfg, sid, aids) for sid, aids in by_student.items()]
                if pool is None:
                    outs = [_feedback_student(*a) for a in args]
                else:
                    outs = list(pool.map(_feedback_student, *zip(*args)))
                done = {}
                for sid, error in outs:
                    if error:
                        result.failures.append(f"feedback {sid}: {_last_line(error)}")
                    else:
                        done.update({f"{sid}/{aid}": {"feedback": prints.get((sid, aid))} for aid in by_student[sid]})
                _record_state(cfg, done, merge=True)
                result.feedback = sorted((sid, aid) for sid, aids in by_student.items() for aid in aids)
                wrap_feedback(root / "feedback")
                result.seconds["feedback"] = time.perf_counter() - t
        finally:
            if pool is not None:
                pool.shutdown()  # each worker kills its own warm spare as it exits
            from cnngrader.pipeline.kernel_start import stop_spares

            stop_spares()  # and this process's (serial grading), which no later notebook will use

    t = time.perf_counter()
    result.grades_csv = export_grades(cfg)
    result.seconds["export"] = time.perf_counter() - t
    if report:
        from cnngrader.pipeline.report import write_report

        t = time.perf_counter()
        result.report_dir = write_report(cfg, root / "reports")
        result.seconds["report"] = time.perf_counter() - t
    result.seconds["total"] = time.perf_counter() - t_start
    return result


def sandbox_enabled(cfg: Config) -> bool:
    """Whether grading kernels run sandboxed (c.GradingExecute.sandbox, True unless set False)."""
    return bool(cfg.GradingExecute.get("sandbox", True)) if "GradingExecute" in cfg else True


def _feedback_student(cfg: Config, student: str, assignments: Sequence[str]) -> tuple[str, str | None]:
    """Feedback for the student's autograded submissions among `assignments`."""
    have = [a for a in assignments if Path(cfg.CourseDirectory.root, "autograded", student, a).is_dir()]
    if not have:
        return student, None  # nothing was recorded (already reported)
    if len(have) == len(assignments) == len(_autograded(cfg, student)):
        return student, generate_feedback(cfg, student, "*")
    errors = [e for e in (generate_feedback(cfg, student, a) for a in have) if e]
    return student, errors[0] if errors else None


def grade_fingerprints(cfg: Config) -> dict[tuple[str, str], str]:
    """(student, assignment) -> a hash of everything its feedback shows from the gradebook: scores
    (auto, manual, extra credit), comments and the late penalty. A manual grade changes it."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id) as gb:
        for a in gb.assignments:
            for sub in a.submissions:
                facts = [str(sub.timestamp), sub.late_submission_penalty]
                for snb in sorted(sub.notebooks, key=lambda n: n.name):
                    facts += sorted((snb.name, g.name, g.auto_score, g.manual_score, g.extra_credit) for g in snb.grades)
                    facts += sorted((snb.name, c.name, c.auto_comment or "", c.manual_comment or "") for c in snb.comments)
                out[(sub.student.id, a.name)] = hashlib.sha256(json.dumps(facts, default=str).encode()).hexdigest()
    return out


def autograded_submissions(cfg: Config) -> list[tuple[str, str]]:
    """(student, assignment) of every autograded submission the gradebook has, sorted."""
    from nbgrader.api import Gradebook

    base = Path(cfg.CourseDirectory.root, "autograded")
    with Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id) as gb:
        recorded = {(s.student.id, a.name) for a in gb.assignments for s in a.submissions}
    return sorted(sa for sa in recorded if any((base / sa[0] / sa[1]).glob("*.ipynb")))


# Long reasons wrap instead of scrolling sideways (nbconvert's output <pre> does not wrap).
WRAP_CSS = ('<style id="cnngrader-wrap">.jp-OutputArea-output pre, .output_area pre, .output pre '
            '{ white-space: pre-wrap; overflow-wrap: anywhere; }</style>')


def wrap_feedback(folder: Path) -> int:
    """Add WRAP_CSS and the Content-Security-Policy (sanitize.add_csp: no script runs) to every
    feedback page under folder that lacks them; returns the pages changed."""
    from cnngrader.pipeline.sanitize import add_csp

    changed = 0
    for rel in safefiles.scan(folder, _NO_LIMITS).files:
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


def _autograded(cfg: Config, student: str) -> list[str]:
    return [p.name for p in Path(cfg.CourseDirectory.root, "autograded", student).iterdir() if p.is_dir()]


def generate_feedback(cfg: Config, student: str, assignment: str) -> str | None:
    """nbgrader generate_feedback for a student's autograded submission(s) (`assignment` may be
    "*"); the error text or None."""
    from nbgrader.converters import GenerateFeedback

    if assignment != "*" and not Path(cfg.CourseDirectory.root, "autograded", student, assignment).is_dir():
        return "no autograded submission"
    app = GenerateFeedback(coursedir=_coursedir(cfg, student_id=student, assignment_id=assignment), config=cfg)
    app.force = True
    result = _run_app(app)
    return None if result["success"] else (result.get("log", "") + "\n" + (result.get("error") or ""))


GRADES_FIELDS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                 "raw_score", "late_submission_penalty", "score", "max_score", "status"]


def export_grades(cfg: Config, dest: str | Path | None = None) -> Path:
    """The whole gradebook as root/grades.csv (or dest), as grade_rows gives it."""
    from nbgrader.api import Gradebook

    dest = Path(dest) if dest else Path(cfg.CourseDirectory.root, "grades.csv")
    with Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id) as gb:
        write_grades(grade_rows(gb), dest)
    return dest


def grade_rows(gb, students: Iterable[str] = (), assignments: Iterable[str] = ()) -> list[dict[str, str]]:
    """nbgrader's CSV export as rows (its columns, one row per assignment and student, sorted by
    assignment then student) plus a status column, "submitted" or "missing". A missing submission
    has empty scores, not nbgrader's 0.0; a submitted blank notebook scores 0. students,
    assignments: only these ids (default: all)."""
    students, assignments = set(students), set(assignments)
    subs = {(s.assignment.name, s.student.id): s for a in gb.assignments for s in a.submissions}
    rows = []
    for a in gb.assignments:
        if assignments and a.name not in assignments:
            continue
        for st in gb.students:
            if students and st.id not in students:
                continue
            row = {"assignment": a.name, "duedate": a.duedate, "student_id": st.id, "last_name": st.last_name,
                   "first_name": st.first_name, "email": st.email, "max_score": a.max_score}
            sub = subs.get((a.name, st.id))
            if sub is None:
                row.update(timestamp="", raw_score="", late_submission_penalty="", score="", status="missing")
            else:
                row.update(timestamp=sub.timestamp, raw_score=sub.score,
                           late_submission_penalty=sub.late_submission_penalty or 0.0, score=final_score(sub),
                           status="submitted")
            rows.append({k: "" if v is None else str(v) for k, v in row.items()})
    rows.sort(key=lambda r: (r["assignment"], r["student_id"]))
    return rows


def final_score(sub) -> float:
    """A gradebook submission's score after its late penalty, never below 0."""
    return max(0.0, float(sub.score) - float(sub.late_submission_penalty or 0.0))


def write_grades(rows: list[dict[str, str]], dest: str | Path) -> None:
    with open(dest, "w", newline="") as fh:
        writer = csvsafe.DictWriter(fh, fieldnames=GRADES_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------
UNSANDBOXED = "grading ran UNSANDBOXED (--unsandboxed / c.GradingExecute.sandbox = False): every submission was trusted"


def summary(result: GradeResult) -> str:
    """What a run did, for the terminal: each graded notebook's time, the up-to-date ones, the outputs."""
    students = sorted({s for s, _ in result.submissions})
    lines = [] if result.sandboxed else [f"WARNING: {UNSANDBOXED}"]
    if result.submissions:
        lines.append(f"graded {result.notebooks} notebook(s) of {len(students)} student(s) with {result.jobs} "
                     f"worker(s) in {result.seconds.get('total', 0):.1f} s")
    else:
        lines.append(f"nothing graded ({result.seconds.get('total', 0):.1f} s)")
    if result.up_to_date:
        lines.append(f"  up to date, kept: {len(result.up_to_date)} notebook(s) "
                     f"(unchanged since graded; FORCE=1 regrades)")
    lines.append("  phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items() if k != "total")
                 + " (recording overlaps execution)")
    if result.execute_seconds:
        lines.append("  seconds per notebook (execution):")
        for (sid, aid), sec in sorted(result.execute_seconds.items()):
            lines.append(f"    {sid:<20} {aid:<28} {sec:6.1f}")
    if result.feedback or result.up_to_date:
        lines.append(f"  feedback: {len(result.feedback)} notebook(s) written (pages whose grades did not change are kept)")
    if result.grades_csv:
        lines.append(f"  grades: {result.grades_csv}")
    if result.report_dir:
        lines.append(f"  report: {result.report_dir / 'report.md'}")
    for failure in result.failures:
        lines.append(f"  FAILED {failure}")
    return "\n".join(lines)

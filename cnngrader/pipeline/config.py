"""The course's nbgrader configuration, and the paths of one grading run computed once from it.

Every step of the pipeline reads the course's nbgrader_config.py, next to course.toml; only the
paths change when submissions in another directory (a test's temporary one) are graded.

    cfg = course_config(root)           # nbgrader's Config: what its converters need
    paths = CoursePaths.from_config(cfg)  # where everything is: what the steps need
"""
from __future__ import annotations

import functools
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import nbgrader.api
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from nbgrader.dbutil import ALEMBIC_DIR
from nbgrader.utils import capture_log
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from cnngrader.course import Course, load_course

# nbgrader 0.9 with SQLAlchemy 2 warns about its own session use on every submission.
warnings.filterwarnings("ignore", module="nbgrader")
warnings.filterwarnings("ignore", message=".*not in session.*")

# nbgrader runs the `alembic` script by name when it creates a gradebook: make this
# environment's scripts reachable even when it was not activated (.venv/bin/python -m ...),
# for nbgrader's own commands run in a subprocess.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")


@functools.lru_cache(maxsize=1)
def alembic_head() -> str:
    """The head revision of nbgrader's gradebook schema, which a new gradebook is stamped with: what
    nbgrader.api.get_alembic_version reads from `alembic heads` in a subprocess (2.5 s, for every new
    gradebook), read here from the same migration scripts in a millisecond."""
    from alembic.script import ScriptDirectory  # 0.14 s to import: only when a gradebook is created

    return ScriptDirectory(ALEMBIC_DIR).get_current_head()


nbgrader.api.get_alembic_version = alembic_head  # looked up there when a Gradebook creates its tables

UNSANDBOXED = "grading ran UNSANDBOXED (--unsandboxed / c.GradingExecute.sandbox = False): every submission was trusted"


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
    # whose hidden checks grade the submissions: GradingExecute reads it in the kernel's host process
    cfg.GradingExecute.course_root = str(course.root)
    return cfg


@dataclass(frozen=True)
class CoursePaths:
    """Where one grading run reads and writes, from nbgrader's CourseDirectory settings.

    root is the grading directory (submitted/, autograded/, feedback/, grades.csv, reports/);
    course_root the course whose assignments/, course.toml and nbgrader_config.py grade them.
    """

    root: Path
    course_root: Path
    course_id: str
    db_url: str
    structure: str  # nbgrader's directory_structure, "{nbgrader_step}/{student_id}/{assignment_id}"
    source_directory: str
    submitted_directory: str
    feedback_directory: str

    @classmethod
    def from_config(cls, cfg: Config) -> CoursePaths:
        """The paths of cfg: its CourseDirectory, and the course root (the one place it is read)."""
        cd = CourseDirectory(config=cfg)
        course_root = cfg.GradingExecute.get("course_root") if "GradingExecute" in cfg else None
        return cls(root=Path(cd.root), course_root=Path(course_root or cd.root), course_id=cd.course_id,
                   db_url=cd.db_url, structure=cd.directory_structure, source_directory=cd.source_directory,
                   submitted_directory=cd.submitted_directory,
                   feedback_directory=cd.feedback_directory)

    @classmethod
    def of(cls, where: Config | CoursePaths) -> CoursePaths:
        """where itself, or the paths of a Config (the public helpers take either)."""
        return where if isinstance(where, CoursePaths) else cls.from_config(where)

    def gradebook(self) -> Gradebook:
        """The gradebook, opened (use it as a context manager: it closes its session)."""
        return Gradebook(self.db_url, self.course_id)

    def _format(self, step: str, student: str, assignment: str) -> Path:
        # as CourseDirectory.format_path: an absolute step (a source directory elsewhere) is used as is
        return Path(os.path.join(self.root, self.structure.format(
            nbgrader_step=step, student_id=student, assignment_id=assignment)))

    def submission(self, student: str, assignment: str) -> Path:
        """submitted/<student>/<assignment>/"""
        return self._format(self.submitted_directory, student, assignment)

    def source(self, assignment: str) -> Path:
        """The assignment's instructor notebooks (solutions/<assignment>/ of the course)."""
        return self._format(self.source_directory, ".", assignment)

    def feedback_folder(self, student: str, assignment: str) -> Path:
        return self._format(self.feedback_directory, student, assignment)

    @property
    def sources(self) -> Path:
        """The folder of every assignment's instructor notebooks."""
        return Path(self.root, self.source_directory)

    @property
    def submitted(self) -> Path:
        return Path(self.root, self.submitted_directory)

    @property
    def autograded(self) -> Path:
        return self.root / "autograded"

    @property
    def feedback(self) -> Path:
        return self.root / "feedback"

    @property
    def grades_csv(self) -> Path:
        return self.root / "grades.csv"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def roster(self) -> Path:
        return self.root / "roster.csv"

    def assignment_folder(self, assignment: str) -> Path:
        """course_root/assignments/<id>/: its checks.py and answers.toml."""
        return self.course_root / "assignments" / assignment


def coursedir(cfg: Config, **ids: str) -> CourseDirectory:
    """nbgrader's CourseDirectory of cfg, with student_id / assignment_id set (an nbgrader converter's)."""
    cd = CourseDirectory(config=cfg)
    for key, value in ids.items():
        setattr(cd, key, value)
    return cd


def run_app(app) -> str | None:
    """Start an nbgrader converter; None when it succeeded, else its log and error (nbgrader's capture_log)."""
    result = capture_log(app)
    return None if result["success"] else (result.get("log", "") + "\n" + (result.get("error") or ""))


def last_line(text: str) -> str:
    """The last non-blank line of an error text (a failure's one line)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed"


def sandbox_enabled(cfg: Config) -> bool:
    """Whether grading kernels run sandboxed (c.GradingExecute.sandbox, True unless set False)."""
    return bool(cfg.GradingExecute.get("sandbox", True)) if "GradingExecute" in cfg else True

# nbgrader configuration of the course. Run nbgrader (or `make exercises` / `make grade`,
# which call `python -m cnngrader.pipeline`) from the course directory; the pipeline loads
# this same file and only redirects the paths when it grades in another directory.
import os
import sys
import warnings

from cnngrader.course import load_course

c = get_config()  # noqa: F821 (nbgrader defines get_config when it loads this file)
HERE = os.path.dirname(os.path.abspath(__file__))

# nbgrader 0.9's gradebook code makes SQLAlchemy 2 warn "Object of type <SubmittedAssignment> not in
# session, add operation along ... will not proceed" on every autograde: harmless (the objects are
# added right after), and nothing an instructor can act on. Only that message from nbgrader.api is hidden.
warnings.filterwarnings("ignore", message=r"Object of type <\w+> not in session", module=r"nbgrader\.api")

# nbgrader runs the `alembic` script by name when it creates a gradebook: find it next to
# this Python even when the virtual environment is not activated (.venv/bin/nbgrader ...).
if os.path.dirname(sys.executable) not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

# nbgrader lists a submission's files with a glob of the whole folder per file (quadratic in the
# file count): the same listing in one pass (cnngrader/pipeline/listing.py).
from cnngrader.pipeline import listing  # noqa: E402 (beside the setting it installs)

listing.install()

# The hidden checks that grade this course: assignments/<id>/checks.py, listed in course.toml
# next to this file.
c.GradingExecute.course_root = HERE

# -- where things are -------------------------------------------------------------------
c.CourseDirectory.root = HERE  # absolute: nbgrader warns about a relative root on every command
c.CourseDirectory.course_id = load_course(HERE).id  # course.toml's [course] id, "cnn"
c.CourseDirectory.source_directory = "solutions"  # instructor notebooks (solutions + hidden tests)
c.CourseDirectory.release_directory = "exercises"  # student notebooks, committed
# submitted/, autograded/, feedback/ and gradebook.db keep nbgrader's defaults: all git-ignored.
# Several graders or machines: one PostgreSQL gradebook instead of the SQLite file, e.g.
# c.CourseDirectory.db_url = "postgresql://grader:secret@db-host/cnn"

# -- the exchange (JupyterHub): release_assignment, collect, release_feedback -----------------
# One directory shared by the instructor and every student, writable by all (nbgrader's default
# is /srv/nbgrader/exchange; $NBGRADER_EXCHANGE overrides it). Students need the same root and the
# course id in their own nbgrader_config.py: see docs/instructors.md, "Running the course on JupyterHub".
# Nothing else in this file needs an exchange: without one, only the exchange commands fail.
c.Exchange.root = os.environ.get("NBGRADER_EXCHANGE", "/srv/nbgrader/exchange")
# Submissions placed in submitted/ by hand have no timestamp.txt or submission_secret.txt; this
# release_feedback writes the first and skips (with a warning) what the exchange cannot deliver.
c.ExchangeFactory.release_feedback = "cnngrader.pipeline.nbgrader_hooks.ReleaseFeedback"
# collect on a shared hub: an inbound entry counts only if it is a real folder owned by the student its
# name claims; its time is the file system's; symlinks, FIFOs and devices are never followed, and a bad
# entry is skipped with a line (cnngrader/pipeline/collect.py). Where one account owns every submission
# (a test), collect with --ExchangeCollect.check_owner=False.
c.ExchangeFactory.collect = "cnngrader.pipeline.collect.SafeCollect"

# -- the student versions -----------------------------------------------------------------
# exercises/ is generated output (committed so that students can download it): regenerating it is
# idempotent, and `nbgrader generate_assignment ID` then always registers ID in the gradebook too,
# instead of skipping an assignment whose exercises/ folder exists.
c.GenerateAssignment.force = True
c.ClearSolutions.enforce_metadata = True  # a BEGIN SOLUTION block outside a solution cell is an error
c.ClearHiddenTests.enforce_metadata = True  # hidden tests only in locked grade cells

# -- autograding ----------------------------------------------------------------------------
# GradingExecute (cnngrader/pipeline/execute.py) is nbgrader's Execute plus: every kernel in a
# sandbox of its own (no network, a read-only filesystem, cgroup limits on its process tree),
# hidden test cells graded outside the kernel, a dead or hung kernel or a notebook past its time
# scoring the rest of that notebook 0 instead of dropping the submission, and a cap on the output
# kept per cell and per notebook.
c.Autograde.autograde_preprocessors = [
    "cnngrader.pipeline.execute.GradingExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "cnngrader.pipeline.claims.DropForgedClaims",  # the gradebook, not a cell's metadata, says which cell is which
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "cnngrader.pipeline.execute.RestoreCells",  # nbgrader's OverwriteCells; restores deleted cells anywhere
    "cnngrader.pipeline.execute.StableCellIds",  # restored cells get a fixed id, not a random one
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Autograde.create_student = True  # students appear in the gradebook when first graded
# `nbgrader autograde` adds a missing assignment to the gradebook from solutions/, and grades a
# single notebook saved under another name ("02_cross_correlation (1).ipynb"), saying so in the log
# (cnngrader/pipeline/nbgrader_hooks.py; `make grade` does both itself).
c.Autograde.pre_convert_hook = "cnngrader.pipeline.nbgrader_hooks.autograde_pre_convert"
# `nbgrader export` writes the grades.csv of `make grade`: a missing submission has empty scores and
# the status "missing", where nbgrader's own CSV gives it 0.0, as for a blank one.
c.ExportApp.plugin_class = "cnngrader.pipeline.nbgrader_hooks.GradesExport"

# Nothing a student wrote runs in a browser: every notebook nbconvert renders as HTML (the feedback
# pages and the formgrader's pages) is cleaned first (cnngrader/pipeline/sanitize.py: no script, event
# handler or javascript: URL), and each feedback page gets a Content-Security-Policy under which no
# script runs (`make grade` adds it, and so does `nbgrader generate_feedback` through this hook).
c.HTMLExporter.preprocessors = ["cnngrader.pipeline.sanitize.SafeHTML"]
c.GenerateFeedback.post_convert_hook = "cnngrader.pipeline.nbgrader_hooks.feedback_post_convert"

# Per-cell time limit. The longest legitimate cell (a short LeNet training run) takes a few
# seconds on a laptop core; an endless loop costs its own cell only: the kernel is
# interrupted (KeyboardInterrupt), and the later cells and hidden checks that would run the
# function that did not return fail at once instead of waiting again. A hidden check's calls
# have their own, shorter limits (cnngrader.grading.core.call_limit).
c.Execute.timeout = 30
c.Execute.interrupt_on_timeout = True
c.Execute.kernel_name = "python3"  # the course's own environment (the venv's ipykernel)
c.Execute.shutdown_kernel = "immediate"  # a graded kernel has nothing to save; don't wait for it
c.GradingExecute.coalesce_streams = True  # one output per stream: the same bytes however the kernel chunked them
c.Execute.extra_arguments = ["--HistoryManager.enabled=False", "--IPKernelApp.log_level=ERROR"]
# Every kernel runs in a sandbox of its own (cnngrader/pipeline/sandbox.py: bubblewrap + cgroups);
# grading stops with what to install if it cannot be set up. False only with a reason (UNSAFE=1).
c.GradingExecute.sandbox = True
c.GradingExecute.notebook_timeout = 600  # seconds per notebook, all cells together
# Memory, tasks, CPU time and disk of each kernel's sandbox: the defaults are sandbox.Limits's, which
# GradingExecute's settings read; override them here, e.g. c.GradingExecute.max_memory_mb = 8192.
c.GradingExecute.unresponsive_grace = 10.0  # seconds to come back after an interrupt

# Deleted or edited test cells come back from the gradebook (their checksums differ).
c.RestoreCells.add_missing_cells = True

# Any stderr output zeroes a graded cell. The grader (cnngrader.kernel) captures warnings inside the
# checks; as a second line, drop stderr outputs that consist of Python warnings only
# ("path:line: SomethingWarning: message" plus its indented source line).
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"\A(?:[^\n]*:\d+: [A-Za-z_]*Warning: [^\n]*\n(?:[ \t]+[^\n]*\n)*)+\Z"

c.LimitOutput.max_lines = 1000
c.LimitOutput.max_traceback = 100

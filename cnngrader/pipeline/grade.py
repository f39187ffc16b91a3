"""Grading a class: grade_course runs the pipeline's steps, one module each, in this order.

1. plan (plan.py): which submissions, prepared (prepare.py), and which are up to date (cache.py);
   the gradebook gets their assignments and students;
2. execute (workers.py): each submission runs in the sandbox (execute.GradingExecute), in worker
   processes, each with its own copy of the gradebook;
3. record (record.py): as soon as a submission has run, this process writes it into the gradebook
   (nbgrader's autograde with the outputs replayed), the gradebook's only writer; recording
   overlaps the workers' execution of the next submissions, and a progress bar (progress.py)
   counts each submission there;
4. feedback (feedback.py): for the submissions whose gradebook grades changed;
5. export (export.py): grades.csv;
6. report (report.py): reports/.

So N workers give the very gradebook one worker gives. The course's paths are computed once
(config.CoursePaths). The Python API for benchmarks is grade_course() and make_submissions(); the
command line is cnngrader.pipeline.__main__.
"""
from __future__ import annotations

import secrets
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from traitlets.config import Config

from cnngrader.course import Course
from cnngrader.pipeline.cache import Cache, Submission, assignment_digest, grader_files, read_state
from cnngrader.pipeline.cluster import ClusterWorkers, check_cluster
from cnngrader.pipeline.config import UNSANDBOXED, CoursePaths, course_config, sandbox_enabled
from cnngrader.pipeline.export import GRADES_FIELDS, export_grades, write_grades
from cnngrader.pipeline.feedback import write_feedback
from cnngrader.pipeline.generate import generate
from cnngrader.pipeline.plan import Plan, find_submissions, plan, ready_gradebook
from cnngrader.pipeline.prepare import prepare_submission
from cnngrader.pipeline.progress import Progress, rate_text
from cnngrader.pipeline.record import Recorder
from cnngrader.pipeline.report import write_report
from cnngrader.pipeline.sandbox import check_available
from cnngrader.pipeline.submissions import make_submissions, solution_submission
from cnngrader.pipeline.workers import Workers, phase1_db

# The names tests, benchmarks and the docs import from here, whose homes are the step modules.
__all__ = ["GRADES_FIELDS", "GradeResult", "assignment_digest", "course_config", "export_grades", "find_submissions",
           "generate", "grade_course", "grader_files", "make_submissions", "prepare_submission", "read_state",
           "solution_submission", "summary", "write_grades"]


@dataclass
class GradeResult:
    """What grade_course did. Seconds are wall-clock."""

    root: Path
    jobs: int
    submissions: list[Submission]  # (student, assignment), in grading order
    # phase -> seconds: prepare, execute (wall time of execution and recording, which overlap),
    # record (the part of it spent recording), feedback, export, report, and total
    seconds: dict[str, float] = field(default_factory=dict)
    record_cpu_seconds: float = 0.0  # the recording's CPU time (record's wall time less waiting for a core or disk)
    execute_seconds: dict[Submission, float] = field(default_factory=dict)  # one submission's execution
    failures: list[str] = field(default_factory=list)  # submissions nbgrader could not grade (not student errors)
    lost: list[str] = field(default_factory=list)  # "student/assignment: why": graded, but the kernel was lost
    grades_csv: Path | None = None
    report_dir: Path | None = None
    sandboxed: bool = True  # False: kernels ran without a sandbox (the unsafe flag)
    up_to_date: list[Submission] = field(default_factory=list)  # unchanged since graded: kept, not regraded
    feedback: list[Submission] = field(default_factory=list)  # whose feedback was (re)generated
    cluster: str | None = None  # the Dask scheduler whose workers executed the submissions (cluster.py)

    @property
    def notebooks(self) -> int:
        return len(self.submissions)

    def per_student(self) -> dict[str, float]:
        """Execution seconds per student (summed over that student's submissions)."""
        out: dict[str, float] = {}
        for (sid, _aid), sec in self.execute_seconds.items():
            out[sid] = out.get(sid, 0.0) + sec
        return out

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self.seconds[phase] = time.perf_counter() - t


def run_config(root: str | Path | None = None, course: Course | None = None, config: Config | None = None,
               **paths: str | Path) -> Config:
    """course_config with `config` merged over it, and the run's secret: one per run, in memory (the
    workers get it with the configuration)."""
    cfg = course_config(root, course, **paths)
    if config is not None:
        cfg.merge(config)
    if cfg.GradingExecute.get("secret") is None:
        cfg.GradingExecute.secret = secrets.randbits(62)
    return cfg


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
    cluster: str | None = None,
    progress: str = "auto",
    **paths: str | Path,
) -> GradeResult:
    """Grade the new and changed submissions in root/submitted/<student>/<assignment>/ (all of
    them with force=True) with `jobs` workers; `students` and `assignments` limit the run.

    A submission is up to date (kept, not regraded) when it and what grades it (its assignment's
    source, checks and answers, and the grader's code) are unchanged since it was last graded
    (cache.Cache). Writes the gradebook, root/autograded/, root/feedback/ (feedback=True) for every
    autograded submission whose grades changed, root/grades.csv and root/reports/ (report=True).
    `config` is merged over the course configuration (tests use it for a short Execute.timeout);
    `paths` are CourseDirectory overrides. The gradebook, grades.csv and feedback do not depend on `jobs`.
    `cluster`: a Dask scheduler's address: the submissions execute on its workers (cluster.py), recorded here.
    `progress`: how the run shows its progress (progress.MODES: a bar on a terminal by default)."""
    t_start = time.perf_counter()
    cfg = run_config(root, course, config, **paths)
    where = CoursePaths.from_config(cfg)
    _ready(cfg, cluster)
    cache = Cache(where)
    planned = plan(where, cache, students, assignments, force)
    result = GradeResult(root=where.root, jobs=max(1, int(jobs)), submissions=planned.todo,
                         sandboxed=sandbox_enabled(cfg), up_to_date=planned.kept, cluster=cluster)
    pool = _workers(cfg, cluster, planned, result.jobs)
    with tempfile.TemporaryDirectory(prefix="cnn-grade-") as tmp, pool as workers:
        work = Path(tmp)
        with result.timed("prepare"):
            ready_gradebook(cfg, where, planned)
            result.submissions = planned.todo
            source_db = phase1_db(where, {a for _, a in planned.todo}, work)
        result.failures.extend(planned.failures)
        recorder = Recorder(cfg, work, cache, planned.digests, result.execute_seconds, result.failures,
                            progress=Progress(len(planned.todo), mode=progress))
        with result.timed("execute"), recorder.progress, recorder:  # wall time, recording included
            for outcome in workers.execute(cfg, work, planned.in_grading_order(cache.typical_seconds()), source_db):
                recorder(outcome)
        result.lost, result.record_cpu_seconds = recorder.progress.lost, recorder.cpu_seconds
        result.seconds["record"] = recorder.seconds
        if feedback:
            with result.timed("feedback"):
                graded_now = set(result.execute_seconds)
                result.feedback, failures = write_feedback(cfg, where, cache, graded_now, workers.map)
                result.failures.extend(failures)
    with result.timed("export"):
        result.grades_csv = export_grades(where)
    if report:
        with result.timed("report"):
            result.report_dir = write_report(cfg, where.reports)
    result.seconds["total"] = time.perf_counter() - t_start
    return result


def _workers(cfg: Config, cluster: str | None, planned: Plan, jobs: int) -> Workers | ClusterWorkers:
    """Where the submissions execute. Entered before the gradebook is prepared: a pool's workers start meanwhile
    (their imports, their kernels' zygotes), when there is something to grade."""
    if cluster:
        return ClusterWorkers(cluster, cfg, planned.digests)
    return Workers(jobs, cfg if planned.todo else None)


def _ready(cfg: Config, cluster: str | None) -> None:
    """Stop before any work where grading cannot run: a refused cluster address or missing certificates
    (cluster.check_cluster), or no sandbox on this machine (no silent fallback)."""
    if cluster:
        check_cluster(cluster, cfg)
    elif sandbox_enabled(cfg):
        check_available()


def summary(result: GradeResult) -> str:
    """What a run did, for the terminal: each graded notebook's time, the up-to-date ones, the outputs, the
    failures, and last the rate in notebooks per minute."""
    students = sorted({s for s, _ in result.submissions})
    lines = [] if result.sandboxed else [f"WARNING: {UNSANDBOXED}"]
    if result.submissions:
        where = f"the Dask cluster at {result.cluster}" if result.cluster else f"{result.jobs} worker(s)"
        lines.append(f"graded {result.notebooks} notebook(s) of {len(students)} student(s) with {where} "
                     f"in {result.seconds.get('total', 0):.1f} s")
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
        lines.append(f"  feedback: {len(result.feedback)} notebook(s) written "
                     "(pages whose grades did not change are kept)")
    if result.grades_csv:
        lines.append(f"  grades: {result.grades_csv}")
    if result.report_dir:
        lines.append(f"  report: {result.report_dir / 'report.md'}")
    for failure in result.failures:
        lines.append(f"  FAILED {failure}")
    for lost in result.lost:
        lines.append(f"  KERNEL LOST {lost} (graded: the cells after the loss score 0)")
    # last, so that a log's last line says it: notebooks graded over the whole run's wall time
    total = result.seconds.get("total", 0)
    lines.append(f"  {result.notebooks} notebook(s) in {total:.1f} s: {rate_text(result.notebooks, total)}")
    return "\n".join(lines)

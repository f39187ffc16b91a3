"""JOBS=N against JOBS=1 (cnngrader.pipeline) on the same batch, with identical grades asserted, and the
per-job costs that the scaling model (scaling.py) is computed from, all measured in the same run.

The batch: `students` generated students, each handing in the solution notebooks of all six assignments,
graded once with one worker and once with N, each in a grading directory of its own (sandboxed, warm
spare on, feedback and reports written: a whole `make grade`). The load average is kept before and after
each run: on a machine shared with other work the ratio says little without it.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .machine import REPO
from .report import Result, Skipped

SPEEDUP_TARGET = ">= 1.7"  # time(JOBS=1) / time(JOBS=2), two quiet cores
SECRET = 20261207  # the runs' shared secret (see _grade)
SCORE_FIELDS = ("student_id", "assignment", "raw_score", "score", "max_score", "status")  # grades.csv, no dates


@dataclass
class Costs:
    """What one batch costs, per notebook, measured by run(): the scaling model's inputs."""

    notebooks: int
    jobs: int
    serial_s: float  # wall time of the whole JOBS=1 run
    parallel_s: float  # wall time of the whole JOBS=N run
    execute_s_per_notebook: float  # one notebook's execution, JOBS=1 (mean of GradeResult.execute_seconds)
    core_s_per_notebook: float  # core-seconds per notebook with every core busy: JOBS=N execute phase * N / notebooks
    record_s_per_notebook: float  # the head's serial record step (JOBS=N run), per notebook
    dispatch_s: float  # the local pool's own cost per job: submit -> result of a job that does nothing
    load_average: list  # (before JOBS=1, after JOBS=1, after JOBS=N), 1-minute load averages
    # of record_s_per_notebook, the recording thread's CPU time: the cost without waits for a busy core or the disk
    record_cpu_s_per_notebook: float | None = None

    @property
    def speedup(self) -> float:
        return self.serial_s / self.parallel_s


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def grades_of(root: Path) -> dict[tuple[str, str, str], float]:
    """(student, assignment, grade cell) -> score, from a grading directory's gradebook."""
    from nbgrader.api import Gradebook

    from cnngrader.pipeline.config import CoursePaths, course_config

    out = {}
    with Gradebook(CoursePaths.from_config(course_config(root)).db_url) as gb:
        for assignment in gb.assignments:
            for sub in gb.assignment_submissions(assignment.name):
                for nb in sub.notebooks:
                    for grade in nb.grades:
                        out[(sub.student_id, assignment.name, grade.name)] = grade.score
    return out


def grades_csv(path: Path) -> list[tuple[str, ...]]:
    """grades.csv's rows, without the columns that may differ between two runs of the same batch (none but
    the scores are compared)."""
    import csv

    with open(path, newline="") as fh:
        return sorted(tuple(row[k] for k in SCORE_FIELDS) for row in csv.DictReader(fh))


def _grade(students: int, jobs: int, course, log) -> tuple[float, object, dict, list]:
    from traitlets.config import Config

    from cnngrader.pipeline import grade as autograde

    with tempfile.TemporaryDirectory(prefix=f"cnn-bench-jobs{jobs}-") as tmp:
        root = Path(tmp)
        autograde.make_submissions(root, count=students, course=course)
        log(f"[jobs] {students} students x {len(course.ids)} notebooks with JOBS={jobs} (load {_load()})")
        # One secret for both runs: the cases drawn are then the same, so any difference in the grades is JOBS's
        # doing. With a secret of its own, each run draws other cases.
        config = Config()
        config.GradingExecute.secret = SECRET
        start = time.perf_counter()
        result = autograde.grade_course(root, jobs=jobs, course=course, progress="off", config=config)
        seconds = time.perf_counter() - start
        return seconds, result, grades_of(root), grades_csv(result.grades_csv)


def run(students: int, jobs: int, log=print) -> tuple[list[Result], list[Skipped], Costs | None]:
    """The JOBS=jobs against JOBS=1 figures, and the costs for the scaling model (None when it could not run)."""
    from .grading import missing
    from .scaling import dispatch_overhead

    why = missing()
    if why:
        return [], [Skipped("jobs", why)], None
    from cnngrader.course import load_course

    course = load_course(REPO)
    loads = [_load()]
    serial_s, one, grades_1, csv_1 = _grade(students, 1, course, log)
    loads.append(_load())
    parallel_s, par, grades_n, csv_n = _grade(students, jobs, course, log)
    loads.append(_load())
    for label, result in (("JOBS=1", one), (f"JOBS={jobs}", par)):
        if result.failures or result.lost:
            why = (result.failures + result.lost)[0]
            return [], [Skipped("jobs", f"grading failed with {label}: {why}", True)], None
    if grades_1 != grades_n or csv_1 != csv_n:
        differ = sorted(k for k in grades_1.keys() | grades_n.keys() if grades_1.get(k) != grades_n.get(k))
        return [], [Skipped("jobs", f"JOBS={jobs} gave other grades than JOBS=1: {differ[:5]}", True)], None
    log(f"[jobs] the local pool's cost per job (a job that does nothing, JOBS={jobs})")
    n = one.notebooks
    costs = Costs(
        notebooks=n, jobs=jobs, serial_s=serial_s, parallel_s=parallel_s,
        execute_s_per_notebook=sum(one.execute_seconds.values()) / n,
        core_s_per_notebook=par.seconds["execute"] * jobs / n,
        record_s_per_notebook=par.seconds["record"] / n,
        dispatch_s=dispatch_overhead(jobs), load_average=loads,
        record_cpu_s_per_notebook=par.record_cpu_seconds / n,
    )
    detail = {**asdict(costs), "cells_compared": len(grades_1), "grades_identical": True,
              "phases_serial": one.seconds, "phases_parallel": par.seconds, "cores": os.cpu_count()}
    out = [
        Result("jobs", f"speedup JOBS={jobs} over JOBS=1, {students} students x 6 notebooks, identical grades "
               f"(load average {loads[0]} -> {loads[-1]})", "-", costs.speedup, "x",
               SPEEDUP_TARGET if jobs == 2 else None, detail),
        Result("jobs", f"seconds per notebook, JOBS=1, {students} students", "-", serial_s / n, "s", None, detail),
        Result("jobs", f"seconds per notebook, JOBS={jobs}, {students} students", "-", parallel_s / n, "s", None,
               detail),
        Result("jobs", "seconds the head spends recording one notebook (serial, JOBS>1)", "-",
               costs.record_s_per_notebook, "s", None, detail),
        Result("jobs", "of which CPU time of the recording thread, per notebook (JOBS>1)", "-",
               costs.record_cpu_s_per_notebook, "s", None, detail),
        Result("jobs", f"local pool's cost per job (submit -> result of a no-op, JOBS={jobs})", "-",
               costs.dispatch_s, "s", None, detail),
    ]
    return out, [], costs

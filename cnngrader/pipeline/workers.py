"""The execute step: each submission sanitized and executed by nbgrader's Autograde converter with
GradingExecute (execute.py, in the sandbox) as its only autograde preprocessor.

With jobs > 1 each submission runs in a worker process with its own copy of the SQLite gradebook
(SQLite takes one writer at a time; the copies only ever see the student and submission rows
nbgrader creates; with a PostgreSQL gradebook the copy is a SQLite snapshot of the assignments,
see phase1_db). The executed notebooks go to work/executed, where the record step finds them.
"""
from __future__ import annotations

import copy
import logging
import os
import sqlite3
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from nbgrader.converters import Autograde
from traitlets.config import Config

from cnngrader.pipeline.config import CoursePaths, coursedir, run_app
from cnngrader.pipeline.execute import ready_kernels
from cnngrader.pipeline.generate import generate
from cnngrader.pipeline.kernel_start import stop_spares
from cnngrader.pipeline.record_cache import SharedEngines

log = logging.getLogger("cnngrader.pipeline")

EXECUTE = "cnngrader.pipeline.execute.GradingExecute"
KERNEL_START_FAILURES = ("Kernel died before replying to kernel_info", "Kernel didn't respond")
_WORKER_DB: dict[tuple[int, str, str], str] = {}
# ((pid, gradebook URL), its engines) for the Gradebooks nbgrader opens while executing (record_cache.py), one
# URL at a time: a process executes with one private copy per run (per job on a cluster worker)
_ENGINES: tuple[tuple[int, str], SharedEngines] | None = None

Outcome = tuple[str, str, float, str | None]  # (student, assignment, seconds, error)


def phase1_db(paths: CoursePaths, assignments: Iterable[str], work: Path) -> str:
    """The SQLite gradebook the workers copy: the course's own when it is SQLite; otherwise
    (PostgreSQL, ...) a snapshot with the assignments regenerated from the source directory,
    so that workers never write to the course database. (If solutions/ changed since the
    release, ReplayExecute notices that the executed cells differ and reports the submission.)"""
    if paths.db_url.startswith("sqlite:///"):
        return paths.db_url
    snapshot = f"sqlite:///{work / 'gradebook-phase1.db'}"
    generate(sorted(set(assignments)), paths.root, build_sources=False, release_directory=work / "release-phase1",
             db_url=snapshot, source_directory=paths.source_directory)
    return snapshot


def _worker_db_url(db_url: str, work: Path) -> str:
    """This process's private copy of a SQLite gradebook."""
    key = (os.getpid(), str(work), db_url)  # a forked worker inherits its parent's entries
    if key not in _WORKER_DB:
        copy_path = work / f"gradebook-worker{os.getpid()}.db"
        src = sqlite3.connect(db_url[len("sqlite:///"):])
        dst = sqlite3.connect(copy_path)
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
        _WORKER_DB[key] = f"sqlite:///{copy_path}"
    return _WORKER_DB[key]


def shared_engines(db_url: str) -> SharedEngines:
    """This process's shared engines for db_url; those of another URL are closed first (never a parent
    process's: a forked child only drops them)."""
    global _ENGINES
    key = (os.getpid(), db_url)
    if _ENGINES is None or _ENGINES[0] != key:
        release_engines()
        _ENGINES = (key, SharedEngines())
    return _ENGINES[1]


def release_engines() -> None:
    """Close this process's shared engines (their pooled connections to a private gradebook copy)."""
    global _ENGINES
    if _ENGINES is not None and _ENGINES[0][0] == os.getpid():
        _ENGINES[1].close()
    _ENGINES = None


def execute_one(cfg: Config, work: str, jobs: int, student: str, assignment: str,
                source_db: str | None = None) -> Outcome:
    """Sanitize and execute one submission into work/executed; (student, assignment, seconds, error)."""
    t0 = time.perf_counter()
    c = copy.deepcopy(cfg)
    c.CourseDirectory.autograded_directory = str(Path(work, "executed"))
    c.CourseDirectory.db_url = _worker_db_url(source_db or cfg.CourseDirectory.db_url, Path(work))
    c.Autograde.autograde_preprocessors = [EXECUTE]
    c.GradingExecute.parallel_jobs = jobs
    engines = shared_engines(c.CourseDirectory.db_url)
    for attempt in (1, 2):
        app = Autograde(coursedir=coursedir(c, student_id=student, assignment_id=assignment), config=c)
        app.force = True
        with engines.active():  # eleven Gradebooks per notebook: one engine, its queries compiled once
            error = run_app(app)
        # a kernel that never came up is the machine's problem, not the student's: once more
        if not error or not any(s in error for s in KERNEL_START_FAILURES):
            break
        log.warning("%s/%s: the kernel did not start (attempt %d)", student, assignment, attempt)
    return student, assignment, time.perf_counter() - t0, error


def warm_up(cfg: Config, jobs: int, wait: bool = True) -> None:
    """A worker's first step, before its first job: its kernels readied (execute.ready_kernels) with the run's
    configuration (wait=False: started, not waited for). Never raises (that would break a pool): the first job
    meets the fault again and reports it with the submission."""
    try:
        ready_kernels(cfg, parallel_jobs=jobs, wait=wait)
    except Exception as e:
        log.warning("A worker could not ready its kernels in advance: %s: %s", type(e).__name__, e)


class Workers:
    """The processes that execute submissions: this one (jobs == 1) or a pool of `jobs` workers.

    Used as a context manager: on exit the pool stops (each worker kills its own warm spare kernel
    as it exits) and so does this process's spare, which no later notebook will use. Given the run's
    configuration, a pool starts all its workers at once, in the background, and each readies its
    kernels (warm_up) while this process goes on preparing the gradebook; alone, this process starts its own
    kernels' zygote and goes on without waiting for it."""

    def __init__(self, jobs: int, cfg: Config | None = None):
        self.jobs = jobs
        self.cfg = cfg
        self.pool: ProcessPoolExecutor | None = None
        self._starting: threading.Thread | None = None

    def __enter__(self) -> Workers:
        if self.jobs > 1:
            # Workers compute the hidden checks' references with torch: fork them from a clean
            # forkserver, never from this process, whose torch thread pools a fork would deadlock.
            linux = sys.platform.startswith("linux")
            ctx = get_context("forkserver") if linux else get_context("spawn")
            if linux:
                ctx.set_forkserver_preload(["torch", "nbgrader.converters"])
            warm = {} if self.cfg is None else {"initializer": warm_up, "initargs": (self.cfg, self.jobs)}
            self.pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx, **warm)
            if warm:
                # a thread: starting a worker waits for the forkserver's imports
                self._starting = threading.Thread(target=self._start_all, name="cnngrader-workers", daemon=True)
                self._starting.start()
        elif self.cfg is not None:
            warm_up(self.cfg, 1, wait=False)  # the zygote imports while this process prepares the gradebook
        return self

    def _start_all(self) -> None:
        """Every worker started now, not one by one as jobs come."""
        assert self.pool is not None
        try:
            for _ in range(self.jobs):  # while no worker is idle, each submission starts one more
                self.pool.submit(int)
        except Exception:  # a pool broken while starting: the jobs' own submission meets it and says so
            log.debug("The worker pool did not start", exc_info=True)

    def _started(self) -> None:
        if self._starting is not None:
            self._starting.join()
            self._starting = None

    def __exit__(self, *exc) -> None:
        try:
            self._started()
            if self.pool is not None:
                self.pool.shutdown()
        finally:
            release_engines()
            stop_spares()

    def execute(self, cfg: Config, work: Path, tasks: Sequence[tuple[str, str]], source_db: str) -> Iterator[Outcome]:
        """Each task's Outcome as soon as it has run (in task order when serial)."""
        if self.pool is None:
            for s, a in tasks:
                yield execute_one(cfg, str(work), 1, s, a, source_db)
            return
        self._started()
        futures = [self.pool.submit(execute_one, cfg, str(work), self.jobs, s, a, source_db) for s, a in tasks]
        for future in as_completed(futures):
            yield future.result()

    def map(self, fn: Callable, *iterables: Iterable) -> list:
        """fn over the iterables, in the workers (fn must be importable by name there)."""
        if self.pool is None:
            return [fn(*args) for args in zip(*iterables)]
        self._started()
        return list(self.pool.map(fn, *iterables))

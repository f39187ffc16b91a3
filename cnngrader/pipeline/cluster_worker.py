"""A Dask worker's side of grading on a cluster: the preload that readies the worker, and grade_job,
the task every (student, assignment) job runs.

    dask worker tls://scheduler:8786 --preload cnngrader.pipeline.cluster_worker --nthreads 1 ...

Run it in a checkout of the course (or with $CNNGRADER_COURSE set): the worker grades with its own
course's sources, checks and grader code, and refuses a job whose assignment digest (cache.py) differs
from the client's, so that a stale checkout never grades. A job is data (cluster.make_job): the
submission's files, the run's secret, its digests and the run's settings. The worker writes the files
into a scratch grading directory, executes them sandboxed exactly as `make grade` does on one machine
(workers.execute_one), and returns the executed notebooks as JSON text, size-capped: the sandbox's
output is parsed by nbgrader in this trusted process, and nothing it wrote is unpickled anywhere.

A student's timeout or crash is part of the result, never an exception: Dask retries only what is
lost with a worker (or an exception of the grader itself), so a student's fault is graded once.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from traitlets.config import Config

from cnngrader.course import load_course
from cnngrader.pipeline.cache import assignment_digest, submission_digest
from cnngrader.pipeline.config import CoursePaths, course_config
from cnngrader.pipeline.execute import ready_kernels
from cnngrader.pipeline.generate import generate
from cnngrader.pipeline.kernel_start import stop_spares
from cnngrader.pipeline.sandbox import check_available
from cnngrader.pipeline.workers import execute_one

log = logging.getLogger("cnngrader.pipeline.cluster")

JOB_VERSION = 1
_LOCK = threading.Lock()  # one job at a time per worker process (nbgrader's converters are not thread-safe)
_STATE: dict[str, Any] = {}  # scratch folder, course, per-assignment gradebook snapshots and digests


class JobError(ValueError):
    """A job that is not what cluster.make_job writes."""


PROCESSES_VAR = "CNNGRADER_WORKER_PROCESSES"  # this machine's worker processes (make grade-worker's WORKERS)


def _processes() -> int:
    """How many worker processes share this machine: each kernel gets its share of the cores, as with JOBS."""
    try:
        return max(1, int(os.environ.get(PROCESSES_VAR, "1")))
    except ValueError:
        return 1


def dask_setup(worker=None) -> None:
    """The preload: this worker's scratch folder and course; the sandbox checked, the grader's heavy imports
    done and the kernel zygote started once, before the first job (no tensor op, no CUDA: kernels start later)."""
    check_available()  # a worker that cannot sandbox must not start: SandboxUnavailable says what is missing
    # the import cost is paid here, not by the first student
    import nbgrader.converters  # noqa: F401 (imported for its cost only)
    import torch  # noqa: F401 (imported for its cost only)
    _scratch()
    _start_zygote()
    log.info("cnngrader worker ready: course %s, scratch %s", _STATE["course"].root, _STATE["scratch"])


def _start_zygote() -> None:
    """The zygote this process's kernels are forked from: the kernel manager a job's grading makes (execute.py),
    with its share of the cores, made here once. Where kernels are not forked, or cannot be, nothing starts
    (GradingExecute says why)."""
    ready_kernels(parallel_jobs=_processes(), log=log)


def dask_teardown(worker=None) -> None:
    stop_spares()
    if "scratch" in _STATE:
        shutil.rmtree(_STATE.pop("scratch"), ignore_errors=True)


def _scratch() -> Path:
    if "scratch" not in _STATE:
        _STATE["course"] = load_course()
        _STATE["scratch"] = Path(tempfile.mkdtemp(prefix="cnn-worker-"))
        _STATE["snapshots"], _STATE["digests"] = {}, {}
    return _STATE["scratch"]


def _snapshot(aid: str) -> str:
    """A gradebook holding this worker's version of the assignment (made once per assignment)."""
    if aid not in _STATE["snapshots"]:
        folder = _scratch() / f"gradebook-{aid}"
        folder.mkdir(parents=True, exist_ok=True)
        db = f"sqlite:///{folder / 'gradebook.db'}"
        generate([aid], folder, course=_STATE["course"], build_sources=False, release_directory=folder / "release",
                 db_url=db)
        _STATE["snapshots"][aid] = db
    return _STATE["snapshots"][aid]


def _assignment_digest(paths: CoursePaths, aid: str) -> str:
    # the code this process runs is the code it loaded: its digest stays the one first computed
    if aid not in _STATE["digests"]:
        _STATE["digests"][aid] = assignment_digest(paths, aid)
    return _STATE["digests"][aid]


def _safe_name(name: Any) -> str:
    """A relative path inside the submission, or JobError."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise JobError(f"bad file name {name!r}")
    if any(part in ("", ".", "..") for part in name.split("/")):  # also refuses absolute paths ("" first)
        raise JobError(f"bad file name {name!r}")
    return name


def _check(job: Any) -> None:
    if not isinstance(job, dict) or job.get("version") != JOB_VERSION:
        raise JobError("not a grading job of this grader's version")
    for key in ("student", "assignment"):
        if not isinstance(job.get(key), str) or not job[key] or "/" in job[key] or job[key].startswith("."):
            raise JobError(f"bad {key} {job.get(key)!r}")
    if not isinstance(job.get("files"), dict) or not all(isinstance(v, bytes) for v in job["files"].values()):
        raise JobError("files must map names to bytes")
    if not isinstance(job.get("secret"), int) or not isinstance(job.get("settings"), dict):
        raise JobError("a job needs the run's secret and settings")
    if not (isinstance(job.get("digests"), list) and len(job["digests"]) == 2):
        raise JobError("a job needs its (submission, assignment) digests")


def _config(job: dict, root: Path) -> Config:
    """The course configuration for a scratch grading directory, with the run's settings and secret."""
    cfg = course_config(root, _STATE["course"])
    settings = Config(job["settings"])
    settings.pop("CourseDirectory", None)  # the paths are this machine's
    cfg.merge(settings)
    cfg.GradingExecute.course_root = str(_STATE["course"].root)
    cfg.GradingExecute.sandbox = True  # a worker never runs student code unsandboxed
    cfg.GradingExecute.secret = job["secret"]
    return cfg


def grade_job(job: dict) -> str:
    """Execute one job; its result as JSON text: {student, assignment, seconds, error, worker,
    notebooks: {name: executed notebook JSON}}. error is None or why the job could not be graded
    (the student's own errors are in the notebooks' outputs)."""
    with _LOCK:
        t0 = time.perf_counter()
        _check(job)
        sid, aid = job["student"], job["assignment"]
        folder = Path(tempfile.mkdtemp(prefix="job-", dir=_scratch()))
        try:
            error, notebooks = _grade(job, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return json.dumps({"student": sid, "assignment": aid, "seconds": time.perf_counter() - t0, "error": error,
                           "notebooks": notebooks})


def _grade(job: dict, folder: Path) -> tuple[str | None, dict[str, str]]:
    sid, aid = job["student"], job["assignment"]
    root = folder / "root"
    cfg = _config(job, root)
    paths = CoursePaths.from_config(cfg)
    into = paths.submission(sid, aid)
    for name, data in job["files"].items():
        dest = into / _safe_name(name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    if submission_digest(paths, sid, aid) != job["digests"][0]:
        return "the submission's files arrived altered (their digest differs from the client's)", {}
    if _assignment_digest(paths, aid) != job["digests"][1]:
        return (f"this worker's course differs from the client's for {aid} (sources, checks or grader code): "
                "update the worker's checkout and restart it"), {}
    (folder / "work").mkdir()
    _, _, _, error = execute_one(cfg, str(folder / "work"), _processes(), sid, aid, _snapshot(aid))
    executed = folder / "work" / "executed" / sid / aid
    notebooks = {p.stem: p.read_text(encoding="utf-8") for p in sorted(executed.glob("*.ipynb"))} if not error else {}
    return error, notebooks

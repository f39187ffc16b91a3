"""The record step: each executed submission written into the course's gradebook, by this process only.

nbgrader's Autograde converter runs again in the grading directory with ReplayExecute in place of
GradingExecute, so IgnorePattern, LimitOutput, SaveAutoGrades and AssignLatePenalties write the
gradebook exactly as a plain `nbgrader autograde` would; this process is the gradebook's only writer.
Recording overlaps the workers' execution of the next submissions. What does not depend on the
submission (the gradebook's database engine, the metadata schema's check) is made once per Recorder
(record_cache.py): close() the Recorder when the execute step ends.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.converters import Autograde
from traitlets.config import Config

from cnngrader.pipeline.cache import Cache, Submission
from cnngrader.pipeline.config import coursedir, last_line, run_app
from cnngrader.pipeline.progress import Progress, kernel_lost
from cnngrader.pipeline.record_cache import SharedEngines
from cnngrader.pipeline.workers import EXECUTE, Outcome

log = logging.getLogger("cnngrader.pipeline")

REPLAY = "cnngrader.pipeline.execute.ReplayExecute"


def record_one(cfg: Config, work: Path, student: str, assignment: str) -> str | None:
    """nbgrader's autograde of one submission with the outputs executed into work/executed replayed;
    None, or the error."""
    c = copy.deepcopy(cfg)
    c.Autograde.autograde_preprocessors = [
        REPLAY if _name(p) == EXECUTE else p for p in cfg.Autograde.autograde_preprocessors
    ]
    c.ReplayExecute.executed_directory = str(work / "executed")
    app = Autograde(coursedir=coursedir(c, student_id=student, assignment_id=assignment), config=c)
    app.force = True
    return run_app(app)


def _name(p) -> str:
    return p if isinstance(p, str) else f"{p.__module__}.{p.__qualname__}"


@dataclass
class Recorder:
    """Records each Outcome of the execute step as it comes; what it did is in its fields. Every Outcome,
    executed here or elsewhere, passes through here once: `progress` counts it (progress.py)."""

    cfg: Config
    work: Path
    cache: Cache
    digests: dict[Submission, tuple[str, str]]
    execute_seconds: dict[Submission, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0  # spent recording (wall-clock)
    cpu_seconds: float = 0.0  # of which this thread's CPU time: what recording costs a core of its own
    progress: Progress = field(default_factory=lambda: Progress(0, mode="off"))
    # one database engine for every submission this recorder writes (record_cache.py)
    engines: SharedEngines = field(default_factory=SharedEngines, init=False, repr=False)

    def __call__(self, outcome: Outcome) -> None:
        sid, aid, sec, error = outcome
        self.execute_seconds[(sid, aid)] = sec
        if error:  # could not be executed: reported, not recorded
            self.failures.append(f"execute {sid}/{aid}: {last_line(error)}")
            log.error("executing %s/%s failed:\n%s", sid, aid, error)
            self.progress.update((sid, aid), failed="could not be executed")
            return
        t0, c0 = time.perf_counter(), time.thread_time()
        with self.engines.active():
            error = record_one(self.cfg, self.work, sid, aid)
        self.seconds += time.perf_counter() - t0
        self.cpu_seconds += time.thread_time() - c0
        if error:
            self.failures.append(f"record {sid}/{aid}: {last_line(error)}")
            log.error("recording %s/%s failed:\n%s", sid, aid, error)
            self.progress.update((sid, aid), failed="could not be recorded")
            return
        self.cache.graded((sid, aid), self.digests[(sid, aid)], sec)
        log.info("graded %s/%s in %.1f s", sid, aid, sec)
        self.progress.update((sid, aid), lost=kernel_lost(self.work / "executed" / sid / aid))

    def close(self) -> None:
        """Release the gradebook connections kept for the next submission (every record is already committed)."""
        self.engines.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

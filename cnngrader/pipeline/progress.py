"""Progress of a grading run: notebooks done, failures and an estimate of the time left, shown while the
record step (record.py) takes each result, wherever it was executed.

A notebook counts as a failure when
- its grading failed: it could not be executed (the kernel never started, nbgrader raised) or not recorded
  into the gradebook; it has no grade from this run (the summary's FAILED lines say why);
- or its kernel was lost: it died (os._exit, a segfault, a kill by the sandbox), was killed at the
  notebook's time limit, or stopped answering after a timeout. The notebook is graded (the cells before
  the loss keep their scores, the rest score 0), but the instructor will want to look at it: the summary
  lists it.
A cell that ran past its limit and was interrupted, or a failing check, is not a failure: it is a grade.

How it shows (`mode`):
- "bar": a tqdm bar on stderr: done/total, failures, notebooks per minute, elapsed and time left;
- "log": no bar; a log line at most every `interval` seconds (a short run prints none), for logs of long
  batches that are not a terminal (a Slurm job, nohup, CI);
- "off": nothing shown (the counts are still kept);
- "auto": "bar" when stderr is a terminal, else "log".
"""
from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

import nbformat

from cnngrader.pipeline.cache import Submission

log = logging.getLogger("cnngrader.pipeline")

MODES = ("auto", "bar", "log", "off")
KERNEL_LOST = "cnngrader_kernel_lost"  # notebook metadata GradingExecute writes: why the kernel was lost, or null


def per_minute(notebooks: int, seconds: float) -> float:
    """Notebooks per minute; 0 when no time has passed."""
    return 60.0 * notebooks / seconds if seconds > 0 else 0.0


def rate_text(notebooks: int, seconds: float) -> str:
    """'12.5 notebooks per minute' (the last words of a run's summary)."""
    return f"{per_minute(notebooks, seconds):.1f} notebooks per minute"


def duration(seconds: float) -> str:
    """A duration for a person: '45 s', '12 min', '3 h 05 min'."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def kernel_lost(folder: Path) -> str | None:
    """Why the kernel of an executed submission (folder: its notebooks, as GradingExecute wrote them) was
    lost, or None. Reads the grader's own mark in each notebook's metadata, not the outputs (a student's
    error can be named anything)."""
    for path in sorted(folder.glob("*.ipynb")):
        try:
            why = nbformat.read(path, as_version=nbformat.NO_CONVERT).metadata.get(KERNEL_LOST)
        except (OSError, ValueError) as e:  # the recording, which reads it too, reports a damaged copy
            log.debug("progress: could not read %s: %s", path, e)
            continue
        if why:
            return str(why)
    return None


@dataclass
class Progress:
    """Counts the notebooks of a run as their results are recorded, and shows them (see the module's doc).

    Used as a context manager around the execute and record steps; update() once per notebook."""

    total: int
    mode: str = "auto"
    interval: float = 60.0  # seconds between two lines in "log" mode
    stream: TextIO | None = None  # the bar's stream (default: sys.stderr)
    clock: Callable[[], float] = time.monotonic
    done: int = 0
    failed: list[str] = field(default_factory=list)  # "student/assignment: why", grading failed
    lost: list[str] = field(default_factory=list)  # "student/assignment: why", graded, kernel lost

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"progress: mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.interval <= 0:
            raise ValueError(f"progress: interval must be positive seconds, not {self.interval!r}")
        self._bar = None
        self._stack = ExitStack()
        self._start = self._last_line = self.clock()

    @property
    def shown(self) -> str:
        """The mode in effect: "auto" resolved against the stream."""
        if self.mode != "auto":
            return self.mode
        stream = self.stream or sys.stderr
        return "bar" if getattr(stream, "isatty", lambda: False)() else "log"

    @property
    def failures(self) -> int:
        return len(self.failed) + len(self.lost)

    @property
    def elapsed(self) -> float:
        return self.clock() - self._start

    def left(self) -> float | None:
        """Seconds left at the rate so far; None before the first notebook."""
        if self.done == 0:
            return None
        return (self.total - self.done) * self.elapsed / self.done

    def line(self) -> str:
        """One line: 'graded 12/40 notebooks, 1 failure, 4.0 notebooks per minute, about 7 min left'."""
        left = self.left()
        return (f"graded {self.done}/{self.total} notebooks, {self.failures} failure(s), "
                f"{rate_text(self.done, self.elapsed)}, "
                + ("time left unknown yet" if left is None else f"about {duration(left)} left"))

    def __enter__(self) -> Progress:
        self._start = self._last_line = self.clock()
        if self.shown == "bar" and self.total:
            from tqdm import tqdm  # only a run shown on a terminal draws a bar: logs and tests need no tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm  # likewise

            self._bar = self._stack.enter_context(tqdm(
                total=self.total, file=self.stream or sys.stderr, desc="grading", unit="notebook",
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} notebooks "
                           "[{elapsed}<{remaining}{postfix}]", dynamic_ncols=True))
            self._bar.set_postfix_str("0 failure(s)", refresh=False)
            # the log lines on the console (the root logger's) print above the bar instead of through it
            self._stack.enter_context(logging_redirect_tqdm())
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        self._bar = None

    def update(self, submission: Submission, failed: str | None = None, lost: str | None = None) -> None:
        """One notebook is done: `failed` says why its grading failed, `lost` why its kernel was lost."""
        self.done += 1
        name = "/".join(submission)
        if failed:
            self.failed.append(f"{name}: {failed}")
        elif lost:
            self.lost.append(f"{name}: {lost}")
        if self._bar is not None:
            minute = rate_text(self.done, self.elapsed).replace(" notebooks per minute", "/min")
            self._bar.set_postfix_str(f"{self.failures} failure(s), {minute}", refresh=False)
            self._bar.update(1)
        elif self.shown == "log" and self.clock() - self._last_line >= self.interval and self.done < self.total:
            self._last_line = self.clock()
            log.info("%s", self.line())

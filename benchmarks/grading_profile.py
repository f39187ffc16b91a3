"""Where the time of grading one notebook goes, step by step.

    python -m benchmarks.grading_profile [--assignment ID] [--runs N] [--fresh]

Grades the assignment's solution N + 1 times in this process (serially, sandboxed, with forked kernels; --fresh:
fresh sandboxed kernels without the warm spare). The first run pays for starting the zygote and is not counted.
For the others it prints the mean seconds per notebook of each step of GradingExecute that is timed here, and
how often it ran. The steps nest: the hidden cells' time includes the kernel requests they send.
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections import defaultdict
from typing import Any, Iterator

from .machine import REPO

# (module, class or None, attribute, label): the steps timed, outermost first
STEPS = [
    ("cnngrader.pipeline.workers", None, "execute_one", "one notebook: sanitize, execute, write"),
    ("cnngrader.pipeline.execute", "GradingExecute", "preprocess", "  executing it (GradingExecute)"),
    ("nbclient.client", "NotebookClient", "start_new_kernel", "    starting the kernel"),
    ("nbclient.client", "NotebookClient", "start_new_kernel_client", "    waiting until it is ready"),
    ("cnngrader.pipeline.execute", "GradingExecute", "preprocess_cell", "    the student's cells"),
    ("cnngrader.pipeline.execute", "GradingExecute", "_grade_hidden", "    the hidden cells"),
    ("cnngrader.pipeline.execute", "GradingExecute", "_send", "      of which kernel requests"),
    ("nbclient.client", "NotebookClient", "_cleanup_kernel", "    stopping the kernel"),
]


class Timers:
    """Seconds spent in, and calls of, each patched function, while patched (`patch` is a context manager)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, fn: Any, label: str) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - start
                self.calls[label] += 1
        return timed

    @contextlib.contextmanager
    def patch(self, steps: list[tuple[str, str | None, str, str]]) -> Iterator[Timers]:
        import importlib

        saved = []
        try:
            for module, cls, attr, label in steps:
                owner = importlib.import_module(module)
                owner = getattr(owner, cls) if cls else owner
                if not hasattr(owner, attr):
                    raise AttributeError(f"{module}.{cls + '.' if cls else ''}{attr} is not there to time")
                saved.append((owner, attr, vars(owner).get(attr)))  # None: inherited, a base class's
                setattr(owner, attr, self.wrap(getattr(owner, attr), label))
            yield self
        finally:
            for owner, attr, fn in reversed(saved):
                if fn is None:
                    delattr(owner, attr)
                else:
                    setattr(owner, attr, fn)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def table(totals: dict[str, float], calls: dict[str, int], runs: int) -> str:
    lines = [f"{'step':44} {'s/notebook':>10} {'calls/notebook':>15}"]
    for _, _, _, label in STEPS:
        lines.append(f"{label:44} {totals.get(label, 0.0) / runs:10.3f} {calls.get(label, 0) / runs:15.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.grading_profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--assignment", default="02_cross_correlation", help="whose solution is graded")
    p.add_argument("--runs", type=int, default=5, help="runs counted, after one that starts the zygote")
    p.add_argument("--fresh", action="store_true", help="fresh sandboxed kernels (no warm spare), not forked ones")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")

    from traitlets.config import Config

    from cnngrader.course import load_course
    from cnngrader.pipeline import grade as autograde
    from cnngrader.pipeline.kernel_start import stop_zygote

    course = load_course(REPO)
    if args.assignment not in course.ids:
        p.error(f"--assignment must be one of {', '.join(course.ids)}")
    c = Config()
    c.GradingExecute.fork_kernels = not args.fresh
    c.GradingExecute.warm_spare = False
    timers = Timers()
    totals: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    try:
        with timers.patch(STEPS):
            for run in range(args.runs + 1):
                timers.reset()
                with tempfile.TemporaryDirectory(prefix="cnn-grading-profile-") as tmp:
                    autograde.make_submissions(tmp, count=1, assignments=[args.assignment], course=course)
                    result = autograde.grade_course(tmp, jobs=1, course=course, config=c, feedback=False,
                                                    report=False, progress="off")
                if result.failures:
                    print(f"grading failed: {result.failures[0]}")
                    return 1
                if run:
                    for label, s in timers.seconds.items():
                        totals[label] += s
                        calls[label] += timers.calls[label]
    finally:
        stop_zygote()
    kind = "fresh sandboxed" if args.fresh else "forked"
    print(f"{args.assignment}'s solution, {kind} kernels, mean of {args.runs} runs:")
    print(table(totals, calls, args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

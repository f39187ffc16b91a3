"""Part 5: one submission cannot starve the others (each sandbox's CPU quota, cnngrader.pipeline.sandbox).

A correct 02_cross_correlation notebook is graded with JOBS=2 three times: alone, beside a fork-and-spin
notebook (a cell forks a few hundred busy processes, under the sandbox's task cap, which spin until
their sandbox is killed), and beside the same notebook with the quota turned off. The figure is the
correct notebook's execution time beside the spinner over its time alone; the target is at most 2.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from .machine import REPO
from .report import Result, Skipped

AID = "02_cross_correlation"
TARGET = "<= 2"
SPINNERS = 300  # busy processes, under the sandbox's 512 tasks
FORK_AND_SPIN = f"""import os, time
end = time.monotonic() + 600  # until the sandbox is killed with its notebook
for _ in range({SPINNERS}):
    if os.fork() == 0:
        while time.monotonic() < end:
            pass
        os._exit(0)
"""


def _grade(with_spinner: bool, quota: bool, log) -> float:
    from traitlets.config import Config

    from cnngrader.course import load_course
    from cnngrader.pipeline import grade as autograde

    course = load_course(REPO)
    config = Config()
    if not quota:
        config.SandboxedKernelManager.max_cpus = -1.0  # no CPU quota
    with tempfile.TemporaryDirectory(prefix="cnn-bench-share-") as tmp:
        root = Path(tmp)
        autograde.make_submissions(root, count=1, assignments=[AID], prefix="correct", course=course)
        if with_spinner:
            import nbformat

            nb = autograde.solution_submission(AID, course=course)
            at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "corr2d")
            nb.cells.insert(at, nbformat.v4.new_code_cell(FORK_AND_SPIN))
            dest = root / "submitted" / "a_spinner" / AID  # graded first: it is spinning when the other starts
            dest.mkdir(parents=True)
            nbformat.write(nb, dest / f"{AID}.ipynb")
        t = time.perf_counter()
        result = autograde.grade_course(root, jobs=2, course=course, config=config, report=False)
        log(f"[share] spinner={with_spinner} quota={quota}: {time.perf_counter() - t:.1f} s, "
            f"correct notebook {result.execute_seconds.get(('correct01', AID), float('nan')):.1f} s")
        if result.failures:
            raise RuntimeError(result.failures[0])
        return result.execute_seconds[("correct01", AID)]


def run(log=print) -> tuple[list[Result], list[Skipped]]:
    try:
        from cnngrader.pipeline.sandbox import SandboxUnavailable, check_available

        check_available()
    except (ImportError, SandboxUnavailable) as e:
        return [], [Skipped("share", f"no grading sandbox here: {e}")]
    try:
        alone = _grade(False, True, log)
        beside = _grade(True, True, log)
        unlimited = _grade(True, False, log)
    except RuntimeError as e:
        return [], [Skipped("share", f"grading failed: {e}", True)]
    detail = {"alone_s": alone, "beside_spinner_s": beside, "beside_spinner_no_quota_s": unlimited,
              "spinners": SPINNERS}
    return [
        Result("share", "slowdown of a correct notebook beside a fork-and-spin one, JOBS=2", "-",
               beside / alone, "x", TARGET, detail),
        Result("share", "the same without the CPU quota (for comparison)", "-", unlimited / alone, "x", None, detail),
    ], []

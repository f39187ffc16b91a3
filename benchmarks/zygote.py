"""Sandboxed kernels forked from the zygote (GradingExecute.fork_kernels) against today's fresh sandboxed kernel
(no warm spare, and with it): seconds per notebook on the solutions of all six assignments, the solution of
assignment 02 alone, and one generated student's six notebooks, all in one run (ratios between runs on the same
machine at the same time)."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import nbformat

from .grading import missing
from .machine import REPO
from .report import Result, Skipped

RATIO_TARGET = ">= 3"  # fresh sandboxed kernel / forked kernel, seconds per notebook
A2_TARGET = "<= 1.0"  # seconds to grade the solution of assignment 02 with a forked kernel
STUDENT_TARGET = "<= 7"  # seconds to grade one student's six notebooks with forked kernels
A2 = "02_cross_correlation"
MODES = {"fresh": {"warm_spare": False, "fork_kernels": False},
         "warm spare": {"warm_spare": True, "fork_kernels": False},
         "forked": {"warm_spare": False, "fork_kernels": True}}


def _grade(root: Path, mode: str, course) -> tuple[float, dict, list]:
    """Grade every submission under root (serially) with the mode's kernels; wall seconds (the zygote's start
    included), seconds of each notebook's execution, failures."""
    from traitlets.config import Config

    from cnngrader.pipeline import grade as autograde
    from cnngrader.pipeline.kernel_start import stop_zygote

    c = Config()
    for name, value in MODES[mode].items():
        setattr(c.GradingExecute, name, value)
    stop_zygote()  # each run starts its own zygote: its start-up is in the wall time
    start = time.perf_counter()
    try:
        result = autograde.grade_course(root, jobs=1, course=course, config=c, feedback=False, report=False)
    finally:
        stop_zygote()
    return time.perf_counter() - start, result.execute_seconds, result.failures


def _solutions(root: Path, course, aids) -> None:
    from cnngrader.pipeline import grade as autograde

    for aid in aids:
        folder = root / "submitted" / "solution" / aid
        folder.mkdir(parents=True)
        nbformat.write(autograde.solution_submission(aid, course=course), folder / f"{aid}.ipynb")


def run(log=print) -> tuple[list[Result], list[Skipped]]:
    why = missing()
    if why:
        return [], [Skipped("zygote", why)]
    from cnngrader.course import load_course
    from cnngrader.pipeline import grade as autograde
    from cnngrader.pipeline.sandbox import SandboxUnavailable, check_available

    try:
        check_available()
    except SandboxUnavailable as e:
        return [], [Skipped("zygote", f"no sandbox here: {e.why}")]
    course = load_course(REPO)
    log(f"[zygote] load average {os.getloadavg()[0]:.2f} at the start")
    figures: dict[str, dict] = {}
    for mode in MODES:
        figures[mode] = {}
        for what in ("solutions", "a2", "student"):
            with tempfile.TemporaryDirectory(prefix="cnn-bench-zygote-") as tmp:
                root = Path(tmp)
                if what == "student":
                    autograde.make_submissions(root, count=1, course=course)
                else:
                    _solutions(root, course, course.ids if what == "solutions" else [A2])
                wall, per, failures = _grade(root, mode, course)
            if failures:
                return [], [Skipped("zygote", f"{mode} kernels, {what}: {failures[0]}", True)]
            figures[mode][what] = {"wall_s": wall, "notebooks": len(per), "execute_s": sum(per.values()),
                                   "per_notebook_s": {f"{s}/{a}": v for (s, a), v in sorted(per.items())}}
            log(f"[zygote] {mode:10} {what:9} {len(per)} notebook(s): {wall:.2f} s wall, "
                f"{sum(per.values()) / max(1, len(per)):.2f} s per notebook executed")
    load = os.getloadavg()[0]
    log(f"[zygote] load average {load:.2f} at the end")
    return _results(figures, load), []


def _results(f: dict, load: float) -> list[Result]:
    def per_nb(mode: str, what: str) -> float:
        return f[mode][what]["execute_s"] / max(1, f[mode][what]["notebooks"])

    detail = {"figures": f, "load_average_end": load}
    out = [Result("zygote", f"seconds per notebook, solutions of the six assignments, {mode} kernels", "-",
                  per_nb(mode, "solutions"), "s", None, f[mode]["solutions"]) for mode in MODES]
    out.append(Result("zygote", "fresh sandboxed kernel / forked kernel, seconds per notebook (six solutions)", "-",
                      per_nb("fresh", "solutions") / per_nb("forked", "solutions"), "x", RATIO_TARGET, detail))
    out.append(Result("zygote", "warm spare / forked kernel, seconds per notebook (six solutions)", "-",
                      per_nb("warm spare", "solutions") / per_nb("forked", "solutions"), "x", None, detail))
    for mode in MODES:
        out.append(Result("zygote", f"seconds, solution of {A2} alone, {mode} kernel", "-",
                          per_nb(mode, "a2"), "s", A2_TARGET if mode == "forked" else None, f[mode]["a2"]))
    for mode in MODES:
        out.append(Result("zygote", f"seconds, one student's six notebooks executed, {mode} kernels", "-",
                          f[mode]["student"]["execute_s"], "s", STUDENT_TARGET if mode == "forked" else None,
                          f[mode]["student"]))
        out.append(Result("zygote", f"seconds, grading one student's six notebooks (wall, all phases), {mode}",
                          "-", f[mode]["student"]["wall_s"], "s", None, f[mode]["student"]))
    return out

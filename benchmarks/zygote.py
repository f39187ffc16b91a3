"""Sandboxed kernels forked from the zygote (GradingExecute.fork_kernels) against today's fresh sandboxed kernel
(no warm spare, and with it): seconds per notebook on the solutions of all six assignments, the solution of
assignment 02 alone, and one generated student's six notebooks, all in one run (ratios between runs on the same
machine at the same time).

A grading worker starts its zygote once and keeps it: each mode first grades one notebook (WARM_UP, its
seconds reported as the cold start), then the measured batches, with the same zygote."""
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
WARM_UP = "03_padding_stride"  # the quickest notebook to grade: pays the mode's one-time start-up
EXPERIMENT = "06_lenet"  # its hidden test trains the student's net: the student's own work, seconds long
MODES = {"fresh": {"warm_spare": False, "fork_kernels": False},
         "warm spare": {"warm_spare": True, "fork_kernels": False},
         "forked": {"warm_spare": False, "fork_kernels": True}}


def _grade(root: Path, mode: str, course) -> tuple[float, dict, list]:
    """Grade every submission under root (serially) with the mode's kernels (the zygote, if any, kept from
    the mode's earlier runs); wall seconds, seconds of each notebook's execution, failures."""
    from traitlets.config import Config

    from cnngrader.pipeline import grade as autograde

    c = Config()
    for name, value in MODES[mode].items():
        setattr(c.GradingExecute, name, value)
    start = time.perf_counter()
    result = autograde.grade_course(root, jobs=1, course=course, config=c, feedback=False, report=False,
                                    progress="off")
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
    from cnngrader.pipeline.kernel_start import stop_zygote
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
        stop_zygote()  # each mode starts its own zygote, in its warm-up
        try:
            for what in ("warm-up", "solutions", "a2", "student"):
                with tempfile.TemporaryDirectory(prefix="cnn-bench-zygote-") as tmp:
                    root = Path(tmp)
                    if what == "student":
                        autograde.make_submissions(root, count=1, course=course)
                    else:
                        _solutions(root, course, {"solutions": course.ids, "a2": [A2]}.get(what, [WARM_UP]))
                    wall, per, failures = _grade(root, mode, course)
                if failures:
                    return [], [Skipped("zygote", f"{mode} kernels, {what}: {failures[0]}", True)]
                figures[mode][what] = {"wall_s": wall, "notebooks": len(per), "execute_s": sum(per.values()),
                                       "per_notebook_s": {f"{s}/{a}": v for (s, a), v in sorted(per.items())}}
                log(f"[zygote] {mode:10} {what:9} {len(per)} notebook(s): {wall:.2f} s wall, "
                    f"{sum(per.values()) / max(1, len(per)):.2f} s per notebook executed")
        finally:
            stop_zygote()
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
        student = f[mode]["student"]
        out.append(Result("zygote", f"seconds, one student's six notebooks executed, {mode} kernels", "-",
                          student["execute_s"], "s", STUDENT_TARGET if mode == "forked" else None, student))
        rest = sum(v for k, v in student["per_notebook_s"].items() if not k.endswith("/" + EXPERIMENT))
        out.append(Result("zygote", f"of which the five notebooks without {EXPERIMENT}'s training experiment, "
                          f"{mode} kernels", "-", rest, "s", None, student))
        out.append(Result("zygote", f"seconds, grading one student's six notebooks (wall, all phases), {mode}",
                          "-", student["wall_s"], "s", None, student))
        out.append(Result("zygote", f"seconds, the first notebook ({WARM_UP}) with the mode's start-up, {mode}",
                          "-", f[mode]["warm-up"]["execute_s"], "s", None, f[mode]["warm-up"]))
    return out

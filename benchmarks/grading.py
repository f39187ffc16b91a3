"""Part 3: autograding a generated class, serially and with parallel workers (cnngrader.pipeline)."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from .machine import REPO
from .report import Result, Skipped

PER_STUDENT_TARGET = "<= 20"  # seconds to grade one student's six notebooks, serially
SPEEDUP_TARGET = ">= 1.7"  # serial time / time with JOBS=2
SANDBOX_TARGET = "<= 0.3"  # seconds the sandbox adds to a notebook, against an unsandboxed fresh kernel
LOOPING_TARGET = "<= 60"  # seconds of a batch that a notebook whose corr2d never returns costs


def missing() -> str | None:
    """Why the grading benchmark cannot run here, or None."""
    try:
        from cnngrader.course import CourseError, load_course
        from cnngrader.pipeline import grade  # noqa: F401 (only whether it imports matters here)
    except ImportError as e:
        return f"the grading pipeline cnngrader.pipeline is not importable ({e})"
    try:
        ids = load_course(REPO).ids
    except CourseError as e:
        return f"the course manifest is missing or unreadable: {e}"
    absent = [
        aid for aid in ids
        if not all((REPO / tree / aid / f"{aid}.ipynb").exists() for tree in ("solutions", "exercises"))
    ]
    if absent:
        return "assignments missing from solutions/ or exercises/: " + ", ".join(absent)
    return None


def run(students: int, jobs: int, log=print) -> tuple[list[Result], list[Skipped]]:
    why = missing()
    if why:
        return [], [Skipped("grade", why)]
    from traitlets.config import Config

    from cnngrader.course import load_course
    from cnngrader.pipeline import grade as autograde

    course = load_course(REPO)
    unsandboxed = Config()
    unsandboxed.GradingExecute.sandbox = False
    unsandboxed.GradingExecute.preload_kernels = False  # a fresh Python per kernel, as in the sandbox
    no_spare = Config()
    no_spare.GradingExecute.warm_spare = False  # sandboxed, each kernel a fresh one started when its notebook is
    no_spare.GradingExecute.fork_kernels = False
    # The sandbox's cost is "no spare" against "unsandboxed": both start every kernel when its notebook
    # starts (the warm spare exists only for sandboxed kernels, and would hide the start-up).
    runs = {1: (1, None, ""), jobs: (jobs, None, ""),
            "no spare": (1, no_spare, ", fresh sandboxed kernels, no warm spare"),
            "unsandboxed": (1, unsandboxed, ", unsandboxed fresh kernels")}
    seconds, details = {}, {}
    for n_jobs, (workers, config, label) in runs.items():
        with tempfile.TemporaryDirectory(prefix="cnn-bench-grade-") as tmp:
            root = Path(tmp)
            ids = autograde.make_submissions(root, count=students, course=course)
            log(f"[grade] {len(ids)} students x {len(course.ids)} notebooks with {workers} worker(s){label}")
            start = time.perf_counter()
            result = autograde.grade_course(root, jobs=workers, course=course, config=config)
            seconds[n_jobs] = time.perf_counter() - start
            if result.failures:
                return [], [Skipped("grade", f"grading failed with {n_jobs} worker(s): {result.failures[0]}", True)]
            details[n_jobs] = {
                "seconds": seconds[n_jobs],
                "notebooks": result.notebooks,
                "phases": result.seconds,
                "execute_seconds_per_notebook": sum(result.execute_seconds.values()) / max(1, result.notebooks),
            }
    notebooks = details[1]["notebooks"]
    out = []
    for n_jobs in (1, jobs):
        label = "serial" if n_jobs == 1 else f"JOBS={n_jobs}"
        out.append(Result("grade", f"seconds per notebook, {label}, {students} students", "-",
                          seconds[n_jobs] / notebooks, "s", None, details[n_jobs]))
        target = PER_STUDENT_TARGET if n_jobs == 1 else None
        out.append(Result("grade", f"seconds per student (6 notebooks), {label}", "-",
                          seconds[n_jobs] / students, "s", target, details[n_jobs]))
    out.append(Result("grade", f"speedup JOBS={jobs} over serial, {students} students", "-",
                      seconds[1] / seconds[jobs], "x", SPEEDUP_TARGET if jobs == 2 else None,
                      {"serial_s": seconds[1], "parallel_s": seconds[jobs]}))
    per_notebook = {k: v["execute_seconds_per_notebook"] for k, v in details.items()}
    out.append(Result("grade", "seconds the sandbox adds per notebook (serial, no warm spare, vs unsandboxed "
                      "fresh kernels)", "-", per_notebook["no spare"] - per_notebook["unsandboxed"], "s",
                      SANDBOX_TARGET, {"no spare": details["no spare"], "unsandboxed": details["unsandboxed"]}))
    out.append(Result("grade", "seconds the default kernels (forked from the zygote) save per notebook against fresh "
                      "sandboxed kernels without a warm spare (serial)", "-",
                      per_notebook["no spare"] - per_notebook[1], "s", None, details["no spare"]))
    out.append(looping(log))
    return out, []


def looping(log=print) -> Result:
    """What a notebook whose corr2d never returns costs a batch (02, sandboxed, the course's time limits),
    beside the same notebook with the reference solution."""
    import nbformat

    from cnngrader.course import load_course
    from cnngrader.pipeline import grade as autograde

    course, aid = load_course(REPO), "02_cross_correlation"
    with tempfile.TemporaryDirectory(prefix="cnn-bench-loop-") as tmp:
        root = Path(tmp)
        nb = autograde.solution_submission(aid, course=course)
        for sid, looping_corr2d in (("correct", False), ("looping", True)):
            copy = nbformat.from_dict(nb)
            if looping_corr2d:
                for cell in copy.cells:
                    if cell.metadata.get("nbgrader", {}).get("grade_id") == "corr2d":
                        cell.source = "def corr2d(X, K):\n    while True:\n        pass\n"
            (root / "submitted" / sid / aid).mkdir(parents=True)
            nbformat.write(copy, root / "submitted" / sid / aid / f"{aid}.ipynb")
        log(f"[grade] {aid}: a notebook whose corr2d never returns, beside a correct one")
        result = autograde.grade_course(root, jobs=1, course=course, feedback=False, report=False)
    seconds = result.execute_seconds.get(("looping", aid), float("nan"))
    return Result("grade", "seconds a notebook whose corr2d never returns costs (02, serial, sandboxed)", "-",
                  seconds, "s", LOOPING_TARGET, {"correct_s": result.execute_seconds.get(("correct", aid)),
                                                 "looping_s": seconds, "failures": result.failures})

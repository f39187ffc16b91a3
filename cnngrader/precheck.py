"""The pre-submission check: the hidden tests of an assignment, run on a student's notebook before it is
handed in, with a report of what would fail and why (like otter's ``grader.check_all()``).

In the notebook, in a new cell::

    from cnngrader.precheck import check_all; check_all("02_cross_correlation")

From a shell (or ``cnn-check NOTEBOOK``)::

    python -m cnngrader.precheck exercises/02_cross_correlation/02_cross_correlation.ipynb

The notebook call checks the functions the notebook has defined so far, in its own kernel (a LocalRunner).
The command runs the whole notebook in a fresh kernel of this Python (nbclient), then has that kernel run the
student's functions for the checks, as grading does (a RemoteRunner, over cnngrader.kernel.serve). There is no
sandbox: it is the student's own code, on the student's own machine.

Every run draws its cases from a new random seed. The grader's secret never exists on the student's side, so
neither the check nor the student can know the graded cases; the grade may still differ from the check's
"would score about" (other cases, a different machine's devices, answers checked only when graded).

When the grading pipeline runs a notebook that calls check_all, the call does nothing: the kernel has the
grader's kernel side imported before any cell, and no hidden checks. This module therefore imports only the
standard library at its top, and the course's own stdlib-only modules that the grading sandbox binds
(cnngrader.cells, cnngrader.check_verdict, cnngrader.course); everything else (the grader's checks, nbformat,
nbclient, jupyter) is imported by the function that needs it: the grading sandbox has no cnngrader.grading.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic
from typing import Any

from cnngrader.cells import checked_name, nbgrader_meta, student_sources
from cnngrader.check_verdict import FAIL, PASS, WHEN_GRADED, cell_verdict
from cnngrader.course import ENV_VAR, MANIFEST, CourseError, load_course

BUNDLED = Path(__file__).with_name("_course")  # course.toml, checks and release notebooks of an installed course
ASSIGNMENTS = "assignments"
# Status of one graded cell: check_verdict's PASS, FAIL and WHEN_GRADED, or
NOT_HERE = "not checked here"
BY_HAND = "graded by hand"  # an answer in words (a markdown cell nbgrader grades manually)


class PrecheckError(ValueError):
    """Bad usage: no such notebook, course or assignment."""


def _in_grading_kernel() -> bool:
    """True in a kernel the grading pipeline (or this command) runs: it imports the grader's kernel side
    before any cell, and never the hidden checks."""
    return "cnngrader.kernel" in sys.modules and "cnngrader.grading" not in sys.modules


# ---------------------------------------------------------------------------------------------
# The notebook's graded cells, and the course whose checks grade them.
@dataclass(frozen=True)
class GradedCell:
    grade_id: str
    points: float
    checks: tuple[str, ...]  # names of the hidden checks it runs; () when none can run here
    by_hand: bool = False  # a written answer, graded by hand after the automatic grading


def graded_cells(nb: dict, known: Any) -> list[GradedCell]:
    """The notebook's graded cells (nbgrader `grade: true`) with their points, each with the checks it
    runs: hidden_<name> runs the check <name> when the course (`known`: a container of check names) has it."""
    out = []
    for cell in nb.get("cells", []):
        meta = nbgrader_meta(cell)
        if cell.get("cell_type") not in ("code", "markdown") or not meta.get("grade"):
            continue
        gid = str(meta.get("grade_id", ""))
        points = meta.get("points", 0)
        points = float(points) if isinstance(points, (int, float)) and not isinstance(points, bool) else 0.0
        if cell.get("cell_type") == "markdown":
            out.append(GradedCell(gid, points, (), by_hand=True))
            continue
        name = checked_name(gid)
        out.append(GradedCell(gid, points, (name,) if name in known else ()))
    return out


def _ids(root: Path) -> tuple[str, ...]:
    try:
        return load_course(root).ids
    except CourseError:
        return ()


def _course_lists(root: Path, aid: str) -> bool:
    return aid in _ids(root)


def _candidates(start: Path | None, course: str | os.PathLike | None) -> list[Path]:
    """Course folders to look in, in order: `course`, $CNNGRADER_COURSE, the nearest course.toml at or
    above `start`, then above the working directory, then the course bundled with the installed package."""
    if course is not None:
        root = Path(course).resolve()
        if not (root / MANIFEST).is_file():
            raise PrecheckError(f"course must be a course folder holding {MANIFEST}, got {str(course)!r}")
        return [root]
    out = []
    if os.environ.get(ENV_VAR):
        out.append(Path(os.environ[ENV_VAR]).resolve())
    for here in dict.fromkeys(p.resolve() for p in (start or Path.cwd(), Path.cwd())):
        out += [folder for folder in (here, *here.parents) if (folder / MANIFEST).is_file()][:1]
    if (BUNDLED / MANIFEST).is_file():
        out.append(BUNDLED)
    return out


def course_root(aid: str, start: Path | None = None, course: str | os.PathLike | None = None,
                how: str = "run from the course folder, install the course (pip install <course>), "
                           "or name it with --course") -> Path:
    """The course folder whose course.toml lists `aid` (see _candidates); `how`: what the error message
    suggests (the command's options, or the notebook call's arguments)."""
    tried = _candidates(start, course)
    for root in tried:
        if _course_lists(root, aid):
            return root
    where = ", ".join(str(r) for r in tried) or "no course.toml here or above, and no installed course"
    raise PrecheckError(f"assignment {aid!r} is in no course found ({where}); {how}")


# What the notebook call suggests when it finds no course.
IN_NOTEBOOK = ("open the notebook from inside the course folder, install the course (pip install <course>), "
               "or pass course='<course folder>' to check_all")


_COPY_SUFFIX = re.compile(r"\s*\(\d+\)\Z")  # "02_cross_correlation (1)": a browser's renamed download


def assignment_of(nb: dict, path: Path, course: str | os.PathLike | None = None) -> str:
    """The assignment a notebook is: its metadata (where it was generated from), else its file name or
    folder, matched against the course's assignments."""
    guesses = []
    generated = nb.get("metadata", {}).get("cnngrader", {}).get("generated_from", "")
    parts = Path(str(generated)).parts
    if len(parts) >= 2 and parts[0] == ASSIGNMENTS:
        guesses.append(parts[1])
    guesses += [_COPY_SUFFIX.sub("", path.stem), path.parent.name]
    roots = _candidates(path.parent, course)
    for guess in dict.fromkeys(guesses):
        for root in roots:
            if _course_lists(root, guess):
                return guess
    known = sorted({aid for root in roots for aid in _ids(root)})
    raise PrecheckError(f"cannot tell which assignment {path.name} is (tried {', '.join(dict.fromkeys(guesses))}); "
                        f"name it with --assignment ID, one of: {', '.join(known) or 'no course found'}")


# ---------------------------------------------------------------------------------------------
# Running the checks and the report.
@dataclass
class Result:
    cell: GradedCell
    status: str
    reason: str = ""
    fraction: float = 1.0  # of the points, for a check that earns part of them (an experiment's accuracy)


@dataclass
class Report:
    assignment: str
    results: list[Result]
    cell_errors: list[str] = field(default_factory=list)  # "cell 5 (corr2d): NotImplementedError: ..."
    notes: list[str] = field(default_factory=list)

    @property
    def earned(self) -> float:
        return round(sum(r.cell.points * r.fraction for r in self.results if r.status == PASS), 2)

    @property
    def total(self) -> float:
        return sum(r.cell.points for r in self.results)

    @property
    def passed(self) -> bool:
        """No hidden test cell fails (those checked only when graded do not count)."""
        return all(r.status != FAIL for r in self.results)

    def text(self) -> str:
        lines = [f"Pre-submission check of {self.assignment}: the hidden tests on new random cases "
                 f"(not the graded ones, which are drawn when your notebook is graded)."]
        if self.cell_errors:
            lines.append("Cells that raised an error when the notebook ran:")
            lines += [f"  {e}" for e in self.cell_errors]
        width = max((len(r.cell.grade_id) for r in self.results), default=0)
        for r in self.results:
            head = f"  {r.cell.grade_id.ljust(width)}  {_num(r.cell.points)} point{'s' * (r.cell.points != 1)}: "
            reason = r.reason.splitlines() or [""]
            lines.append(head + r.status + (f": {reason[0]}" if reason[0] else ""))
            lines += [f"      {line}" for line in reason[1:]]
        later = sum(r.cell.points for r in self.results if r.status in (WHEN_GRADED, NOT_HERE, BY_HAND))
        score = f"Would score about {_num(self.earned)}/{_num(self.total)}"
        if later:
            score += f" ({_num(later)} of these points {'is' if later == 1 else 'are'} checked only when graded)"
        lines.append(score + ". The grade may differ: it is computed on other random cases.")
        lines += self.notes
        return "\n".join(lines)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def new_secret() -> int:
    """A fresh seed for one pre-submission check; the grader draws its own, which never leaves it."""
    return secrets.randbits(62)


def run_checks(aid: str, cells: list[GradedCell], runner: Any, sources: list[tuple[int, str]] | None,
               reg: Any) -> list[Result]:
    """Each graded cell's verdict: the static scan of `sources` (None: skipped), then its checks through
    `runner`, as the grader runs them (check_verdict); NotChecked (answers not published) reads as checked
    when graded."""
    from cnngrader.grading import scan  # the trusted side: only where checks run (see the module's docstring)

    parsed = scan.parse(sources) if sources is not None else None

    def static(name: str) -> str | None:
        forbidden = reg.forbidden.get(name)
        return scan.reason(parsed, name, forbidden.static if forbidden else ()) if parsed is not None else None

    results = []
    for cell in cells:
        if cell.by_hand:
            results.append(Result(cell, BY_HAND, "an answer in words, read by a grader after the automatic grading"))
            continue
        if not cell.checks:
            results.append(Result(cell, NOT_HERE, "no hidden check of this course runs it before grading"))
            continue
        found = cell_verdict(cell.checks, lambda: runner, reg, static=static, graded=False)
        reason = found.reason or ("its answer is checked only when graded" if found.status == WHEN_GRADED else "")
        fraction = 1.0
        for got in found.credits if found.status == PASS else ():  # a check that earns part of the points
            fraction, reason = min(fraction, max(0.0, float(got.fraction))), got.text
        results.append(Result(cell, found.status, reason, fraction))
    return results


def _validate(nb: dict, path: Path) -> None:
    """A notebook nbformat can run: v4, or convertible to it (not validated further, as grading does not)."""
    import nbformat  # see the module's docstring

    try:
        nbformat.reads(json.dumps(nb), as_version=4)
    except Exception as e:  # nbformat raises several kinds
        first = str(e).splitlines()[0]
        raise PrecheckError(f"notebook {str(path)!r} is not a valid Jupyter notebook: {first}") from None


def _load_notebook(path: Path) -> dict:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PrecheckError(f"notebook {str(path)!r} cannot be read as a notebook: {e}") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise PrecheckError(f"notebook {str(path)!r} is not a Jupyter notebook (no cells)")
    return nb


# ---------------------------------------------------------------------------------------------
# The notebook call.
def _user_namespace() -> dict[str, Any]:
    try:
        from IPython import get_ipython  # in a kernel; absent from a plain Python

        shell = get_ipython()
    except ImportError:
        shell = None
    return shell.user_ns if shell is not None else vars(sys.modules["__main__"])


def _own_notebook(aid: str, ns: dict[str, Any], notebook: str | os.PathLike | None) -> Path | None:
    """The student's notebook file: `notebook`, else the one Jupyter names in __session__, else <aid>.ipynb
    in the working directory."""
    if notebook is not None:
        path = Path(notebook)
        if not path.is_file():
            raise PrecheckError(f"notebook {str(notebook)!r} does not exist")
        return path
    session = ns.get("__session__")
    for candidate in ([Path(session)] if isinstance(session, str) and session.endswith(".ipynb") else []) + \
            [Path.cwd() / f"{aid}.ipynb"]:
        if candidate.is_file():
            return candidate
    return None


def check_all(assignment: str, notebook: str | os.PathLike | None = None,
              course: str | os.PathLike | None = None) -> Report | None:
    """Run the hidden tests of `assignment` on the functions this notebook has defined, on new random cases,
    and print one line per hidden test cell and the score it would get (stdout only).

    notebook: the notebook file, for its points and the static scan of its saved code (default: the one
    Jupyter is running, else <assignment>.ipynb here); course: the course folder (default: found).
    Returns the Report, or None when the notebook is being graded (the call then does nothing) or when
    the check cannot run where the notebook is (no course, no notebook to read the points from, ...): it
    then prints one line on stdout saying what is wrong and how to fix it, and raises nothing, so that a
    student's "Restart & Run All" is not stopped by it. An `assignment` that is no id is a programming error
    and raises PrecheckError."""
    if _in_grading_kernel():
        _say("cnngrader.precheck: check_all does nothing here (the notebook is being graded, or run by cnn-check).")
        return None
    if not isinstance(assignment, str) or not assignment:
        raise PrecheckError(f"assignment must be an assignment id such as '02_cross_correlation', got {assignment!r}")
    ns = _user_namespace()
    try:
        own = _own_notebook(assignment, ns, notebook)
        root = course_root(assignment, own.parent if own else None, course, how=IN_NOTEBOOK)
        points_from = own
        if points_from is None or not _has_graded_cells(points_from):
            release = root / "exercises" / assignment / f"{assignment}.ipynb"
            points_from = release if release.is_file() else None
        if points_from is None:
            raise PrecheckError(f"no notebook of {assignment!r} to read its points from: pass notebook='<file>.ipynb'")
        points_nb = _load_notebook(points_from)
    except PrecheckError as e:
        _say(f"cnngrader.precheck: the pre-submission check did not run: {e}")
        return None
    with contextlib.redirect_stderr(sys.stdout):  # the student's code may write to stderr: keep it in stdout
        report = _check_namespace(assignment, ns, points_nb, own, root)
    _say(report.text())
    return report


def _say(text: str) -> None:
    """Print text in one write: a kernel sends each flush as its own output, and print() writes the
    newline apart from the text."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _has_graded_cells(path: Path) -> bool:
    try:
        return bool(graded_cells(_load_notebook(path), ()))
    except PrecheckError:
        return False


def _check_namespace(aid: str, ns: dict[str, Any], points_nb: dict, own: Path | None, root: Path) -> Report:
    from cnngrader import grading  # see the module's docstring
    from cnngrader.grading.runners import LocalRunner

    reg = grading.registry(root)
    cells = graded_cells(points_nb, reg.checks)
    notes = []
    sources = None
    if own is not None:
        sources = student_sources(_load_notebook(own))
        notes.append(f"The static scan read the saved notebook {own.name}: save it first for it to see your edits.")
    else:
        notes.append("The static scan of your code was skipped (no notebook file found): pass notebook='<file>.ipynb', "
                     "or run `cnn-check NOTEBOOK`.")
    runner = LocalRunner(ns, new_secret())
    return Report(aid, run_checks(aid, cells, runner, sources, reg), notes=notes)


# ---------------------------------------------------------------------------------------------
# The command: run the notebook in a fresh kernel, then the checks through it.
def _kernel_manager_class() -> type:
    from jupyter_client.manager import AsyncKernelManager  # see the module's docstring

    class ThisPythonKernel(AsyncKernelManager):
        """An ipykernel of the Python running the check: the environment that has cnnlib and cnngrader."""

        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file, *(extra_arguments or [])]

    return ThisPythonKernel


def run_notebook(path: Path, aid: str, root: Path, timeout: int = 300, secret: int | None = None) -> Report:
    """Execute the notebook at `path` in a fresh kernel (its folder as working directory), then run the
    hidden checks of `aid` through that kernel on cases drawn from `secret` (default: a new random one)."""
    import subprocess  # these imports: see the module's docstring (the command's side only)

    import nbformat
    from nbclient import NotebookClient

    from cnngrader import grading
    from cnngrader.grading.runners import RemoteRunner

    reg = grading.registry(root)
    nb = nbformat.read(str(path), as_version=4)
    cells = graded_cells(nb, reg.checks)
    hidden = {c.grade_id for c in cells if c.checks}  # graded cells without a check run, as nbgrader runs them
    client = NotebookClient(nb, timeout=timeout, allow_errors=True, interrupt_on_timeout=True,
                            kernel_manager_class=_kernel_manager_class(),
                            resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        assert client.kc is not None
        client.wait_for_reply(client.kc.kernel_info())
        # As grading does: the kernel side first, so a check_all cell in the notebook does nothing.
        client.wait_for_reply(client.kc.execute("import cnngrader.kernel", silent=True, store_history=False))
        errors, lost, ran = _run_cells(client, hidden, timeout)
        runner = RemoteRunner(_sender(client, lost, timeout), new_secret() if secret is None else secret)
        results = run_checks(aid, cells, runner, student_sources(nb), reg)
    for r in results:  # a graded cell of plain asserts scores as nbgrader scores it: no error, full points
        if r.status == NOT_HERE and r.cell.grade_id in ran:
            error = ran[r.cell.grade_id]
            r.status, r.reason = (FAIL, f"the cell raised {error}") if error else (PASS, "")
    return Report(aid, results, errors)


def _run_cells(client: Any, hidden: set[str], timeout: int) -> tuple[list[str], list[str], dict[str, str]]:
    """Run the notebook's code cells but the hidden test cells. Returns the errors ("cell 5 (corr2d): ..."),
    why the kernel was lost ([] if it was not), and grade_id -> first error ("" when none) of each graded
    cell that ran."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError  # see run_notebook

    errors: list[str] = []
    lost: list[str] = []
    ran: dict[str, str] = {}
    for index, cell in enumerate(client.nb.cells):
        if cell.cell_type != "code" or cell.metadata.get("nbgrader", {}).get("grade_id") in hidden:
            continue
        try:
            client.execute_cell(cell, index)
        except DeadKernelError:
            lost.append(f"the kernel died in cell {index + 1}")
            errors.append(f"cell {index + 1} ({_cell_name(cell)}): the kernel died while it ran")
            break
        except CellTimeoutError:
            errors.append(f"cell {index + 1} ({_cell_name(cell)}): ran past {timeout} s and did not stop")
            continue
        failed = [o for o in cell.outputs if o.get("output_type") == "error"]
        for out in failed:
            message = (str(out.get("evalue") or "").splitlines() or [""])[0]
            errors.append(f"cell {index + 1} ({_cell_name(cell)}): {out.get('ename')}"
                          + (f": {message}" if message else ""))
        if cell.metadata.get("nbgrader", {}).get("grade"):
            ran[cell.metadata.nbgrader.get("grade_id")] = errors[-1].split(": ", 1)[1] if failed else ""
    return errors, lost, ran


def _cell_name(cell: Any) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id") or cell.get("id") or "code"


def _sender(client: Any, lost: list[str], timeout: float):
    """send(request) -> reply for a RemoteRunner: one request to the notebook's kernel (cnngrader.kernel_rpc),
    with `timeout` seconds to answer (each call of a batch); KernelGone when there is no reply (a kernel past
    its time is interrupted)."""
    from jupyter_core.utils import ensure_async, run_sync  # see run_notebook

    from cnngrader import kernel_rpc
    from cnngrader.grading.runners import KernelGone

    async def request(text: str) -> kernel_rpc.Reply:
        start = monotonic()
        reply = await kernel_rpc.send(client.kc, client.km, text, start + timeout, per_call=timeout,
                                      last=start + timeout * (kernel_rpc.batch_size(text) or 1))
        if reply.outcome == kernel_rpc.TIMED_OUT:
            await ensure_async(client.km.interrupt_kernel())
        return reply

    def send(text: str) -> str | list[str]:
        if lost:
            raise KernelGone(lost[0])
        reply = run_sync(request)(text)
        got = kernel_rpc.complete(reply, text)
        if got is not None:
            return got
        raise KernelGone(f"the kernel sent no reply within {timeout} s", list(reply.texts))

    return send


def main(argv: list[str] | None = None) -> int:
    """`python -m cnngrader.precheck NOTEBOOK` (or `cnn-check NOTEBOOK`): 0 when every hidden test passes,
    1 when one would fail, 2 on bad usage."""
    parser = argparse.ArgumentParser(
        prog="cnn-check", description="Run an assignment's hidden tests on your notebook before you submit it, "
        "on new random cases, and say what would fail and why.")
    parser.add_argument("notebook",
                        help="your notebook, e.g. exercises/02_cross_correlation/02_cross_correlation.ipynb")
    parser.add_argument("--assignment", help="the assignment id (default: found from the notebook)")
    parser.add_argument("--course",
                        help="the course folder (default: the one around the notebook, else the installed one)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell and per check (default 300)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    path = Path(args.notebook)
    try:
        if not path.is_file():
            raise PrecheckError(f"notebook {args.notebook!r} does not exist")
        if args.timeout <= 0:
            raise PrecheckError(f"--timeout must be a positive number of seconds, got {args.timeout}")
        nb = _load_notebook(path)
        _validate(nb, path)
        aid = args.assignment or assignment_of(nb, path, args.course)
        root = course_root(aid, path.parent, args.course)
    except PrecheckError as e:
        print(f"cnn-check: {e}", file=sys.stderr)
        return 2
    print(f"Running {path.name} in a fresh kernel, then the hidden tests of {aid} ...", flush=True)
    report = run_notebook(path, aid, root, args.timeout)
    print(report.text())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())

"""The pre-submission check (cnngrader.precheck): the hidden checks on a student's notebook, on new random
cases, with the reason the grader would give.

- the issue's example: a corr2d built on F.conv2d passes the visible tests, and the check says what grading
  says (corr2d and what calls it fail, with the reason);
- the solution passes everything; the blank release notebook fails each cell as "not implemented", a
  notebook without a function says "not defined";
- the command's exit codes (0, 1, 2) and a notebook that fails to run;
- the notebook call, in process and in a real kernel (its report on stdout, nothing on stderr), and a no-op
  in a kernel that grading runs; the tamper scan lets the call through;
- every call draws new cases, never the grader's (a spy on the cases the student's function receives);
- a check that raises NotChecked (answers not published) reads as "checked when graded".
"""
from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient
from nbtools import cell, points, score_line, stdout_of, with_cells
from nbtools import statuses as report_statuses
from test_grading import corr2d_loop  # a student-style loop

from cnngrader import cells, grading, precheck
from cnngrader.course import load_course
from cnngrader.grading import scan
from cnngrader.grading.runners import LocalRunner
from cnngrader.kernel import answer
from cnngrader.pipeline import verdict

AID = "02_cross_correlation"
SOLUTION = REPO / "solutions" / AID / f"{AID}.ipynb"
RELEASE = REPO / "exercises" / AID / f"{AID}.ipynb"
POINTS = points(AID)  # grade_id -> points, from the solution's nbgrader metadata
TORCH_CORR2D = '''\
import torch.nn.functional as F

def corr2d(X, K):
    """Cross-correlation through F.conv2d: right values, but the shortcut the assignment forbids."""
    return F.conv2d(X[None, None], K[None, None])[0, 0]
'''


def run_command(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnngrader.precheck", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd or REPO, env=env)


def solution() -> nbformat.NotebookNode:
    return nbformat.read(SOLUTION, as_version=4)


def solved_release() -> nbformat.NotebookNode:
    """The student's notebook, every solution cell filled in with the solution's code."""
    nb, source = nbformat.read(RELEASE, as_version=4), solution()
    for c in nb.cells:
        if c.metadata.get("nbgrader", {}).get("solution"):
            c.source = cell(source, c.metadata.nbgrader.grade_id).source
    return nb


def namespace(nb: nbformat.NotebookNode) -> dict:
    """The notebook's code cells run here, hidden test cells left out (as the grading kernel does)."""
    ns: dict = {"__name__": "__main__"}
    for c in nb.cells:
        if c.cell_type == "code" and not c.metadata.get("nbgrader", {}).get("grade"):
            exec(compile(c.source, "<cell>", "exec"), ns)
    return ns


def statuses(stdout: str) -> dict[str, str]:
    """grade_id -> the status word of its report line."""
    return report_statuses(stdout, POINTS)


def grader_verdict(nb: nbformat.NotebookNode, ns: dict) -> dict[str, bool]:
    """What grading decides, cell by cell: verdict.grade_cell on the gradebook's calls, the kernel side
    answering in this process, with a grading secret."""

    def send(request):
        return answer(request, ns)

    secret = secrets.randbits(62)
    sources = cells.student_sources(nb, {c.metadata["nbgrader"]["grade_id"] for c in nb.cells
                                           if c.metadata.get("nbgrader", {}).get("locked")})
    out = {}
    for c in solution().cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid in POINTS:
            outputs = verdict.grade_cell(verdict.hidden_calls(c.source), send, secret, sources, str(REPO))
            out[gid] = all(o.output_type != "error" for o in outputs)
    return out


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("aid", load_course(REPO).ids)
def test_each_hidden_cell_maps_to_the_calls_of_its_gradebook_source(aid):
    """The check finds a released cell's checks from its grade_id; the instructor's source says the same."""
    reg = grading.registry(REPO)
    release = nbformat.read(REPO / "exercises" / aid / f"{aid}.ipynb", as_version=4)
    source = nbformat.read(REPO / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    cells = precheck.graded_cells(release, reg.checks)
    mapped = {c.grade_id: (c.checks, c.points) for c in cells}
    expected = {c.metadata.nbgrader.grade_id: (tuple(verdict.hidden_calls(c.source)), float(c.metadata.nbgrader.points))
                for c in source.cells if c.metadata.get("nbgrader", {}).get("grade")}
    # an answer in words (a markdown grade cell) runs no check: it is graded by hand
    assert mapped == expected and all(c.checks or c.by_hand for c in cells)
    assert all(c.by_hand == (cell(source, c.grade_id).cell_type == "markdown") for c in cells)


def test_torch_corr2d_passes_the_visible_tests_but_the_check_says_what_grading_says(tmp_path):
    nb = with_cells(solution(), corr2d=TORCH_CORR2D)
    ns = namespace(nb)  # the visible tests ran in there, and passed: no assertion failed
    assert ns["corr2d"] is not None
    path = tmp_path / f"{AID}.ipynb"
    nbformat.write(nb, path)
    proc = run_command(str(path), "--course", str(REPO))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    got = statuses(proc.stdout)
    assert got["hidden_corr2d"] == "FAIL"
    line = next(line for line in proc.stdout.splitlines() if line.lstrip().startswith("hidden_corr2d"))
    assert "corr2d uses torch.nn.functional.conv2d" in line and "without that shortcut" in line
    assert "Cells that raised an error" not in proc.stdout  # the visible tests pass
    graded = grader_verdict(nb, ns)
    assert {gid: s == "pass" for gid, s in got.items()} == graded
    assert sum(POINTS[gid] for gid, ok in graded.items() if ok) < sum(POINTS.values())
    assert score_line(POINTS, got) in proc.stdout


def test_the_solution_passes_everything():
    proc = run_command(str(SOLUTION))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == dict.fromkeys(POINTS, "pass")  # the answers file is here: checked too
    assert score_line(POINTS, statuses(proc.stdout)) in proc.stdout and proc.stderr == ""


def test_the_blank_notebook_fails_each_cell_as_not_implemented():
    proc = run_command(str(RELEASE))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert statuses(proc.stdout) == dict.fromkeys(POINTS, "FAIL")
    for gid in POINTS:  # a function still to write, or a conceptual answer not given yet
        line = next(line for line in proc.stdout.splitlines() if line.lstrip().startswith(gid))
        name = gid.removeprefix("hidden_")
        if f"{name} is not defined: set {name} = <your answer>" not in line:
            assert "raised NotImplementedError" in line and "replace `raise NotImplementedError()`" in line, line
    assert "cell 6 (test_corr2d): NotImplementedError" in proc.stdout  # the cells that failed to run
    assert score_line(POINTS, statuses(proc.stdout)) in proc.stdout and "Would score about 0/" in proc.stdout


def test_a_notebook_that_dies_or_lacks_a_function_still_gets_a_report(tmp_path):
    nb = solution()
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "corr2d"]
    cell(nb, "convolve2d").source = "import os\nos._exit(3)"
    path = tmp_path / "copy of the notebook.ipynb"
    nbformat.write(nb, path)
    proc = run_command(str(path), "--assignment", AID)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the kernel died while it ran" in proc.stdout
    got = statuses(proc.stdout)
    assert got["hidden_corr2d"] == "FAIL" and got["hidden_learn_kernel"] == "FAIL"
    line = next(line for line in proc.stdout.splitlines() if line.lstrip().startswith("hidden_corr2d"))
    assert "corr2d is not defined" in line or "kernel died" in line


def test_bad_usage_exits_2(tmp_path):
    assert run_command().returncode == 2
    proc = run_command(str(tmp_path / "missing.ipynb"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr and proc.stdout == ""
    (tmp_path / "notes.ipynb").write_text("not json")
    proc = run_command(str(tmp_path / "notes.ipynb"))
    assert proc.returncode == 2 and "cannot be read as a notebook" in proc.stderr
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "scratch.ipynb")
    proc = run_command(str(tmp_path / "scratch.ipynb"), "--course", str(REPO))
    assert proc.returncode == 2 and "cannot tell which assignment" in proc.stderr and "--assignment" in proc.stderr
    proc = run_command(str(RELEASE), "--assignment", "99_nothing")
    assert proc.returncode == 2 and "'99_nothing' is in no course" in proc.stderr
    proc = run_command(str(RELEASE), "--timeout", "0")
    assert proc.returncode == 2 and "--timeout must be a positive" in proc.stderr


def test_the_assignment_is_found_from_metadata_name_or_folder(tmp_path):
    nb = nbformat.read(RELEASE, as_version=4)
    assert precheck.assignment_of(nb, tmp_path / "anything.ipynb", REPO) == AID  # metadata
    nb.metadata.pop("cnngrader")
    assert precheck.assignment_of(nb, tmp_path / f"{AID} (1).ipynb", REPO) == AID  # a browser's renamed copy
    assert precheck.assignment_of(nb, tmp_path / AID / "mine.ipynb", REPO) == AID  # its folder
    with pytest.raises(precheck.PrecheckError, match="01_fc_to_conv, 02_cross_correlation"):
        precheck.assignment_of(nb, tmp_path / "mine.ipynb", REPO)


# ---------------------------------------------------------------------------------------------
# The notebook call.
def test_check_all_in_process_prints_the_report_on_stdout_only(monkeypatch, capsys, tmp_path):
    nb = with_cells(solution(), corr2d=TORCH_CORR2D)
    ns = namespace(nb)
    ns["print"] = lambda *a, **k: None
    nbformat.write(nb, tmp_path / f"{AID}.ipynb")
    monkeypatch.setattr(precheck, "_user_namespace", lambda: ns)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    report = precheck.check_all(AID, course=REPO)
    out, err = capsys.readouterr()
    assert err == "" and out == report.text() + "\n"
    assert [r.status for r in report.results][0] == precheck.FAIL and not report.passed
    assert f"The static scan read the saved notebook {AID}.ipynb" in out
    with pytest.raises(precheck.PrecheckError, match="assignment must be"):
        precheck.check_all("")


def test_check_all_says_in_one_line_why_it_cannot_run_and_raises_nothing(monkeypatch, capsys, tmp_path):
    """A setup problem (no course around the notebook, a course= that is none, a notebook= that is not
    there) is one line on stdout saying what to do, and None: a student's Restart & Run All goes on."""
    monkeypatch.setattr(precheck, "_user_namespace", lambda: {})
    monkeypatch.delenv("CNNGRADER_COURSE", raising=False)
    monkeypatch.setattr(precheck, "BUNDLED", tmp_path / "no installed course")
    monkeypatch.chdir(tmp_path)
    for kwargs, says in (({}, "is in no course found"), ({"course": tmp_path}, "course must be a course folder"),
                         ({"notebook": tmp_path / "gone.ipynb"}, "does not exist"),
                         ({"course": REPO, "notebook": tmp_path}, "does not exist")):
        capsys.readouterr()
        assert precheck.check_all(AID, **kwargs) is None, kwargs
        out, err = capsys.readouterr()
        assert err == "" and out.count("\n") == 1 and says in out, (kwargs, out)
        assert out.startswith("cnngrader.precheck: the pre-submission check did not run: ")
    precheck.check_all(AID)
    out = capsys.readouterr().out
    assert "pass course='<course folder>' to check_all" in out and "--course" not in out
    precheck.check_all("99_nothing", course=REPO)
    assert "'99_nothing' is in no course found" in capsys.readouterr().out


def test_one_point_checked_when_graded_is_singular():
    cells = [precheck.GradedCell("hidden_a", 1, ("a",)), precheck.GradedCell("hidden_b", 2, ("b",))]
    report = precheck.Report("q", [precheck.Result(cells[0], precheck.WHEN_GRADED),
                                   precheck.Result(cells[1], precheck.PASS)])
    assert "Would score about 2/3 (1 of these points is checked only when graded)." in report.text()
    report.results[1].status = precheck.WHEN_GRADED
    assert "Would score about 0/3 (3 of these points are checked only when graded)." in report.text()


def test_check_all_without_functions_says_not_defined(monkeypatch, capsys):
    monkeypatch.setattr(precheck, "_user_namespace", lambda: {})
    report = precheck.check_all(AID, course=REPO)
    out = capsys.readouterr().out
    assert [r.status for r in report.results] == [precheck.FAIL] * len(POINTS)
    for gid in POINTS:
        assert f"{gid.removeprefix('hidden_')} is not defined" in out
    assert "static scan of your code was skipped" in out  # no notebook file: points from the release


def test_check_all_in_a_kernel(tmp_path):
    """A student's notebook ends with the call: its output is the report, on stdout, and no stderr."""
    nb = with_cells(solved_release(), corr2d=TORCH_CORR2D)
    nb.cells.append(nbformat.v4.new_code_cell(
        f"from cnngrader.precheck import check_all; report = check_all({AID!r}, course={str(REPO)!r})"))
    nb.cells.append(nbformat.v4.new_code_cell("print(report.passed, report.earned, report.total)"))
    nbformat.write(nb, tmp_path / f"{AID}.ipynb")
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = stdout_of(nb.cells[-2].outputs)
    assert "hidden_corr2d" in text and "FAIL: corr2d uses torch.nn.functional.conv2d" in text
    assert statuses(text)["hidden_learn_kernel"] == "pass" and score_line(POINTS, statuses(text)) in text
    assert stdout_of(nb.cells[-1].outputs).startswith("False ")
    # The notebook's own "Before you submit" cell, run outside any course: one line on stdout, no error.
    own = stdout_of(cell(nb, "before_you_submit").outputs)
    assert own.count("\n") == 1 and "is in no course found" in own and "course=" in own


def test_check_all_does_nothing_where_grading_runs_the_notebook():
    code = ("import cnngrader.kernel\nfrom cnngrader.precheck import check_all\n"
            f"print(check_all({AID!r}))\nimport sys; print('cnngrader.grading' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["cnngrader.precheck: check_all does nothing here "
                                        "(the notebook is being graded, or run by cnn-check).", "None", "False"]


def test_the_tamper_scan_lets_the_call_through_and_nothing_more():
    ok = f"from cnngrader.precheck import check_all; check_all({AID!r})"
    assert scan.tampering(scan.parse([(0, ok)])) is None
    by_module = f"import cnngrader.precheck\ncnngrader.precheck.check_all({AID!r})"
    assert scan.tampering(scan.parse([(0, by_module)])) is None
    for bad in ("from cnngrader.precheck import check_all\ng = check_all.__globals__",
                "from cnngrader.precheck import check_all\nf = check_all\nf.__globals__['grading']",
                "import cnngrader.precheck as p\np.grading", "from cnngrader import grading\ngrading.registry()"):
        assert scan.tampering(scan.parse([(0, bad)])) is not None, bad


# ---------------------------------------------------------------------------------------------
# New cases every call, never the grader's.
def test_every_call_draws_new_cases_and_never_the_graded_ones(monkeypatch, capsys):
    seen: list[list] = []

    def spy(X, K):  # a correct corr2d, so that every case is reached, that records its inputs
        seen[-1].append((X.tolist(), K.tolist()))
        return corr2d_loop(X, K)

    ns = {"corr2d": spy}
    monkeypatch.setattr(precheck, "_user_namespace", lambda: ns)
    draws = []
    for _ in range(2):
        seen.append([])
        report = precheck.check_all(AID, course=REPO)
        assert report.results[0].status == precheck.PASS
        draws.append(seen[-1])
    capsys.readouterr()
    reg = grading.registry(REPO)
    for secret in (secrets.randbits(62), None):  # a grading run's secret; the fixed cases of no secret
        seen.append([])
        grading.run_check("corr2d", LocalRunner(ns, secret), reg)
        draws.append(seen[-1])
    assert all(len(d) == len(draws[0]) > 10 for d in draws)
    sets = [{repr(case) for case in d} for d in draws]
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            assert len(sets[i] & sets[j]) < len(sets[i]) // 2, (i, j)  # tiny 1x1 cases may coincide
    assert "secret" not in capsys.readouterr().out


def test_the_seed_is_new_for_every_call(monkeypatch):
    drawn = []
    real = precheck.new_secret
    monkeypatch.setattr(precheck, "new_secret", lambda: drawn.append(real()) or drawn[-1])
    monkeypatch.setattr(precheck, "_user_namespace", lambda: {})
    for _ in range(3):
        precheck.check_all(AID, course=REPO)
    assert len(set(drawn)) == 3 and all(0 <= s < 2**62 for s in drawn)


# ---------------------------------------------------------------------------------------------
# Answers checked only when graded.
FAKE_CHECKS = '''\
from cnngrader.grading import core

NotChecked = getattr(core, "NotChecked", None)
if NotChecked is None:  # the answers helper's exception is not there yet: any class of that name
    class NotChecked(Exception):
        pass


def check_answer(name, runner):
    value = runner.describe(name)
    if value["kind"] == "missing":
        core.fail(f"{name} is not defined")
    raise NotChecked(f"{name} has the right form; its value is checked when graded")


def check_double(name, runner):
    core.require_callable(name, runner)
    run = runner.call(name, core.forbid([]), [21], {})
    core.require_clean(name, run, "for 21")
    if run.value != 42:
        core.fail(f"{name}(21) returned {run.value!r}; expected 42")


CHECKS = {"answer": check_answer, "double": check_double}
'''


def fake_course(root: Path) -> Path:
    (root / "assignments" / "q").mkdir(parents=True)
    (root / "course.toml").write_text('[course]\nid = "fake"\n\n[[assignment]]\nid = "q"\ntitle = "Q"\n'
                                      'chapter = "book/q.md"\n')
    (root / "assignments" / "q" / "checks.py").write_text(FAKE_CHECKS)
    nb = nbformat.v4.new_notebook()
    for gid, max_points in (("hidden_answer", 2), ("hidden_double", 3), ("manual", 1)):
        c = nbformat.v4.new_code_cell("# hidden tests")
        c.metadata["nbgrader"] = {"grade": True, "grade_id": gid, "locked": True, "points": max_points,
                                  "solution": False}
        nb.cells.append(c)
    nbformat.write(nb, root / "q.ipynb")
    return root / "q.ipynb"


def test_an_answer_checked_when_graded_is_no_failure(tmp_path, monkeypatch, capsys):
    notebook = fake_course(tmp_path)
    monkeypatch.setattr(precheck, "_user_namespace", lambda: {"answer": "b", "double": lambda x: 2 * x})
    report = precheck.check_all("q", notebook=notebook, course=tmp_path)
    out = capsys.readouterr().out
    assert [r.status for r in report.results] == [precheck.WHEN_GRADED, precheck.PASS, precheck.NOT_HERE]
    assert report.passed and (report.earned, report.total) == (3, 6)
    assert "hidden_answer  2 points: checked when graded: answer has the right form" in out
    assert "Would score about 3/6 (3 of these points are checked only when graded)" in out
    monkeypatch.setattr(precheck, "_user_namespace", lambda: {"double": lambda x: x})
    report = precheck.check_all("q", notebook=notebook, course=tmp_path)
    assert [r.status for r in report.results][:2] == [precheck.FAIL, precheck.FAIL] and not report.passed
    assert "answer is not defined" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_submission_that_calls_check_all_is_graded_as_if_it_did_not(tmp_path):
    """Through the real pipeline (nbgrader, the sandbox): the call passes the tamper scan, does nothing in
    the grading kernel, and the solved notebook keeps full marks."""
    from nbtools import write_submissions

    from cnngrader.pipeline.grade import course_config, generate, grade_course, solution_submission
    from cnngrader.pipeline.kernel_start import stop_zygote
    from cnngrader.pipeline.report import gradebook_rows

    course = load_course(REPO)
    generate([AID], tmp_path, course=course, build_sources=False, release_directory=tmp_path / "release")
    nb = solution_submission(AID, tmp_path / "release", course)
    nb.cells.append(nbformat.v4.new_code_cell(f"from cnngrader.precheck import check_all; check_all({AID!r})"))
    write_submissions(tmp_path, {"alice": {AID: nb}})
    try:
        result = grade_course(tmp_path, students=["alice"], assignments=[AID], course=course)
    finally:
        stop_zygote()
    assert not result.failures, result.failures
    got = {r["cell"]: r["score"] for r in gradebook_rows(course_config(tmp_path, course)) if r["student"] == "alice"}
    assert got == POINTS
    graded = nbformat.read(tmp_path / "autograded" / "alice" / AID / f"{AID}.ipynb", as_version=4)
    assert stdout_of(graded.cells[-1].outputs) == ("cnngrader.precheck: check_all does nothing here "
                                                   "(the notebook is being graded, or run by cnn-check).\n")


def test_the_students_guide_documents_the_command_and_the_call():
    import re
    import tomllib

    readme = (REPO / "docs" / "students.md").read_text(encoding="utf-8")
    assert "source .venv/bin/activate" in readme.splitlines()  # cnn-check is on PATH only then
    commands = re.findall(r"^(\S+) NOTEBOOK$", readme, flags=re.M)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert commands == ["cnn-check"] and scripts["cnn-check"] == "cnngrader.precheck:main"
    call = f'from cnngrader.precheck import check_all; check_all("{AID}")'
    assert call in readme.splitlines() and scan.tampering(scan.parse([(0, call)])) is None


def test_the_command_on_answers_and_a_graded_cell_of_asserts(tmp_path):
    """Through a kernel: an answer checked when graded is no failure, and a graded cell of plain asserts
    scores as nbgrader scores it (its error, or full points)."""
    notebook = fake_course(tmp_path)
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell('answer = "b"\n\ndef double(x):\n    return 2 * x'))
    cell(nb, "manual").source = 'assert double(2) == 5, "double(2) is not 5"'
    nbformat.write(nb, notebook)
    proc = run_command(str(notebook), "--course", str(tmp_path), "--assignment", "q")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "hidden_answer  2 points: checked when graded: answer has the right form" in proc.stdout
    assert "hidden_double  3 points: pass" in proc.stdout
    assert "manual         1 point: FAIL: the cell raised AssertionError: double(2) is not 5" in proc.stdout
    cell(nb, "manual").source = "assert double(2) == 4"
    nbformat.write(nb, notebook)
    proc = run_command(str(notebook), "--course", str(tmp_path), "--assignment", "q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Would score about 4/6 (2 of these points are checked only when graded)" in proc.stdout

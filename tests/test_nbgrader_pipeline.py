"""The autograding pipeline end to end, through nbgrader, in temporary course directories.

One module-scoped course: the six assignments generated from solutions/ (also the sync check
against exercises/), then submissions written by the tests, graded once serially and once with
two workers. The tests read the gradebooks, grades.csv, the autograded notebooks and feedback.
Execute.timeout is shortened to TIMEOUT so the endless loops cost little; all else is the
course's nbgrader_config.py.
"""
from __future__ import annotations

import copy
import html
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from conftest import REPO
from nbtools import cell, points, with_cells, write_submissions
from traitlets.config import Config

from cnngrader.course import load_course
from cnngrader.pipeline.grade import course_config, generate, grade_course, solution_submission
from cnngrader.pipeline.kernel_start import stop_zygote
from cnngrader.pipeline.report import gradebook_rows

ASSIGNMENTS = load_course(REPO).ids

pytestmark = pytest.mark.slow

TIMEOUT = 10  # seconds per cell in these tests (the course uses 60); a legitimate cell takes < 3 s
AID = "02_cross_correlation"  # the crafted submissions edit this one
POINTS = points(AID)  # grade id -> points of AID's hidden checks, from solutions/
CORR2D = ("hidden_corr2d",)
BEFORE_CONVOLVE = ("hidden_corr2d", "hidden_Conv2D")
CONVOLVE = ("hidden_convolve2d",)
LEARN = ("hidden_learn_kernel", "hidden_learned_kernel")  # the cells after convolve2d
SECRET = 20261201  # a fixed secret, so that two runs draw the same cases and give the same feedback


def short_timeout_config() -> Config:
    c = Config()
    c.Execute.timeout = TIMEOUT
    c.GradingExecute.unresponsive_grace = 3.0
    c.GradingExecute.secret = SECRET
    return c


# -- submissions ---------------------------------------------------------------------------
CORR2D_VECTORIZED = '''def corr2d(X, K):
    kh, kw = K.shape
    windows = X.unfold(0, kh, 1).unfold(1, kw, 1)  # (H', W', kh, kw), a view
    return (windows * K).sum(dim=(-2, -1))
'''
CORR2D_LOOP = '''def corr2d(X, K):
    h, w = K.shape
    Y = X.new_zeros(({rows}, {cols}))
    for a in range(h):
        for b in range(w):
            Y += {x}[a:a + Y.shape[0], b:b + Y.shape[1]] * {k}[a, b]
    return Y
'''


def submissions(release: Path) -> dict[str, dict[str, nbformat.NotebookNode]]:
    """student -> assignment -> notebook. 'solution' and 'blank' hand in all six assignments,
    the others one crafted AID notebook each."""
    sol = {aid: solution_submission(aid, release) for aid in ASSIGNMENTS}
    blank = {aid: nbformat.read(release / aid / f"{aid}.ipynb", as_version=4) for aid in ASSIGNMENTS}
    base = sol[AID]
    right = CORR2D_LOOP.format(rows="X.shape[0] - h + 1", cols="X.shape[1] - w + 1", x="X", k="K")
    off_by_one = CORR2D_LOOP.format(rows="X.shape[0] - h", cols="X.shape[1] - w", x="X", k="K")
    convolve = cell(base, "convolve2d").source
    crafted = {
        "vectorized": with_cells(base, corr2d=CORR2D_VECTORIZED),
        "offbyone": with_cells(base, corr2d=off_by_one),
        "reference": with_cells(base, corr2d="import cnnlib\n\ndef corr2d(X, K):\n    return cnnlib.corr2d(X, K)\n"),
        "torchconv": with_cells(base, corr2d="import torch.nn.functional as F\n\ndef corr2d(X, K):\n"
                                            "    return F.conv2d(X[None, None], K[None, None])[0, 0]\n"),
        "monkeypatch": with_cells(base, corr2d="import cnnlib\n\ndef corr2d(X, K):\n"
                                  "    return X.new_zeros((X.shape[0] - K.shape[0] + 1, "
                                  "X.shape[1] - K.shape[1] + 1))\n\n"
                                  "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n"
                                  "cnnlib.corr2d = corr2d\ncnnlib.ops.corr2d = corr2d\n"),
        "dtype": with_cells(base, corr2d=CORR2D_LOOP.format(rows="X.shape[0] - h + 1", cols="X.shape[1] - w + 1",
                                                            x="X", k="K").replace("X.new_zeros((", "torch.zeros((")),
        "notraceback": with_cells(base, corr2d="ip = get_ipython()\nip.showtraceback = lambda *a, **k: None\n"
                                              "ip.showsyntaxerror = lambda *a, **k: None\n" + off_by_one),
        "warning": with_cells(base, corr2d="import warnings\n" + right.replace(
            "    h, w = K.shape\n",
            "    h, w = K.shape\n    warnings.warn('corr2d: a Python loop is slow', UserWarning)\n")),
        "loop": with_cells(base, convolve2d="while True:\n    pass\n\n" + convolve),
        "hardloop": with_cells(base, convolve2d="import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
                                                "    except BaseException:\n        pass\n\n" + convolve),
        "dead": with_cells(base, convolve2d="import os\nos._exit(1)\n\n" + convolve),
        "membomb": with_cells(base, convolve2d="_big = torch.ones(6 * 2**30, dtype=torch.uint8)  # 6 GiB\n\n"
                                               + convolve),
        "syntax": with_cells(base, convolve2d="def convolve2d(X, K)\n"
                                              "    return corr2d(X, torch.flip(K, dims=(0, 1)))\n"),
    }
    deleted = copy.deepcopy(base)
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "hidden_corr2d"]
    cell(deleted, "test_corr2d").source = "pass  # the visible tests, edited away"
    crafted["deleted"] = deleted
    out = {"solution": sol, "blank": blank}
    out.update({sid: {AID: nb} for sid, nb in crafted.items()})
    return out


# Expected per-cell scores of AID for the crafted students: "full" for all of POINTS, or a dict
# of the cells whose score is asserted (F = full points, 0 = zero); other cells unconstrained.
F = "F"
EXPECT = {
    "vectorized": "full",
    "warning": "full",
    "deleted": "full",
    "offbyone": dict.fromkeys(CORR2D, 0),
    "reference": {"hidden_corr2d": 0},
    "torchconv": {"hidden_corr2d": 0},
    "monkeypatch": {"hidden_corr2d": 0},
    "dtype": dict.fromkeys(CORR2D, 0),
    "notraceback": dict.fromkeys(CORR2D, 0),
    "loop": {**dict.fromkeys(BEFORE_CONVOLVE + LEARN, F), **dict.fromkeys(CONVOLVE, 0)},
    "syntax": {**dict.fromkeys(BEFORE_CONVOLVE + LEARN, F), **dict.fromkeys(CONVOLVE, 0)},
    "membomb": {**dict.fromkeys(BEFORE_CONVOLVE + LEARN, F), **dict.fromkeys(CONVOLVE, 0)},
    "dead": {**dict.fromkeys(BEFORE_CONVOLVE, F), **dict.fromkeys(CONVOLVE + LEARN, 0)},
    "hardloop": {**dict.fromkeys(BEFORE_CONVOLVE, F), **dict.fromkeys(CONVOLVE + LEARN, 0)},
}


# The JOBS=2 run grades these again (a subset, to keep the tests short): every kind of kernel
# trouble and both full sets of six.
PARALLEL = ("solution", "blank", "dead", "hardloop", "membomb", "deleted", "warning", "offbyone")


def scores(root: Path) -> dict[tuple[str, str, str], float]:
    return {(r["student"], r["assignment"], r["cell"]): r["score"] for r in gradebook_rows(course_config(root))}


def report(capsys, text: str) -> None:
    """Print to the terminal even without -s (pytest captures test output otherwise)."""
    with capsys.disabled():
        print(f"\n[nbgrader] {text}")


# -- the course, graded ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def course(tmp_path_factory):
    base = tmp_path_factory.mktemp("course")
    t = time.perf_counter()
    generate(ASSIGNMENTS, base, release_directory=base / "release")
    generate_seconds = time.perf_counter() - t
    subs = submissions(base / "release")
    roots = {}
    for name, students in (("serial", subs), ("parallel", PARALLEL), ("cli", ["dead"])):
        root = tmp_path_factory.mktemp(name)
        shutil.copytree(base / "release", root / "release")
        shutil.copy(base / "gradebook.db", root / "gradebook.db")
        write_submissions(root, {sid: subs[sid] for sid in students})
        roots[name] = root
    root = tmp_path_factory.mktemp("url")  # a gradebook URL that is not plain sqlite:///
    write_submissions(root, {"solution": {AID: subs["solution"][AID]}, "dead": subs["dead"]})
    roots["url"] = root
    return SimpleNamespace(base=base, roots=roots, subs=subs, generate_seconds=generate_seconds)


@pytest.fixture(scope="module")
def graded(course):
    cfg = short_timeout_config()
    serial, parallel = course.roots["serial"], course.roots["parallel"]
    one = grade_course(serial, jobs=1, students=["solution"], config=cfg)  # one student's six notebooks, timed
    others = sorted(s for s in course.subs if s != "solution")
    rest = grade_course(serial, jobs=1, students=others, config=cfg)
    par = grade_course(parallel, jobs=2, config=cfg)
    yield SimpleNamespace(one=one, rest=rest, par=par, serial=scores(serial), parallel=scores(parallel))
    stop_zygote()  # the rest of the test session needs no grading kernels


# -- tests -------------------------------------------------------------------------------------
def test_exercises_are_in_sync_with_solutions(course):
    """generate_assignment into a temporary release directory reproduces exercises/ byte for byte
    (nbgrader's output is stable: same source, same bytes)."""
    for aid in ASSIGNMENTS:
        fresh = (course.base / "release" / aid / f"{aid}.ipynb").read_bytes()
        committed = (REPO / "exercises" / aid / f"{aid}.ipynb").read_bytes()
        assert fresh == committed, f"exercises/{aid} is out of date: run `make exercises`"


def test_no_grading_failures(graded):
    for result in (graded.one, graded.rest, graded.par):
        assert result.failures == [], result.failures


def test_solutions_score_full_marks(graded):
    rows = [r for r in gradebook_rows(course_config(graded.one.root)) if r["student"] == "solution"]
    assert {r["assignment"] for r in rows} == set(ASSIGNMENTS)
    # an answer in words waits for its grader: pending, not a 0 (tests/test_experiment.py)
    assert [(r["assignment"], r["cell"]) for r in rows
            if r["score"] != r["max_score"] and not r["needs_manual_grade"]] == []
    pending = {(r["assignment"], r["cell"]) for r in rows if r["needs_manual_grade"]}
    assert pending == {("06_lenet", "pooling_analysis")}


def test_untouched_exercises_score_zero(graded):
    rows = [r for r in gradebook_rows(course_config(graded.one.root)) if r["student"] == "blank"]
    assert {r["assignment"] for r in rows} == set(ASSIGNMENTS)
    assert len(rows) >= 6 * 3
    assert [(r["assignment"], r["cell"]) for r in rows if r["score"] != 0] == []


@pytest.mark.parametrize("student", sorted(EXPECT))
def test_crafted_submission_scores(graded, student):
    got = {cell: graded.serial[(student, AID, cell)] for cell in POINTS}
    expect = EXPECT[student]
    if expect == "full":
        expect = dict.fromkeys(POINTS, F)
    want = {c: (POINTS[c] if v == F else v) for c, v in expect.items()}
    assert {c: got[c] for c in want} == want
    assert sum(got.values()) < sum(POINTS.values()) or EXPECT[student] == "full"


def autograded(root: Path, student: str, aid: str = AID) -> nbformat.NotebookNode:
    return nbformat.read(root / "autograded" / student / aid / f"{aid}.ipynb", as_version=4)


def error_names(nb, gid) -> list[str]:
    return [o.get("ename") for o in cell(nb, gid).outputs if o.output_type == "error"]


def test_deleted_and_edited_test_cells_are_restored(graded):
    nb = autograded(graded.one.root, "deleted")
    assert "check('corr2d', corr2d)" in cell(nb, "hidden_corr2d").source
    assert "assert Y.shape == (2, 2)" in cell(nb, "test_corr2d").source


def test_dead_and_hung_kernels_score_the_rest_zero(graded):
    nb = autograded(graded.one.root, "dead")
    assert error_names(nb, "convolve2d") == ["DeadKernelError"]
    assert error_names(nb, "hidden_learn_kernel") == ["NotRun"]
    nb = autograded(graded.one.root, "hardloop")
    assert error_names(nb, "convolve2d") == ["CellTimeoutError"]
    assert error_names(nb, "hidden_learn_kernel") == ["NotRun"]
    nb = autograded(graded.one.root, "loop")  # interrupted; the kernel lives on
    assert "KeyboardInterrupt" in error_names(nb, "convolve2d") or "CellTimeoutError" in error_names(nb, "convolve2d")
    assert error_names(nb, "hidden_learn_kernel") == []


def test_memory_cap_turns_a_bomb_into_an_error(graded):
    nb = autograded(graded.one.root, "membomb")
    errors = [o for o in cell(nb, "convolve2d").outputs if o.output_type == "error"]
    assert len(errors) == 1 and "memory" in (errors[0].ename + errors[0].evalue).lower(), errors
    assert all(o.get("ename") not in ("DeadKernelError", "NotRun") for c in nb.cells for o in c.get("outputs", []))


def test_parallel_grading_gives_the_same_gradebook_csv_and_feedback(graded):
    serial, parallel = graded.one.root, graded.par.root
    assert {s for s, _ in graded.par.submissions} == set(PARALLEL)
    rows_s = [r for r in gradebook_rows(course_config(serial)) if r["student"] in PARALLEL]
    rows_p = gradebook_rows(course_config(parallel))
    assert len(rows_p) > 50 and rows_p == rows_s
    csv_s = [line for line in (serial / "grades.csv").read_text().splitlines() if line.split(",")[3] in PARALLEL
             or line.startswith("assignment,")]
    assert (parallel / "grades.csv").read_text().splitlines() == csv_s
    fb_p = sorted(p.relative_to(parallel) for p in (parallel / "feedback").rglob("*.html"))
    assert len(fb_p) == len(graded.par.submissions)
    for rel in fb_p:
        assert (parallel / rel).read_bytes() == (serial / rel).read_bytes(), f"feedback differs: {rel}"


def _text(path: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def test_feedback_shows_no_hidden_test_internals(graded):
    """Feedback may show a hidden cell's source (a call into cnngrader.kernel) and its verdict, but
    no code of the grader (case generation, references) and no tensors of hidden cases."""
    grader_files = [*(REPO / "cnngrader" / "kernel").glob("*.py"), *(REPO / "assignments").glob("*/checks.py")]
    grading_src = [line for path in grader_files for line in path.read_text().splitlines()]
    in_notebooks = {line.strip() for aid in ASSIGNMENTS
                    for c in nbformat.read(REPO / "solutions" / aid / f"{aid}.ipynb", as_version=4).cells
                    for line in c.source.splitlines()}
    internals = {line.strip() for line in grading_src
                 if len(line.strip()) >= 25
                 and not line.strip().startswith(("raise ", "#", '"""', "import ", "from "))} - in_notebooks
    root = graded.one.root
    pages = sorted((root / "feedback").rglob("*.html"))
    assert len(pages) >= 6
    for page in pages:
        text = _text(page)
        shown = [line for line in internals if line in text]
        assert not shown, f"{page.relative_to(root)} shows the grader's code: {shown[:3]}"
    for path in sorted((root / "autograded").rglob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for c in nb.cells:
            if c.cell_type != "code" or "\ncheck(" not in c.source:
                continue
            out = "\n".join(o.get("text", "") + o.get("evalue", "") for o in c.outputs)
            assert "tensor(" not in out, f"{path.relative_to(root)}: a hidden test printed a tensor: {out[:300]}"
            # a verdict may describe the failing case (shapes, hyperparameters), never list its values
            assert not re.search(r"\[\s*-?\d+\.\d+\s*,", out), \
                f"{path.relative_to(root)}: a hidden test printed values: {out[:300]}"
            assert "array(" not in out, f"{path.relative_to(root)}: a hidden test printed an array: {out[:300]}"


def test_report_files(graded):
    out = graded.par.report_dir
    for name in ("report.md", "cells.csv", "assignments.csv", "students.csv", "flags.csv",
                 *(f"{aid}.png" for aid in ASSIGNMENTS)):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    students = (out / "students.csv").read_text().splitlines()
    assert len(students) == 1 + len(PARALLEL)
    flags = (graded.rest.report_dir / "flags.csv").read_text()
    for sid in ("monkeypatch", "notraceback", "dead"):
        assert f"\n{sid}," in flags, f"{sid} not flagged"
    assert "\nsolution," not in flags


def test_grading_time_of_one_student(graded, capsys):
    one = graded.one
    assert one.notebooks == 6
    report(capsys, f"one student's six notebooks graded serially in {one.seconds['total']:.1f} s "
                   f"(target 20 s; " + ", ".join(f"{k} {v:.1f} s" for k, v in one.seconds.items() if k != 'total') +
                   " [record is part of execute]" +
                   f"); per notebook execution {sum(one.execute_seconds.values()) / 6:.2f} s")
    report(capsys, f"{one.notebooks + graded.rest.notebooks} notebooks graded serially in "
                   f"{one.seconds['total'] + graded.rest.seconds['total']:.1f} s; {graded.par.notebooks} of them "
                   f"with JOBS=2 in {graded.par.seconds['total']:.1f} s")
    assert one.seconds["total"] < 90, "grading one student takes far longer than the 20 s target"


def test_plain_nbgrader_cli_from_the_repository_root(course):
    """`nbgrader autograde` with the root nbgrader_config.py: GradingExecute is in its pipeline,
    so even the dead kernel's submission is scored, not dropped."""
    root = course.roots["cli"]
    cmd = [str(Path(sys.executable).with_name("nbgrader")), "autograde", AID, "--student", "dead", "--force",
           f"--CourseDirectory.root={root}", f"--CourseDirectory.source_directory={REPO / 'solutions'}",
           f"--CourseDirectory.db_url=sqlite:///{root / 'gradebook.db'}", f"--Execute.timeout={TIMEOUT}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = scores(root)
    assert got[("dead", AID, "hidden_corr2d")] == POINTS["hidden_corr2d"]
    assert got[("dead", AID, "hidden_convolve2d")] == 0


def test_gradebook_url_other_than_sqlite_file(course):
    """With a database URL that is not a SQLite file (PostgreSQL in production; here SQLite
    through another driver name, which takes the same code path), the workers grade against
    a SQLite snapshot and only this process writes to the course database."""
    root = course.roots["url"]
    url = f"sqlite+pysqlite:///{root / 'course.db'}"
    result = grade_course(root, jobs=2, config=short_timeout_config(), feedback=False, report=False, db_url=url)
    assert result.failures == []
    got = {(r["student"], r["cell"]): r["score"] for r in gradebook_rows(course_config(root, db_url=url))}
    assert all(got[("solution", c)] == p for c, p in POINTS.items())
    assert got[("dead", "hidden_corr2d")] == POINTS["hidden_corr2d"] and got[("dead", "hidden_convolve2d")] == 0
    assert not (root / "gradebook.db").exists()

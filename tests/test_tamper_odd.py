"""The tamper suite's second batch: results that are not numbers, and odd files or forged cell metadata
around a correct notebook, each with its fair score, graded through the real pipeline (sandboxed kernels,
the verdict in the trusted process), as tests/test_tamper.py does for attacks.

- A check that expects a finite number fails NaN (which compares False with everything).
- Odd things beside or inside a correct notebook (a stray `..ipynb`, named pipes, a cell that claims to
  be the locked setup cell, an extra grade cell worth 100 points) never leave the submission ungraded:
  the notebook is graded, the rest ignored or neutralised with one line in the log, and the extra cell
  earns nothing.
"""
from __future__ import annotations

import copy
import logging
import os
from types import SimpleNamespace

import nbformat
import pytest
from conftest import REPO
from fairtable import record
from nbtools import cell, points, scores_of, with_cells, with_new_cell, write_submissions
from traitlets.config import Config

from cnngrader.course import load_course
from cnngrader.pipeline.grade import course_config, generate, grade_course, solution_submission
from cnngrader.pipeline.kernel_start import stop_zygote
from cnngrader.pipeline.report import gradebook_rows
from cnngrader.pipeline.sandbox import SandboxUnavailable, check_available

try:
    check_available()
except SandboxUnavailable as e:  # pragma: no cover - CI installs bubblewrap
    pytestmark = pytest.mark.skip(reason=f"the sandbox is unavailable: {e}")
else:
    pytestmark = pytest.mark.slow

A2, A6 = "02_cross_correlation", "06_lenet"
F = "F"  # full points

# A correct function whose result is then replaced by NaN: only the value comparison can catch it.
NAN_EVALUATE = """
_evaluate_accuracy = evaluate_accuracy
def evaluate_accuracy(net, data_iter, device):
    _evaluate_accuracy(net, data_iter, device)
    return float("nan")
"""
NAN_TRAIN = """
_train_epoch = train_epoch
def train_epoch(net, train_iter, loss, optimizer, device):
    _train_epoch(net, train_iter, loss, optimizer, device)
    return float("nan"), float("nan")
"""
INF_TRAIN = """
_train_epoch = train_epoch
def train_epoch(net, train_iter, loss, optimizer, device):
    mean_loss, accuracy = _train_epoch(net, train_iter, loss, optimizer, device)
    return float("inf"), accuracy
"""
NAN_CORR2D = """
def corr2d(X, K):
    H, W = X.shape
    kh, kw = K.shape
    return torch.full((H - kh + 1, W - kw + 1), float("nan"), dtype=X.dtype, device=X.device)
"""
BONUS = "print('a bonus cell')\n"


def _sol(base, gid: str) -> str:
    return cell(base, gid).source


def _claims_setup(nb):
    """The corr2d solution cell, its nbgrader metadata replaced by the locked setup cell's (checksum too)."""
    nb = copy.deepcopy(nb)
    cell(nb, "corr2d").metadata["nbgrader"] = copy.deepcopy(cell(nb, "setup").metadata["nbgrader"])
    return nb


def _bonus_cell(nb, locked: bool):
    """A new grade cell with a grade id of its own and 100 points, after the corr2d hidden tests."""
    nb = with_new_cell(nb, BONUS, after="hidden_corr2d")
    i = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells].index("hidden_corr2d") + 1
    nb.cells[i].metadata["nbgrader"] = {"grade": True, "grade_id": "bonus", "locked": locked, "points": 100,
                                        "schema_version": 3, "solution": False, "task": False}
    return nb


def build(release) -> tuple[dict, dict]:
    """student -> {assignment: notebook}, and student -> fair scores ({grade id: points}, or "full")."""
    course = load_course(REPO)
    base = {aid: solution_submission(aid, release, course) for aid in (A2, A6)}
    subs = {
        "nan_evaluate_accuracy": {A6: with_cells(base[A6], evaluate_accuracy=_sol(base[A6], "evaluate_accuracy")
                                                 + NAN_EVALUATE)},
        "nan_train_epoch": {A6: with_cells(base[A6], train_epoch=_sol(base[A6], "train_epoch") + NAN_TRAIN)},
        "inf_train_epoch": {A6: with_cells(base[A6], train_epoch=_sol(base[A6], "train_epoch") + INF_TRAIN)},
        "nan_corr2d": {A2: with_cells(base[A2], corr2d=NAN_CORR2D)},
        "dot_ipynb": {A2: base[A2]},
        "fifo": {A2: base[A2]},
        "claims_setup": {A2: _claims_setup(base[A2])},
        "bonus_cell": {A2: _bonus_cell(base[A2], locked=False)},
        "locked_bonus_cell": {A2: _bonus_cell(base[A2], locked=True)},
        "lenet_solution": {A6: base[A6]},
    }
    fair = {
        "nan_evaluate_accuracy": {"hidden_evaluate_accuracy": 0, "hidden_train_epoch": F, "hidden_lenet": F},
        "nan_train_epoch": {"hidden_train_epoch": 0, "hidden_evaluate_accuracy": F, "hidden_lenet": F},
        "inf_train_epoch": {"hidden_train_epoch": 0, "hidden_evaluate_accuracy": F},
        # the other functions' solutions call corr2d; the conceptual answer stands
        "nan_corr2d": {"hidden_corr2d": 0, "hidden_Conv2D": 0, "hidden_convolve2d": 0, "hidden_learn_kernel": 0,
                       "hidden_learned_kernel": F},
        "dot_ipynb": "full", "fifo": "full", "claims_setup": "full", "bonus_cell": "full",
        "locked_bonus_cell": "full", "lenet_solution": "full",
    }
    return subs, fair


def _odd_files(root) -> None:
    """The files beside the notebooks: a stray `..ipynb` (an editor's leftover), named pipes."""
    (root / "submitted" / "dot_ipynb" / A2 / "..ipynb").write_text('{"cells": [')
    for name in ("pipe", "notes.ipynb"):
        os.mkfifo(root / "submitted" / "fifo" / A2 / name)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("tamper-odd")
    generate([A2, A6], root, release_directory=root / "release")
    subs, fair = build(root / "release")
    write_submissions(root, subs)
    _odd_files(root)
    c = Config()
    c.Execute.timeout = 30
    c.GradingExecute.max_memory_mb = 2048
    c.GradingExecute.secret = 11
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("cnngrader.pipeline")
    logger.addHandler(handler)
    try:
        result = grade_course(root, jobs=2, config=c, report=False)
    finally:
        logger.removeHandler(handler)
        stop_zygote()
    rows = gradebook_rows(course_config(root))
    return SimpleNamespace(root=root, result=result, rows=rows, fair=fair, log=records)


STUDENTS = ["nan_evaluate_accuracy", "nan_train_epoch", "inf_train_epoch", "nan_corr2d", "dot_ipynb", "fifo",
            "claims_setup", "bonus_cell", "locked_bonus_cell", "lenet_solution"]


ODD_FILES = {"dot_ipynb": "a stray ..ipynb beside the notebook",
             "fifo": "FIFOs beside the notebook (pipe, notes.ipynb)"}


@pytest.mark.parametrize("student", STUDENTS)
def test_fair_score(batch, student):
    got = scores_of(batch, student)
    assert got, f"{student} was not graded: {batch.result.failures}"
    aid = {r["assignment"] for r in batch.rows if r["student"] == student}.pop()
    top = points(aid)
    assert set(got) == set(top), f"{student}: graded cells {sorted(got)}; the assignment's are {sorted(top)}"
    fair = batch.fair[student]
    # "full": every automatic cell; a cell graded by hand waits for its grader (pending), outside the score
    fair = dict.fromkeys([gid for gid in top if gid.startswith("hidden_")], F) if fair == "full" else fair
    want = {gid: (top[gid] if v == F else v) for gid, v in fair.items()}
    if student in ODD_FILES:
        record("6", f"{ODD_FILES[student]} ({aid}, score)", sum(want.values()), sum(got[gid] for gid in want),
               "test_tamper_odd.py")
    assert {gid: got[gid] for gid in want} == want, f"{student}: {got}"


def test_no_submission_is_left_ungraded(batch):
    assert batch.result.failures == []


def test_a_non_finite_result_fails_with_a_reason(batch):
    nb = nbformat.read(batch.root / "autograded" / "nan_train_epoch" / A6 / f"{A6}.ipynb", as_version=4)
    text = "".join(o.get("text", "") + o.get("evalue", "") for o in cell(nb, "hidden_train_epoch").outputs)
    assert "nan (not a finite number)" in text, text


def test_each_odd_thing_is_one_line_in_the_log(batch):
    for student, words in (("dot_ipynb", "'..ipynb'"), ("fifo", "pipe is a FIFO"), ("fifo", "notes.ipynb is a FIFO"),
                           ("claims_setup", "'setup'"), ("bonus_cell", "'bonus'"), ("locked_bonus_cell", "'bonus'")):
        lines = [r for r in batch.log if r.startswith(f"{student}/{A2}:") and words in r]
        assert len(lines) == 1, (student, words, batch.log)

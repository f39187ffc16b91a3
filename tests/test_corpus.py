"""A corpus of student-style implementations (tests/data/corpus/<assignment>/<case>.py), each with its fair
verdict in its header: loops, slices, unfold, einsum, as_strided, NumPy, debug prints and warnings, and
subtly wrong ones (device, dtype, width from height, padding value, loop ranges, train/eval mode).

A case's header::

    # cell: <the solution cell it replaces, whose hidden cell is hidden_<cell>>
    # fair: full | 0
    # reason: <words the feedback must contain when it fails>
    # on a GPU: 0       (optional: the verdict where a CUDA device is present, if it differs)
    # item: 1           (optional: the fairness item it is a fixture of, for the table in tests/fairtable.py)

Each case is checked in process (fast), and the whole corpus is graded once through the real pipeline
(sandboxed kernels, the verdict in the trusted process), one student per case, beside a notebook whose
corr2d never returns.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import nbformat
import pytest
import torch
from conftest import REPO
from fairtable import record
from nbtools import cell, points, with_cells, write_submissions

from cnngrader import grading
from cnngrader.course import load_course
from cnngrader.grading.core import GradingError

CORPUS = Path(__file__).with_name("data") / "corpus"
HAS_CUDA = torch.cuda.device_count() > 0


class Case(NamedTuple):
    aid: str
    name: str
    cell: str
    full: bool
    reason: str
    source: str
    item: str = "corpus"


def load_cases() -> list[Case]:
    out = []
    for path in sorted(CORPUS.glob("*/*.py")):
        text = path.read_text()
        head = dict(line[2:].split(": ", 1) for line in text.splitlines() if line.startswith("# ") and ": " in line
                    and line[2:].split(":")[0] in ("cell", "fair", "reason", "on a GPU", "item"))
        if HAS_CUDA and "on a GPU" in head:
            head["fair"] = head["on a GPU"]
        assert head.get("fair") in ("full", "0"), f"{path}: '# fair: full' or '# fair: 0'"
        assert "cell" in head, f"{path}: '# cell: <grade id>'"
        out.append(Case(path.parent.name, path.stem, head["cell"], head["fair"] == "full", head.get("reason", ""),
                        text, head.get("item", "corpus")))
    return out


CASES = load_cases()


def test_the_corpus_is_broad():
    assert len(CASES) >= 30
    assert {c.aid for c in CASES} >= {"02_cross_correlation", "03_padding_stride", "04_channels", "05_pooling",
                                      "06_lenet"}
    text = {c.name: c.source for c in CASES if c.full}
    for style in (".unfold(", "einsum", "as_strided", "numpy", "print(", "warnings.warn", "F.unfold", "for i in"):
        assert any(style in s for s in text.values()), f"no correct case in the style {style!r}"
    wrong = " ".join(c.name for c in CASES if not c.full)
    for bug in ("device", "height", "padding", "range", "mode", "float32"):
        assert bug in wrong, f"no wrong case about {bug!r}"
    assert all(c.reason for c in CASES if not c.full), "every wrong case names the reason its feedback must give"


def _namespace(aid: str) -> dict:
    ns: dict = {}
    nb = nbformat.read(REPO / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    for c in nb.cells:
        meta = c.metadata.get("nbgrader", {})
        if c.cell_type == "code" and (meta.get("solution") or meta.get("grade_id") == "setup"):
            exec(compile(c.source, f"{aid}:{meta['grade_id']}", "exec"), ns)
    return ns


@pytest.mark.parametrize("case", CASES, ids=[f"{c.aid}/{c.name}" for c in CASES])
def test_fair_verdict_in_process(case):
    ns = _namespace(case.aid)
    exec(compile(case.source, f"{case.aid}/{case.name}.py", "exec"), ns)
    if case.full:
        grading.check(case.cell, ns[case.cell])
    else:
        with pytest.raises(GradingError) as info:
            grading.check(case.cell, ns[case.cell])
        assert case.reason in str(info.value), str(info.value)


# --- the real pipeline ----------------------------------------------------------------------------
LOOPING = "zz_looping_corr2d"
A2 = "02_cross_correlation"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from traitlets.config import Config

    from cnngrader.pipeline.grade import generate, grade_course, solution_submission
    from cnngrader.pipeline.kernel_start import stop_zygote
    from cnngrader.pipeline.sandbox import SandboxUnavailable, check_available

    try:
        check_available()
    except SandboxUnavailable as e:  # pragma: no cover - CI installs bubblewrap
        pytest.skip(f"the sandbox is unavailable: {e}")
    root = tmp_path_factory.mktemp("corpus")
    aids = sorted({c.aid for c in CASES})
    generate(aids, root, release_directory=root / "release")
    course = load_course(REPO)
    base = {aid: solution_submission(aid, root / "release", course) for aid in aids}
    subs = {f"{c.aid[:2]}_{c.name}": {c.aid: with_cells(base[c.aid], **{c.cell: c.source})} for c in CASES}
    subs[LOOPING] = {A2: with_cells(base[A2], corr2d="def corr2d(X, K):\n    while True:\n        pass\n")}
    write_submissions(root, subs)
    config = Config()
    config.Execute.timeout = 20
    config.GradingExecute.unresponsive_grace = 3.0
    config.GradingExecute.secret = 11
    try:
        result = grade_course(root, jobs=2, config=config, feedback=False, report=False)
    finally:
        stop_zygote()
    assert not result.failures, result.failures
    return root, result


def _autograded(root: Path, student: str, aid: str):
    return nbformat.read(root / "autograded" / student / aid / f"{aid}.ipynb", as_version=4)


def _errors(nb, gid: str) -> str:
    return "\n".join(o.get("evalue", "") for o in cell(nb, gid).outputs if o.output_type == "error")


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[f"{c.aid}/{c.name}" for c in CASES])
def test_fair_verdict_through_the_pipeline(graded, case):
    from nbgrader.api import Gradebook

    root, _ = graded
    student = f"{case.aid[:2]}_{case.name}"
    gid = f"hidden_{case.cell}"
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        score = gb.find_grade(gid, case.aid, case.aid, student).score
    fair = points(case.aid)[gid] if case.full else 0.0
    errors = _errors(_autograded(root, student, case.aid), gid)
    record(case.item, f"{case.aid}/{case.name} ({gid})", fair, score, "test_corpus.py")
    assert score == fair, f"{student}: {gid} scored {score}, fair is {fair}: {errors}"
    assert case.reason in errors


@pytest.mark.slow
def test_a_function_that_never_returns_is_waited_for_once(graded):
    root, _ = graded
    nb = _autograded(root, LOOPING, A2)
    first = _errors(nb, "test_corr2d")
    assert "limit per cell" in first  # the visible test waited out its limit, once
    assert "corr2d was not run: corr2d did not return" in _errors(nb, "hidden_corr2d")
    for gid in ("hidden_Conv2D", "hidden_convolve2d", "hidden_learn_kernel"):
        assert "did not return" in _errors(nb, gid), gid
    later = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("test_")
             and c.metadata["nbgrader"]["grade_id"] != "test_corr2d"]
    calls = re.compile(r"\b(corr2d|Conv2D|convolve2d|learn_kernel)\b")  # not corr2d_grad_input's own name
    assert later and all("not run: it calls" in _errors(nb, c.metadata["nbgrader"]["grade_id"]) for c in later
                         if calls.search(c.source))
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        scored = sum(gb.find_grade(gid, A2, A2, LOOPING).score for gid in points(A2))
    # everything built on corr2d scores 0; the gradients (written without it) and the questions score in full
    fair = sum(points(A2)[f"hidden_{q}"] for q in ("learned_kernel", "grad_input_kernel", "grad_input_kernel_conv",
                                                    "uncovered_inputs", "corr2d_grad_input", "corr2d_grad_kernel",
                                                    "corr2d_grad_bias"))
    seconds = graded[1].execute_seconds.get((LOOPING, A2), float("nan"))
    record("4", f"{A2} whose corr2d never returns (score; {seconds:.0f} s of the batch, Execute.timeout=20)",
           fair, scored, "test_corpus.py")
    assert scored == fair

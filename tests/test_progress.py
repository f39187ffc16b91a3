"""The progress of a grading run (cnngrader/pipeline/progress.py): what it counts as done and as a failure, how
it shows (a bar on a terminal, a line a minute in a log, nothing), the rate at the end of the summary, and, in
one real sandboxed grading run, a notebook whose kernel dies counted as a failure. No wall clock: the tests
give the progress a clock of their own."""
from __future__ import annotations

import io
import logging
from pathlib import Path

import nbformat
import pytest
from conftest import REPO
from nbtools import with_new_cell, write_submissions

from cnngrader.pipeline.grade import GradeResult, grade_course, summary
from cnngrader.pipeline.progress import KERNEL_LOST, Progress, duration, kernel_lost, per_minute, rate_text


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rate_and_duration_formatting():
    assert per_minute(30, 60.0) == 30.0 and per_minute(1, 0.5) == 120.0
    assert per_minute(5, 0.0) == 0.0  # no time passed: no division by zero
    assert rate_text(12, 90.0) == "8.0 notebooks per minute"
    assert rate_text(0, 0.0) == "0.0 notebooks per minute"
    assert [duration(s) for s in (0.4, 45, 89, 600, 3599, 3600 + 5 * 60, 26 * 3600)] == [
        "0 s", "45 s", "89 s", "10 min", "1 h 00 min", "1 h 05 min", "26 h 00 min"]


def test_counts_failures_and_the_time_left():
    clock = Clock()
    with Progress(4, mode="off", clock=clock) as p:
        assert p.left() is None and "time left unknown yet" in p.line()
        clock.now += 30
        p.update(("ann", "01_fc_to_conv"))
        clock.now += 30
        p.update(("bob", "01_fc_to_conv"), failed="could not be executed")
        clock.now += 30
        p.update(("cid", "01_fc_to_conv"), lost="the kernel died")
    assert p.done == 3 and p.failures == 2
    assert p.failed == ["bob/01_fc_to_conv: could not be executed"]
    assert p.lost == ["cid/01_fc_to_conv: the kernel died"]
    assert p.left() == pytest.approx(30.0)  # one notebook left at 30 s each
    assert p.line() == "graded 3/4 notebooks, 2 failure(s), 2.0 notebooks per minute, about 30 s left"


def test_failed_wins_over_lost_and_a_notebook_is_counted_once():
    p = Progress(1, mode="off", clock=Clock())
    p.update(("ann", "02_cross_correlation"), failed="could not be recorded", lost="the kernel died")
    assert p.done == 1 and p.failures == 1 and p.lost == []


@pytest.mark.parametrize("mode, stream, shown", [
    ("auto", Terminal(), "bar"), ("auto", io.StringIO(), "log"), ("bar", io.StringIO(), "bar"),
    ("log", Terminal(), "log"), ("off", Terminal(), "off")])
def test_auto_shows_the_bar_only_on_a_terminal(mode, stream, shown):
    assert Progress(3, mode=mode, stream=stream).shown == shown


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="mode must be one of auto, bar, log, off"):
        Progress(3, mode="fancy")
    with pytest.raises(ValueError, match="interval must be positive"):
        Progress(3, interval=0)


def test_the_bar_shows_done_total_and_failures_on_its_stream(capsys):
    out, clock = Terminal(), Clock()
    with Progress(3, stream=out, clock=clock) as p:
        p.update(("ann", "05_pooling"))
        p.update(("bob", "05_pooling"), lost="the kernel died")
        logging.getLogger("cnngrader.pipeline").warning("a line during the bar")
    text = out.getvalue()
    assert "grading:" in text and "2/3 notebooks" in text and "1 failure(s)" in text
    assert "a line during the bar" not in text
    assert "a line during the bar" in capsys.readouterr().err  # written above the bar (tqdm.write), not into it


def test_a_log_gets_a_line_per_interval_and_a_short_run_none(caplog):
    clock = Clock()
    caplog.set_level(logging.INFO, logger="cnngrader.pipeline")
    with Progress(10, mode="log", interval=60, stream=io.StringIO(), clock=clock) as p:
        for _ in range(3):  # 3 notebooks in 30 s: under a minute, no line
            clock.now += 10
            p.update(("ann", "03_padding_strides"))
        assert [r.message for r in caplog.records] == []
        clock.now += 40  # a minute since the start
        p.update(("bob", "03_padding_strides"), failed="could not be executed")
        p.update(("cid", "03_padding_strides"))  # the same minute: no second line
    assert [r.message for r in caplog.records] == [
        "graded 4/10 notebooks, 1 failure(s), 3.4 notebooks per minute, about 2 min left"]


def test_off_and_a_log_write_nothing_to_the_stream():
    for mode in ("off", "log"):
        out = Terminal() if mode == "off" else io.StringIO()
        with Progress(2, mode=mode, stream=out, clock=Clock()) as p:
            p.update(("ann", "04_channels"))
        assert out.getvalue() == ""


def test_kernel_lost_reads_the_graders_mark(tmp_path):
    nb = nbformat.v4.new_notebook()
    nbformat.write(nb, tmp_path / "a.ipynb")
    assert kernel_lost(tmp_path) is None
    nb.metadata[KERNEL_LOST] = "the kernel died"
    nbformat.write(nb, tmp_path / "b.ipynb")
    assert kernel_lost(tmp_path) == "the kernel died"
    assert kernel_lost(tmp_path / "missing") is None
    (tmp_path / "c.ipynb").write_text("{not json")  # a damaged copy: the recording reports it, not this
    assert kernel_lost(tmp_path) == "the kernel died"


def test_the_summary_ends_with_the_rate_and_names_lost_kernels():
    graded = [("ann", "01_fc_to_conv"), ("bob", "01_fc_to_conv")]
    result = GradeResult(root=Path("/tmp/class"), jobs=2, submissions=graded,
                         seconds={"prepare": 1.0, "execute": 20.0, "total": 24.0},
                         lost=["bob/01_fc_to_conv: the kernel died"], failures=["execute cid/01_fc_to_conv: boom"])
    lines = summary(result).splitlines()
    assert lines[-1] == "  2 notebook(s) in 24.0 s: 5.0 notebooks per minute"
    assert "  KERNEL LOST bob/01_fc_to_conv: the kernel died (graded: the cells after the loss score 0)" in lines
    assert "  FAILED execute cid/01_fc_to_conv: boom" in lines
    nothing = GradeResult(root=Path("/tmp/class"), jobs=1, submissions=[], seconds={"total": 0.5})
    assert summary(nothing).splitlines()[-1].endswith("0 notebook(s) in 0.5 s: 0.0 notebooks per minute")


@pytest.mark.slow
def test_a_dying_kernel_is_counted_as_a_failure_of_a_real_run(tmp_path):
    aid = "01_fc_to_conv"
    base = nbformat.read(REPO / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    dying = with_new_cell(base, "import os\nos._exit(1)", before="shift_fc")
    write_submissions(tmp_path, {"fine": {aid: base}, "dies": {aid: dying}})
    result = grade_course(tmp_path, feedback=False, report=False, progress="off")
    assert result.failures == [] and result.notebooks == 2
    assert result.lost == [f"dies/{aid}: the kernel died"]
    text = summary(result)
    assert f"KERNEL LOST dies/{aid}: the kernel died" in text
    assert text.splitlines()[-1].endswith("notebooks per minute")
    autograded = nbformat.read(tmp_path / "autograded" / "dies" / aid / f"{aid}.ipynb", as_version=4)
    assert KERNEL_LOST not in autograded.metadata  # the mark stays in the grader's working copy

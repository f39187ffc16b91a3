"""The "How this notebook is graded" paragraph says what the checks really test, and the transcription count.

The paragraph is generated (cnngrader.pipeline.graded_text) from each check's coverage tag; here the tags are
held against what the checks do: each tensor check of every assignment is run on the solution's functions
through a runner that records the dtypes and devices of every call, and those must be the dtypes, devices and
meta runs the paragraph promises, no more and no fewer. The error checks must fail a function that does not
raise. tools/transcription.py must classify every graded task of assignments 1-5 and keep transcription at
most 20% of their points.
"""
from __future__ import annotations

import sys
import tomllib

import jupytext
import nbformat
import pytest
import torch
from conftest import REPO as ROOT

from cnngrader.course import load_course
from cnngrader.grading import GradingError, coverage, registry, runners
from cnngrader.pipeline import graded_text
from cnngrader.pipeline.authoring import target

COURSE = load_course(ROOT)
OURS = list(COURSE.ids)


def _solution_namespace(aid: str) -> dict:
    """The solution cells of assignments/<id>/<id>.md, run here (the setup cell without its install lines)."""
    ns: dict = {}
    for cell in jupytext.read(ROOT / "assignments" / aid / f"{aid}.md").cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not (meta.get("solution") or meta.get("grade_id") == "setup"):
            continue
        lines = [line for line in cell.source.split("\n") if not line.startswith("# course:")
                 and line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")]
        exec(compile("\n".join(lines), f"{aid}:{meta['grade_id']}", "exec"), ns)
    return ns


class Recorder(runners.LocalRunner):
    """A LocalRunner that records (device type, dtype) of each tensor argument of each call."""

    def __init__(self, namespace: dict) -> None:
        super().__init__(namespace)
        self.seen: set[tuple[str, str]] = set()

    def ask(self, op, name, forbidden, **args):
        self._record(args)
        if args.get("device") == "meta":  # a training probe: the net on meta, its batches on the CPU
            self.seen.add(("meta", "float32"))
        return super().ask(op, name, forbidden, **args)

    def _record(self, value) -> None:
        if isinstance(value, torch.Tensor):
            self.seen.add((value.device.type, str(value.dtype).replace("torch.", "")))
        elif isinstance(value, dict):
            for v in value.values():
                self._record(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                self._record(v)


def _parts(aid: str) -> list[str]:
    nb = nbformat.read(target(COURSE, aid), as_version=4)
    return [name for name, _ in graded_text.graded_parts(nb)[0]]


def _by_hand(aid: str) -> list[str]:
    nb = nbformat.read(target(COURSE, aid), as_version=4)
    return [name for name, _ in graded_text.graded_parts(nb)[1]]


@pytest.mark.parametrize("aid", OURS)
def test_the_paragraph_is_in_the_notebook_and_names_every_graded_part(aid):
    nb = nbformat.read(target(COURSE, aid), as_version=4)
    text = graded_text.paragraph(registry(ROOT).checks, nb)
    assert any(text in cell.source for cell in nb.cells if cell.cell_type == "markdown")
    assert graded_text.MARKER not in nbformat.writes(nb)
    for name, points in graded_text.graded_parts(nb)[0]:
        assert f"`{name}` {int(points)} point" in text, name


@pytest.mark.parametrize("aid", OURS)
def test_each_tensor_check_tests_exactly_the_dtypes_and_devices_the_paragraph_promises(aid):
    checks = registry(ROOT).checks
    ns = _solution_namespace(aid)
    nb = nbformat.read(target(COURSE, aid), as_version=4)
    text = graded_text.paragraph(checks, nb)
    for name in _parts(aid):
        tag = coverage.of(checks[name])
        assert tag is not None, f"{name}: its check says nothing of what it tests (use coverage.covers)"
        if tag.kind not in ("tensor", "layer", "network", "training"):
            continue
        runner = Recorder(ns)
        checks[name](name, runner)  # the solution passes
        dtypes = {dt for dev, dt in runner.seen if dev != "meta" and dt.startswith("float")}
        assert dtypes == set(tag.dtypes), (name, dtypes, tag)
        assert {dev for dev, _ in runner.seen if dev != "meta"} <= {"cpu", "cuda"}
        assert any(dev == "meta" for dev, _ in runner.seen) == tag.meta, (name, runner.seen)
        for dtype in tag.dtypes:
            assert f"`{dtype}`" in text
    tags = [coverage.of(checks[n]) for n in _parts(aid)]
    if not any(tag.dtypes for tag in tags):  # nothing promised that no check tests
        assert "float32" not in text and "float64" not in text
    if not any(tag.meta for tag in tags):
        assert "meta" not in text


@pytest.mark.parametrize("name, bad", [
    ("corr2d_dilated", "def corr2d_dilated(X, K, dilation=1, padding=0):\n    return X.new_zeros((1, 1))[K.shape[0]]"),
    ("grouped_to_dense", "def grouped_to_dense(K, groups):\n    raise ValueError('the kernel does not fit')"),
])
def test_an_error_check_fails_a_function_that_does_not_raise_what_the_task_asks(name, bad):
    aid = registry(ROOT).owner[name]
    ns = _solution_namespace(aid)
    good = ns[name]
    exec(bad, ns)
    with pytest.raises(GradingError):
        registry(ROOT).checks[name](name, runners.LocalRunner({name: ns[name], **{k: v for k, v in ns.items()
                                                                                if k != name}}))
    registry(ROOT).checks[name](name, runners.LocalRunner({**ns, name: good}))  # the solution passes
    assert coverage.of(registry(ROOT).checks[name]).errors


def test_the_transcription_count_classifies_every_task_and_keeps_copying_at_most_a_fifth():
    sys.path.insert(0, str(ROOT / "tools"))
    import transcription

    tasks = [t for t in transcription.course_tasks(ROOT) if t.assignment in OURS]
    assert {t.name for t in tasks} == {n for aid in OURS for n in _parts(aid) + _by_hand(aid)}
    assert all(t.kind in transcription.KINDS for t in tasks), [t.name for t in tasks if t.kind not in
                                                               transcription.KINDS]
    shares = transcription.shares(tasks)
    assert shares["transcription"] <= 0.20 and shares["derivation"] >= 0.20 and shares["conceptual"] >= 0.15
    table = transcription.table(tasks)
    assert table.count("\n| 0") == len(tasks)
    # a solution printed verbatim is found: convolve2d is cnnlib's one line
    assert next(t for t in tasks if t.name == "convolve2d").shares["cnnlib source"] == 1.0
    for aid in OURS:  # the answers file keeps the classification; every answer has its check
        data = tomllib.loads((ROOT / "assignments" / aid / "answers.toml").read_text(encoding="utf-8"))
        assert set(data["tasks"]) == set(_parts(aid) + _by_hand(aid))

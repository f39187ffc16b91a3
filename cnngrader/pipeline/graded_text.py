"""The "How this notebook is graded" paragraph, written from what the assignment's checks really test.

An assignment's source holds the line MARKER in a markdown cell; when the notebook is built
(cnngrader.pipeline.authoring) that line becomes paragraph(...): the graded parts with their points, and for
each kind of check (cnngrader.grading.coverage) what it compares, in which dtypes, on which devices, and
whether it runs on the meta device; manually graded cells (nbgrader grade and solution) are said to be
graded by hand. Nothing in it is typed per assignment, so it cannot promise what a check does not do.
"""
from __future__ import annotations

from typing import Any

import nbformat

from cnngrader.course import Course

MARKER = "<!-- course: how this notebook is graded -->"
_HIDDEN = "hidden_"


def _names(names: list[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _points(p: float) -> str:
    n = int(p) if p == int(p) else p
    return f"{n} point" if n == 1 else f"{n} points"


def graded_parts(nb: nbformat.NotebookNode) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """([(name, points)] of the hidden test cells, [(grade_id, points)] of the cells graded by hand)."""
    auto, manual = [], []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade"):
            continue
        gid = str(meta.get("grade_id", ""))
        if meta.get("solution"):
            manual.append((gid, float(meta.get("points", 0))))
        elif gid.startswith(_HIDDEN):
            auto.append((gid[len(_HIDDEN):], float(meta.get("points", 0))))
    return auto, manual


def _kinds(names: list[str], checks: dict[str, Any]) -> dict[str, list[str]]:
    from cnngrader.grading import coverage  # cnngrader.grading imports torch: loaded only when a paragraph is written

    out: dict[str, list[str]] = {}
    for name in names:
        tag = coverage.of(checks.get(name))
        key = "other:::" if tag is None else f"{tag.kind}:{','.join(tag.dtypes)}:{int(tag.devices)}:{int(tag.meta)}"
        if tag is not None and tag.errors:
            out.setdefault("errors:::", []).append(name)
        out.setdefault(key, []).append(name)
    return out


def _where(dtypes: str, devices: str) -> str:
    dts = " and ".join(f"`{d}`" for d in dtypes.split(",") if d)
    where = "on every device present (the CPU, and a GPU when there is one)" if devices == "1" else "on the CPU"
    return f"in {dts}, {where}" if dts else where


def _sentence(key: str, names: list[str]) -> str:
    who = _names(names)
    kind, dtypes, devices, meta = key.split(":")
    if kind == "tensor":
        text = (f"The hidden tests of {who} call your function on random inputs of many shapes, drawn anew each "
                f"time the notebook is graded, {_where(dtypes, devices)}, and compare the result with the "
                f"course's reference (shape, dtype and device first, then the values)")
        if meta == "1":
            text += ("; they also run it once on the `meta` device (shapes and dtypes without data), so a tensor "
                     "made on the CPU shows even where no GPU is present")
        return text + ": return tensors with the input's dtype and on the input's device."
    if kind == "errors":
        return (f"The hidden tests of {who} also check the error that the task asks for: the type of the "
                f"exception and the argument its message names.")
    if kind == "values":
        return (f"The hidden tests of {who} call your function with edge cases and with arguments drawn anew "
                f"each time the notebook is graded, and compare what it returns with the course's reference.")
    if kind == "answer":
        return (f"{who} {'is an answer' if len(names) == 1 else 'are answers'}: the hidden tests compare the "
                f"value you set with the expected one (the check before you submit checks only its form).")
    if kind == "layer":
        return (f"The hidden tests of {who} build your layer and compare its output and the gradients of its "
                f"parameters with the course's reference, {_where(dtypes, devices)}.")
    if kind == "network":
        return (f"The hidden tests of {who} build your network and compare its layers, the shapes of its "
                f"parameters and its output with the course's reference, {_where(dtypes, devices)}.")
    if kind == "training":
        return (f"The hidden tests of {who} run your code on a small problem of their own, "
                f"{_where(dtypes, devices)}, and compare what it returns, and the net's state afterwards, with "
                f"the course's reference.")
    if kind == "experiment":
        return (f"The hidden tests of {who} run your experiment within the budgets its task states and score "
                f"it on held-out test images whose labels your notebook never sees.")
    return f"The hidden tests of {who} check what the task's text asks, as its hidden cell's comment says."


def _all_or_nothing(auto: list[tuple[str, float]], checks: dict[str, Any]) -> str:
    from cnngrader.grading import coverage  # as in _kinds

    partial = [name for name, _ in auto if getattr(coverage.of(checks.get(name)), "partial", False)]
    if not partial:
        return "all or nothing"
    return (f"all or nothing except for {_names(partial)}, which {'earns' if len(partial) == 1 else 'earn'} "
            f"points in proportion, as {'its' if len(partial) == 1 else 'their'} hidden cell says")


def paragraph(checks: dict[str, Any], nb: nbformat.NotebookNode) -> str:
    """The paragraph for the notebook `nb` whose hidden cells call `checks` (name -> check)."""
    auto, manual = graded_parts(nb)
    total = sum(p for _, p in auto) + sum(p for _, p in manual)
    parts = "; ".join(f"`{name}` {_points(p)}" for name, p in auto)
    lines = [
        "**How this notebook is graded.** Write your code between the lines where `# YOUR CODE HERE` is, "
        "replacing `raise NotImplementedError()`. Each graded part is followed by visible tests, your self-check "
        f"(run them; they carry no points), and by a hidden test cell, which carries the part's points, "
        f"{_all_or_nothing(auto, checks)}, so each part scores on its own. The {len(auto) + len(manual)} parts, "
        f"{_points(total)} in all: {parts}."
    ]
    kinds = _kinds([name for name, _ in auto], checks)
    sequence = ("tensor", "values", "layer", "network", "training", "experiment", "other", "errors", "answer")
    order = sorted(kinds, key=lambda k: sequence.index(k.split(":")[0]))
    lines += [_sentence(key, kinds[key]) for key in order if not key.startswith("answer:")]
    if any(k.startswith("tensor:") for k in kinds):
        lines.append("The hidden tests fail a function that calls what it is asked to implement (cnnlib's "
                     "version, or the PyTorch, NumPy or SciPy routes that the task names), so write it from basic "
                     "tensor operations.")
    elif any(not k.startswith("answer:") for k in kinds):
        lines.append("The hidden tests fail a function that calls cnnlib's version of itself, or a route that "
                     "the task names.")
    lines += [_sentence(key, kinds[key]) for key in order if key.startswith("answer:")]
    if manual:
        lines.append(f"{_names([gid for gid, _ in manual])} {'is' if len(manual) == 1 else 'are'} graded by hand "
                     f"({_points(sum(p for _, p in manual))}), by an instructor, after the automatic grading.")
    lines.append("Do not change the locked cells; run *Restart & Run All* before you submit.")
    return " ".join(lines)


def fill(nb: nbformat.NotebookNode, course: Course, aid: str) -> nbformat.NotebookNode:
    """Replace MARKER, in the markdown cells of `nb` (assignment `aid`), with its paragraph."""
    cells = [cell for cell in nb.cells if cell.cell_type == "markdown" and MARKER in cell.source]
    if not cells:
        return nb
    from cnngrader.grading import registry  # as in _kinds

    text = paragraph(registry(course.root).checks, nb)
    for cell in cells:
        cell.source = "\n".join(text if line.strip() == MARKER else line for line in cell.source.split("\n"))
    return nb

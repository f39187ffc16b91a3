"""Partial credit and longer limits for the hidden cells whose checks ask for them.

A check returns a core.Credit when it earns part of its cell's points (an experiment scored by its
accuracy between a floor and a target). nbgrader scores a grade cell from its outputs: 0 with an error,
else the number an execute_result holds (its partial credit), else all the points. outputs() writes that
number, computed here from the cell's points as the gradebook restored them, with a line that says how.

A checks module may also declare SECONDS = {name: seconds}: the time its hidden cell may take where that
is more than the per-cell limit (Execute.timeout), for a check that trains a net on a fixed budget.
"""
from __future__ import annotations

from typing import Any

import nbformat
from nbformat.notebooknode import NotebookNode


def points_of(cell: NotebookNode) -> float | None:
    """The points of a grade cell, from its nbgrader metadata (restored from the gradebook)."""
    points = cell.get("metadata", {}).get("nbgrader", {}).get("points")
    return float(points) if isinstance(points, (int, float)) and not isinstance(points, bool) else None


def outputs(credits: list[Any], points: float | None) -> list[NotebookNode]:
    """The outputs that give a passing hidden cell part of its `points`: a line per credit, and the score
    (the smallest fraction times the points, rounded to hundredths) as the cell's result. [] when every
    check earned its points in full."""
    partial = [c for c in credits if float(c.fraction) < 1.0]
    if not partial or points is None:
        return [nbformat.v4.new_output("stream", name="stdout", text="".join(f"{c.text}\n" for c in credits))] \
            if credits else []
    fraction = max(0.0, min(float(c.fraction) for c in partial))
    score = round(points * fraction, 2)
    text = "".join(f"{c.text}\n" for c in credits) + f"score: {score:g} of {points:g} points\n"
    return [nbformat.v4.new_output("stream", name="stdout", text=text),
            nbformat.v4.new_output("execute_result", data={"text/plain": repr(score)}, execution_count=None)]


def cell_limit(timeout: float, calls: list[str], course_root: str | None) -> float:
    """The seconds a hidden cell running `calls` may take: the per-cell `timeout`, or more where its
    checks module declares it."""
    from cnngrader import grading  # grading imports torch; outputs() alone needs only nbformat

    return max(float(timeout), grading.cell_seconds(calls, grading.registry(course_root)))

"""What a hidden check really tests, for the notebook's "How this notebook is graded" paragraph.

The usual checks say it by how they are made: core.simple_check runs a tensor function on every device and
dtype (core.DEVICES, core.DTYPES) and once more on the meta device; core.value_check compares plain values;
core.answer_check compares a conceptual answer. A check written by hand says it with the decorator
`covers(...)`. of(check) reads either; None means the check does not say.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

KINDS = ("tensor", "values", "answer", "layer", "network", "training", "experiment", "manual", "other")


class Covers(NamedTuple):
    kind: str  # one of KINDS
    dtypes: tuple[str, ...] = ()  # the floating dtypes the inputs are given in ("float32", "float64")
    devices: bool = False  # on every device present (the CPU, and each GPU)
    meta: bool = False  # once more on the meta device (shapes, dtypes, devices without data)
    errors: bool = False  # also the errors the task asks for (the exception's type, the argument it names)
    partial: bool = False  # earns part of its points (core.Credit) rather than all or nothing


def covers(kind: str, dtypes: tuple[str, ...] = (), devices: bool = False, meta: bool = False,
           errors: bool = False, partial: bool = False) -> Callable:
    """Decorator for a check written by hand: what it tests."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")

    def tag(check: Callable) -> Callable:
        check.covers = Covers(kind, tuple(dtypes), devices, meta, errors, partial)
        return check

    return tag


def dtypes() -> tuple[str, ...]:
    """The dtypes core.simple_check tests, as names ("float32", "float64")."""
    from cnngrader.grading import core  # could be at the top: cnngrader.grading's __init__ loads core first

    return tuple(core.dt(d) for d in core.DTYPES)


def of(check: Any) -> Covers | None:
    """What `check` tests: its own `covers` tag, else what its maker (core's simple_check, value_check,
    answer_check) implies; None when neither says."""
    tag = getattr(check, "covers", None)
    if isinstance(tag, Covers):
        return tag
    maker = getattr(check, "__qualname__", "").split(".<locals>", 1)[0]
    if getattr(check, "__module__", "") != "cnngrader.grading.core":
        return None
    if maker == "simple_check":
        return Covers("tensor", dtypes(), True, True)
    if maker == "value_check":
        return Covers("values")
    if maker == "answer_check":
        return Covers("answer")
    return None

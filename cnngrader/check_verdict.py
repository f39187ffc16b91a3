"""The verdict of a hidden test cell's checks: the one loop that grading (cnngrader.pipeline.verdict) and the
pre-submission check (cnngrader.precheck) both run, so that cnn-check says what the grade will say.

For each check the cell makes, in order:
1. `early(name)`: a reason to fail it without running it (grading: tampering, or a function that did not
   return earlier), else None;
2. the check itself, through a runner (RemoteRunner: the kernel runs the student's function; LocalRunner:
   this process does), combined with `static(name)`, the static scan's finding for it (core.route_and_values).

A check passes, fails with a reason, or (the pre-submission check only) is "checked when graded": it raised
NotChecked because the answers are not published. Whatever a kernel's reply holds cannot end the loop: a
reply that parsed but does not match the protocol (the wrong shape, the wrong types, a key missing, an
extra level of nesting) makes the check raise something other than GradingError, and that is this check's
failure with a reason, never the batch's end.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple

PASS, FAIL, WHEN_GRADED = "pass", "FAIL", "checked when graded"


class Verdict(NamedTuple):
    status: str  # PASS, FAIL or WHEN_GRADED
    reason: str = ""  # why it failed, or what is checked only when graded; "" when it passed
    passed: tuple[str, ...] = ()  # the checks that passed, in order (of a cell's verdict)
    credits: tuple = ()  # what passing checks returned when they earn part of the points (core.Credit)


def _none(name: str) -> None:
    return None


def protocol_reason(name: str, e: BaseException) -> str:
    """The reason for a check that broke on a reply that parsed but did not hold what it expects."""
    return (f"{name} could not be checked: the kernel's reply did not hold what the check expects "
            f"({type(e).__name__}: {str(e)[:200]})")


def _not_checked(e: BaseException, core: Any) -> bool:
    """Whether a check said "the form is right; the value is checked when graded" (its secret answers
    are not published): core.NotChecked, or any exception class of that name (a bundled course's copy)."""
    cls = getattr(core, "NotChecked", None)
    return (isinstance(cls, type) and isinstance(e, cls)) or type(e).__name__ == "NotChecked"


def checked(name: str, run: Callable[[], None], graded: bool = True) -> str | None:
    """run()'s verdict on the check `name`: None when it passes, else the reason. A reply that parsed but
    does not match the protocol makes the check raise something other than GradingError: that too is a
    reason (protocol_reason). `graded=False` (the pre-submission check): a NotChecked propagates."""
    from cnngrader.grading import core  # see check_verdict

    try:
        run()
    except (Exception, RecursionError) as e:  # the kernel's reply is untrusted input
        if not graded and _not_checked(e, core):
            raise
        return str(e) if isinstance(e, core.GradingError) else protocol_reason(name, e)
    return None


def check_verdict(name: str, runner: Any, reg: Any, static: str | None = None, graded: bool = True) -> Verdict:
    """The verdict of the check `name` (of registry `reg`) run through `runner`, with the static scan's
    finding `static` (None: nothing found). `graded`: this is the grade, where NotChecked fails like any
    other reason; else (the pre-submission check) it reads as WHEN_GRADED unless the scan found something."""
    # Imported here, not at the top: the pre-submission check imports this module in a student's kernel
    # only once it runs checks, and cnngrader.grading loads the course's checks (and torch) when imported.
    from cnngrader import grading
    from cnngrader.grading import core

    got: list = []
    try:
        values = checked(name, lambda: got.append(grading.run_check(name, runner, reg)), graded or static is not None)
    except Exception as e:  # a NotChecked (checked() lets nothing else through)
        return Verdict(WHEN_GRADED, str(e))
    reason = core.route_and_values(static, values)
    if reason is not None:
        return Verdict(FAIL, reason)
    return Verdict(PASS, credits=tuple(g for g in got if g is not None))


def cell_verdict(names: Iterable[str], runner: Callable[[], Any], reg: Any,
                 static: Callable[[str], str | None] = _none, early: Callable[[str], str | None] = _none,
                 graded: bool = True) -> Verdict:
    """The verdict of a hidden test cell that makes the checks `names`, each through the runner that
    `runner()` returns: the first failure (its later checks would not change the cell's 0), else
    WHEN_GRADED if a check is checked only when graded, else PASS; `passed` lists the checks that passed."""
    status, reason, passed, credits = PASS, "", [], []
    for name in names:
        why = early(name)
        found = Verdict(FAIL, why) if why is not None else check_verdict(name, runner(), reg, static(name), graded)
        if found.status == FAIL:
            return found._replace(passed=tuple(passed))
        if found.status == WHEN_GRADED:
            status, reason = found.status, found.reason
        else:
            passed.append(name)
            credits += found.credits
    return Verdict(status, reason, tuple(passed), tuple(credits))

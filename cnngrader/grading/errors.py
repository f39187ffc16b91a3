"""Checks of the errors a task asks for: the function must raise the named exception, with a message that
names the argument at fault (as cnnlib does: "a ValueError naming the argument and what was expected").

with_errors(check, cases, exc, argument, forbidden) runs `check` (the values), then each of `cases`, a list of
(args, kwargs, desc) on which the function must raise `exc` naming `argument`.
"""
from __future__ import annotations

import re
from typing import Any

from cnngrader.grading import core
from cnngrader.grading.coverage import Covers, of


def error_reason(name: str, run: core.Run, desc: str, exc: str, argument: str) -> str | None:
    """Why `run` (a call of name on the arguments `desc` describes) is not an `exc` whose message names
    `argument` (as a word); None when it is."""
    reason = core.shortcut_reason(name, run)
    if reason:
        return reason
    asked = f"the task asks for a {exc} whose message names `{argument}`"
    if run.error is None:
        return f"{name} returned instead of raising for {desc}: {asked}"
    if run.error.not_implemented:
        return core.error_reason(name, run, f"for {desc}")
    if run.error.type_name != exc:
        return f"{name} raised {run.error.type_name}: {run.error.message} for {desc}; {asked}"
    if not re.search(rf"(?<![\w.]){re.escape(argument)}(?!\w)", run.error.message):
        return (f"{name} raised {exc}({run.error.message!r}) for {desc}, but the message does not name "
                f"`{argument}`: {asked}")
    return None


def with_errors(check: core.Check, cases: list[tuple[tuple, dict, str]], exc: str, argument: str,
                forbidden: core.Forbidden) -> core.Check:
    """`check`, then the error cases; tagged as what `check` tests, plus the errors."""
    def checked(name: str, runner: Any) -> None:
        check(name, runner)
        runs, gone = runner.call_batch(name, forbidden, [(list(args), dict(kwargs)) for args, kwargs, _ in cases])
        for (_, _, desc), run in zip(cases, runs):
            reason = error_reason(name, run, desc, exc, argument)
            if reason:
                core.fail(reason)
        if gone:
            core.fail(gone)

    tag = of(check)
    checked.covers = (tag or Covers("other"))._replace(errors=True)
    return checked

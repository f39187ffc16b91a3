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


def expect_error(name: str, runner: Any, forbidden: core.Forbidden, args: list, kwargs: dict, desc: str,
                 exc: str, argument: str) -> None:
    """Fail unless name(*args, **kwargs) raises `exc` whose message names `argument` (as a word)."""
    run = runner.call(name, forbidden, list(args), dict(kwargs))
    reason = core.shortcut_reason(name, run)
    if reason:
        core.fail(reason)
    asked = f"the task asks for a {exc} whose message names `{argument}`"
    if run.error is None:
        core.fail(f"{name} returned instead of raising for {desc}: {asked}")
    if run.error.not_implemented:
        core.fail(core.error_reason(name, run, f"for {desc}"))
    if run.error.type_name != exc:
        core.fail(f"{name} raised {run.error.type_name}: {run.error.message} for {desc}; {asked}")
    if not re.search(rf"(?<![\w.]){re.escape(argument)}(?!\w)", run.error.message):
        core.fail(f"{name} raised {exc}({run.error.message!r}) for {desc}, but the message does not name "
                  f"`{argument}`: {asked}")


def with_errors(check: core.Check, cases: list[tuple[tuple, dict, str]], exc: str, argument: str,
                forbidden: core.Forbidden) -> core.Check:
    """`check`, then the error cases; tagged as what `check` tests, plus the errors."""
    def checked(name: str, runner: Any) -> None:
        check(name, runner)
        for args, kwargs, desc in cases:
            expect_error(name, runner, forbidden, list(args), kwargs, desc, exc, argument)

    tag = of(check)
    checked.covers = (tag or Covers("other"))._replace(errors=True)
    return checked

"""The hidden tests, on the trusted side: each assignment's checks, found through course.toml.

A hidden test cell is two lines::

    from cnngrader.grading import check
    check("corr2d", corr2d)

When the pipeline grades, the kernel never runs that cell: the trusted grading process reads the
call from the gradebook's copy of the cell and runs run_check(name, RemoteRunner(...)), which has
the kernel run only the student's function. Run in Jupyter (an instructor checking the solutions,
or the tests), check(name, obj) runs the same check in this process with a LocalRunner.

The checks are the CHECKS of each assignment's checks module, assignments/<id>/checks.py, for the
assignments listed in course.toml, found from the course directory ($CNNGRADER_COURSE, else the
nearest course.toml above the working directory) and loaded when this package is imported.
Once loaded, the grader's modules refuse attribute assignment and deletion, and the cnngrader
package refuses to rebind its `grading` attribute.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any, Callable, NamedTuple

from cnngrader.course import Course, CourseError, load_course
from cnngrader.grading import behaviour, core, runners
from cnngrader.grading.core import DTYPES, GradingError, NotChecked
from cnngrader.kernel import lock
from cnngrader.tolerances import TOLERANCES, Tol

__all__ = ["check", "run_check", "registry", "GradingError", "NotChecked", "TOLERANCES", "Tol", "DTYPES", "CHECKS",
           "ASSIGNMENT_OF"]


class Registry(NamedTuple):
    """One course's hidden tests: check name -> check, its assignment, and its Forbidden."""
    checks: dict[str, Callable[[str, Any], None]]
    owner: dict[str, str]
    forbidden: dict[str, core.Forbidden]
    modules: list[types.ModuleType]


_REGISTRIES: dict[Path, Registry] = {}


def registry(root: str | os.PathLike | None = None) -> Registry:
    """The checks of the course in `root` (default: find_root()), loaded once per course."""
    course = load_course(root)
    if course.root not in _REGISTRIES:
        _REGISTRIES[course.root] = _load_checks(course)
    return _REGISTRIES[course.root]


def _load_checks(course: Course) -> Registry:
    checks: dict[str, Callable[[str, Any], None]] = {}
    owner: dict[str, str] = {}
    forbidden: dict[str, core.Forbidden] = {}
    modules = []
    for aid in course.ids:
        path = course.checks(aid)
        if not path.is_file():
            continue  # an assignment without hidden tests
        name = f"{__name__}.checks_{len(_REGISTRIES)}_{aid}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        found = getattr(module, "CHECKS", None)
        if not isinstance(found, dict) or not all(isinstance(k, str) and callable(v) for k, v in found.items()):
            raise TypeError(f"{path} must define CHECKS, a dict from check names to functions check(name, runner)")
        for check_name, fn in found.items():
            if check_name in owner:
                raise ValueError(f"check {check_name!r} is defined by both {owner[check_name]} and {aid}")
            checks[check_name], owner[check_name] = fn, aid
            policy = getattr(module, "FORBIDDEN", {}).get(check_name)
            if policy is not None:
                forbidden[check_name] = policy
        modules.append(module)
        lock.lock(module)
    return Registry(checks, owner, forbidden, modules)


def _default() -> Registry:
    """The checks of the course around the working directory, if there is one (the grading
    pipeline names its course explicitly: registry(course_root))."""
    try:
        return registry()
    except CourseError:
        return Registry({}, {}, {}, [])


_DEFAULT = _default()
CHECKS = tuple(_DEFAULT.checks)
ASSIGNMENT_OF = types.MappingProxyType(dict(_DEFAULT.owner))
FORBIDDEN_OF = types.MappingProxyType(dict(_DEFAULT.forbidden))


def _reason(name: str, runner: runners.Runner, reg: Registry | None = None,
            credit: list | None = None) -> str | None:
    """Why the hidden checks registered as `name` fail through `runner`, or None when they pass; a
    core.Credit the check returns (part of the points) is appended to `credit`."""
    reg = reg or _DEFAULT
    fn = reg.checks.get(name) if isinstance(name, str) else None
    if fn is None:
        return f"no hidden checks named {name!r}; known: {', '.join(reg.checks)}"
    try:
        got = fn(name, runner)
    except core.NotChecked:
        raise  # the value is checked when graded: a pre-submission check reports it as such
    except GradingError as e:
        return str(e)
    if credit is not None and isinstance(got, core.Credit):
        credit.append(got)
    return None


def run_check(name: str, runner: runners.Runner, reg: Registry | None = None) -> core.Credit | None:
    """Run the hidden checks registered as `name` (in `reg`, default: this course's) through `runner`.

    Returns None when every check passes, or the core.Credit of a check that earns part of the points;
    raises GradingError with the reason otherwise, and core.NotChecked (a GradingError) when only an
    answer's form could be checked (no answers file).
    """
    credit: list = []
    reason = _reason(name, runner, reg, credit)
    if reason is not None:
        raise GradingError(reason) from None  # a fresh exception: a two-line traceback
    return credit[0] if credit else None


def cell_seconds(calls: list[str], reg: Registry | None = None) -> float:
    """The time a hidden cell running the checks `calls` may take, where its checks module declares more
    than the per-cell limit (SECONDS[name]: a check that trains a net); else 0."""
    reg = reg or _DEFAULT
    found = [float(getattr(m, "SECONDS", {}).get(name, 0)) for m in reg.modules for name in calls]
    return max(found, default=0.0)


def check(name: str, obj: Any, secret: int | None = None) -> core.Credit | None:
    """Run the hidden checks for the function (or class) `name` on `obj`, in this process."""
    credit: list = []
    reason = _reason(name, runners.LocalRunner({name: obj}, secret), credit=credit)
    if reason is not None:
        raise GradingError(reason) from None
    return credit[0] if credit else None


# ---------------------------------------------------------------------------------------------
_PUBLIC = {"check": check, "run_check": run_check, "registry": registry, "Registry": Registry,
           "GradingError": GradingError, "NotChecked": NotChecked, "TOLERANCES": TOLERANCES, "Tol": Tol,
           "DTYPES": DTYPES, "CHECKS": CHECKS, "ASSIGNMENT_OF": ASSIGNMENT_OF, "FORBIDDEN_OF": FORBIDDEN_OF,
           "cell_seconds": cell_seconds}

import cnngrader  # noqa: E402 (beside the lock it serves, the module's last step)

lock.guard(cnngrader, "grading", sys.modules[__name__])
for _module in (behaviour, core, runners):
    lock.lock(_module)
lock.lock(sys.modules[__name__], _PUBLIC)

"""The grader inside a grading kernel: the part of cnngrader that a graded notebook imports.

A hidden test cell is two lines::

    from cnngrader.kernel import check
    check("corr2d", corr2d)

`check` runs the hidden checks registered under that name by one assignment's checks module,
assignments/<id>/checks.py, for the assignments listed in course.toml. The modules are found
from the course directory ($CNNGRADER_COURSE, else the nearest course.toml above the working
directory) and loaded when this package is imported: the grading pipeline does that before any
cell of a submission runs, so every reference, expected value and helper is captured before
student code can change anything.

Once loaded, this package and every grader module refuse attribute assignment and deletion, the
public names here are read-only descriptors of the module's class, and the cnngrader package
refuses to rebind its `kernel` attribute. It is an in-kernel grader: it raises the bar, it is
not a sandbox.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any, Callable

from cnngrader.course import load_course
from cnngrader.kernel import captured, core
from cnngrader.kernel.core import DTYPES, GradingError
from cnngrader.tolerances import TOLERANCES, Tol

__all__ = ["check", "GradingError", "TOLERANCES", "Tol", "DTYPES", "CHECKS", "ASSIGNMENT_OF"]


def _load_checks() -> tuple[dict[str, Callable[[str, Any], None]], dict[str, str], list[types.ModuleType]]:
    """Every assignment's CHECKS, by check name; which assignment each name belongs to; the modules."""
    course = load_course()
    checks: dict[str, Callable[[str, Any], None]] = {}
    owner: dict[str, str] = {}
    modules = []
    for aid in course.ids:
        path = course.checks(aid)
        if not path.is_file():
            continue  # an assignment without hidden tests
        name = f"{__name__}.checks_{aid}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        found = getattr(module, "CHECKS", None)
        if not isinstance(found, dict) or not all(isinstance(k, str) and callable(v) for k, v in found.items()):
            raise TypeError(f"{path} must define CHECKS, a dict from check names to functions check(name, obj)")
        for check_name, fn in found.items():
            if check_name in owner:
                raise ValueError(f"check {check_name!r} is defined by both {owner[check_name]} and {aid}")
            checks[check_name], owner[check_name] = fn, aid
        modules.append(module)
    return checks, owner, modules


_CHECKS, _OWNER, _MODULES = _load_checks()
CHECKS = tuple(_CHECKS)
ASSIGNMENT_OF = types.MappingProxyType(dict(_OWNER))


def check(name: str, obj: Any) -> None:
    """Run the hidden checks for the function (or class) `name` on the student's `obj`.

    Returns None when every check passes; raises GradingError with the reason otherwise.
    """
    runner = _CHECKS.get(name) if isinstance(name, str) else None
    if runner is None:
        raise GradingError(f"no hidden checks named {name!r}; known: {', '.join(CHECKS)}")
    try:
        with core.full_float32():
            runner(name, obj)
    except GradingError as e:
        reason = str(e)
    else:
        return
    raise GradingError(reason) from None  # a fresh exception: the feedback shows a two-line traceback


# ---------------------------------------------------------------------------------------------
# Lock the grader's modules and the package's `kernel` attribute.
_PUBLIC = {"check": check, "GradingError": GradingError, "TOLERANCES": TOLERANCES, "Tol": Tol, "DTYPES": DTYPES,
           "CHECKS": CHECKS, "ASSIGNMENT_OF": ASSIGNMENT_OF}
_SELF = sys.modules[__name__]
_mod_setattr, _mod_delattr = captured.mod_setattr, captured.mod_delattr


class _LockedMeta(type):
    def __setattr__(cls, name, value):
        raise AttributeError("the grader is read-only")

    def __delattr__(cls, name):
        raise AttributeError("the grader is read-only")


def _locked_class(module: types.ModuleType, public: dict) -> type:
    """A module class that refuses every assignment and deletion; `public` names become read-only
    data descriptors of the class, so editing the module's __dict__ cannot replace them either."""
    label = module.__name__

    def refuse_set(self, name, value):
        raise AttributeError(f"{label} is read-only: cannot set {name!r}")

    def refuse_del(self, name):
        raise AttributeError(f"{label} is read-only: cannot delete {name!r}")

    body = {"__setattr__": refuse_set, "__delattr__": refuse_del, "__module__": __name__}
    body.update({name: property(lambda self, v=value: v) for name, value in public.items()})
    return _LockedMeta("_LockedModule", (types.ModuleType,), body)


def _guard_package(package: types.ModuleType, attr: str, value: types.ModuleType) -> None:
    """The package refuses to rebind or delete its attribute `attr`."""

    class _GuardedPackage(types.ModuleType):
        def __setattr__(self, name, new):
            if name == attr and new is not value:
                raise AttributeError(f"{package.__name__}.{attr} cannot be replaced")
            _mod_setattr(self, name, new)

        def __delattr__(self, name):
            if name == attr:
                raise AttributeError(f"{package.__name__}.{attr} cannot be deleted")
            _mod_delattr(self, name)

    if type(package) is types.ModuleType:
        package.__class__ = _GuardedPackage


if type(_SELF).__name__ != "_LockedModule":
    import cnngrader

    _mod_setattr(cnngrader, "kernel", _SELF)
    _guard_package(cnngrader, "kernel", _SELF)
    for _module in (captured, core, *_MODULES):
        _mod_setattr(_module, "__class__", _locked_class(_module, {}))
    _mod_setattr(_SELF, "__class__", _locked_class(_SELF, _PUBLIC))

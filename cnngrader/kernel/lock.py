"""Read-only grader modules: once locked, a module refuses attribute assignment and deletion,
and its public names are read-only data descriptors of its class, so that editing the module's
__dict__ cannot replace them either. A guarded package refuses to rebind or delete the
attributes that hold its locked subpackages.

This raises the bar for code that runs in the same process (an instructor's local check, the
tests); graded notebooks never share a process with the verdict.
"""
from __future__ import annotations

import types

from cnngrader.kernel import captured

_set, _del = captured.mod_setattr, captured.mod_delattr


class _LockedMeta(type):
    def __setattr__(cls, name, value):
        raise AttributeError("the grader is read-only")

    def __delattr__(cls, name):
        raise AttributeError("the grader is read-only")


def lock(module: types.ModuleType, public: dict | None = None) -> None:
    """Make `module` read-only; `public` names become descriptors of its class."""
    if type(module).__name__ == "_LockedModule":
        return
    label = module.__name__

    def refuse_set(self, name, value):
        raise AttributeError(f"{label} is read-only: cannot set {name!r}")

    def refuse_del(self, name):
        raise AttributeError(f"{label} is read-only: cannot delete {name!r}")

    body = {"__setattr__": refuse_set, "__delattr__": refuse_del, "__module__": __name__}
    body.update({name: property(lambda self, v=value: v) for name, value in (public or {}).items()})
    _set(module, "__class__", _LockedMeta("_LockedModule", (types.ModuleType,), body))


class _GuardedPackage(types.ModuleType):
    def __setattr__(self, name, new):
        held = _GUARDED.get((id(self), name))
        if held is not None and new is not held:
            raise AttributeError(f"{self.__name__}.{name} cannot be replaced")
        _set(self, name, new)

    def __delattr__(self, name):
        if (id(self), name) in _GUARDED:
            raise AttributeError(f"{self.__name__}.{name} cannot be deleted")
        _del(self, name)


_GUARDED: dict[tuple[int, str], types.ModuleType] = {}


def guard(package: types.ModuleType, attr: str, value: types.ModuleType) -> None:
    """`package.attr` is `value` for good."""
    _set(package, attr, value)
    _GUARDED[(id(package), attr)] = value
    if type(package) is types.ModuleType:
        package.__class__ = _GuardedPackage

"""Shortcut guards around one call of a student function, inside the grading kernel.

A Policy, sent by the trusted grading process as plain data, names what the function may not use:

- `replace`: Python attributes ("torch.nn.functional.conv2d", "cnnlib.corr2d") replaced by
  tripwires while the function runs, and watched through any alias by a profile hook;
- `watch`: C functions only watched by the profile hook ("torch._C._nn.im2col");
- `aten`: operators blocked at PyTorch's dispatcher ("convolution", "constant_pad_nd"), so every
  route to them fails: torch.ops.aten.*, nn.grad, transposed and 3-D variants, other threads,
  C++ callers.

invoke() runs the function with all of them armed, captures its warnings and output (so they
never reach a graded cell), and returns a Run: the value or the error, where in the student's
code it was raised, and every forbidden use recorded, even one whose exception was caught.
"""
from __future__ import annotations

import os
import sys
import types
from typing import Any, Callable, NamedTuple

from cnngrader.kernel import captured as c

# The modules as they were when the grader was imported, before any student code ran, and the
# attributes of those a policy names: a tripwire watches the genuine function even when the
# notebook has rebound the name since.
_MODULES = dict(sys.modules)
_WATCHED = ("torch", "torch.nn", "torch.nn.functional", "torch.nn.grad", "torch.linalg", "torch._C._nn", "cnnlib",
            "cnnlib.ops", "cnnlib.shapes", "cnnlib.train", "cnnlib.models", "cnnlib.layers", "cnnlib._engine")
_DISPATCH_KEYS = ("CPU", "CUDA", "Meta", "CompositeImplicitAutograd")


class Policy(NamedTuple):
    replace: tuple[str, ...] = ()
    watch: tuple[str, ...] = ()
    aten: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict) -> "Policy":
        return cls(*(tuple(str(v) for v in data.get(k, ())) for k in cls._fields))


class Run(NamedTuple):
    value: Any
    error: BaseException | None
    where: str  # "line N: source" of the student's frame that raised, or ""
    shortcuts: list
    warned: list
    tampered: bool


class Tripwire:
    """Stands in for a forbidden function or class while a student function runs."""

    def __init__(self, label: str, calls: list) -> None:
        self._label, self._calls = label, calls

    def __call__(self, *args, **kwargs):
        self._calls.append(self._label)
        raise RuntimeError(f"{self._label} may not be used here: the hidden tests check your own implementation")

    def __getattr__(self, name):  # e.g. F.conv2d.__doc__, nn.Conv2d.forward
        self._calls.append(self._label)
        raise AttributeError(f"{self._label} may not be used here")

    def __mro_entries__(self, bases):  # class Mine(nn.Conv2d): ... is a shortcut too
        self._calls.append(self._label)
        raise TypeError(f"{self._label} may not be used here")


def _module(name: str) -> Any:
    owner = _MODULES.get(name)
    if owner is None:  # e.g. torch._C._nn, which is an attribute rather than an imported module
        root, *rest = name.split(".")
        owner = _MODULES.get(root)
        for part in rest:
            owner = getattr(owner, part, None)
    return owner


_ORIGINAL = {name: dict(vars(m)) for name in _WATCHED if (m := _module(name)) is not None}


def resolve(dotted: str) -> tuple[Any, str, Any] | None:
    """(owner, attribute, object) for "package.module.attr": the module and the object as they
    were when the grader was imported."""
    owner_name, _, attr = dotted.rpartition(".")
    owner = _module(owner_name)
    original = _ORIGINAL.get(owner_name, {})
    obj = original.get(attr, getattr(owner, attr, None) if owner is not None else None)
    if owner is None or obj is None:
        return None
    return owner, attr, obj


class _Armed(NamedTuple):
    attrs: list  # (owner, name, label)
    codes: dict  # code object -> label
    builtins: dict  # id(builtin) -> label
    keep: list  # the builtins themselves, so their ids stay theirs


def _arm(policy: Policy) -> _Armed:
    armed = _Armed([], {}, {}, [])
    for dotted, replace in [(d, True) for d in policy.replace] + [(d, False) for d in policy.watch]:
        found = resolve(dotted)
        if found is None:
            continue
        owner, name, obj = found
        if replace:
            armed.attrs.append((owner, name, dotted))
        if isinstance(obj, type):
            for meth in ("__init__", "forward"):
                fn = obj.__dict__.get(meth)
                if isinstance(fn, types.FunctionType):
                    armed.codes.setdefault(fn.__code__, dotted)
        elif isinstance(obj, types.FunctionType):
            armed.codes.setdefault(obj.__code__, dotted)
        elif callable(obj):
            armed.builtins.setdefault(id(obj), dotted)
            armed.keep.append(obj)
    return armed


def _block_aten(ops: tuple[str, ...], calls: list):
    """A torch.library registration that makes each aten operator record its use and raise."""
    if not ops:
        return None

    def blocked(label):
        def kernel(*args, **kwargs):
            calls.append(label)
            raise RuntimeError(f"{label} may not be used here: the hidden tests check your own implementation")
        return kernel

    with c.catch_warnings():
        c.simplefilter("ignore")  # "Overriding a previously registered kernel" is the point here
        lib = c.Library("aten", "IMPL")
        for op in ops:
            for key in _DISPATCH_KEYS:
                try:
                    lib.impl(op, blocked(f"torch.ops.aten.{op.split('.')[0]}"), key)
                except (RuntimeError, ValueError, AttributeError):
                    pass  # no such operator or overload in this torch version
    return lib


def invoke(policy: Policy, thunk: Callable[[], Any]) -> Run:
    """Run thunk() with the policy armed, warnings and output captured."""
    calls: list = []
    armed = _arm(policy)
    codes, builtins = armed.codes, armed.builtins

    def hook(frame, event, arg):
        if event == "call":
            label = codes.get(frame.f_code)
        elif event == "c_call":
            label = builtins.get(id(arg))
        else:
            return
        if label is not None:
            calls.append(label)

    saved = []
    value, error, where = None, None, ""
    previous = c.getprofile()
    buffer = c.StringIO()
    tampered = False
    lib = None
    with c.catch_warnings(record=True) as warned, c.redirect_stderr(buffer), c.redirect_stdout(buffer):
        c.simplefilter("always")
        try:
            for owner, name, label in armed.attrs:
                saved.append((owner, name, owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name)))
                set_attr(owner, name, Tripwire(label, calls))
            lib = _block_aten(policy.aten, calls)
            # Under a profiler or debugger, its hook stays (cProfile's cannot be restored by setprofile);
            # the tripwires and the dispatcher still catch the calls.
            watch = previous is None
            if watch:
                c.setprofile(hook)
            try:
                value = thunk()
            finally:
                if watch:
                    tampered = c.getprofile() is not hook
                    c.setprofile(None)
        except BaseException as e:  # noqa: BLE001 - a student's error is a verdict, not a crash
            if isinstance(e, KeyboardInterrupt):
                raise
            error = e
            frames = [f for f in c.extract_tb(e.__traceback__) if not _is_grader_file(f.filename)]
            if frames:
                where = f"line {frames[-1].lineno}: {(frames[-1].line or '').strip()}"
        finally:
            if lib is not None:
                lib._destroy()
            for owner, name, obj in reversed(saved):
                set_attr(owner, name, obj)
    return Run(value, error, where, calls, [f"{w.category.__name__}: {w.message}" for w in warned], tampered)


def _is_grader_file(filename: str) -> bool:
    """Frames of the grader and of libraries, which a student's traceback location skips."""
    path = os.path.normcase(filename)
    return "site-packages" in path or path.startswith(_GRADER_DIR) or path.endswith(_CHECKS_FILE)


_GRADER_DIR = os.path.normcase(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CHECKS_FILE = os.path.normcase(os.path.join("", "checks.py"))


def set_attr(owner: Any, name: str, value: Any) -> None:
    if isinstance(owner, types.ModuleType):
        c.mod_setattr(owner, name, value)
    else:
        setattr(owner, name, value)

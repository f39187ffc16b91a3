"""The grader's machinery inside a grading kernel: shortcut guards, cases, comparison, verdicts.

Each assignment's checks module (assignments/<id>/checks.py) builds its hidden tests from these
parts: its references and cases (tensor_cases, value_cases), the operations it forbids (forbid,
with the shared lists CONV, POOL, PAD, SOLVE), and checks made with simple_check, value_check or
custom code that calls invoke() and the verdict helpers. cnngrader.kernel collects them.

- invoke() runs a student function with the forbidden operations replaced by tripwires and a
  profile hook watching for calls to them through aliases; any recorded call fails the test, even
  when the student caught the exception. Warnings and output of the student code are captured,
  so they never zero a cell.
- Values are compared in plain Python, with the primitives captured in cnngrader.kernel.captured.
- fail() raises GradingError with the reason, and also writes one line straight to the kernel's
  stderr (nbgrader scores a cell with stderr output 0 even when the traceback display was
  disabled).

It is an in-kernel grader: it raises the bar, it is not a sandbox.
"""
from __future__ import annotations

import contextlib
import os
import types
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cnngrader.kernel import captured as c
from cnngrader.tolerances import TOLERANCES, Tol

class GradingError(AssertionError):
    """A hidden test failed; the message says why, with one failing case small enough to check by hand."""


DTYPES = (torch.float32, torch.float64)

# ---------------------------------------------------------------------------------------------
# Everything the grader relies on, captured now: later rebinding by student code changes nothing.
try:
    FD2 = os.dup(2)  # the kernel's stderr as it is now; closing or redirecting fd 2 later does not matter
except OSError:  # pragma: no cover - no stderr at all
    FD2 = -1

DEVICES = tuple(c.devices_mod.devices())


# ---------------------------------------------------------------------------------------------
# Shortcut guards.
class Forbidden(NamedTuple):
    attrs: tuple  # (owner, name, label): attributes replaced by tripwires while the student runs
    codes: dict  # code object -> label: Python functions, caught through any alias
    builtins: dict  # id(builtin) -> label: C functions, caught through any alias
    keep: tuple  # the builtins themselves, so their ids stay theirs


def label_of(owner: Any, name: str) -> str:
    prefix = {id(torch): "torch", id(F): "torch.nn.functional", id(nn): "torch.nn", id(c.cnnlib_pkg): "cnnlib"}
    return f"{prefix.get(id(owner), getattr(owner, '__name__', '?'))}.{name}"


def forbid(attrs: list[tuple[Any, str]], extra: list[tuple[Any, str]] = ()) -> Forbidden:
    """Tripwires for `attrs` (module, name); `extra` C functions are only watched, never replaced."""
    entries, codes, builtins, keep = [], {}, {}, []
    for owner, name, replace in [(o, n, True) for o, n in attrs] + [(o, n, False) for o, n in extra]:
        obj = getattr(owner, name, None)
        if obj is None:
            continue
        label = label_of(owner, name)
        if replace:
            entries.append((owner, name, label))
        if isinstance(obj, type):
            for meth in ("__init__", "forward"):
                fn = obj.__dict__.get(meth)
                if isinstance(fn, types.FunctionType):
                    codes.setdefault(fn.__code__, label)
        elif isinstance(fn := obj, types.FunctionType):
            codes.setdefault(fn.__code__, label)
        elif callable(obj):
            builtins.setdefault(id(obj), label)
            keep.append(obj)
    return Forbidden(tuple(entries), codes, builtins, tuple(keep))


def cnn(*names: str) -> list[tuple[Any, str]]:
    """cnnlib's own versions, on the package and on the module that defines them."""
    out = []
    for name in names:
        out.append((c.cnnlib_pkg, name))
        for mod in (c.ops, c.shapes, c.training, c.models):
            if name in vars(mod):
                out.append((mod, name))
    return out


CONV = [
    (torch, "conv2d"), (F, "conv2d"), (torch, "conv1d"), (F, "conv1d"), (torch, "conv3d"), (F, "conv3d"),
    (torch, "convolution"), (torch, "conv_transpose2d"), (F, "conv_transpose2d"), (F, "unfold"), (F, "fold"),
    (nn, "Conv2d"), (nn, "Conv1d"), (nn, "LazyConv2d"), (nn, "Unfold"),
]
CONV_C = [(torch, "_convolution"), (torch._C._nn, "im2col"), (torch._C._nn, "col2im")]
POOL = [
    (F, "max_pool2d"), (F, "avg_pool2d"), (F, "adaptive_avg_pool2d"), (F, "adaptive_max_pool2d"),
    (F, "max_pool2d_with_indices"), (F, "lp_pool2d"), (torch, "max_pool2d"), (torch, "avg_pool1d"),
    (torch, "adaptive_avg_pool1d"), (nn, "MaxPool2d"), (nn, "AvgPool2d"), (nn, "AdaptiveAvgPool2d"),
    (nn, "AdaptiveMaxPool2d"), (nn, "LPPool2d"),
]
POOL_C = [
    (torch._C._nn, "avg_pool2d"), (torch._C._nn, "adaptive_avg_pool2d"),
    (torch._C._nn, "max_pool2d_with_indices"), (torch._C._nn, "adaptive_max_pool2d"),
]
PAD = [(F, "pad"), (torch, "constant_pad_nd"), (nn, "ZeroPad2d"), (nn, "ConstantPad2d"), (nn, "ReflectionPad2d")]
PAD_C = [(torch._C._nn, "pad")]
SOLVE = [
    (torch.linalg, "lstsq"), (torch.linalg, "pinv"), (torch.linalg, "solve"), (torch.linalg, "inv"),
    (torch, "pinverse"), (torch, "inverse"),
]
CONV_OPS = ("corr2d", "convolve2d", "conv2d", "corr2d_multi_in", "corr2d_multi_in_out",
             "corr2d_multi_in_out_1x1", "corr2d_padded", "conv_as_matrix", "Conv2D", "Conv2d")


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


class Run(NamedTuple):
    value: Any
    error: BaseException | None
    where: str  # "line N: source" of the student's frame that raised, or ""
    shortcuts: list
    warned: list
    tampered: bool


def invoke(forbidden: Forbidden, thunk: Callable[[], Any]) -> Run:
    """Run thunk() with tripwires in place, warnings and output captured."""
    calls: list = []
    codes, builtins = forbidden.codes, forbidden.builtins

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
    with c.catch_warnings(record=True) as warned, c.redirect_stderr(buffer), c.redirect_stdout(buffer):
        c.simplefilter("always")
        try:
            for owner, name, label in forbidden.attrs:
                saved.append((owner, name, owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name)))
                set_attr(owner, name, Tripwire(label, calls))
            # Under a profiler or debugger, its hook stays (cProfile's cannot be restored by setprofile);
            # the tripwires still catch calls by name.
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


# ---------------------------------------------------------------------------------------------
# Formatting and comparison in plain Python.
def fmt_num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, float) and c.isfinite(v) and v == int(v) and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.4g}"


def fmt(t: Any) -> str:
    """A small tensor as rows of numbers, one line per row (a 3-D tensor: one block per channel)."""
    if type(t) is not c.Tensor and type(t) is not c.Parameter:
        return repr(t)
    data = c.tolist(c.detach(c.to(t, device=c.CPU)))
    if not isinstance(data, list):
        return fmt_num(data)
    if not data or not isinstance(data[0], list):
        return "[" + ", ".join(fmt_num(v) for v in data) + "]"

    def rows2d(m):
        cells = [[fmt_num(v) for v in row] for row in m]
        width = max((len(c) for row in cells for c in row), default=1)
        return "\n".join("  [" + " ".join(c.rjust(width) for c in row) + "]" for row in cells)

    if isinstance(data[0][0], list):  # 3-D: channel blocks; deeper tensors are never printed
        if data[0][0] and isinstance(data[0][0][0], list):
            return f"<tensor of shape {tuple(c.size(t))}>"
        return "\n".join(f"  channel {c}:\n" + rows2d(m) for c, m in enumerate(data))
    return rows2d(data)


def flat(x: Any) -> list:
    if isinstance(x, list):
        out = []
        for v in x:
            out.extend(flat(v))
        return out
    return [x]


def where_differs(got: list, expected: list, tol: Tol) -> tuple[int, float, float] | None:
    """The first index where got and expected differ beyond tol, or None."""
    for i, (g, e) in enumerate(zip(got, expected)):
        if c.isnan(e) or c.isnan(g):
            if c.isnan(e) and c.isnan(g):
                continue
            return i, g, e
        if g == e:
            continue  # equal infinities included
        if not (c.isfinite(g) and c.isfinite(e)) or abs(g - e) > tol.atol + tol.rtol * abs(e):
            return i, g, e
    return None


def dev(d: Any) -> str:
    return str(d)


def dt(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def shape(t: Any) -> tuple:
    return tuple(c.size(t))


# ---------------------------------------------------------------------------------------------
# Cases.
class Case(NamedTuple):
    args: tuple  # tensors are CPU float64; converted per device and dtype
    kwargs: dict
    desc: str  # "X (4, 4) and K (2, 2)"
    show: tuple  # (name, tensor or value) printed for a failing case
    expected: Any  # CPU float64 tensor, or a plain value
    size: int


def gen(seed: int) -> torch.Generator:
    return c.Generator().manual_seed(seed)


def data(shape: tuple, g: torch.Generator, integer: bool) -> torch.Tensor:
    """Small integers in [-3, 3] (checkable by hand) or values in [-1, 1) rounded to 2 decimals."""
    if integer:
        return c.randint(-3, 4, shape, generator=g).to(c.F64)
    return torch.round((c.rand(shape, generator=g, dtype=c.F64) * 2 - 1) * 100) / 100


def tensor_cases(ref: Callable, specs: list, build: Callable, seed: int) -> list[Case]:
    """specs: tuples handed to build(spec, g, integer) -> (args, kwargs, desc, show); ref fills expected.

    Cases alternate small integers and two-decimal values, and are sorted smallest first."""
    g = gen(seed)
    cases = []
    for k, spec in enumerate(specs):
        integer = k % 2 == 0
        args, kwargs, desc, show = build(spec, g, integer)
        expected = ref(*args, **kwargs)
        size = sum(c.numel(a) for a in args if type(a) is c.Tensor)
        cases.append(Case(tuple(args), dict(kwargs), desc, tuple(show), c.detach(expected), size))
    cases.sort(key=lambda case: case.size)
    return cases


def value_cases(fn_name: str, ref: Callable, calls: list[tuple[tuple, dict]]) -> list[Case]:
    """Cases of a function of plain values: (args, kwargs) pairs, described as the call itself."""
    out = []
    for args, kwargs in calls:
        shown = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
        out.append(Case(args, kwargs, f"{fn_name}({shown})", (), ref(*args, **kwargs), 0))
    return out


# ---------------------------------------------------------------------------------------------
# Verdicts.
def fail(reason: str) -> None:
    """Raise the verdict; also put one line on the kernel's stderr, which nbgrader scores as a failure."""
    if FD2 >= 0:
        try:
            c.os_write(FD2, ("GRADING FAILED: " + reason.splitlines()[0] + "\n").encode("utf-8", "replace"))
        except OSError:
            pass
    raise GradingError(reason)


def shortcut_reason(name: str, run: Run) -> str | None:
    if run.shortcuts:
        used = ", ".join(dict.fromkeys(run.shortcuts))
        return (f"{name} called {used} while the hidden tests ran: the assignment asks you to write {name} "
                f"yourself, without that shortcut.")
    if run.tampered:
        return f"{name} changed the interpreter's profile hook (sys.setprofile) while it ran; the grader needs it."
    return None


def require_clean(name: str, run: Run, where: str, label: str | None = None, hint: str = "") -> None:
    """Fail when the run used a shortcut (reason + hint), then when it raised (as `label`, default name)."""
    reason = shortcut_reason(name, run)
    if reason:
        fail(reason + hint)
    if run.error is not None:
        fail(error_reason(label or name, run, where))


def error_reason(name: str, run: Run, where: str) -> str:
    e = run.error
    if isinstance(e, NotImplementedError):
        return f"{name} raised NotImplementedError {where}: replace `raise NotImplementedError()` with your code."
    at = f" (at {run.where})" if run.where else ""
    return f"{name} raised {type(e).__name__}: {e} {where}{at}"


def check_tensor_out(name: str, got: Any, expected: torch.Tensor, dtype: torch.dtype, device: Any,
                      where: str) -> str | None:
    """Type, shape, dtype, device, then values; None when got matches."""
    if type(got) is not c.Tensor and type(got) is not c.Parameter:
        return f"{name} returned {type(got).__name__} {where}; expected a torch.Tensor"
    if shape(got) != shape(expected):
        return f"{name} returned shape {shape(got)} {where}; expected shape {shape(expected)}"
    got_dtype = c.dtype_of(got)
    if got_dtype != dtype:
        return (f"{name} returned dtype {dt(got_dtype)} {where}; expected {dt(dtype)}, the input's dtype "
                f"(create new tensors with the input's dtype, e.g. X.new_zeros(...))")
    got_device = c.device_of(got)
    if got_device != device:
        return (f"{name} returned a tensor on {got_device} {where}; expected it on {device}, the input's device "
                f"(create new tensors on the input's device, e.g. X.new_zeros(...) or device=X.device)")
    tol = TOLERANCES.get(dtype, TOLERANCES[torch.float64])
    g = flat(c.tolist(c.detach(c.to(got, device=c.CPU, dtype=c.F64))))
    e = flat(c.tolist(c.to(expected, device=c.CPU, dtype=c.F64)))
    bad = where_differs(g, e, tol)
    if bad is not None:
        i, gv, ev = bad
        return (f"{name} returned wrong values {where}: element {i} (flattened) is {gv:.10g}, expected "
                f"{ev:.10g}, off by {abs(gv - ev):.3g} (tolerance {dt(dtype)}: rtol={tol.rtol:g}, atol={tol.atol:g})")
    return None


def example(case: Case, expected: Any, got: Any) -> str:
    parts = ["\nThe smallest failing case:"]
    for label, value in case.show:
        parts.append(f"{label} =\n{fmt(value)}" if type(value) is c.Tensor else f"{label} = {value!r}")
    parts.append(f"expected =\n{fmt(expected)}")
    if got is not None:
        parts.append(f"got =\n{fmt(got)}")
    return "\n".join(parts)


def combo_where(case: Case, device: Any, dtype: torch.dtype) -> str:
    return f"for {case.desc} on {dev(device)} {dt(dtype)}"


def run_tensor_checks(name: str, fn: Any, make_thunk: Callable, cases: list[Case], forbidden: Forbidden,
                      extra: Callable | None = None) -> None:
    """Every case on every device and dtype; report the smallest failing case of the first failing combination."""
    require_callable(name, fn)
    first = None  # (reason, case, expected, got, warnings)
    failing_combos = []
    for device in DEVICES:
        for dtype in DTYPES:
            for case in cases:
                args = tuple(c.to(a, device=device, dtype=dtype, copy=True) if type(a) is c.Tensor else a
                             for a in case.args)
                run = invoke(forbidden, make_thunk(fn, args, case.kwargs))
                reason = shortcut_reason(name, run)
                if reason:
                    fail(reason)  # at once; an error, below, is only this combination's reason
                where = combo_where(case, device, dtype)
                got = run.value if run.error is None else None
                if run.error is not None:
                    reason = error_reason(name, run, where)
                else:
                    reason = check_tensor_out(name, got, case.expected, dtype, device, where)
                    if reason is None and extra is not None:
                        reason = extra(case, args, got, device, dtype, where)
                if reason:
                    failing_combos.append(f"{dev(device)} {dt(dtype)}")
                    if first is None:
                        shown = got if type(got) is c.Tensor and c.dim(got) <= 3 and c.numel(got) <= 200 else None
                        first = (reason, case, shown, run.warned)
                    break
    if first is not None:
        reason, case, got, warned = first
        msg = reason
        if len(failing_combos) > 1:
            msg += f"\nIt fails on: {', '.join(failing_combos)}."
        msg += example(case, case.expected, got)
        if warned:
            msg += "\nYour code emitted warnings: " + "; ".join(dict.fromkeys(warned))
        fail(msg)


def require_callable(name: str, fn: Any) -> None:
    if not callable(fn):
        fail(f"{name} is {type(fn).__name__}, not a function: define {name} in the cell above.")


def call(fn, args, kwargs):
    return lambda: fn(*args, **kwargs)


Check = Callable[[str, Any], None]  # check(name, student_object): returns, or raises GradingError


def simple_check(cases: list[Case], forbidden: Forbidden) -> Check:
    """A tensor function called on each case's arguments, on every device and dtype."""
    return lambda name, fn: run_tensor_checks(name, fn, call, cases, forbidden)


def value_check(cases: list[Case], forbidden: Forbidden, accept: Callable[[Any, Any], str | None]) -> Check:
    """A function of plain values; accept(got, expected) is None when right, else "" or a hint."""

    def check(name: str, fn: Any) -> None:
        require_callable(name, fn)
        for case in cases:
            run = invoke(forbidden, call(fn, c.deepcopy(case.args), c.deepcopy(case.kwargs)))
            require_clean(name, run, f"in {case.desc}")
            problem = accept(run.value, case.expected)
            if problem is not None:
                fail(f"{case.desc} returned {run.value!r}; expected {case.expected!r}{problem}")

    return check


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def accept_int(got: Any, expected: Any) -> str | None:
    if not is_int(got):
        return f" (an int, got {type(got).__name__})"
    return None if got == expected else ""


def accept_int_or_pair(got: Any, expected: Any) -> str | None:
    if is_int(expected):
        return accept_int(got, expected)
    if not isinstance(got, (tuple, list)) or len(got) != 2 or not all(is_int(v) for v in got):
        return " (a pair of ints, since one of the arguments was a pair)"
    return None if tuple(got) == tuple(expected) else ""


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@contextlib.contextmanager
def full_float32():
    """No TF32 on GPUs while grading: cuDNN convolutions would otherwise round float32 to ~1e-3."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


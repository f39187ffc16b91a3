"""The trusted side of the hidden tests: policies, cases, comparison and verdicts.

Each assignment's checks module (assignments/<id>/checks.py) builds its hidden tests from these
parts: its references and cases (tensor_cases, value_cases), the operations it forbids (forbid,
with the shared lists CONV, POOL, PAD, SOLVE), and checks made with simple_check, value_check or
custom code. A check is check(name, runner): the runner (cnngrader.grading.runners) has the
student's code run, in the grading kernel or in process, and returns plain outputs; the check
compares them with its references here, in the trusted process, and raises GradingError with the
reason, or returns.

Cases are drawn per run from a secret (runner.secret), so a notebook cannot know them in advance;
with no secret (an instructor's local check) they are the fixed cases of each check's base seed.
Functions of plain values get their edge cases fixed and the rest drawn the same way (value_draw).

Conceptual questions (answer_check) compare a value the notebook sets (an int, a tuple of ints...)
with the expected answer, which is never in checks.py: it is in the secret file
assignments/<id>/answers.toml, read with answers(__file__). Where that file is absent (a student's
copy of the checks, for the pre-submission check) only the answer's form is checked, and the check
raises NotChecked, a GradingError that says "its value is checked when graded".
"""
from __future__ import annotations

import hashlib
from time import perf_counter
from typing import Any, Callable, NamedTuple

import torch

from cnngrader.kernel import captured as cap
from cnngrader.kernel.guard import Policy
from cnngrader.kernel.serialize import Opaque
from cnngrader.tolerances import TOLERANCES, Tol


class GradingError(AssertionError):
    """A hidden test failed; the message says why, with one failing case small enough to check by hand."""


class Credit(NamedTuple):
    """What a check returns when it earns part of its cell's points: the fraction earned (0 < fraction <= 1)
    and a line that says how it was computed. A check that returns None earns them all."""

    fraction: float
    text: str


DTYPES = (torch.float32, torch.float64)
DEVICES = tuple(cap.devices_mod.devices())
META = torch.device("meta")  # shapes and dtypes without data: device mistakes show on a CPU-only grader


# ---------------------------------------------------------------------------------------------
# What a function may not use.
class Forbidden(NamedTuple):
    policy: Policy  # sent to the kernel: tripwires, watched C functions, blocked aten operators
    static: tuple[str, ...]  # dotted names the static scan refuses in the function's code


def forbid(attrs: list[str], extra: list[str] = (), aten: list[str] = (), static: list[str] = ()) -> Forbidden:
    """Tripwires for the dotted names `attrs`; `extra` C functions are only watched, never replaced;
    `aten` operators are blocked at the dispatcher; the static scan refuses all of them and `static`."""
    # Python packages named in `static` (scipy.signal) are also watched by the modules their code belongs to.
    modules = tuple(s for s in static if not s.startswith(("torch", "cnnlib", "numpy")))
    policy = Policy(tuple(attrs), tuple(extra), tuple(aten), modules)
    return Forbidden(policy, tuple(dict.fromkeys([*attrs, *extra, *static])))


def cnn(*names: str) -> list[str]:
    """cnnlib's own versions, on the package and on the module that defines them."""
    out = []
    for name in names:
        out.append(f"cnnlib.{name}")
        for mod in (cap.ops, cap.shapes, cap.training, cap.models):
            if name in vars(mod) and f"{mod.__name__}.{name}" not in out:
                out.append(f"{mod.__name__}.{name}")
    return out


_F, _NN = "torch.nn.functional", "torch.nn"
# Python routes to a convolution, and the C functions behind them (watched only).
CONV = [
    "torch.conv1d", "torch.conv2d", "torch.conv3d", f"{_F}.conv1d", f"{_F}.conv2d", f"{_F}.conv3d",
    "torch.convolution", "torch.conv_transpose1d", "torch.conv_transpose2d", "torch.conv_transpose3d",
    f"{_F}.conv_transpose1d", f"{_F}.conv_transpose2d", f"{_F}.conv_transpose3d",
    f"{_NN}.Conv1d", f"{_NN}.Conv2d", f"{_NN}.Conv3d", f"{_NN}.LazyConv2d", f"{_NN}.ConvTranspose2d",
    "torch.nn.grad.conv2d_input", "torch.nn.grad.conv2d_weight", "cnnlib._engine.conv2d",
]
# cnnlib's private engine behind its own convolution, and the C functions NumPy's and SciPy's
# correlations end in, so that a route the static scan cannot read (a name built at run time) meets a
# tripwire too.
CONV += ["cnnlib._engine._corr_flat", "cnnlib._engine._corr_padded", "cnnlib._engine._Conv2dFunction",
         "numpy._core.multiarray.correlate", "numpy._core.multiarray.correlate2", "scipy.signal._sigtools._convolve2d",
         "scipy.signal._sigtools._correlateND", "scipy.ndimage._nd_image.correlate",
         "scipy.ndimage._nd_image.correlate1d"]
CONV_C = ["torch._convolution"]
# Operators blocked at the dispatcher, as families matched against PyTorch's whole operator registry
# (every overload, every backend's variant: slow_conv_dilated3d, mkldnn::_convolution_pointwise...),
# so that an operator the lists never named is blocked too. "convert" ops are not convolutions.
_OPS_NS = r"^(?:aten|mkldnn|mkldnn_prepacked)::"
CONV_ATEN = [rf"re:{_OPS_NS}\w*conv(?!ert)"]
# im2col (F.unfold) copies every window into a column: a window view, not a convolution. Only a task
# whose text forbids it (A2's corr2d) bans it; Tensor.unfold and as_strided are never banned.
IM2COL = [f"{_F}.unfold", f"{_F}.fold", f"{_NN}.Unfold", f"{_NN}.Fold"]
IM2COL_C = ["torch._C._nn.im2col", "torch._C._nn.col2im"]
IM2COL_ATEN = [rf"re:{_OPS_NS}\w*(?:im2col|col2im)"]
POOL = [
    f"{_F}.max_pool1d", f"{_F}.max_pool2d", f"{_F}.max_pool3d", f"{_F}.avg_pool1d", f"{_F}.avg_pool2d",
    f"{_F}.avg_pool3d", f"{_F}.adaptive_avg_pool1d", f"{_F}.adaptive_avg_pool2d", f"{_F}.adaptive_max_pool1d",
    f"{_F}.adaptive_max_pool2d", f"{_F}.max_pool2d_with_indices", f"{_F}.lp_pool2d", "torch.max_pool1d",
    "torch.max_pool2d", "torch.avg_pool1d", "torch.adaptive_avg_pool1d", f"{_NN}.MaxPool2d", f"{_NN}.AvgPool2d",
    f"{_NN}.AdaptiveAvgPool2d", f"{_NN}.AdaptiveMaxPool2d", f"{_NN}.LPPool2d", "cnnlib._engine.pool2d",
]
POOL += ["cnnlib._engine._pool_chunk", "cnnlib._engine._pool_chunk_backward", "cnnlib._engine._Pool2dFunction"]
POOL_C = ["torch._C._nn.avg_pool2d", "torch._C._nn.adaptive_avg_pool2d", "torch._C._nn.max_pool2d_with_indices",
          "torch._C._nn.adaptive_max_pool2d"]
POOL_ATEN = [rf"re:{_OPS_NS}\w*pool"]
PAD = [f"{_F}.pad", "torch.constant_pad_nd", f"{_NN}.ZeroPad2d", f"{_NN}.ConstantPad2d", f"{_NN}.ReflectionPad2d",
       f"{_NN}.ReplicationPad2d"]
PAD_C = ["torch._C._nn.pad"]
PAD_ATEN = ["constant_pad_nd", "pad", "_pad_enum", "_pad_circular", "reflection_pad1d", "reflection_pad2d",
            "reflection_pad3d", "replication_pad1d", "replication_pad2d", "replication_pad3d"]
SOLVE = ["torch.linalg.lstsq", "torch.linalg.pinv", "torch.linalg.solve", "torch.linalg.inv", "torch.pinverse",
         "torch.inverse"]
SOLVE_ATEN = ["linalg_lstsq", "linalg_pinv", "linalg_solve", "linalg_solve_ex", "_linalg_solve_ex", "linalg_inv",
              "linalg_inv_ex", "pinverse", "inverse", "cholesky_solve", "triangular_solve",
              "linalg_solve_triangular"]
# Autograd, for a task whose text asks for a gradient written by hand (a backward pass): Tensor.backward
# ends in torch.autograd.backward, and torch.func's transforms are refused by the static scan.
AUTOGRAD = ["torch.autograd.backward", "torch.autograd.grad", "torch.autograd.functional.vjp",
            "torch.autograd.functional.jacobian", "torch.func.grad",
            "torch.func.vjp", "torch.func.jacrev", "torch.func.grad_and_value"]
AUTOGRAD_STATIC = ["torch.autograd", "torch.func", "functorch"]
# Routes the static scan refuses wherever the grader forbids a convolution, pooling or padding:
# PyTorch's raw operator namespaces and cnnlib's private engine (other names for the banned operators).
LOW_LEVEL = ["torch.ops", "torch._C", "cnnlib._engine", "torch.library"]
# The NumPy and SciPy versions of the operations, banned where the task's text names them. Window
# views (numpy.lib.stride_tricks) and FFTs are ways of writing the operation, not shortcuts.
NUMPY_CONV = ["numpy.convolve", "numpy.correlate", "scipy.signal", "scipy.ndimage"]
NUMPY_POOL = ["scipy.ndimage", "skimage.measure.block_reduce"]
NUMPY_PAD = ["numpy.pad"]
CONV_OPS = ("corr2d", "convolve2d", "conv2d", "corr2d_multi_in", "corr2d_multi_in_out",
            "corr2d_multi_in_out_1x1", "corr2d_padded", "conv_as_matrix", "Conv2D", "Conv2d")


class RemoteError(NamedTuple):
    """An exception the student's code raised, as it crossed: its type's name and message."""
    type_name: str
    message: str
    not_implemented: bool


class Run(NamedTuple):
    """One call of the student's code, as the runner reports it."""
    value: Any
    error: RemoteError | None
    where: str  # "line N: source" of the student's frame that raised, or ""
    shortcuts: list
    warned: list
    tampered: bool
    counts: Any = None  # a counted call's work, as sent (cnngrader.grading.behaviour reads it)

    @classmethod
    def from_dict(cls, d: dict) -> "Run":
        e = d.get("error")
        error = None if e is None else RemoteError(str(e.get("type", "?")), str(e.get("message", "")),
                                                   e.get("not_implemented") is True)
        return cls(d.get("value"), error, str(d.get("where", "")), [str(s) for s in d.get("shortcuts", [])],
                   [str(w) for w in d.get("warned", [])], d.get("tampered") is True, d.get("counts"))


# ---------------------------------------------------------------------------------------------
# Formatting and comparison in plain Python.
def fmt_num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, float) and cap.isfinite(v) and v == int(v) and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.4g}"


def fmt(t: Any) -> str:
    """A small tensor as rows of numbers, one line per row (a 3-D tensor: one block per channel)."""
    if type(t) is not cap.Tensor and type(t) is not cap.Parameter:
        return repr(t)
    if cap.numel(t) == 0:
        return f"<an empty tensor of shape {tuple(cap.size(t))}>"
    data = cap.tolist(cap.detach(cap.to(t, device=cap.CPU)))
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
            return f"<tensor of shape {tuple(cap.size(t))}>"
        return "\n".join(f"  channel {c}:\n" + rows2d(m) for c, m in enumerate(data))
    return rows2d(data)


def flat(x: Any) -> list:
    if isinstance(x, list):
        out = []
        for v in x:
            out.extend(flat(v))
        return out
    return [x]


def finite(v: Any) -> bool:
    """Whether the number v (int or float) is finite; an int too large for a float is not."""
    try:
        return cap.isfinite(v)
    except OverflowError:
        return False


def off(got: Any, expected: Any, rtol: float = 0.0, atol: float = 0.0) -> bool:
    """Whether the number got misses expected by more than atol + rtol * |expected|: every numeric
    comparison of a check goes through here. NaN compares False with everything, so a bare
    `abs(got - expected) > tol` would let a NaN pass; here a non-finite got is off, unless expected
    is the same non-finite value (NaN for NaN, the same infinity)."""
    if not finite(expected):
        return not (got == expected or (isinstance(got, float) and isinstance(expected, float)
                                        and cap.isnan(got) and cap.isnan(expected)))
    return not finite(got) or abs(got - expected) > atol + rtol * abs(expected)


def not_finite(v: Any) -> str:
    """" (not a finite number)" when v is a number that is not finite, else ""; for reasons."""
    return " (not a finite number)" if type(v) in (int, float) and not finite(v) else ""


def where_differs(got: list, expected: list, tol: Tol) -> tuple[int, float, float] | None:
    """The first index where got and expected differ beyond tol (off), or None."""
    for i, (g, e) in enumerate(zip(got, expected)):
        if off(g, e, tol.rtol, tol.atol):
            return i, g, e
    return None


def dev(d: Any) -> str:
    return str(d)


def dt(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def shape(t: Any) -> tuple:
    return tuple(cap.size(t))


# ---------------------------------------------------------------------------------------------
# Cases.
class Case(NamedTuple):
    args: tuple  # tensors are CPU float64; converted per device and dtype
    kwargs: dict
    desc: str  # "X (4, 4) and K (2, 2)"
    show: tuple  # (name, tensor or value) printed for a failing case
    expected: Any  # CPU float64 tensor, or a plain value
    size: int
    seconds: float = 0.0  # the reference's time on this case, here


# One call of a student's function may take CALL_MULTIPLE times the reference's time on that case, and at
# least CALL_FLOOR seconds (a Python loop over a small case, on a loaded machine, takes well under a second).
CALL_MULTIPLE = 200.0
CALL_FLOOR = 5.0


def call_limit(cases: list[Case]) -> float:
    """The seconds one call may take on any of `cases` (the slowest reference sets it)."""
    return max([CALL_FLOOR] + [CALL_MULTIPLE * case.seconds for case in cases])


def timed(fn: Callable, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """fn(*args, **kwargs) and the seconds it took here: a reference's time, for a check's call limit."""
    start = perf_counter()
    out = fn(*args, **kwargs)
    return out, perf_counter() - start


def limit_for(seconds: float) -> float:
    """The seconds one request may take when the reference took `seconds` for the same work."""
    return max(CALL_FLOOR, CALL_MULTIPLE * seconds)


def gen(seed: int) -> torch.Generator:
    return cap.Generator().manual_seed(seed)


def data(shape: tuple, g: torch.Generator, integer: bool) -> torch.Tensor:
    """Small integers in [-3, 3] (checkable by hand) or values in [-1, 1) rounded to 2 decimals."""
    if integer:
        return cap.randint(-3, 4, shape, generator=g).to(cap.F64)
    return torch.round((cap.rand(shape, generator=g, dtype=cap.F64) * 2 - 1) * 100) / 100


def seed(base: int, secret: int | None) -> int:
    """The seed of a run: `base` itself without a secret, else a 63-bit mix of both."""
    if secret is None:
        return base
    digest = hashlib.sha256(f"{secret}:{base}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Draw:
    """Cases drawn from a seed: draw(secret) is the list for one run (cached per secret)."""

    def __init__(self, make: Callable[[int], list[Case]], base: int) -> None:
        self._make, self._base, self._cache = make, base, {}

    def __call__(self, secret: int | None) -> list[Case]:
        if secret not in self._cache:
            self._cache = {secret: self._make(seed(self._base, secret))}  # one run at a time
        return self._cache[secret]


def tensor_cases(ref: Callable, specs: list, build: Callable, base: int) -> Draw:
    """specs: tuples handed to build(spec, g, integer) -> (args, kwargs, desc, show); ref fills expected.

    Cases alternate small integers and two-decimal values, and are sorted smallest first."""

    def make(s: int) -> list[Case]:
        g = gen(s)
        cases = []
        for k, spec in enumerate(specs):
            integer = k % 2 == 0
            args, kwargs, desc, show = build(spec, g, integer)
            start = perf_counter()
            expected = ref(*args, **kwargs)
            seconds = perf_counter() - start
            size = sum(cap.numel(a) for a in args if type(a) is cap.Tensor)
            cases.append(Case(tuple(args), dict(kwargs), desc, tuple(show), cap.detach(expected), size, seconds))
        cases.sort(key=lambda case: case.size)
        return cases

    return Draw(make, base)


def value_cases(fn_name: str, ref: Callable, calls: list[tuple[tuple, dict]]) -> list[Case]:
    """Cases of a function of plain values: (args, kwargs) pairs, described as the call itself."""
    out = []
    for args, kwargs in calls:
        shown = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
        start = perf_counter()
        expected = ref(*args, **kwargs)
        out.append(Case(args, kwargs, f"{fn_name}({shown})", (), expected, 0, perf_counter() - start))
    return out


# ---------------------------------------------------------------------------------------------
# Verdicts.
def fail(reason: str) -> None:
    """Raise the verdict."""
    raise GradingError(reason)


def type_name(v: Any) -> str:
    """The type's name of a value the student's code returned (an Opaque carries its own)."""
    return v.type_name if isinstance(v, Opaque) else type(v).__name__


def shortcut_reason(name: str, run: Run) -> str | None:
    if run.shortcuts:
        used = ", ".join(dict.fromkeys(run.shortcuts))
        return (f"{name} called {used} while the hidden tests ran: the assignment asks you to write {name} "
                f"yourself, without that shortcut.")
    if run.tampered:
        return (f"{name} changed the grader's guard while it ran (the interpreter's profile hook, sys.setprofile, "
                f"or the dispatcher's block of forbidden operators); the grader needs them.")
    return None


def require_clean(name: str, run: Run, where: str, label: str | None = None, hint: str = "") -> None:
    """Fail when the run used a shortcut (reason + hint), then when it raised (as `label`, default name)."""
    reason = shortcut_reason(name, run)
    if reason:
        fail(reason + hint)
    if run.error is not None:
        fail(error_reason(label or name, run, where))


def route_and_values(route: str | None, values: str | None) -> str | None:
    """The static scan's finding and the value checks' reason together, so that a student sees the bug
    as well as the refused route; a value reason that is the same shortcut, seen at run time, is not
    repeated."""
    if route is None or values is None:
        return route or values
    if " called " in values.split(":", 1)[0] and "while the hidden tests ran" in values:
        return route
    return f"{route}\nThe value checks also failed: {values}"


def error_reason(name: str, run: Run, where: str) -> str:
    e = run.error
    if e.not_implemented:
        return f"{name} raised NotImplementedError {where}: replace `raise NotImplementedError()` with your code."
    at = f" (at {run.where})" if run.where else ""
    return f"{name} raised {e.type_name}: {e.message} {where}{at}"


def check_tensor_out(name: str, got: Any, expected: torch.Tensor, dtype: torch.dtype, device: Any,
                      where: str) -> str | None:
    """Type, shape, dtype, device, then values; None when got matches."""
    if type(got) is not cap.Tensor and type(got) is not cap.Parameter:
        if type_name(got) == "ndarray":
            return (f"{name} returned an ndarray (NumPy) {where}; expected a torch.Tensor on the input's device: "
                    f"stay in torch, or convert back with torch.from_numpy(...).to(X.device)")
        return f"{name} returned {type_name(got)} {where}; expected a torch.Tensor"
    if shape(got) != shape(expected):
        return f"{name} returned shape {shape(got)} {where}; expected shape {shape(expected)}"
    got_dtype = cap.dtype_of(got)
    if got_dtype != dtype:
        return (f"{name} returned dtype {dt(got_dtype)} {where}; expected {dt(dtype)}, the input's dtype "
                f"(create new tensors with the input's dtype, e.g. X.new_zeros(...))")
    got_device = cap.device_of(got)
    if got_device != device:
        return (f"{name} returned a tensor on {got_device} {where}; expected it on {device}, the input's device "
                f"(create new tensors on the input's device, e.g. X.new_zeros(...) or device=X.device)")
    tol = TOLERANCES.get(dtype, TOLERANCES[torch.float64])
    g = flat(cap.tolist(cap.detach(cap.to(got, device=cap.CPU, dtype=cap.F64))))
    e = flat(cap.tolist(cap.to(expected, device=cap.CPU, dtype=cap.F64)))
    bad = where_differs(g, e, tol)
    if bad is not None:
        i, gv, ev = bad
        if not finite(gv) and finite(ev):
            return (f"{name} returned {gv!r} {where}: element {i} (flattened) is {gv!r}{not_finite(gv)}, "
                    f"expected {ev:.10g}")
        return (f"{name} returned wrong values {where}: element {i} (flattened) is {gv:.10g}, expected "
                f"{ev:.10g}, off by {abs(gv - ev):.3g} (tolerance {dt(dtype)}: rtol={tol.rtol:g}, atol={tol.atol:g})")
    return None


def example(case: Case, expected: Any, got: Any) -> str:
    parts = ["\nThe smallest failing case:"]
    for label, value in case.show:
        parts.append(f"{label} =\n{fmt(value)}" if type(value) is cap.Tensor else f"{label} = {value!r}")
    parts.append(f"expected =\n{fmt(expected)}")
    if got is not None:
        parts.append(f"got =\n{fmt(got)}")
    return "\n".join(parts)


def combo_where(case: Case, device: Any, dtype: torch.dtype) -> str:
    return f"for {case.desc} on {dev(device)} {dt(dtype)}"


def run_tensor_checks(name: str, runner: Any, cases: list[Case], forbidden: Forbidden) -> None:
    """Every case on every device and dtype; report the smallest failing case of the first failing combination.
    The calls go to the kernel in one batch; a call that did not return fails the check unless an earlier
    one already did."""
    require_callable(name, runner)
    runner.limit = call_limit(cases)
    combos = [(device, dtype) for device in DEVICES for dtype in DTYPES]
    calls = [([cap.to(a, device=device, dtype=dtype, copy=True) if type(a) is cap.Tensor else a for a in case.args],
              case.kwargs) for device, dtype in combos for case in cases]
    runs, gone = runner.call_batch(name, forbidden, calls)
    first = None  # (reason, case, got, warnings)
    failing_combos = []
    for k, (device, dtype) in enumerate(combos):
        for j, case in enumerate(cases):
            if k * len(cases) + j >= len(runs):  # it did not return: no later call ran
                if first is None:
                    fail(gone or f"{name} could not be checked")
                break
            run = runs[k * len(cases) + j]
            reason = shortcut_reason(name, run)
            if reason:
                fail(reason)  # at once; an error, below, is only this combination's reason
            where = combo_where(case, device, dtype)
            got = run.value if run.error is None else None
            if run.error is not None:
                reason = error_reason(name, run, where)
            else:
                reason = check_tensor_out(name, got, case.expected, dtype, device, where)
            if reason:
                failing_combos.append(f"{dev(device)} {dt(dtype)}")
                if first is None:
                    shown = got if type(got) is cap.Tensor and cap.dim(got) <= 3 and cap.numel(got) <= 200 else None
                    first = (reason, case, shown, run.warned)
                break
    if first is None:
        reason = meta_reason(name, runner, cases, forbidden)
        if reason:
            fail(reason)
    if first is not None:
        reason, case, got, warned = first
        msg = reason
        if len(failing_combos) > 1:
            msg += f"\nIt fails on: {', '.join(failing_combos)}."
        msg += example(case, case.expected, got)
        if warned:
            msg += "\nYour code emitted warnings: " + "; ".join(dict.fromkeys(warned))
        fail(msg)


_DEVICE_ADVICE = ("a tensor made without the input's device lands on the CPU (torch.zeros(...) or torch.tensor(...) "
                  "without device=): make new tensors with X.new_zeros(...), or with device=X.device")


def meta_reason(name: str, runner: Any, cases: list[Case], forbidden: Forbidden) -> str | None:
    """Each case once more with float32 inputs on the meta device, where a tensor made on the CPU shows as on
    a GPU: the output must be on meta with the expected shape and dtype, and no operator may meet a meta
    tensor and a CPU one. An error without such a meeting needs data (.item(), NumPy, a branch on a value):
    inconclusive, the values were checked on the real devices. Meta operators are slow (many are written in
    Python), so three cases run: the smallest, a middle one and the largest."""
    picked = [cases[k] for k in sorted({0, len(cases) // 2, len(cases) - 1})] if cases else []
    calls = [([cap.to(a, device=META, dtype=torch.float32) if type(a) is cap.Tensor else a for a in case.args],
              case.kwargs) for case in picked]
    runs, gone = runner.call_meta_batch(name, forbidden, calls)
    for case, (run, mixed) in zip(picked, runs):
        where = f"for {case.desc} with float32 inputs on the meta device (shapes and dtypes, no data)"
        reason = meta_verdict(name, run, mixed, where, shape(case.expected))
        if reason:
            return reason
    return gone


def meta_verdict(name: str, run: Run, mixed: list, where: str, expected_shape: tuple) -> str | None:
    """What one run on the meta device shows: a shortcut, a meta tensor meeting one on another device, or a
    tensor result off meta, of another shape or not float32. An error, or a result that is not a tensor,
    is inconclusive (None): it needs data, and the real devices decide."""
    reason = shortcut_reason(name, run)
    if reason:
        return reason
    if mixed:
        at = f" (at {run.where})" if run.where else ""
        return (f"{name} mixed devices {where}: {mixed[0]} got a tensor on {mixed[1]} together with the input's"
                f"{at}, which fails on a GPU; {_DEVICE_ADVICE}")
    got = run.value
    if run.error is not None or (type(got) is not cap.Tensor and type(got) is not cap.Parameter):
        return None
    if cap.device_of(got) != META:
        return f"{name} returned a tensor on {cap.device_of(got)} {where}; expected it on meta: {_DEVICE_ADVICE}"
    if shape(got) != tuple(expected_shape) or cap.dtype_of(got) != torch.float32:
        return (f"{name} returned shape {shape(got)} and dtype {dt(cap.dtype_of(got))} {where}; expected "
                f"{tuple(expected_shape)} and float32")
    return None


def require_callable(name: str, runner: Any) -> None:
    found = runner.describe(name)
    if found["kind"] == "missing":
        fail(f"{name} is not defined: define {name} in the cell above, and run that cell.")
    if found["kind"] == "other":
        fail(f"{name} is {found['type']}, not a function: define {name} in the cell above.")


Check = Callable[[str, Any], None]  # check(name, runner): returns, or raises GradingError


def cases_of(cases: Draw | list[Case], runner: Any) -> list[Case]:
    return cases(runner.secret) if isinstance(cases, Draw) else cases


def simple_check(cases: Draw, forbidden: Forbidden) -> Check:
    """A tensor function called on each case's arguments, on every device and dtype."""
    return lambda name, runner: run_tensor_checks(name, runner, cases_of(cases, runner), forbidden)


def value_check(cases: list[Case], forbidden: Forbidden, accept: Callable[[Any, Any], str | None]) -> Check:
    """A function of plain values; accept(got, expected) is None when right, else "" or a hint."""

    def check(name: str, runner: Any) -> None:
        require_callable(name, runner)
        drawn = cases_of(cases, runner)
        runner.limit = call_limit(drawn)
        runs, gone = runner.call_batch(name, forbidden, [(list(case.args), dict(case.kwargs)) for case in drawn])
        for case, run in zip(drawn, runs):
            require_clean(name, run, f"in {case.desc}")
            problem = accept(run.value, case.expected)
            if problem is not None:
                shown = repr(run.value) if not isinstance(run.value, Opaque) else f"a {run.value.type_name}"
                fail(f"{case.desc} returned {shown}; expected {case.expected!r}{problem}")
        if gone:  # the calls before it were right
            fail(gone)

    return check


def is_int(v: Any) -> bool:
    return type(v) is int


def accept_int(got: Any, expected: Any) -> str | None:
    if not is_int(got):
        return f" (an int, got {type_name(got)})"
    return None if got == expected else ""


def accept_int_or_pair(got: Any, expected: Any) -> str | None:
    if is_int(expected):
        return accept_int(got, expected)
    if not isinstance(got, (tuple, list)) or len(got) != 2 or not all(is_int(v) for v in got):
        return " (a pair of ints, since one of the arguments was a pair)"
    return None if tuple(got) == tuple(expected) else ""


def is_number(v: Any) -> bool:
    return type(v) in (int, float)


# ---------------------------------------------------------------------------------------------
# Cases of plain values drawn per run: fixed edge cases, then random ones from the run's seed.
def randint(g: torch.Generator, low: int, high: int) -> int:
    """An int in [low, high], drawn from g."""
    return int(cap.randint(low, high + 1, (1,), generator=g).tolist()[0])


def value_draw(fn_name: str, ref: Callable, fixed: list[tuple[tuple, dict]],
               random: Callable[[torch.Generator], list[tuple[tuple, dict]]], base: int) -> Draw:
    """value_cases of the `fixed` calls (edge cases, the same every run) and of random(g)'s calls,
    g seeded from `base` and the run's secret, so a notebook cannot hard-code the graded answers."""
    return Draw(lambda s: value_cases(fn_name, ref, list(fixed) + list(random(gen(s)))), base)


# ---------------------------------------------------------------------------------------------
# Conceptual questions: a value in the notebook (an int, a tuple of ints...), compared with the
# expected answer, which lives in the secret file assignments/<id>/answers.toml, never in checks.py.
class NotChecked(GradingError):
    """The answer has the right form, but its value cannot be checked here: the answers file is absent
    (as in a student's copy of the checks). The value is checked when graded. A pre-submission check
    reports this as "checked when graded"; in a graded run (where answers.toml is present) it never occurs."""


ANSWERS_FILE = "answers.toml"


def answers(checks_file: str) -> dict[str, Any] | None:
    """The answers in answers.toml next to `checks_file` (pass __file__), arrays as tuples; None when
    that file is absent."""
    import tomllib  # these two could be at the top: stdlib, cheap, no cycle
    from pathlib import Path

    path = Path(checks_file).with_name(ANSWERS_FILE)
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        raw = tomllib.load(f).get("answers", {})

    def tup(v: Any) -> Any:
        return tuple(tup(x) for x in v) if isinstance(v, list) else v

    return {k: tup(v) for k, v in raw.items()}


def describe_form(form: Any) -> str:
    """A form as words: 0 -> "an int", 0.0 -> "a number", (0, 0) -> "a tuple of 2 ints"."""
    if type(form) is int:
        return "an int"
    if type(form) is float:
        return "a number"
    if isinstance(form, tuple):
        if form and all(type(v) is int for v in form):
            return f"a tuple of {len(form)} ints"
        if form and all(isinstance(v, tuple) and v == form[0] for v in form):
            return f"a tuple of {len(form)} " + describe_form(form[0]).replace("a tuple", "tuples", 1)
        return f"a tuple of {len(form)}: (" + ", ".join(describe_form(v) for v in form) + ")"
    raise TypeError(f"an answer's form is an int, a float or a tuple of them, not {form!r}")


def _has_form(got: Any, form: Any) -> bool:
    if type(form) is int:
        return type(got) is int
    if type(form) is float:
        return type(got) in (int, float) and finite(got)
    return (isinstance(got, (tuple, list)) and len(got) == len(form)
            and all(_has_form(g, f) for g, f in zip(got, form)))


def _same(got: Any, expected: Any) -> bool:
    if isinstance(expected, tuple):
        return all(_same(g, e) for g, e in zip(got, expected))
    if type(expected) is float:
        return not off(got, expected, atol=1e-6 * max(1.0, abs(expected)))
    return got == expected


def answer_check(key: str, known: dict[str, Any] | None, form: Any) -> Check:
    """The check of a conceptual question: the notebook's `name` must be a value of `form` (a template
    such as 0, 0.0 or (0, 0)) equal to known[key]. With known None (no answers file) only the form is
    checked, then NotChecked is raised."""
    words = describe_form(form)
    if known is not None and key not in known:
        raise KeyError(f"{ANSWERS_FILE} has no answer {key!r}")

    def check(name: str, runner: Any) -> None:
        found = runner.value(name)
        if found["kind"] == "missing":
            fail(f"{name} is not defined: set {name} = <your answer> in the cell above, and run that cell.")
        got = found["value"]
        if isinstance(got, Opaque) or not _has_form(got, form):
            shown = (f"a {got.type_name}" if isinstance(got, Opaque) else "a torch.Tensor"
                     if type(got) in (cap.Tensor, cap.Parameter) else repr(got))
            fail(f"{name} is {shown}; the answer is {words}.")
        if known is None:
            raise NotChecked(f"{name} has the right form ({words}); its value is checked when graded.")
        if not _same(got, known[key]):
            fail(f"{name} = {got!r} is not the right answer. Work it out again from the chapter; "
                 f"the answer is {words}.")

    return check

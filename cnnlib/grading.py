"""The in-kernel grader behind the assignments' hidden tests.

A hidden test cell is two lines::

    from cnnlib import grading
    grading.check("corr2d", corr2d)

`check` runs the student's function on seeded cases (small shapes and edge cases: a 1x1 kernel,
a kernel as large as the input, non-square shapes, stride larger than the kernel, padding on one
axis only) on every device of cnnlib.devices(), in float32 and float64, and compares it with
cnnlib's reference. For each case it checks the output's type, shape, dtype and device before
its values, and raises GradingError whose message is the reason, with the smallest failing case.

Defences, all set up when this module is imported (the assignments' locked first cell does that,
before any student code runs):
- the references, their expected outputs on every case, and the helpers the comparison uses are
  computed or captured here, so rebinding cnnlib.corr2d, torch.allclose or torch.Tensor methods
  later changes nothing; values are compared in plain Python;
- this module refuses attribute assignment and deletion, its public names are read-only
  descriptors of its class, and the cnnlib package refuses to rebind its `grading` attribute;
- while a student function runs, the ops it must not use (cnnlib's version, torch's conv and
  pooling functions, ...) are replaced by tripwires and a profile hook watches for calls to them
  through aliases; any recorded call fails the test, even when the student caught the exception;
- warnings and stderr output of correct code are captured, so they never zero a cell;
- on failure a one-line reason also goes straight to file descriptor 2 (nbgrader scores a cell
  with stderr output 0 even when the traceback display was disabled).

It is an in-kernel grader: it raises the bar, it is not a sandbox.
"""
from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import sys
import traceback
import types
import warnings
from typing import Any, Callable, Mapping, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

import cnnlib
import cnnlib.devices
import cnnlib.layers
import cnnlib.models
import cnnlib.ops
import cnnlib.shapes
import cnnlib.train

# The submodules themselves (cnnlib.train and cnnlib.devices are also the names of functions).
_devices_mod = sys.modules["cnnlib.devices"]
_layers = sys.modules["cnnlib.layers"]
_models = sys.modules["cnnlib.models"]
_ops = sys.modules["cnnlib.ops"]
_shapes = sys.modules["cnnlib.shapes"]
_train = sys.modules["cnnlib.train"]


class GradingError(AssertionError):
    """A hidden test failed; the message says why, with one failing case small enough to check by hand."""


class Tol(NamedTuple):
    rtol: float
    atol: float


# |got - expected| <= atol + rtol * |expected|, elementwise; inputs are O(1), so atol is on that scale.
TOLERANCES: Mapping[torch.dtype, Tol] = types.MappingProxyType({
    torch.float32: Tol(rtol=1e-5, atol=1e-5),
    torch.float64: Tol(rtol=1e-10, atol=1e-10),
})
DTYPES = (torch.float32, torch.float64)

# ---------------------------------------------------------------------------------------------
# Everything the grader relies on, captured now: later rebinding by student code changes nothing.
# Values are compared in plain Python, so torch.allclose and friends are not used at all.
_Tensor = torch.Tensor
_Parameter = nn.Parameter
_Module = nn.Module
_TB = torch._C.TensorBase
_dtype_of = _TB.__dict__["dtype"].__get__
_device_of = _TB.__dict__["device"].__get__
_size = _TB.size
_dim = _TB.dim
_tolist = _TB.tolist
_detach = _TB.detach
_to = _TB.to
_requires_grad_of = _TB.__dict__["requires_grad"].__get__
_grad_of = _TB.__dict__["grad"].__get__
_backward = torch.Tensor.backward
_numel = _TB.numel
_module_to = nn.Module.to
_module_train = nn.Module.train
_module_parameters = nn.Module.parameters
_module_modules = nn.Module.modules
_module_children = nn.Module.children
_module_training = lambda m: object.__getattribute__(m, "training")  # noqa: E731
_no_grad = torch.no_grad
_is_grad_enabled = torch.is_grad_enabled
_fork_rng = torch.random.fork_rng
_manual_seed = torch.manual_seed
_Generator = torch.Generator
_randn = torch.randn
_randint = torch.randint
_rand = torch.rand
_tensor = torch.tensor
_eigvalsh = torch.linalg.eigvalsh
_stack = torch.stack
_deepcopy = copy.deepcopy
_isfinite = math.isfinite
_isnan = math.isnan
_fsum = math.fsum
_sqrt = math.sqrt
_getprofile = sys.getprofile
_setprofile = sys.setprofile
_catch_warnings = warnings.catch_warnings
_simplefilter = warnings.simplefilter
_redirect_stderr = contextlib.redirect_stderr
_redirect_stdout = contextlib.redirect_stdout
_StringIO = io.StringIO
_extract_tb = traceback.extract_tb
_os_write = os.write
_mod_setattr = types.ModuleType.__setattr__
_mod_delattr = types.ModuleType.__delattr__
_nn = types.SimpleNamespace(**{k: getattr(nn, k) for k in (
    "Conv2d", "Sigmoid", "AvgPool2d", "Flatten", "Linear", "Sequential", "ReLU", "CrossEntropyLoss")})
_SGD = torch.optim.SGD
_CPU = torch.device("cpu")
_F64 = torch.float64
try:
    _FD2 = os.dup(2)  # the kernel's stderr as it is now; closing or redirecting fd 2 later does not matter
except OSError:  # pragma: no cover - no stderr at all
    _FD2 = -1

_DEVICES = tuple(_devices_mod.devices())

_REF = {
    "corr2d": _ops.corr2d,
    "convolve2d": _ops.convolve2d,
    "conv2d": _ops.conv2d,
    "corr2d_multi_in": _ops.corr2d_multi_in,
    "corr2d_multi_in_out": _ops.corr2d_multi_in_out,
    "corr2d_multi_in_out_1x1": _ops.corr2d_multi_in_out_1x1,
    "pool2d": _ops.pool2d,
    "global_avg_pool2d": _ops.global_avg_pool2d,
    "pad2d": _ops.pad2d,
    "corr2d_padded": _ops.corr2d_padded,
    "conv_as_matrix": _ops.conv_as_matrix,
    "conv_output_shape": _shapes.conv_output_shape,
    "receptive_field": _shapes.receptive_field,
    "fc_param_count": _shapes.fc_param_count,
    "conv_param_count": _shapes.conv_param_count,
    "learn_kernel": _train.learn_kernel,
    "lenet": _models.lenet,
    "evaluate_accuracy": _train.evaluate_accuracy,
    "train_epoch": _train.train_epoch,
}


# ---------------------------------------------------------------------------------------------
# Shortcut guards.
class _Forbidden(NamedTuple):
    attrs: tuple  # (owner, name, label): attributes replaced by tripwires while the student runs
    codes: dict  # code object -> label: Python functions, caught through any alias
    builtins: dict  # id(builtin) -> label: C functions, caught through any alias
    keep: tuple  # the builtins themselves, so their ids stay theirs


def _label_of(owner: Any, name: str) -> str:
    prefix = {id(torch): "torch", id(F): "torch.nn.functional", id(nn): "torch.nn", id(cnnlib): "cnnlib"}
    return f"{prefix.get(id(owner), getattr(owner, '__name__', '?'))}.{name}"


def _forbid(attrs: list[tuple[Any, str]], extra: list[tuple[Any, str]] = ()) -> _Forbidden:
    """Tripwires for `attrs` (module, name); `extra` C functions are only watched, never replaced."""
    entries, codes, builtins, keep = [], {}, {}, []
    for owner, name, replace in [(o, n, True) for o, n in attrs] + [(o, n, False) for o, n in extra]:
        obj = getattr(owner, name, None)
        if obj is None:
            continue
        label = _label_of(owner, name)
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
    return _Forbidden(tuple(entries), codes, builtins, tuple(keep))


def _cnn(*names: str) -> list[tuple[Any, str]]:
    """cnnlib's own versions, on the package and on the module that defines them."""
    out = []
    for name in names:
        out.append((cnnlib, name))
        for mod in (_ops, _shapes, _train, _models):
            if name in vars(mod):
                out.append((mod, name))
    return out


_CONV = [
    (torch, "conv2d"), (F, "conv2d"), (torch, "conv1d"), (F, "conv1d"), (torch, "conv3d"), (F, "conv3d"),
    (torch, "convolution"), (torch, "conv_transpose2d"), (F, "conv_transpose2d"), (F, "unfold"), (F, "fold"),
    (nn, "Conv2d"), (nn, "Conv1d"), (nn, "LazyConv2d"), (nn, "Unfold"),
]
_CONV_C = [(torch, "_convolution"), (torch._C._nn, "im2col"), (torch._C._nn, "col2im")]
_POOL = [
    (F, "max_pool2d"), (F, "avg_pool2d"), (F, "adaptive_avg_pool2d"), (F, "adaptive_max_pool2d"),
    (F, "max_pool2d_with_indices"), (F, "lp_pool2d"), (torch, "max_pool2d"), (torch, "avg_pool1d"),
    (torch, "adaptive_avg_pool1d"), (nn, "MaxPool2d"), (nn, "AvgPool2d"), (nn, "AdaptiveAvgPool2d"),
    (nn, "AdaptiveMaxPool2d"), (nn, "LPPool2d"),
]
_POOL_C = [
    (torch._C._nn, "avg_pool2d"), (torch._C._nn, "adaptive_avg_pool2d"),
    (torch._C._nn, "max_pool2d_with_indices"), (torch._C._nn, "adaptive_max_pool2d"),
]
_PAD = [(F, "pad"), (torch, "constant_pad_nd"), (nn, "ZeroPad2d"), (nn, "ConstantPad2d"), (nn, "ReflectionPad2d")]
_PAD_C = [(torch._C._nn, "pad")]
_SOLVE = [
    (torch.linalg, "lstsq"), (torch.linalg, "pinv"), (torch.linalg, "solve"), (torch.linalg, "inv"),
    (torch, "pinverse"), (torch, "inverse"),
]
_CONV_OPS = ("corr2d", "convolve2d", "conv2d", "corr2d_multi_in", "corr2d_multi_in_out",
             "corr2d_multi_in_out_1x1", "corr2d_padded", "conv_as_matrix", "Conv2D", "Conv2d")

_FORBID = {
    "fc_param_count": _forbid(_cnn("fc_param_count")),
    "conv_param_count": _forbid(_cnn("conv_param_count")),
    "conv_as_matrix": _forbid(_cnn(*_CONV_OPS) + _CONV, _CONV_C),
    "corr2d": _forbid(_cnn(*_CONV_OPS) + _CONV, _CONV_C),
    "Conv2D": _forbid(_cnn(*_CONV_OPS) + _CONV, _CONV_C),
    "convolve2d": _forbid(_cnn(*_CONV_OPS) + _CONV, _CONV_C),
    "learn_kernel": _forbid(_cnn("learn_kernel") + _SOLVE),
    "conv_output_shape": _forbid(_cnn("conv_output_shape")),
    "pad2d": _forbid(_cnn("pad2d", "corr2d_padded", "conv2d") + _PAD + _CONV, _PAD_C + _CONV_C),
    "corr2d_padded": _forbid(_cnn("corr2d_padded", "conv2d", "Conv2d") + _CONV, _CONV_C),
    "receptive_field": _forbid(_cnn("receptive_field")),
    "corr2d_multi_in": _forbid(_cnn(*_CONV_OPS[1:]) + _CONV, _CONV_C),
    "corr2d_multi_in_out": _forbid(_cnn(*_CONV_OPS[1:]) + _CONV, _CONV_C),
    "corr2d_multi_in_out_1x1": _forbid(_cnn(*_CONV_OPS[1:]) + _CONV, _CONV_C),
    "pool2d": _forbid(_cnn("pool2d", "global_avg_pool2d", "MaxPool2d", "AvgPool2d") + _POOL + _CONV, _POOL_C + _CONV_C),
    "global_avg_pool2d": _forbid(_cnn("pool2d", "global_avg_pool2d", "MaxPool2d", "AvgPool2d") + _POOL, _POOL_C),
    "lenet": _forbid(_cnn("lenet")),
    "evaluate_accuracy": _forbid(_cnn("evaluate_accuracy", "train_epoch", "train")),
    "train_epoch": _forbid(_cnn("evaluate_accuracy", "train_epoch", "train") + [(_train, "_epoch")]),
}


class _Tripwire:
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


class _Run(NamedTuple):
    value: Any
    error: BaseException | None
    where: str  # "line N: source" of the student's frame that raised, or ""
    shortcuts: list
    warned: list
    tampered: bool


def _invoke(forbidden: _Forbidden, thunk: Callable[[], Any]) -> _Run:
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
    previous = _getprofile()
    buffer = _StringIO()
    tampered = False
    with _catch_warnings(record=True) as warned, _redirect_stderr(buffer), _redirect_stdout(buffer):
        _simplefilter("always")
        try:
            for owner, name, label in forbidden.attrs:
                saved.append((owner, name, owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name)))
                _set(owner, name, _Tripwire(label, calls))
            # Under a profiler or debugger, its hook stays (cProfile's cannot be restored by setprofile);
            # the tripwires still catch calls by name.
            watch = previous is None
            if watch:
                _setprofile(hook)
            try:
                value = thunk()
            finally:
                if watch:
                    tampered = _getprofile() is not hook
                    _setprofile(None)
        except BaseException as e:  # noqa: BLE001 - a student's error is a verdict, not a crash
            if isinstance(e, KeyboardInterrupt):
                raise
            error = e
            frames = [f for f in _extract_tb(e.__traceback__) if "site-packages" not in f.filename
                      and not f.filename.endswith(("cnnlib/grading.py", "cnnlib\\grading.py"))]
            if frames:
                where = f"line {frames[-1].lineno}: {(frames[-1].line or '').strip()}"
        finally:
            for owner, name, obj in reversed(saved):
                _set(owner, name, obj)
    return _Run(value, error, where, calls, [f"{w.category.__name__}: {w.message}" for w in warned], tampered)


def _set(owner: Any, name: str, value: Any) -> None:
    if isinstance(owner, types.ModuleType):
        _mod_setattr(owner, name, value)
    else:
        setattr(owner, name, value)


# ---------------------------------------------------------------------------------------------
# Formatting and comparison in plain Python.
def _fmt_num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, float) and _isfinite(v) and v == int(v) and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.4g}"


def _fmt(t: Any) -> str:
    """A small tensor as rows of numbers, one line per row (a 3-D tensor: one block per channel)."""
    if type(t) is not _Tensor and type(t) is not _Parameter:
        return repr(t)
    data = _tolist(_detach(_to(t, device=_CPU)))
    if not isinstance(data, list):
        return _fmt_num(data)
    if not data or not isinstance(data[0], list):
        return "[" + ", ".join(_fmt_num(v) for v in data) + "]"

    def rows2d(m):
        cells = [[_fmt_num(v) for v in row] for row in m]
        width = max((len(c) for row in cells for c in row), default=1)
        return "\n".join("  [" + " ".join(c.rjust(width) for c in row) + "]" for row in cells)

    if isinstance(data[0][0], list):  # 3-D: channel blocks; deeper tensors are never printed
        if data[0][0] and isinstance(data[0][0][0], list):
            return f"<tensor of shape {tuple(_size(t))}>"
        return "\n".join(f"  channel {c}:\n" + rows2d(m) for c, m in enumerate(data))
    return rows2d(data)


def _flat(x: Any) -> list:
    if isinstance(x, list):
        out = []
        for v in x:
            out.extend(_flat(v))
        return out
    return [x]


def _where_differs(got: list, expected: list, tol: Tol) -> tuple[int, float, float] | None:
    """The first index where got and expected differ beyond tol, or None."""
    for i, (g, e) in enumerate(zip(got, expected)):
        if _isnan(e) or _isnan(g):
            if _isnan(e) and _isnan(g):
                continue
            return i, g, e
        if g == e:
            continue  # equal infinities included
        if not (_isfinite(g) and _isfinite(e)) or abs(g - e) > tol.atol + tol.rtol * abs(e):
            return i, g, e
    return None


def _dev(d: Any) -> str:
    return str(d)


def _dt(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _shape(t: Any) -> tuple:
    return tuple(_size(t))


# ---------------------------------------------------------------------------------------------
# Cases.
class _Case(NamedTuple):
    args: tuple  # tensors are CPU float64; converted per device and dtype
    kwargs: dict
    desc: str  # "X (4, 4) and K (2, 2)"
    show: tuple  # (name, tensor or value) printed for a failing case
    expected: Any  # CPU float64 tensor, or a plain value
    size: int


def _gen(seed: int) -> torch.Generator:
    return _Generator().manual_seed(seed)


def _data(shape: tuple, g: torch.Generator, integer: bool) -> torch.Tensor:
    """Small integers in [-3, 3] (checkable by hand) or values in [-1, 1) rounded to 2 decimals."""
    if integer:
        return _randint(-3, 4, shape, generator=g).to(_F64)
    return torch.round((_rand(shape, generator=g, dtype=_F64) * 2 - 1) * 100) / 100


def _desc_shape(name: str, t: torch.Tensor) -> str:
    return f"{name} {_shape(t)}"


def _tensor_cases(fn_name: str, specs: list, build: Callable, seed: int) -> list[_Case]:
    """specs: tuples handed to build(spec, g, integer) -> (args, kwargs, desc, show); the reference fills expected."""
    g = _gen(seed)
    ref = _REF[fn_name]
    cases = []
    for k, spec in enumerate(specs):
        integer = k % 2 == 0
        args, kwargs, desc, show = build(spec, g, integer)
        expected = ref(*args, **kwargs)
        size = sum(_numel(a) for a in args if type(a) is _Tensor)
        cases.append(_Case(tuple(args), dict(kwargs), desc, tuple(show), _detach(expected), size))
    cases.sort(key=lambda c: c.size)
    return cases


# Shapes (H, W, kh, kw): 1x1 kernels, kernels as large as the input, non-square everything.
_CORR_SPECS = [
    (1, 1, 1, 1), (2, 2, 2, 2), (3, 3, 1, 1), (3, 4, 2, 2), (4, 3, 2, 1), (2, 5, 1, 3), (4, 6, 4, 6),
    (5, 7, 3, 2), (6, 5, 2, 4), (7, 8, 3, 3), (8, 6, 5, 3), (5, 5, 5, 1),
]


def _build_xk(spec, g, integer):
    H, W, kh, kw = spec
    X, K = _data((H, W), g, integer), _data((kh, kw), g, integer)
    return (X, K), {}, f"X {(H, W)} and K {(kh, kw)}", (("X", X), ("K", K))


def _build_padded(spec, g, integer):
    H, W, kh, kw, padding, stride = spec
    X, K = _data((H, W), g, integer), _data((kh, kw), g, integer)
    kwargs = {"padding": padding, "stride": stride}
    return (X, K), kwargs, f"X {(H, W)}, K {(kh, kw)}, padding={padding!r}, stride={stride!r}", (("X", X), ("K", K))


_PADDED_SPECS = [
    (3, 3, 2, 2, 0, 1), (3, 3, 3, 3, 1, 1), (4, 4, 1, 1, 0, 3), (5, 5, 2, 2, 1, 3), (4, 5, 3, 2, (0, 1), 1),
    (5, 4, 2, 3, (1, 0), (2, 1)), (6, 7, 3, 3, 1, 2), (7, 5, 2, 2, (2, 1), (3, 2)), (3, 4, 5, 4, (1, 0), 1),
    (6, 6, 1, 3, (0, 2), (1, 4)), (8, 7, 4, 3, 2, (2, 3)),
]


def _build_pad(spec, g, integer):
    shape, padding = spec
    X = _data(shape, g, integer)
    return (X,), {"padding": padding}, f"X {shape}, padding={padding!r}", (("X", X),)


_PAD_SPECS = [((1, 1), 1), ((2, 3), 0), ((2, 3), (0, 2)), ((3, 2), (1, 0)), ((3, 4), 2), ((2, 2, 3), 1),
              ((4, 5), (2, 1)), ((3, 3, 2), (0, 1))]


def _build_multi_in(spec, g, integer):
    C, H, W, kh, kw = spec
    X, K = _data((C, H, W), g, integer), _data((C, kh, kw), g, integer)
    return (X, K), {}, f"X {(C, H, W)} and K {(C, kh, kw)}", (("X", X), ("K", K))


_MULTI_IN_SPECS = [(1, 2, 2, 1, 1), (2, 3, 3, 2, 2), (3, 3, 4, 1, 2), (2, 4, 3, 4, 3), (3, 5, 4, 2, 3),
                   (2, 2, 5, 1, 1), (4, 4, 4, 3, 3)]


def _build_multi_in_out(spec, g, integer):
    Co, C, H, W, kh, kw = spec
    X, K = _data((C, H, W), g, integer), _data((Co, C, kh, kw), g, integer)
    return (X, K), {}, f"X {(C, H, W)} and K {(Co, C, kh, kw)}", (("X", X), ("K", K))


_MULTI_IN_OUT_SPECS = [(1, 1, 2, 2, 1, 1), (2, 1, 3, 3, 2, 2), (3, 2, 3, 4, 2, 1), (2, 3, 4, 3, 4, 3),
                       (3, 2, 4, 5, 3, 2), (1, 3, 3, 3, 1, 1)]
_ONE_BY_ONE_SPECS = [(1, 1, 1, 1, 1, 1), (2, 1, 2, 3, 1, 1), (1, 3, 3, 2, 1, 1), (3, 2, 4, 4, 1, 1),
                     (4, 3, 3, 5, 1, 1), (2, 4, 5, 2, 1, 1)]


def _build_pool(spec, g, integer):
    shape, pool_size, stride, padding, mode = spec
    X = _data(shape, g, integer)
    kwargs = {"mode": mode}
    desc = f"X {shape}, pool_size={pool_size!r}"
    if stride is not None:
        kwargs["stride"] = stride
        desc += f", stride={stride!r}"
    if padding:
        kwargs["padding"] = padding
        desc += f", padding={padding!r}"
    return (X, pool_size), kwargs, desc + f", mode={mode!r}", (("X", X),)


_POOL_SPECS = [
    ((2, 2), 2, None, 0, "max"), ((2, 2), 2, None, 0, "avg"), ((3, 3), 2, 1, 0, "max"), ((3, 3), 2, 1, 0, "avg"),
    ((3, 4), (2, 3), None, 0, "max"), ((4, 3), 1, None, 0, "avg"), ((5, 5), 2, 3, 0, "max"), ((5, 5), 2, 3, 0, "avg"),
    ((4, 4), 2, None, (0, 1), "max"), ((4, 4), 2, None, (1, 0), "avg"), ((4, 5), 3, (2, 1), 1, "max"),
    ((4, 5), 3, (2, 1), 1, "avg"), ((2, 3, 4), 2, None, 0, "max"), ((2, 3, 4), 2, 1, 0, "avg"),
    ((3, 4, 4), (4, 4), None, 0, "avg"), ((2, 5, 3), (2, 1), (1, 2), (1, 0), "max"),
]


def _build_gap(spec, g, integer):
    X = _data(spec, g, integer)
    return (X,), {}, f"X {spec}", (("X", X),)


_GAP_SPECS = [(1, 1, 1), (2, 2, 3), (3, 1, 4), (1, 2, 2, 2), (2, 3, 2, 3), (2, 1, 4, 1)]


def _build_matrix(spec, g, integer):
    H, W, kh, kw = spec
    K = _data((kh, kw), g, integer)
    return (K, (H, W)), {}, f"K {(kh, kw)} and input_shape {(H, W)}", (("K", K),)


_MATRIX_SPECS = [(1, 1, 1, 1), (2, 2, 2, 2), (3, 3, 1, 1), (3, 4, 2, 2), (4, 3, 2, 3), (2, 5, 1, 3), (4, 4, 3, 2)]


_CASES: dict[str, list[_Case]] = {
    "corr2d": _tensor_cases("corr2d", _CORR_SPECS, _build_xk, 2),
    "convolve2d": _tensor_cases("convolve2d", _CORR_SPECS[::2] + [(3, 4, 2, 3)], _build_xk, 3),
    "corr2d_padded": _tensor_cases("corr2d_padded", _PADDED_SPECS, _build_padded, 4),
    "pad2d": _tensor_cases("pad2d", _PAD_SPECS, _build_pad, 5),
    "corr2d_multi_in": _tensor_cases("corr2d_multi_in", _MULTI_IN_SPECS, _build_multi_in, 6),
    "corr2d_multi_in_out": _tensor_cases("corr2d_multi_in_out", _MULTI_IN_OUT_SPECS, _build_multi_in_out, 7),
    "corr2d_multi_in_out_1x1": _tensor_cases("corr2d_multi_in_out_1x1", _ONE_BY_ONE_SPECS, _build_multi_in_out, 8),
    "pool2d": _tensor_cases("pool2d", _POOL_SPECS, _build_pool, 9),
    "global_avg_pool2d": _tensor_cases("global_avg_pool2d", _GAP_SPECS, _build_gap, 10),
    "conv_as_matrix": _tensor_cases("conv_as_matrix", _MATRIX_SPECS, _build_matrix, 11),
}


def _value_cases(fn_name: str, calls: list[tuple[tuple, dict]]) -> list[_Case]:
    ref = _REF[fn_name]
    out = []
    for args, kwargs in calls:
        shown = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
        out.append(_Case(args, kwargs, f"{fn_name}({shown})", (), ref(*args, **kwargs), 0))
    return out


_CASES.update({
    "fc_param_count": _value_cases("fc_param_count", [
        ((1, 1), {}), ((784, 256), {}), ((3, 5), {"bias": False}), (((300, 300), 10_000), {}),
        (((28, 28), 10), {"bias": False}), (((3, 32, 32), 100), {}),
    ]),
    "conv_param_count": _value_cases("conv_param_count", [
        ((1, 1, 1), {}), ((1, 6, 5), {}), ((6, 16, 5), {}), ((3, 64, (3, 5)), {}), ((16, 32, 1), {"bias": False}),
        ((2, 3, (1, 4)), {"bias": False}),
    ]),
    "conv_output_shape": _value_cases("conv_output_shape", [
        ((8, 3), {}), ((8, 3), {"padding": 1}), ((8, 3), {"padding": 1, "stride": 2}), ((5, 5), {}),
        ((7, 2), {"stride": 3}), ((224, 11), {"padding": 2, "stride": 4}), (((8, 6), 3), {}),
        ((8, (3, 5)), {"padding": (1, 2)}), (((28, 28), 5), {"padding": 2}), ((6, 1), {"stride": (2, 3)}),
        (((5, 7), (5, 2)), {"padding": (0, 1), "stride": (1, 3)}),
    ]),
    "receptive_field": _value_cases("receptive_field", [
        (([],), {}), (([(3, 1)],), {}), (([(3, 1), (3, 1)],), {}), (([(2, 2), (3, 1)],), {}),
        (([(5, 1), (2, 2), (5, 1), (2, 2)],), {}), (([(7, 2), (3, 2), (3, 1), (1, 1)],), {}),
        (([[3, 2], [3, 2], [3, 2]],), {}),
    ]),
})


# ---------------------------------------------------------------------------------------------
# Verdicts.
def _fail(reason: str) -> None:
    """Raise the verdict; also put one line on the kernel's stderr, which nbgrader scores as a failure."""
    if _FD2 >= 0:
        try:
            _os_write(_FD2, ("GRADING FAILED: " + reason.splitlines()[0] + "\n").encode("utf-8", "replace"))
        except OSError:
            pass
    raise GradingError(reason)


def _shortcut_reason(name: str, run: _Run) -> str | None:
    if run.shortcuts:
        used = ", ".join(dict.fromkeys(run.shortcuts))
        return (f"{name} called {used} while the hidden tests ran: the assignment asks you to write {name} "
                f"yourself, without that shortcut.")
    if run.tampered:
        return f"{name} changed the interpreter's profile hook (sys.setprofile) while it ran; the grader needs it."
    return None


def _error_reason(name: str, run: _Run, where: str) -> str:
    e = run.error
    if isinstance(e, NotImplementedError):
        return f"{name} raised NotImplementedError {where}: replace `raise NotImplementedError()` with your code."
    at = f" (at {run.where})" if run.where else ""
    return f"{name} raised {type(e).__name__}: {e} {where}{at}"


def _check_tensor_out(name: str, got: Any, expected: torch.Tensor, dtype: torch.dtype, device: Any,
                      where: str) -> str | None:
    """Type, shape, dtype, device, then values; None when got matches."""
    if type(got) is not _Tensor and type(got) is not _Parameter:
        return f"{name} returned {type(got).__name__} {where}; expected a torch.Tensor"
    if _shape(got) != _shape(expected):
        return f"{name} returned shape {_shape(got)} {where}; expected shape {_shape(expected)}"
    got_dtype = _dtype_of(got)
    if got_dtype != dtype:
        return (f"{name} returned dtype {_dt(got_dtype)} {where}; expected {_dt(dtype)}, the input's dtype "
                f"(create new tensors with the input's dtype, e.g. X.new_zeros(...))")
    got_device = _device_of(got)
    if got_device != device:
        return (f"{name} returned a tensor on {got_device} {where}; expected it on {device}, the input's device "
                f"(create new tensors on the input's device, e.g. X.new_zeros(...) or device=X.device)")
    tol = TOLERANCES.get(dtype, TOLERANCES[torch.float64])
    g = _flat(_tolist(_detach(_to(got, device=_CPU, dtype=_F64))))
    e = _flat(_tolist(_to(expected, device=_CPU, dtype=_F64)))
    bad = _where_differs(g, e, tol)
    if bad is not None:
        i, gv, ev = bad
        return (f"{name} returned wrong values {where}: element {i} (flattened) is {gv:.10g}, expected "
                f"{ev:.10g}, off by {abs(gv - ev):.3g} (tolerance {_dt(dtype)}: rtol={tol.rtol:g}, atol={tol.atol:g})")
    return None


def _example(case: _Case, expected: Any, got: Any) -> str:
    parts = ["\nThe smallest failing case:"]
    for label, value in case.show:
        parts.append(f"{label} =\n{_fmt(value)}" if type(value) is _Tensor else f"{label} = {value!r}")
    parts.append(f"expected =\n{_fmt(expected)}")
    if got is not None:
        parts.append(f"got =\n{_fmt(got)}")
    return "\n".join(parts)


def _combo_where(case: _Case, device: Any, dtype: torch.dtype) -> str:
    return f"for {case.desc} on {_dev(device)} {_dt(dtype)}"


def _run_tensor_checks(name: str, fn: Any, make_thunk: Callable, cases: list[_Case],
                       extra: Callable | None = None) -> None:
    """Every case on every device and dtype; report the smallest failing case of the first failing combination."""
    _require_callable(name, fn)
    forbidden = _FORBID[name]
    first = None  # (reason, case, expected, got, warnings)
    failing_combos = []
    for device in _DEVICES:
        for dtype in DTYPES:
            for case in cases:
                args = tuple(_to(a, device=device, dtype=dtype, copy=True) if type(a) is _Tensor else a
                             for a in case.args)
                run = _invoke(forbidden, make_thunk(fn, args, case.kwargs))
                reason = _shortcut_reason(name, run)
                if reason:
                    _fail(reason)
                where = _combo_where(case, device, dtype)
                got = run.value if run.error is None else None
                if run.error is not None:
                    reason = _error_reason(name, run, where)
                else:
                    reason = _check_tensor_out(name, got, case.expected, dtype, device, where)
                    if reason is None and extra is not None:
                        reason = extra(case, args, got, device, dtype, where)
                if reason:
                    failing_combos.append(f"{_dev(device)} {_dt(dtype)}")
                    if first is None:
                        shown = got if type(got) is _Tensor and _dim(got) <= 3 and _numel(got) <= 200 else None
                        first = (reason, case, shown, run.warned)
                    break
    if first is not None:
        reason, case, got, warned = first
        msg = reason
        if len(failing_combos) > 1:
            msg += f"\nIt fails on: {', '.join(failing_combos)}."
        msg += _example(case, case.expected, got)
        if warned:
            msg += "\nYour code emitted warnings: " + "; ".join(dict.fromkeys(warned))
        _fail(msg)


def _require_callable(name: str, fn: Any) -> None:
    if not callable(fn):
        _fail(f"{name} is {type(fn).__name__}, not a function: define {name} in the cell above.")


def _call(fn, args, kwargs):
    return lambda: fn(*args, **kwargs)


def _check_simple(name: str, fn: Any) -> None:
    _run_tensor_checks(name, fn, _call, _CASES[name])


# --- 01 ------------------------------------------------------------------------------------
def _check_values(name: str, fn: Any, accept: Callable[[Any, Any], str | None]) -> None:
    _require_callable(name, fn)
    for case in _CASES[name]:
        run = _invoke(_FORBID[name], _call(fn, _deepcopy(case.args), _deepcopy(case.kwargs)))
        reason = _shortcut_reason(name, run)
        if reason:
            _fail(reason)
        if run.error is not None:
            _fail(_error_reason(name, run, f"in {case.desc}"))
        problem = accept(run.value, case.expected)  # None: right; "" or a hint: wrong
        if problem is not None:
            _fail(f"{case.desc} returned {run.value!r}; expected {case.expected!r}{problem}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _accept_int(got: Any, expected: Any) -> str | None:
    if not _is_int(got):
        return f" (an int, got {type(got).__name__})"
    return None if got == expected else ""


def _accept_int_or_pair(got: Any, expected: Any) -> str | None:
    if _is_int(expected):
        return _accept_int(got, expected)
    if not isinstance(got, (tuple, list)) or len(got) != 2 or not all(_is_int(v) for v in got):
        return " (a pair of ints, since one of the arguments was a pair)"
    return None if tuple(got) == tuple(expected) else ""


# --- 02 ------------------------------------------------------------------------------------
def _conv2d_layer_cases() -> list[tuple]:
    """(case, bias, G, dL/dK, dL/db) for L = sum(Y * G): dL/dK = corr2d(X, G) and dL/db = sum(G)."""
    out = []
    for k, case in enumerate(_CASES["corr2d"][::2]):
        b = _tensor([float(k % 3 - 1) / 2], dtype=_F64)  # bias -0.5, 0 or 0.5
        X, K = case.args
        Y = _REF["corr2d"](X, K) + b
        G = _data(_shape(Y), _gen(100 + k), True)
        out.append((case._replace(expected=Y, show=case.show + (("bias", b),)), b, G,
                    _REF["corr2d"](X, G), G.sum().reshape(1)))
    return out


_CONV2D_CASES = _conv2d_layer_cases()


def _check_conv2d_layer(name: str, cls: Any) -> None:
    _require_callable(name, cls)
    forbidden = _FORBID[name]
    for device in _DEVICES:
        for dtype in DTYPES:
            for case, b, G, dK, db in _CONV2D_CASES:
                X, K = case.args
                where = _combo_where(case, device, dtype) + f" with bias {b.item():g}"
                state = {}

                def forward():
                    layer = cls(_shape(K))
                    _module_to(layer, device=device, dtype=dtype)
                    with _no_grad():
                        layer.weight.copy_(K)
                        layer.bias.copy_(b)
                    state["layer"] = layer
                    return layer(_to(X, device=device, dtype=dtype))

                run = _invoke(forbidden, forward)
                reason = _shortcut_reason(name, run)
                if reason:
                    _fail(reason)
                if run.error is not None:
                    _fail(_error_reason(f"{name}.forward", run, where))
                reason = _check_tensor_out(f"{name}.forward", run.value, case.expected, dtype, device, where)
                if reason:
                    _fail(reason + _example(case, case.expected, run.value if type(run.value) is _Tensor else None))
                if not _requires_grad_of(run.value):
                    _fail(f"{name}.forward returned a tensor without a gradient {where}: build the output from "
                          f"self.weight and self.bias with tensor operations so autograd can train the layer "
                          f"(no .item(), .detach() or torch.tensor(...) of results)")
                layer = state["layer"]
                # (Y * G).sum() rather than Y.backward(G): the latter imports half of torch on first use.
                grad_run = _invoke(forbidden, lambda: _backward((run.value * _to(G, device=device, dtype=dtype)).sum()))
                if grad_run.error is not None:
                    _fail(_error_reason(f"backward through {name}.forward", grad_run, where))
                for pname, expected in (("weight", dK), ("bias", db)):
                    grad = _grad_of(getattr(layer, pname))
                    if grad is None:
                        _fail(f"{name}.forward does not use self.{pname} {where}: its gradient is None")
                    if _check_tensor_out(f"{name}", grad, expected, dtype, device, where):
                        _fail(f"the gradient of {name}'s {pname} is wrong {where}; does forward compute "
                              f"corr2d(X, self.weight) + self.bias?")


def _learn_problem() -> dict:
    g = _gen(12)
    X = _data((6, 6), g, False)
    K = _data((2, 2), g, True) / 2
    Y = _REF["corr2d"](X, K)
    A = _stack([X[a:a + 5, b:b + 5].flatten() for a in range(2) for b in range(2)], dim=1)  # (L, kh*kw)
    ev = _eigvalsh(2 * A.T @ A).tolist()  # the Hessian's eigenvalues for the summed squared error
    lr = 1.8 / (ev[0] + ev[-1])
    rate = max(abs(1 - lr * ev[0]), abs(1 - lr * ev[-1]))
    steps = int(math.ceil(math.log(1e-12) / math.log(rate)))
    return {"X": X, "Y": Y, "kernel_size": (2, 2), "lr": lr, "steps": steps}


_LEARN = _learn_problem()
# The fit must reproduce Y to this relative error (norm of residual / norm of Y), per dtype.
LEARN_TOLERANCES: Mapping[torch.dtype, float] = types.MappingProxyType({torch.float32: 1e-4, torch.float64: 1e-8})


def _residual(X: torch.Tensor, K: torch.Tensor, Y: torch.Tensor) -> float:
    K64 = _detach(_to(K, device=_CPU, dtype=_F64))
    r = _flat(_tolist(_REF["corr2d"](X, K64) - Y))
    y = _flat(_tolist(Y))
    return _sqrt(_fsum(v * v for v in r)) / _sqrt(_fsum(v * v for v in y))


def _check_learn_kernel(name: str, fn: Any) -> None:
    _require_callable(name, fn)
    P = _LEARN
    X, Y, ks = P["X"], P["Y"], P["kernel_size"]
    desc = (f"X {_shape(X)}, Y {_shape(Y)}, kernel_size={ks}, num_steps={P['steps']}, lr={P['lr']:.4g}")
    for device in _DEVICES:
        for dtype in DTYPES:
            where = f"for {desc} on {_dev(device)} {_dt(dtype)}"
            Xd, Yd = _to(X, device=device, dtype=dtype), _to(Y, device=device, dtype=dtype)
            with _fork_rng(devices=[]):
                _manual_seed(0)
                run = _invoke(_FORBID[name], _call(fn, (Xd, Yd, ks, P["steps"], P["lr"]), {}))
            reason = _shortcut_reason(name, run)
            if reason:
                _fail(reason + " Learn the kernel by gradient descent, not by solving the equations.")
            if run.error is not None:
                _fail(_error_reason(name, run, where))
            K = run.value
            if type(K) is not _Tensor and type(K) is not _Parameter:
                _fail(f"{name} returned {type(K).__name__} {where}; expected a torch.Tensor of shape {ks}")
            if _shape(K) != ks:
                _fail(f"{name} returned shape {_shape(K)} {where}; expected {ks}")
            if _dtype_of(K) != dtype:
                _fail(f"{name} returned dtype {_dt(_dtype_of(K))} {where}; expected {_dt(dtype)}, X's dtype")
            if _device_of(K) != device:
                _fail(f"{name} returned a kernel on {_device_of(K)} {where}; expected it on {device}, X's device")
            err = _residual(X, K, Y)
            if not (err <= LEARN_TOLERANCES[dtype]):
                _fail(f"{name} did not fit the data {where}: corr2d(X, K) is off by {err:.3g} relative to Y "
                      f"(must be below {LEARN_TOLERANCES[dtype]:g}). Each step should subtract lr times the "
                      f"gradient of the summed (not averaged) squared error; if you use your corr2d, make sure "
                      f"it passes its own tests first.")
    # It must learn: a single small step cannot fit Y (a closed-form solution ignores num_steps and lr).
    with _fork_rng(devices=[]):
        _manual_seed(0)
        run = _invoke(_FORBID[name], _call(fn, (X, Y, ks, 1, P["lr"] / 10), {}))
    if run.error is not None:
        _fail(_error_reason(name, run, "for num_steps=1"))
    if type(run.value) is _Tensor and _shape(run.value) == ks and _residual(X, run.value, Y) < 0.3:
        _fail(f"{name} fitted Y after a single step with a tenth of the learning rate: it must take num_steps "
              f"gradient steps of size lr, not solve for the kernel directly.")


# --- 06 ------------------------------------------------------------------------------------
_LENET_LAYOUT = (
    ("conv", 1, 6, (5, 5), (1, 1), (2, 2)), ("sigmoid",), ("avgpool", (2, 2), (2, 2)),
    ("conv", 6, 16, (5, 5), (1, 1), (0, 0)), ("sigmoid",), ("avgpool", (2, 2), (2, 2)),
    ("flatten",), ("linear", 400, 120), ("sigmoid",), ("linear", 120, 84), ("sigmoid",), ("linear", 84, 10),
)
_LENET_PARAMS = 61_706


def _pair(v: Any) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _describe_layer(m: Any) -> tuple:
    if isinstance(m, (_nn.Conv2d, _layers.Conv2d)):
        return ("conv", m.in_channels, m.out_channels, _pair(m.kernel_size), _pair(m.stride), _pair(m.padding))
    if isinstance(m, _nn.Sigmoid):
        return ("sigmoid",)
    if isinstance(m, (_nn.AvgPool2d, _layers.AvgPool2d)):
        stride = m.kernel_size if m.stride in (None, ()) else m.stride
        return ("avgpool", _pair(m.kernel_size), _pair(stride))
    if isinstance(m, _nn.Flatten):
        return ("flatten",) if m.start_dim == 1 and m.end_dim == -1 else ("flatten", m.start_dim, m.end_dim)
    if isinstance(m, _nn.Linear):
        return ("linear", m.in_features, m.out_features)
    return (type(m).__name__,)


def _layer_text(d: tuple) -> str:
    kind = d[0]
    if kind == "conv":
        return f"Conv2d({d[1]} -> {d[2]}, kernel {d[3]}, stride {d[4]}, padding {d[5]})"
    if kind == "avgpool":
        return f"AvgPool2d(kernel {d[1]}, stride {d[2]})"
    if kind == "linear":
        return f"Linear({d[1]} -> {d[2]})"
    return {"sigmoid": "Sigmoid", "flatten": "Flatten"}.get(kind, " ".join(map(str, d)))


def _leaves(net: nn.Module) -> list:
    return [m for m in _module_modules(net) if next(iter(_module_children(m)), None) is None]


def _check_lenet(name: str, fn: Any) -> None:
    _require_callable(name, fn)
    with _fork_rng(devices=[]):
        _manual_seed(0)
        run = _invoke(_FORBID[name], fn)
    reason = _shortcut_reason(name, run)
    if reason:
        _fail(reason)
    if run.error is not None:
        _fail(_error_reason(name, run, "for lenet()"))
    net = run.value
    if not isinstance(net, _Module):
        _fail(f"lenet() returned {type(net).__name__}; expected a torch.nn.Module (an nn.Sequential)")
    got = [_describe_layer(m) for m in _leaves(net)]
    for i, want in enumerate(_LENET_LAYOUT):
        if i >= len(got):
            _fail(f"lenet() has {len(got)} layers; layer {i} should be {_layer_text(want)} "
                  f"(expected {len(_LENET_LAYOUT)} layers)")
        if got[i] != want:
            _fail(f"lenet() layer {i} is {_layer_text(got[i])}; expected {_layer_text(want)}")
    if len(got) > len(_LENET_LAYOUT):
        _fail(f"lenet() has {len(got)} layers; the classic LeNet has {len(_LENET_LAYOUT)} "
              f"(layer {len(_LENET_LAYOUT)} is an extra {_layer_text(got[len(_LENET_LAYOUT)])})")
    params = list(_module_parameters(net))
    count = sum(_numel(p) for p in params)
    if count != _LENET_PARAMS:
        _fail(f"lenet() has {count:,} parameters; the classic LeNet has {_LENET_PARAMS:,}")
    X, expected = _LENET_X, _LENET_EXPECTED
    ref_params = list(_module_parameters(_LENET_REF))
    for i, (p, q) in enumerate(zip(params, ref_params)):
        if _shape(p) != _shape(q):
            _fail(f"lenet() parameter {i} has shape {_shape(p)}; expected {_shape(q)} "
                  f"(parameters in the order of the layers, weight before bias)")
    with _no_grad():
        for p, q in zip(params, ref_params):
            p.copy_(q)
    for device in _DEVICES:
        where = f"for X of shape (3, 1, 28, 28) float32 on {device}, with the reference's parameters copied in"
        run = _invoke(_FORBID[name], lambda: _module_to(net, device=device)(_to(X, device=device)))
        if run.error is not None:
            _fail(_error_reason("lenet()'s forward", run, where))
        reason = _check_tensor_out("lenet()'s forward", run.value, expected, torch.float32, device, where)
        if reason:
            _fail(reason)


class _Probe(nn.Module):
    """Records, for every forward, whether the net was in training mode, grads were on, and X's device."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list = []

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        self.log.append((self.training, _is_grad_enabled(), _device_of(X)))
        return X


def _probe_setup(seed: int, batch_sizes: tuple) -> tuple:
    g = _gen(seed)
    with _fork_rng(devices=[]):
        _manual_seed(seed)
        net = _nn.Sequential(_Probe(), _nn.Flatten(), _nn.Linear(12, 8), _nn.ReLU(), _nn.Linear(8, 3))
    batches = [(_randn(n, 1, 3, 4, generator=g, dtype=torch.float32), _randint(0, 3, (n,), generator=g))
               for n in batch_sizes]
    return net, batches


# Built now, before student code can change torch's defaults (e.g. torch.set_default_dtype).
with _fork_rng(devices=[]):
    _manual_seed(1)
    _LENET_REF = _REF["lenet"]("classic").eval()
_LENET_X = _randn(3, 1, 28, 28, generator=_gen(13), dtype=torch.float32)
with _no_grad():
    _LENET_EXPECTED = _LENET_REF(_LENET_X)
_PROBE_EVAL = _probe_setup(21, (4, 4, 2))
_PROBE_TRAIN = _probe_setup(22, (4, 4, 3))


def _probe_reason(name: str, probe: _Probe, training: bool, grad: bool, device: Any, where: str) -> str | None:
    if not probe.log:
        return f"{name} never ran the net {where}"
    for t, gr, dev in probe.log:
        if dev != device:
            return (f"{name} fed the net a batch on {dev} {where}; move each batch to `device` ({device}) "
                    f"with X.to(device), y.to(device)")
        if t != training:
            return (f"{name} ran the net in {'training' if t else 'eval'} mode {where}; call "
                    f"net.{'train' if training else 'eval'}() first")
        if gr != grad:
            return (f"{name} ran the net with gradients {'on' if gr else 'off'} {where}"
                    + ("; wrap the loop in `with torch.no_grad():`" if not grad else ""))
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_evaluate_accuracy(name: str, fn: Any) -> None:
    _require_callable(name, fn)
    net, batches = _PROBE_EVAL
    for device in _DEVICES:
        where = f"for 3 batches of sizes 4, 4, 2 with device={str(device)!r}"
        student, reference = _deepcopy(net), _deepcopy(net)
        _module_to(student, device=device)
        _module_to(reference, device=device)
        _module_train(student, True)
        expected = _REF["evaluate_accuracy"](reference, _deepcopy(batches), device)
        run = _invoke(_FORBID[name], _call(fn, (student, _deepcopy(batches), device), {}))
        reason = _shortcut_reason(name, run)
        if reason:
            _fail(reason)
        if run.error is not None:
            _fail(_error_reason(name, run, where))
        got = run.value
        if not _is_number(got):
            _fail(f"{name} returned {type(got).__name__} {where}; expected a Python float "
                  f"(use .item() to turn a one-element tensor into a number)")
        reason = _probe_reason(name, student[0], False, False, device, where)
        if reason:
            _fail(reason)
        if abs(got - expected) > 1e-9:
            _fail(f"{name} returned {got!r} {where}; expected {expected!r} (correct predictions / examples)")
        if not _module_training(student):
            _fail(f"{name} left the net in eval mode {where}; it was in training mode before the call, "
                  f"restore that mode at the end")


def _check_train_epoch(name: str, fn: Any) -> None:
    _require_callable(name, fn)
    net, batches = _PROBE_TRAIN
    for device in _DEVICES:
        where = f"for 3 batches of sizes 4, 4, 3, nn.CrossEntropyLoss() and SGD(lr=0.5) on {device}"
        student, reference = _deepcopy(net), _deepcopy(net)
        _module_to(student, device=device)
        _module_to(reference, device=device)
        _module_train(student, False)  # train_epoch must switch to training mode itself
        with _fork_rng(devices=[] if device.type == "cpu" else [device]):
            _manual_seed(5)
            exp_loss, exp_acc = _REF["train_epoch"](reference, _deepcopy(batches), _nn.CrossEntropyLoss(),
                                                    _SGD(reference.parameters(), lr=0.5), device)
        optimizer = _SGD(student.parameters(), lr=0.5)
        with _fork_rng(devices=[] if device.type == "cpu" else [device]):
            _manual_seed(5)  # the same dropout masks as the reference
            run = _invoke(_FORBID[name], _call(fn, (student, _deepcopy(batches), _nn.CrossEntropyLoss(), optimizer,
                                                    device), {}))
        reason = _shortcut_reason(name, run)
        if reason:
            _fail(reason)
        if run.error is not None:
            _fail(_error_reason(name, run, where))
        got = run.value
        if not isinstance(got, (tuple, list)) or len(got) != 2 or not all(_is_number(v) for v in got):
            _fail(f"{name} returned {got!r} {where}; expected a pair of Python floats (mean loss, accuracy)")
        reason = _probe_reason(name, student[0], True, True, device, where)
        if reason:
            _fail(reason)
        for p, q, pname in zip(_module_parameters(student), _module_parameters(reference),
                               ("first weight", "first bias", "second weight", "second bias")):
            if _check_tensor_out(name, _detach(p), _detach(q), torch.float32, device, where):
                _fail(f"after {name} the net's {pname} differs from the reference {where}: per batch, "
                      f"call optimizer.zero_grad(), compute the loss, l.backward(), then optimizer.step()")
        loss, acc = got
        if abs(loss - exp_loss) > 1e-5 * max(1.0, abs(exp_loss)):
            sizes = [len(y) for _, y in batches]
            _fail(f"{name} returned mean loss {loss:.6g} {where}; expected {exp_loss:.6g}: the mean over "
                  f"examples, so weight each batch's mean loss by its size ({sizes}) before dividing by "
                  f"{sum(sizes)}")
        if abs(acc - exp_acc) > 1e-9:
            _fail(f"{name} returned accuracy {acc!r} {where}; expected {exp_acc!r}: the fraction of training "
                  f"examples whose arg-max logit is the label, using the logits computed before each step")


# ---------------------------------------------------------------------------------------------
_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "fc_param_count": lambda n, f: _check_values(n, f, _accept_int),
    "conv_param_count": lambda n, f: _check_values(n, f, _accept_int),
    "conv_as_matrix": _check_simple,
    "corr2d": _check_simple,
    "Conv2D": _check_conv2d_layer,
    "convolve2d": _check_simple,
    "learn_kernel": _check_learn_kernel,
    "conv_output_shape": lambda n, f: _check_values(n, f, _accept_int_or_pair),
    "pad2d": _check_simple,
    "corr2d_padded": _check_simple,
    "receptive_field": lambda n, f: _check_values(n, f, _accept_int),
    "corr2d_multi_in": _check_simple,
    "corr2d_multi_in_out": _check_simple,
    "corr2d_multi_in_out_1x1": _check_simple,
    "pool2d": _check_simple,
    "global_avg_pool2d": _check_simple,
    "lenet": _check_lenet,
    "evaluate_accuracy": _check_evaluate_accuracy,
    "train_epoch": _check_train_epoch,
}
CHECKS = tuple(_CHECKS)


@contextlib.contextmanager
def _full_float32():
    """No TF32 on GPUs while grading: cuDNN convolutions would otherwise round float32 to ~1e-3."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def check(name: str, obj: Any) -> None:
    """Run the hidden checks for the function (or class) `name` on the student's `obj`.

    Returns None when every check passes; raises GradingError with the reason otherwise.
    """
    runner = _CHECKS.get(name) if isinstance(name, str) else None
    if runner is None:
        raise GradingError(f"no hidden checks named {name!r}; known: {', '.join(CHECKS)}")
    try:
        with _full_float32():
            runner(name, obj)
    except GradingError as e:
        reason = str(e)
    else:
        return
    raise GradingError(reason) from None  # a fresh exception: the feedback shows a two-line traceback


# ---------------------------------------------------------------------------------------------
# Lock this module and the package's `grading` attribute.
_PUBLIC = {"check": check, "GradingError": GradingError, "TOLERANCES": TOLERANCES, "CHECKS": CHECKS,
           "LEARN_TOLERANCES": LEARN_TOLERANCES, "DTYPES": DTYPES}
_SELF = sys.modules[__name__]


class _LockedMeta(type):
    def __setattr__(cls, name, value):
        raise AttributeError("cnnlib.grading is read-only")

    def __delattr__(cls, name):
        raise AttributeError("cnnlib.grading is read-only")


def _const(value):
    return property(lambda self: value)


def _refuse_set(self, name, value):
    raise AttributeError(f"cnnlib.grading is read-only: cannot set {name!r}")


def _refuse_del(self, name):
    raise AttributeError(f"cnnlib.grading is read-only: cannot delete {name!r}")


# cnnlib.grading once loaded: no attribute can be set or deleted, and the public names are read-only
# data descriptors of its class, so editing the module's __dict__ cannot replace them either.
_LockedModule = _LockedMeta(
    "_LockedModule", (types.ModuleType,),
    {"__setattr__": _refuse_set, "__delattr__": _refuse_del, "__module__": __name__,
     **{name: _const(value) for name, value in _PUBLIC.items()}},
)


class _GuardedPackage(type(cnnlib)):
    """The cnnlib package, refusing to rebind or delete its `grading` attribute."""

    def __setattr__(self, name, value):
        if name == "grading" and value is not _SELF:
            raise AttributeError("cnnlib.grading cannot be replaced")
        _mod_setattr(self, name, value)

    def __delattr__(self, name):
        if name == "grading":
            raise AttributeError("cnnlib.grading cannot be deleted")
        _mod_delattr(self, name)


if not isinstance(_SELF, _LockedModule):
    _mod_setattr(cnnlib, "grading", _SELF)
    if type(cnnlib) is types.ModuleType:
        cnnlib.__class__ = _GuardedPackage
    _mod_setattr(_SELF, "__class__", _LockedModule)

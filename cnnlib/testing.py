"""How the course compares tensors: the tolerances, an assertion that uses them, and a device check.

The notebooks' visible tests and the hidden tests compare at the same tolerances, so code that
passes one is not failed by the other for rounding alone (an FFT-based correlation, a different
order of summation).
"""
from __future__ import annotations

import copy
import sys
import types
from typing import Callable, Mapping, NamedTuple

import torch


class Tol(NamedTuple):
    rtol: float
    atol: float


# |actual - expected| <= atol + rtol * |expected|, elementwise; inputs are O(1), so atol is on that scale.
TOLERANCES: Mapping[torch.dtype, Tol] = types.MappingProxyType({
    torch.float32: Tol(rtol=1e-5, atol=1e-5),
    torch.float64: Tol(rtol=1e-10, atol=1e-10),
})


def assert_close(actual: object, expected: torch.Tensor, message: str = "") -> None:
    """Raise AssertionError (with `message`, else a description) unless `actual` is a tensor of
    `expected`'s shape whose values are within the course's tolerance for actual's dtype
    (float64's for non-float dtypes).

    Inputs: actual and expected of the same shape, on any device.
    """
    if not isinstance(expected, torch.Tensor):
        raise TypeError(f"expected must be a torch.Tensor, got {type(expected).__name__}")
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(message or f"expected a torch.Tensor, got {type(actual).__name__}")
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(message or f"expected shape {tuple(expected.shape)}, got {tuple(actual.shape)}")
    tol = TOLERANCES.get(actual.dtype, TOLERANCES[torch.float64])
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    if not torch.allclose(a, e, rtol=tol.rtol, atol=tol.atol, equal_nan=True):
        worst = (a - e).abs().max().item()
        raise AssertionError(message or f"values differ by up to {worst:.3g} (tolerance rtol={tol.rtol:g}, "
                                        f"atol={tol.atol:g})")


def _to_meta(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return value.detach().to("meta")
    if isinstance(value, (tuple, list)):
        return type(value)(_to_meta(v) for v in value)
    return value


def _tensors(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


_ADVICE = ("a tensor made without the input's device lands on the CPU (e.g. torch.zeros(...) without device=); "
           "make new tensors with X.new_zeros(...), or with device=X.device and dtype=X.dtype")


def assert_follows_device(fn: Callable, *args: object, **kwargs: object) -> None:
    """Call fn with its tensor arguments moved to the "meta" device and check that every tensor it
    returns is on meta too; raise AssertionError saying which output is not.

    The meta device holds shapes and dtypes but no data, so it shows on a CPU-only machine the
    mistake a GPU would show: a tensor made without the input's device (torch.zeros(...) without
    device=) lands on the CPU. fn may be an nn.Module: a copy of it, moved to meta, is called.
    Code that needs values (.item(), printing, comparisons turned into bools) cannot run on meta.

    The first operation on meta loads part of torch (seconds on a busy machine), so in a grading kernel
    (one where the grader's kernel side, cnngrader.kernel, is loaded without its checks) this returns at
    once: there the hidden tests run the function on every device present anyway.

    Inputs: fn and the arguments to call it with; tensors inside tuples and lists are moved too.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if "cnngrader.kernel" in sys.modules and "cnngrader.grading" not in sys.modules:
        return  # a grading kernel (cnnlib imports nothing of the grader; it only looks)
    name = getattr(fn, "__name__", type(fn).__name__)
    if isinstance(fn, torch.nn.Module):
        fn = copy.deepcopy(fn).to("meta")
    try:
        out = fn(*[_to_meta(a) for a in args], **{k: _to_meta(v) for k, v in kwargs.items()})
    except (RuntimeError, NotImplementedError) as e:
        text = str(e)
        if "meta" not in text and "same device" not in text:
            raise
        raise AssertionError(
            f"{name} mixed the input's device with another when called with inputs on the meta device "
            f"({type(e).__name__}: {text.splitlines()[0] if text else ''}): {_ADVICE}") from None
    found = _tensors(out)
    if not found:
        raise AssertionError(f"{name} returned {type(out).__name__}, not a tensor, for inputs on the meta device")
    for k, t in enumerate(found):
        if t.device.type != "meta":
            which = "its output" if len(found) == 1 else f"its output tensor {k}"
            raise AssertionError(f"{name} was called with inputs on the meta device, but {which} is on "
                                 f"{t.device}: {_ADVICE}")

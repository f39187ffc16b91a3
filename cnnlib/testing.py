"""How the course compares tensors: the tolerances, and an assertion that uses them.

The notebooks' visible tests and the hidden tests compare at the same tolerances, so code that
passes one is not failed by the other for rounding alone (an FFT-based correlation, a different
order of summation).
"""
from __future__ import annotations

import types
from typing import Mapping, NamedTuple

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

"""The course's numeric tolerances, one place for them: the hidden checks compare a student's
output with cnnlib at these, and the tests compare cnnlib with torch at the same ones.

|got - expected| <= atol + rtol * |expected|, elementwise; inputs are O(1), so atol is on that scale.
"""
from __future__ import annotations

import types
from typing import Mapping, NamedTuple

import torch


class Tol(NamedTuple):
    rtol: float
    atol: float


TOLERANCES: Mapping[torch.dtype, Tol] = types.MappingProxyType({
    torch.float32: Tol(rtol=1e-5, atol=1e-5),
    torch.float64: Tol(rtol=1e-10, atol=1e-10),
})

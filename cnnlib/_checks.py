"""Argument checks shared by the ops: every bad input gets a TypeError or ValueError
that names the argument and says what was expected."""
from __future__ import annotations

from typing import Sequence

import torch

IntPair = int | tuple[int, int]


def check_tensor(name: str, X: object, ndims: Sequence[int], shape_doc: str) -> torch.Tensor:
    """Require a floating-point tensor with one of the given numbers of dimensions."""
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape_doc}, got {type(X).__name__}")
    if X.dim() not in ndims:
        raise ValueError(
            f"{name} must have shape {shape_doc} ({' or '.join(map(str, ndims))} dimensions), "
            f"got shape {tuple(X.shape)}"
        )
    if not X.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32 or float64), got {X.dtype}")
    return X


def check_same(nameA: str, A: torch.Tensor, nameB: str, B: torch.Tensor) -> None:
    """Require two tensors to share a dtype and a device, as torch's own conv ops do."""
    if A.dtype != B.dtype:
        raise TypeError(f"{nameA} and {nameB} must have the same dtype, got {A.dtype} and {B.dtype}")
    if A.device != B.device:
        raise ValueError(f"{nameA} and {nameB} must be on the same device, got {A.device} and {B.device}")


def int_at_least(name: str, value: object, minimum: int) -> int:
    """Require an int (not a bool) that is at least `minimum`: 1 for counts, 0 for indices.

    A value of another type is a TypeError; an int below the minimum is a ValueError."""
    kind = "positive int" if minimum == 1 else "non-negative int" if minimum == 0 else f"int >= {minimum}"
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be a {kind}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be a {kind}, got {value!r}")
    return value


def positive_number(name: str, value: object) -> float:
    """Require a real number above 0 (not a bool): a TypeError for another type, else a ValueError."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive number, got {value!r}")
    if not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def pair(name: str, value: object, minimum: int) -> tuple[int, int]:
    """Turn an int or a pair of ints into a pair, each at least `minimum`."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum} on each axis, got {tuple(value)}")
    return int(value[0]), int(value[1])


def check_fits(kernel: tuple[int, int], size: tuple[int, int], padding: tuple[int, int], what: str) -> None:
    """Require the kernel to fit inside the padded input on both axes."""
    for axis, k, n, p in zip(("height", "width"), kernel, size, padding):
        if k > n + 2 * p:
            raise ValueError(
                f"{what} {axis} {k} is larger than the padded input {axis} {n} + 2*{p} = {n + 2 * p}"
            )

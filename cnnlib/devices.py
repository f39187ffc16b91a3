"""Devices and seeds. Nothing here falls back to the CPU without saying so."""
from __future__ import annotations

import random

import numpy as np
import torch

from ._checks import int_at_least


def devices() -> list[torch.device]:
    """The CPU, then every CUDA device present: [cpu, cuda:0, cuda:1, ...]."""
    return [torch.device("cpu")] + [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())]


def try_gpu(i: int = 0) -> torch.device:
    """cuda:i if it exists; otherwise the CPU, with a printed notice saying so."""
    int_at_least("i", i, 0)
    count = torch.cuda.device_count()
    if i < count:
        return torch.device(f"cuda:{i}")
    print(f"try_gpu: no GPU cuda:{i} ({count} CUDA device(s) present); using cpu")
    return torch.device("cpu")


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (every CUDA device's included)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

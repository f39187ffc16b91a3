"""Timers that are right on a GPU (synchronize before reading the clock, warm up first) and
fair under load (alternate the contenders, repeat, take medians)."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for every kernel queued on `device`; a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, number: int = 1) -> float:
    """Seconds per call of `fn`, over `number` calls, with the device idle at both ends."""
    sync(device)
    start = time.perf_counter()
    for _ in range(number):
        fn()
    sync(device)
    return (time.perf_counter() - start) / number


def calls_per_sample(fn: Callable[[], object], device: torch.device, min_seconds: float) -> int:
    """How many calls make one timing sample last at least `min_seconds` (1, 2, 4, ...),
    so that a call of a few microseconds is not measured alone against the timer's resolution."""
    number = 1
    while True:
        if time_call(fn, device, number) * number >= min_seconds or number >= 1 << 16:
            return number
        number *= 2


@dataclass
class Timing:
    """Seconds per call, one sample per repeat."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range over the median: how noisy the samples were."""
        if len(self.samples) < 4:
            return (max(self.samples) - min(self.samples)) / self.median
        q = statistics.quantiles(self.samples, n=4)
        return (q[2] - q[0]) / self.median


def paired_ratio(a: Timing, b: Timing) -> float:
    """Median over repeats of a's sample / b's sample. compare() takes the two samples of a
    repeat back to back, so a burst of load from elsewhere that slows both cancels out."""
    return statistics.median(x / y for x, y in zip(a.samples, b.samples))


def compare(
    fns: dict[str, Callable[[], object]],
    device: torch.device,
    repeats: int = 5,
    warmup: int = 1,
    min_seconds: float = 0.05,
) -> dict[str, Timing]:
    """Time each function `repeats` times, alternating between them (forward order, then
    backward, ...), after `warmup` untimed calls of each. Returns name -> Timing."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    numbers = {name: calls_per_sample(fn, device, min_seconds) for name, fn in fns.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            samples[name].append(time_call(fns[name], device, numbers[name]))
    return {name: Timing(s) for name, s in samples.items()}

"""Requirements on how a function computes, judged from what it did (the trusted side's decision).

A task may ask for no loop over the output ("corr2d without a loop over the output") or for one
matrix product. Neither can be read from the values, and a static reading of the code misses loops
written in other ways. So the kernel counts, while the function runs under the guard (a dispatch mode
and the profile hook, armed before any student code ran), the PyTorch operators it dispatches and the
calls its own code makes (cnngrader.kernel.guard.invoke(count=True)), and this module judges those
counts at two input sizes that differ only where a loop over the output would show:

- vectorised code does the same number of steps for a 4x4 input as for a 16x16 one (it loops, if at
  all, over the kernel's entries or the channels, which are the same in both);
- a loop over output pixels does one round of steps per pixel (9 against 225), one over rows one per
  row (3 against 15).

A count grows by at least GROWTH times and MIN_EXTRA steps before it counts as a loop, so that the
few steps a library spends on its own choices (an einsum's path) never fail honest code.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from cnngrader.grading import core, coverage

GROWTH = 2.0
MIN_EXTRA = 16
# Operators that are a matrix product (einsum, tensordot, @ and F.linear dispatch one of them).
MATMUL_OPS = frozenset({"mm", "bmm", "addmm", "addbmm", "baddbmm", "mv", "addmv", "dot", "vdot", "matmul",
                        "_addmm_activation", "addr", "outer", "ger", "linear", "_mkldnn_linear"})


class Work(NamedTuple):
    """What one counted call did: operators dispatched (name -> count) and calls made by the student's code
    (None when a profiler or debugger held the hook)."""
    ops: dict
    calls: int | None

    @property
    def steps(self) -> int:
        return sum(self.ops.values()) + (self.calls or 0)

    @property
    def matmuls(self) -> int:
        return sum(n for op, n in self.ops.items() if op in MATMUL_OPS)


def work_of(run: core.Run) -> Work | None:
    """The counts a kernel sent, checked for form (they are untrusted): None when malformed."""
    counts = run.counts
    if not isinstance(counts, dict) or not isinstance(counts.get("ops"), dict):
        return None
    ops = counts["ops"]
    if len(ops) > 10_000 or not all(type(k) is str and type(v) is int and 0 <= v for k, v in ops.items()):
        return None
    calls = counts.get("calls")
    if calls is not None and (type(calls) is not int or calls < 0):
        return None
    return Work(dict(ops), calls)


def grows(small: Work, large: Work) -> bool:
    """Whether the work grew like a loop over the output: GROWTH times and MIN_EXTRA steps more."""
    return large.steps >= GROWTH * small.steps and large.steps - small.steps >= MIN_EXTRA


class Sizes(NamedTuple):
    """Two calls that differ only in the output's size (and, for a 1x1 convolution, the channels)."""
    small: tuple  # args, CPU float64
    large: tuple
    small_desc: str  # "X (4, 4)"
    large_desc: str
    same: str  # what both share, for the reason: "the same (2, 2) kernel"
    loop_over: str  # "the output's pixels or rows"


def counted(name: str, runner: Any, forbidden: core.Forbidden, args: tuple) -> Work:
    """Work of one counted call of the student's function; a shortcut, an error or malformed counts fail."""
    run = runner.call(name, forbidden, list(args), {}, count=True)
    core.require_clean(name, run, "while the grader counted its operations")
    work = work_of(run)
    if work is None:
        core.fail(f"{name} could not be checked: the kernel's count of its operations was malformed")
    return work


def loop_reason(name: str, sizes: Sizes, small: Work, large: Work, allowed: str) -> str | None:
    if not grows(small, large):
        return None
    return (f"{name} ran {small.steps} steps for {sizes.small_desc} and {large.steps} for {sizes.large_desc}, with "
            f"{sizes.same} (PyTorch operators dispatched: {sum(small.ops.values())} and {sum(large.ops.values())}; "
            f"calls made by your code: {small.calls or 0} and {large.calls or 0}): the work grows with the size of "
            f"the output, so it loops over {sizes.loop_over}. The task asks for no such loop{allowed}.")


def no_loop(values: core.Check, sizes: Callable[[Any], Sizes], forbidden: core.Forbidden, allowed: str = "",
            max_matmuls: int | None = None) -> core.Check:
    """The check `values`, then: the function's work must not grow with the output (loop_reason), and
    with max_matmuls, a call may dispatch at most that many matrix products."""

    def check(name: str, runner: Any) -> None:
        values(name, runner)
        s = sizes(runner)
        small, large = counted(name, runner, forbidden, s.small), counted(name, runner, forbidden, s.large)
        reason = loop_reason(name, s, small, large, allowed)
        if reason:
            core.fail(reason)
        if max_matmuls is not None and large.matmuls > max_matmuls:
            core.fail(f"{name} computed {large.matmuls} matrix products for {s.large_desc} (operators "
                      f"{', '.join(sorted(op for op in large.ops if op in MATMUL_OPS))}); the task asks for "
                      f"{'one matrix product' if max_matmuls == 1 else f'at most {max_matmuls}'}.")

    tag = coverage.of(values)  # the value checks' dtypes and devices, for the notebook's grading paragraph
    if tag is not None:
        check.covers = tag
    return check


def drawn(shape: tuple, runner: Any, base: int) -> Any:
    """A tensor of `shape` drawn from the run's secret (two-decimal values), on the CPU in float64."""
    return core.data(shape, core.gen(core.seed(base, runner.secret)), False)


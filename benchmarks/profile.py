"""Where cnnlib.conv2d's forward time goes, op by op, next to F.conv2d's total.

    python -m benchmarks.profile [--threads N] [--case NAME]

Prints torch.profiler's table (self CPU time per aten op) for each conv case of the ops
benchmark: the split between copying columns (aten::copy_) and the matrix products
(aten::bmm) is what bounds the ratio to F.conv2d.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import cnnlib

from .ops import CONV_CASES
from .timing import compare


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--case", default=None, help="only the conv case whose label starts with this")
    p.add_argument("--calls", type=int, default=10, help="profiled forward calls per case")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    for label, N, C, F_out, H, k, pad in CONV_CASES:
        if args.case and not label.startswith(args.case):
            continue
        X = torch.randn(N, C, H, H, generator=g)
        W = torch.randn(F_out, C, k, k, generator=g)
        calls = max(1, args.calls if N * C * H * H < 1e7 else args.calls // 5)
        t = compare({"cnnlib": lambda: cnnlib.conv2d(X, W, padding=pad), "torch": lambda: F.conv2d(X, W, padding=pad)},
                    cpu, repeats=5)
        print(f"\n== {label}: N={N}, {C}->{F_out}, {H}x{H}, k{k} p{pad}: cnnlib {t['cnnlib'].median * 1e3:.2f} ms, "
              f"F.conv2d {t['torch'].median * 1e3:.2f} ms per forward ({t['cnnlib'].median / t['torch'].median:.2f}x)")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                cnnlib.conv2d(X, W, padding=pad)
        print(f"profile of {calls} cnnlib.conv2d forward calls:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

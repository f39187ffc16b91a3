"""Part 1: cnnlib's vectorized ops against torch's, and the teaching loops against the vectorized op."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

import cnnlib

from .report import Result
from .timing import compare, paired_ratio

# (label, N, C_in, C_out, H (= W), kernel, padding); stride 1 as in LeNet.
CONV_CASES = [
    ("LeNet conv1", 256, 1, 6, 28, 5, 2),
    ("LeNet conv2", 256, 6, 16, 14, 5, 0),
    ("large", 64, 64, 128, 56, 3, 1),
]
# (label, shape, pool_size, stride, padding)
POOL_CASES = [
    ("LeNet pool1", (256, 6, 28, 28), 2, 2, 0),
    ("LeNet pool2", (256, 16, 10, 10), 2, 2, 0),
    ("large", (64, 128, 56, 56), 2, 2, 0),
    ("large overlapping", (64, 128, 56, 56), 3, 2, 1),
]
# (label, C_in, C_out, H, kernel): the loop does C_out * C_in * H'^2 Python steps.
LOOP_CASES = [
    ("corr2d", None, None, 28, 5),
    ("corr2d_multi_in_out", 6, 16, 14, 5),
]
QUICK_CONV = [("tiny", 4, 2, 3, 8, 3, 1)]
QUICK_POOL = [("tiny", (4, 2, 8, 8), 2, 2, 0)]
QUICK_LOOP = [("corr2d", None, None, 6, 3), ("corr2d_multi_in_out", 2, 2, 5, 3)]

CONV_FORWARD_TARGET = "<= 2"


def _conv_row(label, N, C, F_out, H, k, p) -> str:
    return f"{label}: N={N}, {C}->{F_out}, {H}x{H}, k{k} p{p}"


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def bench_conv(device, cases, repeats) -> list[Result]:
    out = []
    g = torch.Generator().manual_seed(0)
    for label, N, C, F_out, H, k, p in cases:
        X = torch.randn(N, C, H, H, generator=g).to(device)
        W = (torch.randn(F_out, C, k, k, generator=g) / (C * k * k) ** 0.5).to(device)
        b = torch.randn(F_out, generator=g).to(device)
        Y = F.conv2d(X, W, b, padding=p)
        diff = _max_diff(cnnlib.conv2d(X, W, b, padding=p), Y)
        name = _conv_row(label, N, C, F_out, H, k, p)
        t = compare(
            {"cnnlib": lambda: cnnlib.conv2d(X, W, b, padding=p), "torch": lambda: F.conv2d(X, W, b, padding=p)},
            device, repeats,
        )
        out.append(_ratio("ops", f"conv2d forward / F.conv2d, {name}", device, t, CONV_FORWARD_TARGET,
                          max_abs_diff=diff))
        Xg, Wg, bg = (T.clone().requires_grad_(True) for T in (X, W, b))
        G = torch.randn(Y.shape, generator=g).to(device)

        def fwd_bwd(f):
            return lambda: torch.autograd.grad(f(Xg, Wg, bg, padding=p), (Xg, Wg, bg), G)

        t = compare({"cnnlib": fwd_bwd(cnnlib.conv2d), "torch": fwd_bwd(F.conv2d)}, device, repeats)
        out.append(_ratio("ops", f"conv2d forward+backward / F.conv2d, {name}", device, t, None))
    return out


def bench_pool(device, cases, repeats) -> list[Result]:
    out = []
    g = torch.Generator().manual_seed(1)
    for label, shape, k, s, p in cases:
        X = torch.randn(shape, generator=g).to(device)
        name = f"{label}: {'x'.join(map(str, shape))}, k{k} s{s} p{p}"
        for mode, ref in (("max", F.max_pool2d), ("avg", F.avg_pool2d)):
            diff = _max_diff(cnnlib.pool2d(X, k, s, p, mode=mode), ref(X, k, s, p))
            t = compare(
                {"cnnlib": lambda: cnnlib.pool2d(X, k, s, p, mode=mode), "torch": lambda: ref(X, k, s, p)},
                device, repeats,
            )
            out.append(_ratio("ops", f"pool2d {mode} / F.{ref.__name__}, {name}", device, t, None, max_abs_diff=diff))
    return out


def _conv2d_one_map(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """cnnlib.conv2d on one map. Inputs: X of shape (H, W), K of shape (kh, kw). Returns: (H', W')."""
    return cnnlib.conv2d(X[None, None], K[None, None])[0, 0]


def bench_loops(device, cases, repeats) -> list[Result]:
    """Speedup of cnnlib.conv2d over the explicit loops of chapters 2 and 4 (same numbers in, same out)."""
    out = []
    g = torch.Generator().manual_seed(2)
    for label, C, F_out, H, k in cases:
        if C is None:
            X, K = torch.randn(H, H, generator=g).to(device), torch.randn(k, k, generator=g).to(device)
            loop = functools.partial(cnnlib.corr2d, X, K)
            vec = functools.partial(_conv2d_one_map, X, K)
            name = f"{H}x{H}, k{k}"
        else:
            X = torch.randn(C, H, H, generator=g).to(device)
            K = torch.randn(F_out, C, k, k, generator=g).to(device)
            loop = functools.partial(cnnlib.corr2d_multi_in_out, X, K)
            vec = functools.partial(cnnlib.conv2d, X, K)
            name = f"{C}->{F_out}, {H}x{H}, k{k}"
        diff = _max_diff(loop(), vec())
        t = compare({"loop": loop, "vectorized": vec}, device, max(3, repeats // 2), min_seconds=0.01)
        speedup = paired_ratio(t["loop"], t["vectorized"])
        out.append(Result("ops", f"speedup of conv2d over {label} loop, {name}", str(device), speedup, "x", None,
                          {"loop_s": t["loop"].median, "vectorized_s": t["vectorized"].median,
                           "loop_samples": t["loop"].samples, "vectorized_samples": t["vectorized"].samples,
                           "max_abs_diff": diff}))
    return out


def _ratio(section, name, device, t, target, **extra) -> Result:
    """time(cnnlib) / time(torch): the median of the per-repeat ratios (see paired_ratio)."""
    ours, theirs = t["cnnlib"], t["torch"]
    return Result(section, name, str(device), paired_ratio(ours, theirs), "x", target, {
        "cnnlib_s": ours.median, "torch_s": theirs.median, "ratio_of_medians": ours.median / theirs.median,
        "cnnlib_spread": round(ours.spread, 3), "torch_spread": round(theirs.spread, 3),
        "cnnlib_samples": ours.samples, "torch_samples": theirs.samples, **extra,
    })


def run(devices: list[torch.device], quick: bool, repeats: int, log=print) -> list[Result]:
    results = []
    for device in devices:
        for what, fn, cases in (
            ("conv2d", bench_conv, QUICK_CONV if quick else CONV_CASES),
            ("pool2d", bench_pool, QUICK_POOL if quick else POOL_CASES),
            ("loops", bench_loops, QUICK_LOOP if quick else LOOP_CASES),
        ):
            log(f"[ops] {what} on {device}")
            results += fn(device, cases, repeats)
    return results

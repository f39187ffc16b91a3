"""Grading real student code fairly: device mistakes show without a GPU (the meta device), a route is banned
only where the task's text bans it, and each reason names the real bug."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnngrader import grading
from cnngrader.course import load_course
from cnngrader.grading import core, scan
from cnngrader.grading.core import GradingError

from conftest import REPO as ROOT  # noqa: E402

IDS = list(load_course(ROOT).ids)


def _reason(name: str, fn) -> str:
    with pytest.raises(GradingError) as info:
        grading.check(name, fn)
    return str(info.value)


# --- 1. device mistakes show on the meta device -----------------------------------------------
def corr2d_zeros_without_device(X, K):
    h, w = K.shape
    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1), dtype=X.dtype)  # no device=
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y


def corr2d_item(X, K):
    h, w = K.shape
    Y = X.new_zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum().item()  # needs data: inconclusive on meta
    return Y


def test_a_tensor_made_without_the_device_fails_on_a_cpu_only_grader():
    reason = _reason("corr2d", corr2d_zeros_without_device)
    assert "mixed devices" in reason and "meta device" in reason and "on cpu" in reason
    assert "Y[i, j] = " in reason  # the student's line
    assert "X.new_zeros" in reason


def test_a_tensor_on_the_cpu_joined_with_the_input_fails():
    def pad2d(X, padding):
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        Y = torch.zeros((*X.shape[:-2], X.shape[-2] + 2 * ph, X.shape[-1] + 2 * pw), dtype=X.dtype)
        Y[..., ph:ph + X.shape[-2], pw:pw + X.shape[-1]] = X
        return Y

    reason = _reason("pad2d", pad2d)
    assert "mixed devices" in reason and "on cpu" in reason

    def conv_as_matrix(K, input_shape):  # stacks CPU zeros with K's entries
        H, W = input_shape
        kh, kw = K.shape
        Ho, Wo = H - kh + 1, W - kw + 1
        rows = []
        for i in range(Ho):
            for j in range(Wo):
                row = [torch.zeros((), dtype=K.dtype)] * (H * W)
                for a in range(kh):
                    for b in range(kw):
                        row[(i + a) * W + j + b] = K[a, b]
                rows.append(torch.stack([r.to(K.device) if r.dim() else r for r in row]))
        return torch.stack(rows)

    # torch.stack does not accept a CPU scalar beside GPU tensors (elementwise operations do)
    assert "mixed devices" in _reason("conv_as_matrix", conv_as_matrix)

    def corr2d_scalar(X, K):  # a CPU scalar in an elementwise product works on every device
        h, w = K.shape
        Y = X.new_zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
        for a in range(h):
            for b in range(w):
                Y = Y + X[a:a + Y.shape[0], b:b + Y.shape[1]] * K[a, b] * torch.tensor(1.0)
        return Y

    grading.check("corr2d", corr2d_scalar)


def test_code_that_needs_data_is_inconclusive_on_meta_not_a_failure():
    grading.check("corr2d", corr2d_item)

    def corr2d_numpy(X, K):  # right values on the CPU; NumPy has no meta tensors
        x, k = X.detach().numpy(), K.detach().numpy()
        h, w = k.shape
        out = np.array([[(x[i:i + h, j:j + w] * k).sum() for j in range(x.shape[1] - w + 1)]
                        for i in range(x.shape[0] - h + 1)])
        return torch.from_numpy(out).to(X.dtype)

    grading.check("corr2d", corr2d_numpy)

    def pool2d_branchy(X, pool_size, stride=None, padding=0, mode="max"):  # a branch on a value
        if bool((X != X).any()):
            raise ValueError("NaN")
        kh, kw = (pool_size, pool_size) if isinstance(pool_size, int) else pool_size
        sh, sw = (kh, kw) if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        fill = float("-inf") if mode == "max" else 0.0
        P = X.new_full((*X.shape[:-2], X.shape[-2] + 2 * ph, X.shape[-1] + 2 * pw), fill)
        P[..., ph:ph + X.shape[-2], pw:pw + X.shape[-1]] = X
        win = P.unfold(-2, kh, sh).unfold(-2, kw, sw)
        return win.amax(dim=(-1, -2)) if mode == "max" else win.mean(dim=(-1, -2))

    grading.check("pool2d", pool2d_branchy)


def test_meta_runs_are_reported_separately_from_the_real_devices():
    run, mixed = grading.runners.LocalRunner({"f": corr2d_zeros_without_device}).call_meta(
        "f", core.forbid([]), [torch.empty(3, 3, device="meta"), torch.empty(2, 2, device="meta")], {})
    assert run.error is not None and mixed == ["__setitem__", "cpu"]
    run, mixed = grading.runners.LocalRunner({"f": lambda X, K: X[1:, 1:] * K[0, 0]}).call_meta(
        "f", core.forbid([]), [torch.empty(3, 3, device="meta"), torch.empty(2, 2, device="meta")], {})
    assert run.error is None and mixed == [] and run.value.device.type == "meta"

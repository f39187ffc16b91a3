"""The behaviour line, in process: the kernel side counts what a function did (operators dispatched, calls
its code made, entries into forbidden packages) and the trusted side (cnngrader.grading.behaviour) judges
the counts. Each shortcut here passes the first line (tripwires, the dispatcher block) and is caught only
by this one; each honest style keeps its pass."""
from __future__ import annotations

import importlib

import pytest
import torch

from cnngrader.grading import behaviour, core
from cnngrader.kernel import probes, serialize
from cnngrader.kernel.guard import Policy, invoke

A2_POLICY = core.forbid(core.cnn(*core.CONV_OPS) + core.CONV + core.IM2COL, core.CONV_C + core.IM2COL_C,
                        core.CONV_ATEN + core.IM2COL_ATEN, core.LOW_LEVEL + core.NUMPY_CONV).policy
FIRST_LINE_ONLY = A2_POLICY._replace(modules=())  # the same policy without the package trace


def kernel_loop(X, K):
    kh, kw = K.shape
    Ho, Wo = X.shape[0] - kh + 1, X.shape[1] - kw + 1
    Y = X.new_zeros((Ho, Wo))
    for a in range(kh):
        for b in range(kw):
            Y = Y + X[a:a + Ho, b:b + Wo] * K[a, b]
    return Y


def pixel_loop(X, K):
    h, w = K.shape
    Y = X.new_zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y


def numpy_pixel_loop(X, K):
    x, k = X.numpy(), K.numpy()
    y = x[: x.shape[0] - k.shape[0] + 1, : x.shape[1] - k.shape[1] + 1].copy()
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[i, j] = (x[i:i + k.shape[0], j:j + k.shape[1]] * k).sum()
    return torch.from_numpy(y)


def strided_einsum(X, K):
    kh, kw = K.shape
    s0, s1 = X.stride()
    windows = X.as_strided((X.shape[0] - kh + 1, X.shape[1] - kw + 1, kh, kw), (s0, s1, s0, s1))
    return torch.einsum("ijab,ab->ij", windows, K)


def scipy_fftconvolve(X, K):
    signal = importlib.import_module("scipy." + "signal")
    y = getattr(signal, "fft" + "convolve")(X.numpy(), K.numpy()[::-1, ::-1], mode="valid")
    return torch.from_numpy(y.copy())


def work(fn, X, K, policy=A2_POLICY) -> behaviour.Work:
    out = serialize.loads(serialize.dumps(probes.call(fn, policy, [X, K], {}, count=True)))
    run = core.Run.from_dict(out)
    assert run.error is None and not run.shortcuts and not run.tampered, run
    return behaviour.work_of(run)


SMALL, LARGE, K = torch.rand(4, 4, dtype=torch.float64), torch.rand(16, 16, dtype=torch.float64), torch.rand(2, 2)


@pytest.mark.parametrize("fn, loops", [(kernel_loop, False), (strided_einsum, False), (pixel_loop, True),
                                       (numpy_pixel_loop, True)])
def test_the_work_grows_with_the_output_only_for_a_loop_over_it(fn, loops):
    K64 = K.double()
    small, large = work(fn, SMALL, K64), work(fn, LARGE, K64)
    assert behaviour.grows(small, large) is loops, (small, large)
    if not loops:
        assert small.steps == large.steps  # the same kernel: exactly the same steps
    sizes = behaviour.Sizes((), (), "X (4, 4)", "X (16, 16)", "the same (2, 2) kernel", "the output's pixels")
    reason = behaviour.loop_reason("corr2d", sizes, small, large, "")
    assert (reason is not None) is loops
    if loops:
        assert f"ran {small.steps} steps for X (4, 4) and {large.steps} for X (16, 16)" in reason


def test_a_matrix_product_is_counted_whatever_its_spelling():
    A, B = torch.rand(3, 4), torch.rand(4, 5)
    for fn in (lambda: A @ B, lambda: torch.einsum("ij,jk->ik", A, B), lambda: torch.tensordot(A, B, 1),
               lambda: torch.nn.functional.linear(A, B.T)):
        run = invoke(Policy(), fn, count=True)
        assert behaviour.Work(run.counts["ops"], 0).matmuls == 1, run.counts


def test_popping_the_counter_is_tampering():
    def pops():
        torch.utils._python_dispatch._pop_mode()
        return torch.zeros(2)

    assert invoke(Policy(), pops, count=True).tampered


def test_a_forbidden_package_is_seen_whatever_name_reached_it():
    X, K64 = torch.rand(6, 6, dtype=torch.float64), torch.rand(2, 3, dtype=torch.float64)
    caught = invoke(A2_POLICY, lambda: scipy_fftconvolve(X, K64))
    assert caught.error is None and caught.shortcuts == ["scipy.signal._signaltools.fftconvolve"]
    # The first line alone (tripwires on named functions, the dispatcher block) lets it through.
    assert invoke(FIRST_LINE_ONLY, lambda: scipy_fftconvolve(X, K64)).shortcuts == []
    assert torch.allclose(caught.value, kernel_loop(X, K64))


@pytest.mark.parametrize("counts", [None, 3, {"ops": [1]}, {"ops": {"mul": -1}}, {"ops": {"mul": 1.5}},
                                    {"ops": {}, "calls": "7"}, {"ops": {1: 2}}])
def test_malformed_counts_are_refused(counts):
    assert behaviour.work_of(core.Run(None, None, "", [], [], False, counts)) is None


def test_under_a_profiler_the_calls_are_unknown_and_the_operators_still_counted():
    import sys

    sys.setprofile(lambda *a: None)
    try:
        run = invoke(Policy(), lambda: torch.ones(3) * 2, count=True)
    finally:
        sys.setprofile(None)
    assert run.counts["calls"] is None and run.counts["ops"].get("mul") == 1

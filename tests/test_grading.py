"""cnngrader.kernel, the in-kernel grader, in process: correct code passes, wrong code fails with a reason, shortcuts
and tampering do not pay, and the assignment notebooks are consistent with it."""
from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO as ROOT
from torch import nn

import cnngrader
import cnnlib
from cnngrader import grading
from cnngrader.course import load_course
from cnngrader.grading import core
from cnngrader.grading.core import GradingError

IDS = list(load_course(ROOT).ids)
HAS_CUDA = torch.cuda.device_count() > 0


def _cells(nb_path: Path) -> list[dict]:
    return json.loads(nb_path.read_text())["cells"]


def _meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _solution_namespace(assignment: str) -> dict:
    """Run the setup and solution cells of a source notebook; return its namespace."""
    ns: dict = {}
    for cell in _cells(ROOT / "solutions" / assignment / f"{assignment}.ipynb"):
        meta = _meta(cell)
        if cell["cell_type"] == "code" and (meta.get("solution") or meta.get("grade_id") == "setup"):
            exec(compile("".join(cell["source"]), f"{assignment}:{meta['grade_id']}", "exec"), ns)
    return ns


@pytest.fixture(scope="module")
def solutions() -> dict[str, dict]:
    return {a: _solution_namespace(a) for a in IDS}


def _reason(name: str, fn) -> str:
    with pytest.raises(GradingError) as info:
        grading.check(name, fn)
    return str(info.value)


# --- student-style implementations -----------------------------------------------------------
def corr2d_loop(X, K):  # a loop over the kernel's entries (A2 refuses a loop over the output)
    h, w = K.shape
    Y = X.new_zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for a in range(h):
        for b in range(w):
            Y += X[a : a + Y.shape[0], b : b + Y.shape[1]] * K[a, b]
    return Y


def corr2d_vectorized(X, K):
    windows = X.unfold(0, K.shape[0], 1).unfold(1, K.shape[1], 1)  # (H', W', kh, kw)
    return torch.einsum("ijab,ab->ij", windows, K)


# --- correct code passes -----------------------------------------------------------------------
@pytest.mark.parametrize("assignment", IDS)
def test_notebook_solutions_pass_every_hidden_check(solutions, assignment):
    ns = solutions[assignment]
    names = [
        _meta(c)["grade_id"].removeprefix("hidden_")
        for c in _cells(ROOT / "solutions" / assignment / f"{assignment}.ipynb")
        if _meta(c).get("grade_id", "").startswith("hidden_")
    ]
    assert names and all(n in grading.CHECKS for n in names)
    for name in names:
        grading.check(name, ns[name])  # raises on failure


def test_a_vectorized_corr2d_passes():
    grading.check("corr2d", corr2d_vectorized)
    grading.check("corr2d", corr2d_loop)


def test_vectorized_pool2d_with_tensor_unfold_passes():
    def pool2d(X, pool_size, stride=None, padding=0, mode="max"):
        kh, kw = pool_size if isinstance(pool_size, tuple) else (pool_size, pool_size)
        sh, sw = (kh, kw) if stride is None else (stride if isinstance(stride, tuple) else (stride, stride))
        ph, pw = padding if isinstance(padding, tuple) else (padding, padding)
        H, W = X.shape[-2:]
        Xp = X.new_full((*X.shape[:-2], H + 2 * ph, W + 2 * pw), float("-inf") if mode == "max" else 0.0)
        Xp[..., ph : ph + H, pw : pw + W] = X
        win = Xp.unfold(-2, kh, sh).unfold(-2, kw, sw)  # (..., H', W', kh, kw)
        return win.amax(dim=(-2, -1)) if mode == "max" else win.mean(dim=(-2, -1))

    grading.check("pool2d", pool2d)


# --- wrong code fails with a reason -----------------------------------------------------------
def test_wrong_values_name_function_shapes_device_dtype_and_show_a_small_case():
    def corr2d(X, K):
        Y = corr2d_loop(X, K)
        return Y + (Y.numel() > 4)  # right on small outputs only

    reason = _reason("corr2d", corr2d)
    assert reason.startswith("corr2d returned wrong values for X (")
    assert "on cpu float32" in reason and "and K (" in reason
    assert "The smallest failing case:" in reason and "expected =" in reason and "got =" in reason
    assert "It fails on: cpu float32, cpu float64" in reason
    # the case shown is small enough to check by hand
    shown = reason.split("The smallest failing case:")[1]
    assert shown.count("\n") < 40


def test_off_by_one_output_size_fails_on_shape():
    def corr2d(X, K):
        h, w = K.shape
        Y = X.new_zeros((X.shape[0] - h, X.shape[1] - w))
        for i in range(Y.shape[0]):
            for j in range(Y.shape[1]):
                Y[i, j] = (X[i : i + h, j : j + w] * K).sum()
        return Y

    reason = _reason("corr2d", corr2d)
    assert re.match(r"corr2d returned shape \(0, 0\) for X \(1, 1\) and K \(1, 1\) on cpu float32; "
                    r"expected shape \(1, 1\)", reason), reason


def test_float64_in_float32_out_fails_on_dtype():
    def corr2d(X, K):
        return corr2d_loop(X, K).float()

    reason = _reason("corr2d", corr2d)
    assert "corr2d returned dtype float32" in reason and "cpu float64; expected float64" in reason


def test_wrong_type_and_exceptions_are_reasons():
    assert "returned list" in _reason("corr2d", lambda X, K: corr2d_loop(X, K).tolist())
    reason = _reason("corr2d", lambda X, K: X[10])
    assert reason.startswith("corr2d raised IndexError") and "X (1, 1)" in reason
    def unattempted(X, K):
        raise NotImplementedError()

    assert "replace `raise NotImplementedError()`" in _reason("corr2d", unattempted)
    assert "not a function" in _reason("corr2d", None)
    with pytest.raises(GradingError, match="no hidden checks named"):
        grading.check("corr3d", corr2d_loop)


def test_output_on_the_wrong_device_is_reported_before_values():
    # No GPU needed: the internal comparison with the expected output on the meta device.
    expected = torch.empty(2, 3, device="meta", dtype=torch.float64)
    got = torch.zeros(2, 3, dtype=torch.float64)
    reason = core.check_tensor_out("corr2d", got, expected, torch.float64, torch.device("meta"),
                                    "for X (3, 4) and K (2, 2) on meta float64")
    assert reason.startswith("corr2d returned a tensor on cpu for X (3, 4) and K (2, 2) on meta float64; "
                             "expected it on meta")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device; none present")
def test_cpu_output_for_cuda_input_fails():
    def corr2d(X, K):
        return corr2d_loop(X.cpu(), K.cpu())

    assert "returned a tensor on cpu" in _reason("corr2d", corr2d) and "cuda:0" in _reason("corr2d", corr2d)


def test_the_traceback_is_short():
    with pytest.raises(GradingError) as info:
        grading.check("corr2d", lambda X, K: X)
    assert info.value.__suppress_context__ and info.value.__cause__ is None
    assert len(info.traceback) <= 2  # this test's frame and grading.check
    assert isinstance(info.value, AssertionError)


# --- shortcuts ----------------------------------------------------------------------------------
def test_calling_torch_conv2d_fails_even_when_the_exception_is_caught():
    def corr2d(X, K):
        try:
            F.conv2d(X[None, None], K[None, None])
        except Exception:
            pass
        return corr2d_loop(X, K)

    assert "corr2d called torch.nn.functional.conv2d" in _reason("corr2d", corr2d)


def test_calling_cnnlib_through_an_alias_fails():
    from cnnlib.ops import corr2d as ref  # bound before the check: the tripwire on cnnlib.ops misses it

    assert "cnnlib.corr2d" in _reason("corr2d", lambda X, K: ref(X, K))
    conv = torch.conv2d
    assert "torch.conv2d" in _reason("corr2d", lambda X, K: conv(X[None, None], K[None, None])[0, 0])


def test_nn_conv2d_and_unfold_and_pooling_shortcuts_fail():
    def corr2d(X, K):
        _layer = nn.Conv2d(1, 1, K.shape, bias=False)  # built and never used
        return corr2d_loop(X, K)

    assert "torch.nn.Conv2d" in _reason("corr2d", corr2d)
    assert "torch.nn.functional.unfold" in _reason(
        "corr2d", lambda X, K: (F.unfold(X[None, None], K.shape)[0].T @ K.flatten()).reshape(
            X.shape[0] - K.shape[0] + 1, -1))

    def pool2d(X, pool_size, stride=None, padding=0, mode="max"):
        op = F.max_pool2d if mode == "max" else F.avg_pool2d
        return op(X[None], pool_size, stride, padding)[0]

    assert "pool2d called torch.nn.functional" in _reason("pool2d", pool2d)
    assert "torch.nn.functional.pad" in _reason("pad2d", lambda X, padding: F.pad(X, (padding,) * 4))


def test_06_shortcuts_are_cnnlib_versions_only(solutions):
    assert "lenet called cnnlib.lenet" in _reason("lenet", lambda: cnnlib.lenet("classic"))
    ns = solutions["06_lenet"]
    grading.check("lenet", ns["lenet"])  # nn.Conv2d and friends are allowed there
    reason = _reason("evaluate_accuracy", lambda net, it, device: cnnlib.evaluate_accuracy(net, it, device))
    assert "cnnlib.evaluate_accuracy" in reason


def test_tripwires_are_removed_afterwards():
    conv, pad, ref = F.conv2d, F.pad, cnnlib.corr2d
    _reason("corr2d", lambda X, K: F.conv2d(X[None, None], K[None, None])[0, 0])
    assert F.conv2d is conv and torch.conv2d is conv and F.pad is pad and cnnlib.corr2d is ref
    assert sys.getprofile() is None
    assert cnnlib.corr2d(torch.ones(2, 2), torch.ones(1, 1)).shape == (2, 2)


# --- tampering ----------------------------------------------------------------------------------
def _wrong_corr2d(X, K):
    return corr2d_loop(X, K) * 1.5


def test_rebinding_cnnlib_corr2d_and_torch_comparisons_changes_nothing(monkeypatch):
    monkeypatch.setattr(cnnlib, "corr2d", _wrong_corr2d)
    monkeypatch.setattr(sys.modules["cnnlib.ops"], "corr2d", _wrong_corr2d)
    monkeypatch.setattr(torch, "allclose", lambda *a, **k: True)
    monkeypatch.setattr(torch, "equal", lambda *a, **k: True)
    monkeypatch.setattr(torch, "isclose", lambda a, b, **k: torch.ones_like(a, dtype=torch.bool))
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: [])
    assert "returned wrong values" in _reason("corr2d", _wrong_corr2d)


def test_the_grading_module_is_read_only():
    with pytest.raises(AttributeError, match="read-only"):
        grading.check = lambda *a, **k: None
    with pytest.raises(AttributeError, match="read-only"):
        del grading.check
    with pytest.raises(AttributeError, match="read-only"):
        grading._fail = lambda reason: None
    with pytest.raises(AttributeError, match="read-only"):
        core.fail = lambda reason: None
    with pytest.raises(AttributeError, match="read-only"):
        type(grading).check = property(lambda self: (lambda *a, **k: None))
    with pytest.raises(TypeError):
        grading.TOLERANCES[torch.float32] = grading.Tol(1.0, 1.0)
    with pytest.raises(AttributeError, match="cannot be replaced"):
        cnngrader.grading = object()
    with pytest.raises(AttributeError, match="cannot be deleted"):
        del cnngrader.grading
    # Editing the module's __dict__ does not reach the public names: they are descriptors of its class.
    vars(grading)["check"] = lambda *a, **k: None
    try:
        assert "returned wrong values" in _reason("corr2d", _wrong_corr2d)
    finally:
        vars(grading).pop("check", None)
    from cnngrader import grading as again

    assert again is grading


def test_changing_the_profile_hook_is_reported():
    def corr2d(X, K):
        sys.setprofile(None)
        return corr2d_loop(X, K)

    assert "sys.setprofile" in _reason("corr2d", corr2d)


def test_mutating_the_inputs_does_not_corrupt_later_cases():
    def corr2d(X, K):
        Y = corr2d_loop(X, K)
        X.zero_()
        K.zero_()
        return Y

    grading.check("corr2d", corr2d)
    grading.check("corr2d", corr2d_loop)


# --- warnings and output ------------------------------------------------------------------------
def test_warnings_and_stderr_of_correct_code_do_not_fail(capfd):
    def corr2d(X, K):
        warnings.warn("harmless", UserWarning)
        print("debugging", file=sys.stderr)
        print("debugging")
        return corr2d_loop(X, K)

    grading.check("corr2d", corr2d)
    out = capfd.readouterr()
    assert out.err == "" and out.out == ""


def test_warnings_are_mentioned_when_the_code_fails():
    def corr2d(X, K):
        warnings.warn("suspicious", RuntimeWarning)
        return corr2d_loop(X, K) + 1

    assert "Your code emitted warnings: RuntimeWarning: suspicious" in _reason("corr2d", corr2d)


# --- per-assignment failure modes ---------------------------------------------------------------
def test_01_counts_and_matrix(solutions):
    ns = solutions["01_fc_to_conv"]

    def as_float(i, o, bias=True):
        return float(ns["fc_param_count"](i, o, bias))

    assert "(an int, got float)" in _reason("fc_param_count", as_float)
    assert "fc_param_count(1, 1) returned 1; expected 2" == _reason(
        "fc_param_count", lambda i, o, bias=True: ns["fc_param_count"](i, o, False))

    def transposed(K, shape):
        return ns["conv_as_matrix"](K.T.contiguous(), shape[::-1])

    assert "conv_as_matrix returned" in _reason("conv_as_matrix", transposed)
    assert "cnnlib.corr2d" in _reason("conv_as_matrix", lambda K, s: torch.stack(
        [cnnlib.corr2d(e.reshape(s), K).flatten() for e in torch.eye(s[0] * s[1], dtype=K.dtype)], dim=1))


def test_02_conv2d_layer_failures(solutions):
    ns = solutions["02_cross_correlation"]
    corr2d = ns["corr2d"]

    class NoBias(ns["Conv2D"]):
        def forward(self, X):
            return torch.stack([corr2d(X, K) for K in self.weight])

    class Detached(ns["Conv2D"]):
        def forward(self, X):
            return torch.stack([corr2d(X, K) + b for K, b in zip(self.weight.detach(), self.bias.detach())])

    class WeightUnused(ns["Conv2D"]):
        def forward(self, X):
            return torch.stack([corr2d(X, K) + b for K, b in zip(self.weight.detach(), self.bias)])

    class FirstKernelOnly(ns["Conv2D"]):  # the chapter's single-kernel layer
        def forward(self, X):
            return (corr2d(X, self.weight[0]) + self.bias[0])[None]

    assert "Conv2D.forward returned wrong values" in _reason("Conv2D", NoBias)
    assert "without a gradient" in _reason("Conv2D", Detached)
    assert "does not use self.weight" in _reason("Conv2D", WeightUnused)
    assert "Conv2D.forward returned shape (1, " in _reason("Conv2D", FirstKernelOnly)


    class OffByOne(ns["Conv2D"]):  # an empty output for the smallest cases: reported, never a crash
        def forward(self, X):
            return torch.stack([(corr2d(X, K) + b)[:-1, :-1] for K, b in zip(self.weight, self.bias)])

    assert "Conv2D.forward returned shape (1, 0, 0)" in _reason("Conv2D", OffByOne)
    assert core.fmt(torch.zeros(2, 0, 3)) == "<an empty tensor of shape (2, 0, 3)>"


def test_02_corr2d_with_a_loop_over_the_output_still_passes_on_values():
    # The task asks for a loop over the kernel; the hidden tests check values, and say so in the task.
    grading.check("corr2d", corr2d_loop)


def test_02_learn_kernel_failures(solutions):
    corr2d = solutions["02_cross_correlation"]["corr2d"]

    def lstsq(X, Y, kernel_size, num_steps, lr):
        kh, kw = kernel_size
        A = torch.stack([X[a : a + Y.shape[0], b : b + Y.shape[1]].flatten() for a in range(kh) for b in range(kw)], 1)
        return torch.linalg.lstsq(A, Y.flatten()[:, None]).solution.reshape(kh, kw)

    def mean_loss(X, Y, kernel_size, num_steps, lr):
        K = torch.zeros(kernel_size, dtype=X.dtype, device=X.device, requires_grad=True)
        for _ in range(num_steps):
            mse = ((corr2d(X, K) - Y) ** 2).mean()
            mse.backward()
            with torch.no_grad():
                K -= lr * K.grad
            K.grad.zero_()
        return K.detach()

    def float32_kernel(X, Y, kernel_size, num_steps, lr):
        return solutions["02_cross_correlation"]["learn_kernel"](X, Y, kernel_size, num_steps, lr).float()

    assert "torch.linalg.lstsq" in _reason("learn_kernel", lstsq)
    reason = _reason("learn_kernel", mean_loss)
    assert "did not fit the data" in reason and "summed (not averaged)" in reason
    assert "learn_kernel returned dtype float32" in _reason("learn_kernel", float32_kernel)


def test_03_padding_and_shapes(solutions):
    ns = solutions["03_padding_stride"]
    assert "a pair of ints" in _reason("conv_output_shape", lambda n, k, padding=0, stride=1: (
        ns["conv_output_shape"](n if isinstance(n, int) else n[0], k if isinstance(k, int) else k[0],
                                padding if isinstance(padding, int) else padding[0],
                                stride if isinstance(stride, int) else stride[0])))
    def one_sided(X, padding):  # drops the bottom rows of padding
        ph = padding if isinstance(padding, int) else padding[0]
        return ns["pad2d"](X, padding)[..., : X.shape[-2] + ph, :]
    assert "pad2d returned shape" in _reason("pad2d", one_sided)

    def no_stride_on_width(X, K, padding=0, stride=1):
        s = stride if isinstance(stride, int) else stride[0]
        return ns["corr2d_padded"](X, K, padding, (s, s))

    reason = _reason("corr2d_padded", no_stride_on_width)
    assert "corr2d_padded returned shape" in reason and "stride=(" in reason
    assert "receptive_field" in _reason("receptive_field", lambda layers: 1 + sum(k - 1 for k, s in layers))


def test_03_corr2d_padded_loophole_fails():
    """F.pad, then cnnlib's corr2d, then slicing for the stride: a correct output without writing the task."""
    def loophole(X, K, padding=0, stride=1):
        ph, pw = padding if isinstance(padding, tuple) else (padding, padding)
        sh, sw = stride if isinstance(stride, tuple) else (stride, stride)
        return cnnlib.corr2d(F.pad(X, (pw, pw, ph, ph)), K)[::sh, ::sw]

    g = torch.Generator().manual_seed(0)
    X, K = torch.rand(5, 6, generator=g), torch.rand(2, 3, generator=g)
    # the loophole's answer is right
    torch.testing.assert_close(loophole(X, K, (1, 2), (2, 3)), cnnlib.corr2d_padded(X, K, (1, 2), (2, 3)))
    reason = _reason("corr2d_padded", loophole)
    assert "corr2d_padded called" in reason and ("torch.nn.functional.pad" in reason or "cnnlib" in reason)

    def own_pad(X, K, padding=0, stride=1):
        return cnnlib.corr2d(cnnlib.pad2d(X, padding), K)

    assert "corr2d_padded called cnnlib" in _reason("corr2d_padded", own_pad)


def test_04_channels(solutions):
    ns = solutions["04_channels"]
    assert "corr2d_multi_in returned wrong values" in _reason(
        "corr2d_multi_in", lambda X, K: cnnlib.corr2d(X[0], K[0]))
    assert "corr2d_multi_in_out returned wrong values" in _reason(
        "corr2d_multi_in_out", lambda X, K: ns["corr2d_multi_in_out"](X, K).transpose(1, 2))
    assert "torch.nn.functional.conv2d" in _reason(
        "corr2d_multi_in_out_1x1", lambda X, K: F.conv2d(X[None], K)[0])


def test_05_pooling(solutions):
    ns = solutions["05_pooling"]

    def stride_one_by_default(X, pool_size, stride=None, padding=0, mode="max"):
        return ns["pool2d"](X, pool_size, 1 if stride is None else stride, padding, mode)

    def max_only(X, pool_size, stride=None, padding=0, mode="max"):
        return ns["pool2d"](X, pool_size, stride, padding, "max")

    def pads_max_with_zeros(X, pool_size, stride=None, padding=0, mode="max"):
        return ns["pool2d"](X + 10, pool_size, stride, padding, mode) - 10

    assert "pool2d returned shape" in _reason("pool2d", stride_one_by_default)
    assert "mode='avg'" in _reason("pool2d", max_only)
    assert "padding=" in _reason("pool2d", pads_max_with_zeros)
    assert "global_avg_pool2d returned shape" in _reason("global_avg_pool2d", lambda X: X.mean(dim=(-2, -1)))


def _modern(conv_bias=False, pool=nn.MaxPool2d, act=nn.ReLU, bn=True):
    norm = (lambda n: [nn.BatchNorm2d(n)]) if bn else (lambda n: [])
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2, bias=conv_bias), *norm(6), act(), pool(2, 2),
        nn.Conv2d(6, 16, kernel_size=5, bias=conv_bias), *norm(16), act(), pool(2, 2), nn.Flatten(),
        nn.Linear(400, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, 10))


def test_06_lenet_failures():
    grading.check("lenet", _modern)
    assert _reason("lenet", lambda: _modern(act=nn.Sigmoid)).startswith("lenet() layer 2 is Sigmoid; expected ReLU")
    assert "the budget is 61,728. Do the convolutions still have a bias?" in _reason(
        "lenet", lambda: _modern(conv_bias=True))
    assert "layer 1 is ReLU; expected BatchNorm2d" in _reason("lenet", lambda: _modern(bn=False))
    assert "layer 3 is AvgPool2d(kernel (2, 2), stride (2, 2)); expected MaxPool2d" in _reason(
        "lenet", lambda: _modern(pool=nn.AvgPool2d))
    assert "lenet() layer 1 is Sigmoid; expected BatchNorm2d" in _reason(  # the classic net
        "lenet", lambda: _modern(conv_bias=True, pool=nn.AvgPool2d, act=nn.Sigmoid, bn=False))
    assert "expected a torch.nn.Module" in _reason("lenet", lambda: "LeNet")


def test_06_training_loop_failures(solutions):
    ns = solutions["06_lenet"]

    def no_eval(net, data_iter, device):
        correct = total = 0
        with torch.no_grad():
            for X, y in data_iter:
                correct += (net(X.to(device)).argmax(dim=1) == y.to(device)).sum().item()
                total += y.numel()
        return correct / total

    def not_restored(net, data_iter, device):
        acc = ns["evaluate_accuracy"](net, data_iter, device)
        net.eval()
        return acc

    def with_grad(net, data_iter, device):
        net.eval()
        out = [(net(X).argmax(dim=1) == y).float().mean().item() for X, y in data_iter]
        net.train()
        return sum(out) / len(out)

    assert "in training mode" in _reason("evaluate_accuracy", no_eval)
    assert "left the net in eval mode" in _reason("evaluate_accuracy", not_restored)
    assert "gradients on" in _reason("evaluate_accuracy", with_grad)

    def no_zero_grad(net, train_iter, loss, optimizer, device):
        net.train()
        for X, y in train_iter:
            loss(net(X), y).backward()
            optimizer.step()
        return 0.0, 0.0

    def batch_mean(net, train_iter, loss, optimizer, device):
        net.train()
        losses, correct, total = [], 0, 0
        for X, y in train_iter:
            y_hat = net(X)
            batch_loss = loss(y_hat, y)
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
            losses.append(batch_loss.item())
            correct += (y_hat.argmax(dim=1) == y).sum().item()
            total += y.numel()
        return sum(losses) / len(losses), correct / total

    def stays_in_eval(net, train_iter, loss, optimizer, device):
        net.eval()
        return _train_without_mode(net, train_iter, loss, optimizer, device)

    assert "optimizer.zero_grad()" in _reason("train_epoch", no_zero_grad)
    assert "weight each batch's mean loss by its size" in _reason("train_epoch", batch_mean)
    assert "in eval mode" in _reason("train_epoch", stays_in_eval)


def _train_without_mode(net, train_iter, loss, optimizer, device):
    loss_sum, correct, total = 0.0, 0, 0
    for X, y in train_iter:
        y_hat = net(X)
        batch_loss = loss(y_hat, y)
        optimizer.zero_grad()
        batch_loss.backward()
        optimizer.step()
        loss_sum += batch_loss.item() * len(y)
        correct += (y_hat.argmax(dim=1) == y).sum().item()
        total += len(y)
    return loss_sum / total, correct / total


# --- speed and the notebooks --------------------------------------------------------------------
def test_all_hidden_checks_of_the_six_assignments_pass_in_one_process(solutions):
    """Every hidden check of every assignment, one after another in one process, on the solutions. How long
    they take is measured by `make bench` (its grading section), not asserted here."""
    # the first meta operator needs it; grading kernels import it at start-up
    import torch._dynamo  # noqa: F401 (imported for its side effect)

    ran = 0
    for assignment in IDS:
        ns = solutions[assignment]
        for cell in _cells(ROOT / "solutions" / assignment / f"{assignment}.ipynb"):
            gid = _meta(cell).get("grade_id", "")
            if gid.startswith("hidden_"):
                grading.check(gid.removeprefix("hidden_"), ns[gid.removeprefix("hidden_")])
                ran += 1
    assert ran >= len(IDS)


def test_generated_notebooks_are_up_to_date():
    from cnngrader.pipeline.authoring import write_sources

    assert write_sources(load_course(ROOT), check=True) == []


@pytest.mark.parametrize("assignment", IDS)
def test_unattempted_stub_fails_with_its_own_message(assignment):
    """Run the student version's setup and stubs: an unattempted function fails its hidden check
    with the stub's NotImplementedError. (The notebooks' layout is checked in test_nbgrader_lint.py.)"""
    release = json.loads((ROOT / "exercises" / assignment / f"{assignment}.ipynb").read_text())
    ns: dict = {}
    questions = []
    for cell in release["cells"]:
        if cell["cell_type"] == "code" and (_meta(cell).get("solution") or _meta(cell).get("grade_id") == "setup"):
            try:
                exec("".join(cell["source"]), ns)
            except NotImplementedError:  # a question's stub runs at the top level: its answer stays unset
                questions.append(_meta(cell)["grade_id"])
    name = next(_meta(c)["grade_id"] for c in release["cells"] if _meta(c).get("solution"))
    assert "NotImplementedError" in _reason(name, ns[name])
    assert questions, "every assignment has a conceptual question"
    from cnngrader.grading.runners import LocalRunner

    for q in questions:
        assert q not in ns
        with pytest.raises(GradingError) as info:
            grading.run_check(q, LocalRunner({}))
        assert str(info.value) == f"{q} is not defined: set {q} = <your answer> in the cell above, and run that cell."


# --- conceptual questions and drawn value cases ------------------------------------------------
def test_conceptual_answers_come_from_the_secret_file_and_are_checked():
    assert _reason("pool_gradients", 16) == ("pool_gradients = 16 is not the right answer. Work it out "
                                             "again from the chapter; the answer is an int.")
    assert _reason("pool_gradients", (4, 16)) == "pool_gradients is (4, 16); the answer is an int."
    assert _reason("pool_gradients", 4.0).startswith("pool_gradients is 4.0")
    assert _reason("learned_kernel", ((3, 4), (2, 1))).startswith("learned_kernel = ((3, 4), (2, 1)) is not the right")
    assert _reason("learned_kernel", torch.tensor([[4, 3], [2, 1]])) == (
        "learned_kernel is a torch.Tensor; the answer is a tuple of 2 tuples of 2 ints.")
    grading.check("learned_kernel", [[4, 3], [2, 1]])  # a list is accepted for a tuple
    grading.check("pool_overlap_grad", 1)  # an int is accepted for a number
    for aid in IDS:
        text = (ROOT / "assignments" / aid / "checks.py").read_text()
        assert "ANSWERS = core.answers(__file__)" in text and (ROOT / "assignments" / aid / "answers.toml").is_file()


def test_without_the_answers_file_only_the_form_is_checked():
    from cnngrader.grading.runners import LocalRunner

    check = core.answer_check("pool_gradients", None, (0, 0))
    form = "has the right form .a tuple of 2 ints.; its value is checked when graded"
    with pytest.raises(core.NotChecked, match=form):
        check("pool_gradients", LocalRunner({"pool_gradients": (1, 2)}))
    with pytest.raises(GradingError, match="the answer is a tuple of 2 ints") as info:
        check("pool_gradients", LocalRunner({"pool_gradients": "4, 16"}))
    assert not isinstance(info.value, core.NotChecked)
    with pytest.raises(GradingError, match="pool_gradients is not defined"):
        check("pool_gradients", LocalRunner({}))
    assert issubclass(core.NotChecked, GradingError)  # a graded run without the file scores 0, with the reason
    assert core.answers(str(ROOT / "nowhere" / "checks.py")) is None
    assert core.answers(str(ROOT / "assignments" / "05_pooling" / "checks.py"))["pool_gradients"] == 4
    with pytest.raises(KeyError, match="no answer 'missing'"):
        core.answer_check("missing", {"pool_gradients": (4, 16)}, (0, 0))


def test_value_cases_are_drawn_from_the_secret_with_the_edge_cases_kept():
    reg = grading.registry(ROOT)
    checks = {m.__name__.rsplit("_", 1)[-1]: m for m in reg.modules}
    for module, name, edge in (("conv", "fc_param_count", "fc_param_count(1, 1)"),
                               ("conv", "conv_param_count", "conv_param_count(1, 1, 1)"),
                               ("stride", "conv_output_shape", "conv_output_shape(8, 3)"),
                               ("stride", "receptive_field", "receptive_field([])")):
        draw = checks[module].CASES[name]
        a, b = [c.desc for c in draw(1)], [c.desc for c in draw(2)]
        assert a != b and edge in a and edge in b, (name, a, b)
        assert [c.desc for c in draw(None)] == [c.desc for c in draw(None)]


# --- results that are not finite numbers -----------------------------------------------------------
NAN, INF = float("nan"), float("inf")


def test_off_fails_a_non_finite_number_where_a_finite_one_is_expected():
    assert core.off(NAN, 0.5, atol=1e-9) and core.off(INF, 0.5, rtol=1.0, atol=1.0) and core.off(-INF, 1e300)
    assert core.off(10**400, 1.0) and core.off(NAN, INF) and core.off(INF, -INF) and core.off(1.0, NAN)
    assert not core.off(0.5 + 1e-10, 0.5, atol=1e-9) and not core.off(NAN, NAN) and not core.off(INF, INF)
    assert core.off(0.5 + 1e-8, 0.5, atol=1e-9) and not core.off(3, 3.0)
    tol = core.TOLERANCES[torch.float64]
    assert core.where_differs([1.0, NAN], [1.0, 2.0], tol)[0] == 1 and core.where_differs([INF], [0.0], tol)
    assert core.where_differs([1.0, NAN, -INF], [1.0, NAN, -INF], tol) is None
    assert core.not_finite(NAN) == " (not a finite number)"
    assert core.not_finite(0.5) == "" and core.not_finite("x") == ""


def test_06_non_finite_results_fail_with_a_reason(solutions):
    ns = solutions["06_lenet"]

    def nan_accuracy(net, data_iter, device):
        ns["evaluate_accuracy"](net, data_iter, device)
        return NAN

    def nan_epoch(net, train_iter, loss, optimizer, device):
        ns["train_epoch"](net, train_iter, loss, optimizer, device)
        return NAN, NAN

    def inf_loss(net, train_iter, loss, optimizer, device):
        return INF, ns["train_epoch"](net, train_iter, loss, optimizer, device)[1]

    def nan_accuracy_only(net, train_iter, loss, optimizer, device):
        return ns["train_epoch"](net, train_iter, loss, optimizer, device)[0], NAN

    def huge_loss(net, train_iter, loss, optimizer, device):
        return 10**400, ns["train_epoch"](net, train_iter, loss, optimizer, device)[1]

    assert "evaluate_accuracy returned nan (not a finite number)" in _reason("evaluate_accuracy", nan_accuracy)
    assert "returned mean loss nan (not a finite number)" in _reason("train_epoch", nan_epoch)
    assert "returned mean loss inf (not a finite number)" in _reason("train_epoch", inf_loss)
    assert "returned accuracy nan (not a finite number)" in _reason("train_epoch", nan_accuracy_only)
    assert "(not a finite number)" in _reason("train_epoch", huge_loss)


def test_non_finite_tensors_fail_with_a_reason(solutions):
    ns = solutions["02_cross_correlation"]

    def nan_corner(X, K):
        Y = ns["corr2d"](X, K)
        Y[0, 0] = NAN
        return Y

    def diverging(X, Y, kernel_size, num_steps, lr):
        return torch.full(kernel_size, NAN, dtype=X.dtype, device=X.device)

    reason = _reason("corr2d", nan_corner)
    assert "corr2d returned nan" in reason and "element 0 (flattened) is nan (not a finite number)" in reason
    assert "learn_kernel returned a kernel holding nan (not a finite number)" in _reason("learn_kernel", diverging)


def test_a_non_finite_answer_is_not_the_answer():
    check = core.answer_check("x", {"x": 0.5}, 0.0)

    class Runner:
        def __init__(self, value):
            self.v = value

        def value(self, name):
            return {"kind": "value", "value": self.v}

    for bad in (NAN, INF, 10**400):
        with pytest.raises(GradingError, match="the answer is a number"):
            check("x", Runner(bad))
    check("x", Runner(0.5))

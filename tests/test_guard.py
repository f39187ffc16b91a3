"""The guard in the kernel, the scan and the trusted side's parsing, in process (fast; the same
cases go through the real sandboxed pipeline in tests/test_tamper_guard.py).
"""
from __future__ import annotations

import base64
import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from cnngrader import check_verdict
from cnngrader.grading import core, scan
from cnngrader.grading.core import GradingError
from cnngrader.grading.runners import LocalRunner, RemoteRunner
from cnngrader.kernel import guard, probes, serialize
from cnngrader.kernel.guard import Policy, aten_ops, invoke

CONV_POLICY = Policy(tuple(core.CONV), tuple(core.CONV_C), tuple(core.CONV_ATEN))


# ---------------------------------------------------------------------------------------------
# The trusted side is total: every malformed reply is a SerializeError, never a crash.
def _tensor_reply(**changes) -> str:
    body = {"dtype": "float64", "shape": [1], "device": "cpu", "requires_grad": False,
            "data": base64.b64encode(b"\0" * 8).decode()}
    body.update(changes)
    return json.dumps({"tensor": body})


@pytest.mark.parametrize("reply", [
    _tensor_reply(shape=["x"]), _tensor_reply(shape=[True]), _tensor_reply(shape=[2**70]), _tensor_reply(shape=[-1]),
    _tensor_reply(device="cuda:7"), _tensor_reply(device="tpu"), _tensor_reply(device=7), _tensor_reply(data="!!"),
    _tensor_reply(data=5), _tensor_reply(dtype="complex64"), "[" * 100_000 + "]" * 100_000,
    '{"dict": ' * 50_000 + "1" + "}" * 50_000, '{"size": ["a"]}', '{"float": "1e400"}', '{"device": "cuda:99"}',
    "not json", '{"tensor": []}', "\ud800",
])
def test_malformed_replies_are_serialize_errors(reply):
    with pytest.raises(serialize.SerializeError):
        serialize.loads(reply)


def test_nesting_is_measured_outside_strings():
    serialize.check_nesting(json.dumps({"s": "[" * 1000}))  # brackets inside a string do not count
    with pytest.raises(serialize.SerializeError, match="nested more than"):
        serialize.check_nesting("[" * 100 + "]" * 100)


@pytest.mark.parametrize("reply", [_tensor_reply(shape=["x"]), "[" * 100_000 + "]" * 100_000, 7])
def test_a_remote_runner_turns_a_bad_reply_into_a_grading_error(reply):
    runner = RemoteRunner(lambda request: reply, secret=1)
    with pytest.raises(GradingError, match="could not be checked"):
        runner.call("corr2d", core.forbid([]), [torch.ones(2, 2)], {})


def test_a_reply_that_parses_but_breaks_the_check_is_that_checks_zero():
    def broken():
        for t, gr, dev in [[True, True, "cpu"], 0]:
            pass

    reason = check_verdict.checked("evaluate_accuracy", broken)
    assert reason.startswith("evaluate_accuracy could not be checked") and "TypeError" in reason


def test_the_submission_tree_walk_is_iterative_and_bounded(tmp_path):
    from cnngrader.pipeline.safefiles import MAX_TREE_DEPTH
    from cnngrader.pipeline.safefiles import tree as _tree

    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(3000):  # past PATH_MAX and Python's recursion limit
        os.mkdir("d", dir_fd=fd)
        new = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = new
    os.close(fd)
    (tmp_path / "a.ipynb").write_text("{}")
    (tmp_path / "d" / "b.txt").write_text("b")
    try:
        found = dict(_tree(tmp_path))
        assert set(found) == {"a.ipynb", "d/b.txt"} and MAX_TREE_DEPTH < 3000
    finally:
        (tmp_path / "d" / "b.txt").unlink()
        remove_deep(tmp_path / "d")


def remove_deep(top) -> None:
    """Remove a chain top/d/d/... of any depth: each step moves the chain up one level (no long path,
    no recursion, no pile of open handles)."""
    top = Path(top)
    spare = top.with_name(top.name + ".up")
    while True:
        for entry in os.scandir(top):
            if entry.name != "d" or not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
        if not (top / "d").is_dir():
            os.rmdir(top)
            return
        os.rename(top / "d", spare)
        os.rmdir(top)
        os.rename(spare, top)


# ---------------------------------------------------------------------------------------------
# Correct code stays correct; the scan reads what IPython runs.
def _tamper(source: str):
    return scan.tampering(scan.parse([(0, source)]))


@pytest.mark.parametrize("source", [
    "import sys\nIN_COLAB = 'google.colab' in sys.modules\n",
    "import sys\nif 'google.colab' not in sys.modules:\n    print('local')\n",
    "import importlib, cnnlib\ncnnlib = importlib.reload(cnnlib)\n",
    "from importlib import reload\nimport cnnlib.ops\nreload(cnnlib.ops)\n",
    "import inspect\ndef f():\n    print([fi.function for fi in inspect.stack()])\n",
    "_here = %pwd\nx = 1\n", "%%time\nx = 1\n", "!ls\nx = 1\n",
])
def test_honest_code_is_not_tampering(source):
    assert _tamper(source) is None


@pytest.mark.parametrize("source, name", [
    ("_here = %pwd\nimport cnngrader.kernel.guard\n", "cnngrader.kernel.guard"),
    ("%%time\nimport cnngrader.kernel\n", "cnngrader.kernel"),
    ("import sys\nm = sys.modules\n", "sys.modules"),
    ("import sys\nsys.modules['cnngrader.kernel'] = None\n", "sys.modules"),
    ("import importlib, torch\nimportlib.reload(torch)\n", "importlib.reload"),
    ("import inspect\nf = inspect.stack()[1].frame.f_locals\n", "f_locals"),
    ("def f(g):\n    return g.__globals__\n", "__globals__"),
    ("def f(g):\n    return getattr(g, '__closure__')\n", "__closure__"),
])
def test_tampering_is_found_behind_magics_and_membership_tests(source, name):
    found = _tamper(source)
    assert found is not None and found.name == name


def test_the_route_scan_reads_cells_that_start_with_a_magic():
    cells = scan.parse([(0, "_here = %pwd\nimport torch.nn.functional as F\ndef corr2d(X, K):\n"
                            "    return F.conv2d(X, K)\n")])
    assert scan.route(cells, "corr2d", core.CONV).name == "torch.nn.functional.conv2d"


def test_same_padding_is_described_by_what_it_does():
    from cnngrader.kernel.probes import describe_layer

    same = describe_layer(torch.nn.Conv2d(1, 6, kernel_size=5, padding="same"))
    assert same == describe_layer(torch.nn.Conv2d(1, 6, kernel_size=5, padding=2)) == ["conv", 1, 6, [5, 5], [1, 1],
                                                                                        [2, 2]]
    assert describe_layer(torch.nn.Conv2d(1, 6, kernel_size=5, padding="valid"))[5] == [0, 0]
    assert describe_layer(torch.nn.Conv2d(1, 6, kernel_size=4, padding="same"))[5] == ["same", "same"]


# ---------------------------------------------------------------------------------------------
# Structural aten bans, against the whole registry of the pinned torch.
def _registry() -> list[str]:
    return sorted(torch._C._dispatch_get_all_op_names())


def _family(words: tuple[str, ...], skip: tuple[str, ...] = ()) -> set[str]:
    out = set()
    for name in _registry():
        ns, _, op = name.partition("::")
        base = op.split(".")[0]
        if ns in ("aten", "mkldnn", "mkldnn_prepacked") and any(w in base for w in words) \
                and not any(s in base for s in skip):
            out.add(name)
    return out


def test_every_convolution_and_pooling_operator_of_the_registry_is_banned():
    conv = set(aten_ops(core.CONV_ATEN[0]))
    im2col = set(aten_ops(core.IM2COL_ATEN[0]))  # banned only where a task's text says so
    pool = set(aten_ops(core.POOL_ATEN[0]))
    assert _family(("conv",), skip=("convert",)) <= conv
    assert _family(("im2col", "col2im")) <= im2col and not im2col & conv
    assert _family(("pool",)) <= pool
    for must in ("aten::slow_conv_dilated3d", "aten::slow_conv_transpose3d", "aten::slow_conv_transpose3d.out",
                 "aten::conv_depthwise3d", "aten::_conv_depthwise2d", "aten::convolution.out",
                 "mkldnn::_convolution_pointwise", "aten::conv2d.padding", "aten::cudnn_convolution"):
        assert must in conv, must
    assert {"aten::im2col", "aten::col2im.out"} <= im2col
    for must in ("aten::max_pool2d_with_indices.out", "aten::fractional_max_pool3d", "aten::avg_pool3d.out"):
        assert must in pool, must
    for allowed in ("aten::unfold", "aten::as_strided", "aten::mm", "aten::einsum", "aten::constant_pad_nd",
                    "aten::_convert_indices_from_coo_to_csr", "aten::fft_rfft2"):
        assert allowed not in conv | pool, allowed


def test_the_block_holds_every_operator_of_the_family_while_armed():
    ops = aten_ops(core.CONV_ATEN[0]) + aten_ops(core.POOL_ATEN[0])
    policy = Policy((), (), tuple(core.CONV_ATEN + core.POOL_ATEN))

    def unblocked():
        return [op for op in ops if "cnngrader:0" not in torch._C._dispatch_dump_table(op)]

    run = invoke(policy, unblocked)
    assert run.error is None and run.value == []
    assert len(unblocked()) == len(ops)  # and nothing stays blocked afterwards


@pytest.mark.parametrize("call", [
    lambda X, K: torch.ops.aten.slow_conv_dilated3d(X[None, None, None], K[None, None, None], [1, *K.shape]),
    lambda X, K: torch.ops.aten.slow_conv_transpose3d(X[None, None, None], K[None, None, None], [1, *K.shape]),
    lambda X, K: torch.nn.functional.conv2d(X[None, None], K[None, None]),
])
def test_blocked_operators_raise_and_are_recorded_even_under_inference_mode(call):
    X, K = torch.ones(4, 4), torch.ones(2, 2)
    with torch.inference_mode():
        run = invoke(CONV_POLICY, lambda: call(X, K))
    assert isinstance(run.error, RuntimeError) and run.shortcuts


def test_private_engine_helpers_numpy_and_scipy_are_caught_whatever_the_name():
    import importlib

    import numpy as np

    X, K = torch.ones(4, 4, dtype=torch.float64), torch.ones(2, 2, dtype=torch.float64)
    flat = getattr(importlib.import_module("cnnlib." + "_engine"), "_corr" + "_flat")  # captured before
    signal = importlib.import_module("scipy." + "signal")
    for call in (lambda: flat(X[None, None], K[None, None], (0, 0)),
                 lambda: signal.correlate2d(X.numpy(), K.numpy(), mode="valid"),
                 lambda: np.correlate(X.numpy()[0], K.numpy()[0])):
        assert invoke(CONV_POLICY, call).shortcuts


# ---------------------------------------------------------------------------------------------
# A guard the student's code cannot reach.
def test_the_policy_class_is_read_only():
    with pytest.raises(AttributeError):
        Policy.from_json = classmethod(lambda cls, data: cls())
    assert Policy.from_json({"aten": ["x"]}).aten == ("x",)


def test_a_destroyed_block_is_found_by_its_canary():
    def disarm():
        import sys

        frame = sys._getframe(1)
        while "libs" not in frame.f_locals:
            frame = frame.f_back
        for lib in frame.f_locals["libs"]:
            lib.reset()
        return torch.ops.aten.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2))

    run = invoke(CONV_POLICY, disarm)
    assert run.error is None and run.tampered
    assert not invoke(CONV_POLICY, lambda: 1).tampered


def _conv(X=None):
    return torch.ops.aten.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2))


def test_a_batch_holds_one_block_and_each_call_records_its_own_uses():
    block = guard.hold(CONV_POLICY)
    try:
        first, second = invoke(CONV_POLICY, lambda: 1), invoke(CONV_POLICY, _conv)
        with pytest.raises(RuntimeError, match="may not be used"):
            _conv()  # between two calls (a display hook of the notebook's): still blocked, and no call's use
        third = invoke(CONV_POLICY, lambda: 2)
    finally:
        guard.release(block)
    assert (first.shortcuts, first.tampered, third.shortcuts, third.tampered) == ([], False, [], False)
    assert isinstance(second.error, RuntimeError) and second.shortcuts == ["torch.ops.aten.conv2d"]
    assert _conv().shape == (1, 1, 2, 2)  # released: nothing stays blocked


def test_a_batch_block_destroyed_between_two_calls_makes_the_next_call_tampered():
    block = guard.hold(CONV_POLICY)
    try:
        assert not invoke(CONV_POLICY, lambda: 1).tampered
        for lib in block.libs:  # what a display hook that found the block could do between two calls
            lib.reset()
        run = invoke(CONV_POLICY, _conv)
    finally:
        guard.release(block)
    assert run.error is None and run.tampered


def test_a_batch_in_the_kernel_side_registers_its_block_once():
    from cnngrader.kernel import answer

    def f(X):  # the block each call runs under
        return id(guard._HELD[-1]) if guard._HELD else None

    call = {"op": "call", "args": serialize.encode({"args": [torch.ones(3, 3)], "kwargs": {}})}
    request = json.dumps({"name": "f", "batch": 3, "policy": CONV_POLICY._asdict(), "calls": [call] * 3})
    held = {serialize.loads(reply)["value"] for reply in answer(request, {"f": f})}
    assert len(held) == 1 and None not in held
    assert guard._HELD == [] and _conv().shape == (1, 1, 2, 2)


def test_serialising_ignores_patched_encoders_warnings_and_modes(monkeypatch):
    monkeypatch.setattr(base64, "b64encode", lambda data, *a, **k: b"AAAA")
    monkeypatch.setattr(json, "dumps", lambda *a, **k: '"forged"')
    text = serialize.dumps(torch.ones(2))
    assert serialize.loads(text).tolist() == [1.0, 1.0]


def test_a_warning_formatted_while_armed_cannot_take_the_shortcut():
    class Sly(UserWarning):
        reads = 0

        def __str__(self):  # harmless when warn() reads it; the shortcut when the grader formats it
            Sly.reads += 1
            if Sly.reads > 1:
                self.args[0].copy_(torch.ops.aten.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2))[0, 0])
            return "sly"

    def corr2d():
        Y = torch.zeros(2, 2)
        warnings.warn(Sly(Y))
        return Y

    run = invoke(CONV_POLICY, corr2d, serialize.encode_untrusted)
    assert run.error is None and run.shortcuts == ["torch.ops.aten.conv2d"]
    out = serialize.loads(serialize.dumps(probes.run_dict(run)))
    assert out["value"].tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_a_torch_function_mode_cannot_swap_the_serialised_value():
    from torch.overrides import TorchFunctionMode

    class Swap(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            return torch.full_like(out, 7.0) if getattr(func, "__name__", "") == "detach" else out

    with Swap():
        out = probes.run_dict(invoke(Policy(), lambda: torch.zeros(2), serialize.encode_untrusted))
    assert serialize.loads(serialize.dumps(out))["value"].tolist() == [0.0, 0.0]


def test_an_encoded_value_from_the_student_stays_opaque():
    forged = serialize.Encoded({"tensor": {}})
    run = invoke(Policy(), lambda: forged, serialize.encode_untrusted)
    out = serialize.loads(serialize.dumps(probes.run_dict(run)))
    assert out["value"] == serialize.Opaque("Encoded")


def test_the_probe_log_cannot_be_rewritten_through_the_net():
    state = {"params": [p.detach() for p in probes.probe_net({"params": []}).parameters()]}

    def evaluate(net, batches, device):
        for X, _ in batches:
            net(X)
        with pytest.raises(AttributeError):
            net[0].log  # reading the attribute is the test
        return 1.0

    out = probes.evaluate(evaluate, Policy(), state, [(torch.randn(2, 1, 3, 4), torch.zeros(2, dtype=torch.long))],
                          "cpu")
    assert out["log"] == [[True, True, "cpu"]]


def test_process_creation_is_refused_while_a_probed_function_runs():
    import subprocess
    import sys

    run = invoke(CONV_POLICY, lambda: subprocess.run([sys.executable, "-c", "pass"]))
    assert isinstance(run.error, RuntimeError) and any("new process" in s for s in run.shortcuts)
    assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0  # and allowed again afterwards


def test_local_checks_still_pass_a_correct_function():
    def corr2d(X, K):
        kh, kw = K.shape
        Ho, Wo = X.shape[0] - kh + 1, X.shape[1] - kw + 1
        Y = X.new_zeros((Ho, Wo))
        for a in range(kh):
            for b in range(kw):
                Y = Y + X[a : a + Ho, b : b + Wo] * K[a, b]
        return Y

    from cnngrader import grading

    grading.run_check("corr2d", LocalRunner({"corr2d": corr2d}))
    assert guard  # the module stays importable and locked

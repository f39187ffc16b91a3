"""Tamper fixtures against the guard in the kernel and the trusted side's parsing, each with its fair
score, graded through the real sandboxed pipeline (as tests/test_tamper.py does).

Each fixture is the instructor's solution with one change. The attacks reach what the static scan
cannot read (names built at run time) and go after the kernel's serializer, the grader's own objects,
the dispatcher block and the replies; the faults are replies, notebooks and folders that do not match
the protocol; the fair ones are correct code that must keep full marks.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from conftest import REPO
from nbtools import cell, maxima, scores_of, with_cells, with_new_cell, write_submissions
from test_guard import remove_deep
from traitlets.config import Config

from cnngrader.course import load_course
from cnngrader.pipeline.grade import course_config, generate, grade_course, solution_submission
from cnngrader.pipeline.kernel_start import stop_zygote
from cnngrader.pipeline.report import gradebook_rows
from cnngrader.pipeline.sandbox import SandboxUnavailable, check_available

try:
    check_available()
except SandboxUnavailable as e:  # pragma: no cover - CI installs bubblewrap
    pytestmark = pytest.mark.skip(reason=f"the sandbox is unavailable: {e}")
else:
    pytestmark = pytest.mark.slow

A1, A2, A6 = "01_fc_to_conv", "02_cross_correlation", "06_lenet"
F = "F"  # full points


def sol(aid: str, gid: str) -> str:
    return cell(solution_submission(aid, course=load_course(REPO)), gid).source


# F.conv2d, reached by names the static scan cannot read.
HIDDEN_CONV = """
import importlib
_conv2d = getattr(importlib.import_module("torch.nn." + "functional"), "conv" + "2d")
"""
ZEROS = "X.new_zeros((X.shape[0] - K.shape[0] + 1, X.shape[1] - K.shape[1] + 1))"

# Attacks on the kernel's side: (assignment, grade id, new source, fair scores).
ATTACKS = {
    # The serializer's base64 encoder, patched to put F.conv2d's bytes in the reply.
    "patched_base64": (A2, "corr2d", HIDDEN_CONV + f"""
_b64 = importlib.import_module("base" + "64")
_orig, _seen = _b64.b64encode, {{}}
def _swap(data, *args, **kwargs):
    if _seen:
        Y = _conv2d(_seen["X"][None, None], _seen["K"][None, None])[0, 0].contiguous().cpu()
        if Y.numel() * Y.element_size() == len(data):
            data = Y.numpy().tobytes()
    return _orig(data, *args, **kwargs)
_b64.b64encode = _swap
def corr2d(X, K):
    _seen["X"], _seen["K"] = X, K
    return {ZEROS}
""", {"hidden_corr2d": 0}),
    # A warning whose __str__ fills the output while the guard formats warnings.
    "warning_str": (A2, "corr2d", HIDDEN_CONV + f"""
import warnings
class Sly(UserWarning):
    def __str__(self):
        X, K, Y = self.args
        Y.copy_(_conv2d(X[None, None], K[None, None])[0, 0])
        return "sly"
def corr2d(X, K):
    Y = {ZEROS}
    warnings.warn(Sly(X, K, Y))
    return Y
""", {"hidden_corr2d": 0}),
    # A global torch function mode, imported by a built name, that swaps the serializer's detach().
    "function_mode_detach": (A2, "corr2d", HIDDEN_CONV + f"""
_Mode = getattr(importlib.import_module("torch." + "overrides"), "TorchFunction" + "Mode")
_seen = {{}}
class Swap(_Mode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == "detach" and _seen:
            X, K = _seen.pop("X"), _seen.pop("K")
            return _conv2d(X[None, None], K[None, None])[0, 0]
        return func(*args, **(kwargs or {{}}))
Swap().__enter__()
def corr2d(X, K):
    _seen["X"], _seen["K"] = X, K
    return {ZEROS}
""", {"hidden_corr2d": 0}),
    # A patched json.dumps rewrites the reply with cnnlib's answer.
    "patched_json": (A1, "fc_param_count", """
import importlib, re
_json = importlib.import_module("js" + "on")
_ref = getattr(importlib.import_module("cnn" + "lib"), "fc_param_" + "count")
_orig, _seen = _json.dumps, []
def _dumps(obj, *args, **kwargs):
    text = _orig(obj, *args, **kwargs)
    if _seen and '"value":-1,' in text:
        text = text.replace('"value":-1,', '"value":%d,' % _ref(*_seen[-1][0], **_seen[-1][1]))
    return text
_json.dumps = _dumps
def fc_param_count(in_features, out_features, bias=True):
    _seen.append(((in_features, out_features), {"bias": bias}))
    return -1
""", {"hidden_fc_param_count": 0}),
    # A child Python started at cell time computes F.conv2d on what corr2d sends it. The sandbox's other
    # processes are stopped while a probed function runs: corr2d waits for its child until the time limit.
    "child_process": (A2, "corr2d", """
import json, subprocess, sys
CHILD = '''
import importlib, json, sys, torch
conv = getattr(importlib.import_module("torch.nn." + "functional"), "conv" + "2d")
for line in sys.stdin:
    X, K = json.loads(line)
    print(json.dumps(conv(torch.tensor(X)[None, None], torch.tensor(K)[None, None])[0, 0].tolist()), flush=True)
'''
_child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
def corr2d(X, K):
    _child.stdin.write(json.dumps([X.tolist(), K.tolist()]) + "\\n")
    _child.stdin.flush()
    return torch.tensor(json.loads(_child.stdout.readline()), dtype=X.dtype, device=X.device)
""", {"hidden_corr2d": 0}),
    # Operators and helpers that the lists of forbidden names missed.
    "slow_conv_dilated3d": (A2, "corr2d", """
def corr2d(X, K):
    op = getattr(getattr(torch, "op" + "s").aten, "slow_conv_dilated3d")
    return op(X[None, None, None], K[None, None, None], [1, *K.shape])[0, 0, 0]
""", {"hidden_corr2d": 0}),
    "slow_conv_transpose3d": (A2, "corr2d", """
def corr2d(X, K):
    kh, kw = K.shape
    op = getattr(getattr(torch, "op" + "s").aten, "slow_conv_transpose3d")
    full = op(X[None, None, None], K.flip(0, 1)[None, None, None], [1, kh, kw])[0, 0, 0]
    return full[kh - 1 : X.shape[0], kw - 1 : X.shape[1]]
""", {"hidden_corr2d": 0}),
    "engine_corr_flat": (A2, "corr2d", """
import importlib
_flat = getattr(importlib.import_module("cnnlib." + "_engine"), "_corr" + "_flat")
def corr2d(X, K):
    return _flat(X[None, None], K[None, None], (0, 0))[0, 0]
""", {"hidden_corr2d": 0}),
    "scipy_built_name": (A2, "corr2d", """
import importlib
_signal = importlib.import_module("scipy." + "signal")
def corr2d(X, K):
    Y = getattr(_signal, "correlate" + "2d")(X.detach().cpu().numpy(), K.detach().cpu().numpy(), mode="valid")
    return torch.from_numpy(Y).to(X)
""", {"hidden_corr2d": 0}),
    "numpy_built_name": (A2, "corr2d", """
import importlib
_np = importlib.import_module("num" + "py")
def corr2d(X, K):
    x, k = X.detach().cpu().numpy(), K.detach().cpu().numpy()
    Ho, Wo = x.shape[0] - k.shape[0] + 1, x.shape[1] - k.shape[1] + 1
    rows = [sum(getattr(_np, "corr" + "elate")(x[i + a], k[a], "valid") for a in range(k.shape[0])) for i in range(Ho)]
    return torch.from_numpy(_np.stack(rows)).to(X)[:, :Wo]
""", {"hidden_corr2d": 0}),
    # The grader's own objects, reached without a name the scan reads.
    "policy_from_globals": (A2, "corr2d", HIDDEN_CONV + """
from cnngrader.precheck import check_all
try:
    _sys = getattr(check_all, "__glob" + "als__")["sys"]
    _guard = getattr(_sys, "mod" + "ules")["cnngrader.kernel.guard"]
    _guard.Policy.from_json = classmethod(lambda cls, data: cls())
except Exception as e:
    print("refused:", type(e).__name__)
def corr2d(X, K):
    return _conv2d(X[None, None], K[None, None])[0, 0]
""", {"hidden_corr2d": 0}),
    "swap_answer": (A2, "corr2d", HIDDEN_CONV + """
import json
_kernel = getattr(__import__("s" + "ys"), "mod" + "ules")["cnngrader." + "kernel"]
_orig = vars(_kernel)["answer"]
def _answer(request, namespace, *args, **kwargs):
    req = json.loads(request)
    req["policy"] = {}
    return _orig(json.dumps(req), namespace, *args, **kwargs)
vars(_kernel)["answer"] = _answer
def corr2d(X, K):
    return _conv2d(X[None, None], K[None, None])[0, 0]
""", {"hidden_corr2d": 0}),
    "frame_disarm": (A2, "corr2d", HIDDEN_CONV + """
_getframe = getattr(__import__("s" + "ys"), "_get" + "frame")
def corr2d(X, K):
    frame, found = _getframe(1), None
    while frame is not None:
        local = getattr(frame, "f_loc" + "als")
        if "calls" in local and ("lib" in local or "libs" in local):
            found = local
            break
        frame = getattr(frame, "f_ba" + "ck")
    if found is not None:
        for lib in found.get("libs") or [found.get("lib")]:
            for name in ("_destroy", "reset"):
                if hasattr(lib, name):
                    getattr(lib, name)()
                    break
    Y = _conv2d(X[None, None], K[None, None])[0, 0]
    if found is not None:
        found["calls"].clear()
    return Y
""", {"hidden_corr2d": 0}),
    # evaluate_accuracy in training mode with gradients, then the probe's log rewritten.
    "forged_probe_log": (A6, "evaluate_accuracy", """
def evaluate_accuracy(net, data_iter, device):
    correct, total = 0, 0
    for X, y in data_iter:
        X, y = X.to(device), y.to(device)
        correct += (net(X).argmax(dim=1) == y).sum().item()
        total += y.numel()
    try:
        log = net[0].log
        log[:] = [[False, False, str(device)] for _ in log]
    except Exception:
        pass
    return correct / total
""", {"hidden_evaluate_accuracy": 0}),
    # IPython runs `_here = %pwd`; the scan must read the rest of the cell too.
    "magic_hides_import": (A2, "corr2d", """_here = %pwd
import cnngrader.kernel.guard as _guard
""" + HIDDEN_CONV + """
def corr2d(X, K):
    return _conv2d(X[None, None], K[None, None])[0, 0]
""", "zero"),
}

# Replies rewritten on their way out of the kernel (by a display hook reached through built names):
# the trusted side must give that check a 0 with a reason, and go on.
FORGE = """
import re
def _forge(msg):
    data = msg.get("content", {{}}).get("data", {{}})
    for key in list(data):
        if key.endswith("reply+json"):
            data[key] = {rewrite}
    return msg
getattr(get_ipython(), "display" + "_pub").register_hook(_forge)
"""
# The checks whose replies carry tensors; the conceptual answer's reply carries none, so it keeps its point.
TENSOR_CHECKS = {"hidden_corr2d": 0, "hidden_Conv2D": 0, "hidden_convolve2d": 0, "hidden_learn_kernel": 0,
                 "hidden_learned_kernel": F}
FORGED = {
    "reply_shape_x": (A2, "re.sub(r'\"shape\":\\[[^\\]]*\\]', '\"shape\":[\"x\"]', data[key], count=1)",
                      TENSOR_CHECKS),
    "reply_cuda7": (A2, "data[key].replace('\"device\":\"cpu\"', '\"device\":\"cuda:7\"')",
                    TENSOR_CHECKS),
    "reply_deep": (A2, "'[' * 100000 + ']' * 100000", "zero"),
    "reply_log_zero": (A6, "data[key].replace('\"log\":[', '\"log\":[0,', 1)",
                       {"hidden_evaluate_accuracy": 0, "hidden_train_epoch": 0}),
}

# Correct code that must keep full marks: (assignment, grade id, prefix or None, replace (old, new) or None).
FAIR = {
    "colab_check": (A2, "corr2d", "import sys\nIN_COLAB = 'google.colab' in sys.modules\n", None),
    "reload_cnnlib": (A2, "corr2d", "import importlib, cnnlib\ncnnlib = importlib.reload(cnnlib)\n", None),
    "inspect_stack": (A2, "corr2d",
                      "import inspect\nprint('stack:', [f.function for f in inspect.stack()][:3])\n_once = []\n",
                      ('"""', 'if not _once:  # inspect.stack() is slow: once is enough to debug\n'
                              '        _once.append(print("called from",'
                              ' [f.function for f in inspect.stack()][:3]))\n    """')),
    "pwd_magic": (A2, "corr2d", "_here = %pwd\n", None),
    "same_padding": (A6, "lenet", None, ("padding=2", "padding='same'")),
}


def _deep_json(nb, depth: int) -> str:
    """The notebook's JSON with `depth` nested lists in its metadata."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    nb.metadata["deep"] = "@DEEP@"
    return nbformat.writes(nb).replace('"@DEEP@"', "[" * depth + "]" * depth)


def _deep_folder(folder: Path, depth: int) -> None:
    """folder/d/d/.../d, `depth` levels, made through directory handles (the path is past PATH_MAX)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            new = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
        with open(os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write("deep")
    finally:
        os.close(fd)


def build(release: Path) -> dict:
    course = load_course(REPO)
    base = {aid: solution_submission(aid, release, course) for aid in (A1, A2, A6)}
    subs, fair = {}, {}
    for sid, (aid, gid, source, expect) in ATTACKS.items():
        subs[sid], fair[sid] = {aid: with_cells(base[aid], **{gid: source})}, expect
    for sid, (aid, rewrite, expect) in FORGED.items():
        nb = with_new_cell(base[aid], FORGE.format(rewrite=rewrite), after="setup")
        subs[sid], fair[sid] = {aid: nb}, expect
    for sid, (aid, gid, prefix, replace) in FAIR.items():
        source = sol(aid, gid)
        if replace is not None:
            assert replace[0] in source, (sid, replace)
            source = source.replace(replace[0], replace[1], 1)
        subs[sid], fair[sid] = {aid: with_cells(base[aid], **{gid: (prefix or "") + source})}, "full"
    subs["deep_folder"], fair["deep_folder"] = {A2: base[A2]}, "reported"
    subs["zz_solution"], fair["zz_solution"] = {A2: base[A2]}, "full"
    return {"subs": subs, "fair": fair, "base": base}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("tamper_guard")
    generate([A1, A2, A6], root, release_directory=root / "release")
    built = build(root / "release")
    write_submissions(root, built["subs"])
    _deep_folder(root / "submitted" / "deep_folder" / A2, 3000)
    # Notebooks with bytes that are not UTF-8 or deep metadata are graded: tests/test_tamper_behaviour.py.
    c = Config()
    c.Execute.timeout = 30
    c.GradingExecute.unresponsive_grace = 3.0
    c.GradingExecute.max_memory_mb = 2048
    c.GradingExecute.secret = 11
    started = time.perf_counter()
    try:
        result = grade_course(root, jobs=2, config=c)
    finally:
        stop_zygote()
    rows = gradebook_rows(course_config(root))
    yield SimpleNamespace(root=root, result=result, rows=rows, fair=built["fair"],
                          seconds=time.perf_counter() - started)
    for chain in root.glob("*/deep_folder/*/d"):
        remove_deep(chain)  # pytest's own clean-up recurses


GRADED = sorted([*ATTACKS, *FORGED, *FAIR, "zz_solution"])
UNREADABLE = ("deep_folder",)


@pytest.mark.parametrize("student", GRADED)
def test_fair_score(batch, student):
    got, top = scores_of(batch, student), maxima(batch, student, automatic=True)
    assert got, f"{student} was not graded: {batch.result.failures}"
    fair = batch.fair[student]
    if fair == "full":
        fair = dict.fromkeys(top, F)
    elif fair == "zero":
        fair = dict.fromkeys(top, 0)
    want = {c: (top[c] if v == F else v) for c, v in fair.items()}
    assert {c: got.get(c) for c in want} == want, f"{student}: {got}"


def _hidden_text(batch, student: str, aid: str) -> str:
    nb = nbformat.read(batch.root / "autograded" / student / aid / f"{aid}.ipynb", as_version=4)
    return "\n".join(str(o.get("evalue", "")) for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.parametrize("student, words", [
    ("reply_shape_x", "reply was malformed"), ("reply_cuda7", "a device the grader does not have"),
    ("reply_deep", "nested more than"), ("reply_log_zero", "did not hold what the check expects"),
    ("child_process", "did not return within"),  # the call's own limit (core.call_limit) comes first
    ("frame_disarm", "the grader needs"),
])
def test_a_bad_reply_or_a_disarmed_guard_is_a_zero_with_a_reason(batch, student, words):
    aid = A6 if student == "reply_log_zero" else A2
    assert words in _hidden_text(batch, student, aid)


def test_unreadable_submissions_are_reported_in_one_line_and_the_batch_goes_on(batch):
    """A folder nested 3,000 deep is reported on one line (as a corrupt notebook is), and every other
    submission is graded."""
    failures = batch.result.failures
    for sid in UNREADABLE:
        mine = [f for f in failures if f.startswith(f"{sid}/")]
        assert len(mine) == 1 and "\n" not in mine[0] and "not graded" in mine[0], failures
    assert "nested more than" in [f for f in failures if f.startswith("deep_folder/")][0]
    others = [f for f in failures if not f.startswith(UNREADABLE)]
    assert others == [], others

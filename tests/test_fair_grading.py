"""Grading real student code fairly: device mistakes show without a GPU (the meta device), a route is banned
only where the task's text bans it, and each reason names the real bug."""
from __future__ import annotations

import importlib.util
import re

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO as ROOT

from cnngrader import cells, grading
from cnngrader.course import load_course
from cnngrader.grading import core, scan
from cnngrader.grading.core import GradingError

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
    for a in range(h):
        for b in range(w):
            Y += X[a:a + Y.shape[0], b:b + Y.shape[1]] * K[a, b].item()  # needs data: inconclusive on meta
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
        Ho, Wo = x.shape[0] - h + 1, x.shape[1] - w + 1
        out = sum(x[a:a + Ho, b:b + Wo] * k[a, b] for a in range(h) for b in range(w))
        return torch.from_numpy(np.asarray(out)).to(X.dtype)

    if torch.cuda.device_count() == 0:  # on a GPU it leaves the device, and fails there
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


# --- 2. a ban exists only where the task's text states it ----------------------------------------
_NEGATION = re.compile(r"\b(do not|don't|nor|not a|does not count)\b", re.IGNORECASE)
_HEADER = "cnnlib's version"  # "fail a function that calls ... (cnnlib's version or PyTorch's)"
# A category of banned routes and what a ban sentence must say for it.
_CATEGORIES = {
    "convolutions": (core.CONV + core.CONV_C, lambda s: "convolution" in s),
    "im2col": (core.IM2COL + core.IM2COL_C, lambda s: "F.unfold" in s or "im2col" in s),
    "padding": (core.PAD + core.PAD_C, lambda s: "F.pad" in s or "torch.nn.functional.pad" in s),
    "pooling": (core.POOL + core.POOL_C, lambda s: "pooling functions" in s),
    "solvers": (core.SOLVE + ["numpy.linalg", "scipy"], lambda s: "torch.linalg.lstsq" in s),
    "NumPy/SciPy convolutions": (core.NUMPY_CONV, lambda s: "NumPy" in s and "SciPy" in s and "convol" in s
                                 or "numpy.convolve" in s),
    "NumPy padding": (core.NUMPY_PAD, lambda s: "numpy.pad" in s),
    "NumPy/SciPy pooling": (core.NUMPY_POOL, lambda s: "scipy.ndimage" in s and "block_reduce" in s),
}


def _checks_module(aid: str):
    spec = importlib.util.spec_from_file_location(f"_bans_{aid}", ROOT / "assignments" / aid / "checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sections(aid: str) -> tuple[str, dict[str, str]]:
    """The task's text before its first section, and each solution cell's section (from its heading to it)."""
    text = (ROOT / "assignments" / aid / f"{aid}.md").read_text()
    prose = re.sub(r"```\{code-cell\}.*?```", "", text, flags=re.DOTALL)
    intro = prose.split("\n## ", 1)[0]
    out = {}
    for m in re.finditer(r"\nnbgrader:\n(.*?)\n---", text, flags=re.DOTALL):
        found = re.search(r"grade_id: (\w+)", m.group(1))
        if found and "solution: true" in m.group(1):
            heading = text.rfind("\n## ", 0, m.start())
            out[found.group(1)] = re.sub(r"```\{code-cell\}.*?```", "", text[heading:m.start()], flags=re.DOTALL)
    return intro, out


def _ban_sentences(text: str) -> list[str]:
    """The bans of a text: each sentence (or clause after a semicolon) with a negation, from the negation on,
    or for "X does not count", the clause after the last colon."""
    out = []
    for part in re.split(r"(?<=[.;])\s+", " ".join(text.split())):
        found = _NEGATION.search(part)
        if found is None:
            continue
        out.append(part.rsplit(": ", 1)[-1] if found.group(1) == "does not count" else part[found.start():])
    return out


def _named(token: str) -> str:
    """A route as the text writes it (`F.unfold`, `nn.Conv2d`, `corr2d`) as its dotted name."""
    for short, full in (("F.", "torch.nn.functional."), ("nn.", "torch.nn.")):
        if token.startswith(short):
            return full + token[len(short):]
    return token if "." in token else f"cnnlib.{token}"


@pytest.mark.parametrize("aid", IDS)
def test_each_banned_route_is_named_in_the_task_text_and_each_ban_in_the_text_is_enforced(aid):
    module = _checks_module(aid)
    # the notebook students get: its "How this notebook is graded" paragraph is generated from the checks
    release = nbformat.read(ROOT / "exercises" / aid / f"{aid}.ipynb", as_version=4)
    text = "\n".join(cell.source for cell in release.cells if cell.cell_type == "markdown")
    intro, sections = _sections(aid)
    for name, forbidden in getattr(module, "FORBIDDEN", {}).items():
        bans = _ban_sentences(intro) + _ban_sentences(sections[name])
        static = set(forbidden.static)
        # each route the checks forbid is named: cnnlib's own versions by the notebook's header sentence
        for route in static:
            if route.startswith("cnnlib."):
                assert _HEADER in " ".join(text.split()), f"{aid}: {name} bans cnnlib's {route}; the header says so"
                continue
            if route in core.LOW_LEVEL:
                continue  # other names for the banned operators (torch.ops.aten.conv2d...), checked below
            hits = [cat for cat, (routes, said) in _CATEGORIES.items() if route in routes]
            assert hits, f"{aid}: {name} bans {route}, which no category of the task's text covers"
            assert any(_CATEGORIES[cat][1](" ".join(bans)) for cat in hits), \
                f"{aid}: {name} bans {route} ({hits[0]}), but its text does not say so: {bans}"
        if static & set(core.LOW_LEVEL):
            assert static - set(core.LOW_LEVEL) - {r for r in static if r.startswith("cnnlib.")}, \
                f"{aid}: {name} bans torch.ops/torch._C without banning any operator"
        # each route a ban sentence names is enforced by the scan
        for sentence in bans:
            for token in re.findall(r"`([\w.]+)`", sentence):
                route = _named(token)
                assert scan._matches(route, forbidden.static), \
                    f"{aid}: the text of {name} bans `{token}` ({route}), but its checks do not: {sentence!r}"
        for cat, (routes, said) in _CATEGORIES.items():
            if any(said(s) for s in bans) and cat in ("convolutions", "padding", "pooling"):
                assert set(routes) <= static, f"{aid}: the text of {name} bans {cat}; its checks miss some"


def test_window_views_are_allowed_unless_the_text_forbids_them():
    A4 = "04_channels"
    for name, forbidden in _checks_module(A4).FORBIDDEN.items():
        assert not set(core.IM2COL) & set(forbidden.static), name
    for name in ("pool2d", "global_avg_pool2d"):
        assert "numpy.lib.stride_tricks" not in _checks_module("05_pooling").FORBIDDEN[name].static

    def corr2d_multi_in_out(X, K):  # im2col and one matrix product
        C_out, C, kh, kw = K.shape
        cols = F.unfold(X[None], (kh, kw))[0]  # (C*kh*kw, L)
        Y = K.reshape(C_out, -1) @ cols  # (C_out, L)
        return Y.reshape(C_out, X.shape[1] - kh + 1, X.shape[2] - kw + 1)

    grading.check("corr2d_multi_in_out", corr2d_multi_in_out)

    def corr2d_multi_in(X, K):  # a window view and einsum
        windows = X.unfold(1, K.shape[1], 1).unfold(2, K.shape[2], 1)  # (C, H', W', kh, kw)
        return torch.einsum("cijab,cab->ij", windows, K)

    grading.check("corr2d_multi_in", corr2d_multi_in)

    def corr2d(X, K):  # A2's text forbids im2col
        cols = F.unfold(X[None, None], K.shape)[0]  # (kh*kw, L)
        return (K.reshape(1, -1) @ cols).reshape(X.shape[0] - K.shape[0] + 1, -1)

    assert "torch.nn.functional.unfold" in _reason("corr2d", corr2d)


# --- 3. reasons point at the bug ----------------------------------------------------------------------
def _grade(sources: list[tuple[int, str]], name: str, hung: dict | None = None) -> str:
    """The hidden cell of `name` graded by the trusted side, with the kernel side answering in process."""
    from cnngrader import kernel
    from cnngrader.pipeline import verdict

    ns: dict = {}
    for _, source in sources:
        exec(compile(source, "<cell>", "exec"), ns)
    outputs = verdict.grade_cell([name], lambda request: kernel.answer(request, ns), 5, sources, str(ROOT), hung)
    return "\n".join(o.get("evalue", "") or o.get("text", "") for o in outputs)


def test_a_refused_route_comes_with_the_value_checks_reason():
    source = '''import numpy as np
import torch

def pad2d(X, padding):
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    if not isinstance(X, torch.Tensor):
        return np.pad(X, ph)  # never reached by the tests
    Y = X.new_zeros((*X.shape[:-2], X.shape[-2] + 2 * ph, X.shape[-1] + 2 * ph))  # pw forgotten
    Y[..., ph:ph + X.shape[-2], ph:ph + X.shape[-1]] = X
    return Y
'''
    out = _grade([(1, source)], "pad2d")
    assert "pad2d uses numpy.pad" in out and "The value checks also failed" in out and "returned shape" in out


def test_a_helper_redefined_further_down_is_not_blamed_on_the_function_above():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in (
        "import torch\ndef shift_sum(X, K):\n    Ho, Wo = X.shape[0] - K.shape[0] + 1, X.shape[1] - K.shape[1] + 1\n"
        "    Y = X.new_zeros((Ho, Wo))\n    for a in range(K.shape[0]):\n        for b in range(K.shape[1]):\n"
        "            Y = Y + X[a:a + Ho, b:b + Wo] * K[a, b]\n    return Y\n",
        "def corr2d(X, K):\n    return shift_sum(X, K)\n",
        "# the hidden cell of corr2d",
        "import torch.nn.functional as F\n"
        "def shift_sum(X, K):\n    return F.conv2d(X[None, None], K[None, None])[0, 0]\n",
    )]
    above = cells.student_sources(nb, set(), before=2)
    assert [i for i, _ in above] == [0, 1]
    assert "hidden tests of corr2d: passed" in _grade(above, "corr2d")
    everything = cells.student_sources(nb, set())
    assert "corr2d uses torch.nn.functional.conv2d (at cell 4" in _grade(everything, "corr2d")


def test_a_check_of_a_function_that_timed_out_fails_at_once():
    source = "import torch\ndef corr2d(X, K):\n    while True:\n        pass\n\nclass Conv2D(torch.nn.Module):\n" \
             "    def forward(self, X):\n        return corr2d(X, X)\n"
    for name in ("corr2d", "Conv2D"):
        out = _grade([(1, source)], name, hung={"corr2d": "within 5 s, in the hidden tests of cell 4"})
        assert f"{name} was not run: corr2d" in out and "did not return within 5 s" in out


def test_a_cell_that_calls_a_timed_out_function_is_found():
    from cnngrader.pipeline import verdict

    sources = [(1, "def corr2d(X, K):\n    while True:\n        pass\n"),
               (2, "class Conv2D:\n    def forward(self, X):\n        return corr2d(X, X)\n"),
               (3, "def unrelated(x):\n    return x\n")]
    defined = verdict.defined_names(sources)
    calls = verdict.top_level_calls("layer = Conv2D()\nlayer.forward(1)\nprint(unrelated(2))\n", defined)
    assert calls == {"Conv2D", "unrelated"}
    assert verdict.reaches(sources, calls, {"corr2d": "x"}) == "corr2d"
    assert verdict.reaches(sources, {"unrelated"}, {"corr2d": "x"}) is None
    assert verdict.top_level_calls(sources[1][1], defined) == set()  # defining a class runs none of its methods
    assert verdict.top_level_defines("def corr2d(X, K):\n    return X\n") == {"corr2d"}


def test_an_ndarray_result_is_named():
    def pool2d(X, pool_size, stride=None, padding=0, mode="max"):
        return X.detach().cpu().numpy()

    assert "returned an ndarray (NumPy)" in _reason("pool2d", pool2d)


def test_evaluate_accuracy_is_checked_from_both_starting_modes():
    def evaluate_accuracy(net, data_iter, device):
        net.eval()
        hits = n = 0
        with torch.no_grad():
            for X, y in data_iter:
                hits += (net(X.to(device)).argmax(dim=1) == y.to(device)).sum().item()
                n += y.numel()
        net.train()
        return hits / n

    reason = _reason("evaluate_accuracy", evaluate_accuracy)
    assert "left the net in training mode" in reason and "in eval mode before the call" in reason


# --- 4. every kind of check limits each call by its reference's time ---------------------------------------
class _LimitLog(grading.runners.LocalRunner):
    """A LocalRunner that notes, per request that runs the student's code, the limit it would carry."""

    def __init__(self, namespace):
        super().__init__(namespace)
        self.seen: list = []

    def ask(self, op, name, forbidden, **args):
        if op not in ("describe", "value"):
            self.seen.append((op, self.limit))
        return super().ask(op, name, forbidden, **args)


def _solutions(aid: str) -> dict:
    ns: dict = {}
    nb = nbformat.read(ROOT / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    for c in nb.cells:
        meta = c.metadata.get("nbgrader", {})
        if c.cell_type == "code" and (meta.get("solution") or meta.get("grade_id") == "setup"):
            exec(compile(c.source, f"{aid}:{meta['grade_id']}", "exec"), ns)
    return ns


@pytest.mark.parametrize("aid", IDS)
def test_every_check_that_runs_student_code_sends_a_call_limit(aid):
    """Tensor, value, layer, model and training checks alike: no request waits out the whole cell's limit."""
    import torch._dynamo  # noqa: F401 - as grading kernels do at start-up

    ns = _solutions(aid)
    reg = grading.registry(ROOT)
    for name, owner in reg.owner.items():
        if owner != aid or name not in ns:
            continue
        runner = _LimitLog({name: ns[name]})
        grading.run_check(name, runner, reg)
        assert all(limit is not None and limit >= core.CALL_FLOOR for _, limit in runner.seen), (name, runner.seen)
        ops = {op for op, _ in runner.seen}
        if name in ("Conv2D", "lenet"):
            assert "module_meta" in ops, (name, ops)  # and each is also run on the meta device
        if name in ("learn_kernel",):
            assert "call_meta" in ops, (name, ops)


def test_a_training_function_is_run_with_device_meta():
    from cnngrader.grading.runners import LocalRunner

    def train_epoch(net, train_iter, loss, optimizer, device):  # batches never moved to device
        net.train()
        total = correct = loss_sum = 0
        for X, y in train_iter:
            y_hat = net(X)
            lo = loss(y_hat, y)
            optimizer.zero_grad()
            lo.backward()
            optimizer.step()
            loss_sum += lo.item() * len(y)
            correct += (y_hat.argmax(dim=1) == y).sum().item()
            total += len(y)
        return loss_sum / total, correct / total

    reg = grading.registry(ROOT)
    with pytest.raises(GradingError) as info:
        grading.run_check("train_epoch", LocalRunner({"train_epoch": train_epoch}), reg)
    assert "fed the net a batch on cpu" in str(info.value) and "device='meta'" in str(info.value)

"""Fixtures for the behaviour line and for damaged notebooks, each with its fair score, graded through the
real sandboxed pipeline (as tests/test_tamper_guard.py does).

- Shortcuts that the first line (tripwires on named functions, the dispatcher block) lets through, and that
  only what the function did shows: a loop over the output where the task asks for none (its steps grow
  with the output), more than one matrix product where the task asks for one, SciPy's FFT correlation
  reached by built names (its code runs).
- Honest code in many styles that must keep full marks.
- A notebook with two bytes that are not UTF-8, and one with metadata nested 100,000 deep: graded, with
  a note in the feedback.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import nbformat
import pytest
from conftest import REPO
from nbtools import maxima, scores_of, with_cells, write_submissions
from test_tamper_guard import _deep_json
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

A2, A4 = "02_cross_correlation", "04_channels"
ONE = "corr2d_multi_in_out_1x1"
SCIPY = "import importlib\n_signal = importlib.import_module('scipy.' + 'sig' + 'nal')\n"

# A corr2d in NumPy has no gradient: the cells that train through it (the Conv2D layer, learn_kernel) fail for
# that reason, whatever corr2d's own score; and convolve2d, which calls corr2d, inherits a shortcut in it.
NO_GRAD = {"hidden_Conv2D": 0, "hidden_learn_kernel": 0}
SCIPY_ZEROS = {"hidden_corr2d": 0, "hidden_convolve2d": 0, **NO_GRAD}

# (assignment, grade id, source, the cells scored 0 (every other keeps full marks), the words its reason holds)
SHORTCUTS = {
    "chapter_pixel_loop": (A2, "corr2d", """
def corr2d(X, K):
    h, w = K.shape
    Y = X.new_zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y
""", {"hidden_corr2d": 0}, "so it loops over the output's pixels or rows"),
    "row_loop": (A2, "corr2d", """
def corr2d(X, K):
    kh, kw = K.shape
    return torch.stack([torch.einsum("ajb,ab->j", X[i:i + kh].unfold(1, kw, 1), K)
                        for i in range(X.shape[0] - kh + 1)])
""", {"hidden_corr2d": 0}, "so it loops over the output's pixels or rows"),
    "numpy_pixel_loop": (A2, "corr2d", """
import numpy as np
def corr2d(X, K):
    x, k = X.detach().cpu().numpy(), K.detach().cpu().numpy()
    y = np.zeros((x.shape[0] - k.shape[0] + 1, x.shape[1] - k.shape[1] + 1), dtype=x.dtype)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[i, j] = np.sum(x[i:i + k.shape[0], j:j + k.shape[1]] * k)
    return torch.from_numpy(y).to(X.device)
""", {"hidden_corr2d": 0, **NO_GRAD}, "so it loops over the output's pixels or rows"),
    "scipy_fftconvolve": (A2, "corr2d", SCIPY + """
def corr2d(X, K):
    k = K.detach().cpu().numpy()[::-1, ::-1]
    y = getattr(_signal, "fft" + "convolve")(X.detach().cpu().numpy(), k, mode="valid")
    return torch.from_numpy(y.copy()).to(X.device)
""", SCIPY_ZEROS, "scipy.signal._signaltools.fftconvolve"),
    "scipy_correlate_fft": (A2, "corr2d", SCIPY + """
def corr2d(X, K):
    y = getattr(_signal, "corr" + "elate")(X.detach().cpu().numpy(), K.detach().cpu().numpy(), mode="valid",
                                            method="fft")
    return torch.from_numpy(y.copy()).to(X.device)
""", SCIPY_ZEROS, "scipy.signal"),
    "one_by_one_via_multi_in_out": (A4, ONE, """
def corr2d_multi_in_out_1x1(X, K):
    return corr2d_multi_in_out(X, K)
""", {f"hidden_{ONE}": 0}, "so it loops over the channels or the pixels"),
    "one_by_one_channel_loop": (A4, ONE, """
def corr2d_multi_in_out_1x1(X, K):
    C, H, W = X.shape
    return torch.stack([(k.reshape(1, C) @ X.reshape(C, H * W)).reshape(H, W) for k in K])
""", {f"hidden_{ONE}": 0}, "so it loops over the channels or the pixels"),
    "one_by_one_two_products": (A4, ONE, """
def corr2d_multi_in_out_1x1(X, K):
    C, H, W = X.shape
    h = C // 2
    K2, X2 = K.reshape(K.shape[0], C), X.reshape(C, H * W)
    return (K2[:, :h] @ X2[:h] + K2[:, h:] @ X2[h:]).reshape(K.shape[0], H, W)
""", {f"hidden_{ONE}": 0}, "the task asks for one matrix product"),
}

# Correct code in many styles: full marks (NumPy's: on corr2d, see NO_GRAD). (assignment, grade id, source[, zeros])
HONEST = {
    "as_strided_einsum": (A2, "corr2d", """
def corr2d(X, K):
    kh, kw = K.shape
    X = X.contiguous()
    s0, s1 = X.stride()
    windows = X.as_strided((X.shape[0] - kh + 1, X.shape[1] - kw + 1, kh, kw), (s0, s1, s0, s1))
    return torch.einsum("ijab,ab->ij", windows, K)
"""),
    "tensor_unfold_sum": (A2, "corr2d", """
def corr2d(X, K):
    kh, kw = K.shape
    return (X.unfold(0, kh, 1).unfold(1, kw, 1) * K).sum(dim=(-1, -2))
"""),
    "tensordot_windows": (A2, "corr2d", """
def corr2d(X, K):
    windows = X.unfold(0, K.shape[0], 1).unfold(1, K.shape[1], 1)  # (H', W', kh, kw)
    print("windows", tuple(windows.shape))
    return torch.tensordot(windows, K, dims=([2, 3], [0, 1]))
"""),
    "stacked_slices": (A2, "corr2d", """
def corr2d(X, K):
    kh, kw = K.shape
    Ho, Wo = X.shape[0] - kh + 1, X.shape[1] - kw + 1
    parts = torch.stack([X[a:a + Ho, b:b + Wo] for a in range(kh) for b in range(kw)])  # (kh*kw, H', W')
    return (parts * K.reshape(-1, 1, 1)).sum(dim=0)
"""),
    "numpy_kernel_loop": (A2, "corr2d", """
import numpy as np
def corr2d(X, K):
    x, k = X.detach().cpu().numpy(), K.detach().cpu().numpy()
    Ho, Wo = x.shape[0] - k.shape[0] + 1, x.shape[1] - k.shape[1] + 1
    y = np.zeros((Ho, Wo), dtype=x.dtype)
    for a in range(k.shape[0]):
        for b in range(k.shape[1]):
            y += x[a:a + Ho, b:b + Wo] * k[a, b]
    return torch.from_numpy(y).to(X.device)
""", NO_GRAD),
    "numpy_sliding_windows": (A2, "corr2d", """
import numpy as np
def corr2d(X, K):
    x, k = X.detach().cpu().numpy(), K.detach().cpu().numpy()
    windows = np.lib.stride_tricks.sliding_window_view(x, k.shape)
    return torch.from_numpy(np.einsum("ijab,ab->ij", windows, k)).to(X.device)
""", NO_GRAD),
    "torch_fft": (A2, "corr2d", """
def corr2d(X, K):
    H, W = X.shape
    kh, kw = K.shape
    spectrum = torch.fft.rfft2(X) * torch.fft.rfft2(torch.flip(K, (0, 1)), s=(H, W))
    return torch.fft.irfft2(spectrum, s=(H, W))[kh - 1:, kw - 1:]
"""),
    "one_by_one_einsum": (A4, ONE, """
def corr2d_multi_in_out_1x1(X, K):
    return torch.einsum("oc,chw->ohw", K[:, :, 0, 0], X)
"""),
    "one_by_one_tensordot": (A4, ONE, """
def corr2d_multi_in_out_1x1(X, K):
    return torch.tensordot(K[:, :, 0, 0], X, dims=1)
"""),
    "one_by_one_broadcast": (A4, ONE, """
def corr2d_multi_in_out_1x1(X, K):
    return (K[:, :, 0, 0, None, None] * X[None]).sum(dim=1)
"""),
    "one_by_one_numpy": (A4, ONE, """
import numpy as np
def corr2d_multi_in_out_1x1(X, K):
    C, H, W = X.shape
    x, k = X.detach().cpu().numpy(), K.detach().cpu().numpy()
    y = k.reshape(k.shape[0], C) @ x.reshape(C, H * W)
    return torch.from_numpy(y.reshape(k.shape[0], H, W)).to(X.device)
"""),
}
DAMAGED = ("nb_invalid_utf8", "nb_deep_metadata")
NOTE = "Read with repairs by the grader"


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("tamper_behaviour")
    generate([A2, A4], root, release_directory=root / "release")
    course = load_course(REPO)
    base = {aid: solution_submission(aid, root / "release", course) for aid in (A2, A4)}
    subs, fair = {}, {}
    for sid, (aid, gid, source, zeros, _) in SHORTCUTS.items():
        subs[sid], fair[sid] = {aid: with_cells(base[aid], **{gid: source})}, zeros
    for sid, (aid, gid, source, *zeros) in HONEST.items():
        subs[sid], fair[sid] = {aid: with_cells(base[aid], **{gid: source})}, (zeros or [{}])[0]
    subs["zz_solution_a4"], fair["zz_solution_a4"] = {A4: base[A4]}, {}
    write_submissions(root, subs)
    (root / "submitted" / "nb_deep_metadata" / A2).mkdir(parents=True)
    (root / "submitted" / "nb_deep_metadata" / A2 / f"{A2}.ipynb").write_text(_deep_json(base[A2], 100_000))
    raw = nbformat.writes(base[A2]).encode()
    at = raw.index(b"cross-correlation")
    (root / "submitted" / "nb_invalid_utf8" / A2).mkdir(parents=True)
    (root / "submitted" / "nb_invalid_utf8" / A2 / f"{A2}.ipynb").write_bytes(raw[:at] + b"\xff\xfe" + raw[at:])
    fair.update(dict.fromkeys(DAMAGED, {}))
    c = Config()
    c.Execute.timeout = 30
    c.GradingExecute.unresponsive_grace = 3.0
    c.GradingExecute.max_memory_mb = 2048
    c.GradingExecute.secret = 13
    started = time.perf_counter()
    try:
        result = grade_course(root, jobs=2, config=c)
    finally:
        stop_zygote()
    rows = gradebook_rows(course_config(root))
    yield SimpleNamespace(root=root, result=result, rows=rows, fair=fair, seconds=time.perf_counter() - started)


def _aid(student: str) -> str:
    if student in DAMAGED:
        return A2
    return SHORTCUTS[student][0] if student in SHORTCUTS else HONEST[student][0] if student in HONEST else A4


@pytest.mark.parametrize("student", sorted([*SHORTCUTS, *HONEST, *DAMAGED, "zz_solution_a4"]))
def test_fair_score(batch, student):
    got, top = scores_of(batch, student), maxima(batch, student)
    assert got, f"{student} was not graded: {batch.result.failures}"
    want = {**top, **batch.fair[student]}
    assert got == want, f"{student}: {got}"


def _outputs(batch, student: str) -> tuple[nbformat.NotebookNode, str]:
    aid = _aid(student)
    nb = nbformat.read(batch.root / "autograded" / student / aid / f"{aid}.ipynb", as_version=4)
    return nb, "\n".join(str(o.get("evalue", "")) for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.parametrize("student", sorted(SHORTCUTS))
def test_a_shortcut_gets_its_reason(batch, student):
    assert SHORTCUTS[student][4] in _outputs(batch, student)[1]


@pytest.mark.parametrize("student, words", [("nb_invalid_utf8", "2 bytes that are not UTF-8"),
                                            ("nb_deep_metadata", "nested more than 64 deep")])
def test_a_damaged_notebook_is_graded_with_a_note_in_its_feedback(batch, student, words):
    nb, _ = _outputs(batch, student)
    assert NOTE in nb.cells[0].source and words in nb.cells[0].source
    pages = list((batch.root / "feedback" / student / A2).glob("*.html"))
    assert pages and words in pages[0].read_text(encoding="utf-8")
    assert not [f for f in batch.result.failures if f.startswith(f"{student}/")]


def test_a_numpy_corr2d_keeps_its_marks_and_its_layer_fails_for_the_gradient(batch):
    _, text = _outputs(batch, "numpy_kernel_loop")
    assert "Conv2D.forward does not use self.weight" in text and "its gradient is None" in text
    assert "does not require grad" in text  # learn_kernel's backward, through the NumPy corr2d
    assert "loops over" not in text and "called" not in text

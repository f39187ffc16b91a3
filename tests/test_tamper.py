"""The tamper-and-fault suite: submissions that attack the grader, each with its fair score,
graded through the real pipeline (sandboxed kernels, the verdict in the trusted process).

Each fixture is one student's notebook: the instructor's solution with one cell changed. Its
fair score is what an honest grader gives the code as written: full marks for correct code
that also attacks (the attack must change nothing), zero for a check whose function takes a
shortcut or is wrong. After the batch, the course must be as it was: gradebook, grader,
other students, exports, no process left, no disk filled, nothing received on loopback.

Every loop, allocation and process count in the fixtures is bounded, and network attempts go
to loopback only.
"""
from __future__ import annotations

import hashlib
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from conftest import REPO
from nbtools import cell, maxima, scores_of, with_cells, with_new_cell, write_submissions
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

A1, A2, A3, A5 = "01_fc_to_conv", "02_cross_correlation", "03_padding_stride", "05_pooling"
MARK = "CNNTAMPER"  # in every process a fixture starts, so that survivors can be found
F = "F"  # full points


def sol(aid: str, gid: str) -> str:
    nb = solution_submission(aid, course=load_course(REPO))
    return cell(nb, gid).source


# The fixtures' attack code, with the course's paths filled in by build(). {root}: the grading
# directory (submitted/, autograded/, gradebook.db...); {repo}: the course repository.
COURSE_LEVEL = {
    "gradebook_write": (A2, "corr2d", """
import sqlite3
for path in ("{root}/gradebook.db", "{repo}/gradebook.db"):
    try:
        db = sqlite3.connect(path)
        db.execute("update source_cell set source = 'pass'")
        db.commit()
    except Exception:
        pass
    try:
        open(path, "ab").write(b"{mark}")
    except Exception:
        pass
""", {}),
    "pyc_backdoor": (A2, "corr2d", """
import os
for pkg in ("{repo}/cnngrader/grading", "{repo}/cnngrader/kernel", "{repo}/cnnlib"):
    try:
        os.makedirs(pkg + "/__pycache__", exist_ok=True)
        open(pkg + "/__pycache__/core.cpython-311.pyc", "wb").write(b"{mark}")
    except Exception:
        pass
""", {}),
    "grader_edit": (A2, "corr2d", """
for path in ("{repo}/cnngrader/grading/core.py", "{repo}/assignments/02_cross_correlation/checks.py",
             "{repo}/cnnlib/ops.py"):
    try:
        open(path, "a").write("\\n# {mark}\\n")
    except Exception:
        pass
""", {}),
    "forge_scores": (A2, "corr2d", """
import glob
for path in glob.glob("{root}/autograded/*/*/*.ipynb") + ["{root}/grades.csv"]:
    try:
        open(path, "w").write("{mark}")
    except Exception:
        pass
""", {}),
    "copy_solutions": (A2, "corr2d", """
import json
try:
    nb = json.load(open("{repo}/solutions/02_cross_correlation/02_cross_correlation.ipynb"))
    for c in nb["cells"]:
        if c["metadata"].get("nbgrader", {{}}).get("solution"):
            exec("".join(c["source"]))
except Exception:
    pass
""", "blank"),
    "overwrite_classmate": (A2, "corr2d", """
import glob
for path in glob.glob("{root}/submitted/*/02_cross_correlation/*.ipynb"):
    try:
        open(path, "w").write("{mark}")
    except Exception:
        pass
""", {}),
    "daemon": (A2, "corr2d", """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        import sys; sys.argv[0] = "{mark}"
        for _ in range(30):
            time.sleep(0.2)
            try:
                open("{root}/grades.csv", "w").write("{mark}")
            except Exception:
                pass
        os._exit(0)
    os._exit(0)
""", {}),
    "kill_everything": (A2, "learn_kernel", """
import os, signal
for sig_target in (-1, os.getppid(), 1):
    try:
        os.kill(sig_target, signal.SIGKILL)
    except Exception:
        pass
""", {}),  # in its own pid namespace it cannot reach the grader or its classmates: nothing happens
    "kill_grader": (A2, "corr2d", """
import os, signal
for pid in range(2, 200):
    if pid != os.getpid():
        try:
            os.kill(pid, signal.SIGKILL)
        except Exception:
            pass
""", "zero"),  # it kills its own kernel (through a thread's id): its notebook, and only it, scores 0
    "read_secrets": (A2, "corr2d", """
import glob
for pattern in ("{repo}/solutions/*/*.ipynb", "{repo}/assignments/*/*", "{root}/submitted/*/*/*.ipynb",
                "{root}/gradebook.db", "{repo}/.git/config"):
    for path in glob.glob(pattern):
        try:
            print(open(path, errors="replace").read()[:2000])
        except Exception as e:
            print(type(e).__name__)
""", "blank"),
    "stall": (A2, "corr2d", """
import time
for _ in range(4):
    time.sleep(4)
""", "stall"),
    "output_flood": (A2, "corr2d", """
from IPython.display import display
for _ in range(40):
    display({{"image/png": "iVBOR" + "A" * 2_000_000, "text/plain": "{mark}"}}, raw=True)
""", {}),
    "children": (A2, "corr2d", """
import subprocess, sys
kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "{mark}"]) for _ in range(40)]
""", {}),
    "fork_allocate": (A2, "convolve2d", """
import os
pids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        block = bytearray(900 * 2**20)  # 3 x 0.9 GiB + the kernel: over a 2 GiB cap for the tree
        for i in range(0, len(block), 4096):
            block[i] = 1
        os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
""", {"hidden_corr2d": F, "hidden_Conv2D": F}),
    "socket_escape": (A2, "corr2d", """
import glob, socket
for path in glob.glob("/tmp/*") + glob.glob("/tmp/*/*"):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(0.5)
        s.connect(path)
        s.sendall(b'{{"args": ["-c", "pass"]}}\\n')
        print("connected to", path)
    except Exception:
        pass
""", {}),
    "disk_fill": (A2, "corr2d", """
import os
for folder in (os.getcwd(), "/tmp", "{root}"):
    try:
        with open(os.path.join(folder, "fill.bin"), "wb") as f:
            for _ in range(1536):  # up to 1.5 GiB
                f.write(b"\\0" * 2**20)
    except Exception:
        pass
""", {}),
    "network": (A2, "corr2d", """
import socket
for port in ({port}, 22, 80, 5432):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).sendall(b"{mark}")
    except Exception:
        pass
""", {}),
}

CONV = "X[None, None], K[None, None]"
# Shortcuts and tampering in the kernel: (assignment, cell, new source, fair scores).
IN_KERNEL = {
    "aten_convolution": (A2, "corr2d", f"""
def corr2d(X, K):
    return torch.ops.aten.convolution({CONV}, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)[0, 0]
""", {"hidden_corr2d": 0}),
    "captured_map": (A2, "corr2d", """
import torch.nn.functional as F
_conv = F.conv2d
def corr2d(X, K):
    return list(map(_conv, [X[None, None]], [K[None, None]]))[0][0, 0]
""", {"hidden_corr2d": 0}),
    "thread": (A2, "corr2d", f"""
import threading
import torch.nn.functional as F
def corr2d(X, K):
    out = []
    t = threading.Thread(target=lambda: out.append(F.conv2d({CONV})[0, 0]))
    t.start(); t.join()
    return out[0] if out else X
""", {"hidden_corr2d": 0}),
    "profile_toggle": (A2, "corr2d", f"""
import sys
import torch.nn.functional as F
def corr2d(X, K):
    hook = sys.getprofile()
    sys.setprofile(None)
    try:
        return F.conv2d({CONV})[0, 0]
    finally:
        sys.setprofile(hook)
""", {"hidden_corr2d": 0}),
    "nn_grad": (A2, "corr2d", """
def corr2d(X, K):
    H, W = X.shape
    kh, kw = K.shape
    return torch.nn.grad.conv2d_weight(X[None, None], (1, 1, H - kh + 1, W - kw + 1), K[None, None])[0, 0]
""", {"hidden_corr2d": 0}),
    "conv_transpose3d": (A2, "corr2d", """
import torch.nn.functional as F
def corr2d(X, K):
    kh, kw = K.shape
    full = F.conv_transpose3d(X[None, None, None], K.flip(0, 1)[None, None, None])[0, 0, 0]
    return full[kh - 1 : X.shape[0], kw - 1 : X.shape[1]]
""", {"hidden_corr2d": 0}),
    "private_engine": (A2, "corr2d", f"""
from cnnlib import _engine
def corr2d(X, K):
    return _engine.conv2d({CONV}, None, (1, 1), (0, 0))[0, 0]
""", {"hidden_corr2d": 0}),
    "aten_pad": (A3, "pad2d", """
def pad2d(X, padding):
    ph, pw = padding if isinstance(padding, (tuple, list)) else (padding, padding)
    return torch.ops.aten.constant_pad_nd(X, [pw, pw, ph, ph], 0.0)
""", {"hidden_pad2d": 0}),
    "numpy_pad": (A3, "pad2d", """
import numpy as np
def pad2d(X, padding):
    ph, pw = padding if isinstance(padding, (tuple, list)) else (padding, padding)
    width = [(0, 0)] * (X.dim() - 2) + [(ph, ph), (pw, pw)]
    return torch.from_numpy(np.pad(X.cpu().numpy(), width)).to(X.device)
""", {"hidden_pad2d": 0}),
    "aten_pool": (A5, "pool2d", """
def pool2d(X, pool_size, stride=None, padding=0, mode="max"):
    k = list(pool_size) if isinstance(pool_size, (tuple, list)) else [pool_size] * 2
    s = k if stride is None else (list(stride) if isinstance(stride, (tuple, list)) else [stride] * 2)
    p = list(padding) if isinstance(padding, (tuple, list)) else [padding] * 2
    op = torch.ops.aten.max_pool2d if mode == "max" else torch.ops.aten.avg_pool2d
    return op(X[None] if X.dim() == 2 else X, k, s, p)[0] if X.dim() == 2 else op(X, k, s, p)
""", {"hidden_pool2d": 0}),
    "scipy": (A2, "corr2d", """
from scipy import signal
def corr2d(X, K):
    return torch.from_numpy(signal.correlate2d(X.cpu().numpy(), K.cpu().numpy(), mode="valid")).to(X)
""", {"hidden_corr2d": 0}),
    "rebind_modules": (A2, "corr2d", """
import sys, types, cnnlib
fake = types.ModuleType("cnngrader.kernel")
fake.serve = lambda request: None
sys.modules["cnngrader.kernel"] = fake
vars(cnnlib)["corr2d"] = lambda X, K: X
def corr2d(X, K):
    return X[: X.shape[0] - K.shape[0] + 1, : X.shape[1] - K.shape[1] + 1]
""", {"hidden_corr2d": 0}),
    "input_transformer": (A2, "corr2d", """
get_ipython().input_transformers_post.append(lambda lines: ["pass\\n"])
def corr2d(X, K):
    raise NotImplementedError()
""", {"hidden_corr2d": 0, "hidden_Conv2D": 0, "hidden_convolve2d": 0, "hidden_learn_kernel": 0}),
    "above_setup": (A2, None, """
import torch
torch.Tensor.__eq__ = lambda self, other: True
torch.allclose = lambda *a, **k: True
""", {"hidden_corr2d": 0}),
    "function_mode": (A2, "corr2d", """
from torch.overrides import TorchFunctionMode
class Agree(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))
Agree().__enter__()
def corr2d(X, K):
    return X.new_zeros((X.shape[0] - K.shape[0] + 1, X.shape[1] - K.shape[1] + 1))
""", {"hidden_corr2d": 0}),
    "lying_int": (A1, "fc_param_count", """
class Liar(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
def fc_param_count(in_features, out_features, bias=True):
    return Liar(0)
""", {"hidden_fc_param_count": 0}),
    "grader_frames": (A2, "corr2d", """
import inspect
def corr2d(X, K):
    frame = inspect.currentframe()
    while frame is not None:
        for name in ("expected", "case", "reference"):
            value = frame.f_locals.get(name)
            if isinstance(value, torch.Tensor):
                return value
        frame = frame.f_back
    return X
""", {"hidden_corr2d": 0}),
    "clear_record": (A2, "corr2d", f"""
import gc
import torch.nn.functional as F
def corr2d(X, K):
    Y = F.conv2d({CONV})[0, 0]
    for obj in gc.get_objects():
        if isinstance(obj, list) and obj and all(isinstance(v, str) and v.startswith("torch") for v in obj):
            obj.clear()
    return Y
""", {"hidden_corr2d": 0}),
    "patch_allclose": (A2, "corr2d", """
torch.allclose = lambda *a, **k: True
import cnnlib.testing
cnnlib.testing.assert_close = lambda *a, **k: None
assert_close = lambda *a, **k: None
def corr2d(X, K):
    return X[: X.shape[0] - K.shape[0] + 1, : X.shape[1] - K.shape[1] + 1] * 0
""", {"hidden_corr2d": 0}),
}

# Correct code that must get full marks.
FAIR = {
    "logging_warning": (A2, "corr2d", "import logging\nlogging.warning('corr2d: slow loops ahead')\n"),
    "stderr_print": (A2, "corr2d", "import sys\nprint('debugging corr2d', file=sys.stderr)\n"),
    "two_line_warning": (A2, "corr2d", "import warnings\nwarnings.warn('first line\\nsecond line')\n"),
    "tqdm_bar": (A2, "learn_kernel", None),
    "fft": (A2, "corr2d", None),
}
FFT_CORR2D = """
def corr2d(X, K):
    H, W = X.shape
    kh, kw = K.shape
    size = (H + kh - 1, W + kw - 1)
    full = torch.fft.irfft2(torch.fft.rfft2(X, size) * torch.fft.rfft2(K.flip(0, 1), size), size)
    return full[kh - 1 : H, kw - 1 : W].to(X.dtype)
"""
TQDM_LEARN = """
from tqdm.auto import tqdm
def learn_kernel(X, Y, kernel_size, num_steps, lr):
    K = torch.zeros(kernel_size, dtype=X.dtype, device=X.device, requires_grad=True)
    for _ in tqdm(range(num_steps)):
        l = ((corr2d(X, K) - Y) ** 2).sum()
        l.backward()
        with torch.no_grad():
            K -= lr * K.grad
        K.grad.zero_()
    return K.detach()
"""
ROBUST = ("corrupt_json", "renamed_file", "stripped_metadata")
NOTEBOOK_TIMEOUT = 12  # seconds over all cells, for the stall fixture


def build(root: Path, release: Path, port: int) -> dict:
    """student -> {assignment: notebook} for every fixture, plus their fair scores."""
    fill = {"root": root, "repo": REPO, "mark": MARK, "port": port}
    base = {aid: solution_submission(aid, release, load_course(REPO)) for aid in (A1, A2, A3, A5)}
    blank = {aid: nbformat.read(release / aid / f"{aid}.ipynb", as_version=4) for aid in (A2,)}
    subs, fair = {}, {}
    for sid, (aid, gid, attack, expect) in COURSE_LEVEL.items():
        code = attack.format(**fill)
        if expect == "blank":  # an unsolved notebook that tries to take or show the instructor's solutions
            subs[sid] = {aid: with_cells(blank[aid], **{gid: code + "\n" + cell(blank[aid], gid).source})}
            fair[sid] = "zero"
        elif expect == "stall":
            nb = base[aid]
            for g in ("corr2d", "Conv2D", "convolve2d", "learn_kernel"):
                nb = with_cells(nb, **{g: code + "\n" + cell(nb, g).source})
            subs[sid] = {aid: nb}
            fair[sid] = {"hidden_learn_kernel": 0}  # its cells run past the notebook's budget
        else:
            subs[sid] = {aid: with_cells(base[aid], **{gid: code + "\n" + sol(aid, gid)})}
            fair[sid] = expect if expect != {} else "full"
    for sid, (aid, gid, source, expect) in IN_KERNEL.items():
        if gid is None:  # a new cell above the locked setup cell, then a wrong corr2d
            nb = with_new_cell(base[aid], source, before="setup")
            nb = with_cells(nb, corr2d="def corr2d(X, K):\n    return X[:1, :1]\n")
        else:
            nb = with_cells(base[aid], **{gid: source})
        subs[sid], fair[sid] = {aid: nb}, expect
    for sid, (aid, gid, prefix) in FAIR.items():
        source = {"tqdm_bar": TQDM_LEARN, "fft": FFT_CORR2D}.get(sid) or prefix + sol(aid, gid)
        subs[sid], fair[sid] = {aid: with_cells(base[aid], **{gid: source})}, "full"
    subs["victim"], fair["victim"] = {A2: base[A2]}, "full"
    subs["zz_blank"], fair["zz_blank"] = {A2: blank[A2]}, "zero"  # graded after the attacks
    subs["zz_solution"], fair["zz_solution"] = {A2: base[A2]}, "full"
    stripped = base[A2]
    stripped = nbformat.from_dict(nbformat.from_dict(stripped))
    for c in stripped.cells:
        c.metadata.pop("nbgrader", None)
    subs["stripped_metadata"], fair["stripped_metadata"] = {A2: stripped}, "full"
    return {"subs": subs, "fair": fair, "base": base}


def tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


class Listener:
    """A TCP server on the host's loopback that records whatever reaches it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(0.5)
                try:
                    self.received.append(conn.recv(1024) or b"<connected>")
                except OSError:
                    self.received.append(b"<connected>")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("tamper")
    generate([A1, A2, A3, A5], root, release_directory=root / "release")
    listener = Listener()
    built = build(root, root / "release", listener.port)
    write_submissions(root, built["subs"])
    (root / "submitted" / "corrupt_json" / A2).mkdir(parents=True)
    (root / "submitted" / "corrupt_json" / A2 / f"{A2}.ipynb").write_text('{"cells": [ this is not json')
    (root / "submitted" / "renamed_file" / A2).mkdir(parents=True)
    nbformat.write(built["base"][A2], root / "submitted" / "renamed_file" / A2 / f"{A2} (1).ipynb")
    repo_before = {name: tree_digest(REPO / name) for name in ("cnngrader", "cnnlib", "assignments", "solutions")}
    c = Config()
    c.Execute.timeout = 10
    c.GradingExecute.unresponsive_grace = 3.0
    c.GradingExecute.notebook_timeout = NOTEBOOK_TIMEOUT
    c.GradingExecute.max_memory_mb = 2048
    c.GradingExecute.secret = 7
    started = time.perf_counter()
    try:
        result = grade_course(root, jobs=2, config=c)
    finally:
        stop_zygote()
    seconds = time.perf_counter() - started
    time.sleep(2)  # a daemon that survived would write grades.csv now
    listener.close()
    rows = gradebook_rows(course_config(root))
    yield SimpleNamespace(root=root, result=result, rows=rows, fair=built["fair"], listener=listener,
                          repo_before=repo_before, seconds=seconds, grades_csv=(root / "grades.csv").read_text())


ALL = sorted([*COURSE_LEVEL, *IN_KERNEL, *FAIR, "victim", "zz_blank", "zz_solution", "stripped_metadata"])


def test_the_suite_has_at_least_forty_submissions():
    assert len(ALL) + len(ROBUST) - 1 >= 40  # stripped_metadata is in both lists


@pytest.mark.parametrize("student", ALL)
def test_fair_score(batch, student):
    got, top = scores_of(batch, student), maxima(batch, student)
    assert got, f"{student} was not graded: {batch.result.failures}"
    fair = batch.fair[student]
    if fair == "full":
        fair = dict.fromkeys(top, F)
    elif fair == "zero":
        fair = dict.fromkeys(top, 0)
    want = {c: (top[c] if v == F else v) for c, v in fair.items()}
    assert {c: got.get(c) for c in want} == want, f"{student}: {got}"


def test_the_course_is_unchanged(batch):
    for name, digest in batch.repo_before.items():
        assert tree_digest(REPO / name) == digest, f"{name}/ changed during grading"
    assert not list(REPO.rglob(f"*{MARK}*"))
    for pyc in (REPO / "cnngrader").rglob("*.pyc"):
        assert MARK.encode() not in pyc.read_bytes(), pyc
    assert MARK not in batch.grades_csv
    assert MARK not in (batch.root / "grades.csv").read_text()
    for nb in (batch.root / "submitted").rglob("*.ipynb"):
        assert nb.read_text() != MARK, nb
    for nb in (batch.root / "autograded").rglob("*.ipynb"):
        assert nb.read_text() != MARK, nb
    assert not list(batch.root.rglob("fill.bin"))


def test_no_process_outlives_its_notebook(batch):
    left = subprocess.run(["pgrep", "-f", MARK], capture_output=True, text=True).stdout.split()
    assert left == [], left


def test_nothing_reached_the_hosts_loopback(batch):
    assert batch.listener.received == []


def test_feedback_reveals_no_secret(batch):
    """The notebook printed whatever it could read of solutions, sources, classmates and the gradebook."""
    page = (batch.root / "feedback" / "read_secrets" / A2 / f"{A2}.html").read_text()
    solution = solution_submission(A2, course=load_course(REPO))
    secrets = ["Y = Y + X[a : a + Ho, b : b + Wo] * K[a, b]", "K -= lr * K.grad", "BEGIN SOLUTION",
               "tensor_cases", "SQLite format", "repositoryformatversion", "learned_kernel = [[4, 3], [2, 1]]"]
    assert secrets[0] in cell(solution, "corr2d").source
    assert [s for s in secrets if s in page] == []


def test_output_floods_are_capped(batch):
    nb = batch.root / "autograded" / "output_flood" / A2 / f"{A2}.ipynb"
    assert nb.stat().st_size < 8 * 2**20, f"{nb.stat().st_size / 2**20:.1f} MiB"


def test_a_stall_is_bounded_by_the_notebook_budget(batch):
    nb = nbformat.read(batch.root / "autograded" / "stall" / A2 / f"{A2}.ipynb", as_version=4)
    text = "\n".join(str(o.get("evalue", "")) for c in nb.cells for o in c.get("outputs", []))
    assert f"({NOTEBOOK_TIMEOUT} s)" in text


def test_robust_batches(batch):
    failures = "\n".join(batch.result.failures)
    assert "corrupt_json" in failures and len([f for f in batch.result.failures if "corrupt_json" in f]) == 1
    assert scores_of(batch, "renamed_file") == maxima(batch, "renamed_file")
    assert not [f for f in batch.result.failures if "corrupt_json" not in f], failures

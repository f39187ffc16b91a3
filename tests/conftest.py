"""Shared test settings and helpers for the cnnlib test suite.

- Hypothesis profiles: `ci` (the default; few examples, derandomized so every run draws the same
  cases) and `thorough` (many random cases). Pick one with HYPOTHESIS_PROFILE=thorough.
- DEVICES and DTYPES: parameter lists. Every device cnnlib.devices() reports is tested; without a
  GPU a `cuda:0` case is still listed and shows as skipped, so a missing GPU is visible in the summary.
- assert_close: one comparison helper that checks type, shape, dtype and device before values,
  with the suite's named tolerances, and says what differs.
- book: the session's one build of the book (used by test_book.py and test_browser.py).

The test modules import the helpers with `from conftest import ...` (pytest puts tests/ on sys.path).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, settings

import cnnlib
from cnngrader.course import find_root
from cnngrader.tolerances import TOLERANCES

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 1200

# Hypothesis: the ci profile keeps the whole cnnlib suite to a couple of minutes on 2 cores.
settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=400,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The course directory (the repository): test modules take it from here (`from conftest import REPO`).
REPO = find_root(Path(__file__).parent)

# Named tolerances: absolute and relative, per dtype; the course's own (the hidden checks use them too).
F64_TOL = TOLERANCES[torch.float64].rtol
F32_TOL = TOLERANCES[torch.float32].rtol
assert all(t.rtol == t.atol for t in TOLERANCES.values())  # one number per dtype here
TOL = {torch.float64: F64_TOL, torch.float32: F32_TOL}

HAS_CUDA = torch.cuda.device_count() > 0
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device; none present")

DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]


def _device_params() -> list:
    params = []
    for d in cnnlib.devices():
        marks = (pytest.mark.gpu,) if d.type == "cuda" else ()
        params.append(pytest.param(d, id=str(d), marks=marks))
    if not HAS_CUDA:
        # Listed anyway so that the summary shows a skipped GPU case rather than nothing.
        params.append(pytest.param(torch.device("cuda:0"), id="cuda:0", marks=(pytest.mark.gpu, needs_cuda)))
    return params


DEVICES = _device_params()


def _norm_device(d: torch.device | str) -> torch.device:
    d = torch.device(d)
    if d.type == "cuda" and d.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return d


def assert_close(
    actual: object,
    expected: torch.Tensor,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    tol: float | None = None,
    what: str = "result",
) -> None:
    """Assert that `actual` is a tensor like `expected`: shape, then dtype, then device, then values.

    - dtype, device: what `actual` must have; by default expected's own. Pass them when the
      reference is computed in float64 or on the CPU but the op ran in float32 or on a GPU.
    - tol: used as both the absolute and the relative tolerance; by default TOL[actual.dtype]
      (F64_TOL = 1e-10 for float64, F32_TOL = 1e-5 for float32).
    Values are compared in float64 on the CPU: |actual - expected| <= tol + tol * |expected|.
    """
    assert isinstance(expected, torch.Tensor), "assert_close needs the expected value as a tensor"
    assert isinstance(actual, torch.Tensor), f"{what}: expected a torch.Tensor, got {type(actual).__name__}"
    assert tuple(actual.shape) == tuple(expected.shape), (
        f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    )
    want_dtype = expected.dtype if dtype is None else dtype
    assert actual.dtype == want_dtype, f"{what}: dtype {actual.dtype}, expected {want_dtype}"
    want_device = _norm_device(expected.device if device is None else device)
    assert _norm_device(actual.device) == want_device, f"{what}: device {actual.device}, expected {want_device}"
    if tol is None:
        assert actual.dtype in TOL, f"{what}: no tolerance defined for {actual.dtype}"
        tol = TOL[actual.dtype]
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    ok = torch.isclose(a, e, rtol=tol, atol=tol)
    if not bool(ok.all()):
        bad = (~ok).nonzero()
        idx = tuple(bad[0].tolist())
        diff = (a - e).abs().nan_to_num(float("inf"))
        raise AssertionError(
            f"{what}: {bad.shape[0]} of {a.numel()} values differ beyond atol=rtol={tol:g} "
            f"({actual.dtype}); max abs diff {diff.max().item():.3g}; first at index {idx}: "
            f"got {a[idx].item()!r}, expected {e[idx].item()!r}"
        )


# --- the book, built once per session ----------------------------------------------------------


def book_deps_hash() -> str:
    """What the executed chapters depend on besides their own code: cnnlib, the course manifest
    (the Exercises page reads it) and the requirements; not the grader.

    The same value as the Makefile's `cat cnnlib/*.py course.toml requirements.txt | sha256sum`
    (C-locale order), so `make book` and this test share one cache without invalidating each other's.
    """
    paths = (sorted((ROOT / "cnnlib").glob("*.py"), key=lambda p: p.name.encode())
             + [ROOT / "course.toml", ROOT / "requirements.txt"])
    return hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()[:16]


@pytest.fixture(scope="session")
def book(tmp_path_factory):
    """Build the book once; returns (html_dir, build_log)."""
    build = ROOT / "_build"
    stamp = build / ".book-deps"
    deps = book_deps_hash()
    if not stamp.exists() or stamp.read_text().strip() != deps:
        shutil.rmtree(build, ignore_errors=True)  # outputs of an older cnnlib: rebuild from scratch
    build.mkdir(exist_ok=True)
    stamp.write_text(deps + "\n")

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["cache"] = str(build / ".jupyter_cache")
    extensions = config["sphinx"]["local_extensions"]
    config["sphinx"]["local_extensions"] = {name: str(ROOT / path) for name, path in extensions.items()}
    config["bibtex_bibfiles"] = [str(ROOT / path) for path in config.get("bibtex_bibfiles", [])]
    out = tmp_path_factory.mktemp("book")
    config_path = out / "_config.yml"
    config_path.write_text(yaml.safe_dump(config))

    env = dict(os.environ, MPLBACKEND="Agg", PYDEVD_DISABLE_FILE_VALIDATION="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    # matplotlib builds its font cache on first use and says so on stderr; do it before any chapter runs
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=env, check=True)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jupyter_book), "build", str(ROOT), "--path-output", str(out), "--config", str(config_path),
           "-W", "--keep-going"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    log = proc.stdout + "\n" + proc.stderr
    assert proc.returncode == 0, f"jupyter-book build failed (exit {proc.returncode}):\n{log[-8000:]}"
    return out / "_build" / "html", log


def pytest_sessionfinish(session, exitstatus):
    """The fair-grading table of the fixtures this session graded (tests/fairtable.py), if it graded any."""
    import fairtable

    out = fairtable.write(ROOT / "benchmarks" / "results")
    if out is not None:
        print(f"\nfair-grading table: {out}")

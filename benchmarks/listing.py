"""Part: listing a submission's files (cnngrader.pipeline.listing, safefiles).

A folder of n tiny files is listed three ways, for n = 1,000 and 4,000:
- nbgrader 0.9's own utils.find_all_files (a glob of the whole folder per file and pattern: quadratic),
  loaded afresh from nbgrader's source so that the course's replacement does not stand in for it;
- cnngrader.pipeline.listing.find_all_files, which nbgrader_config.py installs in its place (one pass);
- safefiles.scan with the course's FileLimits, the walk that refuses such a folder before nbgrader sees it.
The figures are seconds, and the 4,000/1,000 ratio: about 4 for a linear listing, about 16 for a quadratic one.
"""
from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

from .report import Result, Skipped

SIZES = (1000, 4000)
LINEAR_TARGET = "<= 6"  # time(4,000 files) / time(1,000 files): linear is 4, quadratic 16
IGNORE = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.ipynb"]  # nbgrader's default + notebooks


def _original_find_all_files():
    """nbgrader.utils.find_all_files as nbgrader ships it, from a fresh copy of its module."""
    import nbgrader.utils

    spec = importlib.util.spec_from_file_location("_nbgrader_utils_as_shipped", nbgrader.utils.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.find_all_files


def _folder(root: Path, n: int) -> Path:
    folder = root / f"files{n}"
    folder.mkdir()
    (folder / "02_cross_correlation.ipynb").write_text("{}")
    for i in range(n - 1):
        (folder / f"f{i:05d}.txt").write_bytes(b"x")
    return folder


def _seconds(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def run(log=print) -> tuple[list[Result], list[Skipped]]:
    try:
        from cnngrader.pipeline import listing, safefiles
        shipped = _original_find_all_files()
    except ImportError as e:
        return [], [Skipped("listing", f"nbgrader or cnngrader.pipeline is not importable ({e})")]
    out = []
    seconds: dict[str, dict[int, float]] = {"nbgrader": {}, "linear": {}, "refusal": {}}
    with tempfile.TemporaryDirectory(prefix="cnn-bench-listing-") as tmp:
        for n in SIZES:
            folder = _folder(Path(tmp), n)
            log(f"[listing] {n:,} files: nbgrader's find_all_files, the linear one, the refusing scan")
            seconds["nbgrader"][n], theirs = _seconds(shipped, str(folder), IGNORE)
            seconds["linear"][n], ours = _seconds(listing.find_all_files, str(folder), IGNORE)
            if sorted(theirs) != sorted(ours):
                return [], [Skipped("listing", f"the linear listing of {n} files differs from nbgrader's", True)]
            start = time.perf_counter()
            try:
                safefiles.scan(folder)
                why = "not refused"
            except safefiles.TooBig as e:
                why = str(e)
            seconds["refusal"][n] = time.perf_counter() - start
            log(f"[listing] {n:,} files: nbgrader {seconds['nbgrader'][n]:.2f} s, linear "
                f"{seconds['linear'][n]:.3f} s, the scan refused it in {seconds['refusal'][n] * 1000:.1f} ms ({why})")
    labels = {"nbgrader": "nbgrader 0.9's find_all_files", "linear": "the course's find_all_files (installed)",
              "refusal": "safefiles.scan refusing the folder (course limits)"}
    for kind, label in labels.items():
        for n in SIZES:
            out.append(Result("listing", f"seconds to list {n:,} tiny files, {label}", "-", seconds[kind][n], "s"))
        ratio = seconds[kind][SIZES[1]] / max(seconds[kind][SIZES[0]], 1e-9)
        target = LINEAR_TARGET if kind == "linear" else None
        out.append(Result("listing", f"time for {SIZES[1]:,} files / time for {SIZES[0]:,}, {label}", "-", ratio,
                          "x", target, {str(n): seconds[kind][n] for n in SIZES}))
    return out, []

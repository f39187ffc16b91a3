"""Part 4: building the book from scratch, then again with everything cached."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .machine import REPO
from .report import Result, Skipped

CLEAN_TARGET = "<= 300"
CACHED_TARGET = "<= 30"


def run(log=print) -> tuple[list[Result], list[Skipped]]:
    jb = Path(sys.executable).parent / "jupyter-book"
    if not jb.exists():
        found = shutil.which("jupyter-book")
        if not found:
            return [], [Skipped("book", "jupyter-book is not installed in this environment")]
        jb = Path(found)
    env = {**os.environ, "MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    out: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="cnn-bench-book-") as tmp:
        # The same command as `make book`, writing into a fresh directory: no HTML and no
        # execution cache to start from. The second run finds both.
        cmd = [str(jb), "build", str(REPO), "--path-output", tmp, "-W", "--keep-going"]
        for label, target in (("clean", CLEAN_TARGET), ("cached", CACHED_TARGET)):
            log(f"[book] {label} build into {tmp}")
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
                reason = f"{label} build failed (exit {proc.returncode}):\n  " + "\n  ".join(tail)
                return out, [Skipped("book", reason, True)]
            out.append(Result("book", f"{label} build (jupyter-book build -W)", "-", seconds, "s", target,
                              {"command": " ".join(cmd)}))
    return out, []

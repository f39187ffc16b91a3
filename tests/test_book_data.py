"""The book's cache and the data: `make book` executes a chapter that loads data again when the data
it would load changes, serves it from the cache otherwise, and says at its end what it used.

The LeNet chapter trains for minutes, so the builds here run the real Makefile on a small book in a
temporary copy of the repository's build files: one chapter made of the LeNet chapter's own cells up
to the data (its imports, the hidden cell that loads the data, and the cell that shows the fallback
warning). The data comes from a temporary $CNNLIB_DATA only: Debian's system folder and the user
cache are hidden ($CNNLIB_SYSTEM_DATA, $XDG_CACHE_HOME), a download fails at once (a proxy on a
closed loopback port), and the small IDX files this test writes are accepted through their MD5s in
$CNNLIB_DATA_MD5. Three builds: without data (the digits), with the data installed (executed
again), and with nothing changed (from the cache): about 3 minutes on two busy cores, a minute a build.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest
from conftest import REPO as ROOT
from jupyter_cache import get_cache
from test_data import idx_bytes

from cnnlib import data

pytestmark = pytest.mark.slow

# What `make book` needs besides the chapters (cnnlib/ only for its key: the kernels import the installed cnnlib).
BUILD_FILES = ("Makefile", "_config.yml", "references.bib", "course.toml", "requirements.txt", "pyproject.toml")
BUILD_DIRS = ("cnnlib", "book/_ext")
FALLBACK_WARNING = "Fashion-MNIST could not be loaded when this page was built"
BUILD_TIMEOUT_S = 600


def lenet_data_cells(target: Path) -> None:
    """Write to `target` a chapter of the LeNet chapter's cells up to its fallback warning, code untouched."""
    nb = jupytext.read(ROOT / "book" / "06_lenet.md")
    code = [c for c in nb.cells if c.cell_type == "code"]
    load = next(c for c in code if "cnnlib.load_data(" in c.source)
    warning = next(c for c in code if "could not be loaded" in c.source)
    title = nbformat.v4.new_markdown_cell("# LeNet's data")
    nb.cells = [title, code[0], load, warning]  # the imports, the data, the warning
    jupytext.write(nb, target, fmt="md:myst")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A copy of the build files with a one-chapter book, an empty data folder and what the builds need."""
    tmp = tmp_path_factory.mktemp("book_data")
    repo = tmp / "course"
    for name in BUILD_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    for name in BUILD_DIRS:
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    lenet_data_cells(repo / "book" / "lenet_data.md")
    (repo / "_toc.yml").write_text("format: jb-book\nroot: book/lenet_data\n")
    venv = Path(sys.prefix)
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
    env.update(
        # Relative, as the chapter's kernel (in book/) reads it: the check must look from there too.
        CNNLIB_DATA=os.path.relpath(tmp / "data", repo / "book"),
        CNNLIB_SYSTEM_DATA=str(tmp / "no-system-data"),
        CNNLIB_DATA_MD5=str(tmp / "test-data.md5"),
        XDG_CACHE_HOME=str(tmp / "xdg"),
        http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",  # nothing listens: no download
    )
    (tmp / "data").mkdir()
    # This venv, and never a reinstall (-o: its stamp counts as up to date); the system packages are
    # tests/test_system_packages.py's business (-o system: not run here).
    make = ["make", "--no-print-directory", "-C", str(repo), "book", f"VENV={venv}", "-o", f"{venv}/.installed",
            "-o", "system"]
    return tmp, repo, env, make


def small_fashion_mnist(folder: Path) -> dict[str, str]:
    """Four small, valid gzipped IDX files written into `folder`; returns their MD5s."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (40, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(40) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (20, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(20) % 10,
    }
    assert set(arrays) == set(data.FASHION_MNIST_FILES)
    md5s = {}
    for name, array in arrays.items():
        (folder / name).write_bytes(gzip.compress(idx_bytes(array), mtime=0))
        md5s[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    return md5s


def build(course) -> tuple[str, list[str], str]:
    """Run `make book` in the copy; returns (its output, the last two lines it printed, the chapter's page)."""
    tmp, repo, env, make = course
    proc = subprocess.run(make, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"make book failed (exit {proc.returncode}):\n{log[-6000:]}"
    page = (repo / "_build" / "html" / "book" / "lenet_data.html").read_text(encoding="utf-8")
    return log, proc.stdout.strip().splitlines()[-2:], page


def cache_records(repo: Path) -> list[tuple[int, str, object]]:
    """(pk, notebook, creation time) of each record of the copy's jupyter-cache."""
    cache = get_cache(repo / "_build" / ".jupyter_cache")
    return [(r.pk, r.uri, r.created) for r in cache.list_cache_records()]


def test_data_chapters_follow_the_data_and_the_cache_serves_the_rest(course):
    tmp, repo, env, _ = course
    folder = tmp / "data"
    # The checksum file is in place from the start; the files it names are not.
    md5s = small_fashion_mnist(tmp)
    for name in md5s:
        (tmp / name).unlink()
    (tmp / "test-data.md5").write_text("".join(f"{md5}  {name}\n" for name, md5 in md5s.items()))

    # 1. No data anywhere: the chapter runs on the digits and says so, on the page and at the end of the build.
    log, last, page = build(course)
    assert "Executing notebook" in log
    assert FALLBACK_WARNING in page
    assert last[0] == f"book/lenet_data used {data.DIGITS_FALLBACK}"
    assert last[1].startswith("NOTICE: book/lenet_data fell back to the bundled digits.")

    # 2. The data installed into $CNNLIB_DATA: the chapter is executed again, on it.
    assert small_fashion_mnist(folder) == md5s
    log, last, page = build(course)
    assert "Executing notebook" in log and "Using cached notebook" not in log
    assert "executing again, since they loaded other data: book/lenet_data" in log
    assert FALLBACK_WARNING not in page
    assert last[1].startswith(f"book/lenet_data used Fashion-MNIST from {folder}, verified against the MD5s in ")
    assert "NOTICE" not in last[0]

    executed = cache_records(repo)
    assert len(executed) == 1  # the digits' record is gone

    # 3. Nothing changed: nothing executed, the cached outputs kept, the same last lines.
    log3, last3, page3 = build(course)
    assert "Executing notebook" not in log3 and "executing again" not in log3
    assert cache_records(repo) == executed
    assert last3 == last and page3 == page

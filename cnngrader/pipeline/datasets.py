"""What the grading sandbox sees of Fashion-MNIST: the training images and labels and the test images,
never the test labels, which the trusted process keeps to score held-out predictions.

A grading kernel finds the dataset through cnnlib.data's usual search: the verified copies found on the
host (wherever they are: Debian's /usr/share/datasets/fashion-mnist, $CNNLIB_DATA, the user cache) are
bound read-only into DATA_INSIDE, which the kernel's $CNNLIB_DATA names. The test labels are not bound
there, and every copy of them the sandbox could otherwise reach through its binds of the system folders
has /dev/null bound over it, so a notebook cell cannot read them.

The host has verified its copies, Debian's re-gzipped ones by the MD5 of their decompressed content
(0.3 s for the training images). The sandbox also gets a checksum file, CHECKSUMS_INSIDE, that lists the
MD5 of each bound copy's own bytes, and its $CNNLIB_DATA_MD5 names it: a kernel that loads the data
checks each copy by hashing the file alone.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from os import environ
from pathlib import Path

DATA_INSIDE = "/run/cnngrader-data"
CHECKSUMS_INSIDE = f"{DATA_INSIDE}/MD5SUMS"
HIDDEN = ("t10k-labels-idx1-ubyte.gz",)  # read only by the trusted process


def host_files() -> dict[str, Path]:
    """The verified Fashion-MNIST files the host has (name -> path), found without downloading; verified
    once per process and per setting of cnnlib.data's environment variables."""
    from cnnlib.data import CHECKSUMS_ENV, SYSTEM_DATA_ENV  # cnnlib.data imports torch: loaded only on this path

    return dict(_verified(*(environ.get(k, "") for k in ("CNNLIB_DATA", SYSTEM_DATA_ENV, CHECKSUMS_ENV))))


@lru_cache(maxsize=4)
def _verified(*_settings: str) -> tuple[tuple[str, Path], ...]:
    from cnnlib.data import find_fashion_mnist  # as in host_files

    return tuple((name, path) for name, path in find_fashion_mnist().items() if path is not None)


def visible_copies(roots: list[str]) -> list[str]:
    """The copies of the hidden files the sandbox would reach through its binds (`roots`): those in the
    folders cnnlib.data searches (Debian's, which /usr brings in, above all) that lie under one of them."""
    from cnnlib.data import SYSTEM_DATA_DIR, search_dirs  # as in host_files

    found = []
    for folder in dict.fromkeys([*search_dirs(), SYSTEM_DATA_DIR]):
        for name in HIDDEN:
            path = Path(folder) / name
            if path.exists() and any(path.is_relative_to(root) for root in roots):
                found.append(str(path))
    return found


def sandbox_args(roots: list[str]) -> tuple[list[str], dict[str, str]]:
    """(bwrap arguments, environment) that give a sandbox whose read-only binds are `roots` the dataset
    without its test labels."""
    from cnnlib.data import CHECKSUMS_ENV  # as in host_files

    args: list[str] = []
    for path in visible_copies(roots):
        args += ["--ro-bind", "/dev/null", path]
    files = tuple(sorted((name, path) for name, path in host_files().items() if name not in HIDDEN))
    if not files:
        return args, {}
    for name, path in files:
        args += ["--ro-bind", str(path), f"{DATA_INSIDE}/{name}"]
    checksums = _checksum_file(files)
    if not checksums.exists():  # removed under a long-lived worker (a cleaner of /tmp): write it again
        _checksum_file.cache_clear()
        checksums = _checksum_file(files)
    args += ["--ro-bind", str(checksums), CHECKSUMS_INSIDE]
    return args, {"CNNLIB_DATA": DATA_INSIDE, CHECKSUMS_ENV: CHECKSUMS_INSIDE}


@lru_cache(maxsize=4)
def _checksum_file(files: tuple[tuple[str, Path], ...]) -> Path:
    """A checksum file (md5sum's format) with the MD5 of each of `files` as it is, and the published one of
    every other Fashion-MNIST file, in a folder of this process's own, removed when it exits."""
    from cnnlib.data import FASHION_MNIST_FILES, md5sum  # as in host_files

    md5 = {**FASHION_MNIST_FILES, **{name: md5sum(path) for name, path in files}}
    folder = Path(tempfile.mkdtemp(prefix="cnngrader-data-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "MD5SUMS"
    path.write_text("".join(f"{md5[name]}  {name}\n" for name in sorted(md5)), encoding="utf-8")
    path.chmod(0o644)  # read inside the sandbox by its own user
    return path

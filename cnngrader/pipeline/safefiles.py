"""Reading, copying and hashing a student's files on the trusted side, without following anything.

A submission folder is the student's: it may hold symlinks (to /etc/shadow, /dev/zero, the
instructor's solutions), hard links to files outside it, FIFOs, sockets and device nodes, sparse
files of gigabytes that take no blocks, or a hundred thousand tiny files. Every copy the grader
makes of such a folder (the exchange into submitted/, submitted/ into the sandbox, the digests of
incremental grading) goes through this module:

- `scan` lists a tree in one linear pass (os.scandir, lstat only: nothing is followed), and stops
  as soon as the tree is over `FileLimits` (file count, or total *apparent* size, so a sparse file
  counts at its full length), before any file is read;
- only regular files and folders count; anything else, and a file with a hard link outside the
  tree, is *odd*: `copy_tree` skips it and `clean` removes that name (removing a symlink, a FIFO or
  one of a file's hard links loses none of the student's data), each with one line in the log;
- `copy_tree` opens each file with O_NOFOLLOW | O_NONBLOCK, checks that it is still the regular
  file the scan saw, and copies at most the size the scan saw;
- `file_digest` hashes a file as a stream, never whole in memory.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

log = logging.getLogger("cnngrader.pipeline")

CHUNK = 1 << 20


@dataclass(frozen=True)
class FileLimits:
    """What one submission folder may hold, checked before anything of it is read. A submission is a
    notebook or two and maybe a small data file; the sandbox's /submission is a 256 MiB tmpfs."""

    max_bytes: int = 128 * 2**20  # total apparent size of its files
    # files and folders: a submission is a notebook or two. nbgrader's listing of them is linear
    # (cnngrader/pipeline/listing.py; its own took 41 s for 1,000 files on a loaded 2-core machine)
    max_files: int = 100


class TooBig(ValueError):
    """The tree is over its FileLimits; the message says which limit, for the student's line."""


@dataclass
class Scan:
    """A tree as `scan` saw it: its regular files (relative path -> lstat), its folders, and the odd
    entries with why each is odd."""

    root: Path
    files: dict[str, os.stat_result] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)
    odd: list[tuple[str, str]] = field(default_factory=list)
    bytes: int = 0


def kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "not a regular file"


def scan(root: str | os.PathLike, limits: FileLimits | None = None, skip: Iterable[str] = ()) -> Scan:
    """List root's tree without following anything; folders named in `skip` are left out. Raises
    TooBig as soon as the tree has more than limits.max_files entries or its files' apparent sizes
    add up to more than limits.max_bytes, and FileNotFoundError when root is not a real folder."""
    limits = limits or FileLimits()
    root = Path(root)
    if not stat.S_ISDIR(os.lstat(root).st_mode):
        raise FileNotFoundError(f"{root} is not a folder")
    out, skip = Scan(root), set(skip)
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        with os.scandir(root / rel_dir) as entries:
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                st = entry.stat(follow_symlinks=False)
                if len(out.files) + len(out.dirs) + len(out.odd) >= limits.max_files:
                    raise TooBig(f"it holds more than {limits.max_files} files")
                if stat.S_ISDIR(st.st_mode):
                    if entry.name not in skip:
                        out.dirs.append(rel)
                        pending.append(rel)
                elif stat.S_ISREG(st.st_mode):
                    out.files[rel] = st
                    out.bytes += st.st_size
                    if out.bytes > limits.max_bytes:
                        raise TooBig(f"its files add up to more than {limits.max_bytes // 2**20} MiB")
                else:
                    out.odd.append((rel, kind(st.st_mode)))
    _outside_links(out)
    return out


def _outside_links(found: Scan) -> None:
    """Move to `odd` the files with more hard links than the tree itself holds (a link to a file
    outside it, say /etc/shadow)."""
    names: dict[tuple[int, int], int] = {}
    for st in found.files.values():
        names[(st.st_dev, st.st_ino)] = names.get((st.st_dev, st.st_ino), 0) + 1
    for rel, st in list(found.files.items()):
        if st.st_nlink > names[(st.st_dev, st.st_ino)]:
            del found.files[rel]
            found.bytes -= st.st_size
            found.odd.append((rel, "a hard link to a file outside the submission"))


def _log_odd(found: Scan, what: str, label: str, logger: logging.Logger) -> list[str]:
    lines = [f"{label}: {rel} is {why}: {what}" for rel, why in sorted(found.odd)]
    for line in lines:
        logger.warning("%s", line)
    return lines


def open_regular(path: str | os.PathLike, expected: os.stat_result | None = None) -> int:
    """A read-only descriptor of path, which must be a regular file (and the one `expected` describes):
    never follows a symlink, never blocks on a FIFO. OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    st = os.fstat(fd)
    same = expected is None or (st.st_dev, st.st_ino) == (expected.st_dev, expected.st_ino)
    if not stat.S_ISREG(st.st_mode) or not same:
        os.close(fd)
        raise OSError(f"{path} changed while it was copied")
    return fd


def copy_tree(src: str | os.PathLike, dest: str | os.PathLike, limits: FileLimits | None = None,
              skip: Iterable[str] = (), label: str = "", logger: logging.Logger = log) -> list[str]:
    """Copy src's regular files and folders into dest (which may exist), skipping the odd entries with
    a line each (returned too). Raises TooBig (nothing copied) when src is over limits."""
    found = scan(src, limits, skip)
    lines = _log_odd(found, "not copied", label or str(src), logger)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for rel in sorted(found.dirs):
        (dest / rel).mkdir(exist_ok=True)
    for rel, st in found.files.items():
        fd = open_regular(found.root / rel, st)
        with os.fdopen(fd, "rb") as fin, open(dest / rel, "wb") as fout:
            left = st.st_size
            while left > 0 and (chunk := fin.read(min(CHUNK, left))):
                fout.write(chunk)
                left -= len(chunk)
        os.utime(dest / rel, ns=(st.st_atime_ns, st.st_mtime_ns))
    return lines


def clean(folder: str | os.PathLike, limits: FileLimits | None = None, label: str = "",
          logger: logging.Logger = log) -> list[str]:
    """Remove the odd entries of a folder the grader owns (submitted/<student>/<assignment>/), a line
    each (returned too), so that nothing downstream (nbgrader's own copies) can follow them. Only
    names go: no data of the student's is lost. Raises TooBig when the folder is over limits."""
    found = scan(folder, limits)
    lines = _log_odd(found, "removed from the submission", label or str(folder), logger)
    for rel, _why in found.odd:
        os.unlink(found.root / rel)
    return lines


def file_digest(path: str | os.PathLike, h=None, expected: os.stat_result | None = None):
    """Feed path's bytes into the hash h (default a new sha256) in chunks; returns h."""
    h = h if h is not None else hashlib.sha256()
    with os.fdopen(open_regular(path, expected), "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h


# -- bounded walks of a student's tree (digests, depth check) ----------------------------------
MAX_TREE_DEPTH = 64  # folders below a submission's or an assignment's folder that are looked at
MAX_TREE_FILES = 10_000
SKIP_DIRS = {".ipynb_checkpoints", "__pycache__"}
NO_LIMITS = FileLimits(max_bytes=sys.maxsize, max_files=sys.maxsize)  # the grader's own folders


def tree(folder: Path, label: str = "") -> list[tuple[str, Path]]:
    """(label + relative path, path) of the regular files under folder: one linear listing, walked
    iteratively and bounded (MAX_TREE_DEPTH, MAX_TREE_FILES), never following a link, so that a folder
    nested thousands deep costs no more than a shallow one."""
    if not folder.is_dir():
        return []
    out: list[tuple[str, Path]] = []
    todo = [(folder, 0)]
    while todo and len(out) < MAX_TREE_FILES:
        here, depth = todo.pop()
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if depth < MAX_TREE_DEPTH and entry.name not in SKIP_DIRS:
                    todo.append((path, depth + 1))
            elif entry.is_file(follow_symlinks=False) and len(out) < MAX_TREE_FILES:
                out.append((f"{label}{path.relative_to(folder)}", path))
    return out


def too_deep(folder: Path, max_folders: int = MAX_TREE_FILES) -> str | None:
    """The first folder (relative) deeper than MAX_TREE_DEPTH under folder, or None; found by an
    iterative walk that looks at no more than max_folders folders (nbgrader's own walk recurses
    and would fail on such a tree)."""
    todo, looked = [(folder, 0)], 0
    while todo and looked < max_folders:
        here, depth = todo.pop()
        looked += 1
        try:
            subs = [Path(e.path) for e in os.scandir(here) if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        if subs and depth + 1 > MAX_TREE_DEPTH:
            return str(here.relative_to(folder))[:80]
        todo += [(sub, depth + 1) for sub in subs]
    return None

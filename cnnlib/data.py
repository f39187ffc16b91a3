"""Datasets: Fashion-MNIST found locally or downloaded, always verified, and scikit-learn's bundled
digits as an offline fallback.

Fashion-MNIST is the four official gzipped IDX files. Each is looked for in `root`, then
$CNNLIB_DATA, then the user cache, then the system folder where Debian's `dataset-fashion-mnist`
package installs it (read only: never written to), and only then downloaded into data_dir(root).
A file is accepted when its MD5 is the published one of the .gz file, or when the MD5 of its
decompressed content is the published one of the raw IDX file: Debian gzips the files again, so
any faithful gzip passes. Downloads are written atomically (a temporary file renamed into place),
so an interrupted download never leaves a half-written file under the final name.

Two environment variables change the lookup, for tests and private mirrors: $CNNLIB_SYSTEM_DATA names
the system folder (point it at an empty folder to hide a system-wide copy), and $CNNLIB_DATA_MD5
names a file of `<md5>  <file name>` lines (md5sum's format) whose MD5s the .gz files must have
instead of the published ones. What a loader used is printed as its source line ("cnnlib.data: ...
(fingerprint ...)"): the book's build compares it with data_source() to know when a cached chapter
loaded other data than it would now.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from ._checks import int_at_least

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# name -> MD5, as published with the dataset.
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

# name -> MD5 of the decompressed IDX file, as published with the dataset.
FASHION_MNIST_CONTENT_MD5 = {
    "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
}

# Where Debian's package dataset-fashion-mnist puts the files (`apt-get install dataset-fashion-mnist`).
# Searched last among the local folders, and never written to.
SYSTEM_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_LABELS = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
DIGITS_LABELS = tuple(str(d) for d in range(10))

DOWNLOAD_TIMEOUT_S = 30

SYSTEM_DATA_ENV = "CNNLIB_SYSTEM_DATA"
CHECKSUMS_ENV = "CNNLIB_DATA_MD5"

# The line a loader prints to say what it used; the fingerprint is data_fingerprint()'s.
# load_data's line after it fell back to the digits says DIGITS_FALLBACK.
DIGITS_FALLBACK = "the bundled digits, since Fashion-MNIST is not available"
SOURCE_LINE = re.compile(r"^cnnlib\.data: (?P<what>.+) \(fingerprint (?P<fingerprint>[0-9a-f]{12})\)$", re.MULTILINE)


class Dataset(NamedTuple):
    """What load_data returns: the loaders, the name of the dataset actually used, and its class names."""

    train_iter: DataLoader
    test_iter: DataLoader
    name: str
    labels: tuple[str, ...]


class DatasetUnavailable(RuntimeError):
    """The dataset is neither cached nor downloadable."""


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """Where datasets are cached: `root`, else $CNNLIB_DATA, else ~/.cache/cnnlib (or $XDG_CACHE_HOME/cnnlib)."""
    if root is not None:
        return Path(root)
    if os.environ.get("CNNLIB_DATA"):
        return Path(os.environ["CNNLIB_DATA"])
    return user_cache_dir()


def user_cache_dir() -> Path:
    """The user's cache folder for cnnlib: $XDG_CACHE_HOME/cnnlib, else ~/.cache/cnnlib."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "cnnlib"


def system_data_dir() -> Path:
    """The system-wide folder, only ever read: $CNNLIB_SYSTEM_DATA when set, else SYSTEM_DATA_DIR."""
    return Path(os.environ.get(SYSTEM_DATA_ENV) or SYSTEM_DATA_DIR)


def search_dirs(root: str | os.PathLike | None = None) -> list[Path]:
    """The folders where Fashion-MNIST is looked for, in order: `root`, $CNNLIB_DATA, the user
    cache, then system_data_dir(). Each folder appears once."""
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path or None, got {type(root).__name__}")
    candidates = [Path(root)] if root is not None else []
    if os.environ.get("CNNLIB_DATA"):
        candidates.append(Path(os.environ["CNNLIB_DATA"]))
    candidates += [user_cache_dir(), system_data_dir()]
    dirs: list[Path] = []
    for d in candidates:
        if d not in dirs:
            dirs.append(d)
    return dirs


def md5sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def content_md5(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str | None:
    """Hex MD5 of a gzip file's decompressed content, or None when it is not a complete gzip file."""
    h = hashlib.md5()
    try:
        with gzip.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(chunk_size), b""):
                h.update(chunk)
    except (OSError, EOFError, zlib.error):
        return None
    return h.hexdigest()


def read_md5_file(path: str | os.PathLike) -> dict[str, str]:
    """The `<md5>  <file name>` lines of a checksum file (md5sum's format, `*` before the name
    allowed) as {name: md5}. Blank lines and lines starting with # are skipped."""
    listed = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ValueError(f"${CHECKSUMS_ENV} must name a readable checksum file, got {str(path)!r}: {e}") from e
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([0-9a-fA-F]{32}) [ *](\S+)\s*", line)
        if match is None:
            raise ValueError(f"{path}, line {number}: expected '<32 hex digits>  <file name>', got {line!r}")
        listed[match[2]] = match[1].lower()
    return listed


def expected_md5(name: str) -> tuple[str, str | None]:
    """(MD5 of the .gz file, MD5 of its decompressed content or None) that the file `name` must match:
    the published ones, or the .gz MD5 listed in the file $CNNLIB_DATA_MD5 names, when it is set."""
    if name not in FASHION_MNIST_FILES:
        raise ValueError(f"name must be one of {sorted(FASHION_MNIST_FILES)}, got {name!r}")
    checksums = os.environ.get(CHECKSUMS_ENV)
    if not checksums:
        return FASHION_MNIST_FILES[name], FASHION_MNIST_CONTENT_MD5.get(name)
    listed = read_md5_file(checksums)
    if name not in listed:
        raise ValueError(f"${CHECKSUMS_ENV} names {checksums}, which lists no MD5 for {name}")
    return listed[name], None


def is_verified(path: str | os.PathLike, name: str) -> bool:
    """Whether `path` is the Fashion-MNIST file `name`: its own MD5 is the expected .gz one, or the
    MD5 of its decompressed content is the published raw one (so a re-gzipped copy passes)."""
    gz_md5, raw_md5 = expected_md5(name)
    if md5sum(path) == gz_md5:
        return True
    return raw_md5 is not None and content_md5(path) == raw_md5


def find_file(name: str, dirs: list[Path], skip_notice: Path | None = None, quiet: bool = False) -> Path | None:
    """The first verified copy of `name` in `dirs`, or None. A copy that fails verification is
    passed over with a printed notice (except in `skip_notice`, whose caller reports it, or when `quiet`)."""
    for d in dirs:
        path = Path(d) / name
        if not path.is_file():
            continue
        if is_verified(path, name):
            return path
        if not quiet and (skip_notice is None or Path(d) != Path(skip_notice)):
            print(f"cnnlib.data: {path} fails its MD5 check (corrupt or truncated); not using it")
    return None


def download(url: str, path: str | os.PathLike, md5: str | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch `url` into `path` atomically, verifying the MD5 before the file gets its final name.

    Raises DatasetUnavailable when the URL cannot be reached and ValueError on a checksum mismatch;
    in both cases nothing is left at `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
            except (urllib.error.URLError, OSError) as e:
                raise DatasetUnavailable(f"could not download {url}: {getattr(e, 'reason', e)}") from e
        got = md5sum(tmp)
        if md5 is not None and got != md5:
            raise ValueError(f"checksum mismatch for {url}: expected MD5 {md5}, got {got}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def fetch(name: str, md5: str, root: Path, base_url: str, download_ok: bool, dirs: list[Path] | None = None) -> Path:
    """Return the path of a verified local copy of `name`, looked for in `dirs` (by default just
    `root`); else download it into `root`, replacing a corrupt copy there."""
    found = find_file(name, [root] if dirs is None else dirs, skip_notice=root)
    if found is not None:
        return found
    path = root / name
    if path.exists():
        print(f"cnnlib.data: cached {path} fails its MD5 check (corrupt or truncated); fetching it again")
        path.unlink()
    if not download_ok:
        where = ", ".join(str(d) for d in (dirs or [root]))
        raise DatasetUnavailable(f"{name} is not in {where} and download=False")
    return download(base_url + name, path, md5)


def find_fashion_mnist(root: str | os.PathLike | None = None) -> dict[str, Path | None]:
    """Each of the four files' first verified copy in search_dirs(root), or None where there is none:
    what load_fashion_mnist(root=root) would read, found without downloading (and without notices)."""
    dirs = search_dirs(root)
    return {name: find_file(name, dirs, quiet=True) for name in FASHION_MNIST_FILES}


def data_fingerprint(
    files: dict[str, Path | None], root: str | os.PathLike | None = None, base_url: str = FASHION_MNIST_URL
) -> str:
    """12 hex digits naming the data that load_fashion_mnist(root=root, base_url=base_url) reads when
    the verified copies are `files` (as find_fashion_mnist returns them): each copy's absolute path
    and the checksums it was verified against, and for a missing file the URL and the folder of its
    download. A verified copy's content is fixed by its checksums, so no file is read here."""
    h = hashlib.sha256()
    for name in FASHION_MNIST_FILES:
        path = files.get(name)
        if path is None:
            h.update(f"{name}: none, download {base_url}{name} into {os.path.abspath(data_dir(root))}\n".encode())
        else:
            h.update(f"{name}: {os.path.abspath(path)} {expected_md5(name)}\n".encode())
    return h.hexdigest()[:12]


def describe_files(files: dict[str, Path]) -> str:
    """'Fashion-MNIST from <folder>' for the verified copies `files`, naming the checksum file that
    replaced the published MD5s, if one did."""
    folders = list(dict.fromkeys(os.path.dirname(os.path.abspath(p)) for p in files.values()))
    what = "Fashion-MNIST from " + ", ".join(folders)
    if os.environ.get(CHECKSUMS_ENV):
        checksums = os.path.abspath(os.environ[CHECKSUMS_ENV])
        what += f", verified against the MD5s in {checksums} (${CHECKSUMS_ENV}), not the published ones"
    return what


def data_source(root: str | os.PathLike | None = None, base_url: str = FASHION_MNIST_URL) -> tuple[str, str]:
    """(what, fingerprint): which Fashion-MNIST load_fashion_mnist(root=root) would read now, found
    without downloading. `what` names the folder, or the files that would have to be downloaded."""
    files = find_fashion_mnist(root)
    missing = [name for name, path in files.items() if path is None]
    if missing:
        into = os.path.abspath(data_dir(root))
        what = f"no verified {', '.join(missing)}: to be downloaded from {base_url} into {into}"
    else:
        what = describe_files(files)
    return what, data_fingerprint(files, root, base_url)


def source_line(what: str, fingerprint: str) -> str:
    """The line a loader prints to say what it used (SOURCE_LINE reads it back)."""
    return f"cnnlib.data: {what} (fingerprint {fingerprint})"


def read_idx(path: str | os.PathLike, count: int | None = None) -> np.ndarray:
    """Read a (gzipped) IDX file of unsigned bytes into an array of its stated shape, or of its first `count`
    items only: (count, *dims[1:]), decompressing no further than they reach."""
    if count is not None and (type(count) is not int or count < 0):
        raise ValueError(f"count must be None or an int >= 0, got {count!r}")
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4:
            raise ValueError(f"{path} is not an IDX file: it is only {len(head)} bytes long")
        zero, dtype_code, ndim = struct.unpack(">HBB", head)
        if zero != 0 or dtype_code != 0x08:
            raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {head.hex()})")
        shape = f.read(4 * ndim)
        if len(shape) < 4 * ndim:
            raise ValueError(f"{path} is not an IDX file: its header ends after {4 + len(shape)} bytes")
        dims = struct.unpack(f">{ndim}I", shape)
        if count is not None:
            if ndim == 0 or count > dims[0]:
                raise ValueError(f"count must be at most the {dims[0] if ndim else 0} items of {path}, got {count}")
            dims = (count, *dims[1:])
        size = int(np.prod(dims))
        data = f.read(size) if count is not None else f.read()
    body = np.frombuffer(data, dtype=np.uint8)
    if body.size != size:
        raise ValueError(f"{path} holds {body.size} values but its header says {dims}")
    return body.reshape(dims)


def _loaders(X_train, y_train, X_test, y_test, batch_size: int) -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    train = DataLoader(TensorDataset(X_train, y_train), batch_size=batch_size, shuffle=True, generator=g)
    test = DataLoader(TensorDataset(X_test, y_test), batch_size=batch_size, shuffle=False)
    return train, test


def load_fashion_mnist(
    batch_size: int,
    root: str | os.PathLike | None = None,
    download: bool = True,
    base_url: str = FASHION_MNIST_URL,
) -> tuple[DataLoader, DataLoader]:
    """Fashion-MNIST as (train_iter, test_iter): 60,000 and 10,000 images.

    Batches are X of shape (batch, 1, 28, 28), float32 in [0, 1], and y of shape (batch,), int64.
    Each file is looked for in search_dirs(root) (`root`, $CNNLIB_DATA, the user cache, then
    system_data_dir(), which is only read) and otherwise downloaded into data_dir(root); a corrupt
    copy there is fetched again. Prints its source line: the folder it read and the data's fingerprint.
    """
    batch_size = int_at_least("batch_size", batch_size, 1)
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}")
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a string, got {type(base_url).__name__}")
    dirs = search_dirs(root)
    root = data_dir(root)
    try:
        paths = {
            name: fetch(name, expected_md5(name)[0], root, base_url, download, dirs) for name in FASHION_MNIST_FILES
        }
    except DatasetUnavailable as e:
        raise DatasetUnavailable(
            f"Fashion-MNIST is not available: {e}.\n"
            f"To use it offline, install Debian's package (apt-get install dataset-fashion-mnist), or put "
            f"these four files in {root} (or set CNNLIB_DATA to their folder): "
            + ", ".join(FASHION_MNIST_FILES)
        ) from e
    print(source_line(describe_files(paths), data_fingerprint(paths, root, base_url)))

    def images(name: str) -> torch.Tensor:
        return torch.from_numpy(read_idx(paths[name]).astype(np.float32) / 255.0).unsqueeze(1)  # (N, 1, 28, 28)

    def labels(name: str) -> torch.Tensor:
        return torch.from_numpy(read_idx(paths[name]).astype(np.int64))

    return _loaders(
        images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
        images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"),
        batch_size,
    )


def load_fashion_mnist_split(
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = True,
    base_url: str = FASHION_MNIST_URL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of Fashion-MNIST as tensors (X, y), reading only that split's two files.

    split: 'train' (60,000 images) or 'test' (10,000). Returns X of shape (N, 1, 28, 28), float32 in
    [0, 1], and y of shape (N,), int64. The files are found, verified and downloaded as by
    load_fashion_mnist (which prints its source line). Where only the training files are at hand (the
    grading sandbox keeps the test labels out), load_fashion_mnist_split("train") still works.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}")
    prefix = "train" if split == "train" else "t10k"
    names = [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"]
    dirs = search_dirs(root)
    folder = data_dir(root)
    try:
        paths = {name: fetch(name, expected_md5(name)[0], folder, base_url, download, dirs) for name in names}
    except DatasetUnavailable as e:
        raise DatasetUnavailable(
            f"Fashion-MNIST's {split} split is not available: {e}.\n"
            f"To use it offline, install Debian's package (apt-get install dataset-fashion-mnist), or put "
            f"{' and '.join(names)} in {folder} (or set CNNLIB_DATA to their folder)"
        ) from e
    print(source_line(describe_files(paths), data_fingerprint(find_fashion_mnist(root), root, base_url)))
    X = torch.from_numpy(read_idx(paths[names[0]]).astype(np.float32) / 255.0).unsqueeze(1)  # (N, 1, 28, 28)
    return X, torch.from_numpy(read_idx(paths[names[1]]).astype(np.int64))


def digits28(test_fraction: float = 0.2,
             seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 bundled 8x8 digits, resized to 28x28 and split per class.

    Returns: X_train (N, 1, 28, 28), y_train (N,), X_test, y_test; pixels float32 in [0, 1].
    The split is fixed by `seed` and stratified, so every class keeps its share in both parts.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    X = torch.nn.functional.interpolate(X, size=(28, 28), mode="bilinear", align_corners=False).clamp_(0, 1)
    y = torch.tensor(digits.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return X[idx_train], y[idx_train], X[idx_test], y[idx_test]


def load_digits28(batch_size: int) -> tuple[DataLoader, DataLoader]:
    """The bundled digits as (train_iter, test_iter): 1,437 and 360 images of shape (1, 28, 28).

    Real handwritten data that needs no network; the course's offline stand-in for Fashion-MNIST.
    """
    return _loaders(*digits28(), int_at_least("batch_size", batch_size, 1))


def load_data(
    name: str = "fashion-mnist",
    batch_size: int = 256,
    fallback: str | None = "digits",
    root: str | os.PathLike | None = None,
) -> Dataset:
    """Load `name` ('fashion-mnist' or 'digits'); if Fashion-MNIST is unavailable and `fallback`
    is 'digits', print a notice and use the bundled digits instead.

    Returns a Dataset(train_iter, test_iter, name, labels) whose `name` is the dataset actually used.
    """
    if name not in ("fashion-mnist", "digits"):
        raise ValueError(f"name must be 'fashion-mnist' or 'digits', got {name!r}")
    if fallback not in (None, "digits"):
        raise ValueError(f"fallback must be 'digits' or None, got {fallback!r}")
    if name == "digits":
        return Dataset(*load_digits28(batch_size), "digits", DIGITS_LABELS)
    try:
        return Dataset(*load_fashion_mnist(batch_size, root=root), "fashion-mnist", FASHION_MNIST_LABELS)
    except DatasetUnavailable as e:
        if fallback is None:
            raise
        first_line = str(e).splitlines()[0]
        print(
            "NOTICE: " + first_line + "\n"
            "NOTICE: falling back to scikit-learn's bundled digits (1,437 train / 360 test images, "
            "8x8 resized to 28x28). Results below are for digits, not Fashion-MNIST."
        )
        print(source_line(DIGITS_FALLBACK, data_fingerprint(find_fashion_mnist(root), root)))
        return Dataset(*load_digits28(batch_size), "digits", DIGITS_LABELS)

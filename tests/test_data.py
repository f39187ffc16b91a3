"""cnnlib.data: the Fashion-MNIST lookup, downloader and loader on small IDX files that these tests
write and serve through file:// URLs, the real files of Debian's dataset-fashion-mnist when they are
installed, and the bundled-digits fallback. No test touches the network.

Every test here sees an empty fake system folder and an empty user cache (the `isolated` fixture),
so files installed on the machine never change what a test finds; the tests of the system-folder
lookup point data.SYSTEM_DATA_DIR (or $CNNLIB_SYSTEM_DATA) at a folder they fill themselves."""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import cnnlib
from cnnlib import data

NAMES = list(data.FASHION_MNIST_FILES)  # the four official file names
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = NAMES
N_TRAIN, N_TEST = 7, 5


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: two zero bytes, type code 0x08, the number of dimensions,
    each dimension as a big-endian uint32, then the values."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_gz(path: Path, payload: bytes) -> str:
    path.write_bytes(gzip.compress(payload, mtime=0))
    return hashlib.md5(path.read_bytes()).hexdigest()


def url_of(folder: Path) -> str:
    return folder.as_uri() + "/"


def leftovers(folder: Path) -> list[str]:
    """Temporary download files left in a folder."""
    return [n for n in os.listdir(folder) if n.endswith(".part")] if folder.exists() else []


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """An empty fake system folder, an empty user cache and no CNNLIB_DATA, for every test."""
    system = tmp_path / "system"
    monkeypatch.setattr(data, "SYSTEM_DATA_DIR", system)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CNNLIB_DATA", raising=False)
    monkeypatch.delenv(data.SYSTEM_DATA_ENV, raising=False)
    monkeypatch.delenv(data.CHECKSUMS_ENV, raising=False)
    return SimpleNamespace(system=system, cache=tmp_path / "xdg" / "cnnlib")


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Four small Fashion-MNIST-format files in a folder served as a file:// URL, with
    cnnlib.data.FASHION_MNIST_FILES patched to their MD5s."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "server"
    folder.mkdir()
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        TRAIN_LABELS: rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        TEST_LABELS: rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }
    arrays[TRAIN_IMAGES][0, 0, :2] = (0, 255)  # both ends of the pixel range
    md5s = {name: write_gz(folder / name, idx_bytes(a)) for name, a in arrays.items()}
    content = {name: hashlib.md5(idx_bytes(a)).hexdigest() for name, a in arrays.items()}
    monkeypatch.setattr(data, "FASHION_MNIST_FILES", md5s)
    monkeypatch.setattr(data, "FASHION_MNIST_CONTENT_MD5", content)
    return SimpleNamespace(folder=folder, url=url_of(folder), md5s=md5s, arrays=arrays)


def regzip(src: Path, dst: Path) -> None:
    """The same content, gzipped again with other settings (as Debian does): other bytes, other MD5."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(gzip.compress(gzip.decompress(src.read_bytes()), compresslevel=1, mtime=12345))
    assert dst.read_bytes() != src.read_bytes()


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.fixture
def offline(monkeypatch):
    """Make every URL unreachable, and count the attempts."""
    calls = []

    def urlopen(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("network disabled by the test")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


def all_batches(loader):
    Xs, ys = zip(*loader)
    return torch.cat(Xs), torch.cat(ys)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST: download, verify, cache, load.
# --------------------------------------------------------------------------------------------


def test_download_cache_and_load(server, tmp_path):
    root = tmp_path / "cache"
    train_iter, test_iter = cnnlib.load_fashion_mnist(3, root=root, base_url=server.url)

    X, y = next(iter(train_iter))
    assert X.shape == (3, 1, 28, 28) and X.dtype == torch.float32
    assert y.shape == (3,) and y.dtype == torch.int64

    # The test set keeps its order: exactly the written pixels, scaled to [0, 1].
    X, y = all_batches(test_iter)
    assert torch.equal(X, torch.from_numpy(server.arrays[TEST_IMAGES]).float().unsqueeze(1) / 255)
    assert torch.equal(y, torch.from_numpy(server.arrays[TEST_LABELS]).long())

    # The training set is shuffled: every written image comes back once, with its own label.
    X, y = all_batches(train_iter)
    assert X.shape == (N_TRAIN, 1, 28, 28)
    assert X.min() == 0 and X.max() == 1
    written = torch.from_numpy(server.arrays[TRAIN_IMAGES]).float().reshape(N_TRAIN, -1) / 255
    order = [int((written == x.reshape(1, -1)).all(dim=1).nonzero()) for x in X]
    assert sorted(order) == list(range(N_TRAIN))
    assert y.tolist() == [int(server.arrays[TRAIN_LABELS][i]) for i in order]

    # Cached under their own names, verified, with no temporary files left.
    assert sorted(os.listdir(root)) == sorted(NAMES)
    for name in NAMES:
        assert data.md5sum(root / name) == server.md5s[name]


def test_cached_files_are_used_without_a_download(server, tmp_path, offline):
    root = tmp_path / "cache"
    root.mkdir()
    for name in NAMES:
        shutil.copy(server.folder / name, root / name)
    train_iter, test_iter = cnnlib.load_fashion_mnist(4, root=root, base_url=server.url)
    assert len(train_iter.dataset) == N_TRAIN and len(test_iter.dataset) == N_TEST
    assert offline == []


def test_download_false_with_files_present_works_offline(server, tmp_path, offline):
    root = tmp_path / "cache"
    root.mkdir()
    for name in NAMES:
        shutil.copy(server.folder / name, root / name)
    train_iter, test_iter = cnnlib.load_fashion_mnist(
        4, root=root, download=False, base_url=url_of(tmp_path / "nowhere")
    )
    assert len(train_iter.dataset) == N_TRAIN and len(test_iter.dataset) == N_TEST
    assert offline == []


def test_download_false_without_files_says_so(server, tmp_path):
    root = tmp_path / "empty"
    with pytest.raises(cnnlib.DatasetUnavailable, match="download=False"):
        cnnlib.load_fashion_mnist(4, root=root, download=False, base_url=server.url)


def test_checksum_mismatch_leaves_nothing_behind(server, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setitem(data.FASHION_MNIST_FILES, TRAIN_LABELS, "0" * 32)
    with pytest.raises(ValueError, match=f"checksum mismatch for .*{TRAIN_LABELS}: expected MD5 0{{32}}"):
        cnnlib.load_fashion_mnist(4, root=root, base_url=server.url)
    assert not (root / TRAIN_LABELS).exists()
    assert leftovers(root) == []


def test_download_checks_md5_before_the_file_gets_its_name(server, tmp_path):
    target = tmp_path / "dl" / "labels.gz"
    with pytest.raises(ValueError, match="checksum mismatch"):
        data.download(server.url + TEST_LABELS, target, md5="f" * 32)
    assert not target.exists() and leftovers(target.parent) == []
    # The right checksum, or none, and the file arrives whole.
    assert data.download(server.url + TEST_LABELS, target, md5=server.md5s[TEST_LABELS]) == target
    assert target.read_bytes() == (server.folder / TEST_LABELS).read_bytes()
    assert leftovers(target.parent) == []


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_cached_file_is_fetched_again(server, tmp_path, capsys, damage):
    root = tmp_path / "cache"
    cnnlib.load_fashion_mnist(4, root=root, base_url=server.url)
    cached = root / TRAIN_IMAGES
    good = cached.read_bytes()
    cached.write_bytes(b"not a gzip file" if damage == "garbage" else good[: len(good) // 2])
    capsys.readouterr()

    train_iter, _ = cnnlib.load_fashion_mnist(4, root=root, base_url=server.url)
    assert "fails its MD5 check" in capsys.readouterr().out
    assert cached.read_bytes() == good  # fetched again and verified
    assert len(train_iter.dataset) == N_TRAIN
    assert leftovers(root) == []


def test_unreachable_and_not_cached_names_the_folder_and_files(server, tmp_path):
    root = tmp_path / "cache"
    with pytest.raises(cnnlib.DatasetUnavailable) as info:
        cnnlib.load_fashion_mnist(4, root=root, base_url=url_of(tmp_path / "no-such-server"))
    message = str(info.value)
    assert "Fashion-MNIST is not available" in message
    assert str(root) in message and "CNNLIB_DATA" in message
    for name in NAMES:
        assert name in message
    assert leftovers(root) == []


def test_data_dir_precedence(tmp_path, monkeypatch):
    env, arg, xdg, home = (tmp_path / d for d in ("env", "arg", "xdg", "home"))
    monkeypatch.setenv("CNNLIB_DATA", str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    assert cnnlib.data_dir() == env
    assert cnnlib.data_dir(arg) == arg  # root= wins over the environment
    assert cnnlib.data_dir(str(arg)) == arg
    monkeypatch.delenv("CNNLIB_DATA")
    assert cnnlib.data_dir() == xdg / "cnnlib"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(home))
    assert cnnlib.data_dir() == home / ".cache" / "cnnlib"


def test_loader_honours_CNNLIB_DATA_and_root(server, tmp_path, monkeypatch):
    env, arg = tmp_path / "env", tmp_path / "arg"
    monkeypatch.setenv("CNNLIB_DATA", str(env))
    cnnlib.load_fashion_mnist(4, base_url=server.url)
    assert sorted(os.listdir(env)) == sorted(NAMES)
    cnnlib.load_fashion_mnist(4, root=arg, base_url=server.url)
    assert not arg.exists()  # found in $CNNLIB_DATA, looked at after root: nothing to download
    monkeypatch.delenv("CNNLIB_DATA")
    cnnlib.load_fashion_mnist(4, root=arg, base_url=server.url)
    assert sorted(os.listdir(arg)) == sorted(NAMES)


# --------------------------------------------------------------------------------------------
# Where the files are looked for: root, $CNNLIB_DATA, the user cache, the system folder.
# --------------------------------------------------------------------------------------------


def test_search_dirs_order(tmp_path, monkeypatch, isolated):
    env, arg = tmp_path / "env", tmp_path / "arg"
    assert data.search_dirs() == [isolated.cache, isolated.system]
    monkeypatch.setenv("CNNLIB_DATA", str(env))
    assert data.search_dirs() == [env, isolated.cache, isolated.system]
    assert data.search_dirs(arg) == [arg, env, isolated.cache, isolated.system]
    assert data.search_dirs(str(env)) == [env, isolated.cache, isolated.system]  # each folder once
    with pytest.raises(TypeError, match="root must be a path or None, got int"):
        data.search_dirs(3)


def test_system_folder_is_read_and_never_written(server, tmp_path, offline, isolated):
    for name in NAMES:
        regzip(server.folder / name, isolated.system / name)
    before = snapshot(isolated.system)
    train_iter, test_iter = cnnlib.load_fashion_mnist(4, root=tmp_path / "cache", download=True, base_url=server.url)
    X, y = all_batches(test_iter)
    assert torch.equal(X, torch.from_numpy(server.arrays[TEST_IMAGES]).float().unsqueeze(1) / 255)
    assert len(train_iter.dataset) == N_TRAIN
    assert offline == []  # found, so nothing was downloaded
    assert snapshot(isolated.system) == before
    assert not (tmp_path / "cache").exists() and not isolated.cache.exists()  # and nothing copied anywhere


def test_lookup_order_root_env_cache_system(server, tmp_path, monkeypatch, isolated):
    env, arg = tmp_path / "env", tmp_path / "arg"
    monkeypatch.setenv("CNNLIB_DATA", str(env))
    dirs = [arg, env, isolated.cache, isolated.system]
    for d in dirs:
        regzip(server.folder / TEST_LABELS, d / TEST_LABELS)
    for expected in dirs:
        assert data.find_file(TEST_LABELS, data.search_dirs(arg)) == expected / TEST_LABELS
        (expected / TEST_LABELS).unlink()
    assert data.find_file(TEST_LABELS, data.search_dirs(arg)) is None


def test_corrupt_system_file_is_passed_over_and_downloaded(server, tmp_path, capsys, isolated):
    isolated.system.mkdir()
    for name in NAMES:
        shutil.copy(server.folder / name, isolated.system / name)
    bad = isolated.system / TRAIN_LABELS
    bad.write_bytes(bad.read_bytes()[:-10])  # truncated
    before = snapshot(isolated.system)
    cnnlib.load_fashion_mnist(4, base_url=server.url)
    out = capsys.readouterr().out
    assert f"{bad} fails its MD5 check" in out and "not using it" in out
    assert os.listdir(isolated.cache) == [TRAIN_LABELS]  # only the bad one was fetched, into the user cache
    assert data.md5sum(isolated.cache / TRAIN_LABELS) == server.md5s[TRAIN_LABELS]
    assert snapshot(isolated.system) == before


def test_verification_accepts_any_faithful_gzip(server, tmp_path):
    regzipped = tmp_path / "re" / TRAIN_IMAGES
    regzip(server.folder / TRAIN_IMAGES, regzipped)
    assert data.md5sum(regzipped) != server.md5s[TRAIN_IMAGES]
    assert data.is_verified(regzipped, TRAIN_IMAGES)
    assert data.is_verified(server.folder / TRAIN_IMAGES, TRAIN_IMAGES)
    assert not data.is_verified(server.folder / TRAIN_IMAGES, TEST_IMAGES)  # another file's content
    other = tmp_path / "other.gz"
    write_gz(other, idx_bytes(np.zeros((N_TRAIN, 28, 28), dtype=np.uint8)))
    assert not data.is_verified(other, TRAIN_IMAGES)
    (tmp_path / "junk").write_bytes(b"junk")
    assert data.content_md5(tmp_path / "junk") is None and not data.is_verified(tmp_path / "junk", TRAIN_IMAGES)
    with pytest.raises(ValueError, match="name must be one of"):
        data.is_verified(regzipped, "mnist.gz")


REAL_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
REAL_FILES_PRESENT = all((REAL_SYSTEM_DIR / name).is_file() for name in NAMES)


@pytest.mark.skipif(not REAL_FILES_PRESENT, reason=f"Debian's dataset-fashion-mnist is not installed "
                    f"(no {REAL_SYSTEM_DIR}); apt-get install dataset-fashion-mnist")
def test_real_debian_fashion_mnist(monkeypatch, offline, tmp_path):
    monkeypatch.setattr(data, "SYSTEM_DATA_DIR", REAL_SYSTEM_DIR)
    for name in NAMES:
        # Debian gzipped the files again: the content is the official one, the .gz bytes are not.
        assert data.content_md5(REAL_SYSTEM_DIR / name) == data.FASHION_MNIST_CONTENT_MD5[name]
        assert data.is_verified(REAL_SYSTEM_DIR / name, name)
    train_iter, test_iter = cnnlib.load_fashion_mnist(1000, root=tmp_path / "empty", download=False)
    assert offline == [] and not (tmp_path / "empty").exists()
    assert len(train_iter.dataset) == 60_000 and len(test_iter.dataset) == 10_000
    X, y = train_iter.dataset.tensors
    assert X.shape == (60_000, 1, 28, 28) and X.dtype == torch.float32 and 0 <= X.min() < X.max() <= 1
    assert torch.bincount(y, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(test_iter.dataset.tensors[1], minlength=10).tolist() == [1000] * 10
    ds = cnnlib.load_data(batch_size=256)
    assert ds.name == "fashion-mnist" and offline == []


def test_read_idx(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "plain.idx").write_bytes(idx_bytes(a))  # uncompressed works too
    assert np.array_equal(data.read_idx(tmp_path / "plain.idx"), a)
    write_gz(tmp_path / "a.gz", idx_bytes(a))
    assert np.array_equal(data.read_idx(tmp_path / "a.gz"), a)


def test_read_idx_reads_the_first_count_items_only(tmp_path):
    a = np.arange(5 * 3 * 4, dtype=np.uint8).reshape(5, 3, 4)
    write_gz(tmp_path / "a.gz", idx_bytes(a) + b"trailing bytes it never reaches")
    (tmp_path / "plain.idx").write_bytes(idx_bytes(a))
    for path in (tmp_path / "a.gz", tmp_path / "plain.idx"):
        assert np.array_equal(data.read_idx(path, count=2), a[:2])
        assert data.read_idx(path, count=0).shape == (0, 3, 4)
        assert np.array_equal(data.read_idx(path, count=5), a)
        with pytest.raises(ValueError, match=r"count must be at most the 5 items of .*, got 6"):
            data.read_idx(path, count=6)
    for bad in (-1, 2.0, "2", True):
        with pytest.raises(ValueError, match=r"count must be None or an int >= 0, got "):
            data.read_idx(tmp_path / "a.gz", count=bad)
    write_gz(tmp_path / "short.gz", idx_bytes(a)[:-20])  # cut inside the third item
    assert np.array_equal(data.read_idx(tmp_path / "short.gz", count=2), a[:2])
    with pytest.raises(ValueError, match=r"holds 40 values but its header says \(4, 3, 4\)"):
        data.read_idx(tmp_path / "short.gz", count=4)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x00\x00\x0d\x01" + struct.pack(">I", 3) + b"\x00" * 12, "not an IDX file of unsigned bytes"),  # floats
        (b"\x01\x02\x08\x01" + struct.pack(">I", 3) + b"abc", "not an IDX file of unsigned bytes"),
        (b"\x00\x00", "not an IDX file: it is only 2 bytes"),
        (b"\x00\x00\x08\x02" + struct.pack(">I", 2) + b"\x00", "not an IDX file: its header ends after 9 bytes"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + b"abcde", r"holds 5 values but its header says \(2, 3\)"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path, payload, message):
    write_gz(tmp_path / "bad.gz", payload)
    with pytest.raises(ValueError, match=message):
        data.read_idx(tmp_path / "bad.gz")


def test_md5sum_reads_in_chunks(tmp_path):
    payload = os.urandom(10_000)
    (tmp_path / "f").write_bytes(payload)
    assert data.md5sum(tmp_path / "f", chunk_size=999) == hashlib.md5(payload).hexdigest()


def test_CNNLIB_SYSTEM_DATA_names_the_system_folder(server, tmp_path, monkeypatch, offline, isolated):
    other = tmp_path / "other-system"
    for name in NAMES:
        regzip(server.folder / name, isolated.system / name)
    monkeypatch.setenv(data.SYSTEM_DATA_ENV, str(other))  # e.g. to hide Debian's copy
    assert data.system_data_dir() == other and data.search_dirs()[-1] == other
    with pytest.raises(cnnlib.DatasetUnavailable):
        cnnlib.load_fashion_mnist(4, download=False)
    monkeypatch.setenv(data.SYSTEM_DATA_ENV, str(isolated.system))
    cnnlib.load_fashion_mnist(4, download=False)
    monkeypatch.setenv(data.SYSTEM_DATA_ENV, "")  # empty: the default
    assert data.system_data_dir() == isolated.system


# --------------------------------------------------------------------------------------------
# $CNNLIB_DATA_MD5: other checksums than the published ones, for tests and private mirrors.
# --------------------------------------------------------------------------------------------


def test_CNNLIB_DATA_MD5_replaces_the_published_checksums(tmp_path, monkeypatch, capsys, offline, isolated):
    # Small files in the right format, whose MD5s are not the published ones: refused by default.
    rng = np.random.default_rng(1)
    folder = tmp_path / "mine"
    folder.mkdir()
    arrays = {TRAIN_IMAGES: rng.integers(0, 256, (3, 28, 28)), TRAIN_LABELS: np.arange(3),
              TEST_IMAGES: rng.integers(0, 256, (2, 28, 28)), TEST_LABELS: np.arange(2)}
    md5s = {name: write_gz(folder / name, idx_bytes(a)) for name, a in arrays.items()}
    assert not data.is_verified(folder / TRAIN_LABELS, TRAIN_LABELS)
    assert data.find_fashion_mnist(folder) == dict.fromkeys(NAMES)
    checksums = tmp_path / "mine.md5"
    checksums.write_text("# md5sum's format\n" + "".join(f"{md5} *{name}\n" for name, md5 in md5s.items()))
    monkeypatch.setenv(data.CHECKSUMS_ENV, str(checksums))
    assert data.expected_md5(TRAIN_LABELS) == (md5s[TRAIN_LABELS], None)
    _, test_iter = cnnlib.load_fashion_mnist(2, root=folder, download=False)
    assert torch.equal(all_batches(test_iter)[1], torch.arange(2))
    line = capsys.readouterr().out.strip()
    assert f"from {folder.absolute()}, verified against the MD5s in {checksums} ($CNNLIB_DATA_MD5)" in line
    # A file that is not the listed one is refused, as with the published checksums.
    (folder / TEST_LABELS).write_bytes(gzip.compress(idx_bytes(np.arange(2) + 1)))
    assert not data.is_verified(folder / TEST_LABELS, TEST_LABELS)


@pytest.mark.parametrize("text, message", [
    ("0123  train-images-idx3-ubyte.gz\n", "line 1: expected '<32 hex digits>  <file name>'"),
    ("", "lists no MD5 for train-images-idx3-ubyte.gz"),
])
def test_CNNLIB_DATA_MD5_bad_file_says_what_is_wrong(tmp_path, monkeypatch, text, message):
    checksums = tmp_path / "bad.md5"
    checksums.write_text(text)
    monkeypatch.setenv(data.CHECKSUMS_ENV, str(checksums))
    with pytest.raises(ValueError, match=message):
        data.expected_md5(TRAIN_IMAGES)
    monkeypatch.setenv(data.CHECKSUMS_ENV, str(tmp_path / "missing.md5"))
    with pytest.raises(ValueError, match="CNNLIB_DATA_MD5 must name a readable checksum file"):
        data.expected_md5(TRAIN_IMAGES)


# --------------------------------------------------------------------------------------------
# What a loader used: its source line and the data's fingerprint, for the book's cache.
# --------------------------------------------------------------------------------------------


def source_lines(text: str) -> list[tuple[str, str]]:
    return [(m["what"], m["fingerprint"]) for m in data.SOURCE_LINE.finditer(text)]


def test_fingerprint_follows_the_source_without_downloading(server, tmp_path, monkeypatch, offline, isolated):
    env = tmp_path / "env"
    monkeypatch.setenv("CNNLIB_DATA", str(env))
    what, none = data.data_source()
    assert what.startswith(f"no verified {TRAIN_IMAGES}") and f"into {env}" in what
    assert offline == [] and not env.exists()  # nothing downloaded, nothing created
    for name in NAMES:
        regzip(server.folder / name, isolated.system / name)
    what, system = data.data_source()
    assert what == f"Fashion-MNIST from {isolated.system}" and system != none
    env.mkdir()
    for name in NAMES:
        shutil.copy(server.folder / name, env / name)
    what, in_env = data.data_source()
    assert what == f"Fashion-MNIST from {env}" and in_env not in (none, system)  # $CNNLIB_DATA comes first
    assert data.data_source() == (what, in_env)  # the same files: the same fingerprint
    (env / TEST_LABELS).write_bytes(b"corrupt")
    assert data.data_source()[1] == data.data_fingerprint(
        {**{n: env / n for n in NAMES}, TEST_LABELS: isolated.system / TEST_LABELS})  # passed over


def test_loaders_print_their_source_line(server, tmp_path, monkeypatch, capsys, offline, isolated):
    root = tmp_path / "cache"
    ds = cnnlib.load_data(batch_size=64, root=root)  # nothing anywhere: the digits
    ((what, fingerprint),) = source_lines(capsys.readouterr().out)
    assert ds.name == "digits" and what == data.DIGITS_FALLBACK
    assert fingerprint == data.data_source(root)[1]  # what the book compares it with
    root.mkdir(exist_ok=True)  # the failed download made it
    for name in NAMES:
        shutil.copy(server.folder / name, root / name)
    ds = cnnlib.load_data(batch_size=4, root=root)
    ((what, fingerprint),) = source_lines(capsys.readouterr().out)
    assert ds.name == "fashion-mnist" and what == f"Fashion-MNIST from {root}"
    assert data.data_source(root) == (what, fingerprint)


def test_a_download_gets_the_fingerprint_of_the_files_it_left(server, tmp_path, capsys, isolated):
    cnnlib.load_fashion_mnist(4, base_url=server.url)  # into the user cache
    ((what, fingerprint),) = source_lines(capsys.readouterr().out)
    assert what == f"Fashion-MNIST from {isolated.cache}"
    assert data.data_source() == (what, fingerprint)  # so the next build has nothing to execute again


# --------------------------------------------------------------------------------------------
# load_data and the bundled digits.
# --------------------------------------------------------------------------------------------


def test_load_data_falls_back_to_digits_with_a_notice(tmp_path, capsys, offline):
    ds = cnnlib.load_data(batch_size=64, root=tmp_path / "cache")
    out = capsys.readouterr().out
    assert offline, "the loader should have tried to download"
    assert "NOTICE: Fashion-MNIST is not available" in out
    assert "NOTICE: falling back to scikit-learn's bundled digits" in out
    assert isinstance(ds, cnnlib.Dataset)
    assert ds.name == "digits" and ds.labels == tuple("0123456789")
    assert len(ds.train_iter.dataset) == 1437 and len(ds.test_iter.dataset) == 360


def test_load_data_without_fallback_raises(tmp_path, offline):
    with pytest.raises(cnnlib.DatasetUnavailable, match="Fashion-MNIST is not available"):
        cnnlib.load_data(batch_size=64, fallback=None, root=tmp_path / "cache")


def test_load_data_uses_fashion_mnist_when_cached(server, tmp_path, capsys, offline):
    root = tmp_path / "cache"
    root.mkdir()
    for name in NAMES:
        shutil.copy(server.folder / name, root / name)
    ds = cnnlib.load_data(batch_size=4, root=root)
    assert ds.name == "fashion-mnist" and ds.labels == data.FASHION_MNIST_LABELS and len(ds.labels) == 10
    assert len(ds.train_iter.dataset) == N_TRAIN
    assert "NOTICE" not in capsys.readouterr().out


def test_load_data_digits_needs_no_network(offline):
    ds = cnnlib.load_data("digits", batch_size=100)
    assert ds.name == "digits" and offline == []
    X, y = next(iter(ds.test_iter))
    assert X.shape == (100, 1, 28, 28) and y.shape == (100,)


@pytest.fixture(scope="module")
def digits():
    return data.digits28()


def test_digits28_shapes_and_range(digits):
    X_train, y_train, X_test, y_test = digits
    assert X_train.shape == (1437, 1, 28, 28) and X_test.shape == (360, 1, 28, 28)
    assert y_train.shape == (1437,) and y_test.shape == (360,)
    assert X_train.dtype == torch.float32 and y_train.dtype == torch.int64
    for X in (X_train, X_test):
        assert X.min() >= 0 and X.max() <= 1 and X.max() > 0.9
    assert set(y_train.tolist()) == set(y_test.tolist()) == set(range(10))


def test_digits28_split_is_stratified_and_fixed(digits):
    X_train, y_train, X_test, y_test = digits
    total = torch.bincount(torch.cat([y_train, y_test]), minlength=10)
    test_share = torch.bincount(y_test, minlength=10).double() / total
    assert (test_share - 0.2).abs().max() < 0.01  # every class keeps a fifth for testing
    again = data.digits28()
    for a, b in zip(digits, again):
        assert torch.equal(a, b)


def test_load_digits28_loaders(digits):
    train_iter, test_iter = cnnlib.load_digits28(batch_size=256)
    assert len(train_iter.dataset) == 1437 and len(test_iter.dataset) == 360
    X, y = next(iter(train_iter))
    assert X.shape == (256, 1, 28, 28) and y.shape == (256,)
    X, y = all_batches(test_iter)
    assert torch.equal(X, digits[2]) and torch.equal(y, digits[3])  # the test set is not shuffled
    # The shuffle is seeded: two fresh loaders give the same first batch, then a new order each epoch.
    first, second = cnnlib.load_digits28(256)[0], cnnlib.load_digits28(256)[0]
    epoch1 = next(iter(first))[1]
    assert torch.equal(epoch1, next(iter(second))[1])
    assert not torch.equal(epoch1, next(iter(first))[1])


def test_load_data_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="name must be 'fashion-mnist' or 'digits', got 'mnist'"):
        cnnlib.load_data("mnist")
    with pytest.raises(ValueError, match="fallback must be 'digits' or None"):
        cnnlib.load_data(fallback="cifar")
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        cnnlib.load_digits28(0)
    with pytest.raises(TypeError, match="batch_size must be a positive int, got True"):
        cnnlib.load_data("digits", batch_size=True)
    with pytest.raises(TypeError, match="batch_size must be a positive int"):
        cnnlib.load_fashion_mnist(2.5, root=tmp_path)


def test_load_fashion_mnist_argument_types(tmp_path):
    with pytest.raises(TypeError, match="download must be True or False, got 'yes'"):
        cnnlib.load_fashion_mnist(4, root=tmp_path, download="yes")
    with pytest.raises(TypeError, match="base_url must be a string, got int"):
        cnnlib.load_fashion_mnist(4, root=tmp_path, base_url=3)
    with pytest.raises(TypeError, match="root must be a path or None, got float"):
        cnnlib.load_fashion_mnist(4, root=1.5)

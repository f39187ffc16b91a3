"""The set-up step of `make test` and `make book`: tools/system_packages.sh.

It looks for each package's file under SYSTEM_ROOT, which these tests point at an empty folder, so every
package reads as missing. apt-get and sudo are stand-ins on PATH that log their arguments: nothing is
installed on this machine.
"""
from __future__ import annotations

import os
import re
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import REPO

SCRIPT = REPO / "tools" / "system_packages.sh"
PACKAGES = ["bubblewrap", "chromium", "dataset-fashion-mnist"]
IS_ROOT = os.geteuid() == 0


def _tool(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def box():
    """An empty SYSTEM_ROOT, a log, and a bin folder for stand-ins, all usable by uid 65534 too.

    Not under pytest's tmp_path, whose parents only their owner may enter."""
    with tempfile.TemporaryDirectory(prefix="cnn-system-") as d:
        yield _box(Path(d))


def _box(tmp_path: Path):
    root, bin_dir = tmp_path / "root", tmp_path / "bin"
    root.mkdir()
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    log.touch()
    for p in (tmp_path, root, bin_dir, log):
        p.chmod(0o777)
    return root, bin_dir, log


def _apt_stand_in(bin_dir: Path, root: Path, log: Path) -> None:
    # Logs its arguments; `install` puts each package's file where the script looks for it.
    _tool(bin_dir, "apt-get", f"""echo "$*" >> {log}
[ "$1" = install ] || exit 0
mkdir -p {root}/usr/bin {root}/usr/share/datasets/fashion-mnist
touch {root}/usr/bin/bwrap {root}/usr/bin/chromium {root}/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
""")


def _run(root: Path, bin_dir: Path, *, as_nobody: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "SYSTEM_ROOT": str(root), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    cmd = ["bash", str(SCRIPT)]
    if as_nobody and IS_ROOT:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd="/")


def test_present_packages_cost_nothing(box):
    root, bin_dir, log = box
    _apt_stand_in(bin_dir, root, log)
    for f in ("usr/bin/bwrap", "usr/bin/chromium", "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"):
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).touch()
    r = _run(root, bin_dir, as_nobody=False)
    assert (r.returncode, r.stdout, r.stderr, log.read_text()) == (0, "", "", "")


def test_without_privileges_one_line_says_what_to_run(box):
    root, bin_dir, log = box
    _apt_stand_in(bin_dir, root, log)
    _tool(bin_dir, "sudo", "exit 1\n")  # sudo that wants a password
    r = _run(root, bin_dir, as_nobody=True)
    assert r.returncode == 1
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert "sudo apt-get install -y bubblewrap chromium dataset-fashion-mnist" in lines[0]
    assert log.read_text() == ""  # nothing was tried


def test_names_only_what_is_missing(box):
    root, bin_dir, log = box
    _tool(bin_dir, "sudo", "exit 1\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/chromium").touch()
    r = _run(root, bin_dir, as_nobody=True)
    assert r.returncode == 1
    assert r.stderr.strip().endswith("Run: sudo apt-get install -y bubblewrap dataset-fashion-mnist (then make again)")


def test_without_apt_get_names_the_packages(box):
    root, bin_dir, _ = box
    # A PATH with the shell tools but no apt-get: a machine that is not Debian.
    for tool in ("bash", "id", "sudo"):
        target = subprocess.run(["bash", "-c", f"command -v {tool} || true"], capture_output=True,
                                text=True).stdout.strip()
        if target:
            os.symlink(target, bin_dir / tool)
    env = {"SYSTEM_ROOT": str(root), "PATH": str(bin_dir)}
    r = subprocess.run([str(bin_dir / "bash"), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1
    assert "package manager" in r.stderr and "bubblewrap chromium dataset-fashion-mnist" in r.stderr


@pytest.mark.skipif(not IS_ROOT, reason="the root path needs root")
def test_as_root_installs_with_apt_get(box):
    root, bin_dir, log = box
    _apt_stand_in(bin_dir, root, log)
    r = _run(root, bin_dir, as_nobody=False)
    assert r.returncode == 0, r.stderr
    assert log.read_text().splitlines() == ["update -q", "install -y -q bubblewrap chromium dataset-fashion-mnist"]


def test_with_passwordless_sudo_installs_through_it(box):
    root, bin_dir, log = box
    _apt_stand_in(bin_dir, root, log)
    sudo_log = log.with_name("sudo.log")
    sudo_log.touch()
    sudo_log.chmod(0o666)
    # `sudo -n true` answers yes; `sudo -n apt-get ...` is logged, then run.
    _tool(bin_dir, "sudo", f'[ "$1" = -n ] && shift\n[ "$1" = true ] && exit 0\necho "$*" >> {sudo_log}\nexec "$@"\n')
    r = _run(root, bin_dir, as_nobody=True)
    assert r.returncode == 0, r.stderr
    assert sudo_log.read_text().splitlines() == [
        "apt-get update -q", "apt-get install -y -q bubblewrap chromium dataset-fashion-mnist"]


def test_a_failed_install_says_what_to_run(box):
    root, bin_dir, log = box
    _tool(bin_dir, "apt-get", "exit 100\n")
    _tool(bin_dir, "sudo", '[ "$1" = -n ] && shift\n[ "$1" = true ] && exit 0\nexec "$@"\n')
    r = _run(root, bin_dir, as_nobody=True)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1].startswith("Could not install system packages: bubblewrap chromium")


def test_make_test_and_make_book_run_the_set_up_first():
    makefile = (REPO / "Makefile").read_text()
    for target in ("test", "book"):
        prereqs = re.search(rf"^{target}:(.*)$", makefile, re.M).group(1).split()
        assert prereqs[0] == "system", f"make {target} must check the system packages before anything else"
    assert "tools/system_packages.sh" in makefile
    ci = (REPO / ".ci" / "run").read_text()
    assert "apt-get" not in ci and "make test" in ci  # one list of packages: the script's


def test_the_list_is_the_one_the_code_names():
    text = SCRIPT.read_text()
    for name in PACKAGES:
        assert re.search(rf"^{name}\s+/", text, re.M), name

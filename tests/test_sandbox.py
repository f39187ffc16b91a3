"""The grading sandbox (cnngrader/pipeline/sandbox.py), probed with short `python -c` programs: no
Jupyter kernel. Every loop, allocation and process count is bounded; network probes use loopback."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nbtools import connect_probe

from cnngrader.pipeline import sandbox as sb
from cnngrader.pipeline.sandbox import Limits, Sandbox, SandboxUnavailable, check_available

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

try:
    check_available()
except SandboxUnavailable as e:
    pytest.skip(f"no sandbox on this machine: {e.why}", allow_module_level=True)


def run(code: str, limits: Limits | None = None, site: bool = False,
        timeout: float = 60) -> subprocess.CompletedProcess:
    """Run code in a fresh sandbox; without site-packages unless asked (faster)."""
    with Sandbox(limits or Limits(memory_bytes=512 * 2**20, address_space=False)) as box:
        return box.run([PY, *([] if site else ["-S"]), "-c", code], timeout=timeout)


def probe(code: str, **kw) -> object:
    """The JSON value the code prints on its last line."""
    done = run(code, **kw)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_unprivileged_user_and_own_processes_only():
    got = probe("import os, json; print(json.dumps([os.getuid(), os.getgid(), os.getpid(), "
                "sorted(int(p) for p in os.listdir('/proc') if p.isdigit())]))")
    uid, gid, pid, pids = got
    assert (uid, gid) == (65534, 65534)
    assert pid < 10 and max(pids) < 10  # a pid namespace of its own: bwrap's init and this process


def test_no_network_not_even_host_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        got = probe(connect_probe(port))
        assert got != "connected"
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing arrived on the host's loopback
    finally:
        server.close()


def test_host_unix_sockets_unreachable(tmp_path):
    path = tmp_path / "host.sock"
    servers = [socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)]
    servers[0].bind(str(path))
    servers[1].bind(f"\0cnn-sandbox-test-{os.getpid()}")  # abstract: scoped by the network namespace
    for s in servers:
        s.listen(1)
    try:
        got = probe(f"""import json, socket
out = []
for addr in ({str(path)!r}, "\\0cnn-sandbox-test-{os.getpid()}"):
    s = socket.socket(socket.AF_UNIX); s.settimeout(2)
    try:
        s.connect(addr); out.append("connected")
    except OSError as e:
        out.append(type(e).__name__)
print(json.dumps(out))""")
        assert "connected" not in got
    finally:
        for s in servers:
            s.close()


def test_course_secrets_invisible(tmp_path):
    course = tmp_path / "course"
    for d in ("solutions/01", "assignments/01", "submitted/bob/01", "autograded/bob", "feedback/bob", "reports"):
        (course / d).mkdir(parents=True)
    (course / "gradebook.db").write_text("secret")
    (course / "grades.csv").write_text("secret")
    (course / "submitted/bob/01/01.ipynb").write_text("{}")
    targets = [str(p) for p in course.rglob("*")] + [str(course)]
    targets += [str(REPO / name) for name in ("solutions", "assignments", ".git", "cnngrader/pipeline",
                                              "course.toml", "nbgrader_config.py", "tests", "gradebook.db")]
    got = probe(f"""import json, os
seen = []
for path in {targets!r}:
    try:
        os.listdir(path) if not os.path.isfile(path) else open(path).read(1)
        seen.append(path)
    except OSError:
        pass
    if os.path.exists(path):
        seen.append(path)
print(json.dumps(seen))""")
    assert got == []


def test_environment_readable_torch_and_cnnlib_import():
    got = probe("import json, os, torch, cnnlib, cnngrader.tolerances; "
                "print(json.dumps([cnnlib.__file__, sorted(os.listdir(os.path.dirname(cnnlib.__file__)))[:3], "
                "torch.ones(2).sum().item()]))", limits=Limits(), site=True)
    assert got[0] == str(REPO / "cnnlib" / "__init__.py") and got[1] and got[2] == 2.0


def test_writable_only_submission_and_tmp():
    places = ["/", "/usr", "/etc", "/run", "/run/inbox", "/work", sys.prefix, sys.base_prefix, str(REPO / "cnnlib"),
              str(REPO / "cnngrader" / "kernel"), "/proc/sys", "/dev", "/submission", "/tmp"]
    got = probe(f"""import json, os
ok = []
for d in {places!r}:
    try:
        with open(os.path.join(d, "x"), "w") as f:
            f.write("x")
        ok.append(d)
    except OSError:
        pass
print(json.dumps(ok))""")
    assert sorted(got) == ["/submission", "/tmp"]


def test_disk_limit_enospc():
    got = probe("""import errno, json
out = []
for d in ("/tmp", "/submission"):
    written = 0
    try:
        with open(d + "/big", "wb") as f:
            for _ in range(32):  # 32 MiB at most, past the 8 MiB tmpfs
                f.write(b"x" * 2**20); f.flush(); written += 1
    except OSError as e:
        out.append([e.errno == errno.ENOSPC, written])
print(json.dumps(out))""", limits=Limits(memory_bytes=512 * 2**20, disk_bytes=8 * 2**20, address_space=False))
    assert len(got) == 2 and all(enospc and n <= 8 for enospc, n in got)


def test_memory_limit_covers_forked_children():
    limit = 256 * 2**20
    code = f"""import os, time
n = int({limit} * 0.6)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    block = b"c" * n  # written: really resident
    os.write(w, b"1")
    time.sleep(5)
    os._exit(0)
os.close(w)
child_ok = os.read(r, 1) == b"1"
try:
    block = b"p" * n
    parent_ok = True
except MemoryError:
    parent_ok = False
time.sleep(0.5)
child_alive = os.waitpid(pid, os.WNOHANG) == (0, 0)  # the OOM killer may have picked the child
print("both" if child_ok and parent_ok and child_alive else "capped", flush=True)
"""
    with Sandbox(Limits(memory_bytes=limit, address_space=False)) as box:
        done = box.run([PY, "-S", "-c", code], timeout=60)
        peak = box.memory_peak()
    assert "both" not in done.stdout  # one of them got killed or a MemoryError: the tree is capped
    assert peak <= limit


def test_process_limit():
    got = probe("""import json, os
pids, err = [], ""
for _ in range(64):  # bounded: the limit is 16 tasks
    try:
        pid = os.fork()
    except OSError as e:
        err = type(e).__name__; break
    if pid == 0:
        import time; time.sleep(3); os._exit(0)
    pids.append(pid)
for pid in pids:
    os.kill(pid, 9); os.waitpid(pid, 0)
print(json.dumps([len(pids), err]))""", limits=Limits(memory_bytes=512 * 2**20, pids=16, address_space=False))
    forked, err = got
    assert forked < 16 and err == "BlockingIOError"


def test_kill_leaves_nothing_behind_daemonized_grandchild():
    code = """import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(60)  # the daemon
        os._exit(0)
    os._exit(0)
print("ready", flush=True)
time.sleep(60)
"""
    box = Sandbox(Limits(memory_bytes=512 * 2**20, address_space=False)).open()
    try:
        proc = box.popen([PY, "-S", "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        host_pids = box._cgroup.pids()
        assert len(host_pids) >= 4  # bwrap, its init, the program, the daemon
    finally:
        box.kill()
    alive = [pid for pid in host_pids if Path(f"/proc/{pid}").exists()
             and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]]
    assert alive == []
    assert not box.root.exists()


def test_cpu_time_limit_kills_the_tree():
    box = Sandbox(Limits(memory_bytes=512 * 2**20, cpu_seconds=1, address_space=False)).open()
    try:
        t0 = time.monotonic()
        proc = box.popen([PY, "-S", "-c", "import time\nt = time.time()\nwhile time.time() - t < 20: pass"])
        proc.wait(30)
        elapsed = time.monotonic() - t0
    finally:
        box.kill()
    assert proc.returncode != 0 and elapsed < 10
    assert "CPU time limit (1 s)" in box.killed_reason


def test_check_available_says_what_to_install(monkeypatch, tmp_path):
    sb._checked.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))
    try:
        with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
            check_available()
    finally:
        sb._checked.cache_clear()


def _readable_as_nobody(paths: list[str]) -> list[str]:
    """The paths that a process of host uid 65534 can read (files) or list (folders). Without root, the
    sandbox's uid is the caller's: then the caller itself is the reference."""
    code = ("import json, os, sys\nok = []\nfor p in json.load(sys.stdin):\n    try:\n"
            "        os.listdir(p) if os.path.isdir(p) else open(p, 'rb').read(1)\n        ok.append(p)\n"
            "    except OSError:\n        pass\nprint(json.dumps(ok))")
    as_nobody = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    python = "/usr/bin/python3" if as_nobody else PY  # the venv may be out of uid 65534's reach (under /root)
    if as_nobody and not os.access(python, os.X_OK):
        pytest.skip("no /usr/bin/python3 to read /etc as uid 65534")
    done = subprocess.run([python, "-I", "-S", "-c", code], input=json.dumps(paths), capture_output=True,
                          text=True, timeout=60, cwd="/", **as_nobody)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


WALK_ETC = """import json, os, stat
read = []
for top, dirs, files in os.walk("/etc"):
    for name in dirs + files:
        p = os.path.join(top, name)
        try:
            st = os.lstat(p)
            # what shows something: a folder with entries, a file with bytes (a masked folder is empty, a
            # masked file is /dev/null); a link's target is walked where it lies
            if stat.S_ISDIR(st.st_mode) and os.listdir(p) or stat.S_ISREG(st.st_mode) and open(p, "rb").read(1):
                read.append(p)
        except OSError:
            pass
print(json.dumps(read))"""


def test_etc_shows_only_what_uid_65534_could_read_on_the_host():
    """As root the sandbox's uid is host uid 0: every file of /etc that the host's uid 65534 cannot read
    (/etc/shadow, keys under /etc/ssl/private) is masked, and what it can read stays readable."""
    read = probe(WALK_ETC)
    assert "/etc/passwd" in read and "/etc/ld.so.cache" in read
    assert sorted(_readable_as_nobody(read)) == sorted(read)
    shows = {p for top, dirs, files in os.walk("/etc") for p in (os.path.join(top, n) for n in dirs + files)
             if not os.path.islink(p)
             and (os.path.isdir(p) and os.listdir(p) or os.path.isfile(p) and os.path.getsize(p))}
    hidden = sorted(shows - set(read))
    if os.geteuid() == 0:
        assert "/etc/shadow" in hidden
    assert _readable_as_nobody(hidden) == []  # nothing was masked that uid 65534 may read


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it writes a root-only key into /etc, then removes it")
def test_a_root_only_key_in_etc_is_masked():
    base = Path(f"/etc/cnngrader-sandbox-test-{os.getpid()}")
    try:
        (base / "private").mkdir(parents=True, mode=0o755)
        (base / "private").chmod(0o700)
        for rel, mode in (("key.pem", 0o600), ("group.pem", 0o640), ("private/public.pem", 0o644),
                          ("public.pem", 0o644)):
            (base / rel).write_text(f"SECRET {rel}" if rel != "public.pem" else "public")
            (base / rel).chmod(mode)
        got = probe(f"""import json, os
out = {{}}
for rel in ("key.pem", "group.pem", "private/public.pem", "public.pem", "private"):
    p = os.path.join({str(base)!r}, rel)
    try:
        out[rel] = os.listdir(p) if os.path.isdir(p) else open(p).read()
    except OSError as e:
        out[rel] = type(e).__name__
print(json.dumps(out))""")
        assert got["public.pem"] == "public"
        assert got["private"] == []
        assert not [v for v in got.values() if "SECRET" in str(v)], got
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def test_unreadable_follows_the_mode_bits(tmp_path):
    top = tmp_path / "etc"
    (top / "open" / "deep").mkdir(parents=True)
    (top / "closed").mkdir()
    (top / "list_only").mkdir()
    for rel, mode in (("open/a", 0o644), ("open/deep/b", 0o600), ("closed/c", 0o644), ("d", 0o640), ("e", 0o604)):
        (top / rel).write_text("x")
        (top / rel).chmod(mode)
    (top / "closed").chmod(0o700)
    (top / "list_only").chmod(0o744)  # readable, not searchable
    (top / "link").symlink_to(top / "d")
    me, other = os.getuid(), 65534 if os.getuid() != 65534 else 65533
    files, folders = sb.unreadable(str(top), uid=other, gid=other)
    assert files == [str(top / "d"), str(top / "open" / "deep" / "b")]
    assert folders == [str(top / "closed"), str(top / "list_only")]
    assert sb.unreadable(str(top), uid=me, gid=other) == ([], [])  # the owner's bits
    files, _ = sb.unreadable(str(top), uid=other, gid=os.getgid())  # the group's bits: d is 0640
    assert str(top / "d") not in files and str(top / "e") in files

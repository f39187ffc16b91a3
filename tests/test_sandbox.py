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

from cnngrader.pipeline import sandbox as sb
from cnngrader.pipeline.sandbox import Limits, Sandbox, SandboxUnavailable, check_available

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

try:
    check_available()
except SandboxUnavailable as e:
    pytest.skip(f"no sandbox on this machine: {e.why}", allow_module_level=True)


def run(code: str, limits: Limits | None = None, site: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
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
        got = probe(f"""import json, socket
s = socket.socket(); s.settimeout(2)
try:
    s.connect(("127.0.0.1", {port})); r = "connected"
except OSError as e:
    r = type(e).__name__
print(json.dumps(r))""")
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

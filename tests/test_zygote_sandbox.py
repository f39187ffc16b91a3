"""Sandboxed kernels forked from the zygote (cnngrader/pipeline/forked_kernel.py, zygote_inside.py): each kernel
has the isolation of a fresh sandboxed kernel, and attacks on the zygote itself (signals, ptrace, its memory,
state left for the next kernel, forking up to the cap) fail for the attacker and leave the next kernel correct.
Each kernel runs a short probe that prints one JSON line; loops and process counts are bounded."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from nbtools import connect_probe

from cnngrader.pipeline import forked_kernel as fk
from cnngrader.pipeline.forked_kernel import ForkedKernelManager
from cnngrader.pipeline.sandbox import SandboxUnavailable, check_available

try:
    check_available()
except SandboxUnavailable as e:
    pytest.skip(f"no sandbox on this machine: {e.why}", allow_module_level=True)

MiB = 2**20


async def _run(code: str, cwd: str, pids: int, memory: int, timeout: float) -> tuple[str, ForkedKernelManager, dict]:
    km = ForkedKernelManager(kernel_name="python3")
    km.threads, km.max_processes, km.max_memory, km.max_cpu_seconds = 1, pids, memory, 120
    await km.start_kernel(cwd=cwd)
    cg = km.sandbox._cgroup
    limit = cg.dirs.get("v2", cg.dirs.get("memory"))
    limit = limit / ("memory.max" if "v2" in cg.dirs else "memory.limit_in_bytes")
    seen = {"first": km.sandbox.first, "kernel": km.sandbox._kernel_pid(2.0), "cgroup": sorted(cg.pids()),
            "memory": int(limit.read_text())}
    kc = km.client()
    kc.start_channels()
    out: list[str] = []

    def hook(msg):
        content = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(content["text"])
        elif msg["msg_type"] == "error":
            out.append(f"{content['ename']}: {content['evalue']}\n")

    try:
        await kc.wait_for_ready(timeout=120)
        await kc.execute_interactive(code, output_hook=hook, timeout=timeout)
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    return "".join(out), km, seen


def run(code: str, tmp_path: Path, pids: int = 256, memory: int = 2048 * MiB, timeout: float = 60):
    """Run code in a forked kernel whose /submission holds a file `given.txt`; (its output, its manager, pids)."""
    sub = tmp_path / "sub"
    sub.mkdir(exist_ok=True)
    (sub / "given.txt").write_text("the submission's own file")
    return asyncio.run(_run(code, str(sub), pids, memory, timeout))


def probe(code: str, tmp_path: Path, **kw) -> object:
    out, _km, _seen = run(code, tmp_path, **kw)
    lines = [line for line in out.splitlines() if line.startswith(("{", "[", '"'))]
    assert lines, out
    return json.loads(lines[-1])


pytestmark = pytest.mark.skipif(bool(fk.hidden_by_fresh_tmp()),
                                reason="this course or its Python lies under /tmp, which a forked kernel's fresh /tmp "
                                       "hides (forked_kernel.hidden_by_fresh_tmp)")


def zygote() -> fk.KernelZygote:
    (found,) = [z for pid, z in fk._ZYGOTES.values() if pid == os.getpid()]
    return found


@pytest.fixture(scope="module", autouse=True)
def _stop_zygotes():
    yield
    fk.stop_zygotes()


VIEW = r'''
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
def readable(path):
    try:
        return open(path).read() != ""
    except OSError:
        return False
def writable(path):
    try:
        open(path, "w").close(); return True
    except OSError:
        return False
print(json.dumps({"ids": [os.getuid(), os.getgid(), os.geteuid()], "pid": os.getpid(), "ppid": os.getppid(),
    "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()), "cwd": os.getcwd(),
    "files": sorted(os.listdir(".")), "tmp": sorted(os.listdir("/tmp")),
    "spool": os.listdir("/run/spool"), "zygote": os.listdir("/run/zygote"),
    "cap": open("/proc/self/status").read().split("CapEff:")[1].split()[0],
    "nnp": open("/proc/self/status").read().split("NoNewPrivs:")[1].split()[0],
    "userns": libc.unshare(0x10000000), "mount": libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, None),
    "writable": [p for p in ("/usr/x", "/etc/x", "/run/x", "/proc/sys/kernel/hostname", "/dev/x",
                             "/submission/x", "/tmp/x", "/run/kernel/x") if writable(p)],
    "shadow": readable("/etc/shadow"),
    "ifaces": sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []}))
'''


def test_each_kernel_gets_the_sandbox_view(tmp_path):
    got = probe(VIEW, tmp_path)
    assert got["ids"] == [65534, 65534, 65534]
    assert (got["pid"], got["ppid"], got["procs"]) == (2, 1, [1, 2])  # its own pid namespace: reaper + kernel
    assert got["cwd"] == "/submission" and got["files"] == ["given.txt"]
    assert got["tmp"] == ["home"]
    assert got["spool"] == [] and got["zygote"] == []  # other inboxes and the zygote's socket: unmounted
    assert got["cap"] == "0000000000000000" and got["nnp"] == "1"
    assert got["userns"] == -1 and got["mount"] == -1  # no further user namespace, no mount
    assert got["writable"] == ["/submission/x", "/tmp/x", "/run/kernel/x"]
    assert not got["shadow"]


def test_no_network_not_even_host_loopback(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        got = probe(connect_probe(port), tmp_path)
    finally:
        server.close()
    assert got != "connected"


def test_the_guard_knows_a_forked_kernel_is_sandboxed_and_sees_its_children(tmp_path):
    """The guard stops the sandbox's other processes while a probed function runs (a child could compute for
    it): it must recognise the forked kernel's sandbox, whose pid 1 is the zygote's reaper, not bwrap."""
    got = probe("import json, subprocess, sys\nfrom cnngrader.kernel import guard\n"
                "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                "print(json.dumps([guard._SANDBOXED, child.pid in guard._others()]))\nchild.kill()", tmp_path)
    assert got == [True, True]


def test_the_kernel_is_in_its_own_cgroup_not_the_zygotes(tmp_path):
    _out, km, seen = run("print(1)", tmp_path)
    assert seen["first"] in seen["cgroup"] and seen["kernel"] in seen["cgroup"]
    assert not set(seen["cgroup"]) & set(zygote().baseline)
    assert km.survivors == 0


def test_memory_limit_is_the_kernels_own(tmp_path):
    out, _km, seen = run("import numpy as np\nx = np.ones(3 * 2**30 // 8)\nprint('allocated')", tmp_path,
                         memory=2048 * MiB)
    assert seen["memory"] == 2048 * MiB
    assert "allocated" not in out and "MemoryError" in out


SIGNAL_ZYGOTE = r'''
import json, os, signal
tried = {}
mine = {int(t) for t in os.listdir("/proc/self/task")}  # kill(a thread id) would kill this kernel
for target in [1, os.getppid(), -1, *range(3, 64)]:
    try:
        if target in mine:
            continue
        os.kill(target, signal.SIGKILL) if target != -1 else os.kill(-1, signal.SIGKILL)
        tried[target] = "sent"
    except OSError as e:
        tried[target] = type(e).__name__
for pgid in (1, 2):
    try:
        os.killpg(pgid, signal.SIGKILL) if pgid != os.getpgid(0) else None
    except OSError:
        pass
print(json.dumps(sorted(int(p) for p in os.listdir("/proc") if p.isdigit())))
'''


def test_signalling_the_zygote_fails(tmp_path):
    probe(VIEW, tmp_path)
    before = zygote()
    out, _km, _seen = run(SIGNAL_ZYGOTE, tmp_path)
    assert out.strip().endswith("[1, 2]"), out  # kill(-1) reached nothing; pid 1 ignores SIGKILL from inside
    assert zygote() is before and before.healthy()
    assert probe(VIEW, tmp_path)["ids"] == [65534, 65534, 65534]
    assert zygote() is before


PTRACE = r'''
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
got = {}
for pid in (1, os.getppid()):
    r = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
    got[f"attach{pid}"] = os.strerror(ctypes.get_errno()) if r != 0 else "attached"
for name in ("mem", "environ", "maps"):
    try:
        with open(f"/proc/1/{name}", "rb") as f:
            got[name] = len(f.read(4096))
    except OSError as e:
        got[name] = type(e).__name__
print(json.dumps(got))
'''


def test_ptrace_and_reading_the_reapers_memory_fail(tmp_path):
    got = probe(PTRACE, tmp_path)
    assert got["attach1"] != "attached", got
    assert got["mem"] == got["environ"] == "PermissionError", got
    assert zygote().healthy()


LEAVE = r'''
import json, os, subprocess, time
for path in ("/tmp/left", "/submission/left", "/tmp/home/left", "/run/kernel/left", "/dev/shm/left"):
    try:
        open(path, "w").write("from an earlier kernel")
    except OSError:
        pass
# a daemon, detached from the kernel's session, that would write into the next kernel's /tmp
subprocess.Popen(["/bin/sh", "-c", "while true; do echo x > /tmp/daemon; sleep 0.05; done"],
                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(json.dumps("left"))
'''

LOOK = r'''
import json, os, time
time.sleep(0.3)
print(json.dumps({"tmp": sorted(os.listdir("/tmp")), "sub": sorted(os.listdir("/submission")),
                  "run": sorted(os.listdir("/run/kernel")),
                  "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}))
'''


def test_nothing_is_left_for_the_next_kernel(tmp_path):
    assert probe(LEAVE, tmp_path) == "left"
    got = probe(LOOK, tmp_path)
    assert got["tmp"] == ["home"] and got["sub"] == ["given.txt"] and got["procs"] == [1, 2], got
    assert not any(name == "left" for name in got["run"])
    assert zygote().healthy()


FORK_BOMB = r'''
import json, os, time
kids = 0
for _ in range(400):  # bounded: the cap is lower
    try:
        pid = os.fork()
    except OSError as e:
        print(json.dumps({"kids": kids, "stopped": type(e).__name__})); break
    if pid == 0:
        time.sleep(30); os._exit(0)
    kids += 1
else:
    print(json.dumps({"kids": kids, "stopped": None}))
'''


def test_forking_up_to_the_cap_stops_there_and_the_next_kernel_works(tmp_path):
    before = zygote() if fk._ZYGOTES else None
    got = probe(FORK_BOMB, tmp_path, pids=96)
    assert got["stopped"] == "BlockingIOError" and got["kids"] < 96, got
    assert probe(VIEW, tmp_path)["procs"] == [1, 2]
    if before is not None:
        assert zygote() is before


def test_a_process_in_the_zygotes_cgroup_replaces_the_zygote(tmp_path):
    probe(VIEW, tmp_path)
    old = zygote()
    stray = subprocess.Popen(["sleep", "30"])
    try:
        for procs in old.box._cgroup.procs_files():  # as if a kernel's process had got into it
            Path(procs).write_text(str(stray.pid))
        assert not old.healthy()
        assert probe(VIEW, tmp_path)["procs"] == [1, 2]
        assert zygote() is not old and zygote().healthy()
        assert old.proc.poll() is not None  # the old zygote's sandbox is gone
    finally:
        stray.kill()
        stray.wait()


def test_a_zygote_started_without_waiting_is_waited_for_by_its_first_kernel(tmp_path):
    fk.stop_zygotes()
    key = ForkedKernelManager(kernel_name="python3", threads=1)._zygote_key()
    started = fk.zygote_for(key, 1, wait=False)
    assert not started.healthy()  # not ready yet: no kernel is forked from it before it says so
    out, _km, _seen = run("print(40 + 2)", tmp_path)
    assert out.strip() == "42" and zygote() is started and started.ready and started.forked == 1


def test_the_zygotes_self_test_passes_in_its_sandbox_and_names_what_fails_outside_it():
    probe_zygote = fk.zygote_for(("self-test",), 1)  # it would have raised ZygoteUnavailable had the test failed
    assert probe_zygote.healthy()
    # Here, outside the zygote's sandbox, the kernel's steps fail (no /submission to mount, or no privilege).
    why = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import zygote_inside; "
                          "print(zygote_inside.self_test())", str(fk.ZYGOTE_SOURCE.parent)],
                         capture_output=True, text=True, timeout=60).stdout.strip()
    assert why != "ok" and why.startswith(("OSError", "PermissionError", "FileNotFoundError")), why


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_a_forked_kernel_initialises_cuda_itself(tmp_path):
    got = probe("import json, torch\nx = torch.ones(3, device='cuda')\n"
                "print(json.dumps([torch.cuda.is_available(), float((x * 2).sum())]))", tmp_path)
    assert got == [True, 6.0]


ATTACK_CELL = r'''
import ctypes, os, signal, subprocess, time
libc = ctypes.CDLL(None, use_errno=True)
mine = {int(t) for t in os.listdir("/proc/self/task")}
for target in [-1, 1, *range(3, 40)]:
    if target not in mine:
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass
libc.ptrace(16, 1, None, None)
for name in ("mem", "environ"):
    try:
        open(f"/proc/1/{name}", "rb").read(64)
    except OSError:
        pass
open("/tmp/corr2d.py", "w").write("def corr2d(X, K):\n    return X[:1, :1]\n")
subprocess.Popen(["/bin/sh", "-c", "sleep 60"], start_new_session=True)
kids = 0
while kids < 300:
    try:
        if os.fork() == 0:
            time.sleep(20); os._exit(0)
        kids += 1
    except OSError:
        break
'''


@pytest.mark.slow
def test_an_attackers_notebook_leaves_the_next_grades_correct(tmp_path):
    """Graded by the pipeline with forked kernels: the attacker's notebook signals, ptraces and reads the reaper,
    leaves a file and a daemon, and forks to the cap; the victim graded after it gets full marks (the attacker's
    hidden tests are refused: its notebook reaches into the interpreter with ctypes)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from nbtools import maxima, scores_of, with_new_cell, write_submissions
    from traitlets.config import Config

    from cnngrader.pipeline.grade import course_config, generate, grade_course, solution_submission
    from cnngrader.pipeline.kernel_start import stop_zygote
    from cnngrader.pipeline.report import gradebook_rows

    a2 = "02_cross_correlation"
    generate([a2], tmp_path, release_directory=tmp_path / "release")
    base = solution_submission(a2)
    write_submissions(tmp_path, {"attacker": {a2: with_new_cell(base, ATTACK_CELL, before="corr2d")},
                                 "victim": {a2: base}})
    c = Config()
    c.GradingExecute.fork_kernels = True
    c.GradingExecute.max_processes = 128
    try:
        result = grade_course(tmp_path, jobs=1, config=c, feedback=False, report=False)
    finally:
        stop_zygote()
    assert not result.failures, result.failures
    batch = type("Batch", (), {"rows": gradebook_rows(course_config(tmp_path))})
    assert scores_of(batch, "victim") == maxima(batch, "victim")
    assert set(scores_of(batch, "attacker")) == set(maxima(batch, "attacker"))

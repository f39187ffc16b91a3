"""Sandboxed grading kernels forked ready-made from a zygote that lives in a sandbox of its own
(`GradingExecute.fork_kernels`): about 2 s less per notebook than a fresh kernel's imports.

The host side of cnngrader/pipeline/zygote_inside.py (which says what each kernel gets inside):
- KernelZygote: one per grader process and configuration. A bubblewrap sandbox built as Sandbox.command
  builds a kernel's (same read-only binds, masks, GPU devices, data set, environment and thread counts), except
  that its process is uid 0 of the sandbox's user namespace with its capabilities there (it must create the
  kernels' namespaces and mounts) and may create user namespaces; plus a read-only bind of its spool (a host
  folder of the per-kernel inboxes) at /run/spool and a tmpfs for its socket at /run/zygote. The host reaches
  the socket through /proc/PID/root.
- ForkedSandbox: one per kernel; a Sandbox (own cgroup with the memory, tasks and CPU limits, CPU watchdog,
  inbox, connection file, ipc sockets linked from the host) whose process is forked by the zygote instead of
  started by bwrap. Its first process is moved into its cgroup by the host before it may go on, so every
  process of the kernel is counted and killed with it.
- After each kernel, its cgroup must be empty once killed, and the zygote's own cgroup must hold exactly the
  processes it had when it became ready; otherwise the zygote is killed and the next kernel gets a new one.

ForkedKernelManager is the SandboxedKernelManager that uses them. The process its provisioner watches is a
small proxy on the host that holds the kernel's connection to the zygote and exits with the kernel's code.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing import util as mp_util
from pathlib import Path
from typing import Any, Iterable

from jupyter_client.manager import AsyncKernelManager

from cnngrader.kernel.guard import ZYGOTE_SCRIPT
from cnngrader.pipeline import kernel_start
from cnngrader.pipeline.kernel_start import SandboxedKernelManager
from cnngrader.pipeline.sandbox import READ_ONLY_ROOT, Limits, Sandbox
from cnngrader.pipeline.unsandboxed_launch import THREAD_VARS

ZYGOTE_SOURCE = Path(__file__).with_name("zygote_inside.py")
ZYGOTE_INSIDE = ZYGOTE_SCRIPT.decode()  # the guard knows a forked kernel by it
SOCKET_INSIDE = "/run/zygote/sock"
SPOOL_INSIDE = "/run/spool"
KERNEL_RUN_INSIDE = "/run/kernel"
READY_WAIT = 120.0  # seconds for the zygote's imports on a loaded machine
PROXY = ("import json, os, sys\n"
         "line = os.fdopen(int(sys.argv[1]), 'rb').readline()\n"
         "try:\n    code = int(json.loads(line)['exit'])\nexcept Exception:\n    code = 1\n"
         "os._exit(code)\n")
log = logging.getLogger(__name__)


class ZygoteUnavailable(RuntimeError):
    """The zygote did not start or is no longer trustworthy."""


class _ZygoteBox(Sandbox):
    """The zygote's sandbox: a kernel's, with root and capabilities inside its own user namespace."""

    spool = Path()

    def command(self, argv, env=None) -> list[str]:
        args = super().command(argv, env)
        args[args.index("--uid") + 1] = args[args.index("--gid") + 1] = "0"
        args.remove("--disable-userns")
        args[1:1] = ["--cap-add", "ALL"]
        at = args.index("--clearenv") - len(READ_ONLY_ROOT)  # before the root becomes read-only
        args[at:at] = ["--ro-bind", str(self.spool), SPOOL_INSIDE, "--size", "65536", "--tmpfs", "/run/zygote",
                       "--dir", KERNEL_RUN_INSIDE, "--ro-bind", str(ZYGOTE_SOURCE), ZYGOTE_INSIDE]
        return args


def hidden_by_fresh_tmp() -> list[str]:
    """What a forked kernel needs (this Python, the course's sources) that lies under /tmp: each kernel mounts a
    fresh /tmp, which would hide it. Fresh sandboxed kernels bind such paths over their /tmp instead."""
    needed = {sys.prefix, sys.base_prefix, str(Path(__file__).resolve().parents[2])}
    return sorted(p for p in needed if Path(p).resolve().is_relative_to("/tmp"))


class KernelZygote:
    """A running zygote (see the module docstring)."""

    def __init__(self, threads: int, wait: bool = True) -> None:
        """Start the zygote; with wait=False, return before it is ready (wait_ready, before its first kernel)."""
        if hidden_by_fresh_tmp():
            raise ZygoteUnavailable(f"forked kernels need these outside /tmp: {', '.join(hidden_by_fresh_tmp())}")
        self.spool = Path(tempfile.mkdtemp(prefix="cnn-zygote-"))  # mode 0700: the host's alone
        # the zygote's own: no RLIMIT_AS (a kernel could not raise it back to its own), no CPU budget (it lives
        # for the whole batch); each kernel's limits are its own cgroup's and rlimits
        zlimits = Limits(pids=64, cpu_seconds=0, disk_bytes=1 << 20, address_space=False)
        self.box = _ZygoteBox(zlimits)
        self.box.spool = self.spool
        self.proc: subprocess.Popen | None = None
        self.baseline: list[int] = []
        self.forked = 0  # kernels asked for so far
        self.ready = False
        try:
            self.box.open()
            env = {var: str(threads) for var in THREAD_VARS} if threads > 0 else {}
            env["OPENBLAS_NUM_THREADS"] = "1"  # OpenBLAS starts its thread pool when numpy is imported
            argv = [sys.executable, ZYGOTE_INSIDE, f"--socket={SOCKET_INSIDE}"]
            self.log = self.box.root / "zygote.log"
            with open(self.log, "wb") as err:
                self.proc = self.box.popen(argv, env, stdout=subprocess.DEVNULL, stderr=err)
            self.socket = f"/proc/{self.box.inner_pid(self.proc)}/root{SOCKET_INSIDE}"
        except BaseException:
            self.stop()
            raise
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Return once the zygote has said it is ready (its imports done, its self-test passed); stop it and raise
        ZygoteUnavailable where it cannot be."""
        if self.ready:
            return
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.ready = True

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_WAIT
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                err = self.log.read_text(errors="replace")[-2000:]
                raise ZygoteUnavailable(f"the kernel zygote exited while starting: {err}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(5)
                    s.connect(self.socket)
                    s.sendall(b"{}\n")
                    reply = json.loads(s.makefile("rb").readline() or b"{}")
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            if reply.get("threads") != 1:
                raise ZygoteUnavailable(f"the kernel zygote is not single-threaded: {reply}")
            if reply.get("self_test") != "ok":
                why = reply.get("self_test")
                raise ZygoteUnavailable(f"a kernel forked here could not enter its namespaces: {why}")
            self.baseline = sorted(self.box._cgroup.pids()) if self.box._cgroup else []
            return
        raise ZygoteUnavailable("the kernel zygote did not become ready")

    def healthy(self) -> bool:
        """Running, and no process beside its own in its cgroup (nothing a kernel left behind)."""
        cg = self.box._cgroup
        return (self.ready and self.proc is not None and self.proc.poll() is None and self.box.alive()
                and cg is not None and sorted(cg.pids()) == self.baseline)

    def fork(self, box: "ForkedSandbox", request: dict) -> socket.socket:
        """Have the zygote fork a kernel into `box`: returns the connection its exit code comes back on."""
        self.forked += 1
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(30)
            conn.connect(self.socket)
            conn.sendall(json.dumps(request).encode() + b"\n")
            reply = json.loads(_read_line(conn) or b"{}")
            if "pid" not in reply:
                raise ZygoteUnavailable(f"the kernel zygote refused a kernel: {reply}")
            host_pid = self._host_pid(int(reply["pid"]))
            box.adopt_first(host_pid)
            conn.sendall(b'{"go": true}\n')
            conn.settimeout(None)
            return conn
        except BaseException:
            conn.close()
            raise

    def _host_pid(self, inner: int) -> int:
        """The host pid of the zygote's child with pid `inner` in the zygote's pid namespace."""
        cg = self.box._cgroup
        for pid in cg.pids() if cg else []:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("NSpid:") and line.split()[1:] == [str(pid), str(inner)]:
                        return pid
            except OSError:
                continue
        raise ZygoteUnavailable(f"the kernel zygote's child {inner} is not in its cgroup")

    def stop(self) -> None:
        self.box.kill()
        shutil.rmtree(self.spool, ignore_errors=True)


def _read_line(conn: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n") and len(buf) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


class ForkedSandbox(Sandbox):
    """One forked kernel's sandbox: its own cgroup and host folders (in the zygote's spool), no bwrap."""

    first = 0  # host pid of the kernel's first process (in the zygote's pid namespace)
    survived = False  # a process of the kernel outlived its kill

    def kill(self, reason: str = "") -> None:
        cg = self._cgroup
        if cg is not None and not cg.kill_all():
            self.survived = True
        super().kill(reason)

    def adopt_first(self, host_pid: int) -> None:
        """Move the kernel's first process into this sandbox's cgroup, before it forks anything."""
        assert self._cgroup is not None
        for procs in self._cgroup.procs_files():
            with open(procs, "w") as f:
                f.write(str(host_pid))
        self.first = host_pid

    def inner_pid(self, proc: subprocess.Popen, wait: float = 10.0) -> int:
        return self.first

    def _kernel_pid(self, wait: float = 0.5) -> int:
        """Host pid of the IPython kernel: the first process's child (pid 1 inside), then its child."""
        deadline = time.monotonic() + wait
        while True:
            try:
                pid = self.first
                for _ in range(2):
                    pid = int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
                return pid
            except (OSError, IndexError, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError("the forked kernel is not running") from None
                time.sleep(0.005)

    def link_sockets(self, proc: subprocess.Popen, names: Iterable[str]) -> None:
        """The kernel binds its sockets in its own /run/kernel tmpfs; the host reaches them by symlinks."""
        root = f"/proc/{self.first}/root{KERNEL_RUN_INSIDE}"
        for name in names:
            (self.runtime / name).symlink_to(f"{root}/{name}")

    def signal_main(self, proc: subprocess.Popen, signum: int) -> None:
        try:
            os.kill(self._kernel_pid(), signum)
        except (OSError, RuntimeError):
            pass


# configuration key -> (pid of the grader process, its zygote)
_ZYGOTES: dict[tuple, tuple[int, KernelZygote]] = {}
_FAILED: dict[tuple, tuple[int, str]] = {}  # configuration key -> (pid, why its zygote could not start there)
_CLEANUP_FOR: set[int] = set()


def zygote_for(key: tuple, threads: int, wait: bool = True) -> KernelZygote:
    """This process's healthy zygote for the configuration, started (or replaced) when needed; wait=False returns
    one that may still be starting (a kernel waits for it). A zygote that could not start is not tried again by
    the same process (ZygoteUnavailable, with the first reason)."""
    failed = _FAILED.get(key)
    if failed and failed[0] == os.getpid():
        raise ZygoteUnavailable(failed[1])
    found = _ZYGOTES.get(key)
    try:
        if found and found[0] == os.getpid():
            if not wait and not found[1].ready:
                return found[1]
            found[1].wait_ready()  # a zygote started without waiting: its first kernel waits here
            if found[1].healthy():
                return found[1]
            log.warning("The kernel zygote is not healthy any more; starting a new one")
            found[1].stop()
        _stop_unused(key)
        zyg = KernelZygote(threads, wait=wait)
    except ZygoteUnavailable as e:
        _ZYGOTES.pop(key, None)
        _FAILED[key] = (os.getpid(), str(e))
        raise
    if os.getpid() not in _CLEANUP_FOR:
        _CLEANUP_FOR.add(os.getpid())
        atexit.register(stop_zygotes)
        mp_util.Finalize(None, stop_zygotes, exitpriority=100)  # a multiprocessing worker skips atexit
    _ZYGOTES[key] = (os.getpid(), zyg)
    return zyg


def _stop_unused(key: tuple) -> None:
    """Stop this process's zygotes of other configurations that have forked no kernel: started in advance (a
    Dask worker's preload) for a configuration its jobs did not ask for, each would only hold its memory."""
    for other, (pid, zyg) in list(_ZYGOTES.items()):
        if other != key and pid == os.getpid() and zyg.forked == 0:
            log.info("Stopping a kernel zygote that no kernel was forked from (its configuration is not used)")
            _ZYGOTES.pop(other, None)
            zyg.stop()


def stop_zygotes() -> None:
    for key, (pid, zyg) in list(_ZYGOTES.items()):
        if pid == os.getpid():
            _ZYGOTES.pop(key, None)
            zyg.stop()


kernel_start.STOP_HOOKS.append(stop_zygotes)


def retire(key: tuple) -> None:
    """Kill the zygote of a configuration (one of its kernels left a process behind)."""
    found = _ZYGOTES.pop(key, None)
    if found and found[0] == os.getpid():
        found[1].stop()


class ForkedKernelManager(SandboxedKernelManager):
    """A SandboxedKernelManager whose kernels are forked by a KernelZygote (see the module docstring)."""

    _conn: socket.socket | None = None
    _zkey: tuple = ()
    survivors = 0  # kernels of this manager that left a process behind (their zygote was replaced)

    def _zygote_key(self) -> tuple:
        return (sys.executable, self.threads, tuple(self.kernel_spec.argv))

    def unavailable(self, wait: bool = True) -> str | None:
        """Why this process cannot fork this configuration's kernels, or None: then its zygote is running (or, with
        wait=False, starting)."""
        hidden = hidden_by_fresh_tmp()
        if hidden:
            return f"a forked kernel's fresh /tmp would hide {', '.join(hidden)}"
        try:
            zygote_for(self._zygote_key(), self.threads, wait)
        except ZygoteUnavailable as e:
            return str(e)
        return None

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = AsyncKernelManager.format_kernel_cmd(self, extra_arguments)
        at = cmd.index("-f") + 2 if "-f" in cmd else len(cmd)
        self._kernel_args = cmd[at:]
        if self.preimport:
            self._kernel_args.append(f"--IPKernelApp.exec_lines=['import {self.preimport}']")
        return [sys.executable, "-I", "-S", "-c", PROXY, "FD"]  # FD: filled in at launch

    async def _async_pre_start_kernel(self, **kw: Any):
        self._kill_sandbox()
        self.adopted = False
        self._extra = tuple(kw.get("extra_arguments") or ())
        self._zkey = self._zygote_key()
        zyg = zygote_for(self._zkey, self.threads)
        self.sandbox = ForkedSandbox(self.limits(), temp_root=zyg.spool).open()
        if kw.get("cwd") and os.path.isdir(kw["cwd"]):
            self.sandbox.copy_in(kw["cwd"])
        self.transport = "ipc"
        self.ip = str(self.sandbox.runtime / "kernel")
        self.connection_file = str(self.sandbox.conf / "kernel.json")
        return await AsyncKernelManager._async_pre_start_kernel(self, **kw)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        box = self.sandbox
        assert isinstance(box, ForkedSandbox)
        lim = box.limits
        zyg = zygote_for(self._zkey, self.threads)
        inbox = f"{SPOOL_INSIDE}/{box.root.name}/inbox"
        request = {"inbox": inbox, "connection": self.get_connection_info(session=False), "args": self._kernel_args,
                   "as": lim.memory_bytes if lim.address_space and not box.gpus else 0,
                   "cpu": lim.cpu_seconds + 2 if lim.cpu_seconds else 0, "disk": lim.disk_bytes}
        request["connection"]["key"] = request["connection"]["key"].decode()
        self._conn = zyg.fork(box, request)
        kw.pop("preexec_fn", None)
        kw["pass_fds"] = (self._conn.fileno(),)
        kw["stdout"] = kw["stderr"] = subprocess.DEVNULL
        kw["env"] = {"PATH": os.environ.get("PATH", "")}
        cmd = [*kernel_cmd[:-1], str(self._conn.fileno())]
        await AsyncKernelManager._async_launch_kernel(self, cmd, **kw)
        proc = self.provisioner.process  # type: ignore[union-attr]
        box.started(proc)
        ports = [getattr(self, f"{channel}_port") for channel in ("shell", "iopub", "stdin", "control", "hb")]
        box.link_sockets(proc, [f"kernel-{port}" for port in ports])

    async def _async_post_start_kernel(self, **kw: Any) -> None:
        await AsyncKernelManager._async_post_start_kernel(self, **kw)

    def _kill_sandbox(self) -> None:
        box = self.sandbox
        if isinstance(box, ForkedSandbox):
            box.kill()
            if box.survived:
                self.survivors += 1
                log.warning("A process of the kernel survived its kill; replacing the kernel zygote")
                retire(self._zkey)
            else:
                found = _ZYGOTES.get(self._zkey)
                if found and found[0] == os.getpid() and not found[1].healthy():
                    self.survivors += 1
                    log.warning("The kernel zygote has a process it did not have; replacing it")
                    retire(self._zkey)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        super()._kill_sandbox()

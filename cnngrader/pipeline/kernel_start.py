"""How a grading kernel starts, on the host: the kernel managers GradingExecute uses.

SandboxedKernelManager (the default): every kernel inside a Sandbox of its own (cnngrader/pipeline/sandbox.py).
Per kernel start it:
- opens a fresh Sandbox and copies the submission's folder (the `cwd` nbclient passes: the
  autograded copy of the submission) into the sandbox's inbox;
- uses the ipc transport: the connection file is written to the sandbox's read-only `conf` folder,
  the kernel binds its sockets in the sandbox's own runtime tmpfs, and the host reaches them through
  symlinks into the sandbox's mount namespace (Sandbox.link_sockets); no TCP port, no writable host folder;
- runs `bwrap ... -- sandbox_init.py -- python -m ipykernel_launcher -f CONNECTION_FILE`, with the
  kernel process's own stdout/stderr in `stdio`, and joins bwrap to the sandbox's cgroup before exec;
- sends interrupts to the kernel inside the sandbox (the kernel has a session of its own there);
- kills the whole sandbox when the kernel is shut down or cleaned up.

Warm spare (a fresh sandboxed kernel costs ~3.4 s CPU of imports): with `warm_spare`, each
kernel start also launches the NEXT kernel, a spare, so that its start-up overlaps the current
notebook. A spare is a sandbox opened with an EMPTY inbox and its kernel process launched exactly as
a normal start (connection file, ipc sockets, cgroup); a module-level pool holds at most one per
configuration key, per process. The next start with the same key adopts it (its sandbox, provisioner
and connection info), copies the submission into its inbox on the host, and GradingExecute copies the
inbox into /submission inside the kernel before any student cell (sandbox_init.copy_inbox). A spare
serves one submission at most; a dead one is discarded; unused ones are killed by stop_spares(),
at exit, and at a multiprocessing worker's exit.

GradingKernelManager (unsandboxed grading only, `GradingExecute.sandbox = False`): the kernel runs as the
grader, started through unsandboxed_launch.py under a memory cap (RLIMIT_AS, RLIMIT_DATA) and a thread
count, and, with `preload`, forked from the zygote (cnngrader/pipeline/zygote.py), a process that has torch
and cnnlib imported already. A sandboxed kernel never comes from the zygote: the zygote lives outside any
sandbox.
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
from multiprocessing import util as mp_util
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, DottedObjectName, Float, Integer, Type, Unicode

from cnngrader.pipeline import zygote
from cnngrader.pipeline.kernel_client import GradingKernelClient
from cnngrader.pipeline.sandbox import Limits, Sandbox
from cnngrader.pipeline.unsandboxed_launch import THREAD_VARS

LAUNCHER = str(Path(__file__).with_name("unsandboxed_launch.py"))  # run by path: see its docstring

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
log = logging.getLogger(__name__)

# configuration key -> (pid of the process that started it, the spare's manager)
_SPARES: dict[tuple, tuple[int, "SandboxedKernelManager"]] = {}
_CLEANUP_FOR: set[int] = set()  # pids that registered stop_spares at their exit
STOP_HOOKS: list = []  # more that stop_zygote() stops (forked_kernel.py's sandboxed zygotes)


def stop_zygote() -> None:
    """Stop what this process keeps running for its next kernels: its zygote (it would otherwise live
    until exit) and its warm spare sandboxed kernels."""
    zygote.stop()
    stop_spares()
    for hook in STOP_HOOKS:
        hook()


def stop_spares() -> None:
    """Kill this process's unused spare kernels (their whole sandboxes)."""
    for key, (pid, spare) in list(_SPARES.items()):
        if pid == os.getpid():
            _SPARES.pop(key, None)
            spare._kill_sandbox()


def _register_cleanup() -> None:
    if os.getpid() not in _CLEANUP_FOR:
        _CLEANUP_FOR.add(os.getpid())
        atexit.register(stop_spares)
        # a multiprocessing worker ends with os._exit (no atexit) but runs its finalizers first
        mp_util.Finalize(None, stop_spares, exitpriority=100)


class GradingKernelManager(AsyncKernelManager):
    """An unsandboxed grading kernel's manager: its kernels start under unsandboxed_launch.py's resource
    limits (and, with preload, as forks of the zygote, which has torch and cnnlib imported)."""

    max_memory = Integer(0, help="Address-space cap of the kernel in bytes; 0 for none.").tag(config=True)
    threads = Integer(0, help="OMP/MKL threads of the kernel; 0 to leave them as they are.").tag(config=True)
    stdio = Unicode("", help="File for the kernel process's own stdout/stderr; empty to inherit.").tag(config=True)
    preload = Bool(False, help="Fork kernels from a pre-loaded process (cnngrader.pipeline.zygote).").tag(config=True)
    # its iopub channel measures a message before decoding it (cnngrader/pipeline/kernel_client.py)
    client_class = DottedObjectName("cnngrader.pipeline.kernel_client.GradingKernelClient")
    client_factory = Type(GradingKernelClient, klass="jupyter_client.client.KernelClient", config=True)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        socket = ""
        # only for kernels of this very environment: the zygote is this Python with its packages
        if self.preload and cmd and os.path.dirname(cmd[0]) == os.path.dirname(sys.executable):
            socket = zygote.socket_path(self.threads)
        return [
            sys.executable, "-I", "-S", LAUNCHER, f"--max-memory={self.max_memory}", f"--threads={self.threads}",
            f"--stdio={self.stdio}", f"--zygote={socket}", "--", *cmd,
        ]


class SandboxedKernelManager(GradingKernelManager):
    """A GradingKernelManager whose every kernel runs in a Sandbox of its own."""

    max_processes = Integer(Limits.pids, help="Tasks (processes + threads) of the kernel's tree.").tag(config=True)
    max_cpu_seconds = Integer(Limits.cpu_seconds, help="CPU seconds of the kernel's tree.").tag(config=True)
    max_disk = Integer(Limits.disk_bytes, help="Bytes of each writable tmpfs (/submission, /tmp).").tag(config=True)
    max_cpus = Float(0.0, help="CPU quota of the kernel's tree in cores (0: `threads`; < 0: none).").tag(config=True)

    warm_spare = Bool(True, help="Launch the next kernel while this one runs, and adopt a waiting one."
                      ).tag(config=True)

    preimport = Unicode("", help="Module an IPython kernel imports at start-up, before it serves any request "
                        "(GradingExecute.grader_module: the grader, which imports torch and cnnlib), so that a warm "
                        "spare has done those imports too.").tag(config=True)

    sandbox: Sandbox | None = None
    adopted = False  # this kernel was a warm spare: its /submission is filled by GradingExecute
    _is_spare = False
    _starts = 0
    _extra: tuple[str, ...] = ()

    def limits(self) -> Limits:
        # CPU quota: the cores its threads were given (all cores / parallel jobs), so that a
        # fork-and-spin notebook slows no other notebook graded beside it
        return Limits(memory_bytes=self.max_memory, pids=self.max_processes,
                      cpu_seconds=self.max_cpu_seconds, disk_bytes=self.max_disk,
                      cpus=float(self.max_cpus or self.threads) if self.max_cpus >= 0 else 0.0)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = AsyncKernelManager.format_kernel_cmd(self, extra_arguments)  # neither the launcher nor the zygote
        if self.preimport and any("ipykernel" in arg for arg in cmd):  # every start alike, spare or not
            cmd.append(f"--IPKernelApp.exec_lines=['import {self.preimport}']")
        assert self.sandbox is not None
        env = {var: str(self.threads) for var in THREAD_VARS} if self.threads > 0 else {}
        return self.sandbox.command(cmd, env)

    # -- the warm spare ------------------------------------------------------------------
    def _spare_key(self) -> tuple:
        return (type(self), self.kernel_name, tuple(self.kernel_spec.argv), self._extra, self.limits(),
                self.threads, self.stdio, self.max_memory, self.preimport)

    def _take_spare(self) -> "SandboxedKernelManager | None":
        """The waiting spare of this configuration (removed from the pool), if it is alive."""
        found = _SPARES.pop(self._spare_key(), None)
        if found is None or found[0] != os.getpid():  # none, or inherited through a fork: not ours
            return None
        spare = found[1]
        proc = getattr(spare.provisioner, "process", None)
        box = spare.sandbox
        if proc is None or proc.poll() is not None or box is None or not box.alive():
            log.warning("The warm spare kernel died while waiting; starting a fresh one")
            spare._kill_sandbox()
            return None
        return spare

    async def _launch_spare(self) -> None:
        """Start the next kernel (a sandbox with an empty inbox) and leave it in the pool."""
        key = self._spare_key()
        if key in _SPARES and _SPARES[key][0] == os.getpid():
            return
        spare = type(self)(kernel_name=self.kernel_name, config=self.config)
        for trait in ("max_memory", "threads", "stdio", "max_processes", "max_cpu_seconds", "max_disk",
                      "preimport"):
            setattr(spare, trait, getattr(self, trait))
        spare._is_spare = True
        try:
            kernel_cmd, kw = await spare._async_pre_start_kernel(extra_arguments=list(self._extra))
            await spare._async_launch_kernel(kernel_cmd, **kw)
        except Exception as e:  # the next start then goes the ordinary way
            log.warning("Could not start a warm spare kernel: %s", e)
            spare._kill_sandbox()
            return
        _register_cleanup()
        _SPARES[key] = (os.getpid(), spare)

    def _adopt(self, spare: "SandboxedKernelManager", kw: dict[str, Any]) -> None:
        """Take over the spare's running kernel: its sandbox, process (provisioner) and connection."""
        self.sandbox, spare.sandbox = spare.sandbox, None
        self.provisioner, spare.provisioner = spare.provisioner, None
        self.provisioner.parent = self  # type: ignore[union-attr]
        self.kernel_id = spare.kernel_id
        self.load_connection_info(spare.get_connection_info())  # transport, ip, ports, key, scheme
        self.connection_file = spare.connection_file
        self._connection_file_written = True
        spare._connection_file_written = False
        self.shutting_down = False
        self._launch_args = kw.copy()
        self.adopted = True

    # -- kernel start ----------------------------------------------------------------------
    async def _async_pre_start_kernel(self, **kw: Any):
        self._kill_sandbox()
        first, self._starts = self._starts == 0, self._starts + 1
        self._extra = tuple(kw.get("extra_arguments") or ())
        self.adopted = False
        spare = self._take_spare() if self.warm_spare and first and not self._is_spare else None
        if spare is not None:
            self._adopt(spare, kw)
            assert self.sandbox is not None
            if kw.get("cwd") and os.path.isdir(kw["cwd"]):
                self.sandbox.copy_in(kw["cwd"])  # visible at once in the kernel's read-only inbox
            kw.pop("extra_arguments", None)
            return [], kw  # nothing to launch: see _async_launch_kernel
        self.sandbox = Sandbox(self.limits()).open()
        if kw.get("cwd") and os.path.isdir(kw["cwd"]):
            self.sandbox.copy_in(kw["cwd"])
        self.transport = "ipc"
        self.ip = str(self.sandbox.runtime / "kernel")
        self.connection_file = str(self.sandbox.conf / "kernel.json")
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        assert self.sandbox is not None
        if self.adopted:
            return  # the spare's process runs already
        kw["preexec_fn"] = self.sandbox.preexec
        if self.stdio:
            out = open(self.stdio, "ab")  # Popen duplicates it; closed below
            kw["stdout"] = kw["stderr"] = out
        try:
            await super()._async_launch_kernel(kernel_cmd, **kw)
        finally:
            if self.stdio:
                out.close()
        proc = self.provisioner.process  # type: ignore[union-attr]
        self.sandbox.started(proc)
        ports = [getattr(self, f"{channel}_port") for channel in CHANNELS]
        self.sandbox.link_sockets(proc, [f"kernel-{port}" for port in ports])

    async def _async_post_start_kernel(self, **kw: Any) -> None:
        await super()._async_post_start_kernel(**kw)
        if self.warm_spare and not self._is_spare:
            await self._launch_spare()  # only its Popen here: its imports run in its own process

    async def _async_signal_kernel(self, signum: int) -> None:
        if self.sandbox is not None and self.has_kernel and signum != signal.SIGKILL:
            self.sandbox.signal_main(self.provisioner.process, signum)  # type: ignore[union-attr]
        else:
            await super()._async_signal_kernel(signum)

    async def _async_wait(self, pollinterval: float = 0.01) -> None:
        # jupyter_client polls a killed kernel every 0.1 s: a grading kernel is killed after every notebook
        await super()._async_wait(pollinterval)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        try:
            await super()._async_cleanup_resources(restart)
        finally:
            self._kill_sandbox()

    def _kill_sandbox(self) -> None:
        if self.sandbox is not None:
            self.sandbox.kill()
            self.sandbox = None

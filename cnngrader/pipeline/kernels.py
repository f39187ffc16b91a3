"""SandboxedKernelManager: a grading kernel started inside its own Sandbox (cnngrader/pipeline/sandbox.py).

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

Never the zygote: it lives outside any sandbox.
"""
from __future__ import annotations

import os
import signal
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from traitlets import Integer

from cnngrader.pipeline.execute import GradingKernelManager
from cnngrader.pipeline.launch import THREAD_VARS
from cnngrader.pipeline.sandbox import Limits, Sandbox

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")


class SandboxedKernelManager(GradingKernelManager):
    """A GradingKernelManager whose every kernel runs in a Sandbox of its own."""

    max_processes = Integer(Limits.pids, help="Tasks (processes + threads) of the kernel's tree.").tag(config=True)
    max_cpu_seconds = Integer(Limits.cpu_seconds, help="CPU seconds of the kernel's tree.").tag(config=True)
    max_disk = Integer(Limits.disk_bytes, help="Bytes of each writable tmpfs (/submission, /tmp).").tag(config=True)

    sandbox: Sandbox | None = None

    def limits(self) -> Limits:
        return Limits(memory_bytes=self.max_memory, pids=self.max_processes,
                      cpu_seconds=self.max_cpu_seconds, disk_bytes=self.max_disk)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = AsyncKernelManager.format_kernel_cmd(self, extra_arguments)  # not the launcher or the zygote
        assert self.sandbox is not None
        env = {var: str(self.threads) for var in THREAD_VARS} if self.threads > 0 else {}
        return self.sandbox.command(cmd, env)

    async def _async_pre_start_kernel(self, **kw: Any):
        self._kill_sandbox()
        self.sandbox = Sandbox(self.limits()).open()
        if kw.get("cwd") and os.path.isdir(kw["cwd"]):
            self.sandbox.copy_in(kw["cwd"])
        self.transport = "ipc"
        self.ip = str(self.sandbox.runtime / "kernel")
        self.connection_file = str(self.sandbox.conf / "kernel.json")
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        assert self.sandbox is not None
        kw["preexec_fn"] = self.sandbox.preexec
        if self.stdio:
            out = open(self.stdio, "ab")  # noqa: SIM115 - Popen duplicates it; closed below
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

    async def _async_signal_kernel(self, signum: int) -> None:
        if self.sandbox is not None and self.has_kernel and signum != signal.SIGKILL:
            self.sandbox.signal_main(self.provisioner.process, signum)  # type: ignore[union-attr]
        else:
            await super()._async_signal_kernel(signum)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        try:
            await super()._async_cleanup_resources(restart)
        finally:
            self._kill_sandbox()

    def _kill_sandbox(self) -> None:
        if self.sandbox is not None:
            self.sandbox.kill()
            self.sandbox = None

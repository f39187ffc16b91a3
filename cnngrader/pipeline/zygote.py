"""A pre-loaded parent for grading kernels: torch, cnnlib and ipykernel are imported once, and
every grading kernel is a fork of this process instead of a fresh Python that imports them again
(about 2 s of each notebook's grading time).

    python -m cnngrader.pipeline.zygote SOCKET      # started by socket_path(), one per grader process

Unsandboxed grading only (GradingKernelManager with preload): a sandboxed kernel never comes from here.
The kernel manager still launches unsandboxed_launch.py as "the kernel" (with --zygote=SOCKET);
that launcher becomes a proxy: it asks this server for a kernel, forwards the signals it gets
(interrupts) to the forked kernel, and exits with the kernel's exit code. When the proxy is
killed, its connection closes and the server kills the kernel; when the grader goes away (its
pipe to our stdin closes), the server kills every kernel and exits.

What each forked kernel sets up before it starts ipykernel: a new session, the memory cap
(RLIMIT_AS, RLIMIT_DATA), the environment and working directory the kernel manager asked for,
its own stdout/stderr file, and torch's thread count. Nothing student-specific exists in this
process (cnnlib.grading is deliberately not pre-imported: it must capture its references in
the kernel, before the student's code runs), and every kernel is a separate process.
"""
from __future__ import annotations

import atexit
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

from cnngrader.pipeline.unsandboxed_launch import cap_memory, redirect_stdio

_RUNNING: dict[int, tuple[subprocess.Popen, str]] = {}  # grader pid -> (its zygote, the socket path)


# -- the grader's side: start and stop this process's zygote -------------------------------------
def socket_path(threads: int = 0, wait: float = 180.0) -> str:
    """The socket of this process's zygote, started on first use; "" if it cannot be started (kernels
    then start the ordinary way)."""
    found = _RUNNING.get(os.getpid())
    if found and found[0].poll() is None:
        return found[1]
    path = os.path.join(tempfile.gettempdir(), f"cnn-zygote-{os.getpid()}-{time.monotonic_ns()}.sock")
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["OPENBLAS_NUM_THREADS"] = "1"  # no BLAS thread pool in a process that forks
    if threads > 0:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnngrader.pipeline.zygote", path],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, start_new_session=True,
    )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(path)
                s.sendall(b"{}\n")
                if s.recv(4096):
                    _RUNNING[os.getpid()] = (proc, path)
                    atexit.register(_stop, proc)
                    return path
        except OSError:
            time.sleep(0.05)
    _stop(proc)
    return ""


def stop() -> None:
    """Stop this process's zygote, if it has one (it would otherwise live until exit)."""
    found = _RUNNING.pop(os.getpid(), None)
    if found:
        _stop(found[0])


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.stdin.close()  # the server kills its kernels and exits
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the server ------------------------------------------------------------------------------------


def preload() -> None:
    """Import what every grading kernel imports anyway; run nothing (no thread pools yet). Imported here,
    in the server only: the grader imports this module for socket_path() and stop()."""
    import ipykernel.ipkernel  # imported so that forked kernels need not
    import ipykernel.kernelapp  # noqa: F401 (imported so that forked kernels need not)
    import IPython  # noqa: F401 (imported so that forked kernels need not)
    import numpy  # noqa: F401 (imported so that forked kernels need not)
    import torch
    import torch._dynamo  # the meta device's first operator needs it; it starts no thread
    import torch.nn.functional  # imported so that forked kernels need not

    import cnnlib  # noqa: F401 (imported so that forked kernels need not)

    del torch


def _run_kernel(req: dict) -> None:
    """In the forked child: become the kernel the request describes. Never returns."""
    code = 1
    try:
        os.setsid()  # signals for the grader's terminal (Ctrl-C) are not the kernel's
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        cap_memory(int(req.get("max_memory") or 0))
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir(req["cwd"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        redirect_stdio(req.get("stdio") or "")
        threads = int(req.get("threads") or 0)
        # torch and ipykernel: imported by preload() already, and never into the grader that imports this module
        if threads > 0:
            import torch  # already loaded by preload() (see above)

            torch.set_num_threads(threads)
        sys.argv = ["ipykernel_launcher", *req["args"]]
        from ipykernel import kernelapp  # as torch above

        kernelapp.launch_new_instance()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # a kernel that cannot start must still exit
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _send(conn: socket.socket, obj: dict) -> None:
    try:
        conn.sendall(json.dumps(obj).encode() + b"\n")
    except OSError:
        pass


def _read_line(conn: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


class _Server:
    """The zygote's loop: a kernel per request, each a fork of this process."""

    def __init__(self, path: str) -> None:
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(64)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.srv, selectors.EVENT_READ, "accept")
        self.sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
        self.kernels: dict[int, socket.socket] = {}  # kernel pid -> its proxy's connection

    def finish(self, pid: int, code: int | None) -> None:
        conn = self.kernels.pop(pid, None)
        if conn is not None:
            if code is not None:
                _send(conn, {"exit": code})
            self.sel.unregister(conn)
            conn.close()

    def accept(self) -> None:
        """A proxy's request: fork its kernel (or answer a ping)."""
        conn, _ = self.srv.accept()
        line = _read_line(conn)
        req = json.loads(line) if line.strip() else {}
        if "args" not in req:  # a ping: the server is up
            _send(conn, {"pong": os.getpid()})
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            self.sel.close()
            self.srv.close()
            for other in self.kernels.values():
                other.close()
            conn.close()
            _run_kernel(req)
        _send(conn, {"pid": pid})
        self.kernels[pid] = conn
        self.sel.register(conn, selectors.EVENT_READ, pid)

    def proxy_event(self, pid: int, conn: socket.socket) -> None:
        """A proxy's connection is readable: it closed when the proxy was killed, and so is its kernel."""
        try:
            alive = bool(conn.recv(4096))
        except OSError:
            alive = False
        if not alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.finish(pid, None)

    def reap(self) -> None:
        """Reap finished kernels and tell their proxies."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.finish(pid, os.waitstatus_to_exitcode(status))

    def run(self) -> None:
        """Serve until the grader is gone (our stdin closes); then kill every kernel."""
        try:
            while True:
                for key, _ in self.sel.select(timeout=0.1):
                    if key.data == "accept":
                        self.accept()
                    elif key.data == "stdin":
                        if not os.read(sys.stdin.fileno(), 4096):
                            return  # the grader is gone
                    else:
                        self.proxy_event(key.data, key.fileobj)  # type: ignore[arg-type]
                self.reap()
        finally:
            for pid in list(self.kernels):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.unlink(self.path)
            except OSError:
                pass


def serve(path: str) -> None:
    preload()
    _Server(path).run()


if __name__ == "__main__":
    serve(sys.argv[1])

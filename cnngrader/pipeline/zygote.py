"""A pre-loaded parent for grading kernels: torch, cnnlib and ipykernel are imported once, and
every grading kernel is a fork of this process instead of a fresh Python that imports them again
(about 2 s of each notebook's grading time).

    python -m cnngrader.pipeline.zygote SOCKET      # started by GradingKernelManager, one per grader process

The kernel manager still launches launch.py as "the kernel" (with --zygote=SOCKET);
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

import json
import os
import resource
import selectors
import signal
import socket
import sys


def preload() -> None:
    """Import what every grading kernel imports anyway; run nothing (no thread pools yet)."""
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401
    import IPython  # noqa: F401
    import numpy  # noqa: F401
    import torch
    import torch._dynamo  # noqa: F401 - the meta device's first operator needs it; it starts no thread
    import torch.nn.functional  # noqa: F401

    import cnnlib  # noqa: F401

    del torch


def _run_kernel(req: dict) -> None:
    """In the forked child: become the kernel the request describes. Never returns."""
    code = 1
    try:
        os.setsid()  # signals for the grader's terminal (Ctrl-C) are not the kernel's
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        cap = int(req.get("max_memory") or 0)
        if cap > 0:
            for limit in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
                _soft, hard = resource.getrlimit(limit)
                value = cap if hard == resource.RLIM_INFINITY else min(cap, hard)
                resource.setrlimit(limit, (value, value))
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir(req["cwd"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        if req.get("stdio"):
            fd = os.open(req["stdio"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
        threads = int(req.get("threads") or 0)
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        sys.argv = ["ipykernel_launcher", *req["args"]]
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - a kernel that cannot start must still exit
        import traceback

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


def serve(path: str) -> None:
    preload()
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ, "accept")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    kernels: dict[int, socket.socket] = {}  # kernel pid -> its proxy's connection

    def finish(pid: int, code: int | None) -> None:
        conn = kernels.pop(pid, None)
        if conn is not None:
            if code is not None:
                _send(conn, {"exit": code})
            sel.unregister(conn)
            conn.close()

    try:
        while True:
            for key, _ in sel.select(timeout=0.1):
                if key.data == "accept":
                    conn, _ = srv.accept()
                    line = _read_line(conn)
                    req = json.loads(line) if line.strip() else {}
                    if "args" not in req:  # a ping: the server is up
                        _send(conn, {"pong": os.getpid()})
                        conn.close()
                        continue
                    pid = os.fork()
                    if pid == 0:
                        sel.close()
                        srv.close()
                        for c in kernels.values():
                            c.close()
                        conn.close()
                        _run_kernel(req)
                    _send(conn, {"pid": pid})
                    kernels[pid] = conn
                    sel.register(conn, selectors.EVENT_READ, pid)
                elif key.data == "stdin":
                    if not os.read(sys.stdin.fileno(), 4096):
                        return  # the grader is gone
                else:
                    pid = key.data
                    try:
                        alive = bool(key.fileobj.recv(4096))
                    except OSError:
                        alive = False
                    if not alive:  # the proxy was killed: so is its kernel
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                        finish(pid, None)
            while True:  # reap finished kernels and tell their proxies
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                finish(pid, os.waitstatus_to_exitcode(status))
    finally:
        for pid in list(kernels):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.unlink(path)
        except OSError:
            pass


if __name__ == "__main__":
    serve(sys.argv[1])

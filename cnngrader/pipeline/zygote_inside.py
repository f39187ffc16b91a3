"""The kernel zygote inside its sandbox: it imports torch, ipykernel, IPython, numpy and cnnlib once,
then forks every grading kernel from itself, each with namespaces of its own. cnngrader/pipeline/forked_kernel.py
starts it in a bubblewrap sandbox (binds this file read-only at /run/cnngrader-zygote.py) as uid 0 of that
sandbox's user namespace, with its capabilities there and nowhere else:

    python /run/cnngrader-zygote.py --socket=/run/zygote/sock

One connection on the socket per kernel, one JSON object per line:
    host -> {"inbox": DIR, "connection": {...}, "args": [...], "as": BYTES, "cpu": SECONDS, "disk": BYTES}
    zygote (the kernel's first process, P) -> {"pid": P}      (its pid here; the host moves it into the
                                                               kernel's own cgroup)
    host -> {"go": true}
    P -> {"exit": CODE}                                       (when the kernel has exited)

The three processes of one kernel:
- P, in the zygote's namespaces, unshares mount, pid, network, ipc and uts namespaces and forks R;
- R, pid 1 of the new pid namespace (the reaper), mounts a fresh tmpfs on /submission, /tmp and /run/kernel,
  a fresh /proc (its /proc/sys read-only), copies the submission in from its inbox (a host folder bound
  read-only at /run/spool, which only the trusted side writes), writes the kernel's connection file, unmounts
  /run/spool and /run/zygote (other submissions' inboxes and this server's socket), then forks K;
- K, pid 2, enters a user namespace nested twice (the first one allows exactly one more, the second maps
  uid/gid 65534), so it may create no further one and owns none of the namespaces above; drops every
  capability, sets no_new_privs and its rlimits, and becomes the IPython kernel.
Nothing of one kernel reaches the next: each mount above is fresh, the rest of the filesystem is read-only,
and K sees neither the zygote nor another kernel (pid namespace) nor can it ptrace R (no capability in R's
user namespace).

Standard library only at the top: the preloads are imported in preload(), never by the grader.
"""
import ctypes
import importlib
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import sys
import threading
import traceback

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 0x4000, 1 << 18)
MNT_DETACH = 2
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 4, 24, 38
UID = GID = 65534
SUBMISSION, KERNEL_RUN, SPOOL, ZYGOTE_RUN = "/submission", "/run/kernel", "/run/spool", "/run/zygote"
CONNECTION_FILE = f"{KERNEL_RUN}/kernel.json"
PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus")  # as bubblewrap's own /proc
RUN_TMPFS_BYTES = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                       data.encode() if data else None), f"mount {target}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0)), f"prctl {option}")


def single_threaded() -> bool:
    """Whether this process runs one thread only: a fork copies one thread, and a user namespace needs it."""
    return threading.active_count() == 1 and len(os.listdir("/proc/self/task")) == 1


# -- the kernel's three processes ----------------------------------------------------------------
def _map_ids(inside: int, outside: int) -> None:
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{inside} {outside} 1\n")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{inside} {outside} 1\n")


def drop_privileges(sysctl_dir: int) -> None:
    """K: two nested user namespaces (the outer one's limit leaves the inner one no child namespace), uid and
    gid 65534, no capability in any namespace, no_new_privs."""
    unshare(CLONE_NEWUSER)
    _map_ids(0, 0)
    fd = os.open("max_user_namespaces", os.O_WRONLY, dir_fd=sysctl_dir)  # the new namespace's own limit
    try:
        os.write(fd, b"1")
    finally:
        os.close(fd)
    os.close(sysctl_dir)
    unshare(CLONE_NEWUSER)
    _map_ids(UID, 0)
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) != 0 and ctypes.get_errno() == 22:
            break  # EINVAL: past the last capability
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: empty (two 32-bit words each)
    _check(_libc.capset(header, data), "capset")
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def _mount_fresh(disk: int) -> int:
    """R: the kernel's private mounts; returns a descriptor of the writable /proc/sys/user (for K's limit)."""
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    size = f"size={disk}," if disk > 0 else ""
    mount("tmpfs", SUBMISSION, "tmpfs", MS_NOSUID | MS_NODEV, f"{size}mode=0755")
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"{size}mode=1777")
    mount("tmpfs", KERNEL_RUN, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={RUN_TMPFS_BYTES},mode=0755")
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    sysctl_dir = os.open("/proc/sys/user", os.O_DIRECTORY | os.O_RDONLY)
    for name in PROC_READ_ONLY:
        path = f"/proc/{name}"
        if os.path.exists(path):
            mount(path, path, None, MS_BIND | MS_REC)
            mount(path, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    return sysctl_dir


def _prepare(req: dict) -> int:
    """R: mounts, the submission and the connection file; then hide the spool and the socket."""
    sysctl_dir = _mount_fresh(int(req.get("disk") or 0))
    inbox = req["inbox"]
    if not os.path.realpath(inbox).startswith(SPOOL + "/"):
        raise ValueError(f"inbox {inbox!r} is not in the spool")
    if os.path.isdir(inbox):
        shutil.copytree(inbox, SUBMISSION, copy_function=shutil.copyfile, dirs_exist_ok=True)
    info = dict(req["connection"], ip=f"{KERNEL_RUN}/kernel", transport="ipc")
    with open(CONNECTION_FILE, "w") as f:
        json.dump(info, f)
    for path in (SPOOL, ZYGOTE_RUN):
        _check(_libc.umount2(path.encode(), ctypes.c_int(MNT_DETACH)), f"umount {path}")
    for var in ("HOME", "MPLCONFIGDIR", "IPYTHONDIR"):
        if os.environ.get(var):
            os.makedirs(os.environ[var], exist_ok=True)
    return sysctl_dir


def _close_fds(keep: tuple[int, ...] = ()) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    for fd in [int(n) for n in os.listdir("/proc/self/fd")]:
        if fd > 2 and fd not in keep and fd < 65536:
            try:
                os.close(fd)
            except OSError:
                pass


def _become_kernel(req: dict, sysctl_dir: int) -> None:
    """K: drop every privilege, then run ipykernel as `python -m ipykernel_launcher -f CONNECTION ARGS` would."""
    _close_fds(keep=(sysctl_dir,))
    os.setsid()
    drop_privileges(sysctl_dir)
    address_space = int(req.get("as") or 0)
    if address_space > 0:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    cpu = int(req.get("cpu") or 0)
    if cpu > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    os.chdir(SUBMISSION)
    sys.path[0] = SUBMISSION  # `python -m` puts the working directory first
    sys.argv = ["ipykernel_launcher", "-f", CONNECTION_FILE, *req.get("args", [])]
    threads = int(os.environ.get("OMP_NUM_THREADS") or 0)
    if threads > 0:
        import torch  # imported by preload() already

        torch.set_num_threads(threads)
    from ipykernel import kernelapp  # as torch above

    kernelapp.launch_new_instance()


def _reap(child: int) -> int:
    """R as pid 1: reap every orphan until K exits; K's exit code."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == child:
            return os.waitstatus_to_exitcode(status)


def _exit_code(status_code: int) -> int:
    return status_code if status_code >= 0 else 128 - status_code


def run_kernel(conn: socket.socket, req: dict) -> None:
    """P, forked by the server: never returns."""
    code = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        prctl(PR_SET_DUMPABLE, 0)
        conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
        go = conn.makefile("rb").readline()
        if not json.loads(go or b"{}").get("go"):
            os._exit(1)
        unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
        reaper = os.fork()
        if reaper == 0:
            _reaper_main(conn, req)
        _, status = os.waitpid(reaper, 0)
        code = _exit_code(os.waitstatus_to_exitcode(status))
    except BaseException:
        traceback.print_exc()
    try:
        conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
    finally:
        os._exit(code)


def _reaper_main(conn: socket.socket, req: dict) -> None:
    code = 1
    try:
        conn.close()
        sysctl_dir = _prepare(req)
        kernel = os.fork()
        if kernel == 0:
            try:
                _become_kernel(req, sysctl_dir)
                os._exit(0)
            except SystemExit as e:
                os._exit(e.code if isinstance(e.code, int) else 1)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
        os.close(sysctl_dir)
        _close_fds()
        code = _exit_code(_reap(kernel))
    except BaseException:
        traceback.print_exc()
    os._exit(code)


# What every grading kernel imports, imported once here. pdb, sqlite3 (IPython's history), debugpy (through
# ipykernel.debugger, ~0.1 s of every start) and torch._dynamo (the meta device's first operator needs it) start
# no thread. The last row is what IPKernelApp.initialize still imported (~15 ms of each kernel's start).
PRELOADS = (
    "pdb", "sqlite3", "ipykernel.debugger", "ipykernel.ipkernel", "ipykernel.kernelapp", "IPython",
    "IPython.core.completerlib", "IPython.core.debugger", "IPython.extensions.storemagic", "numpy", "torch",
    "torch._dynamo", "torch.nn.functional", "tornado.platform.asyncio", "cnnlib",
    "psutil", "faulthandler", "IPython.core.logger", "IPython.core.oinspect", "IPython.utils.wildcard",
)


# -- the server ------------------------------------------------------------------------------------------
def preload() -> None:
    """Import what every grading kernel imports; run nothing (no tensor op, no CUDA, no thread pool). Not the
    grader's kernel side (cnngrader.kernel): it captures the kernel's IPython shell and torch as they are when it
    is imported, so each kernel imports it itself (ipykernel's exec_lines), before any student code."""
    for name in PRELOADS:
        importlib.import_module(name)
    torch = sys.modules["torch"]

    if torch.cuda.is_initialized():
        raise RuntimeError("CUDA was initialised before fork")
    if not single_threaded():
        raise RuntimeError(f"the preloads started threads: {threading.enumerate()}")


def self_test() -> str:
    """Whether this machine lets a forked kernel drop into its namespaces: a throwaway child takes the same steps
    as a kernel's reaper and kernel (new namespaces, fresh mounts, two nested user namespaces, no capability),
    without ipykernel. "ok", or what failed: the host then grades with fresh sandboxed kernels."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        why = "ok"
        try:
            unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
            inner = os.fork()
            if inner == 0:
                try:
                    drop_privileges(_mount_fresh(RUN_TMPFS_BYTES))
                    os._exit(0)
                except BaseException as e:
                    os.write(write, f"{type(e).__name__}: {e}".encode()[:1000])
                    os._exit(1)
            _, status = os.waitpid(inner, 0)
            if status != 0:
                why = ""
        except BaseException as e:
            why = f"{type(e).__name__}: {e}"
        os.write(write, why.encode()[:1000])
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        why = f.read().decode(errors="replace")
    os.waitpid(pid, 0)
    return why or "the self-test's child died"


def _read_request(conn: socket.socket) -> dict:
    buf = b""
    while not buf.endswith(b"\n") and len(buf) < 1 << 20:
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
    return json.loads(buf) if buf.strip() else {}


def serve(path: str, tested: str = "ok") -> None:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(16)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ)
    while True:
        for _ in sel.select(timeout=0.5):
            conn, _addr = srv.accept()
            conn.settimeout(30)
            try:
                req = _read_request(conn)
            except (OSError, ValueError):
                conn.close()
                continue
            if "inbox" not in req:
                conn.sendall(json.dumps({"ready": os.getpid(), "threads": len(os.listdir("/proc/self/task")),
                                         "self_test": tested}).encode() + b"\n")
                conn.close()
                continue
            if not single_threaded():  # a fork would copy a lock held by another thread
                conn.sendall(b'{"error": "the zygote is not single-threaded"}\n')
                sys.exit("the zygote is not single-threaded")
            pid = os.fork()
            if pid == 0:
                sel.close()
                srv.close()
                conn.settimeout(None)
                run_kernel(conn, req)
            conn.close()
        while True:  # reap the kernels' first processes
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break


def main(argv: list[str]) -> None:
    opts = dict(arg.partition("=")[::2] for arg in argv)
    preload()
    serve(opts["--socket"], self_test())


if __name__ == "__main__":
    main(sys.argv[1:])

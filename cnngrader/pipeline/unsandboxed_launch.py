"""The launcher of an unsandboxed grading kernel (GradingExecute.sandbox = False): it starts the kernel under
resource limits. Run by path, as

    python -I -S unsandboxed_launch.py --max-memory BYTES --threads N --stdio PATH -- KERNEL_CMD...

It caps the address space (RLIMIT_AS) and the data segment (RLIMIT_DATA), sets the math
libraries' thread counts, points the process's own stdout/stderr (not the notebook's
outputs: ipykernel echoes what it captures there) at PATH, then replaces itself with KERNEL_CMD
(os.execv), so the kernel keeps the process id, the limits and the signals (interrupts) the
kernel manager sends.

With --zygote=SOCKET and a kernel command of the form `PYTHON ... -m ipykernel_launcher ARGS`,
it does not exec: it asks the zygote server on SOCKET for a kernel forked from a
process that has torch and cnnlib imported already, forwards the signals it receives (the
kernel manager's interrupts) to that kernel and exits with its exit code. Should the server not
answer, it falls back to the exec.

This file imports only the standard library and never `cnnlib` (whose package import
would load torch before the limits are in place); keep it that way. The zygote imports its cap_memory and
redirect_stdio, so that a forked kernel gets the same limits. (A sandboxed kernel starts through
sandbox_init.py instead, which the sandbox binds alone, and its tree's memory is the cgroup's.)
"""
import json
import os
import resource
import signal
import socket
import sys

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def kernel_env(env, threads):
    """The environment a grading kernel gets: thread counts for the math libraries (when
    threads > 0), no figures on screen, no debugger file-validation noise on stderr (stderr in a
    graded cell scores 0), and bytecode caching of what it imports."""
    env = dict(env)
    if threads > 0:
        env.update({var: str(threads) for var in THREAD_VARS})
    env.setdefault("MPLBACKEND", "Agg")
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def cap_memory(max_memory):
    """Cap this process's address space and data segment at max_memory bytes (0: leave them), never
    above a hard limit already in place."""
    if max_memory > 0:
        for limit in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
            _soft, hard = resource.getrlimit(limit)
            cap = max_memory if hard == resource.RLIM_INFINITY else min(max_memory, hard)
            resource.setrlimit(limit, (cap, cap))


def redirect_stdio(path):
    """Point this process's own stdout and stderr at the file `path` ("" : leave them)."""
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)


def main(argv):
    if "--" not in argv:
        sys.exit("usage: unsandboxed_launch.py [--max-memory BYTES] [--threads N] -- KERNEL_CMD...")
    split = argv.index("--")
    opts, cmd = argv[:split], argv[split + 1 :]
    max_memory, threads, stdio, zygote = 0, 0, "", ""
    for opt in opts:
        name, _, value = opt.partition("=")
        if name == "--max-memory":
            max_memory = int(value)
        elif name == "--threads":
            threads = int(value)
        elif name == "--stdio":
            stdio = value
        elif name == "--zygote":
            zygote = value
        else:
            sys.exit(f"unsandboxed_launch.py: unknown option {opt!r}")
    if not cmd:
        sys.exit("unsandboxed_launch.py: no kernel command after --")

    if zygote and "ipykernel_launcher" in cmd[1:]:
        at = cmd.index("ipykernel_launcher")
        if cmd[at - 1] == "-m":
            request = {"args": cmd[at + 1 :], "env": kernel_env(os.environ, threads), "cwd": os.getcwd(),
                       "max_memory": max_memory, "threads": threads, "stdio": stdio}
            proxy(zygote, request)  # returns only if the server did not answer
    cap_memory(max_memory)
    redirect_stdio(stdio)
    os.execve(cmd[0], cmd, kernel_env(os.environ, threads))


def proxy(path, request):
    """Have the zygote fork the kernel; relay signals to it; exit with its exit code."""
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
        conn.sendall(json.dumps(request).encode() + b"\n")
        replies = conn.makefile("rb")
        pid = json.loads(replies.readline())["pid"]
    except (OSError, ValueError, KeyError):
        return  # no server: start the kernel the ordinary way

    def relay(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, relay)
    try:
        line = replies.readline()  # blocks until the kernel exits (signals are relayed meanwhile)
        code = json.loads(line)["exit"] if line.strip() else 1
    except (OSError, ValueError, KeyError):
        code = 1
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main(sys.argv[1:])

"""A sandbox for one submission: bubblewrap (bwrap) namespaces plus a cgroup for the whole process tree.

    with Sandbox(Limits(memory_bytes=4 * 2**30)) as box:
        box.copy_in(submission_dir)                        # the trusted side fills the inbox
        proc = box.popen([sys.executable, "-c", "..."])    # runs as uid 65534 in /submission
        ...
    # leaving the block kills every process of the tree and removes the cgroups and temp dirs

What a process inside sees and may do:
- user, pid, network, ipc, uts and cgroup namespaces of its own (`--unshare-all`): uid/gid 65534,
  only its own processes, no network interface but its own loopback (not the host's);
- a filesystem made of an allow-list of read-only binds: /usr (and the merged-usr links /bin,
  /lib, /lib64, /sbin), /etc, the Python installation, the virtual environment, and the
  sources a grading kernel imports (cnnlib and the kernel side of cnngrader); nothing else of the
  course directory;
- writable: /submission (its cwd; a copy of the inbox) and /tmp, each a tmpfs of
  `Limits.disk_bytes`; the kernel's ipc sockets go to a tiny tmpfs at `runtime` (see link_sockets);
- memory (RAM + swap), task count, CPU time and a CPU quota in cores (`Limits.cpus`, cgroup
  cpu.max or v1 cpu.cfs_quota_us) limited for the whole tree by one cgroup per sandbox, which the
  bwrap process joins before it execs (so every descendant is counted).

CPU time is enforced by a watchdog thread that polls the cgroup's CPU usage (tree-wide,
including processes that already exited) and kills the sandbox past `Limits.cpu_seconds`;
RLIMIT_CPU on every process is only a per-process backstop.

bwrap runs as the caller. As root (CI, the course server) the sandbox's uid 65534 maps to host
uid 0 without any capability outside its namespaces, so only the binds above are reachable, all
read-only; and every file or folder of /etc that the host's uid 65534 could not read is masked
(unreadable). Without root, bwrap needs unprivileged user namespaces and the cgroups must be
delegated to the caller (see INSTALL_HINT).
"""
from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from . import datasets
from .safefiles import FileLimits, copy_tree

INIT_SOURCE = Path(__file__).with_name("sandbox_init.py")
INIT_INSIDE = "/run/cnngrader-init.py"
INBOX_INSIDE = "/run/inbox"
SUBMISSION = "/submission"
HOME = "/tmp/home"
UID = GID = 65534
CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "pids", "cpuacct", "freezer")
ETC = "/etc"  # bound read-only, less what uid 65534 could not read on the host (see unreadable)
CPU_PERIOD_US = 100_000  # the CFS period of a CPU quota
# precheck.py: a notebook's pre-submission check imports in the kernel (with the stdlib-only modules it
# imports at its top) and does nothing there.
KERNEL_SOURCES = ("cnngrader/__init__.py", "cnngrader/tolerances.py", "cnngrader/course.py", "cnngrader/kernel",
                  "cnngrader/precheck.py", "cnngrader/cells.py", "cnngrader/check_verdict.py")
RUNTIME_TMPFS_BYTES = 1 << 20  # connection sockets only
READ_ONLY_ROOT = ("--remount-ro", "/dev", "--remount-ro", "/")  # after every mount: bwrap's own tmpfs root and /dev

INSTALL_HINT = """\
Grading runs every submission in a sandbox (bubblewrap + cgroups), and it cannot be set up here:
  {why}
To fix it:
  - install bubblewrap:                       apt-get install bubblewrap   (dnf install bubblewrap)
  - not root? enable user namespaces:         sysctl -w kernel.unprivileged_userns_clone=1   (Debian <= 10)
                                              sysctl -w user.max_user_namespaces=15000
                                              (Ubuntu 24.04+: kernel.apparmor_restrict_unprivileged_userns=0)
  - cgroups: run as root (cgroup v1 memory, pids, cpuacct, freezer under /sys/fs/cgroup/<controller>/),
    or on cgroup v2 from a delegated scope: systemd-run --user --scope -p Delegate=yes make grade
Or grade WITHOUT a sandbox, trusting every submission: `make grade UNSAFE=1`,
`python -m cnngrader.pipeline grade --unsandboxed`, or c.GradingExecute.sandbox = False."""


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be set up on this machine; the message says what to install or enable."""

    def __init__(self, why: str) -> None:
        super().__init__(INSTALL_HINT.format(why=why))
        self.why = why


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox (0 means no limit): the one home of the grading kernels' defaults,
    which GradingExecute's and SandboxedKernelManager's settings read. They fit a grading kernel, which maps
    about 1.5 GiB (VmSize, with torch, cnnlib and the grader's kernel side imported and a LeNet forward run)
    and runs one notebook of a few minutes at most."""

    memory_bytes: int = 4 * 2**30  # RAM + swap of the whole process tree (tmpfs pages included)
    pids: int = 512  # tasks (processes and threads) at once; torch and ipykernel use a few dozen threads
    cpu_seconds: int = 900  # CPU time of the whole tree, over the sandbox's lifetime
    disk_bytes: int = 256 * 2**20  # size of each writable tmpfs (/submission and /tmp)
    address_space: bool = True  # also RLIMIT_AS = memory_bytes per process (off where GPUs are present)
    cpus: float = 0.0  # CPU quota of the tree in cores (cgroup cpu.max), so one notebook cannot starve the others


# -- what the sandbox sees ----------------------------------------------------------------------
def kernel_sources() -> list[Path]:
    """The files and folders a grading kernel imports from the course: the cnnlib package and the
    kernel side of cnngrader (never cnngrader/pipeline)."""
    paths = []
    cnnlib = importlib.util.find_spec("cnnlib")
    if cnnlib is None or not cnnlib.submodule_search_locations:
        raise SandboxUnavailable("the cnnlib package cannot be found")
    paths += [Path(p) for p in cnnlib.submodule_search_locations]
    grader = importlib.util.find_spec("cnngrader")
    if grader is not None and grader.origin:
        root = Path(grader.origin).parent.parent
        paths += [root / rel for rel in KERNEL_SOURCES if (root / rel).exists()]
    return paths


def import_roots(sources: Iterable[Path]) -> list[str]:
    """PYTHONPATH entries that make the bound packages importable: the folder above each one's
    top-level package."""
    roots: list[str] = []
    for path in sources:
        top = path.parent
        while (top / "__init__.py").exists():
            top = top.parent
        if str(top) not in roots:
            roots.append(str(top))
    return roots


def gpu_devices() -> list[str]:
    """The GPU device nodes to pass through: NVIDIA's and the DRM render nodes, where present."""
    dev = Path("/dev")
    found = sorted(str(p) for p in dev.glob("nvidia*"))
    found += [str(dev / "dri")] if (dev / "dri").exists() else []
    return found


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib64", "sbin", "lib32", "libx32"):
        path = Path("/", name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--ro-bind", "/etc", "/etc"]
    files, folders = unreadable(ETC)
    for path in files:
        args += ["--ro-bind", "/dev/null", path]
    for path in folders:
        args += ["--size", "4096", "--tmpfs", path, "--remount-ro", path]
    return args


def _readable(st: os.stat_result, bits: int, uid: int, gid: int) -> bool:
    """Whether `bits` (4: read, 5: read and search) are granted to uid:gid by st's mode (no ACLs)."""
    shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
    return (st.st_mode >> shift) & bits == bits


def unreadable(top: str, uid: int = UID, gid: int = GID) -> tuple[list[str], list[str]]:
    """(files, folders) under `top` that host uid:gid could not read, outermost folders only, for the
    sandbox to mask: /dev/null over each file, an empty read-only tmpfs over each folder. As root the
    sandbox's uid is host uid 0, which the files' modes alone would not stop (a 0600 key in
    /etc/ssl/private, /etc/shadow). Symbolic links are left as they are: their targets are judged where
    they lie."""
    files: list[str] = []
    folders: list[str] = []
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            folders.append(folder)
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # removed meanwhile
            if stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_ISDIR(st.st_mode):
                (stack if _readable(st, 5, uid, gid) else folders).append(entry.path)
            elif not _readable(st, 4, uid, gid):
                files.append(entry.path)
    return sorted(files), sorted(folders)


def _base_flags() -> list[str]:
    return [
        "--unshare-all", "--unshare-user", "--uid", str(UID), "--gid", str(GID), "--hostname", "sandbox",
        "--die-with-parent", "--new-session", "--disable-userns", "--proc", "/proc", "--dev", "/dev",
    ]


# -- cgroups -----------------------------------------------------------------------------------------
def _own_cgroup(controller: str) -> str:
    """This process's cgroup path for a v1 controller ("" for the v2 unified hierarchy)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return ""


def cgroup_v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


class Cgroup:
    """One sandbox's cgroup: a folder per v1 controller (memory, pids, cpuacct, freezer), or one
    v2 folder, created below this process's own cgroup so that its limits still apply."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.dirs: dict[str, Path] = {}
        self.v2 = cgroup_v2()
        try:
            if self.v2:
                self._create_v2(name, limits)
            else:
                self._create_v1(name, limits)
        except OSError as e:
            self.remove()
            raise SandboxUnavailable(f"cannot create a cgroup: {e}") from e

    def _create_v1(self, name: str, limits: Limits) -> None:
        for ctrl in V1_CONTROLLERS:
            base = CGROUP_ROOT / ctrl
            if not (base / "cgroup.procs").exists():
                raise OSError(f"the cgroup v1 controller {ctrl!r} is not mounted at {base}")
            path = base / _own_cgroup(ctrl).lstrip("/") / name
            path.mkdir()
            self.dirs[ctrl] = path
        mem = self.dirs["memory"]
        if limits.memory_bytes:
            (mem / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            if (mem / "memory.memsw.limit_in_bytes").exists():  # swap accounting: RAM + swap
                (mem / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_bytes))
        if limits.pids:
            (self.dirs["pids"] / "pids.max").write_text(str(limits.pids))
        cpu = CGROUP_ROOT / "cpu"
        if limits.cpus and (cpu / "cgroup.procs").exists():  # optional: where the cpu controller is mounted
            path = cpu / _own_cgroup("cpu").lstrip("/") / name
            if path.resolve() not in [d.resolve() for d in self.dirs.values()]:  # "cpu,cpuacct" mounted together
                path.mkdir()
                self.dirs["cpu"] = path
            (path / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (path / "cpu.cfs_quota_us").write_text(str(max(1000, int(limits.cpus * CPU_PERIOD_US))))

    def _create_v2(self, name: str, limits: Limits) -> None:
        parent = CGROUP_ROOT / _own_cgroup("").lstrip("/")
        wanted = {"memory", "pids", "cpu"}
        enabled = set((parent / "cgroup.subtree_control").read_text().split())
        if not wanted <= enabled:
            (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(wanted - enabled)))
        path = parent / name
        path.mkdir()
        self.dirs["v2"] = path
        if limits.memory_bytes:
            (path / "memory.max").write_text(str(limits.memory_bytes))
            if (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0")
        if limits.pids:
            (path / "pids.max").write_text(str(limits.pids))
        if limits.cpus:
            (path / "cpu.max").write_text(f"{max(1000, int(limits.cpus * CPU_PERIOD_US))} {CPU_PERIOD_US}")

    def cpu_quota(self) -> float:
        """The CPU quota in cores that the kernel enforces on the tree (0.0: none)."""
        try:
            if self.v2:
                quota, period = (self.dirs["v2"] / "cpu.max").read_text().split()
            else:
                d = self.dirs.get("cpu") or self.dirs["cpuacct"]
                quota, period = ((d / f"cpu.cfs_{k}_us").read_text() for k in ("quota", "period"))
            return 0.0 if quota.strip() in ("max", "-1") else int(quota) / int(period)
        except (OSError, KeyError, ValueError):
            return 0.0

    def cpu_throttled(self) -> int:
        """How many CFS periods the tree was throttled in (its quota was used up)."""
        d = self.dirs.get("v2") or self.dirs.get("cpu") or self.dirs.get("cpuacct")
        try:
            stats = dict(line.split() for line in (d / "cpu.stat").read_text().splitlines())
            return int(stats.get("nr_throttled", 0))
        except (OSError, TypeError, ValueError):
            return 0

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def pids(self) -> list[int]:
        """Every process in the cgroup (the pids controller counts them all)."""
        d = self.dirs.get("v2") or self.dirs.get("pids")
        try:
            return [int(p) for p in (d / "cgroup.procs").read_text().split()] if d else []
        except OSError:
            return []

    def cpu_seconds(self) -> float:
        """CPU time used by the tree so far, exited processes included."""
        try:
            if self.v2:
                for line in (self.dirs["v2"] / "cpu.stat").read_text().splitlines():
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) / 1e6
                return 0.0
            return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        except (OSError, KeyError, ValueError):
            return 0.0

    def memory_peak(self) -> int:
        d = self.dirs.get("v2") or self.dirs.get("memory")
        for name in ("memory.peak", "memory.max_usage_in_bytes"):
            try:
                return int((d / name).read_text())
            except (OSError, TypeError, ValueError):
                continue
        return 0

    def freeze(self, frozen: bool) -> None:
        try:
            if self.v2:
                (self.dirs["v2"] / "cgroup.freeze").write_text("1" if frozen else "0")
            elif "freezer" in self.dirs:
                (self.dirs["freezer"] / "freezer.state").write_text("FROZEN" if frozen else "THAWED")
        except OSError:
            pass

    def kill_all(self, wait: float = 5.0) -> bool:
        """SIGKILL every process, frozen first so that none can fork meanwhile; True once empty."""
        if self.v2 and (self.dirs["v2"] / "cgroup.kill").exists():
            try:
                (self.dirs["v2"] / "cgroup.kill").write_text("1")
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while self.pids() and time.monotonic() < deadline:
            self.freeze(True)
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.freeze(False)  # killed tasks die only once thawed
            time.sleep(0.01)
        return not self.pids()

    def remove(self) -> None:
        for path in self.dirs.values():
            for _ in range(100):  # rmdir fails while dying tasks are still being reaped
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        self.dirs = {}


# -- availability ------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _checked() -> str:
    """"" if a trivial sandbox runs; otherwise why not (cached per process)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed or not on PATH"
    cmd = ["bwrap", *_base_flags(), *_system_binds(), "--size", "1048576", "--tmpfs", "/tmp", *READ_ONLY_ROOT,
           "--", "true"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap did not run: {e}"
    if done.returncode != 0:
        return f"bwrap failed: {done.stderr.strip() or done.returncode} (user namespaces disabled?)"
    try:
        Cgroup(f"cnngrader-check-{os.getpid()}", Limits()).remove()
    except SandboxUnavailable as e:
        return e.why
    return ""


def check_available() -> None:
    """Raise SandboxUnavailable (with what to install or enable) unless a sandbox can be set up here:
    runs `bwrap <the sandbox's flags> -- true` and creates and removes a cgroup."""
    why = _checked()
    if why:
        raise SandboxUnavailable(why)


# -- the sandbox -------------------------------------------------------------------------------------
_LIVE: "weakref.WeakSet[Sandbox]" = weakref.WeakSet()


@atexit.register
def _kill_all_live() -> None:
    for box in list(_LIVE):
        box.kill()


class Sandbox:
    """The sandbox of one submission (see the module docstring); a context manager whose exit
    kills every process in it. Thread-safe `kill()`: a timer thread may call it."""

    def __init__(self, limits: Limits | None = None, *, gpu: bool | None = None,
                 temp_root: str | os.PathLike | None = None, sources: Sequence[Path] | None = None) -> None:
        self.limits = limits or Limits()
        self.gpus = gpu_devices() if gpu is not False else []
        self.sources = list(sources) if sources is not None else kernel_sources()
        self.killed_reason = ""  # why the sandbox was killed early ("" if it was not)
        self._temp_root = temp_root
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen] = []
        self._cgroup: Cgroup | None = None
        self._watchdog: threading.Thread | None = None
        self._closed = threading.Event()
        self.root = self.inbox = self.conf = self.runtime = Path()

    # life cycle
    def __enter__(self) -> "Sandbox":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def open(self) -> "Sandbox":
        """Create the private folders and the cgroup."""
        self.root = Path(tempfile.mkdtemp(prefix="cnn-sandbox-", dir=self._temp_root))  # mode 0700
        self.inbox, self.conf, self.runtime = self.root / "inbox", self.root / "conf", self.root / "run"
        for d in (self.inbox, self.conf, self.runtime):
            d.mkdir(mode=0o700)
        try:
            self._cgroup = Cgroup(f"cnngrader-{os.getpid()}-{self.root.name}", self.limits)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        _LIVE.add(self)
        return self

    def kill(self, reason: str = "") -> None:
        """Kill every process of the sandbox, then remove its cgroup and folders. Idempotent."""
        with self._lock:
            if reason and not self.killed_reason:
                self.killed_reason = reason
            self._closed.set()
            if self._cgroup is not None:
                self._cgroup.kill_all()
            for proc in self._procs:
                try:
                    proc.kill()
                    proc.wait(5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            if self._cgroup is not None:
                self._cgroup.remove()
                self._cgroup = None
            if self.root != Path():
                shutil.rmtree(self.root, ignore_errors=True)
            _LIVE.discard(self)

    def alive(self) -> bool:
        """Open and not killed (its processes may still have exited on their own)."""
        return self._cgroup is not None and not self._closed.is_set()

    # the submission
    def copy_in(self, source: str | os.PathLike) -> list[str]:
        """Copy a submission's folder into the inbox (sandbox_init.py copies it on to /submission): its
        regular files and folders only, never following a link (safefiles.copy_tree); returns a line
        for each entry skipped. TooBig when it would not fit the sandbox's /submission."""
        if self.inbox.resolve().is_relative_to(Path(source).resolve()):
            raise ValueError(f"the submission folder {source} contains the sandbox's own folder")
        limits = FileLimits()
        if self.limits.disk_bytes:
            limits = FileLimits(max_bytes=min(limits.max_bytes, self.limits.disk_bytes), max_files=limits.max_files)
        return copy_tree(source, self.inbox, limits, skip=(".ipynb_checkpoints",))

    # running
    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The whole environment inside (nothing is inherited from the host)."""
        env = {
            "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": HOME, "MPLCONFIGDIR": f"{HOME}/.config/matplotlib", "IPYTHONDIR": f"{HOME}/.ipython",
            "TMPDIR": "/tmp", "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1", "PYTHONPATH": os.pathsep.join(import_roots(self.sources)),
        }
        env.update(extra or {})
        return env

    def command(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        """The bwrap command line that runs argv inside this sandbox (through sandbox_init.py)."""
        lim = self.limits
        size = ["--size", str(lim.disk_bytes)] if lim.disk_bytes else []
        args = ["bwrap", *_base_flags(), *_system_binds()]
        # The tmpfs first: a course or venv that lives under /tmp is bound on top of it, not hidden by it.
        args += [*size, "--tmpfs", "/tmp", *size, "--tmpfs", SUBMISSION, "--chdir", "/"]
        for path in dict.fromkeys([sys.base_prefix, sys.prefix, *map(str, self.sources)]):
            args += ["--ro-bind", path, path]
        args += ["--size", str(RUNTIME_TMPFS_BYTES), "--tmpfs", str(self.runtime)]
        args += ["--ro-bind", str(self.conf), str(self.conf), "--ro-bind", str(self.inbox), INBOX_INSIDE]
        args += ["--ro-bind", str(INIT_SOURCE), INIT_INSIDE]
        for dev in self.gpus:
            args += ["--dev-bind", dev, dev]
        roots = ["/usr", ETC, sys.base_prefix, sys.prefix, *map(str, self.sources)]
        data_args, data_env = datasets.sandbox_args(roots)  # Fashion-MNIST without its test labels
        args += [*data_args, *READ_ONLY_ROOT, "--clearenv"]
        for key, value in self.env({**data_env, **(env or {})}).items():
            args += ["--setenv", key, value]
        address_space = lim.memory_bytes if lim.address_space and not self.gpus else 0
        backstop = lim.cpu_seconds + 2 if lim.cpu_seconds else 0  # RLIMIT_CPU just above the watchdog's limit
        init = [sys.executable, "-I", "-S", INIT_INSIDE, f"--inbox={INBOX_INSIDE}", f"--dest={SUBMISSION}",
                f"--as={address_space}", f"--cpu={backstop}"]
        return [*args, "--", *init, "--", *argv]

    def preexec(self) -> None:
        """In the forked child, before bwrap is exec'd: join the sandbox's cgroup."""
        assert self._cgroup is not None
        pid = str(os.getpid())
        for procs in self._cgroup.procs_files():
            with open(procs, "w") as f:
                f.write(pid)

    def started(self, proc: subprocess.Popen) -> None:
        """Register a bwrap process started with preexec(): kill() reaps it, and the CPU watchdog runs."""
        self._procs.append(proc)
        if self._watchdog is None and self.limits.cpu_seconds:
            self._watchdog = threading.Thread(target=self._watch_cpu, name="sandbox-cpu", daemon=True)
            self._watchdog.start()

    def popen(self, argv: Sequence[str], env: Mapping[str, str] | None = None, **kw) -> subprocess.Popen:
        """Start argv in the sandbox (kw go to subprocess.Popen: stdout, stderr, ...)."""
        if self._cgroup is None:
            raise RuntimeError("the sandbox is not open (or already killed)")
        proc = subprocess.Popen(self.command(argv, env), preexec_fn=self.preexec, stdin=subprocess.DEVNULL, **kw)
        self.started(proc)
        return proc

    def run(self, argv: Sequence[str], timeout: float = 60, env: Mapping[str, str] | None = None
            ) -> subprocess.CompletedProcess:
        """Run argv to completion; its output as text."""
        proc = self.popen(argv, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def _watch_cpu(self) -> None:
        while not self._closed.wait(0.25):
            cg = self._cgroup
            if cg is not None and cg.cpu_seconds() > self.limits.cpu_seconds:
                self.kill(f"the CPU time limit ({self.limits.cpu_seconds} s) was exceeded")
                return

    # the kernel's sockets
    def inner_pid(self, proc: subprocess.Popen, wait: float = 10.0) -> int:
        """Host pid of the sandbox's pid 1 (bwrap's child in the new namespaces)."""
        deadline = time.monotonic() + wait
        path = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                children = path.read_text().split()
            except OSError:
                children = []
            if children:
                return int(children[0])
            time.sleep(0.002)
        raise RuntimeError("the sandbox did not start")

    def link_sockets(self, proc: subprocess.Popen, names: Iterable[str]) -> None:
        """Make the sockets the kernel creates in its runtime tmpfs reachable from the host: the host's
        runtime folder (same path, never mounted inside) gets one symlink per socket into the
        sandbox's mount namespace (/proc/PID/root/...). The kernel can write nothing on the host."""
        root = f"/proc/{self.inner_pid(proc)}/root"
        for name in names:
            (self.runtime / name).symlink_to(f"{root}{self.runtime / name}")

    def signal_main(self, proc: subprocess.Popen, signum: int) -> None:
        """Send signum to the process that sandbox_init.py exec'd (the kernel), inside the sandbox."""
        try:
            pid1 = self.inner_pid(proc, wait=0.5)
            kids = Path(f"/proc/{pid1}/task/{pid1}/children").read_text().split()
            os.kill(int(kids[0]) if kids else pid1, signum)
        except (OSError, RuntimeError, ValueError):
            pass

    # figures
    def cpu_seconds(self) -> float:
        return self._cgroup.cpu_seconds() if self._cgroup else 0.0

    def memory_peak(self) -> int:
        return self._cgroup.memory_peak() if self._cgroup else 0

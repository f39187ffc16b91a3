"""nbgrader preprocessors for the course's autograder.

GradingExecute replaces nbgrader's Execute (nbgrader_config.py names it in
Autograde.autograde_preprocessors). On top of Execute it:

- starts every kernel in a sandbox of its own (cnngrader/pipeline/kernel_start.py,
  cnngrader/pipeline/sandbox.py): no network, a read-only allow-list of the filesystem, and a
  cgroup that limits the memory, tasks and CPU time of its whole process tree (sandbox.Limits), so
  one submission cannot take the machine down; grading stops if the sandbox cannot be set up.
  Only `sandbox = False` (UNSAFE=1) starts kernels as the grader, under a per-process memory cap,
  forked from a pre-loaded process (the zygote);
- grades the hidden test cells itself (cnngrader/pipeline/verdict.py): their source never reaches
  the kernel, which only runs the student's functions for the checks;
- survives a kernel that dies (os._exit, a memory bomb the limits turn into a crash):
  nbgrader 0.9.6 lets nbclient's DeadKernelError escape, and its converter then deletes
  the whole autograded submission and records no scores. Here the cell that was running
  gets an error output, every later code cell gets a "not run" error output (so each
  graded cell scores 0, as determine_grade scores any cell with an error output), and
  the cells before the death keep their results;
- treats a kernel that does not come back from a timeout's interrupt (code that swallows
  KeyboardInterrupt), and a notebook past its own time limit, the same way, instead of paying
  one timeout per remaining cell;
- caps the output it keeps per cell and per notebook, so a print loop cannot fill the grader's memory.

ReplayExecute runs no kernel: it copies the outputs of a notebook that GradingExecute
executed earlier (in a parallel worker) into the sanitized submission, so that the rest of
nbgrader's autograde pipeline (IgnorePattern, LimitOutput, SaveAutoGrades, ...) records the
grades serially, exactly as if the notebook had been executed in place.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import threading
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

import nbformat
from jupyter_core.utils import ensure_async, run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import Execute, NbGraderPreprocessor, OverwriteCells
from traitlets import Bool, Float, Integer, Unicode, default
from traitlets.config import Config

from cnngrader import kernel_rpc
from cnngrader.cells import student_sources
from cnngrader.grading.core import CALL_FLOOR, CALL_MULTIPLE
from cnngrader.grading.runners import KernelGone
from cnngrader.pipeline import credit, verdict
from cnngrader.pipeline.forked_kernel import ForkedKernelManager
from cnngrader.pipeline.kernel_start import GradingKernelManager, SandboxedKernelManager
from cnngrader.pipeline.progress import KERNEL_LOST
from cnngrader.pipeline.sandbox import INBOX_INSIDE, INIT_INSIDE, SUBMISSION, Limits, check_available

MiB = 2**20


def error_output(ename: str, evalue: str) -> NotebookNode:
    """An error output as a kernel would have sent it; determine_grade scores the cell 0."""
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


_FALLBACKS_SAID: set[tuple[int, str]] = set()  # (pid, why): a process says once why it cannot fork kernels


class GradingExecute(Execute):
    """nbgrader's Execute, made robust against submissions that kill, hang or flood the kernel."""

    max_memory_mb = Integer(
        Limits.memory_bytes // MiB,
        help="Memory of a grading kernel in MiB: its sandbox's whole process tree (cgroup, and RLIMIT_AS per "
        "process where no GPU is present); unsandboxed, RLIMIT_AS and RLIMIT_DATA of the kernel. 0 for none. "
        "The default, and what a kernel needs, is sandbox.Limits's.",
    ).tag(config=True)

    kernel_threads = Integer(
        0, help="OMP/MKL threads per grading kernel; 0 for all cores divided by parallel_jobs."
    ).tag(config=True)

    parallel_jobs = Integer(1, help="How many kernels run at once (set by `grade --jobs`).").tag(config=True)

    unresponsive_grace = Float(
        10.0, help="Seconds a kernel gets to answer after a timed-out cell was interrupted."
    ).tag(config=True)

    kernel_stdio = Unicode(
        os.devnull,
        help="Where a grading kernel's process stdout/stderr go (ipykernel echoes the cells' "
        "output there); the notebook's outputs are not affected. Empty: the grader's terminal. Fresh kernels "
        "only: a forked kernel's go to /dev/null (fork_kernels = False to see them).",
    ).tag(config=True)

    coalesce_streams = Bool(
        True,
        help="Merge each cell's stream outputs: the autograded notebook then does not depend on how "
        "the kernel happened to chunk its output (nbclient's trait, made configurable here).",
    ).tag(config=True)

    preload_kernels = Bool(
        True,
        help="Unsandboxed kernels only (sandbox = False; a sandboxed kernel is never forked from outside its "
        "sandbox, and warm_spare hides its imports instead): fork each grading kernel from a server process that "
        "has imported torch, cnnlib and ipykernel once (cnngrader/pipeline/zygote.py), instead of a fresh Python "
        "importing them again: about 2 s less per notebook. False: a fresh process per kernel.",
    ).tag(config=True)

    max_stream_chars = Integer(
        1_000_000, help="Characters of stdout/stderr kept per cell; the rest is dropped."
    ).tag(config=True)

    max_cell_output_bytes = Integer(
        2 * 2**20, help="Bytes of output of every kind (text, images, HTML) kept per cell; the rest is dropped."
    ).tag(config=True)

    max_notebook_output_bytes = Integer(
        8 * 2**20, help="Bytes of output of every kind kept per notebook, all cells together."
    ).tag(config=True)

    sandbox = Bool(
        True,
        help="Run every kernel in a sandbox of its own (cnngrader/pipeline/sandbox.py): no network, "
        "a read-only allow-list of the filesystem, cgroup limits for its whole process tree. Grading "
        "stops if the sandbox cannot be set up. False: kernels run as the grader (unsafe; the zygote "
        "is used only then).",
    ).tag(config=True)

    warm_spare = Bool(
        True,
        help="Sandboxed kernels only: while a notebook runs, start the next kernel (a sandbox with an "
        "empty inbox) so that its ~3 s of imports overlap; the next notebook adopts it and gets its "
        "submission copied in before its first cell. One spare per process and configuration, never "
        "shared by two submissions. False: every kernel starts when its notebook does.",
    ).tag(config=True)

    fork_kernels = Bool(
        True,
        help="Sandboxed kernels only: fork each kernel from a zygote that lives in a sandbox of its own and has "
        "imported torch, ipykernel, IPython, numpy and cnnlib once (cnngrader/pipeline/forked_kernel.py); "
        "each kernel still gets its own user, pid, mount, network and ipc namespaces, fresh /submission and /tmp, "
        "its own cgroup and uid 65534. About 2 s less per notebook. warm_spare is then not used. Where the "
        "zygote cannot start or its kernels could not enter their namespaces (a self-test says), grading "
        "uses fresh sandboxed kernels and says why, once. Default: on, unless $CNNGRADER_FORK_KERNELS is '0'.",
    ).tag(config=True)

    @default("fork_kernels")
    def _fork_kernels_default(self) -> bool:
        return os.environ.get("CNNGRADER_FORK_KERNELS", "1") != "0"

    max_processes = Integer(Limits.pids, help="Tasks (processes + threads) of a sandboxed kernel's tree."
                            ).tag(config=True)
    max_cpu_seconds = Integer(Limits.cpu_seconds, help="CPU seconds of a sandboxed kernel's tree, all cells "
                              "together.").tag(config=True)
    max_disk_mb = Integer(Limits.disk_bytes // MiB, help="MiB of each writable tmpfs of a sandbox (/submission, "
                          "/tmp).").tag(config=True)

    notebook_timeout = Integer(
        600, help="Wall-clock seconds for a whole notebook, all cells together; past it the kernel's "
        "process tree is killed and the remaining cells score 0. 0: no limit."
    ).tag(config=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("kernel_manager_class", GradingKernelManager)
        super().__init__(*args, **kwargs)
        self._timed_out = False
        self._notebook_expired = False
        self._stream_chars: dict[int, int] = {}
        self._output_bytes: dict[int, int] = {}
        self._wait_for_zygote = True  # False: a zygote still starting will do (ready_kernels)

    # -- kernel start ------------------------------------------------------------------
    def create_kernel_manager(self):
        if self.sandbox and self.kernel_manager_class is GradingKernelManager:
            check_available()  # no silent fallback: raises SandboxUnavailable with what to install
            self.kernel_manager_class = ForkedKernelManager if self.fork_kernels else SandboxedKernelManager
        km = super().create_kernel_manager()
        if hasattr(km, "max_processes"):
            km.max_processes = self.max_processes
            km.max_cpu_seconds = self.max_cpu_seconds
            km.max_disk = self.max_disk_mb * MiB
            km.warm_spare = self.warm_spare
            km.preimport = self.grader_module if re.fullmatch(r"[\w.]+", self.grader_module or "") else ""
        if isinstance(km, GradingKernelManager):
            km.max_memory = self.max_memory_mb * MiB
            cores = os.cpu_count() or 1
            km.threads = self.kernel_threads or max(1, cores // max(1, self.parallel_jobs))
            km.stdio = self.kernel_stdio
            km.preload = self.preload_kernels and not self.sandbox
        if isinstance(km, ForkedKernelManager) and (why := km.unavailable(self._wait_for_zygote)) is not None:
            # the same sandbox, started afresh for each kernel: slower, never less isolated
            if (os.getpid(), why) not in _FALLBACKS_SAID:
                _FALLBACKS_SAID.add((os.getpid(), why))
                self.log.warning("Fresh sandboxed kernels instead of forked ones: %s", why)
            self.kernel_manager_class = SandboxedKernelManager
            return self.create_kernel_manager()
        return km

    def _expire_notebook(self, km: Any) -> None:
        """Timer thread: the notebook ran out of time; kill its kernel's whole process tree."""
        self._notebook_expired = True
        box = getattr(km, "sandbox", None)
        if box is not None:
            box.kill(self._expired())
            return
        pgid = getattr(getattr(km, "provisioner", None), "pgid", None)
        if pgid:  # unsandboxed: the launcher's process group (the zygote kills a proxy's kernel)
            try:
                os.killpg(pgid, 9)
            except OSError:
                pass

    # -- timeouts and output floods ----------------------------------------------------
    async def _async_handle_timeout(self, timeout: int, cell: NotebookNode | None = None):
        self._timed_out = True
        # the output nbgrader adds after the interrupt says which limit was hit
        why = f"the cell exceeded the {timeout} s limit per cell and was interrupted"
        self.error_on_timeout = {"ename": "CellTimeoutError", "evalue": why, "traceback": [f"CellTimeoutError: {why}"]}
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg["content"].get("data", msg["content"].get("text", "")), default=str))
        cell_seen = self._output_bytes.get(cell_index, 0)
        total_seen = sum(self._output_bytes.values())
        self._output_bytes[cell_index] = cell_seen + size
        if cell_seen >= self.max_cell_output_bytes or total_seen >= self.max_notebook_output_bytes:
            return None
        if cell_seen + size > self.max_cell_output_bytes or total_seen + size > self.max_notebook_output_bytes:
            outs.append(nbformat.v4.new_output(
                "stream", name="stdout",
                text=f"\n[grader: output beyond {self.max_cell_output_bytes // 2**20} MiB per cell or "
                     f"{self.max_notebook_output_bytes // 2**20} MiB per notebook dropped]\n",
            ))
            return None
        if msg["msg_type"] == "stream":
            seen = self._stream_chars.get(cell_index, 0)
            self._stream_chars[cell_index] = seen + len(msg["content"].get("text", ""))
            if seen >= self.max_stream_chars:
                return None
            if seen + len(msg["content"].get("text", "")) > self.max_stream_chars:
                outs.append(nbformat.v4.new_output(
                    "stream", name="stdout",
                    text=f"\n[grader: output beyond {self.max_stream_chars} characters dropped]\n",
                ))
                return None
        return super().output(outs, msg, display_id, cell_index)

    async def _async_kernel_responds(self, grace: float) -> bool:
        """Whether the kernel answers a kernel_info request within `grace` seconds.

        A kernel answers shell requests in order, so the answer also means that the
        interrupted cell has finished."""
        assert self.kc is not None
        msg_id = self.kc.kernel_info()
        deadline = monotonic() + grace
        while (remaining := deadline - monotonic()) > 0:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=remaining))
            except Empty:
                return False
            if msg["parent_header"].get("msg_id") == msg_id:
                return True
        return False

    async def _async_kill_kernel(self) -> None:
        assert self.km is not None
        if await ensure_async(self.km.is_alive()):
            await ensure_async(self.km.shutdown_kernel(now=True))

    # -- the notebook ----------------------------------------------------------------------
    grader_module = Unicode(
        "cnngrader.kernel",
        help="Imported in every grading kernel before the notebook's first cell, so that the kernel side "
        "of the grader captures torch and cnnlib before any student code runs. Empty: import nothing.",
    ).tag(config=True)

    secret = Integer(
        None, allow_none=True,
        help="The seed the hidden checks draw their cases from. None (the default): a fresh random one "
        "for each grading process, kept in memory only. Set it only to reproduce a run.",
    ).tag(config=True)

    course_root = Unicode(
        "", help="The course directory whose checks grade the hidden cells (course_config sets it); "
        "empty: found from $CNNGRADER_COURSE or the working directory.",
    ).tag(config=True)

    max_reply_bytes = Integer(64 * 2**20, help="Largest reply a kernel may send to one check request.").tag(config=True)

    def _hidden_cells(self, resources: Any) -> tuple[dict[str, list[str]], set[str]]:
        """grade_id -> the checks its hidden cell runs, and the ids of the locked cells, both from
        the gradebook (the instructor's source); nothing when not run by nbgrader's autograde."""
        info = (resources or {}).get("nbgrader") or {}
        if not all(info.get(k) for k in ("db_url", "notebook", "assignment")):
            return {}, set()
        hidden = verdict.gradebook_hidden_cells(info["db_url"], info["notebook"], info["assignment"])
        with Gradebook(info["db_url"]) as gb:
            try:
                source_cells = gb.find_notebook(info["notebook"], info["assignment"]).source_cells
                locked = {c.name for c in source_cells if c.locked}
            except MissingEntry:
                locked = set()
        return hidden, locked | set(hidden)

    def _grade_hidden(self, index: int, cell: NotebookNode, calls: list[str], trusted: set[str]) -> None:
        """The trusted side grades a hidden test cell; its source never reaches the kernel. The scan sees
        the student's cells above it (what the kernel has run), not a helper redefined further down."""
        if self._secret is None:
            self._secret = self.secret if self.secret is not None else secrets.randbits(62)
        self._cell_limit = credit.cell_limit(self.timeout or 60, calls, self.course_root or None)
        self._cell_deadline = monotonic() + self._cell_limit
        self._cell_index = index
        everything = student_sources(self.nb, trusted)
        sources = [(i, s) for i, s in everything if i < index]
        cell.outputs = verdict.grade_cell(calls, self._send, self._secret, sources, self.course_root or None,
                                          dict(self._hung), everything, credit.points_of(cell))
        cell.execution_count = None

    def _send(self, request: str) -> str | list[str]:
        """One request's reply; a batch's replies (KernelGone, with those that arrived, if any did not)."""
        if self._lost is not None:
            raise KernelGone(self._lost)
        self._timeout_note = None
        head = kernel_rpc.HEAD.match(request)  # {"limit":5.0,"name":"corr2d",...: the check's limit per call
        limit = float(head.group(1)) if head and head.group(1) else None
        self._request_deadline = self._cell_deadline if limit is None else min(self._cell_deadline,
                                                                                monotonic() + limit)
        reply = run_sync(self._async_rpc)(request, limit)
        got = kernel_rpc.complete(reply, request)
        if got is not None:
            return got
        if head and self._timeout_note is not None:  # it did not return: later checks and cells skip it
            within = f"{limit:g} s, its limit per call" if limit is not None else f"{self.timeout} s"
            self._hung.setdefault(head.group(2), f"within {within}, in the hidden tests of cell {self._cell_index + 1}")
            if limit is not None and self._request_deadline < self._cell_deadline:
                self._timeout_note = (f"{head.group(2)} did not return within {limit:g} s (its limit for one call: "
                                      f"the reference's time times {CALL_MULTIPLE:g}, at least {CALL_FLOOR:g} s)")
        raise KernelGone(self._lost or self._timeout_note or "the kernel sent no reply to a check request",
                         list(reply.texts))

    async def _async_rpc(self, request: str, limit: float | None = None) -> kernel_rpc.Reply:
        """Run one request in the kernel (cnngrader.kernel_rpc); its reply (self._lost says why the kernel is
        gone, if it is; past the deadline the kernel is interrupted). A batch's calls have `limit` each."""
        assert self.kc is not None and self.km is not None
        reply = await kernel_rpc.send(self.kc, self.km, request, self._request_deadline, self.max_reply_bytes,
                                      per_call=limit, last=self._cell_deadline)
        if reply.outcome == kernel_rpc.TIMED_OUT:
            self._request_deadline = monotonic()  # where it stopped: below the cell's deadline unless that passed
            await self._async_hidden_timeout()
        elif reply.outcome == kernel_rpc.DEAD:
            self._lost = self._expired() if self._notebook_expired else "the kernel died"
        return reply

    async def _async_hidden_timeout(self) -> None:
        """A check ran past the cell's time limit: interrupt; a kernel that does not come back is killed."""
        assert self.km is not None
        self.log.warning("A hidden check ran past %s s; interrupting the kernel", self.timeout)
        await ensure_async(self.km.interrupt_kernel())
        if not await self._async_kernel_responds(self.unresponsive_grace):
            self._lost = "the kernel stopped responding after a timeout"
            await self._async_kill_kernel()
        limit = getattr(self, "_cell_limit", self.timeout)  # the per-cell limit, or an experiment's longer one
        self._timeout_note = f"the hidden tests exceeded the {limit:g} s limit per cell"

    def _notebook_names(self, index: int, trusted: set[str]) -> tuple[list, set[str]]:
        sources = student_sources(self.nb, trusted, before=index + 1)
        return sources, verdict.defined_names(sources)

    def _skip_hung(self, index: int, cell: NotebookNode, trusted: set[str]) -> bool:
        """A cell that would run a function that timed out earlier gets an error output instead of
        waiting out its limit again; a cell that defines the function anew runs (and clears it)."""
        if not self._hung:
            return False
        sources, defined = self._notebook_names(index, trusted)
        for name in verdict.top_level_defines(cell.source) & set(self._hung):
            del self._hung[name]
        stuck = verdict.reaches(sources, verdict.top_level_calls(cell.source, defined), self._hung)
        if stuck is None:
            return False
        why = f"not run: it calls {stuck}, which did not return {self._hung[stuck]} (an endless loop?)"
        cell.outputs = [error_output("NotRun", why)]
        cell.execution_count = None
        return True

    def _mark_hung(self, index: int, cell: NotebookNode, trusted: set[str]) -> None:
        """A cell ran past its limit: the notebook's functions it calls are taken to loop."""
        _, defined = self._notebook_names(index, trusted)
        for name in verdict.top_level_calls(cell.source, defined) - verdict.top_level_defines(cell.source):
            self._hung.setdefault(name, f"within {self.timeout} s in cell {index + 1}")

    def _fill_submission(self) -> None:
        """A kernel that was a warm spare started with an empty /submission: copy the submission from
        its read-only inbox (filled on the host when it was adopted) before any student cell.
        Nothing to do for any other kernel (sandbox_init copied the inbox before the exec)."""
        if not getattr(self.km, "adopted", False):
            return
        assert self.kc is not None
        code = f"__import__('runpy').run_path({INIT_INSIDE!r})['copy_inbox']({INBOX_INSIDE!r}, {SUBMISSION!r})"
        reply = self.wait_for_reply(self.kc.execute(code, silent=True, store_history=False))
        if reply is None or reply["content"].get("status") != "ok":
            raise RuntimeError("could not copy the submission into the sandboxed kernel")

    def _import_grader(self) -> None:
        """Fill /submission where needed, then import the grader in the kernel, silently; a failure
        to import shows again in the hidden test cells."""
        self._fill_submission()
        if self.grader_module:
            assert self.kc is not None
            self.wait_for_reply(self.kc.execute(f"import {self.grader_module}", silent=True, store_history=False))

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None):
        """Execute every cell as ExecutePreprocessor.preprocess does, but when the kernel is
        lost, score the rest of the notebook 0 instead of raising."""
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self._timed_out = False
        self._stream_chars = {}
        self._output_bytes: dict[int, int] = {}
        self._secret, self._lost, self._timeout_note = None, None, None
        self._hung: dict[str, str] = {}  # function -> when it did not return
        self._request_deadline = self._cell_deadline = monotonic()
        self._cell_index = 0
        hidden, trusted = self._hidden_cells(resources)
        with self.setup_kernel():
            assert self.kc is not None
            info_msg = self.wait_for_reply(self.kc.kernel_info())
            assert info_msg is not None, "the grading kernel did not answer kernel_info"
            self.nb.metadata["language_info"] = info_msg["content"]["language_info"]
            self._import_grader()
            # the notebook-wide wall-clock budget: a timer that kills the kernel's tree
            self._notebook_expired = False
            timer = threading.Timer(self.notebook_timeout, self._expire_notebook, (self.km,)) \
                if self.notebook_timeout else None
            if timer is not None:
                timer.daemon = True
                timer.start()
            lost: str | None = None
            for index, cell in enumerate(self.nb.cells):
                if cell.cell_type == "code":
                    lost = self._code_cell(index, cell, resources, hidden, trusted, lost)
            if timer is not None:
                timer.cancel()
            if lost is None and self._notebook_expired:
                lost = self._expired()
        self.nb.metadata.pop(KERNEL_LOST, None)  # a submitted notebook's own mark never counts
        if lost is not None:
            self.nb.metadata[KERNEL_LOST] = lost
        self.set_widgets_metadata()
        return self.nb, self.resources

    def _expired(self) -> str:
        return f"the notebook ran past its time limit ({self.notebook_timeout} s)"

    def _code_cell(self, index: int, cell: NotebookNode, resources: Any, hidden: dict[str, list[str]],
                   trusted: set[str], lost: str | None) -> str | None:
        """Run or grade one code cell; why the kernel is lost after it (None: it is not). A cell after the
        kernel was lost (`lost`), or after the notebook's time ran out, gets a "not run" error output."""
        if lost is None and self._notebook_expired:
            lost = self._expired()
        if lost is not None:
            cell.outputs = [error_output("NotRun", f"not run: {lost} in an earlier cell")]
            cell.execution_count = None
            return lost
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in hidden:
            self._grade_hidden(index, cell, hidden[grade_id], trusted)
            return self._lost
        if self._skip_hung(index, cell, trusted):
            return None
        try:
            self.preprocess_cell(cell, resources, index)
        except DeadKernelError:
            cell.execution_count = None  # whether its number arrived before the death is a race
            if self._notebook_expired:
                cell.outputs.append(error_output("NotebookTimeout", f"{self._expired()}; the kernel was killed"))
                return self._expired()
            self.log.warning("Kernel died in cell %d; the rest of the notebook scores 0", index)
            cell.outputs.append(error_output("DeadKernelError", "the kernel died while running this cell"))
            return "the kernel died"
        except CellTimeoutError as e:
            # the reply came but the cell's output did not: an interrupted cell that
            # would not stop, or an output flood
            self.log.warning("Cell %d: %s", index, str(e).splitlines()[0] if str(e) else "timeout")
            why = (f"the cell exceeded the {self.timeout} s limit per cell and did not stop when interrupted"
                   if self._timed_out else "the cell's output did not arrive in time")
            cell.outputs.append(error_output("CellTimeoutError", why))
        return self._after_timeout(index, cell, trusted) if self._timed_out else None

    def _after_timeout(self, index: int, cell: NotebookNode, trusted: set[str]) -> str | None:
        """A cell was interrupted at its time limit: the functions it calls are taken to loop, and a kernel
        that does not answer within `unresponsive_grace` is killed (the reason is returned)."""
        self._timed_out = False
        self._mark_hung(index, cell, trusted)
        if run_sync(self._async_kernel_responds)(self.unresponsive_grace):
            return None
        self.log.warning("Kernel unresponsive after cell %d timed out; killing it", index)
        run_sync(self._async_kill_kernel)()
        return "the kernel stopped responding after a timeout"


def ready_kernels(config: Config | None = None, parallel_jobs: int = 1, log: Any = None, wait: bool = True) -> None:
    """Start what this process's grading kernels are made from (the zygote they are forked from, where kernels
    are forked), with the settings of `config` and its share of the cores, before its first notebook asks for
    a kernel; wait=False returns while the zygote is still starting. Nothing runs in a kernel, and no tensor op
    or CUDA call in this process."""
    ex = GradingExecute(config=config, parallel_jobs=parallel_jobs, **({"log": log} if log else {}))
    ex.nb = nbformat.v4.new_notebook()  # nbclient reads the kernel's name from the notebook
    ex._wait_for_zygote = wait
    ex.create_kernel_manager()


class RestoreCells(OverwriteCells):
    """nbgrader's OverwriteCells, restoring a deleted grade cell after the nearest earlier source
    cell that the submission still has (a locked visible test, a solution, another grade cell),
    where nbgrader 0.9 fails unless that cell is a grade or solution cell.

    A notebook whose cells lost their nbgrader metadata (saved by another tool, say) gets it back
    first: a cell whose source is exactly a locked source cell's is that cell, and the code cell
    just before a recovered visible test is the solution it tests."""

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        info = resources.get("nbgrader", {})
        try:
            with Gradebook(info["db_url"]) as gb:
                source_nb = gb.find_notebook(info["notebook"], info["assignment"])
                self._recover_metadata(nb, source_nb)
        except (KeyError, MissingEntry):
            pass
        return super().preprocess(nb, resources)

    @staticmethod
    def _recover_metadata(nb: NotebookNode, source_nb: Any) -> None:
        order = [c.name for c in source_nb.source_cells]
        by_source = {c.source: c for c in source_nb.source_cells if c.locked}
        grades = {c.name: c for c in source_nb.grade_cells}
        solutions = {c.name for c in source_nb.solution_cells}

        def meta(name: str) -> dict:
            m = {"grade": name in grades, "grade_id": name, "locked": name not in solutions,
                 "solution": name in solutions, "schema_version": 3, "task": False}
            if name in grades:
                m["points"] = grades[name].max_score
            return m

        cells = nb.cells
        for k, cell in enumerate(cells):
            if cell.cell_type != "code" or cell.metadata.get("nbgrader"):
                continue
            found = by_source.get(cell.source)
            if found is None:
                continue
            cell.metadata["nbgrader"] = meta(found.name)
            at = order.index(found.name)
            before = order[at - 1] if at else None
            prev = cells[k - 1] if k else None
            if (before in solutions and prev is not None and prev.cell_type == "code"
                    and not prev.metadata.get("nbgrader")):
                prev.metadata["nbgrader"] = meta(before)

    def add_missing_grade_cells(self, nb: NotebookNode, resources: ResourcesDict):
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        source_cells = source_nb.source_cells
        order = [c.name for c in source_cells]
        solutions = {c.name for c in source_nb.solution_cells}
        for grade_cell in source_nb.grade_cells:
            present = {c.metadata.get("nbgrader", {}).get("grade_id"): i for i, c in enumerate(nb.cells)
                       if c.metadata.get("nbgrader", {}).get("grade_id")}
            if grade_cell.name in present:
                continue
            self.log.warning("Missing grade cell %s encountered, adding to notebook", grade_cell.name)
            at = order.index(grade_cell.name)
            restored = self.missing_cell_transform(source_cells[at], grade_cell.max_score,
                                                   is_solution=grade_cell.name in solutions)
            earlier = [present[name] for name in order[:at] if name in present]
            nb.cells.insert(earlier[-1] + 1 if earlier else 0, restored)
        return nb, resources


class ReplayExecute(NbGraderPreprocessor):
    """Fill a sanitized submission with the outputs of its already executed copy.

    The copy is executed_directory/<student>/<assignment>/<notebook>.ipynb, written by an
    autograde run whose only autograde preprocessor was GradingExecute. Sanitizing is
    deterministic, so the copy has the same cells; anything else is a grader bug and raises.
    """

    executed_directory = Unicode("", help="Root of the executed notebooks.").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        info = resources["nbgrader"]
        path = Path(self.executed_directory, info["student"], info["assignment"], info["notebook"] + ".ipynb")
        if not path.is_file():
            raise RuntimeError(f"no executed copy of {info['student']}/{info['assignment']}/{info['notebook']}: {path}")
        done = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if len(done.cells) != len(nb.cells) or any(
            a.cell_type != b.cell_type or a.source != b.source for a, b in zip(done.cells, nb.cells)
        ):
            raise RuntimeError(f"the executed copy {path} does not match the sanitized submission")
        for cell, ran in zip(nb.cells, done.cells):
            if cell.cell_type == "code":
                cell.outputs = ran.outputs
                cell.execution_count = ran.execution_count
        if "language_info" in done.metadata:
            nb.metadata["language_info"] = done.metadata["language_info"]
        return nb, resources


class StableCellIds(NbGraderPreprocessor):
    """Name every nbgrader cell's id after its grade_id (as the course's notebooks already do).

    A test cell that OverwriteCells puts back gets a random id from nbformat; the autograded
    notebook and its feedback would then differ from one grading run to the next."""

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        if not any("id" in cell for cell in nb.cells):
            return nb, resources  # nbformat < 4.5: no ids at all
        used = {cell.get("id") for cell in nb.cells}
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if not gid:
                continue
            want = re.sub(r"[^A-Za-z0-9_-]", "-", gid)[:64]
            if cell.get("id") != want and want not in used:
                used.discard(cell.get("id"))
                cell["id"] = want
                used.add(want)
        return nb, resources

"""Where forked kernels cannot work (the course or its Python under /tmp, hidden by each kernel's fresh /tmp; a
zygote that cannot start, or whose self-test fails), grading uses fresh sandboxed kernels, saying why once."""
from __future__ import annotations

import logging

import nbformat
import pytest

from cnngrader.pipeline import execute
from cnngrader.pipeline import forked_kernel as fk
from cnngrader.pipeline.kernel_start import SandboxedKernelManager
from cnngrader.pipeline.sandbox import SandboxUnavailable, check_available


def test_hidden_by_fresh_tmp_names_what_lies_under_tmp(monkeypatch):
    monkeypatch.setattr(fk.sys, "prefix", "/tmp/course/.venv")
    assert "/tmp/course/.venv" in fk.hidden_by_fresh_tmp()
    with pytest.raises(fk.ZygoteUnavailable, match="outside /tmp: .*/tmp/course/.venv"):
        fk.KernelZygote(threads=1)


def _sandboxed() -> None:
    try:
        check_available()
    except SandboxUnavailable as e:
        pytest.skip(str(e))


def _manager(caplog) -> object:
    # Its own logger: an application left by an earlier test would otherwise own traitlets' default log.
    ex = execute.GradingExecute(fork_kernels=True, log=logging.getLogger("cnngrader.test_fallback"))
    ex.nb = nbformat.v4.new_notebook()  # nbclient reads the kernel's name from the notebook
    with caplog.at_level(logging.WARNING):
        return ex.create_kernel_manager()


def test_grading_falls_back_to_fresh_sandboxed_kernels(monkeypatch, caplog):
    _sandboxed()
    monkeypatch.setattr(fk, "hidden_by_fresh_tmp", lambda: ["/tmp/course"])
    monkeypatch.setattr(execute, "_FALLBACKS_SAID", set())
    assert type(_manager(caplog)) is SandboxedKernelManager
    assert "fresh /tmp would hide /tmp/course" in caplog.text


def test_a_zygote_that_cannot_start_is_tried_once_and_said_once(monkeypatch, caplog):
    _sandboxed()
    tries = []

    def refuse(threads, wait=True):
        tries.append(threads)
        raise fk.ZygoteUnavailable("a kernel forked here could not enter its namespaces: OSError: unshare")

    monkeypatch.setattr(fk, "hidden_by_fresh_tmp", lambda: [])
    monkeypatch.setattr(fk, "KernelZygote", refuse)
    monkeypatch.setattr(fk, "_FAILED", {})
    monkeypatch.setattr(execute, "_FALLBACKS_SAID", set())
    kinds = [type(_manager(caplog)) for _ in range(3)]
    assert kinds == [SandboxedKernelManager] * 3 and len(tries) == 1
    assert caplog.text.count("could not enter its namespaces: OSError: unshare") == 1


def test_forked_kernels_are_the_default_unless_the_environment_says_0(monkeypatch):
    monkeypatch.delenv("CNNGRADER_FORK_KERNELS", raising=False)
    assert execute.GradingExecute().fork_kernels
    monkeypatch.setenv("CNNGRADER_FORK_KERNELS", "0")
    assert not execute.GradingExecute().fork_kernels


def test_the_guard_names_the_zygotes_script_where_the_zygote_runs_it():
    from cnngrader.kernel import guard

    assert guard.ZYGOTE_SCRIPT.decode() == fk.ZYGOTE_INSIDE


class _FakeZygote:
    ready = True

    def __init__(self, threads, wait=True):
        self.threads, self.forked, self.stopped = threads, 0, False

    def wait_ready(self):
        pass

    def healthy(self):
        return not self.stopped

    def stop(self):
        self.stopped = True


def test_a_zygote_started_in_advance_for_another_configuration_is_stopped_once_unused(monkeypatch):
    # A Dask worker's preload starts a zygote before any job; jobs whose settings differ (kernel_threads) need
    # another. The first would only hold its memory: it goes, unless a kernel was forked from it.
    monkeypatch.setattr(fk, "KernelZygote", _FakeZygote)
    monkeypatch.setattr(fk, "_ZYGOTES", {})
    monkeypatch.setattr(fk, "_FAILED", {})
    monkeypatch.setattr(fk, "_CLEANUP_FOR", {fk.os.getpid()})  # no atexit hook for fakes
    preloaded = fk.zygote_for(("python", 2), 2)
    used = fk.zygote_for(("python", 1), 1)
    assert preloaded.stopped and not used.stopped and list(fk._ZYGOTES) == [("python", 1)]
    used.forked = 1
    third = fk.zygote_for(("python", 4), 4)
    assert not used.stopped and not third.stopped and fk.zygote_for(("python", 1), 1) is used


class _DiesWhileStarting(_FakeZygote):
    """Started without waiting (a serial run's zygote, while the gradebook is prepared), then never ready."""

    ready = False

    def __init__(self, threads, wait=True):
        super().__init__(threads)
        if wait:
            self.wait_ready()

    def wait_ready(self):
        self.stop()
        raise fk.ZygoteUnavailable("the kernel zygote exited while starting: MemoryError")


def test_a_zygote_started_without_waiting_that_dies_makes_the_first_kernel_fall_back(monkeypatch, caplog):
    _sandboxed()
    monkeypatch.setattr(fk, "hidden_by_fresh_tmp", lambda: [])
    monkeypatch.setattr(fk, "KernelZygote", _DiesWhileStarting)
    monkeypatch.setattr(fk, "_ZYGOTES", {})
    monkeypatch.setattr(fk, "_FAILED", {})
    monkeypatch.setattr(fk, "_CLEANUP_FOR", {fk.os.getpid()})  # no atexit hook for fakes
    monkeypatch.setattr(execute, "_FALLBACKS_SAID", set())
    execute.ready_kernels(parallel_jobs=1, log=logging.getLogger("cnngrader.test_fallback"), wait=False)
    (pending,) = [z for _, z in fk._ZYGOTES.values()]
    assert not pending.stopped and caplog.text == ""  # started; nobody has waited for it yet
    kinds = [type(_manager(caplog)) for _ in range(2)]
    assert kinds == [SandboxedKernelManager] * 2 and pending.stopped and not fk._ZYGOTES
    assert caplog.text.count("exited while starting: MemoryError") == 1

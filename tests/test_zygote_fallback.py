"""Where forked kernels cannot work (the course or its Python under /tmp, hidden by each kernel's fresh /tmp), the
zygote refuses to start and grading uses fresh sandboxed kernels, saying why."""
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


def test_grading_falls_back_to_fresh_sandboxed_kernels(monkeypatch, caplog):
    try:
        check_available()
    except SandboxUnavailable as e:
        pytest.skip(str(e))
    monkeypatch.setattr(execute, "hidden_by_fresh_tmp", lambda: ["/tmp/course"])
    # Its own logger: an application left by an earlier test would otherwise own traitlets' default log.
    ex = execute.GradingExecute(fork_kernels=True, log=logging.getLogger("cnngrader.test_fallback"))
    ex.nb = nbformat.v4.new_notebook()  # nbclient reads the kernel's name from the notebook
    with caplog.at_level(logging.WARNING):
        km = ex.create_kernel_manager()
    assert type(km) is SandboxedKernelManager
    assert "would hide /tmp/course" in caplog.text


def test_the_guard_names_the_zygotes_script_where_the_zygote_runs_it():
    from cnngrader.kernel import guard

    assert guard.ZYGOTE_SCRIPT.decode() == fk.ZYGOTE_INSIDE

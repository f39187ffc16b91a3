"""GradingExecute on its own: the grading kernel's limits and its handling of a dying kernel,
with kernels forked from the zygote and started as fresh processes (the fallback)."""
from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from pathlib import Path

from cnngrader.course import ENV_VAR
from cnngrader.pipeline.execute import GradingExecute, stop_zygote

pytestmark = pytest.mark.slow

PROBE = """import os, resource, sys
print(resource.getrlimit(resource.RLIMIT_AS)[0], os.environ.get('OMP_NUM_THREADS'), os.environ.get('MPLBACKEND'),
      'cnngrader.kernel' in sys.modules)"""


@pytest.mark.parametrize("preload", [True, False], ids=["zygote", "fresh"])
def test_grading_kernel_limits_and_death(preload, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(Path(__file__).resolve().parents[1]))  # as nbgrader_config.py sets it
    c = Config()
    c.Execute.kernel_name = "python3"
    c.Execute.timeout = 30
    c.GradingExecute.preload_kernels = preload
    c.GradingExecute.max_memory_mb = 3000
    c.GradingExecute.kernel_threads = 1
    nb = new_notebook(cells=[
        new_code_cell(PROBE),
        new_code_cell("import torch\nx = torch.ones(4 * 2**30, dtype=torch.uint8)  # 4 GiB: over the cap"),
        new_code_cell("print('still alive')"),
        new_code_cell("os._exit(3)"),
        new_code_cell("print('never')"),
    ])
    try:
        GradingExecute(config=c).preprocess(nb, {"metadata": {"path": str(tmp_path)}})
    finally:
        stop_zygote()
    cap, threads, backend, grader = nb.cells[0].outputs[0]["text"].split()
    assert int(cap) == 3000 * 2**20 and threads == "1" and backend == "Agg"
    assert grader == "True"  # imported before the first cell, so before any student code
    errors = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert errors and "memory" in (errors[0].ename + errors[0].evalue).lower()
    assert nb.cells[2].outputs[0]["text"] == "still alive\n"
    assert [o.ename for o in nb.cells[3].outputs if o.output_type == "error"] == ["DeadKernelError"]
    assert [o.ename for o in nb.cells[4].outputs] == ["NotRun"]
    nbformat.validate(nb)

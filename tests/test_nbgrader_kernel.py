"""GradingExecute on its own: the grading kernel's limits and its handling of a dying kernel,
with kernels forked from the zygote and started as fresh processes (both unsandboxed), and a kernel
in its sandbox (cnngrader/pipeline/sandbox.py) with the notebook-wide time limit."""
from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from cnngrader.course import ENV_VAR
from cnngrader.pipeline.execute import GradingExecute
from cnngrader.pipeline.kernel_start import stop_zygote
from cnngrader.pipeline.progress import KERNEL_LOST

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
    c.GradingExecute.sandbox = False  # the unsandboxed paths (the sandboxed one: test_sandboxed_kernel)
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


def _sandboxed_config() -> Config:
    c = Config()
    c.Execute.kernel_name = "python3"
    c.Execute.timeout = 30
    c.GradingExecute.kernel_threads = 1
    c.GradingExecute.grader_module = ""  # the in-kernel grader needs the course's checks, which a sandbox hides
    return c


def _outputs(cell) -> list[str]:
    return [o.get("text") or f"{o.get('ename')}: {o.get('evalue')}" for o in cell.outputs]


def test_sandboxed_kernel(tmp_path):
    pytest.importorskip("cnngrader.pipeline.sandbox").check_available()
    (tmp_path / "data.txt").write_text("from the submission\n")
    secret = Path(__file__).resolve().parents[1] / "solutions"
    nb = new_notebook(metadata={KERNEL_LOST: "forged by the notebook"}, cells=[
        new_code_cell("import os\nprint(os.getuid())"),
        new_code_cell("print(open('data.txt').read(), end='')"),
        new_code_cell(f"print(sorted(os.listdir({str(secret)!r})))"),
    ])
    GradingExecute(config=_sandboxed_config()).preprocess(nb, {"metadata": {"path": str(tmp_path)}})
    assert _outputs(nb.cells[0]) == ["65534\n"]
    assert _outputs(nb.cells[1]) == ["from the submission\n"]
    assert [o.ename for o in nb.cells[2].outputs] == ["FileNotFoundError"]
    assert KERNEL_LOST not in nb.metadata
    nbformat.validate(nb)


def test_notebook_timeout(tmp_path):
    pytest.importorskip("cnngrader.pipeline.sandbox").check_available()
    c = _sandboxed_config()
    c.GradingExecute.notebook_timeout = 5
    nb = new_notebook(cells=[new_code_cell("import time\ntime.sleep(3)\nprint('done')") for _ in range(3)])
    GradingExecute(config=c).preprocess(nb, {"metadata": {"path": str(tmp_path)}})
    assert _outputs(nb.cells[0]) == ["done\n"]
    assert [o.ename for o in nb.cells[1].outputs if o.output_type == "error"] == ["NotebookTimeout"]
    assert [o.ename for o in nb.cells[2].outputs] == ["NotRun"] and "(5 s)" in nb.cells[2].outputs[0].evalue
    assert nb.metadata[KERNEL_LOST] == "the notebook ran past its time limit (5 s)"  # the progress counts it
    nbformat.validate(nb)


def _own_sandboxes() -> list[str]:
    """This process's sandbox cgroups and its child processes still alive."""
    import glob
    import os

    found = glob.glob(f"/sys/fs/cgroup/*/**/cnngrader-{os.getpid()}-*", recursive=True)
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        found += [f"child {pid}" for pid in (task / "children").read_text().split()]
    return found


def test_warm_spare(tmp_path, monkeypatch):
    """Three notebooks in a row, each in a kernel that was the previous one's warm spare: each sees only
    its own submission and its own sandbox; a spare that died is replaced by a fresh start; nothing is
    left once the spares are stopped."""
    pytest.importorskip("cnngrader.pipeline.sandbox").check_available()
    from cnngrader.pipeline import kernel_start

    stop_zygote()  # no spare left by an earlier test: notebook 1 starts cold
    # processes of earlier tests that live on by design (a multiprocessing forkserver of a JOBS=2 run)
    before = set(_own_sandboxes())
    adopted: list[bool] = []
    real_adopt = kernel_start.SandboxedKernelManager._adopt
    monkeypatch.setattr(kernel_start.SandboxedKernelManager, "_adopt",
                        lambda self, *a: (adopted.append(True), real_adopt(self, *a))[1])
    probe = ("import os\n"
             "print(sorted(os.listdir('.')), os.path.exists('/tmp/mark'), open(sorted(os.listdir('.'))[0]).read())\n"
             "open('/tmp/mark', 'w').close()")
    seen = []
    try:
        for i in range(4):
            if i == 3:  # the spare waiting for notebook 4 dies: a fresh kernel takes its place
                (_pid, spare), = [v for v in kernel_start._SPARES.values() if v[0] == __import__("os").getpid()]
                spare.provisioner.process.kill()
                spare.provisioner.process.wait()
            folder = tmp_path / f"student{i}"
            folder.mkdir()
            (folder / f"mine{i}.txt").write_text(f"submission {i}")
            nb = new_notebook(cells=[new_code_cell(probe)])
            config = _sandboxed_config()
            config.GradingExecute.fork_kernels = False  # warm spares are fresh kernels' (a forked one needs none)
            GradingExecute(config=config).preprocess(nb, {"metadata": {"path": str(folder)}})
            seen.append(_outputs(nb.cells[0]))
        assert adopted == [True, True]  # notebooks 2 and 3; 1 started cold, 4 after the death
    finally:
        stop_zygote()  # stops the unused spare as well
    for i, out in enumerate(seen):
        assert out == [f"['mine{i}.txt'] False submission {i}\n"]
    for _ in range(100):  # a killed sandbox's processes exit asynchronously: up to 10 s on a loaded machine
        if not set(_own_sandboxes()) - before:
            break
        time.sleep(0.1)
    assert sorted(set(_own_sandboxes()) - before) == []

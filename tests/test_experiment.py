"""A6's experiment and its written analysis: a net trained on a budget inside the grading kernel, scored on
held-out Fashion-MNIST test images whose labels stay with the trusted process, and an answer in words that
nbgrader leaves for a manual grade.

- the sandbox binds the training files and the test images, never the test labels (Debian's copy under /usr
  is masked), and a notebook cell graded through the real pipeline cannot read them;
- the budget: a net over the parameter budget, a train_iter asked for too many batches, more optimiser steps
  than batches, each fail with their reason (checked in process, on the real data);
- partial credit: a check's Credit becomes the score nbgrader reads from the cell;
- the whole assignment through the sandboxed pipeline: the solution's automatic part at full marks, its
  written answer pending (grades.csv, tests.csv, the pre-submission check say so), a blank notebook 0.
"""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
import torch
from conftest import REPO
from nbtools import cell, points, with_new_cell, write_submissions
from traitlets.config import Config

from cnnlib.data import SYSTEM_DATA_DIR, find_fashion_mnist

AID = "06_lenet"
HAS_DATA = all(find_fashion_mnist().values())
needs_data = pytest.mark.skipif(not HAS_DATA, reason="needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")

# A notebook cell that looks for the test labels everywhere a kernel could find them.
PEEK = '''import glob, os
found = {}
for path in glob.glob("/usr/share/datasets/**/t10k-labels*", recursive=True) + glob.glob(
        os.path.join(os.environ.get("CNNLIB_DATA", "/nonexistent"), "*")):
    try:
        with open(path, "rb") as f:
            found[path] = len(f.read())
    except OSError as e:
        found[path] = type(e).__name__
import cnnlib.data
print("PEEK", json.dumps({"files": found, "verified": {k: v is not None for k, v in
                          cnnlib.data.find_fashion_mnist().items()}}))
'''


def _check(source: str, secret: int = 7):
    """The experiment's check of the train_small_net that `source` defines, run in this process."""
    from cnngrader.grading import check

    ns: dict = {}
    exec("import torch\nfrom torch import nn\n" + source, ns)
    return check("train_small_net", ns["train_small_net"], secret=secret)


# -- the budget -------------------------------------------------------------------------------------
@needs_data
@pytest.mark.parametrize("source, reason", [
    ("def train_small_net(train_iter, pool='max'):\n"
     "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10))\n",
     "a net of 79,510 parameters; the budget is 15,000"),
    ("def train_small_net(train_iter, pool='max'):\n"
     "    for epoch in range(3):\n"
     "        for X, y in train_iter:\n"
     "            pass\n"
     "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n",
     "asked train_iter for more than 240 batches"),
    ("def train_small_net(train_iter, pool='max'):\n"
     "    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n"
     "    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)\n"
     "    for X, y in train_iter:\n"
     "        for repeat in range(3):\n"
     "            optimizer.zero_grad()\n"
     "            nn.functional.cross_entropy(net(X), y).backward()\n"
     "            optimizer.step()\n"
     "    return net\n",
     "took 360 optimizer steps"),
    ("def train_small_net(train_iter, pool='max'):\n"
     "    return 'a net'\n",
     "returned str; expected the trained net"),
], ids=["parameters", "batches", "steps", "not-a-net"])
def test_a_run_over_its_budget_gets_the_reason(source, reason):
    from cnngrader.grading import GradingError

    with pytest.raises(GradingError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        _check(source)


@needs_data
def test_an_untrained_net_is_below_the_floor():
    from cnngrader.grading import GradingError

    with pytest.raises(GradingError, match=r"accuracy 0\.\d+ on 5,000 held-out test images.*Below the floor"):
        _check("def train_small_net(train_iter, pool='max'):\n"
               "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n")


@needs_data
def test_the_same_net_gets_the_same_score_in_every_run():
    """The training seed does not come from the run's secret: a regrade, or a late submission graded in another
    run, meets the same draw (a small, fast net; its shuffled batches and initial weights would differ)."""
    source = ("def train_small_net(train_iter, pool='max'):\n"
              "    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n"
              "    optimizer = torch.optim.SGD(net.parameters(), lr=0.3)\n"
              "    for epoch in range(2):\n"
              "        for X, y in train_iter:\n"
              "            optimizer.zero_grad()\n"
              "            nn.functional.cross_entropy(net(X), y).backward()\n"
              "            optimizer.step()\n"
              "    return net\n")
    first, second = _check(source, secret=1), _check(source, secret=2)
    assert first is not None and first.text == second.text and first.fraction == second.fraction


# -- partial credit ---------------------------------------------------------------------------------
def test_a_credit_becomes_the_score_nbgrader_reads():
    from nbgrader.utils import determine_grade

    from cnngrader.grading.core import Credit
    from cnngrader.pipeline import credit

    graded = nbformat.v4.new_code_cell("", metadata={"nbgrader": {"grade": True, "solution": False, "points": 5,
                                                                   "grade_id": "hidden_x", "locked": True}})
    graded.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hidden tests of x: passed\n")]
    graded.outputs += credit.outputs([Credit(0.5, "x: accuracy 0.77")], credit.points_of(graded))
    assert determine_grade(graded) == (2.5, 5.0)
    assert "score: 2.5 of 5 points" in graded.outputs[1].text
    full = credit.outputs([Credit(1.0, "x: accuracy 0.86")], 5.0)
    assert [o.output_type for o in full] == ["stream"]  # all the points: no score to read
    assert credit.outputs([], 5.0) == []


def test_without_fashion_mnist_the_experiment_says_it_cannot_be_graded(monkeypatch, tmp_path):
    """No fallback to the digits, whose labels ship inside scikit-learn: the reason tells the instructor."""
    from cnngrader.grading import GradingError

    for var in ("CNNLIB_DATA", "CNNLIB_SYSTEM_DATA", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path))
    with pytest.raises(GradingError, match="Fashion-MNIST is not installed where the grader runs"):
        _check("def train_small_net(train_iter, pool='max'):\n    raise AssertionError('never run')\n")


def test_the_experiments_cell_may_take_longer_than_a_cell():
    from cnngrader.pipeline import credit

    assert credit.cell_limit(30, ["train_small_net"], str(REPO)) >= 300
    assert credit.cell_limit(30, ["lenet"], str(REPO)) == 30


# -- the sandbox ------------------------------------------------------------------------------------
def _in_sandbox(code: str, marker: str) -> Any:
    """The JSON that `code`, run in a grading sandbox, prints after `marker` (skips without a sandbox)."""
    from cnngrader.pipeline.sandbox import Sandbox, SandboxUnavailable, check_available

    try:
        check_available()
    except SandboxUnavailable as e:
        pytest.skip(f"no sandbox on this machine: {e.why}")
    with Sandbox() as box:
        done = box.run([sys.executable, "-c", code], timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.split(f"{marker} ", 1)[1])


@needs_data
def test_the_sandbox_has_the_training_data_but_not_the_test_labels():
    seen = _in_sandbox(PEEK.replace("import glob, os", "import glob, json, os"), "PEEK")
    assert seen["verified"] == {"train-images-idx3-ubyte.gz": True, "train-labels-idx1-ubyte.gz": True,
                                "t10k-images-idx3-ubyte.gz": True, "t10k-labels-idx1-ubyte.gz": False}
    for path, size in seen["files"].items():
        assert "t10k-labels" not in path or size in (0, "FileNotFoundError", "PermissionError"), (path, size)
    if (SYSTEM_DATA_DIR / "t10k-labels-idx1-ubyte.gz").exists():
        # /dev/null is bound over it: empty, or refused (a device node on a nodev mount)
        assert seen["files"][str(SYSTEM_DATA_DIR / "t10k-labels-idx1-ubyte.gz")] in (0, "PermissionError")


@needs_data
def test_the_sandbox_checks_its_copies_by_the_md5_of_their_own_bytes():
    """The host verified them (Debian's by their decompressed content); the kernel gets their .gz MD5s."""
    code = """import json, os
from cnnlib import data
folder = os.environ["CNNLIB_DATA"]
print("MD5", json.dumps({name: [data.expected_md5(name), data.md5sum(os.path.join(folder, name))]
                         for name in sorted(data.FASHION_MNIST_FILES) if "t10k-labels" not in name}))
"""
    seen = _in_sandbox(code, "MD5")
    assert len(seen) == 3
    for name, ((gz_md5, raw_md5), own) in seen.items():
        assert (gz_md5, raw_md5) == (own, None), name  # the copy's own MD5; no decompressing needed


@needs_data
def test_the_checksum_file_is_written_again_when_something_removed_it():
    from cnngrader.pipeline import datasets

    def bound() -> Path:
        args, env = datasets.sandbox_args(["/usr"])
        assert env["CNNLIB_DATA_MD5"] == datasets.CHECKSUMS_INSIDE
        return Path(args[args.index(datasets.CHECKSUMS_INSIDE) - 1])

    first = bound()
    listed = first.read_text()
    first.unlink()  # a cleaner of /tmp, under a worker that runs for weeks
    again = bound()
    assert again.read_text() == listed and again.stat().st_mode & 0o777 == 0o644


# -- the assignment through the sandboxed pipeline ---------------------------------------------------
@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from cnngrader.pipeline.grade import generate, grade_course, solution_submission

    root = tmp_path_factory.mktemp("a6")
    generate([AID], root, release_directory=root / "release")
    solution = solution_submission(AID, root / "release")
    blank = nbformat.read(root / "release" / AID / f"{AID}.ipynb", as_version=4)
    peek = with_new_cell(solution, PEEK.replace("import glob, os", "import glob, json, os"), after="setup")
    write_submissions(root, {"solution": {AID: solution}, "blank": {AID: blank}, "peek": {AID: peek}})
    cfg = Config()
    cfg.GradingExecute.secret = 20261207
    t = time.perf_counter()
    one = grade_course(root, jobs=1, students=["solution"], config=cfg)
    seconds = time.perf_counter() - t
    rest = grade_course(root, jobs=1, students=["blank", "peek"], config=cfg)
    return root, one, rest, seconds


def _rows(root: Path) -> dict[tuple[str, str], dict]:
    from cnngrader.pipeline.grade import course_config
    from cnngrader.pipeline.report import gradebook_rows

    return {(r["student"], r["cell"]): r for r in gradebook_rows(course_config(root))}


@pytest.mark.slow
@needs_data
def test_the_solution_earns_every_automatic_point_and_its_answer_is_pending(graded, capsys):
    root, one, rest, seconds = graded
    assert one.failures == [] and rest.failures == []
    rows = _rows(root)
    manual = {gid for gid, _ in points(AID).items() if cell(nbformat.read(
        REPO / "solutions" / AID / f"{AID}.ipynb", as_version=4), gid).cell_type == "markdown"}
    assert manual == {"pooling_analysis"}
    for gid, pts in points(AID).items():
        row = rows[("solution", gid)]
        if gid in manual:
            assert row["needs_manual_grade"] and row["manual_score"] is None, row
        else:
            assert row["score"] == pts, (gid, row)
    nb = nbformat.read(root / "autograded" / "solution" / AID / f"{AID}.ipynb", as_version=4)
    out = "".join(o.get("text", "") for o in cell(nb, "hidden_train_small_net").outputs)
    assert "train_small_net: accuracy 0.8" in out, out
    with open(root / "grades.csv") as fh:
        status = {r["student_id"]: r["status"] for r in csv.DictReader(fh)}
    assert status["solution"] == "submitted, manual grading pending"
    tests_csv = {r["student"]: r for r in csv.DictReader(open(root / "reports" / "tests.csv"))}
    assert tests_csv["solution"][f"{AID}:pooling_analysis"] == "pending"
    assert tests_csv["solution"][f"{AID}:hidden_train_small_net"] == "pass"
    with capsys.disabled():
        print(f"\n[A6] the solution notebook graded in {one.execute_seconds[('solution', AID)]:.1f} s of execution "
              f"({seconds:.1f} s in all); {out.strip()}")


@pytest.mark.slow
@needs_data
def test_a_blank_notebook_scores_zero(graded):
    root, *_ = graded
    rows = _rows(root)
    assert {gid: rows[("blank", gid)]["score"] for gid in points(AID)} == dict.fromkeys(points(AID), 0.0)


@pytest.mark.slow
@needs_data
def test_a_notebook_cell_cannot_read_the_test_labels(graded):
    root, *_ = graded
    nb = nbformat.read(root / "autograded" / "peek" / AID / f"{AID}.ipynb", as_version=4)
    peek = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("import glob, json, os")]
    text = "".join(o.get("text", "") for o in peek[0].outputs)
    seen = json.loads(text.split("PEEK ", 1)[1])
    assert seen["verified"]["t10k-labels-idx1-ubyte.gz"] is False
    assert seen["verified"]["train-images-idx3-ubyte.gz"] is True
    assert all(size in (0, "FileNotFoundError", "PermissionError")
               for path, size in seen["files"].items() if "t10k-labels" in path), seen
    # and its experiment is graded all the same
    assert _rows(root)[("peek", "hidden_train_small_net")]["score"] == points(AID)["hidden_train_small_net"]


def test_the_pre_submission_check_says_graded_by_hand():
    from cnngrader import precheck

    nb = json.loads((REPO / "exercises" / AID / f"{AID}.ipynb").read_text())
    cells = precheck.graded_cells(nb, {"lenet"})
    by_hand = [c for c in cells if c.by_hand]
    assert [c.grade_id for c in by_hand] == ["pooling_analysis"]
    results = precheck.run_checks(AID, by_hand, runner=None, sources=None, reg=None)
    report = precheck.Report(AID, results)
    assert "pooling_analysis  3 points: graded by hand" in report.text()
    assert "(3 of these points are checked only when graded)" in report.text()


# -- the notebook's loader ---------------------------------------------------------------------------
def test_the_split_loader_refuses_an_unknown_split():
    from cnnlib.data import load_fashion_mnist_split

    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'valid'"):
        load_fashion_mnist_split("valid")
    with pytest.raises(TypeError, match="download must be True or False"):
        load_fashion_mnist_split("train", download="no")


@needs_data
def test_the_training_split_loads_without_the_test_files(monkeypatch, tmp_path, capsys):
    """As in the grading sandbox: only the training files at hand."""
    from cnnlib.data import DatasetUnavailable, load_fashion_mnist_split

    files = find_fashion_mnist()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / name).symlink_to(files[name])
    for var in ("CNNLIB_DATA", "CNNLIB_SYSTEM_DATA", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / "elsewhere"))
    X, y = load_fashion_mnist_split("train", root=tmp_path, download=False)
    assert X.shape == (60_000, 1, 28, 28) and X.dtype == torch.float32 and 0 <= X.min() and X.max() <= 1
    assert y.shape == (60_000,) and y.dtype == torch.int64 and set(y.unique().tolist()) == set(range(10))
    assert f"Fashion-MNIST from {tmp_path}" in capsys.readouterr().out
    with pytest.raises(DatasetUnavailable, match="test split is not available"):
        load_fashion_mnist_split("test", root=tmp_path, download=False)

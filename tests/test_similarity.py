"""The similarity report (cnngrader/pipeline/similarity.py, `make similarity`) on a small class written here:

- "orig" wrote corr2d, Conv2D and learn_kernel their own way; "copy" handed in orig's code disguised: names
  renamed, comments changed, Conv2D's methods in the other order, corr2d moved into a helper cell;
- "loop" and "vec" solved corr2d independently, a loop and a vectorised form;
- "blank1" and "blank2" handed in the untouched exercise; "short1" and "short2" only one-line answers;
- "libcopy" pasted cnnlib's corr2d with its names changed; "cheat" handed in the instructor's solution;
- an earlier term's "old" wrote what "copy2" hands in now.
"""
from __future__ import annotations

import csv
import inspect
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from conftest import ROOT as REPO
from nbtools import with_cells, with_new_cell, write_submissions
from traitlets.config import Config

import cnnlib.ops
from cnngrader.pipeline import similarity as sim
from cnngrader.pipeline.__main__ import main
from cnngrader.pipeline.grade import solution_submission

AID = "02_cross_correlation"
ORIG = {
    "corr2d": '''def corr2d(X, K):
    """2-D cross-correlation of X (H, W) with the kernel K (kh, kw); returns (H - kh + 1, W - kw + 1)."""
    # one output row at a time
    kh, kw = K.shape
    rows = []
    for i in range(X.shape[0] - kh + 1):
        row = [torch.sum(X[i:i + kh, j:j + kw] * K) for j in range(X.shape[1] - kw + 1)]
        rows.append(torch.stack(row))
    return torch.stack(rows)
''',
    "Conv2D": '''class Conv2D(nn.Module):
    def __init__(self, kernel_size, out_channels=1):
        super().__init__()
        kh, kw = kernel_size
        self.weight = nn.Parameter(0.01 * torch.randn((out_channels, kh, kw)))
        self.bias = nn.Parameter(torch.zeros((out_channels,)))

    def forward(self, X):
        maps = []
        for c in range(len(self.weight)):
            maps.append(corr2d(X, self.weight[c]) + self.bias[c])
        return torch.stack(maps, dim=0)
''',
    "learn_kernel": '''def learn_kernel(X, Y, kernel_size, num_steps, lr):
    K = torch.zeros(kernel_size, dtype=X.dtype, device=X.device, requires_grad=True)
    opt = torch.optim.SGD([K], lr=lr)
    for step in range(num_steps):
        opt.zero_grad()
        err = corr2d(X, K) - Y
        (err * err).sum().backward()  # summed squared error
        opt.step()
    return K.detach().clone()
''',
}
# orig's code, disguised: every local renamed, other comments, forward before __init__, corr2d in a helper.
HELPER = '''# helper: my cross-correlation
def _xcorr(img, ker):
    p, q = ker.shape
    lines = []
    for r in range(img.shape[0] - p + 1):
        line = [torch.sum(img[r:r + p, s:s + q] * ker) for s in range(img.shape[1] - q + 1)]   # dot products
        lines.append(torch.stack(line))
    return torch.stack(lines)
'''
COPY = {
    "corr2d": "def corr2d(X, K):\n    return _xcorr(X, K)\n",
    "Conv2D": '''class Conv2D(nn.Module):
    def forward(self, inp):
        outs = []

        for ch in range(len(self.weight)):
            outs.append(corr2d(inp, self.weight[ch]) + self.bias[ch])
        return torch.stack(outs, dim=0)

    def __init__(self, kernel_size, out_channels=1):
        super().__init__()
        height, width = kernel_size   # kernel size
        self.weight = nn.Parameter(0.01 * torch.randn((out_channels, height, width)))
        self.bias = nn.Parameter(torch.zeros((out_channels,)))
''',
    "learn_kernel": '''def learn_kernel(X, Y, kernel_size, num_steps, lr):
    # plain SGD
    ker = torch.zeros(kernel_size, dtype=X.dtype, device=X.device, requires_grad=True)
    sgd = torch.optim.SGD([ker], lr=lr)
    for it in range(num_steps):
        sgd.zero_grad()
        diff = corr2d(X, ker) - Y
        (diff * diff).sum().backward()
        sgd.step()
    return ker.detach().clone()
''',
}
LOOP = '''def corr2d(X, K):
    n_rows = X.shape[0] - K.shape[0] + 1
    n_cols = X.shape[1] - K.shape[1] + 1
    out = torch.empty(n_rows, n_cols, dtype=X.dtype, device=X.device)
    r = 0
    while r < n_rows:
        for c in range(n_cols):
            window = X[r:r + K.shape[0], c:c + K.shape[1]]
            out[r, c] = torch.dot(window.flatten(), K.flatten())
        r += 1
    return out
'''
VEC = '''def corr2d(X, K):
    kh, kw = K.shape
    windows = X.unfold(0, kh, 1).unfold(1, kw, 1)  # (H', W', kh, kw), a view
    return torch.einsum("ijab,ab->ij", windows, K)
'''
SHORT = {"convolve2d": "def convolve2d(X, K):\n    return corr2d(X, torch.flip(K, dims=(0, 1)))\n",
         "learned_kernel": "learned_kernel = ((4, 3), (2, 1))\n"}


def cnnlib_copy() -> str:
    """cnnlib's corr2d as a student would paste it: its docstring and argument checks cut, its names changed."""
    src = inspect.getsource(cnnlib.ops.corr2d)
    src = re.sub(r'    """.*?"""\n', "", src, flags=re.S)
    src = "\n".join(line for line in src.splitlines() if "check_" not in line)
    src = re.sub(r"\bY\b", "result", re.sub(r"\bh\b", "kr", re.sub(r"\bw\b", "kc", src)))
    return src.replace("X: torch.Tensor, K: torch.Tensor) -> torch.Tensor", "X, K") + "\n"


@pytest.fixture(scope="module")
def blank():
    return nbformat.read(REPO / "exercises" / AID / f"{AID}.ipynb", as_version=4)


@pytest.fixture(scope="module")
def report(tmp_path_factory, blank):
    root = tmp_path_factory.mktemp("similarity")
    copy = with_new_cell(with_cells(blank, **COPY), HELPER, before="corr2d")
    write_submissions(root, {
        "orig": {AID: with_cells(blank, **ORIG)},
        "copy": {AID: copy},
        "loop": {AID: with_cells(blank, corr2d=LOOP)},
        "vec": {AID: with_cells(blank, corr2d=VEC)},
        "blank1": {AID: blank}, "blank2": {AID: blank},
        "short1": {AID: with_cells(blank, **SHORT)}, "short2": {AID: with_cells(blank, **SHORT)},
        "libcopy": {AID: with_cells(blank, corr2d=cnnlib_copy())},
        "cheat": {AID: solution_submission(AID)},
        "copy2": {AID: with_cells(blank, learn_kernel=ORIG["learn_kernel"].replace("err", "e"))},
    })
    earlier = root / "earlier"
    write_submissions(earlier, {"old": {AID: with_cells(blank, learn_kernel=ORIG["learn_kernel"])}})
    (root / "reports").mkdir()
    (root / "reports" / "report.md").write_text("# Grade report\n\n## Flags for a human look\n\n(none)\n")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    result = sim.write_similarity(root, [AID], earlier=earlier / "submitted")
    pairs = {frozenset((p.a.owner, p.b.owner)): p for p in result.pairs}
    with open(result.out / sim.PAIRS_CSV, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return SimpleNamespace(root=root, result=result, pairs=pairs, rows=rows, before=before,
                           settings=sim.SimilarityCheck())


def test_disguised_copy_is_flagged_with_its_matching_spans(report):
    p = report.pairs[frozenset(("copy", "orig"))]
    assert p.score >= report.settings.threshold and p.matched >= report.settings.min_match
    copier_first = p.a.owner == "copy"
    links = {(ca, cb) if copier_first else (cb, ca) for ca, _la, cb, _lb in p.links}
    # the helper cell holds orig's corr2d; the reordered class and the renamed loop still match cell to cell
    assert {("cell 5 (added)", "corr2d"), ("Conv2D", "Conv2D"), ("learn_kernel", "learn_kernel")} <= links, links
    rows = [r for r in report.rows if {r["student_a"], r["student_b"]} == {"copy", "orig"}]
    assert {r["cell"] for r in rows} >= {"Conv2D", "learn_kernel"}
    assert all(re.fullmatch(r"[\d, -]+ ~ [\d, -]+", r["matched_lines"]) for r in rows), rows
    page = next(p for p in (report.result.out / "pairs").glob("*.html")
                if "copy and orig" in p.read_text() or "orig and copy" in p.read_text()).read_text()
    marked = " ".join(re.findall(r"<mark>(.*?)</mark>", page))
    assert "sgd.zero_grad()" in marked and "opt.zero_grad()" in marked  # the spans, on both sides
    index = (report.result.out / "index.html").read_text()
    assert "copy" in index and "orig" in index


def test_independent_solutions_are_not_flagged(report):
    assert frozenset(("loop", "vec")) not in report.pairs
    for name in ("loop", "vec"):
        assert not any(name in pair and "student" == p.b.kind for pair, p in report.pairs.items())


def test_template_code_never_counts(report, blank):
    assert frozenset(("blank1", "blank2")) not in report.pairs
    assert not any({"blank1", "blank2"} & pair for pair in report.pairs)
    check = report.settings
    template = check.boilerplate(sim.template_cells(REPO / "exercises", AID))
    listing = sim.join_parts("blank1", sim.STUDENT, [(str(k), c.source) for k, c in enumerate(blank.cells)
                                                     if c.cell_type == "code"])
    stubs = sum(c.source.count("raise NotImplementedError()") for c in blank.cells if c.cell_type == "code")
    assert stubs >= 6 and listing.code.count("raise NotImplementedError()") == stubs  # every function's stub
    assert "check_all" in listing.code  # and the locked cells too
    assert not check.listing_fingerprint(listing, template).hashes  # nothing of it is left to match


def test_short_solutions_are_not_flagged(report):
    assert frozenset(("short1", "short2")) not in report.pairs
    assert not any({"short1", "short2"} & pair for pair in report.pairs)


def test_a_copy_of_cnnlib_is_flagged_against_cnnlib(report):
    p = report.pairs[frozenset(("libcopy", sim.CNNLIB))]
    assert p.a.owner == "libcopy" and p.b.kind == "source"
    assert ("corr2d", "cnnlib/ops.py") in {(ca, cb) for ca, _la, cb, _lb in p.links}


def test_the_instructor_solution_and_earlier_terms_are_known_sources(report):
    p = report.pairs[frozenset(("cheat", sim.INSTRUCTOR))]
    assert p.score == pytest.approx(1.0)
    p = report.pairs[frozenset(("copy2", "earlier:old"))]
    assert p.b.kind == sim.EARLIER and {cb for *_x, cb, _lb in p.links} == {"learn_kernel"}, p.links


def _hidden_tests() -> list[str]:
    """The distinctive lines of the assignment's hidden tests (solutions/, between the hidden-test markers)."""
    nb = json.loads((REPO / "solutions" / AID / f"{AID}.ipynb").read_text())
    lines = []
    for c in nb["cells"]:
        src = "".join(c["source"])
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", src, flags=re.S):
            lines += [line.strip() for line in block.splitlines() if len(line.strip()) > 12]
    assert lines
    return lines


def test_no_hidden_test_and_no_instructor_solution_where_students_look(report):
    texts = [p.read_text() for p in report.result.out.rglob("*") if p.is_file()]
    assert texts and not any(line in t for t in texts for line in _hidden_tests())
    assert not any("BEGIN HIDDEN" in t or "BEGIN SOLUTION" in t for t in texts)
    # The instructor's listing is shown to the instructor, in reports/ only, which students never get:
    # nothing was written outside reports/similarity/ and report.md, feedback/ included.
    after = sorted(p.relative_to(report.root) for p in report.root.rglob("*"))
    new = [p for p in after if p not in report.before]
    assert all(p.parts[:2] == ("reports", "similarity") or p == Path("reports/report.md") for p in new), new
    assert not (report.root / "feedback").exists()
    import importlib.util

    spec = importlib.util.spec_from_file_location("publish", REPO / "tools" / "publish.py")
    publish = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(publish)
    assert "reports" in publish.SECRET_FOLDERS and "reports" not in publish.PUBLISHED
    assert not any(p.startswith("cnngrader/pipeline") for p in publish.CHECKER)
    # The CSV and report.md name the instructor's solution but never show it.
    solution = sim.instructor_listing(sim.load_course(REPO), AID).code
    body = [line.strip() for line in solution.splitlines() if len(line.strip()) > 20 and '"""' not in line]
    for path in (report.result.out / sim.PAIRS_CSV, report.root / "reports" / "report.md"):
        assert sim.INSTRUCTOR in path.read_text() and not any(line in path.read_text() for line in body)


def test_report_md_links_the_report_and_lists_the_flagged_pairs(report):
    md = (report.root / "reports" / "report.md").read_text()
    assert md.startswith("# Grade report") and "## Flags for a human look" in md
    section = md.split("## Similarity")[1]
    assert "(similarity/index.html)" in section and "not a grade" in section
    assert re.search(r"\| 02_cross_correlation \| (copy \| orig|orig \| copy) \| 1\.000 \|", section) or \
        re.search(r"\| (copy \| orig|orig \| copy) \| 0\.\d+ \|", section), section
    sim.update_report_md(report.root / "reports")  # rewriting it keeps one section
    assert (report.root / "reports" / "report.md").read_text().count("## Similarity") == 1


def test_command_line(report, tmp_path, blank, caplog):
    write_submissions(tmp_path, {"a": {AID: with_cells(blank, **ORIG)}, "b": {AID: with_cells(blank, **ORIG)}})
    assert main(["similarity", "--root", str(tmp_path), AID]) == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "reports" / "similarity" / "pairs.csv").read_text())))
    assert {(r["student_a"], r["student_b"]) for r in rows} == {("a", "b")}
    assert main(["similarity", "--root", str(tmp_path), "nope"]) == 2
    assert main(["similarity", "--root", str(tmp_path), "--earlier", str(tmp_path / "absent"), AID]) == 2
    assert "not a folder" in caplog.text


def test_an_unreadable_notebook_is_skipped_and_the_rest_compared(tmp_path, blank, caplog):
    write_submissions(tmp_path, {"a": {AID: with_cells(blank, **ORIG)}, "b": {AID: with_cells(blank, **ORIG)}})
    bad = tmp_path / "submitted" / "c" / AID
    bad.mkdir(parents=True)
    (bad / f"{AID}.ipynb").write_text("{not json")
    config = Config()
    config.SimilarityCheck.threshold = 0.99
    result = sim.write_similarity(tmp_path, [AID], config=config)
    assert result.students[AID] == 2 and {frozenset((p.a.owner, p.b.owner)) for p in result.pairs} >= {
        frozenset(("a", "b"))}
    assert "not a readable notebook" in caplog.text

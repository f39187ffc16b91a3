"""Static checks of the nbgrader notebooks: metadata of solutions/ and exercises/, and no leaks
of solution code or hidden tests into exercises/. Fast: nothing is executed."""
from __future__ import annotations

import re

import nbformat
import pytest
from conftest import REPO

from cnngrader.course import load_course
from cnngrader.pipeline.authoring import HIDDEN_MARKERS, SOLUTION_MARKERS

ASSIGNMENTS = load_course(REPO).ids

(BEGIN_SOLUTION, END_SOLUTION), (BEGIN_HIDDEN, END_HIDDEN) = SOLUTION_MARKERS, HIDDEN_MARKERS


def load(kind: str, aid: str) -> nbformat.NotebookNode:
    return nbformat.read(REPO / kind / aid / f"{aid}.ipynb", as_version=4)


def meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def regions(source: str, begin: str, end: str) -> list[list[str]]:
    """The lines strictly between each begin/end marker pair of a cell's source."""
    out, cur = [], None
    for line in source.splitlines():
        if line.strip() == begin:
            cur = []
        elif line.strip() == end:
            out.append(cur)
            cur = None
        elif cur is not None:
            cur.append(line)
    return out


def is_test_cell(cell) -> bool:
    return bool(meta(cell).get("grade")) and not meta(cell).get("solution")


@pytest.mark.parametrize("kind", ["solutions", "exercises"])
@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_metadata(kind, aid):
    nb = load(kind, aid)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "the grading kernel is python3"
    ids = [meta(c)["grade_id"] for c in nb.cells if meta(c)]
    assert len(ids) == len(set(ids)), f"duplicate grade_ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    for i, cell in enumerate(nb.cells):
        m = meta(cell)
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {i} ({m.get('grade_id')}) has outputs"
        if not m:
            continue
        assert m.get("schema_version") == 3, f"cell {m['grade_id']}: nbgrader metadata schema {m.get('schema_version')}"
        if m.get("grade"):
            assert float(m.get("points", 0)) > 0, f"graded cell {m['grade_id']} has no points"
        if is_test_cell(cell):
            assert m.get("locked"), f"test cell {m['grade_id']} is not locked"
        if m.get("solution"):
            assert not m.get("locked"), f"solution cell {m['grade_id']} is locked"
            if m.get("grade"):
                continue  # an answer graded by hand is its own grade cell
            # every solution cell is followed by a test cell before the next solution cell
            later = nb.cells[i + 1:]
            nxt = next((j for j, c in enumerate(later) if meta(c).get("solution")), len(later))
            assert any(is_test_cell(c) for c in later[:nxt]), f"solution cell {m['grade_id']} has no test cell after it"
    assert any(is_test_cell(c) for c in nb.cells), "no graded test cell"


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_hidden_blocks_are_short_calls_in_locked_grade_cells(aid):
    nb = load("solutions", aid)
    found = 0
    for cell in nb.cells:
        blocks = regions(cell.source, BEGIN_HIDDEN, END_HIDDEN)
        if not blocks:
            assert BEGIN_HIDDEN not in cell.source
            continue
        m = meta(cell)
        assert cell.cell_type == "code" and m.get("grade") and m.get("locked") and not m.get("solution"), (
            f"hidden tests outside a locked grade cell: {m.get('grade_id')}")
        for block in blocks:
            found += 1
            code = [line.strip() for line in block if line.strip() and not line.strip().startswith("#")]
            # the feedback shows a hidden cell's source: it must be a call into the grader, no case data
            assert all(re.fullmatch(r"from cnngrader\.grading import check|check\([^()]*\)", line) for line in code), (
                f"{m['grade_id']}: a hidden block is more than a call into cnngrader.grading: {code}")
    assert found, "no hidden tests"


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_source_layout(aid):
    """The locked first code cell imports what the student needs, and not the grader (the pipeline
    imports it before any cell runs, and students have no grader); every code cell is an nbgrader
    cell; a solution cell has its markers and the next code cell is graded; graded cells are
    locked; a hidden block is at most two lines, ending in check(...)."""
    nb = load("solutions", aid)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(meta(c).get("grade_id") for c in code), "every code cell needs nbgrader metadata"
    first = meta(code[0])
    assert first["grade_id"] == "setup" and first.get("locked") is True and first.get("grade") is False
    assert "import torch" in code[0].source and "cnngrader" not in code[0].source
    for k, cell in enumerate(code):
        m = meta(cell)
        if m.get("solution"):
            assert BEGIN_SOLUTION in cell.source and END_SOLUTION in cell.source, f"{m['grade_id']} has no markers"
            after = meta(code[k + 1])
            assert after.get("locked") and after.get("grade_id", "").startswith("test_"), (
                f"{m['grade_id']} must be followed by its visible test cell")
        if m.get("grade"):
            assert m.get("locked"), f"graded cell {m['grade_id']} is not locked"
        # points sit on the hidden checks only: a visible test is the student's self-check
        if m.get("grade_id", "").startswith("test_"):
            assert not m.get("grade"), f"visible test cell {m['grade_id']} carries points"
        if m.get("grade"):
            assert regions(cell.source, BEGIN_HIDDEN, END_HIDDEN), f"graded cell {m['grade_id']} has no hidden tests"
        for block in regions(cell.source, BEGIN_HIDDEN, END_HIDDEN):
            lines = "\n".join(block).strip().splitlines()
            assert len(lines) <= 2 and lines[-1].startswith("check("), f"{m['grade_id']}: hidden block {lines}"


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_release_matches_source_cells(aid):
    """The student version has the source's graded cells (same ids, same points), stubs in place of
    every solution, and no call into the grader but the pre-submission check of its last cell."""
    src, ex = load("solutions", aid), load("exercises", aid)
    ex_text = "\n".join(c.source for c in ex.cells if meta(c).get("grade_id") != PRECHECK_CELL)
    assert "check(" not in ex_text and not re.search(r"\b(import|from)\s+cnngrader", ex_text), \
        "a call into the grader in the student version"

    def ids(nb):
        return [(meta(c).get("grade_id"), meta(c).get("points")) for c in nb.cells if meta(c)]

    assert ids(ex) == ids(src), "exercises/ is stale: run make exercises"
    for cell in ex.cells:
        if meta(cell).get("solution") and cell.cell_type == "markdown":
            assert cell.source.strip() == "YOUR ANSWER HERE", f"{meta(cell)['grade_id']} is not the generated stub"
        elif meta(cell).get("solution"):
            assert "# YOUR CODE HERE" in cell.source and "raise NotImplementedError()" in cell.source, (
                f"{meta(cell)['grade_id']} is not the generated stub")


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_exercises_leak_no_solution_or_hidden_code(aid):
    src, ex = load("solutions", aid), load("exercises", aid)
    ex_text = "\n".join(c.source for c in ex.cells)
    for marker in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN):
        assert marker not in ex_text
    # lines that exist only inside solution / hidden regions of the source notebook
    outside = set()
    inside: list[tuple[str, str]] = []
    for cell in src.cells:
        lines = cell.source.splitlines()
        region = [r for rs in (regions(cell.source, BEGIN_SOLUTION, END_SOLUTION),
                               regions(cell.source, BEGIN_HIDDEN, END_HIDDEN)) for r in rs]
        in_region = {line for r in region for line in r}
        inside += [(meta(cell).get("grade_id", "?"), line.strip()) for line in in_region]
        outside |= {line.strip() for line in lines if line not in in_region}
    secret = [(gid, line) for gid, line in inside if len(line) >= 12 and line not in outside
              and not line.startswith("#")]
    assert secret, "found no solution code to look for"
    ex_lines = {line.strip() for line in ex_text.splitlines()}
    leaked = [(gid, line) for gid, line in secret if line in ex_lines]
    assert not leaked, f"exercises/{aid} contains solution or hidden-test lines: {leaked[:5]}"
    # and the student version's solution cells are the stub
    for cell in ex.cells:
        if meta(cell).get("solution") and cell.cell_type == "code":
            assert "raise NotImplementedError()" in cell.source, f"{meta(cell)['grade_id']} has no stub"


PRECHECK_CELL = "before_you_submit"


@pytest.mark.parametrize("kind", ["solutions", "exercises"])
@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_the_last_cell_is_the_pre_submission_check_and_carries_nothing(kind, aid):
    """'Before you submit': a locked cell without points that calls cnngrader.precheck.check_all for this
    assignment, and prints a one-line hint to stdout where the check is not installed (nothing on stderr,
    which would fail a graded cell in plain nbgrader; and it is no grade cell)."""
    nb = load(kind, aid)
    code = [c for c in nb.cells if c.cell_type == "code"]
    last = code[-1]
    m = meta(last)
    assert m.get("grade_id") == PRECHECK_CELL and m.get("locked") is True, \
        "the last code cell is the pre-submission check"
    assert m.get("grade") is False and m.get("solution") is False and "points" not in m
    assert last.source.startswith("try:\n    from cnngrader.precheck import check_all\nexcept ImportError:")
    assert f'check_all("{aid}")' in last.source and "print(" in last.source and "stderr" not in last.source
    assert [c for c in code if "cnngrader.precheck" in c.source] == [last]
    heading = nb.cells[nb.cells.index(last) - 1]
    assert heading.cell_type == "markdown" and heading.source.startswith("## Before you submit")


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_setup_cell_installs_cnnlib_only_when_missing_and_links_are_absolute(aid):
    from cnngrader.pipeline.authoring import install_lines, published

    nb = load("exercises", aid)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert setup.source.startswith(install_lines(published(load_course(REPO))) + "\n")
    assert 'if importlib.util.find_spec("cnnlib") is None:' in setup.source
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "](../" not in text and "](book/" not in text, "a relative link into the repository"
    # the install line is explained to the student, as it really behaves
    assert "setup cell below check that the course's package, `cnnlib`, is installed" in " ".join(text.split())


def test_every_assignment_has_both_versions():
    for aid in ASSIGNMENTS:
        assert (REPO / "solutions" / aid / f"{aid}.ipynb").is_file()
        assert (REPO / "exercises" / aid / f"{aid}.ipynb").is_file()
    assert (REPO / "nbgrader_config.py").is_file()


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_hidden_cells_state_their_points_in_words(aid):
    """'# Hidden tests (1 point): ...' or '(N points)', the number being the cell's points."""
    for cell in load("solutions", aid).cells:
        m = meta(cell)
        if not m.get("grade") or m.get("solution"):
            continue  # an answer graded by hand says its points in the question
        points = m["points"]
        words = f"({points:g} point)" if points == 1 else f"({points:g} points)"
        assert cell.source.startswith(f"# Hidden tests {words}: "), f"{m['grade_id']}: {cell.source.splitlines()[0]}"

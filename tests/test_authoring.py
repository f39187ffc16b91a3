"""The assignments are authored as assignments/<id>/<id>.md; solutions/<id>/<id>.ipynb is built from them.

The committed notebooks must be exactly what the build gives, with stable cell ids, and a malformed
assignment must fail with the file and the cell. Nothing here writes into the repository: edits and
builds happen in temporary copies of the course.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import jupytext
import nbformat
import pytest
from conftest import REPO as ROOT

from cnngrader.course import load_course
from cnngrader.pipeline.authoring import NOTE, build_notebook, target, write_sources

COURSE = load_course(ROOT)
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


@pytest.fixture
def course_copy(tmp_path):
    """A temporary copy of the course's manifest, assignments and generated notebooks."""
    shutil.copy(ROOT / "course.toml", tmp_path / "course.toml")
    for folder in ("assignments", "solutions"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return load_course(tmp_path)


@pytest.mark.parametrize("aid", COURSE.ids)
def test_committed_notebook_is_what_the_build_gives(aid):
    built = nbformat.writes(build_notebook(COURSE, aid)) + "\n"
    assert built == target(COURSE, aid).read_text(encoding="utf-8"), (
        f"solutions/{aid}/{aid}.ipynb is out of date: run python -m cnngrader.pipeline.authoring")


def test_building_twice_gives_identical_bytes():
    for aid in COURSE.ids:
        assert nbformat.writes(build_notebook(COURSE, aid)) == nbformat.writes(build_notebook(COURSE, aid)), aid


def test_write_sources_in_a_copy_reproduces_the_committed_notebooks(course_copy):
    shutil.rmtree(course_copy.root / "solutions")
    written = write_sources(course_copy)
    assert written == [target(course_copy, aid) for aid in course_copy.ids]
    for aid in course_copy.ids:
        assert target(course_copy, aid).read_bytes() == target(COURSE, aid).read_bytes(), aid
    assert write_sources(course_copy) == [], "an up-to-date notebook is rewritten"


@pytest.mark.parametrize("aid", COURSE.ids)
def test_built_notebook_says_it_is_generated_and_carries_no_jupytext_state(aid):
    nb = build_notebook(COURSE, aid)
    assert nb.metadata == {
        "kernelspec": KERNELSPEC,
        "language_info": {"name": "python"},
        "cnngrader": {"generated_from": f"assignments/{aid}/{aid}.md", "note": NOTE},
    }
    assert "edit the .md file" in NOTE
    for k, cell in enumerate(nb.cells):
        assert "jupytext" not in cell.metadata
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        assert cell.id == (grade_id or f"md-{k:02d}")
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_an_edit_to_the_md_shows_up_in_the_built_notebook(course_copy):
    aid = course_copy.ids[1]
    source = course_copy.source(aid)
    text = source.read_text(encoding="utf-8")
    old = "def corr2d(X, K):\n"
    assert old in text
    source.write_text(text.replace(old, "def corr2d(X, K):  # edited\n", 1), encoding="utf-8")
    cell = next(c for c in build_notebook(course_copy, aid).cells if c.id == "corr2d")
    assert cell.source.startswith("def corr2d(X, K):  # edited\n")

    path = target(course_copy, aid)
    before = path.read_bytes()
    assert write_sources(course_copy, check=True) == [path]
    assert path.read_bytes() == before, "check=True wrote a notebook"
    assert write_sources(course_copy, [aid]) == [path]
    written = next(c for c in nbformat.read(path, as_version=4).cells if c.id == "corr2d")
    assert written.source == cell.source


# A toy assignment, as the notebook jupytext reads from its .md: cell k (from 0) is "cell k + 1" in errors.
def _meta(grade_id: str, kind: str, points: int | None = None) -> dict:
    meta = {"grade_id": grade_id, "schema_version": 3, "task": False, **{
        "setup": {"grade": False, "locked": True, "solution": False},
        "solution": {"grade": False, "locked": False, "solution": True},
        "tests": {"grade": True, "locked": True, "solution": False},
    }[kind]}
    return meta if points is None else {**meta, "points": points}


def _toy() -> nbformat.NotebookNode:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC})
    nb.cells = [
        md("# Toy"),
        code("import math", metadata={"nbgrader": _meta("setup", "setup")}),
        md("Write `f(x)`, which returns `x + 1`."),
        code("def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION",
             metadata={"nbgrader": _meta("f", "solution")}),
        code("assert f(1) == 2", metadata={"nbgrader": _meta("test_f", "tests", 1)}),
        code("### BEGIN HIDDEN TESTS\nfrom cnngrader.grading import check\ncheck('f', f)\n### END HIDDEN TESTS",
             metadata={"nbgrader": _meta("hidden_f", "tests", 2)}),
    ]
    return nb


def _toy_course(tmp_path: Path, nb: nbformat.NotebookNode):
    (tmp_path / "course.toml").write_text('[[assignment]]\nid = "toy"\ntitle = "Toy"\nchapter = "book/toy.md"\n')
    (tmp_path / "assignments" / "toy").mkdir(parents=True)
    jupytext.write(nb, tmp_path / "assignments" / "toy" / "toy.md", fmt="md:myst")
    return load_course(tmp_path)


def test_the_toy_builds_with_stable_ids_and_locks(tmp_path):
    nb = build_notebook(_toy_course(tmp_path, _toy()), "toy")
    assert [c.id for c in nb.cells] == ["md-00", "setup", "md-02", "f", "test_f", "hidden_f"]
    for cell in nb.cells:
        locked = cell.metadata.get("nbgrader", {}).get("locked", False)
        flags = (cell.metadata.get("deletable"), cell.metadata.get("editable"))
        assert flags == ((False, False) if locked else (None, None))


def _set(k: int, **changes):
    def edit(nb):
        nb.cells[k].metadata["nbgrader"].update(changes)
    return edit


def _drop_points(nb):
    del nb.cells[4].metadata["nbgrader"]["points"]


def _append(k: int, text: str):
    def edit(nb):
        nb.cells[k].source += "\n" + text
    return edit


def _replace(k: int, old: str, new: str):
    def edit(nb):
        nb.cells[k].source = nb.cells[k].source.replace(old, new)
    return edit


def _drop_setup(nb):
    del nb.cells[1]


ERRORS = [
    pytest.param(_set(4, grade_id="f"), 5, "duplicate grade_id 'f'", id="duplicate-grade-id"),
    pytest.param(_drop_points, 5, "needs positive points", id="graded-without-points"),
    pytest.param(_set(4, points=0), 5, "needs positive points", id="graded-zero-points"),
    pytest.param(_set(4, points=True), 5, "needs positive points", id="graded-bool-points"),
    pytest.param(_append(4, "### BEGIN SOLUTION"), 5, "outside a solution cell", id="solution-marker-in-tests"),
    pytest.param(_append(2, "### END SOLUTION"), 3, "outside a solution cell", id="solution-marker-in-markdown"),
    pytest.param(_set(5, locked=False), 6, "outside a locked grade cell", id="hidden-in-unlocked-cell"),
    pytest.param(_append(3, "### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS"), 4, "outside a locked grade cell",
                 id="hidden-in-solution-cell"),
    pytest.param(_set(5, grade_id="hidden_g"), 6, "checks 'f': its grade_id must be 'hidden_f'",
                 id="hidden-cell-misnamed"),
    pytest.param(_replace(5, "check('f', f)", "check('f', f)\ncheck('g', g)"), 6, "one check('<name>', <name>) call",
                 id="hidden-cell-two-checks"),
    pytest.param(_replace(5, "check('f', f)", "assert f(2) == 3"), 6, "may only hold", id="hidden-cell-not-a-check"),
    pytest.param(_drop_setup, 3, "setup cell", id="setup-missing"),
    pytest.param(_set(1, grade_id="prelude"), 2, "setup cell", id="setup-renamed"),
    pytest.param(_set(1, locked=False), 2, "setup cell", id="setup-unlocked"),
    pytest.param(_set(4, pionts=1), 5, "unknown nbgrader keys pionts", id="unknown-key"),
]


@pytest.mark.parametrize("edit, cell, reason", ERRORS)
def test_a_malformed_assignment_names_its_file_and_cell(tmp_path, edit, cell, reason):
    nb = _toy()
    edit(nb)
    course = _toy_course(tmp_path, nb)
    with pytest.raises(ValueError) as error:
        build_notebook(course, "toy")
    assert str(error.value).startswith(f"assignments/toy/toy.md, cell {cell}: "), str(error.value)
    assert reason in str(error.value)


def test_an_assignment_without_code_cells_has_no_setup_cell(tmp_path):
    nb = _toy()
    nb.cells = nb.cells[:1]
    with pytest.raises(ValueError, match=r"^assignments/toy/toy\.md: no setup cell"):
        build_notebook(_toy_course(tmp_path, nb), "toy")


def _with_config(course_copy, url: str, baseurl: str):
    text = (ROOT / "_config.yml").read_text(encoding="utf-8")
    text = text.replace('repository:\n  url: ""', f'repository:\n  url: "{url}"')
    text = text.replace('  baseurl: ""', f'  baseurl: "{baseurl}"')
    (course_copy.root / "_config.yml").write_text(text, encoding="utf-8")
    return course_copy


def _run_setup_head(source: str, importable: bool) -> list:
    """Run the setup cell's install lines with cnnlib importable or not; return the commands run."""
    import importlib.util
    import subprocess

    ran: list = []
    head = source.split("\nimport torch")[0]
    real_find, real_run = importlib.util.find_spec, subprocess.run
    importlib.util.find_spec = lambda name, *a: None if name == "cnnlib" and not importable else real_find(name, *a)
    subprocess.run = lambda cmd, **kw: ran.append(cmd)
    try:
        exec(head, {})
    finally:
        importlib.util.find_spec, subprocess.run = real_find, real_run
    return ran


def test_published_course_links_and_install_come_from_config(course_copy):
    from cnngrader.pipeline.authoring import published

    course = _with_config(course_copy, "https://github.com/uni/cnn-course", "https://uni.github.io/cnn-course/")
    assert published(course) == ("https://github.com/uni/cnn-course", "main", "https://uni.github.io/cnn-course")
    nb = build_notebook(course, "02_cross_correlation")
    assert "[Cross-correlation](https://uni.github.io/cnn-course/book/02_cross_correlation.html)" in nb.cells[0].source
    setup = nb.cells[[c.id for c in nb.cells].index("setup")].source
    assert _run_setup_head(setup, importable=True) == []  # the course's environment, the grading sandbox
    ran = _run_setup_head(setup, importable=False)
    assert len(ran) == 1 and ran[0][1:] == ["-m", "pip", "install", "-q", "git+https://github.com/uni/cnn-course@main"]
    # without the book's address, the chapter's source in the published repository
    nb = build_notebook(_with_config(course_copy, "https://github.com/uni/cnn-course", ""), "02_cross_correlation")
    assert "(https://github.com/uni/cnn-course/blob/main/book/02_cross_correlation.md)" in nb.cells[0].source


def test_an_unpublished_course_links_nowhere_and_says_so(course_copy):
    course = _with_config(course_copy, "", "")
    nb = build_notebook(course, "02_cross_correlation")
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "the chapter *Cross-correlation*" in text and "](" not in text.split("## 1.")[0]
    setup = nb.cells[[c.id for c in nb.cells].index("setup")].source
    assert _run_setup_head(setup, importable=True) == []
    with pytest.raises(ModuleNotFoundError, match="the course is not published yet"):
        _run_setup_head(setup, importable=False)
    (course_copy.root / "_config.yml").unlink()  # no config at all: the same
    assert build_notebook(course, "02_cross_correlation").cells[0].source == nb.cells[0].source


def test_the_install_marker_belongs_in_the_setup_cell(course_copy):
    path = course_copy.source("03_padding_stride")
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("def pad2d(X, padding):", "# course: install cnnlib when it is missing\n"
                                                            "def pad2d(X, padding):"), encoding="utf-8")
    with pytest.raises(ValueError, match="belongs in the setup cell only"):
        build_notebook(course_copy, "03_padding_stride")

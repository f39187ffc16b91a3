"""Adding an assignment is four files' worth of work, as docs/development.md's "Adding an assignment" says:
a chapter stub, an assignment notebook, a checks module and one manifest entry. This test does
exactly that in a temporary copy of the course, then generates and grades the new assignment."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from conftest import REPO

from cnngrader.course import load_course
from cnngrader.pipeline.grade import course_config, generate, grade_course, solution_submission
from cnngrader.pipeline.kernel_start import stop_zygote
from cnngrader.pipeline.report import gradebook_rows

pytestmark = pytest.mark.slow

AID = "07_toy"

CHAPTER = """\
# A toy chapter

Doubling a tensor is the simplest operation there is.
"""

MANIFEST_ENTRY = f"""
[[assignment]]
id = "{AID}"
title = "A toy assignment"
chapter = "book/{AID}.md"
"""

NOTEBOOK = '''\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3 (ipykernel)
  language: python
  name: python3
---

# A toy assignment

```{code-cell} ipython3
---
nbgrader:
  grade: false
  grade_id: setup
  locked: true
  schema_version: 3
  solution: false
  task: false
---
import torch
```

Write `double(X)`, which returns `2 * X`.

```{code-cell} ipython3
---
nbgrader:
  grade: false
  grade_id: double
  locked: false
  schema_version: 3
  solution: true
  task: false
---
def double(X):
    ### BEGIN SOLUTION
    return X + X
    ### END SOLUTION
```

```{code-cell} ipython3
---
nbgrader:
  grade: true
  grade_id: test_double
  locked: true
  points: 1
  schema_version: 3
  solution: false
  task: false
---
assert double(torch.ones(2)).tolist() == [2.0, 2.0]
```

```{code-cell} ipython3
---
nbgrader:
  grade: true
  grade_id: hidden_double
  locked: true
  points: 2
  schema_version: 3
  solution: false
  task: false
---
# Hidden tests (2 points): random tensors, float32 and float64, every device.
### BEGIN HIDDEN TESTS
from cnngrader.grading import check
check('double', double)
### END HIDDEN TESTS
```
'''

CHECKS = '''\
"""Hidden tests of the toy assignment."""
from cnngrader.grading import core

REFERENCES = {"double": lambda X: 2 * X}
FORBIDDEN = {"double": core.forbid([])}


def _build(spec, g, integer):
    X = core.data(spec, g, integer)
    return (X,), {}, f"X {spec}", (("X", X),)


CASES = {"double": core.tensor_cases(REFERENCES["double"], [(1,), (2, 3), (3, 2, 2)], _build, 70)}
CHECKS = {"double": core.simple_check(CASES["double"], FORBIDDEN["double"])}
'''


@pytest.fixture(scope="module")
def toy_course(tmp_path_factory) -> Path:
    """A copy of the course (manifest, configuration, assignments) plus the seventh assignment."""
    root = tmp_path_factory.mktemp("course7")
    for name in ("course.toml", "nbgrader_config.py"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "assignments", root / "assignments")
    # The procedure: a chapter stub, an assignment notebook, a checks module, one manifest entry.
    (root / "book").mkdir()
    (root / "book" / f"{AID}.md").write_text(CHAPTER)
    (root / "assignments" / AID).mkdir()
    (root / "assignments" / AID / f"{AID}.md").write_text(NOTEBOOK)
    (root / "assignments" / AID / "checks.py").write_text(CHECKS)
    with open(root / "course.toml", "a") as f:
        f.write(MANIFEST_ENTRY)
    return root


def test_a_seventh_assignment_is_generated_and_graded(toy_course):
    course = load_course(toy_course)
    assert course.ids[-1] == AID and len(course.ids) == 7
    assert (toy_course / course.get(AID).chapter).is_file()

    assert generate([AID], course=course) == [AID]
    release = toy_course / "exercises" / AID / f"{AID}.ipynb"
    assert release.is_file() and (toy_course / "solutions" / AID / f"{AID}.ipynb").is_file()
    student_text = release.read_text()
    assert "X + X" not in student_text and "check(" not in student_text

    solved = solution_submission(AID, release.parent.parent, course)
    blank = nbformat.read(release, as_version=4)
    for student, nb in (("alice", solved), ("bob", blank)):
        dest = toy_course / "submitted" / student / AID
        dest.mkdir(parents=True)
        nbformat.write(nb, dest / f"{AID}.ipynb")
    try:
        result = grade_course(course=course, assignments=[AID], feedback=False, report=False)
    finally:
        stop_zygote()
    assert not result.failures, result.failures
    rows = gradebook_rows(course_config(course=course))
    scores = {(r["student"], r["cell"]): r["score"] for r in rows}
    assert scores == {("alice", "test_double"): 1.0, ("alice", "hidden_double"): 2.0,
                      ("bob", "test_double"): 0.0, ("bob", "hidden_double"): 0.0}


def _lists_all(text: str, names: list[str], span: int = 1000) -> bool:
    """Whether every name occurs within `span` characters after some occurrence of the first."""
    start = text.find(names[0])
    while start >= 0:
        window = text[start:start + span]
        if all(name in window for name in names):
            return True
        start = text.find(names[0], start + 1)
    return False


def test_the_manifest_is_the_only_list():
    """The id list is read from course.toml: no tracked code or configuration of the course lists
    every assignment (the table of contents lists the chapters, and finds the exercises by a glob)."""
    ids = list(load_course(REPO).ids)
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    listed = []
    for name in tracked.splitlines():
        path = REPO / name
        if path.suffix not in {".py", ".yml", ".toml", ".cfg", ""} or not path.is_file():
            continue
        names = [f"exercises/{aid}" for aid in ids] if path.name == "_toc.yml" else ids
        if _lists_all(path.read_text(errors="replace"), names):
            listed.append(name)
    assert listed == ["course.toml"], listed

"""Odd submissions, without a kernel: which cells' nbgrader claims the gradebook vouches for
(cnngrader/pipeline/claims.py), and the files beside a notebook that are set aside
(nbgrader_hooks.set_aside_odd_files). tests/test_tamper_odd.py grades the same cases end to end."""
from __future__ import annotations

import copy
import os
import socket
from types import SimpleNamespace

import nbformat
from conftest import REPO

from cnngrader.pipeline.claims import forged_claims
from cnngrader.pipeline.nbgrader_hooks import graded_notebooks, set_aside_odd_files

AID = "02_cross_correlation"


def _release():
    return nbformat.read(REPO / "exercises" / AID / f"{AID}.ipynb", as_version=4)


def _gradebook_notebook(nb):
    """What the gradebook holds of a released notebook: its nbgrader cells' names, checksums and sources."""
    cells = [SimpleNamespace(name=c.metadata.nbgrader["grade_id"], checksum=c.metadata.nbgrader.get("checksum"),
                             source=c.source) for c in nb.cells if "nbgrader" in c.metadata]
    return SimpleNamespace(source_cells=cells)


def _index(nb, gid):
    return [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells].index(gid)


def test_an_untouched_notebook_has_no_forged_claim():
    nb = _release()
    assert forged_claims(nb, _gradebook_notebook(nb)) == []


def test_a_solution_cell_that_claims_to_be_the_setup_cell_is_forged_wherever_it_is():
    release = _release()
    source = _gradebook_notebook(release)
    for before in (False, True):  # after the real setup cell (nbgrader would keep its claim), or before it
        nb = copy.deepcopy(release)
        impostor = nb.cells[_index(nb, "corr2d")]
        impostor.source = "def corr2d(X, K):\n    return X\n"
        impostor.metadata["nbgrader"] = copy.deepcopy(nb.cells[_index(nb, "setup")].metadata["nbgrader"])
        if before:
            nb.cells.remove(impostor)
            nb.cells.insert(0, impostor)
        setup = [i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "setup"]
        at = nb.cells.index(impostor)
        real = [i for i in setup if i != at][0]
        assert forged_claims(nb, source) == [(at, f"claims to be 'setup', which is cell {real + 1}")]


def test_of_two_edited_claimants_the_closer_source_is_genuine():
    release = _release()
    nb = copy.deepcopy(release)
    gid = "hidden_corr2d"  # its source in a submission never matches the gradebook's (the hidden tests are out)
    twin = copy.deepcopy(nb.cells[_index(nb, gid)])
    twin.source = "print('full marks please')"
    nb.cells.insert(_index(nb, gid) + 1, twin)
    assert [i for i, _ in forged_claims(nb, _gradebook_notebook(release))] == [_index(nb, gid) + 1]


def test_a_grade_cell_the_assignment_does_not_have_is_forged():
    release = _release()
    nb = copy.deepcopy(release)
    extra = nbformat.v4.new_code_cell("pass")
    extra.metadata["nbgrader"] = {"grade": True, "grade_id": "bonus", "locked": False, "points": 100,
                                  "schema_version": 3, "solution": False, "task": False}
    odd = nbformat.v4.new_code_cell("pass")
    odd.metadata["nbgrader"] = {"grade": True, "grade_id": ["not", "a", "name"], "points": "many"}
    plain = nbformat.v4.new_code_cell("pass")
    plain.metadata["nbgrader"] = {"grade": False, "grade_id": "scratch", "locked": False, "solution": False}
    nb.cells += [extra, odd, plain]
    n = len(nb.cells)
    assert forged_claims(nb, _gradebook_notebook(release)) == [
        (n - 3, "claims to be a grade cell worth 100 points 'bonus', which the assignment does not have"),
        (n - 2, "claims to be a grade cell worth 'many' points ['not', 'a', 'name'], which the assignment "
                "does not have"),
    ]  # a cell that claims nothing (all flags false) is left as it is


def test_odd_files_beside_a_notebook_are_set_aside(tmp_path):
    folder = tmp_path / AID
    (folder / "data").mkdir(parents=True)
    nbformat.write(_release(), folder / f"{AID}.ipynb")
    (folder / "..ipynb").write_text('{"cells": [')
    (folder / "notes.txt").write_text("kept")
    os.mkfifo(folder / "pipe")
    os.mkfifo(folder / "stream.ipynb")
    os.mkfifo(folder / "data" / "deep")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "sock"))
    try:
        lines = set_aside_odd_files(folder)
    finally:
        server.close()
    assert sorted(lines) == sorted([
        "removed the named pipe 'pipe' from the submission: only regular files are graded",
        "removed the named pipe 'stream.ipynb' from the submission: only regular files are graded",
        "removed the named pipe 'data/deep' from the submission: only regular files are graded",
        "removed the socket 'sock' from the submission: only regular files are graded",
        "ignored '..ipynb': a hidden file is not a notebook to grade",
    ])
    assert sorted(p.name for p in folder.rglob("*")) == ["..ipynb", f"{AID}.ipynb", "data", "notes.txt"]
    assert graded_notebooks(folder) == [folder / f"{AID}.ipynb"]
    assert set_aside_odd_files(folder) == ["ignored '..ipynb': a hidden file is not a notebook to grade"]

"""nbgrader's listing of a submission's files, replaced by a one-pass equivalent (cnngrader.pipeline.listing).

The same answers as nbgrader's own utils.find_all_files / is_ignored on a tree with hidden names,
ignored folders, nested folders and names with glob characters; one folder read per folder (nbgrader's
reads the folder again per file, which is what made it quadratic); and the course's nbgrader_config.py
installs it. No wall-clock timing here: `make bench BENCH="--only listing"` times 1,000 against 4,000 files.
"""
from __future__ import annotations

import importlib.util
import os

import pytest
from conftest import REPO

from cnngrader.pipeline import listing

DEFAULT_IGNORE = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]


def _shipped():
    """nbgrader.utils as nbgrader ships it (a fresh copy of the module: the course replaces two functions)."""
    import nbgrader.utils

    spec = importlib.util.spec_from_file_location("_nbgrader_utils_shipped", nbgrader.utils.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree(root):
    for rel in ["a.ipynb", "data.csv", ".hidden", ".ipynb_checkpoints/a-checkpoint.ipynb", "x.pyc",
                "__pycache__/m.cpython-311.pyc", "sub/b.txt", "sub/deeper/c.txt", "sub/.ipynb_checkpoints/d",
                "feedback/a.html", "odd[1].txt", "star*.txt", "sub/feedback/e.txt", "pyc", "__pycache__x/f"]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")


@pytest.mark.parametrize("exclude", [None, [], DEFAULT_IGNORE, DEFAULT_IGNORE + ["*.ipynb"],
                                     ["*"], [".*"], ["odd[1].txt"], ["sub"], ["*.txt", "d*"], ["sub/b.txt"]])
def test_the_same_files_as_nbgrader(tmp_path, exclude):
    _tree(tmp_path)
    assert sorted(listing.find_all_files(str(tmp_path), exclude)) == \
        sorted(_shipped().find_all_files(str(tmp_path), exclude))


def test_each_name_as_nbgrader_judges_it(tmp_path):
    _tree(tmp_path)
    shipped = _shipped()
    patterns = DEFAULT_IGNORE + ["*", ".*", "*.ipynb", "odd[1].txt", "star*.txt", "?yc", "[._]*", "sub/b.txt"]
    for dirname, dirnames, filenames in os.walk(tmp_path):
        for name in dirnames + filenames:
            path = os.path.join(dirname, name)
            for expr in patterns:
                assert listing.is_ignored(path, [expr]) == shipped.is_ignored(path, [expr]), (path, expr)


def test_one_folder_read_per_folder(tmp_path, monkeypatch):
    """Linear: os.scandir once per folder, whatever the file count (nbgrader's globs read it once per file)."""
    for i in range(300):
        (tmp_path / f"f{i}.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "g.txt").write_text("x")
    reads = []
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path=".": reads.append(path) or real(path))
    files = listing.find_all_files(str(tmp_path), DEFAULT_IGNORE + ["*.ipynb"])
    assert len(files) == 301
    assert len(reads) == 2
    reads.clear()
    _shipped().find_all_files(str(tmp_path), DEFAULT_IGNORE + ["*.ipynb"])
    assert len(reads) > 2 * 300  # the quadratic original: a read per file and wildcard pattern, for contrast


def test_the_course_config_installs_it():
    import nbgrader.converters.base as base
    import nbgrader.utils as utils
    from traitlets.config.loader import PyFileConfigLoader

    PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    assert utils.find_all_files is listing.find_all_files
    assert utils.is_ignored is listing.is_ignored
    assert base.find_all_files is listing.find_all_files

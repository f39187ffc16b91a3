"""A damaged notebook (bytes that are not UTF-8, metadata nested 100,000 deep) is repaired and graded,
with a note; a sound one is left as it is, and a corrupt one still raises."""
from __future__ import annotations

import json

import nbformat
import pytest

from cnngrader.pipeline import notebook_read


def _nb() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# cross-correlation"), nbformat.v4.new_code_cell("x = [[1]]")]
    return nb


def test_a_sound_notebook_is_left_byte_for_byte(tmp_path):
    path = tmp_path / "a.ipynb"
    path.write_text(nbformat.writes(_nb()))
    before = path.read_bytes()
    assert notebook_read.repair(path) == []
    assert path.read_bytes() == before


def test_invalid_utf8_is_replaced_and_noted(tmp_path):
    path = tmp_path / "a.ipynb"
    raw = nbformat.writes(_nb()).encode()
    at = raw.index(b"cross-correlation")
    path.write_bytes(raw[:at] + b"\xff\xfe" + raw[at:])
    lines = notebook_read.repair(path)
    assert len(lines) == 1 and lines[0].startswith("2 bytes that are not UTF-8") and f"byte {at}" in lines[0]
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].metadata[notebook_read.NOTE_MARK] and "not UTF-8" in nb.cells[0].source
    assert nb.cells[1].source == "# \ufffd\ufffdcross-correlation"
    assert notebook_read.repair(path) == []  # repaired once: a second read finds nothing, adds no second note


def test_metadata_nested_100000_deep_is_cut_at_the_bound(tmp_path):
    path = tmp_path / "a.ipynb"
    nb = _nb()
    nb.metadata["deep"] = "@DEEP@"
    nb.cells[1].metadata["ok"] = {"list": [1, "]]]", [2]]}  # brackets inside strings do not count
    depth = 100_000
    path.write_text(nbformat.writes(nb).replace('"@DEEP@"', "[" * depth + "]" * depth))
    lines = notebook_read.repair(path)
    assert lines == [f"1 value nested more than {notebook_read.MAX_DEPTH} deep (in the notebook's or a cell's "
                     f"metadata) was replaced by null"]
    read = nbformat.read(path, as_version=4)
    deep, level = read.metadata["deep"], 3  # the notebook opens level 1, its metadata 2, the first list 3
    while deep[0] is not None:
        deep, level = deep[0], level + 1
    assert level == notebook_read.MAX_DEPTH  # the deepest list left, holding the null that replaced the rest
    assert read.cells[2].metadata["ok"] == {"list": [1, "]]]", [2]]}
    assert read.cells[0].source.count("\n- ") == 1


def test_limit_depth_counts_and_keeps_shallow_text():
    text = json.dumps({"a": [[[1]]], "b": [[2]], "s": "[[[["})
    assert notebook_read.limit_depth(text, 2) == (json.dumps({"a": [None], "b": [None], "s": "[[[["}), 2)
    assert notebook_read.limit_depth(text, 4) == (text, 0)


def test_a_corrupt_notebook_still_raises(tmp_path):
    path = tmp_path / "a.ipynb"
    path.write_text('{"cells": [')
    with pytest.raises(Exception):
        notebook_read.repair(path)

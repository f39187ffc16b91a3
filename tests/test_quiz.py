"""cnnlib.quiz: the self-checks of the book's "Check your understanding" sections."""
from __future__ import annotations

import pytest
import torch

from cnnlib import quiz


def test_numbers_match_within_tolerance_and_ints_exactly():
    assert quiz.is_correct(20, 20)
    assert not quiz.is_correct(21, 20)
    assert quiz.is_correct(0.375, 3 / 8)
    assert quiz.is_correct(8.43, 8.428, rel_tol=1e-3)
    assert not quiz.is_correct(8.43, 8.428)
    assert quiz.is_correct(torch.tensor(4.0), 4)  # a 0-d tensor is a number
    assert quiz.is_correct(4, torch.tensor(4.0))


def test_bools_strings_and_choices():
    assert quiz.is_correct(False, False) and not quiz.is_correct(True, False)
    assert quiz.is_correct("  Max ", "max")
    assert quiz.is_correct("Equivariant", "equivariant", choices=["equivariant", "invariant"])
    with pytest.raises(ValueError, match="one of"):
        quiz.is_correct("equivariance", "equivariant", choices=["equivariant", "invariant"])


def test_shapes_and_tensors():
    assert quiz.is_correct((2, 3), torch.Size([2, 3]))
    assert quiz.is_correct([2, 3], (2, 3))
    assert not quiz.is_correct((3, 2), (2, 3))
    assert not quiz.is_correct((2, 3, 1), (2, 3))
    Y = torch.tensor([[4.0, 5.0], [7.0, 8.0]])
    assert quiz.is_correct(Y.clone(), Y)
    assert not quiz.is_correct(Y + 1, Y)
    assert not quiz.is_correct(Y.flatten(), Y)  # shape counts


def test_bad_input_raises_clear_errors():
    with pytest.raises(TypeError, match="should be a number"):
        quiz.is_correct("twenty", 20)
    with pytest.raises(TypeError, match="should be a number"):
        quiz.is_correct(True, 1)  # a bool is not a number here
    with pytest.raises(TypeError, match="should be a str"):
        quiz.is_correct(1, "max")
    with pytest.raises(TypeError, match="expected must be"):
        quiz.is_correct({1: 2}, {1: 2})
    with pytest.raises(ValueError, match="at least 0"):
        quiz.is_correct(1, 1, rel_tol=-1)
    with pytest.raises(TypeError, match="question"):
        quiz.check("", 1, 1)


def test_check_prints_its_verdict(capsys):
    assert quiz.check("3.1", 20, 20) is None
    assert capsys.readouterr().out == "3.1: correct\n"
    quiz.check("3.1", 24, 20, hint="three layers of k - 1")
    out = capsys.readouterr().out
    assert "not yet" in out and "Hint: three layers of k - 1" in out and "20" not in out
    quiz.check("3.1", ..., 20)
    assert "not answered yet" in capsys.readouterr().out

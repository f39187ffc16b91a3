"""Self-checks for the book's "Check your understanding" sections.

A question's answer is typed into a notebook cell and compared, in place, with the value the
chapter computes (with cnnlib or torch). Nothing is sent anywhere and nothing is graded:
`check` prints whether the answer is right.

    from cnnlib import quiz
    answer = 32                                                  # your answer
    quiz.check("3.1", answer, cnnlib.conv_output_shape(32, 5, padding=2))   # prints "3.1: correct"

`check` prints and returns nothing, so a notebook cell shows only its message; `is_correct` is the
same comparison as a True/False value, for code.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import torch

__all__ = ["check", "is_correct"]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, numbers.Real):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, torch.Tensor):
        return "tensor"
    if isinstance(value, (tuple, list, torch.Size)):
        return "sequence"
    return type(value).__name__


def _normalise(text: str) -> str:
    return " ".join(text.strip().lower().split())


def is_correct(answer: Any, expected: Any, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9,
               choices: Sequence[str] | None = None) -> bool:
    """Whether `answer` matches `expected`.

    - numbers (int, float, 0-d tensors): equal within rel_tol and abs_tol (ints exactly, by default);
    - bools: equal, and a bool never matches a number;
    - strings: equal after lower-casing and collapsing white space; with `choices`, the answer
      must be one of them;
    - tuples, lists and torch.Size: the same length, each element matched as above, so a shape
      (2, 3) matches torch.Size([2, 3]);
    - tensors: the same shape and allclose within the tolerances.

    Raises TypeError when the answer has a different kind from the expected value (a string for
    a number, say) or the expected value is of no supported kind, and ValueError for a negative
    tolerance or an answer that is not among `choices`.
    """
    if rel_tol < 0 or abs_tol < 0:
        raise ValueError(f"rel_tol and abs_tol must be at least 0, got {rel_tol} and {abs_tol}")
    if isinstance(answer, torch.Tensor) and answer.dim() == 0 and _kind(expected) == "number":
        answer = answer.item()
    if isinstance(expected, torch.Tensor) and expected.dim() == 0 and _kind(answer) == "number":
        expected = expected.item()
    kind, got = _kind(expected), _kind(answer)
    if kind not in ("bool", "number", "str", "tensor", "sequence"):
        raise TypeError(f"expected must be a number, bool, str, tuple, list or tensor, got {type(expected).__name__}")
    if kind != got:
        raise TypeError(f"the answer should be a {kind}, got {type(answer).__name__} {answer!r}")
    if kind == "bool":
        return answer is expected or bool(answer) == bool(expected)
    if kind == "number":
        return math.isclose(float(answer), float(expected), rel_tol=rel_tol, abs_tol=abs_tol)
    if kind == "str":
        if choices is not None:
            allowed = {_normalise(c) for c in choices}
            if _normalise(answer) not in allowed:
                raise ValueError(f"the answer must be one of {list(choices)}, got {answer!r}")
        return _normalise(answer) == _normalise(expected)
    if kind == "tensor":
        if tuple(answer.shape) != tuple(expected.shape):
            return False
        return bool(torch.allclose(answer.detach().cpu().double(), expected.detach().cpu().double(),
                                   rtol=rel_tol, atol=abs_tol))
    if len(answer) != len(expected):
        return False
    return all(is_correct(a, e, rel_tol=rel_tol, abs_tol=abs_tol) for a, e in zip(answer, expected))


def check(question: str, answer: Any, expected: Any, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9,
          choices: Sequence[str] | None = None, hint: str | None = None) -> None:
    """Print whether the answer to `question` is right (see is_correct for a True/False value).

    `answer` left as `...` (Ellipsis) counts as not answered yet: a reminder is printed. Otherwise the
    answer is compared with `expected` by `is_correct` (same tolerances, `choices` and errors). A wrong
    answer prints `hint` when one is given; the expected value is not printed.
    """
    if not isinstance(question, str) or not question.strip():
        raise TypeError(f"question must be a non-empty str (such as '3.1'), got {question!r}")
    if answer is ...:
        print(f"{question}: not answered yet: replace ... with your answer and run the cell again")
        return
    right = is_correct(answer, expected, rel_tol=rel_tol, abs_tol=abs_tol, choices=choices)
    if right:
        print(f"{question}: correct")
    else:
        print(f"{question}: not yet, {answer!r} is not right." + (f" Hint: {hint}" if hint else ""))

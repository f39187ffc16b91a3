"""A kernel's reply that does not match the protocol is that cell's 0 with a reason, in grading
(pipeline/verdict.grade_cell) and in the pre-submission check (precheck.run_checks) alike: both run the one
verdict loop (cnngrader.check_verdict), and no reply can make it raise.

The kernel here is the real kernel side (cnngrader.kernel.answer) on the course library's reference
implementations: its honest replies are understood (the verdict is about the code: calling cnnlib is the
shortcut each assignment forbids, and cnnlib's Conv2D takes other arguments than the assignment's). Then every
reply but the first probe's ("describe": is it callable?) is bent out of the protocol, so that the checks get
as far as reading a call's, a layer's, a model's or a training step's run: the wrong shape (a list, a number, a
string where a mapping is expected), the wrong types (every field of another kind), keys missing, and an extra
level of nesting (the reply inside a mapping, or inside a list).
"""
from __future__ import annotations

import json
from typing import Any, Callable

import pytest
from conftest import REPO

import cnnlib
from cnngrader import check_verdict, grading, precheck
from cnngrader.grading.runners import RemoteRunner
from cnngrader.kernel import answer, serialize
from cnngrader.pipeline import verdict

# One check per kind of probe reply: a function's call, a layer, a model, a training step's run, a plain value.
NAMES = ("corr2d", "Conv2D", "lenet", "train_epoch", "conv_output_shape")
SECRET = 7


def _other_kind(value: Any) -> Any:
    """A value of another JSON kind than `value`."""
    return "7" if isinstance(value, (int, float)) and not isinstance(value, bool) else 7


def _wrong_types(reply: Any) -> Any:
    if isinstance(reply, dict):
        return {key: _other_kind(value) for key, value in reply.items()}
    return {"value": [], "error": "x", "where": 5, "shortcuts": 9, "warned": {}, "tampered": "yes"}


BENT: dict[str, Callable[[Any], Any]] = {
    "a list for a mapping": lambda reply: [1, 2, 3],
    "a number for a mapping": lambda reply: 7,
    "a string for a mapping": lambda reply: "ok",
    "every field of the wrong type": _wrong_types,
    "every key missing": lambda reply: {},
    "the reply inside a mapping": lambda reply: {"reply": reply},
    "the reply inside a list": lambda reply: [reply],
}


def kernel(bend: Callable[[Any], Any] | None) -> Callable[[str], str]:
    """send(request) -> reply: the kernel side's answer on cnnlib's objects, bent by `bend` (None: honest)."""
    namespace = {name: getattr(cnnlib, name) for name in NAMES}

    def send(request: str) -> str | list[str]:
        reply = answer(request, namespace)
        if bend is None or json.loads(request).get("op") == "describe":
            return reply
        if isinstance(reply, list):  # a batch: each call's reply is bent
            return [serialize.dumps(bend(serialize.loads(one))) for one in reply]
        return serialize.dumps(bend(serialize.loads(reply)))

    return send


@pytest.mark.parametrize("name", NAMES)
def test_the_honest_replies_are_understood_in_both(name):
    outputs = verdict.grade_cell([name], kernel(None), SECRET, [], str(REPO))
    assert len(outputs) == 1 and outputs[0].evalue.startswith(name), outputs
    assert "could not be checked" not in outputs[0].evalue  # a verdict on the code, not on the reply
    cell = precheck.GradedCell(f"hidden_{name}", 1.0, (name,))
    (result,) = precheck.run_checks("any", [cell], RemoteRunner(kernel(None), SECRET), None, grading.registry(REPO))
    assert result.status == precheck.FAIL and result.reason == outputs[0].evalue


@pytest.mark.parametrize("bent", sorted(BENT))
@pytest.mark.parametrize("name", NAMES)
def test_a_reply_out_of_the_protocol_is_a_zero_with_a_reason_when_graded(name, bent):
    outputs = verdict.grade_cell([name], kernel(BENT[bent]), SECRET, [], str(REPO))
    assert len(outputs) == 1 and outputs[0].output_type == "error", outputs
    assert outputs[0].ename == "GradingError" and outputs[0].evalue.startswith(name), outputs[0].evalue


@pytest.mark.parametrize("bent", sorted(BENT))
@pytest.mark.parametrize("name", NAMES)
def test_the_pre_submission_check_says_the_same(name, bent):
    send = kernel(BENT[bent])
    cell = precheck.GradedCell(f"hidden_{name}", 1.0, (name,))
    (result,) = precheck.run_checks("any", [cell], RemoteRunner(send, SECRET), None, grading.registry(REPO))
    graded = verdict.grade_cell([name], send, SECRET, [], str(REPO))[0]
    assert result.status == precheck.FAIL and result.reason == graded.evalue


def test_a_check_that_breaks_on_a_reply_names_the_check_and_what_broke():
    def broken() -> None:
        {}.get("run").get("value")  # what a check does with a reply missing its "run"

    reason = check_verdict.checked("train_epoch", broken)
    assert reason.startswith("train_epoch could not be checked: the kernel's reply did not hold what the check")
    assert "AttributeError" in reason


# A batch (several calls in one request) answered out of the protocol: not a list, or not one reply per call.
BATCH_BENT: dict[str, Callable[[list], Any]] = {
    "a string for the list": lambda replies: replies[0],
    "one reply fewer than calls": lambda replies: replies[:-1],
    "one reply more than calls": lambda replies: replies + replies[:1],
    "no reply at all": lambda replies: [],
}


@pytest.mark.parametrize("bent", sorted(BATCH_BENT))
def test_a_batch_out_of_the_protocol_is_a_zero_with_a_reason(bent):
    namespace = {"corr2d": cnnlib.corr2d}

    def send(request: str) -> Any:
        reply = answer(request, namespace)
        return BATCH_BENT[bent](reply) if isinstance(reply, list) else reply

    (output,) = verdict.grade_cell(["corr2d"], send, SECRET, [], str(REPO))
    assert output.ename == "GradingError", output
    assert output.evalue == "corr2d could not be checked: the kernel's reply was not one per call", output.evalue


def _wrong_then_gone(request: str, namespace: dict) -> Any:
    """Every call of a batch answered, then the kernel said it was gone after the first two."""
    from cnngrader.grading.runners import KernelGone

    reply = answer(request, namespace)
    if not isinstance(reply, list):
        return reply
    raise KernelGone("corr2d did not return within 5 s (its limit for one call)", reply[:2])


def test_a_batch_cut_short_names_a_wrong_value_that_came_before_it():
    def corr2d(X, K):  # wrong on every case: the first reply shows it
        return _own_corr2d(X, K) + 1

    (output,) = verdict.grade_cell(["corr2d"], lambda r: _wrong_then_gone(r, {"corr2d": corr2d}), SECRET, [],
                                   str(REPO))
    assert output.ename == "GradingError" and "did not return" not in output.evalue, output.evalue
    assert "The smallest failing case" in output.evalue, output.evalue


def test_a_batch_cut_short_after_right_values_says_what_did_not_return():
    (output,) = verdict.grade_cell(["corr2d"], lambda r: _wrong_then_gone(r, {"corr2d": _own_corr2d}), SECRET, [],
                                   str(REPO))
    assert output.evalue == ("corr2d could not be checked: corr2d did not return within 5 s (its limit for one "
                             "call)"), output.evalue


def _own_corr2d(X, K):
    h, w = K.shape
    return (X.unfold(0, h, 1).unfold(1, w, 1) * K).sum(dim=(-1, -2))  # (H-h+1, W-w+1)

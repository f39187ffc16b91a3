"""A batch request on a real kernel (cnngrader.kernel_rpc): its replies arrive one per call, in order; each
call has its own time limit (the deadline moves on with each reply, never past `last`); a call past its
limit leaves the replies of those before it."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from jupyter_client.manager import start_new_kernel

from cnngrader import kernel_rpc
from cnngrader.kernel import serialize

# The kernel side is imported first (torch: seconds on a busy machine), outside every request's time.
NAP = "import time\nimport cnngrader.kernel\ndef nap(s):\n    time.sleep(s)\n    return s\n"


@pytest.fixture(scope="module")
def kernel():
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        kc.execute_interactive(NAP, timeout=120)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _batch(seconds: list[float]) -> str:
    calls = [{"op": "call", "args": serialize.encode({"args": [s], "kwargs": {}})} for s in seconds]
    return json.dumps({"limit": 1.0, "name": "nap", "batch": len(calls), "policy": {}, "calls": calls},
                      separators=(",", ":"))


def _send(kernel, seconds: list[float], per_call: float, last_in: float) -> kernel_rpc.Reply:
    km, kc = kernel
    now = time.monotonic()
    reply = asyncio.run(kernel_rpc.send(kc, km, _batch(seconds), now + per_call, per_call=per_call,
                                        last=now + last_in))
    if reply.outcome == kernel_rpc.TIMED_OUT:
        km.interrupt_kernel()
        kc.execute_interactive("pass", timeout=30)  # drains the interrupted request's messages
    return reply


def _naps(reply: kernel_rpc.Reply) -> list[float]:
    return [serialize.loads(text)["value"] for text in reply.texts]


def test_a_batch_is_answered_one_reply_per_call_in_order(kernel):
    assert kernel_rpc.batch_size(_batch([0.0, 0.01, 0.02])) == 3
    reply = _send(kernel, [0.0, 0.01, 0.02], per_call=10.0, last_in=30.0)
    assert reply.outcome == kernel_rpc.ANSWERED and _naps(reply) == [0.0, 0.01, 0.02]


def test_each_call_has_its_own_limit(kernel):
    # 3 s in all, past the first deadline (2 s), but no call takes more than its 2 s.
    reply = _send(kernel, [1.0, 1.0, 1.0], per_call=2.0, last_in=30.0)
    assert reply.outcome == kernel_rpc.ANSWERED and _naps(reply) == [1.0, 1.0, 1.0]


def test_a_call_past_its_limit_leaves_the_replies_before_it(kernel):
    start = time.monotonic()
    reply = _send(kernel, [0.0, 0.0, 30.0, 0.0], per_call=2.0, last_in=30.0)
    assert reply.outcome == kernel_rpc.TIMED_OUT and _naps(reply) == [0.0, 0.0]
    assert time.monotonic() - start < 20


def test_the_batch_never_runs_past_last(kernel):
    reply = _send(kernel, [1.0, 3.0, 1.0], per_call=5.0, last_in=2.5)
    assert reply.outcome == kernel_rpc.TIMED_OUT and _naps(reply) == [1.0]


def test_a_request_runs_silently_and_the_kernel_does_not_pause_after_it(kernel):
    # A notebook's post_run_cell hook does not run for the grader's requests, which the kernel does not echo
    # on iopub either; the grader's side has turned off ipykernel's pause after each execute request.
    km, kc = kernel
    kc.execute_interactive("hooked = []\nget_ipython().events.register('post_run_cell', lambda r: hooked.append(1))",
                           timeout=30)
    outputs = []
    reply = asyncio.run(kernel_rpc.send(kc, km, _batch([0.0, 0.0]), time.monotonic() + 30))
    assert reply.outcome == kernel_rpc.ANSWERED and _naps(reply) == [0.0, 0.0]
    kc.execute_interactive("print(len(hooked), get_ipython().kernel._execute_sleep)", timeout=30,
                           output_hook=outputs.append)
    printed = [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"]
    assert printed == ["1 0.0\n"]  # the hook ran once, after the cell that registered it; not for the request




def test_a_reply_does_not_wait_for_the_notebook_streams_to_flush(kernel):
    # ipykernel's display_pub.publish flushes sys.stdout and sys.stderr before each message, a wait on its IO
    # thread each; the replies carry nothing printed, and go out without: 10 replies, not 10 flushes.
    km, kc = kernel
    kc.execute_interactive(
        "import sys\n"
        "class Counting:\n"
        "    def __init__(self, stream): self.stream, self.flushes = stream, 0\n"
        "    def write(self, text): return self.stream.write(text)\n"
        "    def flush(self):\n"
        "        self.flushes += 1\n"
        "        return self.stream.flush()\n"
        "    def __getattr__(self, name): return getattr(self.stream, name)\n"
        "saved = sys.stdout\n"
        "sys.stdout = Counting(saved)\n", timeout=30)
    outputs = []
    try:
        reply = asyncio.run(kernel_rpc.send(kc, km, _batch([0.0] * 10), time.monotonic() + 30))
        assert reply.outcome == kernel_rpc.ANSWERED and _naps(reply) == [0.0] * 10
    finally:
        kc.execute_interactive("flushes = sys.stdout.flushes\nsys.stdout = saved\nprint(flushes)", timeout=30,
                               output_hook=outputs.append)
    printed = [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"]
    # The kernel's own flushes after each execute request: 4 in all here, 14 when each reply flushed both.
    assert len(printed) == 1 and int(printed[0]) < 10, printed

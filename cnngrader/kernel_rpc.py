"""One request from the host to the grader's side in a kernel (cnngrader.kernel.serve), and its reply: the
loop that grading (GradingExecute) and the pre-submission check (cnn-check) both run.

The request goes out as the user expression of a silent execute request; its reply is the display message of
MIME type REPLY_MIME that evaluating it publishes. The loop reads the iopub channel until the kernel goes idle
for the request, then the shell channel until its execute_reply, so that no message of it is left for the next
request.
It waits until `deadline` (time.monotonic) at most, and notices within a second that the kernel died.
What to do about a request that timed out (interrupt, kill) is the caller's decision.

A batch request (several calls of one function, `"batch":N` in its head) saves a round trip per call: its
N replies arrive one display message each, as each call returns, and with `per_call` seconds each call
gets its own time limit (the deadline moves on as each reply arrives, never past `last`).
"""
from __future__ import annotations

import re
from queue import Empty
from time import monotonic
from typing import Any, NamedTuple

from jupyter_core.utils import ensure_async

ANSWERED, TIMED_OUT, DEAD = "answered", "timed out", "dead"


# What the host reads of a request without parsing it: the limit of one call, the function, a batch's size.
HEAD = re.compile(r'\{(?:"limit":([0-9.]+),)?"name":"(\w+)"(?:,"batch":(\d+))?')


class Reply(NamedTuple):
    outcome: str  # ANSWERED, TIMED_OUT or DEAD
    text: str | None  # the reply's JSON: None unless it was answered with one reply of at most max_bytes
    texts: tuple = ()  # a batch's replies in order, up to the first that did not arrive


def batch_size(request: str) -> int | None:
    head = HEAD.match(request)
    return int(head.group(3)) if head and head.group(3) else None


def complete(reply: Reply, request: str) -> str | list[str] | None:
    """What `request` got in full: the reply's text, or every reply of a batch; None if anything is missing."""
    size = batch_size(request)
    if size is None:
        return reply.text
    return list(reply.texts) if reply.outcome == ANSWERED and len(reply.texts) == size else None


def serve_code(request: str) -> str:
    """The code that has the kernel's grader side answer `request` (JSON)."""
    return f"__import__('cnngrader.kernel', fromlist=['serve']).serve({request!r})"


async def send(kc: Any, km: Any, request: str, deadline: float, max_bytes: int | None = None,
               per_call: float | None = None, last: float | None = None) -> Reply:
    """Run one request in the kernel of client `kc` and manager `km`; the outcome and the reply's text (a
    batch's: texts; max_bytes bounds their sum)."""
    # Imported here: the kernel side imports torch, which the host needs only once it sends a request.
    from cnngrader.kernel import REPLY_MIME

    size = batch_size(request)
    last = deadline if last is None else last
    # The request goes as a user expression of an empty silent cell: the kernel evaluates it as it is, where a
    # cell's code would be hashed (ipykernel, in pure Python), tokenized and transformed (IPython) first. silent:
    # the kernel neither echoes the request on iopub nor runs the notebook's pre/post_run_cell hooks.
    msg_id = kc.execute("", silent=True, store_history=False, allow_stdin=False,
                        user_expressions={"reply": serve_code(request)})
    reply, idle = None, False
    texts: list = [None] * (size or 0)
    total = 0
    while (remaining := deadline - monotonic()) > 0:
        channel = kc.shell_channel if idle else kc.iopub_channel
        try:
            msg = await ensure_async(channel.get_msg(timeout=min(remaining, 1.0)))
        except Empty:
            if not await ensure_async(km.is_alive()):
                return Reply(DEAD, None, _prefix(texts))
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if idle:
            if msg["msg_type"] == "execute_reply":
                return Reply(ANSWERED, reply, _prefix(texts))
        elif msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
            idle = True
        elif msg["msg_type"] == "display_data":
            data = msg["content"].get("data", {}).get(REPLY_MIME)
            if not isinstance(data, str) or (max_bytes is not None and total + len(data) > max_bytes):
                continue
            if size is None:
                reply = data
                continue
            index = (msg["content"].get("metadata") or {}).get(REPLY_MIME)
            if type(index) is int and 0 <= index < size:
                total += len(data)
                texts[index] = data
                if per_call is not None:
                    deadline = min(last, monotonic() + per_call)
    return Reply(TIMED_OUT, None, _prefix(texts))


def _prefix(texts: list) -> tuple:
    """The replies up to the first that did not arrive."""
    return tuple(texts[:texts.index(None)] if None in texts else texts)

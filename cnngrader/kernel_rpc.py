"""One request from the host to the grader's side in a kernel (cnngrader.kernel.serve), and its reply: the
loop that grading (GradingExecute) and the pre-submission check (cnn-check) both run.

The request goes out as a silent execute request; its reply is the display message of MIME type REPLY_MIME
that the execution publishes. The loop reads the iopub channel until the kernel goes idle for the request,
then the shell channel until its execute_reply, so that no message of it is left for the next request.
It waits until `deadline` (time.monotonic) at most, and notices within a second that the kernel died.
What to do about a request that timed out (interrupt, kill) is the caller's decision.
"""
from __future__ import annotations

from queue import Empty
from time import monotonic
from typing import Any, NamedTuple

from jupyter_core.utils import ensure_async

ANSWERED, TIMED_OUT, DEAD = "answered", "timed out", "dead"


class Reply(NamedTuple):
    outcome: str  # ANSWERED, TIMED_OUT or DEAD
    text: str | None  # the reply's JSON: None unless it was answered with one reply of at most max_bytes


def serve_code(request: str) -> str:
    """The code that has the kernel's grader side answer `request` (JSON)."""
    return f"__import__('cnngrader.kernel', fromlist=['serve']).serve({request!r})"


async def send(kc: Any, km: Any, request: str, deadline: float, max_bytes: int | None = None) -> Reply:
    """Run one request in the kernel of client `kc` and manager `km`; the outcome and the reply's text."""
    # Imported here: the kernel side imports torch, which the host needs only once it sends a request.
    from cnngrader.kernel import REPLY_MIME

    msg_id = kc.execute(serve_code(request), store_history=False, allow_stdin=False)
    reply, idle = None, False
    while (remaining := deadline - monotonic()) > 0:
        channel = kc.shell_channel if idle else kc.iopub_channel
        try:
            msg = await ensure_async(channel.get_msg(timeout=min(remaining, 1.0)))
        except Empty:
            if not await ensure_async(km.is_alive()):
                return Reply(DEAD, None)
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if idle:
            if msg["msg_type"] == "execute_reply":
                return Reply(ANSWERED, reply)
        elif msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
            idle = True
        elif msg["msg_type"] == "display_data":
            data = msg["content"].get("data", {}).get(REPLY_MIME)
            if isinstance(data, str) and (max_bytes is None or len(data) <= max_bytes):
                reply = data
    return Reply(TIMED_OUT, None)

"""The grader's kernel client decodes no iopub message over its cap (cnngrader/pipeline/kernel_client.py).

Messages are sent with jupyter_client's own Session over a loopback PUB/SUB pair, as a kernel sends them,
and read back through CappedIOPubChannel; then a real kernel prints 24 MiB in one call.
"""
from __future__ import annotations

import asyncio
import tracemalloc

import zmq
import zmq.asyncio
from jupyter_client.session import Session

from cnngrader.pipeline.kernel_client import CappedIOPubChannel

CAP = 2**20


async def _pair_roundtrip(messages: list[tuple[str, dict, dict]], expect: int) -> tuple[list[dict], dict]:
    """Send (msg_type, content, header overrides) messages through a PUB/SUB pair; read `expect` back."""
    ctx = zmq.asyncio.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    session = Session(key=b"secret")
    try:
        port = pub.bind_to_random_port("tcp://127.0.0.1")
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(f"tcp://127.0.0.1:{port}")
        channel = CappedIOPubChannel(sub, session)
        channel.max_bytes = CAP
        parent = session.msg("execute_request", {"code": "print(x)"})
        for _ in range(500):  # a bounded wait for the subscription to reach the publisher
            session.send(pub, "status", {"execution_state": "busy"}, parent=parent)
            try:
                await channel.get_msg(timeout=0.02)
                break
            except Exception:  # queue.Empty until connected
                continue
        else:
            raise AssertionError("the SUB socket never connected")
        while True:  # drain the handshake messages
            try:
                await channel.get_msg(timeout=0.05)
            except Exception:  # empty: drained
                break
        for msg_type, content, header in messages:
            msg = session.msg(msg_type, content, parent=parent)
            msg["header"].update(header)
            session.send(pub, msg)
        return [await channel.get_msg(timeout=10) for _ in range(expect)], parent
    finally:
        sub.close(0)
        pub.close(0)
        ctx.term()


def roundtrip(messages, expect=None):
    return asyncio.run(_pair_roundtrip(messages, len(messages) if expect is None else expect))


def test_small_messages_pass_unchanged():
    got, parent = roundtrip([("stream", {"name": "stdout", "text": "hello\n"}, {})])
    assert got[0]["msg_type"] == "stream" and got[0]["content"] == {"name": "stdout", "text": "hello\n"}
    assert got[0]["parent_header"]["msg_id"] == parent["header"]["msg_id"]


def test_a_huge_message_is_replaced_by_a_note_before_it_is_decoded():
    big = "x" * (8 * CAP)
    tracemalloc.start()
    try:
        got, parent = roundtrip([("stream", {"name": "stdout", "text": big}, {}),
                                 ("display_data", {"data": {"text/plain": big}, "metadata": {}}, {}),
                                 ("stream", {"name": "stdout", "text": "after\n"}, {})])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for msg in got[:2]:
        assert msg["msg_type"] == "stream"
        assert msg["parent_header"]["msg_id"] == parent["header"]["msg_id"]  # still placed in its cell
        assert "dropped unread" in msg["content"]["text"] and "at most 1 MiB" in msg["content"]["text"]
    assert got[2]["content"]["text"] == "after\n"  # the channel goes on
    # the sender's own copies count here; the receiver adds no decoded copy of its 8 MiB strings
    assert peak < 4 * len(big), peak


def test_a_huge_error_stays_an_error():
    got, _ = roundtrip([("error", {"ename": "AssertionError", "evalue": "y" * (2 * CAP), "traceback": []}, {})])
    assert got[0]["msg_type"] == "error" and got[0]["content"]["ename"] == "OutputTooLarge"


def test_a_message_with_huge_headers_is_dropped_whole():
    got, _ = roundtrip([("stream", {"name": "stdout", "text": "x"}, {"junk": "z" * (2 * CAP)}),
                        ("stream", {"name": "stdout", "text": "next\n"}, {})], expect=1)
    assert got[0]["content"]["text"] == "next\n"  # the one with unreadable headers left no trace


def test_a_grading_kernel_printing_24_mib_at_once():
    from cnngrader.pipeline.kernel_start import GradingKernelManager

    async def run() -> tuple[list[dict], list[dict]]:
        km = GradingKernelManager(kernel_name="python3")
        await km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
            assert isinstance(kc.iopub_channel, CappedIOPubChannel)
            big, after = [], []
            await kc.execute_interactive('print("z" * (24 * 2**20))', timeout=60, output_hook=big.append)
            reply = await kc.execute_interactive('print("done")', timeout=60, output_hook=after.append)
            assert reply["content"]["status"] == "ok"
            return big, after
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)

    big, after = asyncio.run(run())
    text = "".join(m["content"].get("text", "") for m in big if m["msg_type"] == "stream")
    assert "dropped unread" in text and "z" * 1000 not in text
    assert [m["content"]["text"] for m in after if m["msg_type"] == "stream"] == ["done\n"]


def test_a_kernel_slow_to_start_is_ready_and_answers_the_next_request(tmp_path, monkeypatch):
    """Three seconds before the kernel binds its sockets, three kernel_info requests are queued: the client is
    ready at the first reply, whichever request it answers, and the next execute gets its own reply."""
    import json
    import sys
    import time

    from jupyter_client.manager import AsyncKernelManager

    spec = tmp_path / "kernels" / "slow"
    spec.mkdir(parents=True)
    argv = ["sh", "-c", f'sleep 3; exec "{sys.executable}" -m ipykernel_launcher -f "$0"', "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "slow", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))

    async def run() -> tuple[float, dict]:
        km = AsyncKernelManager(kernel_name="slow", client_class="cnngrader.pipeline.kernel_client.GradingKernelClient")
        await km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            start = time.monotonic()
            await kc.wait_for_ready(timeout=60)
            ready = time.monotonic() - start
            return ready, await kc.execute_interactive("x = 6 * 7", timeout=60)
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)

    ready, reply = asyncio.run(run())
    assert 2.5 <= ready < 30 and reply["content"]["status"] == "ok"


def test_its_sockets_try_again_every_reconnect_ms_to_reach_a_kernel_still_starting():
    # The client connects as the kernel starts, before it binds its sockets; ZeroMQ then tries again after
    # RECONNECT_IVL (100 ms by default, plus up to as much of jitter): a forked kernel was ready ~90 ms later.
    from traitlets.config import Config

    from cnngrader.pipeline.kernel_client import GradingKernelClient

    config = Config()
    config.GradingKernelClient.reconnect_ms = 25
    clients = [GradingKernelClient(), GradingKernelClient(config=config)]
    try:
        for kc, ms in zip(clients, (10, 25)):
            socket = kc.context.socket(zmq.DEALER)  # as each of its channels' sockets
            try:
                assert socket.getsockopt(zmq.RECONNECT_IVL) == ms
            finally:
                socket.close(linger=0)
        plain = zmq.Context()
        try:
            assert plain.socket(zmq.DEALER).getsockopt(zmq.RECONNECT_IVL) == 100  # ZeroMQ's default
        finally:
            plain.destroy(linger=0)
    finally:
        for kc in clients:
            kc.context.destroy(linger=0)

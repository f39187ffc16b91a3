"""The grader's client of a grading kernel: it measures each iopub message before decoding it.

A notebook that prints hundreds of MB in one go sends one huge message. jupyter_client would parse all
of it into Python objects (several times its size, in the grader's own process, outside the sandbox's
cgroup) before GradingExecute's per-cell output cap could drop it. Here the message's frames are received
without copying, their sizes added up, and a message over `max_message_bytes` is never decoded: only its
small header frames are read, and the grader keeps a short output in its place. An `error` message stays an
error, so that a cell which failed still scores 0.
"""
from __future__ import annotations

import time
from queue import Empty
from typing import Any

import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.session import extract_dates
from traitlets import Integer, Type, default

HEADER_FRAME_BYTES = 2**16  # a real header or parent header is a few hundred bytes


class CappedIOPubChannel(AsyncZMQSocketChannel):
    """An iopub channel that decodes no message over `max_bytes` (set by the client that opens it)."""

    max_bytes = 16 * 2**20

    async def _recv(self, **kwargs: Any) -> dict[str, Any]:
        assert self.socket is not None
        while True:
            frames = await self.socket.recv_multipart(copy=False)
            _, parts = self.session.feed_identities(frames, copy=False)
            size = sum(len(p) for p in parts)
            if size <= self.max_bytes:
                return self.session.deserialize(parts, copy=False)
            stub = self._stub(parts, size)
            if stub is not None:
                return stub
            # headers too large to be real: nothing of it can be placed, so nothing of it is kept

    def _stub(self, parts: list, size: int) -> dict[str, Any] | None:
        """The message `parts` (HMAC, header, parent header, metadata, content, ...) with its content
        replaced by a note; None when its headers are missing or too large to read."""
        if len(parts) < 5 or len(parts[1]) > HEADER_FRAME_BYTES or len(parts[2]) > HEADER_FRAME_BYTES:
            return None
        try:
            header = extract_dates(self.session.unpack(bytes(parts[1].bytes)))
            parent = extract_dates(self.session.unpack(bytes(parts[2].bytes)))
        except Exception:  # a kernel's headers are untrusted input; unreadable ones are dropped
            return None
        if not isinstance(header, dict) or not isinstance(parent, dict):
            return None
        note = (f"[grader: a message of {size / 2**20:.0f} MiB from the kernel was dropped unread "
                f"(at most {self.max_bytes // 2**20} MiB)]")
        if header.get("msg_type") == "error":
            content = {"ename": "OutputTooLarge", "evalue": note, "traceback": [f"OutputTooLarge: {note}"]}
        else:
            header = {**header, "msg_type": "stream"}
            content = {"name": "stdout", "text": f"\n{note}\n"}
        return {"header": header, "msg_id": header.get("msg_id", ""), "msg_type": header["msg_type"],
                "parent_header": parent, "metadata": {}, "content": content, "buffers": []}


class GradingKernelClient(AsyncKernelClient):
    """AsyncKernelClient whose iopub channel decodes no message over `max_message_bytes`, and whose sockets try
    again every `reconnect_ms` to reach a kernel that is still starting."""

    iopub_channel_class = Type(CappedIOPubChannel)
    max_message_bytes = Integer(
        16 * 2**20, help="Bytes of one iopub message above which it is dropped unread (a note takes its place)."
    ).tag(config=True)
    reconnect_ms = Integer(
        10, help="Milliseconds between a socket's tries to reach the kernel. The client connects as the kernel "
        "starts, before the kernel has bound its sockets; at ZeroMQ's default (100 ms, and up to as much again "
        "of jitter) a forked kernel's start waited ~90 ms for the next try."
    ).tag(config=True)

    @default("context")
    def _context_default(self) -> zmq.asyncio.Context:
        context = super()._context_default()  # this client's own, as jupyter_client's
        context.setsockopt(zmq.RECONNECT_IVL, self.reconnect_ms)
        return context

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        """Return once the kernel answers kernel_info on shell and its iopub reaches this client (a message
        arrives there), as jupyter_client's does, but without its last step: waiting for 0.2 s of silence on
        iopub, a fifth of a forked kernel's start. What is left there is skipped by msg_id where it is read."""
        deadline = time.monotonic() + (60.0 if timeout is None else timeout)
        while time.monotonic() < deadline:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                reply = None
            if reply is not None and reply["msg_type"] == "kernel_info_reply":  # to any of the requests sent
                try:
                    await self.iopub_channel.get_msg(timeout=0.2)  # its status message: iopub is connected
                except Empty:
                    continue
                self._handle_kernel_info_reply(reply)
                return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
        raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")

    @property
    def iopub_channel(self):
        channel = super().iopub_channel
        if channel is not None:
            channel.max_bytes = self.max_message_bytes
        return channel

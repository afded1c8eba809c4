"""Server-Sent Events plumbing of the agent API: event encoding, the run's event sink and the
streamed response (heartbeats, client disconnects).

``encode_event`` is the one SSE encoder of the API (the run stream, background run events); the
OpenAI-compatible surface writes its ``data:``-only chunks with :func:`encode_data`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = [
    "HEARTBEAT",
    "SSE_HEADERS",
    "EventSink",
    "SSEResponse",
    "encode_comment",
    "encode_data",
    "encode_event",
    "wants_event_stream",
]

logger = logging.getLogger("agenthood_mw.api")

#: The heartbeat comment line sent when nothing else was sent for a while.
HEARTBEAT: Final = b": ping\n\n"
#: Response headers of every event stream (no caching, no proxy buffering).
SSE_HEADERS: Final = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
)
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def _json(data: object) -> bytes:
    """``data`` as one line of JSON; ``bytes`` are taken as already-encoded JSON."""
    if isinstance(data, bytes):
        return data
    return _ENCODER.encode(data).encode()


def encode_event(event: str, data: object, id: str | None = None) -> bytes:
    """One SSE event: ``id:`` (optional), ``event:`` and one ``data:`` line of compact JSON.

    ``data`` is JSON-encoded (non-JSON values as their ``str``); ``bytes`` are sent as they are
    (already-encoded JSON, e.g. the exact run response). The JSON encoder escapes line breaks, so
    the data is always one line. ``event`` and ``id`` must not contain a line break (ValueError).
    """
    for name, value in (("event", event), ("id", id)):
        if value is not None and ("\n" in value or "\r" in value):
            raise ValueError(f"{name}: an SSE field cannot contain a line break")
    head = b"" if id is None else b"id: " + id.encode() + b"\n"
    return head + b"event: " + event.encode() + b"\ndata: " + _json(data) + b"\n\n"


def encode_data(data: object) -> bytes:
    """One unnamed SSE event (``data: <json>``), as OpenAI's streams send them."""
    return b"data: " + _json(data) + b"\n\n"


def encode_comment(text: str = "ping") -> bytes:
    """An SSE comment line (ignored by clients; keeps proxies from closing an idle stream)."""
    return b": " + " ".join(text.split()).encode() + b"\n\n"


def wants_event_stream(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for ``text/event-stream`` (and does not refuse it with
    ``q=0``)."""
    for item in (accept or "").split(","):
        media, *params = (part.strip().lower() for part in item.split(";"))
        if media == "text/event-stream":
            return not any(
                p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params
            )
    return False


class EventSink:
    """Where a run's events go while it streams: an unbounded in-process queue read by the
    response. :meth:`emit` never blocks (agents call it from sync code, also from the worker
    thread of a plain ``def`` agent); events emitted after the stream ended are dropped.

    ``deliver``: instead of the queue, hand each event to ``deliver(event, data)``, on the event
    loop's thread, in the order emitted (a background run keeps its events this way).
    """

    def __init__(self, deliver: Callable[[str, object], object] | None = None) -> None:
        self._deliver = deliver
        send, receive = anyio.create_memory_object_stream[tuple[str, object]](math.inf)
        self._send: MemoryObjectSendStream[tuple[str, object]] = send
        self.receive: MemoryObjectReceiveStream[tuple[str, object]] = receive
        self._thread = threading.get_ident()  # the event loop's thread

    def emit(self, event: str, data: object) -> None:
        """Queue one event (``data`` JSON-serialisable, or ``bytes`` of JSON)."""
        if threading.get_ident() != self._thread:  # a worker thread: hand over to the loop
            try:
                anyio.from_thread.run_sync(self._put, (event, data))
            except RuntimeError:  # the loop is gone: the stream is over
                return
            return
        self._put((event, data))

    def _put(self, item: tuple[str, object]) -> None:
        if self._deliver is not None:
            self._deliver(*item)
            return
        try:
            self._send.send_nowait(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return

    def close(self) -> None:
        """No more events (the response ends once the queue is drained)."""
        self._send.close()


#: Turns one queued event into bytes to send (``None``: send nothing for it).
Render = Callable[[str, object, int], bytes | None]


class SSEResponse(Response):
    """A streamed ``text/event-stream`` response fed by a producer through an :class:`EventSink`.

    ``produce(sink)`` runs in a task beside the writer; the sink closes when it returns. Each
    event is written as ``render(event, data, number)``; a comment line is sent after
    ``heartbeat`` idle seconds. When the client disconnects (``http.disconnect``, or a write
    that fails) the producer is cancelled after ``on_disconnect()`` was called, and the
    response returns normally (so the metering around it still ends the run and charges it).
    ``closing`` is sent after the last event unless the client has gone.
    """

    def __init__(
        self,
        produce: Callable[[EventSink], Awaitable[None]],
        render: Render,
        *,
        heartbeat: float,
        on_disconnect: Callable[[], None],
        closing: bytes = b"",
    ) -> None:
        super().__init__(content=None, status_code=200)
        self._produce = produce
        self._render = render
        self._heartbeat = heartbeat
        self._on_disconnect = on_disconnect
        self._closing = closing
        self.disconnected = False

    def _gone(self, scope: anyio.CancelScope) -> None:
        if not self.disconnected:
            self.disconnected = True
            self._on_disconnect()
        scope.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sink = EventSink()

        async def produce() -> None:
            try:
                await self._produce(sink)
            finally:
                sink.close()

        async def watch(cancel: anyio.CancelScope) -> None:
            while (await receive())["type"] != "http.disconnect":
                await anyio.lowlevel.checkpoint()  # a server that repeats messages never spins
            self._gone(cancel)

        await send({"type": "http.response.start", "status": 200, "headers": list(SSE_HEADERS)})
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            tg.start_soon(watch, tg.cancel_scope)
            try:
                await self._pump(sink, send)
            except OSError:  # the client went away while we wrote (ASGI spec 2.4 servers)
                self._gone(tg.cancel_scope)
            else:
                tg.cancel_scope.cancel()  # the watcher; the producer has finished
        if not self.disconnected:
            try:
                await send({"type": "http.response.body", "body": self._closing})
            except OSError:
                self.disconnected = True

    async def _pump(self, sink: EventSink, send: Send) -> None:
        """Write events as they come; the events already queued go out as one body chunk (one
        ``send``, one loop turn: an agent emitting many events between two awaits pays for
        one write, measured in benchmarks/bench_stream.py)."""
        number = 0
        receive = sink.receive
        while True:
            item: tuple[str, object] | None = None
            with anyio.move_on_after(self._heartbeat):
                try:
                    item = await receive.receive()
                except anyio.EndOfStream:
                    return
            if item is None:
                await send({"type": "http.response.body", "body": HEARTBEAT, "more_body": True})
                continue
            chunks: list[bytes] = []
            ended = False
            while item is not None:
                number += 1
                chunk = self._render(item[0], item[1], number)
                if chunk:
                    chunks.append(chunk)
                try:
                    item = receive.receive_nowait()
                except anyio.WouldBlock:
                    item = None
                except anyio.EndOfStream:
                    item, ended = None, True
            if chunks:
                body = b"".join(chunks)
                await send({"type": "http.response.body", "body": body, "more_body": True})
            if ended:
                return

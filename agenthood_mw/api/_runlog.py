"""The kept events of one background run: what ``GET /runs/{id}/events?detail=run`` streams.

A run's events (its ``status`` changes and the run events a streamed foreground run sends:
``start``, ``step``, ``delta``, ``output``, ``tool_call``, then ``result`` or ``error``) are
numbered 1, 2, 3 ... in the order they happened and kept, already encoded, in the worker process
that executes the run. At most ``cap`` of them are kept: past that the oldest go. A reader whose
next event is no longer kept first gets one ``dropped`` event (no ``id``) naming the ids it
missed, then the kept events after them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Final

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.api._runner import render_run_event
from agenthood_mw.api._sse import EventSink, encode_event

__all__ = ["RunLog"]

_HEARTBEAT: Final = 15.0


class RunLog:
    """The numbered, encoded events of one run (at most ``cap``), and who may read them."""

    __slots__ = ("_changed", "_events", "dropped", "ended", "last", "scope")

    def __init__(self, scope: MemoryScope, cap: int) -> None:
        self.scope = scope
        self._events: deque[tuple[int, bytes]] = deque(maxlen=cap)
        #: The id of the newest event (0: none yet).
        self.last = 0
        #: The newest id that is no longer kept (0: nothing dropped).
        self.dropped = 0
        #: Set once the run's final ``status`` event is in: nothing is added after it.
        self.ended = False
        self._changed = asyncio.Event()

    def add(self, event: str, data: object) -> int:
        """Number and keep one event (encoded as a streamed run's); its id (0: the log ended)."""
        if self.ended:
            return 0
        self.last += 1
        if len(self._events) == self._events.maxlen:
            self.dropped = self._events[0][0]
        self._events.append((self.last, render_run_event(event, data, self.last)))
        self._notify()
        return self.last

    def end(self) -> None:
        """The run is over: readers end once they have its last event."""
        self.ended = True
        self._notify()

    def sink(self) -> EventSink:
        """An :class:`EventSink` whose events land here, in order, as they are emitted."""
        return EventSink(deliver=self.add)

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self, after: int) -> AsyncIterator[bytes]:
        """The events after id ``after`` as they come, ending after the run's last event; a
        comment line every 15 s of silence keeps proxies from closing the stream."""
        sent = after
        while True:
            changed = self._changed
            if sent < self.dropped:
                yield encode_event("dropped", {"after": sent, "through": self.dropped})
                sent = self.dropped
            chunk = b"".join(data for event_id, data in self._events if event_id > sent)
            if chunk:
                sent = self.last  # no await since the join: the same snapshot
                yield chunk
            if self.ended and sent >= self.last:
                return
            try:
                await asyncio.wait_for(changed.wait(), _HEARTBEAT)
            except TimeoutError:
                yield b": keep-alive\n\n"

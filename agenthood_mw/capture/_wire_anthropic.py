"""Usage on the Anthropic Messages wire (JSON and SSE).

Anthropic's ``input_tokens`` excludes cache reads and writes; the readers convert to the
meter's convention (``input_tokens`` counts every prompt token) through
:func:`agenthood_mw.metering.anthropic_usage` / :class:`AnthropicStreamUsage`.
"""

from __future__ import annotations

import json
from typing import Any

from agenthood_mw.metering import AnthropicStreamUsage, ResponseUsage, anthropic_usage

__all__ = ["MessagesReader"]


class MessagesReader:
    """Messages: body ``usage``; in a stream, ``message_start`` (input and cache counts) then
    each ``message_delta`` (cumulative output). ``events`` counts the ``content_block_delta``
    events (the output estimate when the stream is cut before any ``message_delta``)."""

    provider = "anthropic"

    def __init__(self) -> None:
        self._body: ResponseUsage | None = None
        self._stream: AnthropicStreamUsage | None = None
        self.events = 0
        self._deltas = False

    @property
    def usage(self) -> ResponseUsage | None:
        if self._stream is None:
            return self._body
        found = self._stream.result
        if found is None or self._deltas or found.usage.output_tokens >= self.events:
            return found
        # Cut before any message_delta: message_start's output count (1 or so) is stale.
        return None

    def feed_body(self, body: Any) -> None:
        self._body = anthropic_usage(body)

    def feed_event(self, data: bytes) -> None:
        if b'"content_block_delta"' in data:
            self.events += 1
            return
        if b'"message_start"' in data or b'"message_delta"' in data:
            if self._stream is None:
                self._stream = AnthropicStreamUsage()
            event = json.loads(data)
            if event.get("type") == "message_delta" and event.get("usage") is not None:
                self._deltas = True
            self._stream.feed(event)

    def started(self) -> ResponseUsage | None:
        """The ``message_start`` usage (exact input counts) of a cut stream, if it arrived."""
        return None if self._stream is None else self._stream.result

"""Usage on the Anthropic Messages wire (JSON and SSE).

Anthropic's ``input_tokens`` excludes cache reads and writes; the readers convert to the
meter's convention (``input_tokens`` counts every prompt token) through
:func:`agenthood_mw.metering.anthropic_usage` / :class:`AnthropicStreamUsage`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from agenthood_mw.metering import AnthropicStreamUsage, ResponseUsage, anthropic_usage

__all__ = ["MessagesReader"]


def _extras(usage: Any) -> tuple[int, str | None]:
    """``usage.cache_creation.ephemeral_1h_input_tokens`` and ``usage.service_tier``."""
    if not isinstance(usage, dict):
        return 0, None
    creation = usage.get("cache_creation")
    one_hour = creation.get("ephemeral_1h_input_tokens") if isinstance(creation, dict) else None
    tier = usage.get("service_tier")
    return (
        one_hour if type(one_hour) is int and one_hour > 0 else 0,
        tier if isinstance(tier, str) and tier else None,
    )


def _apply(found: ResponseUsage | None, extras: tuple[int, str | None]) -> ResponseUsage | None:
    one_hour, tier = extras
    if found is None or (not one_hour and tier is None):
        return found
    u = found.usage
    usage = replace(
        u,
        cache_creation_1h_input_tokens=min(one_hour, u.cache_creation_input_tokens),
        service_tier=tier,
    )
    return replace(found, usage=usage)


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
        self._extras: tuple[int, str | None] = (0, None)

    @property
    def usage(self) -> ResponseUsage | None:
        if self._stream is None:
            return self._body
        found = self._stream.result
        if found is None or self._deltas or found.usage.output_tokens >= self.events:
            return _apply(found, self._extras)
        # Cut before any message_delta: message_start's output count (1 or so) is stale.
        return None

    def feed_body(self, body: Any) -> None:
        usage = body.get("usage") if isinstance(body, dict) else None
        self._body = _apply(anthropic_usage(body), _extras(usage))

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
            elif event.get("type") == "message_start":
                message = event.get("message")
                self._extras = _extras(message.get("usage") if isinstance(message, dict) else None)
            self._stream.feed(event)

    def started(self) -> ResponseUsage | None:
        """The ``message_start`` usage (exact input counts) of a cut stream, if it arrived."""
        return None if self._stream is None else _apply(self._stream.result, self._extras)

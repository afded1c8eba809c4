"""Usage on the OpenAI wire: chat completions, the Responses API and embeddings.

A reader is fed the decoded JSON body of a plain response (:meth:`feed_body`) or, for a
stream, each SSE ``data:`` payload as raw bytes (:meth:`feed_event`). A stream payload is
parsed as JSON only when it may carry usage, so an ordinary chunk costs a substring search.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from agenthood_mw.metering import ResponseUsage, openai_usage

__all__ = ["ChatReader", "EmbeddingsReader", "ResponsesReader"]


def with_tier(found: ResponseUsage | None, body: Any) -> ResponseUsage | None:
    """``found`` with the ``service_tier`` the response (or chunk) ``body`` says it was billed
    in (``"default"``, ``"priority"``, ``"flex"``...), if any."""
    tier = body.get("service_tier") if isinstance(body, dict) else None
    if found is None or not isinstance(tier, str) or not tier:
        return found
    return replace(found, usage=replace(found.usage, service_tier=tier))


def _usage_follows(data: bytes) -> bool:
    """Whether a chunk has a non-null ``"usage"`` (chat chunks carry ``"usage": null``)."""
    at = data.find(b'"usage"')
    if at < 0:
        return False
    rest = data[at + 7 : at + 16].lstrip(b": \t")
    return not rest.startswith(b"null")


class ChatReader:
    """Chat completions: body ``usage``; in a stream, the final chunk sent when the request set
    ``stream_options.include_usage``. ``events`` counts the stream's chunks without usage (the
    estimate of the output tokens when no usage arrives: one chunk per token)."""

    provider = "openai"

    def __init__(self) -> None:
        self.usage: ResponseUsage | None = None
        self.events = 0

    def feed_body(self, body: Any) -> None:
        self.usage = with_tier(openai_usage(body), body)

    def feed_event(self, data: bytes) -> None:
        if data.startswith(b"[DONE]"):
            return
        if _usage_follows(data):
            chunk = json.loads(data)
            found = with_tier(openai_usage(chunk), chunk)
            if found is not None:
                self.usage = found
        else:
            self.events += 1


class ResponsesReader(ChatReader):
    """The Responses API: body ``usage``; in a stream, the ``response.completed`` (or
    ``response.incomplete`` / ``response.failed``) event's ``response.usage``. ``events``
    counts the ``output_text.delta`` events."""

    def feed_event(self, data: bytes) -> None:
        if b'"response.output_text.delta"' in data or b'"response.reasoning' in data:
            self.events += 1
            return
        if _usage_follows(data):
            event = json.loads(data)
            response = event.get("response") if isinstance(event, dict) else None
            found = None
            if isinstance(response, dict):
                found = with_tier(openai_usage(response), response)
            if found is not None:
                self.usage = found


class EmbeddingsReader(ChatReader):
    """Embeddings: body ``usage.prompt_tokens`` (no output tokens); never streamed."""

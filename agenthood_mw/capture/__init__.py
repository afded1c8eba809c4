"""Automatic capture: usage read from the LLM clients' own HTTP traffic, charged to the run.

Pass a metered transport to an SDK's HTTP client (one line), or call :func:`instrument` to put
it into the official SDKs' default clients::

    import httpx2, openai
    from agenthood_mw.capture.httpx2 import MeteredAsyncTransport
    client = openai.AsyncOpenAI(http_client=httpx2.AsyncClient(transport=MeteredAsyncTransport()))

``agenthood_mw.capture.httpx`` holds the same classes for ``httpx`` clients;
``MeteredTransport`` / ``MeteredAsyncTransport`` here are the ``httpx`` ones (imported when
first used). Calls made outside a metered request (no ``current_meter()``) pass through
uncharged. See ``docs/capture.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agenthood_mw.capture._instrument import instrument, instrumented, uninstrument

if TYPE_CHECKING:
    from agenthood_mw.capture.httpx import MeteredAsyncTransport, MeteredTransport

__all__ = [
    "MeteredAsyncTransport",
    "MeteredTransport",
    "instrument",
    "instrumented",
    "uninstrument",
]


def __getattr__(name: str) -> Any:
    if name in ("MeteredTransport", "MeteredAsyncTransport"):
        from agenthood_mw.capture import httpx as stack

        return getattr(stack, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The shell-neutral steps of a metered transport (both HTTP stacks call these)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from agenthood_mw.capture._call import Call, open_call
from agenthood_mw.capture._refusal import sdk_refusal
from agenthood_mw.metering import BudgetExhausted

__all__ = ["aiterate", "begin", "iterate", "watch"]


def begin(request: Any) -> Call | None:
    """Open the call for an httpx/httpx2 ``Request`` (raises ``BudgetExhausted`` before any
    byte is sent). A watched request asks for gzip/deflate only, which the capture can read."""
    try:
        content: bytes | None = request.content
    except Exception:
        content = None
    try:
        call = open_call(request.method, request.url.path, content)
    except BudgetExhausted as exc:
        raise sdk_refusal(exc) from None
    if call is not None:
        accepted = request.headers.get("accept-encoding")
        if accepted and ("br" in accepted or "zstd" in accepted):
            request.headers["accept-encoding"] = "gzip, deflate"
    return call


def watch(call: Call, response: Any) -> bool:
    headers = response.headers
    return call.watch(
        response.status_code,
        headers.get("content-type", ""),
        headers.get("content-encoding", ""),
    )


def iterate(stream: Any, call: Call) -> Iterator[bytes]:
    try:
        for chunk in stream:
            call.feed(chunk)
            yield chunk
    finally:
        call.finish()


async def aiterate(stream: Any, call: Call) -> AsyncIterator[bytes]:
    try:
        async for chunk in stream:
            call.feed(chunk)
            yield chunk
    finally:
        call.finish()

"""The shell-neutral steps of a metered transport (both HTTP stacks call these)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from agenthood_mw.capture._call import Call, aopen_call, open_call
from agenthood_mw.capture._refusal import sdk_refusal
from agenthood_mw.metering import BudgetExhausted

__all__ = ["abegin", "aiterate", "begin", "iterate", "watch"]


def _content(request: Any) -> bytes | None:
    try:
        content: bytes | None = request.content
    except Exception:
        content = None
    return content


def _accept(call: Call | None, request: Any) -> Call | None:
    """A watched request asks for gzip/deflate only, which the capture can read."""
    if call is not None:
        accepted = request.headers.get("accept-encoding")
        if accepted and ("br" in accepted or "zstd" in accepted):
            request.headers["accept-encoding"] = "gzip, deflate"
    return call


def begin(request: Any) -> Call | None:
    """Open the call for an httpx/httpx2 ``Request`` and reserve its cost on the run's budgets
    (raises ``BudgetExhausted``, shaped for the SDKs, before any byte is sent)."""
    try:
        call = open_call(request.method, request.url.path, _content(request))
    except BudgetExhausted as exc:
        raise sdk_refusal(exc) from None
    return _accept(call, request)


async def abegin(request: Any) -> Call | None:
    """:func:`begin` for an async transport (the reservation does not block the loop)."""
    try:
        call = await aopen_call(request.method, request.url.path, _content(request))
    except BudgetExhausted as exc:
        raise sdk_refusal(exc) from None
    return _accept(call, request)


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

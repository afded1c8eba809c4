"""Metered transports for ``httpx`` clients (older SDKs and most OpenAI-compatible clients).

``httpx.AsyncClient(transport=MeteredAsyncTransport())`` (or ``httpx.Client(transport=
MeteredTransport())``) passed as ``http_client=`` to an SDK meters its model calls into
``current_meter()``. See ``docs/capture.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx

from agenthood_mw.capture._call import Call
from agenthood_mw.capture._transport import abegin, aiterate, begin, iterate, watch

__all__ = ["MeteredAsyncTransport", "MeteredTransport"]


class _Stream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, call: Call) -> None:
        self._inner = inner
        self._call = call

    def __iter__(self) -> Iterator[bytes]:
        return iterate(self._inner, self._call)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._call.finish()


class _AsyncStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, call: Call) -> None:
        self._inner = inner
        self._call = call

    def __aiter__(self) -> AsyncIterator[bytes]:
        return aiterate(self._inner, self._call)

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._call.finish()


class MeteredTransport(httpx.BaseTransport):
    """A sync ``httpx`` transport that meters model calls (wraps ``transport``, by default a
    new ``httpx.HTTPTransport()``).

    Raises ``BudgetExhausted`` from ``handle_request`` (nothing sent) when the current run may
    not make another model call.
    """

    def __init__(self, transport: httpx.BaseTransport | None = None) -> None:
        self.transport = transport if transport is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = begin(request)
        if call is None:
            return self.transport.handle_request(request)
        try:
            response = self.transport.handle_request(request)
        except BaseException as exc:  # a cancelled call too: its reservation is released
            call.failed(exc)
            raise
        if not watch(call, response):
            return response
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _Stream(response.stream, call)  # the same response, its body watched
        return response

    def close(self) -> None:
        self.transport.close()


class MeteredAsyncTransport(httpx.AsyncBaseTransport):
    """The async twin of :class:`MeteredTransport` (wraps ``httpx.AsyncHTTPTransport()``)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.transport = transport if transport is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = await abegin(request)
        if call is None:
            return await self.transport.handle_async_request(request)
        try:
            response = await self.transport.handle_async_request(request)
        except BaseException as exc:  # a cancelled call too: its reservation is released
            call.failed(exc)
            raise
        if not watch(call, response):
            return response
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _AsyncStream(response.stream, call)  # the same response, its body watched
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()

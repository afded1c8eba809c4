"""Metered transports for ``httpx2`` clients (the current openai 3.x and anthropic 2.x SDKs).

``httpx2.AsyncClient(transport=MeteredAsyncTransport())`` (or ``httpx2.Client(transport=
MeteredTransport())``) passed as ``http_client=`` to an SDK meters its model calls into
``current_meter()``. See ``docs/capture.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx2

from agenthood_mw.capture._call import Call
from agenthood_mw.capture._transport import abegin, aiterate, begin, iterate, watch

__all__ = ["MeteredAsyncTransport", "MeteredTransport"]


class _Stream(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, call: Call) -> None:
        self._inner = inner
        self._call = call

    def __iter__(self) -> Iterator[bytes]:
        return iterate(self._inner, self._call)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._call.finish()


class _AsyncStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, call: Call) -> None:
        self._inner = inner
        self._call = call

    def __aiter__(self) -> AsyncIterator[bytes]:
        return aiterate(self._inner, self._call)

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._call.finish()


class MeteredTransport(httpx2.BaseTransport):
    """A sync ``httpx2`` transport that meters model calls (wraps ``transport``, by default a
    new ``httpx2.HTTPTransport()``).

    Raises ``BudgetExhausted`` from ``handle_request`` (nothing sent) when the current run may
    not make another model call.
    """

    def __init__(self, transport: httpx2.BaseTransport | None = None) -> None:
        self.transport = transport if transport is not None else httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
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
        assert isinstance(response.stream, httpx2.SyncByteStream)
        response.stream = _Stream(response.stream, call)  # the same response, its body watched
        return response

    def close(self) -> None:
        self.transport.close()


class MeteredAsyncTransport(httpx2.AsyncBaseTransport):
    """The async twin of :class:`MeteredTransport` (wraps ``httpx2.AsyncHTTPTransport()``)."""

    def __init__(self, transport: httpx2.AsyncBaseTransport | None = None) -> None:
        self.transport = transport if transport is not None else httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
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
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = _AsyncStream(response.stream, call)  # the same response, its body watched
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()

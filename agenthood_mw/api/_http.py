"""HTTP plumbing of the agent API: JSON error responses, raw-ASGI routes, a consumed body."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenthood_mw._errors import HTTPError

__all__ = [
    "RawASGI",
    "consumed_receive",
    "error_response",
    "http_exception_handler",
    "internal_error_handler",
    "json_response",
]

logger = logging.getLogger("agenthood_mw.api")


class RawASGI:
    """Marks a bound method as a raw ASGI app for Starlette's ``Route`` (which would otherwise
    wrap a function or method as a request/response endpoint)."""

    __slots__ = ("_app",)

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def consumed_receive(receive: Receive) -> Receive:
    """A ``receive`` for an app downstream of a fully read body: one empty final chunk, then
    the original channel (so disconnects are still seen)."""
    done = False

    async def wrapped() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return await receive()

    return wrapped


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response."""
    return JSONResponse(data, status_code=status, headers=dict(headers or {}))


def error_response(err: HTTPError) -> Response:
    """The shared ``{"error": {"type", "message"}}`` body with its headers."""
    body = err.body()
    return Response(body, status_code=err.status, headers=dict(err.header_pairs(body)))


_STATUS_TYPES: Final = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown path, wrong method) as JSON errors."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    kind = _STATUS_TYPES.get(status, "http_error")
    headers = tuple((exc.headers or {}).items())
    message = "no such endpoint" if status == 404 else str(exc.detail)
    return error_response(HTTPError(status, kind, message, headers=headers))


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """An unexpected exception: logged with its traceback, answered without it."""
    logger.error("unhandled error on %s", request.url.path, exc_info=exc)
    return error_response(HTTPError(500, "internal_error", "internal server error"))

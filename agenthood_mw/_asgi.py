"""Byte-moving helpers shared by the pure-ASGI middlewares (no decisions here)."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

from starlette.types import Message, Scope, Send

from agenthood_mw._errors import HTTPError

__all__ = ["add_headers", "agenthood_state", "header_values", "route_path", "send_error"]

#: WebSocket close code for a refused handshake when the server cannot send an HTTP response.
WS_POLICY_VIOLATION = 1008


def agenthood_state(scope: Scope) -> dict[str, Any]:
    """The per-request dict shared by the middlewares: ``scope["state"]["agenthood"]``."""
    state = scope.get("state")
    if state is None:
        state = scope["state"] = {}
    data: dict[str, Any] | None = state.get("agenthood")
    if data is None:
        data = state["agenthood"] = {}
    return data


def route_path(scope: Scope) -> str:
    """The request path relative to the app's mount point (``path`` minus ``root_path``).

    Starlette puts the full path in ``scope["path"]`` and the mount prefix in
    ``scope["root_path"]`` (``Mount("/v1", ...)``, ``uvicorn --root-path``). Path-based options
    (``exempt_paths``, per-route rules, agent names) are written relative to the app, so every
    shell compares against this -- as the WSGI twins compare against ``PATH_INFO``.
    """
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def header_values(scope: Scope, name: bytes) -> list[bytes]:
    """Every value of header ``name`` (lower-case bytes), in order."""
    return [v for k, v in scope.get("headers", ()) if k.lower() == name]


async def send_error(scope: Scope, send: Send, error: HTTPError) -> None:
    """Send ``error`` as a complete HTTP response, or refuse a websocket before accept.

    For websockets the HTTP error is sent through the Websocket Denial Response extension when
    the server offers it; otherwise the handshake is closed with code 1008.
    """
    body = error.body()
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in error.header_pairs(body)]
    if scope["type"] == "websocket":
        if "websocket.http.response" in scope.get("extensions", {}):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": error.status,
                    "headers": headers,
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send(
                {"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": error.type}
            )
        return
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def add_headers(send: Send, extra: Sequence[tuple[bytes, bytes]]) -> Send:
    """``send`` with ``extra`` headers appended to ``http.response.start`` (``send`` itself
    when there are none).

    The app's own message dict and header list are never mutated (an app may send one prebuilt
    message on every request): the start message is copied with a new header list. The wrapper
    returns ``send``'s awaitable instead of awaiting it in a coroutine of its own.
    """
    if not extra:
        return send

    def send_with_headers(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        return send(message)

    return send_with_headers

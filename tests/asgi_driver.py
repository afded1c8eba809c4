"""Drive one request through an ASGI app as a server would, recording what it sends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.types import Message

__all__ = ["drive"]


async def drive(
    app: Any,
    *,
    path: str = "/",
    method: str = "GET",
    headers: Sequence[tuple[bytes, bytes]] = (),
    kind: str = "http",
    root_path: str = "",
) -> list[Message]:
    """Every message ``app`` sends for one request (``path`` is relative to ``root_path``).

    ``receive`` answers with an empty body (``websocket.connect`` for a websocket); exceptions
    of the app propagate, as they would to the server.
    """
    scope = {
        "type": kind,
        "method": method,
        "path": root_path + path,
        "root_path": root_path,
        "headers": list(headers),
        "client": ("127.0.0.1", 1),
        "query_string": b"",
    }
    sent: list[Message] = []

    async def receive() -> Message:
        if kind == "websocket":
            return {"type": "websocket.connect"}
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent

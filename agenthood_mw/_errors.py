"""Sans-I/O description of the JSON error responses every shell sends.

The body is always ``{"error": {"type": ..., "message": ...}}`` (plus optional extra fields),
never a traceback or an exception text. ASGI and WSGI shells turn an :class:`HTTPError` into
bytes with :mod:`agenthood_mw._asgi` / :mod:`agenthood_mw._wsgi`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

__all__ = ["HTTPError"]


@dataclass(frozen=True)
class HTTPError:
    """An error response, described once and sent by any shell.

    Attributes:
        status: the HTTP status code.
        type: a stable machine-readable error type (``invalid_token``, ``rate_limited`` ...).
        message: a generic human-readable sentence (never secret material).
        headers: extra response headers as ``(name, value)`` text pairs.
        extra: extra JSON fields placed inside the ``error`` object.
    """

    status: int
    type: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> bytes:
        """The JSON body, UTF-8 encoded."""
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        error.update(self.extra)
        return json.dumps({"error": error}, separators=(",", ":")).encode()

    def reason(self) -> str:
        """The status line's reason phrase (for WSGI)."""
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Error"

    def header_pairs(self, body: bytes) -> list[tuple[str, str]]:
        """All response headers including content type and length."""
        return [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("cache-control", "no-store"),
            *self.headers,
        ]

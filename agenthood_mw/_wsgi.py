"""Byte-moving helpers shared by the WSGI middlewares (no decisions here)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from agenthood_mw._errors import HTTPError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["STATE_KEY", "WSGIApp", "agenthood_state", "send_error"]

#: ``environ`` key of the per-request dict shared by the WSGI middlewares.
STATE_KEY = "agenthood.state"

WSGIApp = Callable[["WSGIEnvironment", "StartResponse"], Iterable[bytes]]


def agenthood_state(environ: WSGIEnvironment) -> dict[str, Any]:
    """The per-request dict shared by the middlewares: ``environ["agenthood.state"]``."""
    data: dict[str, Any] | None = environ.get(STATE_KEY)
    if data is None:
        data = environ[STATE_KEY] = {}
    return data


def send_error(start_response: StartResponse, error: HTTPError) -> list[bytes]:
    """Start ``error`` as the response and return its body iterable."""
    body = error.body()
    start_response(f"{error.status} {error.reason()}", error.header_pairs(body))
    return [body]

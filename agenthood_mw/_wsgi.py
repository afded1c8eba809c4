"""Byte-moving helpers shared by the WSGI middlewares (no decisions here)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from agenthood_mw._errors import HTTPError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["STATE_KEY", "WSGIApp", "agenthood_state", "route_path", "send_error"]

#: ``environ`` key of the per-request dict shared by the WSGI middlewares.
STATE_KEY = "agenthood.state"

WSGIApp = Callable[["WSGIEnvironment", "StartResponse"], Iterable[bytes]]


def agenthood_state(environ: WSGIEnvironment) -> dict[str, Any]:
    """The per-request dict shared by the middlewares: ``environ["agenthood.state"]``."""
    data: dict[str, Any] | None = environ.get(STATE_KEY)
    if data is None:
        data = environ[STATE_KEY] = {}
    return data


def route_path(environ: WSGIEnvironment) -> str:
    """The request path relative to the app (``PATH_INFO``), as the ASGI shells see it.

    ``SCRIPT_NAME`` (the mount point) is not part of it, like ``root_path`` is stripped by
    :func:`agenthood_mw._asgi.route_path`; an empty ``PATH_INFO`` (the app root) is ``"/"``.
    PEP 3333 carries the path's bytes as latin-1 text; they are decoded as UTF-8 like an ASGI
    server decodes ``scope["path"]``, so ``/café`` matches the same options in both shells.
    """
    path: str = environ.get("PATH_INFO") or "/"
    if path.isascii():
        return path
    try:
        return path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return path


def send_error(start_response: StartResponse, error: HTTPError) -> list[bytes]:
    """Start ``error`` as the response and return its body iterable."""
    body = error.body()
    start_response(f"{error.status} {error.reason()}", error.header_pairs(body))
    return [body]

"""Byte-moving helpers shared by the WSGI middlewares (no decisions here)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from agenthood_mw._errors import HTTPError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["STATE_KEY", "BoundBody", "WSGIApp", "agenthood_state", "route_path", "send_error"]

T = TypeVar("T")

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


class BoundBody(Generic[T]):
    """A WSGI response iterable that binds ``var`` to ``value`` while the server drives it.

    A streamed body (a generator) runs after the app returned, one chunk per ``next()``, and
    its clean-up runs in ``close()``. ``var`` is set around each of those steps and reset right
    after, in the same context: the app's code sees it, the server never does between chunks,
    nothing leaks when a server omits ``close()``, and a server iterating in another thread
    still sees it. ``on_close`` (if given) runs once, after the body's own ``close()``.
    """

    __slots__ = ("_body", "_iter", "_on_close", "_value", "_var")

    def __init__(
        self,
        body: Iterable[bytes],
        var: ContextVar[T | None],
        value: T,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._body = body
        self._var = var
        self._value = value
        self._iter: Iterator[bytes] | None = None
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        token = self._var.set(self._value)
        try:
            if self._iter is None:
                self._iter = iter(self._body)
            return next(self._iter)
        finally:
            self._var.reset(token)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                token = self._var.set(self._value)
                try:
                    close()
                finally:
                    self._var.reset(token)
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()

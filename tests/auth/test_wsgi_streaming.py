"""WSGI: the identity stays bound while the server consumes a streamed response body.

A WSGI app returns its body iterable and the server pulls the chunks afterwards, so a generator
body (per-user streaming, memory reads) runs after ``app`` returned. ``current_identity()``
must work there, exactly as in the ASGI shell, and must not leak out of the request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from auth_support import AUDIENCE, SECRET
from flask import Flask, Response
from werkzeug.test import EnvironBuilder

from agenthood_mw import current_identity
from agenthood_mw.auth import mint_token
from agenthood_mw.auth._wsgi import AuthMiddleware as WSGIAuth


def streaming_app(events: list[str]) -> Flask:
    app = Flask(__name__)

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            try:
                yield "user="
                yield current_identity().user_id
                yield ";tenant=" + str(current_identity().tenant)
            finally:
                events.append("generator closed as " + current_identity().user_id)

        return Response(body(), mimetype="text/plain")

    app.wsgi_app = WSGIAuth(  # type: ignore[method-assign]
        app.wsgi_app, strategy="jwt", secret=SECRET, audience=AUDIENCE
    )
    return app


def bearer(user: str, tenant: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(secret=SECRET, user_id=user, tenant=tenant)}"}


def test_flask_streamed_body_reads_current_identity() -> None:
    events: list[str] = []
    client = streaming_app(events).test_client()
    r = client.get("/stream", headers=bearer("alice", "acme"))
    assert r.status_code == 200
    assert r.get_data(as_text=True) == "user=alice;tenant=acme"
    assert events == ["generator closed as alice"]
    with pytest.raises(LookupError):
        current_identity()  # reset after the body was consumed and closed


def test_body_abandoned_early_is_closed_with_the_identity_and_then_reset() -> None:
    events: list[str] = []
    app = streaming_app(events)
    environ = EnvironBuilder(path="/stream", headers=bearer("bob")).get_environ()
    body = app.wsgi_app(environ, lambda status, headers, exc_info=None: None)
    iterator = iter(body)
    assert next(iterator) == b"user="
    with pytest.raises(LookupError):
        current_identity()  # not bound between chunks: nothing leaks into the server
    assert next(iterator) == b"bob"
    body.close()  # type: ignore[attr-defined]  # the client went away
    assert events == ["generator closed as bob"]
    with pytest.raises(LookupError):
        current_identity()


def test_concurrent_streams_each_see_their_own_identity() -> None:
    events: list[str] = []
    app = streaming_app(events)
    results: dict[str, str] = {}
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        client = app.test_client()
        barrier.wait(timeout=10)
        r = client.get("/stream", headers=bearer(f"user{n}"))
        results[f"user{n}"] = r.get_data(as_text=True)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert results == {f"user{n}": f"user=user{n};tenant=None" for n in range(8)}
    assert sorted(events) == sorted(f"generator closed as user{n}" for n in range(8))


def test_list_bodies_and_file_wrappers_are_returned_unwrapped() -> None:
    """Nothing runs while a list is iterated; a server's file wrapper must stay recognisable."""

    class FileWrapper:
        def __init__(self, f: Any, size: int = 8192) -> None:
            self.f = f

        def __iter__(self) -> Iterator[bytes]:
            return iter([b"file"])

    listed = [b"ok"]
    wrapped = FileWrapper(None)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])
        return listed if environ["PATH_INFO"] == "/list" else wrapped

    middleware = WSGIAuth(app, strategy="jwt", secret=SECRET, audience=AUDIENCE)
    base = {"REQUEST_METHOD": "GET", "wsgi.file_wrapper": FileWrapper}
    base["HTTP_AUTHORIZATION"] = bearer("carol")["Authorization"]
    assert middleware({**base, "PATH_INFO": "/list"}, lambda *a: None) is listed
    assert middleware({**base, "PATH_INFO": "/file"}, lambda *a: None) is wrapped

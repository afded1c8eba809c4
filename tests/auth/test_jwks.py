"""JWKS against a real HTTP server on 127.0.0.1: rotation, cooldown, outage, concurrency."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from auth_support import KeyServer, public_jwk, starlette_app

from agenthood_mw.auth import AuthMiddleware, mint_token
from agenthood_mw.testing._tokens import generate_keypair

K1, _ = generate_keypair("RS256")
K2, _ = generate_keypair("RS256")
K3, _ = generate_keypair("RS256")
PATH = "/.well-known/jwks.json"


def tok(private: bytes, kid: str | None, user: str = "usr_8f3a") -> str:
    return mint_token(secret=private, user_id=user, algorithm="RS256", kid=kid)


@pytest.fixture
def server() -> Iterator[KeyServer]:
    srv = KeyServer()
    srv.documents[PATH] = {"keys": [public_jwk(K1, "k1")]}
    yield srv
    srv.stop()


def jwks_options(server: KeyServer, **kw: Any) -> dict[str, Any]:
    return {
        "strategy": "jwt",
        "jwks_url": server.url(PATH),
        "algorithms": ["RS256"],
        "audience": "agenthood-api",
        **kw,
    }


def test_rotation_refreshes_once_per_cooldown(
    server: KeyServer, make_client: Callable[..., Any]
) -> None:
    # Tokens are minted up front so that the timed part only does requests.
    k1_a, k1_b, k1_c = (tok(K1, "k1", u) for u in ("a", "b", "c"))
    k2_a, k2_b = (tok(K2, "k2", u) for u in ("a", "b"))
    k3_a = tok(K3, "k3")
    client = make_client(**jwks_options(server, jwks_cooldown="1s"))
    assert client.get("/me", k1_a).status == 200
    assert client.get("/me", k1_b).status == 200
    assert server.hits(PATH) == 1  # the key set is cached
    # The provider rotates: k2 replaces k1.
    server.documents[PATH] = {"keys": [public_jwk(K2, "k2")]}
    # Within the cooldown an unknown kid causes no fetch: refused.
    assert client.get("/me", k2_a).status == 401
    assert server.hits(PATH) == 1
    time.sleep(1.05)
    assert client.get("/me", k2_b).status == 200  # unknown kid after cooldown: one refresh
    assert server.hits(PATH) == 2
    # Right after the refresh: another unknown kid does not fetch again.
    assert client.get("/me", k3_a).status == 401
    # k1 was rotated out of the set: a token not yet verified with it is refused.
    assert client.get("/me", k1_c).status == 401
    assert server.hits(PATH) == 2


def test_stale_keys_served_while_endpoint_is_down(
    server: KeyServer, make_client: Callable[..., Any]
) -> None:
    client = make_client(**jwks_options(server, jwks_cache_ttl="100ms", jwks_cooldown=0))
    assert client.get("/me", tok(K1, "k1")).status == 200
    server.stop()
    time.sleep(0.15)  # the fresh copy expired; the refresh will fail
    r = client.get("/me", tok(K1, "k1", "someone-else"))
    assert r.status == 200, r.text
    assert client.get("/me", tok(K2, "k2")).status == 401  # unknown kid stays refused


def test_503_only_when_no_key_was_ever_obtained(
    server: KeyServer, make_client: Callable[..., Any]
) -> None:
    server.stop()
    client = make_client(**jwks_options(server, jwks_cooldown=0))
    r = client.get("/me", tok(K1, "k1"))
    assert r.status == 503
    assert r.json["error"]["type"] == "auth_unavailable"
    assert r.headers["retry-after"] == "5"
    assert client.get("/me").status == 401  # no credential: still a plain 401


def test_endpoint_coming_back_after_outage(make_client: Callable[..., Any]) -> None:
    srv = KeyServer()
    srv.documents[PATH] = {"keys": [public_jwk(K1, "k1")]}
    srv.documents["/empty"] = {"keys": []}
    client = make_client(**jwks_options(srv, jwks_cooldown=0))
    client_bad = make_client(
        **{**jwks_options(srv, jwks_cooldown=0), "jwks_url": srv.url("/empty")}
    )
    try:
        assert client_bad.get("/me", tok(K1, "k1")).status == 503  # unusable set = no key
        assert client.get("/me", tok(K1, "k1")).status == 200
    finally:
        srv.stop()


def test_kid_traversal_and_alg_mismatch(server: KeyServer, make_client: Callable[..., Any]) -> None:
    client = make_client(**jwks_options(server, jwks_cooldown="10s"))
    assert client.get("/me", tok(K1, "../../../etc/passwd")).status == 401
    assert client.get("/me", tok(K1, "k1")).status == 200
    assert set(server.requests) == {PATH}


def test_token_without_kid_uses_the_single_key(
    server: KeyServer, make_client: Callable[..., Any]
) -> None:
    client = make_client(**jwks_options(server))
    assert client.get("/me", tok(K1, None)).status == 200


def test_concurrent_unknown_kids_fetch_once_threads(server: KeyServer) -> None:
    """WSGI: 16 threads hit an unknown kid at once; the endpoint is fetched once."""
    from auth_support import flask_app

    from agenthood_mw.auth._wsgi import AuthMiddleware as WSGIAuth

    server.delay = 0.2
    app = flask_app()
    app.wsgi_app = WSGIAuth(app.wsgi_app, **jwks_options(server, jwks_cooldown="30s"))  # type: ignore[method-assign]
    statuses: list[int] = []
    barrier = threading.Barrier(16)

    def worker(i: int) -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(
            client.get(
                "/me", headers={"Authorization": f"Bearer {tok(K1, 'k1', f'u{i}')}"}
            ).status_code
        )

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert statuses == [200] * 16
    assert server.hits(PATH) == 1


async def _call(app: Any, token: str) -> int:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/me",
        "raw_path": b"/me",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "root_path": "",
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def test_fetch_does_not_block_the_event_loop(server: KeyServer) -> None:
    """ASGI: while a slow JWKS fetch runs, the loop keeps ticking; 16 tasks cause one fetch."""
    server.delay = 0.4
    app = AuthMiddleware(starlette_app(), **jwks_options(server))
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    tick_task = asyncio.create_task(ticker())
    statuses = await asyncio.gather(*(_call(app, tok(K1, "k1", f"u{i}")) for i in range(16)))
    done.set()
    await tick_task
    assert statuses == [200] * 16
    assert ticks >= 15, ticks  # the loop ran during the 0.4 s fetch
    assert server.hits(PATH) == 1

"""The failed-authentication limit (issue 11 #8): invalid credentials are counted per client
address and answered 429 with ``Retry-After`` once over the limit; a valid credential is never
counted and never refused. Memory storage and a real Redis, with real concurrency."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from auth_support import AUDIENCE, SECRET, Client

from agenthood_mw.auth import AuthMiddleware, InMemoryKeyStore, create_api_key, mint_token
from agenthood_mw.wsgi import AuthMiddleware as WSGIAuth

MakeClient = Callable[..., Client]
BAD = "Bearer " + mint_token(secret="another-secret-" + "y" * 40, user_id="mallory")
TYPE = "too_many_failed_authentications"


def _good() -> str:
    return "Bearer " + mint_token(secret=SECRET, user_id="alice", audience=AUDIENCE)


# --- through the test apps of every shell ---------------------------------------------------


def test_failures_over_the_limit_get_429_and_valid_credentials_still_pass(
    make_client: MakeClient,
) -> None:
    store = InMemoryKeyStore()
    key = create_api_key(store, user_id="bob").secret
    client = make_client(strategy=["jwt", "api_key"], key_store=store, failed_auth_limit="3/minute")
    for _ in range(3):
        response = client.request("GET", "/me", {"Authorization": BAD})
        assert response.status == 401 and response.json["error"]["type"] == "invalid_token"
    refused = client.request("GET", "/me", {"Authorization": BAD})
    assert refused.status == 429
    assert refused.json["error"]["type"] == TYPE
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # A valid credential from the same address is never affected (JWT, cached or not, and
    # an API key, which is looked up on every request).
    for _ in range(3):
        assert client.request("GET", "/me", {"Authorization": _good()}).status == 200
        assert client.request("GET", "/me", {"X-API-Key": key}).status == 200
    assert client.request("GET", "/me", {"Authorization": "Bearer ah_garbage"}).status == 429
    # No credential and malformed requests are not guesses: answered as always.
    assert client.request("GET", "/me").status == 401
    assert client.request("GET", "/me", {"Authorization": "Bearer a b"}).status == 400


def test_the_default_limit_is_twenty_failures_a_minute(make_client: MakeClient) -> None:
    client = make_client()
    statuses = [client.request("GET", "/me", {"Authorization": BAD}).status for _ in range(22)]
    assert statuses == [401] * 20 + [429, 429]


def test_the_limit_can_be_switched_off(make_client: MakeClient) -> None:
    client = make_client(failed_auth_limit=None)
    statuses = {client.request("GET", "/me", {"Authorization": BAD}).status for _ in range(40)}
    assert statuses == {401}


def test_an_unavailable_counter_answers_the_failure_as_usual(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(failed_auth_limit="1/minute", failed_auth_storage="redis://127.0.0.1:1")
    with caplog.at_level(logging.WARNING, logger="agenthood_mw.auth"):
        for _ in range(3):
            assert client.request("GET", "/me", {"Authorization": BAD}).status == 401
    assert client.request("GET", "/me", {"Authorization": _good()}).status == 200
    assert "failed-authentication counter unavailable" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("middleware", [AuthMiddleware, WSGIAuth])
@pytest.mark.parametrize(
    ("options", "named", "error"),
    [
        ({"failed_auth_limit": "soon"}, "failed_auth_limit", ValueError),
        ({"failed_auth_limit": "0/minute"}, "failed_auth_limit", ValueError),
        ({"failed_auth_limit": 20}, "failed_auth_limit", TypeError),
        ({"failed_auth_storage": "mongo://x"}, "failed_auth_storage", ValueError),
        ({"failed_auth_storage": None}, "failed_auth_storage", TypeError),
        ({"failed_auth_storage_options": "x"}, "failed_auth_storage_options", TypeError),
        ({"trusted_proxies": "10.0.0.1"}, "trusted_proxies", TypeError),
        ({"trusted_proxies": ["not-an-ip"]}, "trusted_proxies", ValueError),
    ],
)
def test_bad_options_fail_at_construction(
    middleware: Any, options: dict[str, Any], named: str, error: type[Exception]
) -> None:
    with pytest.raises(error, match=f"^{named}: "):
        middleware(lambda *a: None, secret=SECRET, audience=AUDIENCE, **options)


# --- per client address (driven directly, with real addresses) -------------------------------


async def _ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _ok_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def _asgi(
    app: Any, authorization: str, peer: str, forwarded: str | None = None
) -> tuple[int, dict[str, str], Any]:
    headers = [(b"authorization", authorization.encode())]
    if forwarded is not None:
        headers.append((b"x-forwarded-for", forwarded.encode()))
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/me",
        "root_path": "",
        "headers": headers,
        "client": (peer, 5000),
        "query_string": b"",
    }
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    head = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, head, json.loads(body) if status != 200 else body


def _wsgi(
    app: Any, authorization: str, peer: str, forwarded: str | None = None
) -> tuple[int, dict[str, str], Any]:
    environ: dict[str, Any] = {"HTTP_AUTHORIZATION": authorization, "REMOTE_ADDR": peer}
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    setup_testing_defaults(environ)
    started: list[Any] = []
    body = b"".join(app(environ, lambda status, headers: started.append((status, headers))))
    status = int(started[0][0].split()[0])
    head = {k.lower(): v for k, v in started[0][1]}
    return status, head, json.loads(body) if status != 200 else body


def _statuses_asgi(app: Any, n: int, peer: str, forwarded: str | None = None) -> list[int]:
    async def run() -> list[int]:
        return [(await _asgi(app, BAD, peer, forwarded))[0] for _ in range(n)]

    return asyncio.run(run())


def test_each_client_address_has_its_own_count_asgi() -> None:
    app = AuthMiddleware(_ok_app, secret=SECRET, audience=AUDIENCE, failed_auth_limit="2/minute")
    assert _statuses_asgi(app, 3, "203.0.113.7") == [401, 401, 429]
    assert _statuses_asgi(app, 3, "203.0.113.8") == [401, 401, 429]
    # An untrusted peer's X-Forwarded-For is ignored: spoofing it does not escape the limit.
    assert _statuses_asgi(app, 1, "203.0.113.7", "198.51.100.1") == [429]


def test_each_client_address_has_its_own_count_wsgi() -> None:
    app = WSGIAuth(_ok_wsgi, secret=SECRET, audience=AUDIENCE, failed_auth_limit="2/minute")
    assert [_wsgi(app, BAD, "203.0.113.7")[0] for _ in range(3)] == [401, 401, 429]
    assert [_wsgi(app, BAD, "203.0.113.8")[0] for _ in range(3)] == [401, 401, 429]
    assert _wsgi(app, BAD, "203.0.113.7", "198.51.100.1")[0] == 429
    assert _wsgi(app, _good(), "203.0.113.7")[0] == 200


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted() -> None:
    options: dict[str, Any] = {
        "secret": SECRET,
        "audience": AUDIENCE,
        "failed_auth_limit": "2/minute",
        "trusted_proxies": ["10.0.0.0/8"],
    }
    asgi_app = AuthMiddleware(_ok_app, **options)
    wsgi_app = WSGIAuth(_ok_wsgi, **options)
    assert _statuses_asgi(asgi_app, 3, "10.0.0.2", "198.51.100.1") == [401, 401, 429]
    assert _statuses_asgi(asgi_app, 2, "10.0.0.2", "198.51.100.2") == [401, 401]
    statuses = [_wsgi(wsgi_app, BAD, "10.0.0.2", "198.51.100.1")[0] for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert _wsgi(wsgi_app, BAD, "10.0.0.3", "198.51.100.3")[0] == 401


def test_failures_are_forgotten_after_the_window() -> None:
    app = AuthMiddleware(_ok_app, secret=SECRET, audience=AUDIENCE, failed_auth_limit="2/second")
    assert _statuses_asgi(app, 3, "203.0.113.9") == [401, 401, 429]
    time.sleep(1.1)
    assert _statuses_asgi(app, 1, "203.0.113.9") == [401]


def test_concurrent_failures_are_counted_exactly_asgi_memory() -> None:
    app = AuthMiddleware(_ok_app, secret=SECRET, audience=AUDIENCE, failed_auth_limit="7/minute")

    async def run() -> list[int]:
        bad = [_asgi(app, BAD, "203.0.113.10") for _ in range(30)]
        good = [_asgi(app, _good(), "203.0.113.10") for _ in range(10)]
        return [r[0] for r in await asyncio.gather(*bad, *good)]

    statuses = asyncio.run(run())
    assert sorted(statuses[:30]) == [401] * 7 + [429] * 23
    assert statuses[30:] == [200] * 10


# --- Redis: shared by workers, exact under real concurrency ---------------------------------


def _redis_options(redis_url: str, prefix: str, limit: str) -> dict[str, Any]:
    return {
        "secret": SECRET,
        "audience": AUDIENCE,
        "failed_auth_limit": limit,
        "failed_auth_storage": redis_url,
        "failed_auth_storage_options": {"key_prefix": prefix + "fail"},
    }


@pytest.mark.redis
def test_redis_count_is_shared_by_every_worker(redis_url: str, redis_prefix: str) -> None:
    options = _redis_options(redis_url, redis_prefix, "4/minute")
    asgi_app = AuthMiddleware(_ok_app, **options)
    wsgi_app = WSGIAuth(_ok_wsgi, **options)
    assert _statuses_asgi(asgi_app, 2, "203.0.113.20") == [401, 401]
    assert [_wsgi(wsgi_app, BAD, "203.0.113.20")[0] for _ in range(2)] == [401, 401]
    status, headers, body = _wsgi(wsgi_app, BAD, "203.0.113.20")
    assert status == 429 and body["error"]["type"] == TYPE
    assert 1 <= int(headers["retry-after"]) <= 60
    assert _statuses_asgi(asgi_app, 1, "203.0.113.20") == [429]
    assert _statuses_asgi(asgi_app, 1, "203.0.113.21") == [401]
    assert asyncio.run(_asgi(asgi_app, _good(), "203.0.113.20"))[0] == 200
    assert _wsgi(wsgi_app, _good(), "203.0.113.20")[0] == 200


@pytest.mark.redis
def test_redis_count_is_exact_under_concurrent_threads(redis_url: str, redis_prefix: str) -> None:
    app = WSGIAuth(_ok_wsgi, **_redis_options(redis_url, redis_prefix, "20/minute"))
    results: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(10)

    def worker(authorization: str) -> None:
        start.wait()
        for _ in range(10):
            status = _wsgi(app, authorization, "203.0.113.30")[0]
            with lock:
                results.append(status if authorization == BAD else -status)

    threads = [threading.Thread(target=worker, args=(BAD,)) for _ in range(8)]
    threads += [threading.Thread(target=worker, args=(_good(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r for r in results if r > 0) == [401] * 20 + [429] * 60
    assert [r for r in results if r < 0] == [-200] * 20


@pytest.mark.redis
def test_redis_count_is_exact_under_concurrent_asgi_requests(
    redis_url: str, redis_prefix: str
) -> None:
    app = AuthMiddleware(_ok_app, **_redis_options(redis_url, redis_prefix, "9/minute"))

    async def run() -> list[int]:
        bad = [_asgi(app, BAD, "2001:db8::1") for _ in range(40)]
        good = [_asgi(app, _good(), "2001:db8::1") for _ in range(10)]
        return [r[0] for r in await asyncio.gather(*bad, *good)]

    statuses = asyncio.run(run())
    assert sorted(statuses[:40]) == [401] * 9 + [429] * 31
    assert statuses[40:] == [200] * 10

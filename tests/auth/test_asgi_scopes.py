"""ASGI specifics: lifespan and unknown scopes pass through, websockets, context isolation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from auth_support import AUDIENCE, SECRET
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from agenthood_mw import current_identity
from agenthood_mw.auth import AuthMiddleware, mint_token


def middleware(app: Any, **kw: Any) -> AuthMiddleware:
    return AuthMiddleware(app, strategy="jwt", secret=SECRET, audience=AUDIENCE, **kw)


@pytest.mark.parametrize("kind", ["lifespan", "custom.protocol"])
async def test_other_scope_types_pass_through_untouched(kind: str) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)

    scope: dict[str, Any] = {"type": kind, "headers": [(b"authorization", b"Bearer bad")]}
    snapshot = dict(scope)
    await middleware(app)(scope, None, None)  # type: ignore[arg-type]
    assert seen == [snapshot] and seen[0] is scope
    assert "user" not in scope and "state" not in scope


def ws_app() -> Starlette:
    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_json({"user": ws.user.user_id, "current": current_identity().user_id})
        await ws.close()

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)])


def test_websocket_with_valid_token() -> None:
    client = TestClient(middleware(ws_app()))
    tok = mint_token(secret=SECRET, user_id="alice")
    with client.websocket_connect("/ws", headers={"Authorization": f"Bearer {tok}"}) as ws:
        assert ws.receive_json() == {"user": "alice", "current": "alice"}


@pytest.mark.parametrize("header", [None, "Bearer not.a.token"])
def test_websocket_denied_before_accept(header: str | None) -> None:
    """Starlette's test client offers the denial-response extension: an HTTP 401 comes back."""
    from starlette.testclient import WebSocketDenialResponse

    accepted = False

    async def endpoint(ws: WebSocket) -> None:
        nonlocal accepted
        accepted = True
        await ws.accept()

    app = middleware(Starlette(routes=[WebSocketRoute("/ws", endpoint)]))
    client = TestClient(app)
    headers = {"Authorization": header} if header else {}
    with (
        pytest.raises(WebSocketDenialResponse) as info,
        client.websocket_connect("/ws", headers=headers),
    ):
        pass
    assert not accepted
    assert info.value.status_code == 401
    assert info.value.json()["error"]["type"] in ("unauthorized", "invalid_token")


async def test_websocket_closed_1008_without_denial_extension() -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("must not be reached")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": []}
    await middleware(app)(scope, None, send)  # type: ignore[arg-type]
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "unauthorized"}]


async def test_websocket_denial_response_extension() -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("must not be reached")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "headers": [],
        "extensions": {"websocket.http.response": {}},
    }
    await middleware(app)(scope, None, send)  # type: ignore[arg-type]
    assert sent[0]["type"] == "websocket.http.response.start" and sent[0]["status"] == 401
    assert (b"www-authenticate", b'Bearer realm="agenthood"') in sent[0]["headers"]


async def test_concurrent_requests_see_their_own_identity() -> None:
    """100 interleaved requests for different users: current_identity never leaks across."""
    mismatches: list[tuple[str, str]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        expected = scope["user"].user_id
        for _ in range(3):
            await asyncio.sleep(0)
            if current_identity().user_id != expected:
                mismatches.append((expected, current_identity().user_id))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw = middleware(app)
    tokens = [mint_token(secret=SECRET, user_id=f"user{i}") for i in range(100)]

    async def one(i: int) -> None:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": [(b"authorization", f"Bearer {tokens[i]}".encode())],
        }

        async def send(message: Any) -> None:
            return None

        await mw(scope, None, send)  # type: ignore[arg-type]

    await asyncio.gather(*(one(i % 100) for i in range(300)))
    assert mismatches == []
    with pytest.raises(LookupError):
        current_identity()


async def test_existing_state_is_extended_not_replaced() -> None:
    got: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        got.update(scope["state"]["agenthood"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Any) -> None:
        return None

    tok = mint_token(secret=SECRET, user_id="alice")
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"authorization", f"Bearer {tok}".encode())],
        "state": {"agenthood": {"rate_limit": "x"}, "other": 1},
    }
    await middleware(app)(scope, None, send)  # type: ignore[arg-type]
    assert got["rate_limit"] == "x" and got["identity"].user_id == "alice"
    assert scope["state"]["other"] == 1

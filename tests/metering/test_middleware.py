"""CostMeterMiddleware (ASGI): headers, state, disconnects, lifespan flush, pass-through."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from agenthood_mw._asgi import agenthood_state
from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.metering import CostMeterMiddleware, Meter, current_meter


async def run(request: Request) -> JSONResponse:
    meter = current_meter()
    assert agenthood_state(request.scope)["meter"] is meter
    assert agenthood_state(request.scope)["run_id"] == meter.run_id
    meter.step("plan", note="read the task")
    meter.record(model="gpt-4o", input_tokens=1840, output_tokens=220)
    meter.tool_call("grep", arguments={"q": "auth"}, result=["a.py"])
    return JSONResponse({"runId": meter.run_id, "cost": meter.totals.as_cost_json()})


async def boom(request: Request) -> JSONResponse:
    current_meter().record(model="tiny", input_tokens=10, output_tokens=0)
    raise RuntimeError("provider exploded")


def make_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/agents/{name}/run", run, methods=["POST"]),
            Route("/boom", boom),
            Route("/health", lambda r: JSONResponse({"ok": True})),
        ]
    )


async def test_cost_headers_state_and_trace(prices: Any, with_identity: Any) -> None:
    mw = CostMeterMiddleware(make_app(), prices=prices, on_alert=None, exempt_paths=["/health"])
    transport = httpx.ASGITransport(app=with_identity(mw))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.post(
            "/agents/the-developer/run",
            headers={"x-test-user": "usr_8f3a", "x-test-tenant": "acme"},
        )
        health = await client.get("/health")
    assert r.status_code == 200
    body = r.json()
    # 1840 * 2.5e-6 + 220 * 1e-5 = 0.0046 + 0.0022
    assert body["cost"] == {"inputTokens": 1840, "outputTokens": 220, "totalCost": 0.0068}
    assert r.headers["x-agenthood-cost"] == "0.0068"
    assert r.headers["x-agenthood-run-id"] == body["runId"]
    assert "x-agenthood-run-id" not in health.headers  # exempt: not metered
    scope = MemoryScope.operator(user="usr_8f3a", tenant="acme")
    trace = await mw.traces.get(scope, body["runId"])
    assert trace is not None
    assert trace["agent"] == "the-developer" and trace["status"] == 200
    assert [e["type"] for e in trace["events"]] == ["step", "model_call", "tool_call"]
    assert trace["events"][2]["arguments"] == {"q": "auth"}
    assert trace["totals"]["totalCost"] == "0.0068"
    events = await mw.ledger.usage(scope)
    assert [(e.model, e.cost_nanos) for e in events] == [("gpt-4o", 6_800_000)]
    assert (await mw.ledger.report("agent"))[0].subject == "the-developer"
    with pytest.raises(LookupError):
        current_meter()


async def test_errors_are_still_charged_and_traced(prices: Any, with_identity: Any) -> None:
    mw = CostMeterMiddleware(make_app(), prices=prices, on_alert=None)
    transport = httpx.ASGITransport(app=with_identity(mw), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom", headers={"x-test-user": "u"})
    assert r.status_code == 500
    scope = MemoryScope.operator(user="u")
    assert await mw.ledger.spend(scope) == Decimal("0.0000015")
    (trace,) = await mw.traces.list(scope)
    assert trace["error"] == "RuntimeError: provider exploded"
    assert trace["status"] == 500


async def test_anonymous_requests_are_metered_under_a_reserved_scope(prices: Any) -> None:
    mw = CostMeterMiddleware(make_app(), prices=prices, on_alert=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://t") as c:
        assert (await c.post("/agents/x/run")).status_code == 200
    anon = MemoryScope.operator(user="anonymous", tenant="agenthood.anonymous")
    assert await mw.ledger.spend(anon) == Decimal("0.0068")


async def test_client_disconnect_mid_stream_still_records_cost(
    prices: Any, with_identity: Any, ledger_url: str
) -> None:
    produced: list[int] = []
    stream_done = asyncio.Event()

    async def stream(request: Request) -> StreamingResponse:
        meter = current_meter()

        async def tokens() -> Any:
            try:
                for i in range(1000):
                    meter.record(model="gpt-4o", input_tokens=0, output_tokens=100)
                    produced.append(i)
                    yield f"chunk {i}\n".encode()
                    await asyncio.sleep(0.001)
            finally:
                stream_done.set()

        return StreamingResponse(tokens())

    app = Starlette(routes=[Route("/agents/{name}/run", stream, methods=["POST"])])
    mw = CostMeterMiddleware(app, prices=prices, ledger=ledger_url, on_alert=None)
    wrapped = with_identity(mw)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/agents/streamer/run", "raw_path": b"/agents/streamer/run",
        "root_path": "", "query_string": b"", "headers": [(b"x-test-user", b"s")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    disconnect = asyncio.Event()
    chunks: list[bytes] = []
    requested = [False]

    async def receive() -> dict[str, Any]:
        if not requested[0]:
            requested[0] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            if len(chunks) == 5:
                disconnect.set()  # the client goes away after five chunks

    await asyncio.wait_for(wrapped(scope, receive, send), 10)
    await asyncio.wait_for(stream_done.wait(), 10)
    await mw.flush()
    assert 5 <= len(produced) < 1000  # the stream stopped early
    spent = await mw.ledger.spend(MemoryScope.operator(user="s"))
    assert spent == Decimal("0.001") * len(produced)  # every produced chunk was charged
    await mw.close()


async def test_lifespan_shutdown_flushes_pending_runs(
    prices: Any, with_identity: Any, tmp_path: Any
) -> None:
    app = make_app()
    mw = CostMeterMiddleware(app, prices=prices, ledger=f"sqlite:///{tmp_path}/l.db", on_alert=None)
    transport = httpx.ASGITransport(app=with_identity(mw))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for _ in range(20):
            await client.post("/agents/a/run", headers={"x-test-user": "l"})
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await mw({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    # After shutdown every run is in the file: a fresh ledger sees all 20.
    from agenthood_mw.metering import SQLiteLedger

    fresh = SQLiteLedger(f"{tmp_path}/l.db")
    assert await fresh.spend(MemoryScope.operator(user="l")) == Decimal("0.0068") * 20
    await fresh.close()
    await mw.close()


async def test_unknown_scope_types_pass_through(prices: Any) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        with pytest.raises(LookupError):
            current_meter()

    mw = CostMeterMiddleware(app, prices=prices, on_alert=None)
    await mw({"type": "custom"}, None, None)  # type: ignore[arg-type]
    assert seen == ["custom"]


async def test_websocket_runs_are_metered(prices: Any, with_identity: Any) -> None:
    from starlette.websockets import WebSocket

    async def ws_app(scope: Any, receive: Any, send: Any) -> None:
        ws = WebSocket(scope, receive, send)
        await ws.accept()
        current_meter().record(model="tiny", input_tokens=100, output_tokens=100)
        await ws.send_text("hi")
        await ws.close()

    mw = CostMeterMiddleware(ws_app, prices=prices, on_alert=None)
    incoming = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket", "asgi": {"version": "3.0"}, "path": "/agents/chat/run",
        "raw_path": b"/agents/chat/run", "root_path": "", "query_string": b"",
        "headers": [(b"x-test-user", b"w")], "scheme": "ws", "subprotocols": [],
    }  # fmt: skip
    await with_identity(mw)(scope, receive, send)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert (b"x-agenthood-run-id", agenthood_state(scope)["run_id"].encode()) in sent[0]["headers"]
    spend = await mw.ledger.report("agent")
    assert [(s.subject, s.cost) for s in spend] == [("chat", Decimal("0.000075"))]


def test_meter_requires_a_scope(prices: Any) -> None:
    with pytest.raises(TypeError, match="MemoryScope"):
        Meter(prices=prices, scope="user-1")  # type: ignore[arg-type]

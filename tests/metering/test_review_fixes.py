"""Regressions of the review: mount points, made-up agent names, the reserved anonymous scope."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from agenthood_mw import Identity
from agenthood_mw._core.budgets import BudgetBook, BudgetRule
from agenthood_mw._core.scope import ANONYMOUS_TENANT, MemoryScope
from agenthood_mw.metering import Budget, CostMeterMiddleware, current_meter
from agenthood_mw.metering._engine import ANONYMOUS_SCOPE
from agenthood_mw.metering._ledger import MemoryLedger
from agenthood_mw.metering._records import RunRecord, Totals, UsageEvent
from agenthood_mw.wsgi import CostMeterMiddleware as WSGICostMeter

DAY = 86400.0
T0 = 1_700_000_000.0 - (1_700_000_000.0 % DAY) + 3600


async def _run(request: Request) -> JSONResponse:
    meter = current_meter()
    meter.record(model="tiny", input_tokens=1000, output_tokens=0)
    return JSONResponse({"runId": meter.run_id, "agent": meter.agent})


def _inner() -> Starlette:
    return Starlette(
        routes=[
            Route("/agents/{name}/run", _run, methods=["POST"]),
            Route("/health", lambda r: PlainTextResponse("ok")),
        ]
    )


# -- finding 4: exempt paths and the default agent are relative to the mount point ---------------
@pytest.mark.parametrize("how", ["mount", "root_path"])
async def test_exempt_path_and_agent_name_under_a_mount_point(prices: Any, how: str) -> None:
    mw = CostMeterMiddleware(_inner(), prices=prices, on_alert=None, exempt_paths=["/health"])
    if how == "mount":
        app: Any = Starlette(routes=[Mount("/v1", app=mw)])
        transport = httpx.ASGITransport(app=app)
    else:
        transport = httpx.ASGITransport(app=mw, root_path="/v1")
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        health = await client.get("/v1/health")
        r = await client.post("/v1/agents/the-developer/run")
    assert health.status_code == 200 and "x-agenthood-run-id" not in health.headers
    assert r.status_code == 200 and r.json()["agent"] == "the-developer"
    trace = await mw.traces.get(ANONYMOUS_SCOPE, r.json()["runId"])
    assert trace is not None and trace["path"] == "/agents/the-developer/run"
    assert [s.subject for s in await mw.ledger.report("agent")] == ["the-developer"]
    await mw.close()


def test_wsgi_twin_sees_the_same_route_path(prices: Any) -> None:
    seen: list[Any] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        seen.append(environ.get("agenthood.state", {}).get("meter"))
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"ok"]

    mw = WSGICostMeter(app, prices=prices, on_alert=None, exempt_paths=["/health"])
    statuses: list[str] = []
    for path in ("/health", "/agents/dev/run"):
        environ = {"REQUEST_METHOD": "POST", "SCRIPT_NAME": "/v1", "PATH_INFO": path}
        body = mw(environ, lambda s, h, e=None: statuses.append(s))
        if hasattr(body, "close"):
            body.close()
    assert statuses == ["200 OK", "200 OK"]
    assert seen[0] is None and seen[1].agent == "dev" and seen[1].path == "/agents/dev/run"
    mw.close()


# -- finding 8: names from the URL cannot mint budget accounts; the book is bounded -------------
def test_a_per_agent_budget_needs_the_declared_agent_names(prices: Any) -> None:
    with pytest.raises(ValueError, match="agents"):
        CostMeterMiddleware(_inner(), prices=prices, budgets=[Budget(per="agent", limit="1")])
    with pytest.raises(TypeError, match="agents"):
        CostMeterMiddleware(_inner(), prices=prices, agents="the-developer")
    with pytest.raises(TypeError, match="agents"):
        CostMeterMiddleware(_inner(), prices=prices, agents=["ok", ""])
    with pytest.raises(ValueError, match="max_budget_accounts"):
        CostMeterMiddleware(_inner(), prices=prices, max_budget_accounts=0)


async def test_made_up_agent_names_create_no_budget_accounts(prices: Any) -> None:
    # The repro of the review (t3_agent_budget_growth.py), scaled down: 404s under made-up names.
    served = Starlette(
        routes=[Route(f"/agents/{n}/run", _run, methods=["POST"]) for n in ("the-developer", "spy")]
    )
    mw = CostMeterMiddleware(
        served,
        prices=prices,
        on_alert=None,
        budgets=[Budget(per="agent", limit="10.00", window="1d")],
        agents=["the-developer"],
    )
    book = mw.engine.budget_store.book  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=mw)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for i in range(300):
            assert (await client.post(f"/agents/x{i}/run")).status_code == 404
        assert len(book) == 0
        r = await client.post("/agents/the-developer/run")
        assert r.status_code == 200 and r.json()["agent"] == "the-developer"
        assert len(book) == 1
        # A made-up name that the app does serve is metered, but not as an agent.
        r = await client.post("/agents/spy/run")
    assert r.status_code == 200 and r.json()["agent"] is None
    assert len(book) == 1
    assert [s.subject for s in await mw.ledger.report("agent")] == ["the-developer"]
    await mw.close()


async def test_budget_book_is_capped_and_eviction_keeps_the_spend(prices: Any) -> None:
    class Clock:
        now = T0

        def __call__(self) -> float:
            return self.now

    mw = CostMeterMiddleware(
        _inner(),
        prices=prices,
        on_alert=None,
        budgets=[Budget(per="user", limit="0.0003", window="1d", reserve="0.0001")],
        max_budget_accounts=50,
        clock=Clock(),
    )
    book = mw.engine.budget_store.book  # type: ignore[attr-defined]

    async def call(user: str) -> int:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/agents/a/run",
            "root_path": "",
            "headers": [],
            "query_string": b"",
            "user": Identity(user_id=user),
        }
        statuses: list[int] = []

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await mw(scope, receive, send)
        return statuses[0]

    # 1000 tokens of "tiny" = $0.00015: two runs reach the $0.0003 limit.
    assert [await call("heavy") for _ in range(3)] == [200, 200, 429]
    for i in range(500):
        assert await call(f"user{i}") == 200
        assert len(book) <= 50
    assert ("heavy",) not in {(k[1],) for k in book._accounts}  # evicted
    assert await call("heavy") == 429  # seeded again from the ledger: the spend is kept
    await mw.close()


def test_ended_windows_are_collected_in_one_pass_not_per_admission() -> None:
    rule = BudgetRule("user", limit=100, window=DAY, reserve=1)
    book = BudgetBook([rule], ttl=60)
    end = T0 - 3600 + DAY  # the end of T0's window
    for i in range(20):
        decision = book.admit({"user": f"u{i}"}, T0)
        book.settle(decision.holds, 1)  # type: ignore[union-attr]
    busy = book.admit({"user": "busy"}, T0)
    assert len(book) == 21
    book.admit({"user": "late"}, end + 30)  # the window ended less than one ttl ago: kept
    assert len(book) == 22
    # A long run keeps its hold alive (extend refreshes it) past the end of its window.
    assert book.extend(busy.holds, 1, end + 100) is None  # type: ignore[union-attr]
    book.admit({"user": "later"}, end + 120)
    assert {k[1] for k in book._accounts} == {"busy", "late", "later"}
    book.admit({"user": "last"}, end + 200)  # the extended hold expired at end + 160
    assert {k[1] for k in book._accounts} == {"late", "later", "last"}


def test_memory_ledger_spend_is_indexed_by_subject() -> None:
    ledger = MemoryLedger()
    alice = MemoryScope.operator(user="alice", tenant="acme")
    bob = MemoryScope.operator(user="bob", tenant="acme")

    def run(scope: MemoryScope, agent: str, i: int, ts: float, nanos: int) -> RunRecord:
        ev = UsageEvent(
            f"r:{scope.user}{i}", f"{scope.user}{i}", ts, "m", None, 1, 0, 0, 0, 0, nanos
        )
        return RunRecord(f"{scope.user}{i}", scope, agent, ts, ts, 200, None, None, Totals(), (ev,))

    ledger.write_runs([run(alice, "dev", i, T0 + i, 10) for i in range(10)])
    ledger.write_runs([run(bob, "ops", i, T0 + i, 7) for i in range(10)])
    assert ledger.spend_between("user", alice.storage_key, T0, T0 + 5) == 50
    assert ledger.spend_between("agent", "ops", T0 + 5, float("inf")) == 35
    assert ledger.spend_between("tenant", "acme", 0, float("inf")) == 170
    assert ledger.spend_between("agent", "nobody", 0, float("inf")) == 0
    assert ledger._erase(alice.storage_key) == 10
    assert ledger.spend_between("agent", "dev", 0, float("inf")) == 0
    assert ledger.spend_between("tenant", "acme", 0, float("inf")) == 70
    assert ledger._user_events(bob.storage_key, T0 + 8, None, 100)[0].ts == T0 + 9


# -- finding 10: no identity shares the anonymous scope ----------------------------------------
async def test_a_token_with_the_reserved_claims_shares_nothing_with_anonymous_callers(
    prices: Any,
) -> None:
    from agenthood_mw.auth import AuthMiddleware, mint_token

    secret = "s" * 40
    mw = CostMeterMiddleware(
        _inner(),
        prices=prices,
        on_alert=None,
        budgets=[Budget(per="user", limit="0.0002", window="1d", reserve="0.0001")],
    )
    app = AuthMiddleware(mw, strategy="jwt", secret=secret, optional=True)
    token = mint_token(secret=secret, user_id="anonymous", tenant=ANONYMOUS_TENANT)
    bearer = {"authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        anon = await client.post("/agents/a/run")
        assert anon.status_code == 200
        run_id = anon.json()["runId"]
        spent = await mw.ledger.spend(ANONYMOUS_SCOPE)
        assert spent == Decimal("0.00015")
        for _ in range(3):  # refused (by auth or metering), never metered in the anonymous scope
            r = await client.post("/agents/a/run", headers=bearer)
            assert r.status_code in (401, 403)
            assert r.json()["error"]["type"] in ("reserved_tenant", "invalid_token")
        assert await mw.ledger.spend(ANONYMOUS_SCOPE) == spent
        # The anonymous budget still has headroom for another anonymous run.
        assert (await client.post("/agents/a/run")).status_code == 200
    claimed = Identity(user_id="anonymous", tenant=ANONYMOUS_TENANT)
    with pytest.raises(PermissionError, match="reserved"):
        MemoryScope.for_identity(claimed)  # so no trace route can read anonymous traces
    assert mw.engine.scope_for(claimed) is None
    assert await mw.traces.get(ANONYMOUS_SCOPE, run_id) is not None  # the operator still can
    await mw.close()

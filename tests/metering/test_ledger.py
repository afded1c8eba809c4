"""Ledgers (memory, SQLite, PostgreSQL): exact totals under concurrency, idempotency, scoping."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from decimal import Decimal
from typing import Any

import httpx
import pytest

from agenthood_mw._core.pricing import nanos_to_decimal
from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.metering import CostEstimator, CostMeterMiddleware, current_meter

USERS = [f"user-{i}" for i in range(25)]
AGENTS = ["the-developer", "the-reviewer", "the-scribe"]


async def test_thousand_concurrent_requests_totals_are_exact(
    prices: Any, with_identity: Any, ledger_url: str
) -> None:
    rng = random.Random(1234)
    plan = []
    for i in range(1000):
        calls = []
        for j in range(rng.randint(1, 3)):
            key = f"req{i}-call{j}"
            calls.append((rng.choice(["gpt-4o", "tiny", "claude-sonnet"]), rng.randint(1, 5000),
                          rng.randint(0, 800), key))  # fmt: skip
        plan.append((rng.choice(USERS), rng.choice(AGENTS), calls))
    # Replays: 100 requests repeat an idempotency key already used by the same user.
    for i in range(100):
        user, agent, calls = plan[i]
        plan.append((user, agent, [calls[0]]))
    rng.shuffle(plan)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        meter = current_meter()
        idx = int(scope["query_string"].decode())
        for model, inp, out, key in plan[idx][2]:
            await asyncio.sleep(0)
            meter.record(model=model, input_tokens=inp, output_tokens=out, idempotency_key=key)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = CostMeterMiddleware(app, prices=prices, ledger=ledger_url, on_alert=None)
    transport = httpx.ASGITransport(app=with_identity(mw))
    sem = asyncio.Semaphore(200)

    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

        async def one(idx: int) -> int:
            user, agent, _ = plan[idx]
            async with sem:
                r = await client.get(f"/agents/{agent}/run?{idx}", headers={"x-test-user": user})
                return r.status_code

        statuses = await asyncio.gather(*(one(i) for i in range(len(plan))))
    assert set(statuses) == {200}
    await mw.flush()

    expected_user: dict[str, int] = defaultdict(int)
    expected_agent: dict[str, int] = defaultdict(int)
    seen: set[tuple[str, str]] = set()
    for user, agent, calls in plan:
        for model, inp, out, key in calls:
            if (user, key) in seen:
                continue  # a replay: counted once
            seen.add((user, key))
            from agenthood_mw._core.pricing import Usage

            nanos = prices.cost_nanos(model, Usage(inp, out))
            expected_user[user] += nanos
            expected_agent[agent] += nanos
    ledger = mw.ledger
    by_user = {s.scope.user: s.cost_nanos for s in await ledger.report("user")}
    by_agent = {s.subject: s.cost_nanos for s in await ledger.report("agent")}
    assert by_user == dict(expected_user)
    assert by_agent == dict(expected_agent)
    for user in USERS[:5]:
        scope = MemoryScope.operator(user=user)
        assert await ledger.spend(scope) == nanos_to_decimal(expected_user[user])
    estimator = CostEstimator(ledger)
    top = await estimator.top_spenders("agent", limit=1)
    assert top[0].cost_nanos == max(expected_agent.values())
    await mw.close()


async def test_reads_require_a_scope_and_never_cross_users(
    prices: Any, with_identity: Any, ledger_url: str
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        current_meter().record(model="gpt-4o", input_tokens=1000, output_tokens=0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw = CostMeterMiddleware(app, prices=prices, ledger=ledger_url, on_alert=None)
    transport = httpx.ASGITransport(app=with_identity(mw))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        # Two users whose ids would collide under naive prefix matching or delimiters.
        for user, tenant in [("a", "t"), ("a%", "t"), ("a", None), ("t/a", None)]:
            headers = {"x-test-user": user}
            if tenant:
                headers["x-test-tenant"] = tenant
            assert (await client.get("/", headers=headers)).status_code == 200
    await mw.flush()
    ledger = mw.ledger
    with pytest.raises(TypeError, match="MemoryScope"):
        await ledger.spend("a")
    with pytest.raises(TypeError, match="MemoryScope"):
        await ledger.usage(None)
    one = MemoryScope.operator(user="a", tenant="t")
    events = await ledger.usage(one)
    assert len(events) == 1 and events[0].cost_nanos == 2_500_000
    assert await ledger.spend(MemoryScope.operator(user="a%", tenant="t")) == Decimal("0.0025")
    assert await ledger.spend(MemoryScope.operator(user="nobody")) == Decimal(0)
    tenants = {s.subject: s.cost for s in await ledger.report("tenant")}
    assert tenants == {"t": Decimal("0.005")}
    # Erase removes one scope only.
    assert await ledger.erase(one) == 1
    assert await ledger.usage(one) == []
    assert len(await ledger.report("user")) == 3
    await mw.close()


async def test_ledger_writes_are_idempotent_across_flushes(prices: Any, ledger: Any) -> None:
    from agenthood_mw.metering import Meter

    scope = MemoryScope.operator(user="idem")
    meter = Meter(prices=prices, scope=scope, agent="a")
    meter.record(model="gpt-4o", input_tokens=100, output_tokens=0, idempotency_key="k1")
    meter.record(model="gpt-4o", input_tokens=100, output_tokens=0, idempotency_key="k1")
    meter.record(model="gpt-4o", input_tokens=100, output_tokens=0)
    assert meter.totals.input_tokens == 200  # the in-request replay is ignored
    run = meter.finish(status=200)
    assert ledger.write_runs([run]) == [500_000]
    assert ledger.write_runs([run]) == [0]  # a retried batch changes nothing
    assert await ledger.spend(scope) == Decimal("0.0005")


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        ("mysql://db", ValueError, "unsupported URL"),
        ("sqlite://costs.db", ValueError, "sqlite:///"),
        ("sqlite:///", ValueError, "names no file"),
        (42, TypeError, "URL string"),
    ],
)
def test_bad_ledger_urls(url: Any, error: type[Exception], message: str) -> None:
    from agenthood_mw.metering import ledger_from_url, trace_store_from_url

    with pytest.raises(error, match=message):
        ledger_from_url(url)
    with pytest.raises(error, match=message):
        trace_store_from_url(url)


def test_postgres_schema_must_be_a_plain_identifier(postgres_dsn: str) -> None:
    from agenthood_mw.metering import PostgresLedger

    with pytest.raises(ValueError, match="schema"):
        PostgresLedger(postgres_dsn, schema='x"; DROP TABLE y; --')

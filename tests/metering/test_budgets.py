"""Hard budgets: admission before the app runs, bounded overshoot, free refusals, resets."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenthood_mw._core.budgets import Admission, BudgetBook, BudgetRule, Refusal
from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.metering import Budget, BudgetExhausted, CostMeterMiddleware, current_meter

DAY = 86400.0
T0 = 1_700_000_000.0 - (1_700_000_000.0 % DAY) + 3600  # 01:00 UTC on some day


def test_book_admits_until_committed_plus_reserved_reaches_limit() -> None:
    rule = BudgetRule("user", limit=100, window=DAY, reserve=30)
    book = BudgetBook([rule], ttl=600)
    subjects = {"user": "u", "agent": None, "tenant": None}
    holds = []
    for _ in range(4):  # 0, 30, 60, 90 reserved < 100
        decision = book.admit(subjects, T0)
        assert isinstance(decision, Admission)
        holds.append(decision.holds)
    refused = book.admit(subjects, T0)
    assert isinstance(refused, Refusal) and refused.retry_after == 1.0  # only in-flight holds
    for h in holds:
        book.settle(h, 30)  # 120 committed: overshoot 20 <= one reservation
    refused = book.admit(subjects, T0 + 10)
    assert isinstance(refused, Refusal)
    assert refused.retry_after == pytest.approx(DAY - 3600 - 10)  # to 00:00 UTC
    assert isinstance(book.admit(subjects, T0 + DAY), Admission)  # the window reset


def test_book_reservations_expire_and_release() -> None:
    rule = BudgetRule("user", limit=100, window=DAY, reserve=100)
    book = BudgetBook([rule], ttl=60)
    s = {"user": "u"}
    first = book.admit(s, T0)
    assert isinstance(first, Admission)
    assert isinstance(book.admit(s, T0 + 59), Refusal)
    assert isinstance(book.admit(s, T0 + 61), Admission)  # the stuck hold expired
    book.settle(first.holds, 0)
    assert book.snapshot(rule, "u", T0 + 61) == (0, 100)


def test_book_checks_every_budget_atomically() -> None:
    user = BudgetRule("user", limit=100, window=DAY, reserve=10, index=0)
    agent = BudgetRule("agent", limit=5, window=DAY, reserve=10, index=1)
    book = BudgetBook([user, agent], ttl=60)
    s = {"user": "u", "agent": "a", "tenant": None}
    assert isinstance(book.admit(s, T0), Admission)
    refused = book.admit(s, T0)
    assert isinstance(refused, Refusal) and refused.rule is agent
    assert book.snapshot(user, "u", T0) == (0, 10)  # the refused request reserved nothing


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 20.0}, "float"),
        ({"limit": "0"}, "positive"),
        ({"limit": "1", "per": "team"}, "per"),
        ({"limit": "1", "window": "soon"}, "window"),
        ({"limit": "1", "reserve": "-1"}, "reserve"),
    ],
)
def test_budget_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        Budget(**kwargs)


def test_middleware_validates_at_construction(prices: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError

    with pytest.raises(TypeError, match="budgets"):
        CostMeterMiddleware(app, prices=prices, budgets=Budget(limit="1"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="prices"):
        CostMeterMiddleware(app, prices="gpt-4o")
    with pytest.raises(ValueError, match="ledger"):
        CostMeterMiddleware(app, prices=prices, ledger="mysql://x")
    with pytest.raises(TypeError, match="on_alert"):
        CostMeterMiddleware(app, prices=prices, on_alert=42)
    with pytest.raises(ValueError, match="tokens_per_minute"):
        CostMeterMiddleware(app, prices=prices, tokens_per_minute=0)
    with pytest.raises(TypeError, match="agent"):
        CostMeterMiddleware(app, prices=prices, agent="dev")  # type: ignore[arg-type]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def metered_app(cost: str, gate: asyncio.Event | None = None) -> Any:
    ran: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        meter = current_meter()
        ran.append(meter.run_id)
        if gate is not None:
            await gate.wait()
        meter.record(model="tiny", input_tokens=1, output_tokens=0, cost=cost)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app.ran = ran  # type: ignore[attr-defined]
    return app


async def test_concurrent_burst_overshoots_at_most_one_reservation(
    prices: Any, with_identity: Any, ledger_url: str
) -> None:
    clock = Clock(T0)
    gate = asyncio.Event()
    app = metered_app("0.10", gate)
    mw = CostMeterMiddleware(
        app,
        prices=prices,
        ledger=ledger_url,
        budgets=[Budget(per="user", limit="1.00", window="1d", reserve="0.10")],
        on_alert=None,
        clock=clock,
    )
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=with_identity(mw)), base_url="http://t"
    )
    h = {"x-test-user": "burst"}
    scope = MemoryScope.operator(user="burst")
    # Spend 0.95 first: nearly exhausted.
    gate.set()
    for _ in range(9):
        assert (await client.get("/", headers=h)).status_code == 200
    app2 = metered_app("0.05")
    mw.app = app2
    assert (await client.get("/", headers=h)).status_code == 200
    await mw.flush()
    assert await mw.ledger.spend(scope) == Decimal("0.95")
    # Now a concurrent burst of 50 requests, all held inside the app until every one arrived.
    gate2 = asyncio.Event()
    app3 = metered_app("0.10", gate2)
    mw.app = app3

    async def one() -> httpx.Response:
        return await client.get("/", headers=h)

    tasks = [asyncio.create_task(one()) for _ in range(50)]
    for _ in range(200):
        await asyncio.sleep(0)
        if len(app3.ran) + sum(t.done() for t in tasks) >= 50:
            break
    gate2.set()
    responses = await asyncio.gather(*tasks)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 1 and statuses.count(429) == 49
    assert len(app3.ran) == 1  # refused requests never reached the app
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["type"] == "budget_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    await mw.flush()
    spent = await mw.ledger.spend(scope)
    assert spent == Decimal("1.05")  # overshoot 0.05 <= one reservation (0.10)
    assert len(await mw.ledger.usage(scope)) == 11  # refused requests cost nothing
    # Committed >= limit: refused with Retry-After to 00:00 UTC.
    r = await client.get("/", headers=h)
    assert r.status_code == 429 and int(r.headers["retry-after"]) == int(DAY - 3600)
    # The window resets at midnight UTC.
    clock.now = T0 + DAY - 3600
    assert (await client.get("/", headers=h)).status_code == 200
    await client.aclose()
    await mw.close()


async def test_budget_survives_restart_from_the_ledger(
    prices: Any, with_identity: Any, tmp_path: Any
) -> None:
    url = f"sqlite:///{tmp_path}/b.db"
    clock = Clock(T0)
    budgets = [Budget(per="user", limit="0.25", reserve="0.10")]
    for expected in ([200, 200, 200], [429]):
        mw = CostMeterMiddleware(
            metered_app("0.10"), prices=prices, ledger=url, budgets=budgets, on_alert=None,
            clock=clock,
        )  # fmt: skip
        transport = httpx.ASGITransport(app=with_identity(mw))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            got = [
                (await client.get("/", headers={"x-test-user": "r"})).status_code for _ in expected
            ]
        await mw.close()
        assert got == expected


@pytest.mark.parametrize("storage", ["memory", "redis"])
async def test_run_over_its_reservation_stops_when_budget_is_gone(
    prices: Any, with_identity: Any, storage: str, request: pytest.FixtureRequest
) -> None:
    options: dict[str, Any] = {}
    if storage == "redis":
        options["budget_storage"] = request.getfixturevalue("redis_url")
        options["budget_key_prefix"] = request.getfixturevalue("redis_prefix")
    steps: list[int] = []

    async def agent(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        meter = current_meter()
        stop = None
        try:
            for i in range(100):
                meter.check_budget()
                steps.append(i)
                meter.record(model="tiny", input_tokens=1, output_tokens=0, cost="0.10")
        except BudgetExhausted as exc:
            stop = exc.reason
        body = (stop or "done").encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    mw = CostMeterMiddleware(
        agent,
        prices=prices,
        budgets=[Budget(limit="1.00", reserve="0.10")],
        on_alert=None,
        **options,
    )
    transport = httpx.ASGITransport(app=with_identity(mw))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/", headers={"x-test-user": "loop"})
    assert r.text == "budget_exhausted:budget"
    assert len(steps) == 10  # 0.10 each: stopped at the 1.00 limit, not at 100 steps
    assert await mw.ledger.spend(MemoryScope.operator(user="loop")) == Decimal("1.00")
    await mw.close()


async def test_redis_budget_is_shared_by_workers(
    prices: Any, with_identity: Any, redis_url: str, redis_prefix: str, tmp_path: Any
) -> None:
    """Two middlewares ("workers") share one Redis count: the burst across both overshoots by
    at most one reservation, refused requests cost nothing, the window resets, and a Redis
    account that disappeared is re-seeded from the ledger."""
    clock = Clock(T0)
    url = f"sqlite:///{tmp_path}/shared.db"
    gate = asyncio.Event()
    apps = [metered_app("0.10", gate) for _ in range(2)]
    workers = [
        CostMeterMiddleware(
            app, prices=prices, ledger=url, on_alert=None, clock=clock,
            budgets=[Budget(per="user", limit="1.00", reserve="0.10")],
            budget_storage=redis_url, budget_key_prefix=redis_prefix,
        )
        for app in apps
    ]  # fmt: skip
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=with_identity(w)), base_url="http://t")
        for w in workers
    ]
    h = {"x-test-user": "shared"}
    gate.set()
    for i in range(9):  # 0.90 committed, alternating workers
        assert (await clients[i % 2].get("/", headers=h)).status_code == 200
    gate.clear()
    tasks = [asyncio.create_task(clients[i % 2].get("/", headers=h)) for i in range(40)]
    for _ in range(500):
        await asyncio.sleep(0.001)
        if sum(len(a.ran) for a in apps) + sum(t.done() for t in tasks) >= 9 + 40:
            break
    gate.set()
    statuses = [r.status_code for r in await asyncio.gather(*tasks)]
    assert statuses.count(200) == 1 and statuses.count(429) == 39
    for w in workers:
        await w.flush()
    scope = MemoryScope.operator(user="shared")
    assert await workers[0].ledger.spend(scope) == Decimal("1.00")  # 0.90 + one 0.10
    assert sum(len(a.ran) for a in apps) == 10  # refused requests never ran
    # A third worker started later sees the same exhausted budget.
    late = CostMeterMiddleware(
        metered_app("0.10"), prices=prices, ledger=url, on_alert=None, clock=clock,
        budgets=[Budget(per="user", limit="1.00", reserve="0.10")],
        budget_storage=redis_url, budget_key_prefix=redis_prefix,
    )  # fmt: skip
    transport = httpx.ASGITransport(app=with_identity(late))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/", headers=h)
        assert r.status_code == 429 and int(r.headers["retry-after"]) == int(DAY - 3600)
        # Redis lost the account (flush, eviction): it is re-seeded from the ledger.
        import redis

        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=redis_prefix + "*"):
            client.delete(key)
        client.close()
        assert (await c.get("/", headers=h)).status_code == 429
        clock.now = T0 + DAY  # the next window
        assert (await c.get("/", headers=h)).status_code == 200
    for c in clients:
        await c.aclose()
    for w in [*workers, late]:
        await w.close()


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=1000),
    reserve=st.integers(min_value=1, max_value=200),
    ops=st.lists(
        st.tuples(st.sampled_from(["admit", "settle"]), st.integers(min_value=0, max_value=10**6)),
        max_size=80,
    ),
)
def test_book_never_overshoots_by_more_than_one_reservation(
    limit: int, reserve: int, ops: list[tuple[str, int]]
) -> None:
    """Any interleaving of admissions and settlements, each run costing at most its
    reservation: committed spend stays below limit + reserve, and only admitted runs spend."""
    book = BudgetBook([BudgetRule("user", limit=limit, window=DAY, reserve=reserve)], ttl=600)
    subjects = {"user": "u"}
    in_flight: list[Any] = []
    committed = 0
    for op, value in ops:
        if op == "admit":
            decision = book.admit(subjects, T0)
            if isinstance(decision, Admission):
                in_flight.append(decision.holds)
        elif in_flight:
            holds = in_flight.pop(value % len(in_flight))
            cost = value % (reserve + 1)  # within the reservation
            book.settle(holds, cost)
            committed += cost
        assert committed < limit + reserve
    for holds in in_flight:
        book.settle(holds, reserve)
        committed += reserve
    assert committed < limit + reserve
    assert book.snapshot(book.rules[0], "u", T0) == (committed, 0)

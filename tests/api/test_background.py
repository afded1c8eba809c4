"""Background runs over ASGI: 202 then poll, SSE events and resume, cancel, owner-only, the
per-user cap under real concurrency, refusals that create nothing, metering exactly once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenthood_mw import Budget, MemoryScope
from agenthood_mw._core.scope import ANONYMOUS_TENANT
from agenthood_mw.api import AgenthoodAPI, RunContext
from agenthood_mw.api._background import last_event_id, render_record
from agenthood_mw.api.demo import demo_agents
from agenthood_mw.memory import InMemoryBackend
from agenthood_mw.metering import MemoryLedger, MemoryTraceStore

from .test_app import SEED_KEYS, client, make_api, token

# the registry of runs in flight: a scope no token can reach (the reserved anonymous tenant)
REGISTRY = MemoryScope.operator(user="agenthood-background-runs", tenant=ANONYMOUS_TENANT)


class GatedAgent:
    """Calls the model once, then waits for ``gate`` (set by the test) before answering."""

    name = "gated"
    description = "waits for the test"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = 0

    async def run(self, task: str, ctx: RunContext) -> str:
        self.started += 1
        ctx.step("think")
        completion = await ctx.complete([{"role": "user", "content": task}])
        await self.gate.wait()
        return completion.text


@pytest.fixture
async def api() -> AsyncIterator[tuple[AgenthoodAPI, GatedAgent]]:
    gated = GatedAgent()
    api = make_api([gated, *demo_agents()], max_runs_per_user=2)
    yield api, gated
    gated.gate.set()
    await api.aclose()


async def wait_status(c: httpx.AsyncClient, run_id: str, user: str, *states: str) -> Any:
    deadline = time.monotonic() + 15
    while True:
        body = (await c.get(f"/runs/{run_id}", headers=token(user))).json()
        if body["status"] in states:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} never reached {states}: {body}")
        await asyncio.sleep(0.01)


def parse_sse(text: str) -> list[tuple[int, str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if fields:
            events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return events


async def registry_entries(api: AgenthoodAPI) -> list[str]:
    page = await api.memory_backend.list(REGISTRY, "project", "runs/")
    return [r.key for r in page.items]


async def test_202_at_once_then_poll_to_the_seed_json(
    api: tuple[AgenthoodAPI, GatedAgent],
) -> None:
    app, gated = api
    async with client(app) as c:
        r = await c.post("/agents/gated/runs", json={"task": "hello"}, headers=token("alice"))
        assert r.status_code == 202
        body = r.json()
        run_id = body["runId"]
        assert body["status"] == "queued" and body["result"] is None
        assert r.headers["location"] == f"/runs/{run_id}"
        running = await wait_status(c, run_id, "alice", "running")
        assert running["result"] is None and running["startedAt"] is not None
        assert await registry_entries(app) == ["runs/" + run_id]
        gated.gate.set()
        done = await wait_status(c, run_id, "alice", "completed")
    result = done["result"]
    assert set(result) == SEED_KEYS
    assert result["runId"] == run_id and result["userId"] == "alice"
    assert result["stopReason"] == "completed" and done["stopReason"] == "completed"
    assert result["memoryScope"] == "alice" and result["steps"] == 1
    assert result["output"].startswith("[offline")
    # the money: once in the ledger, under the run id, equal to the answer's cost
    await app.flush()
    usage = await app.ledger.usage(MemoryScope.operator(user="alice"))
    assert [u.run_id for u in usage] == [run_id]
    spend = await app.ledger.spend(MemoryScope.operator(user="alice"))
    assert spend == Decimal(str(result["cost"]["totalCost"])) > 0
    trace = await app.traces.get(MemoryScope.operator(user="alice"), run_id)
    assert trace is not None and trace["path"] == "/agents/gated/runs"
    assert await registry_entries(app) == []


async def test_events_stream_and_resume_with_last_event_id(
    api: tuple[AgenthoodAPI, GatedAgent],
) -> None:
    app, gated = api
    async with client(app) as c:
        run_id = (
            await c.post("/agents/gated/runs", json={"task": "x"}, headers=token("alice"))
        ).json()["runId"]
        await wait_status(c, run_id, "alice", "running")
        seen: list[tuple[int, str, dict[str, Any]]] = []

        async def follow() -> None:
            async with c.stream("GET", f"/runs/{run_id}/events", headers=token("alice")) as s:
                assert s.status_code == 200
                assert s.headers["content-type"].startswith("text/event-stream")
                text = ""
                async for chunk in s.aiter_text():
                    text += chunk
                seen.extend(parse_sse(text))

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.05)
        gated.gate.set()
        await asyncio.wait_for(follower, 10)
        assert [(i, e["status"]) for i, _, e in seen] == [(2, "running"), (3, "completed")]
        assert {name for _, name, _ in seen} == {"status"}
        assert seen[-1][2]["result"]["runId"] == run_id
        # resume: after event 2, only the final one; after the last, nothing
        resumed = await c.get(
            f"/runs/{run_id}/events", headers={**token("alice"), "last-event-id": "2"}
        )
        assert [(i, e["status"]) for i, _, e in parse_sse(resumed.text)] == [(3, "completed")]
        empty = await c.get(
            f"/runs/{run_id}/events", headers={**token("alice"), "last-event-id": "3"}
        )
        assert empty.status_code == 200 and parse_sse(empty.text) == []
        # from the start (no or a foreign Last-Event-ID): the run's current record
        fresh = await c.get(
            f"/runs/{run_id}/events", headers={**token("alice"), "last-event-id": "abc"}
        )
        assert [i for i, _, _ in parse_sse(fresh.text)] == [3]


async def test_cancel_stops_the_run_and_charges_what_was_used(
    api: tuple[AgenthoodAPI, GatedAgent],
) -> None:
    app, _ = api
    async with client(app) as c:
        run_id = (
            await c.post("/agents/gated/runs", json={"task": "stop me"}, headers=token("alice"))
        ).json()["runId"]
        await wait_status(c, run_id, "alice", "running")
        await asyncio.sleep(0.05)  # the model call is made, the agent waits on its gate
        r = await c.post(f"/runs/{run_id}/cancel", headers=token("alice"))
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "stopped" and body["stopReason"] == "cancelled"
        polled = (await c.get(f"/runs/{run_id}", headers=token("alice"))).json()
        again = await c.post(f"/runs/{run_id}/cancel", headers=token("alice"))
    assert polled == body and again.json() == body  # final; a second cancel changes nothing
    result = body["result"]
    assert result["stopReason"] == "cancelled" and result["output"] == ""
    assert result["cost"]["inputTokens"] > 0 and result["cost"]["outputTokens"] > 0
    await app.flush()
    alice = MemoryScope.operator(user="alice")
    usage = await app.ledger.usage(alice)
    assert [u.run_id for u in usage] == [run_id]
    assert usage[0].input_tokens == result["cost"]["inputTokens"]
    trace = await app.traces.get(alice, run_id)
    assert trace is not None and trace["stopReason"] == "cancelled"
    assert await registry_entries(app) == []


async def test_another_users_run_is_404_everywhere(
    api: tuple[AgenthoodAPI, GatedAgent],
) -> None:
    app, gated = api
    async with client(app) as c:
        run_id = (
            await c.post("/agents/gated/runs", json={"task": "mine"}, headers=token("alice"))
        ).json()["runId"]
        await wait_status(c, run_id, "alice", "running")
        for who in (token("bob"), token("alice", tenant="t2")):
            for method, path in (
                ("GET", f"/runs/{run_id}"),
                ("GET", f"/runs/{run_id}/events"),
                ("POST", f"/runs/{run_id}/cancel"),
            ):
                r = await c.request(method, path, headers=who)
                assert r.status_code == 404, (method, path)
                assert r.json()["error"]["type"] == "unknown_run"
        unauth = await c.post(f"/runs/{run_id}/cancel")
        assert unauth.status_code == 401
        still = (await c.get(f"/runs/{run_id}", headers=token("alice"))).json()
        assert still["status"] == "running"  # nobody else stopped it
        gated.gate.set()
        await wait_status(c, run_id, "alice", "completed")
        for path in (f"/runs/{run_id}", f"/runs/{run_id}/events"):
            assert (await c.get(path, headers=token("bob"))).status_code == 404


async def test_per_user_cap_under_real_concurrency(
    api: tuple[AgenthoodAPI, GatedAgent],
) -> None:
    app, gated = api  # max_runs_per_user=2
    async with client(app) as c:

        async def submit(user: str) -> httpx.Response:
            return await c.post("/agents/gated/runs", json={"task": "t"}, headers=token(user))

        answers = await asyncio.gather(*(submit("alice") for _ in range(8)))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [202, 202, *[429] * 6]
        refused = next(r for r in answers if r.status_code == 429)
        assert refused.json()["error"]["type"] == "too_many_runs"
        assert refused.headers["retry-after"] == "5"
        assert (await submit("bob")).status_code == 202  # the cap is per user
        gated.gate.set()
        for r in answers:
            if r.status_code == 202:
                await wait_status(c, r.json()["runId"], "alice", "completed")
        assert (await submit("alice")).status_code == 202  # slots come back
    await app.flush()
    assert gated.started == 4
    assert len(await app.ledger.usage(MemoryScope.operator(user="alice"))) == 3


async def test_refused_requests_create_nothing() -> None:
    gated = GatedAgent()
    ledger, traces, memory = MemoryLedger(), MemoryTraceStore(), InMemoryBackend()
    app = make_api(
        [gated],
        ledger=ledger,
        traces=traces,
        memory=memory,
        max_runs_per_user=1,
        meter_options={"budgets": [Budget(per="user", limit="0.000001", window="1d")]},
    )
    alice = MemoryScope.operator(user="alice")
    try:
        async with client(app) as c:
            cases = [
                (c.post("/agents/nope/runs", json={"task": "x"}, headers=token("alice")), 404),
                (c.post("/agents/gated/runs", json={"task": "x"}), 401),
                (c.post("/agents/gated/runs", json={"task": ""}, headers=token("alice")), 422),
                (c.post("/agents/gated/runs", json={"tusk": 1}, headers=token("alice")), 422),
                (
                    c.post(
                        "/agents/gated/runs",
                        content=b"task=x",
                        headers={**token("alice"), "content-type": "text/plain"},
                    ),
                    415,
                ),
            ]
            for call, status in cases:
                r = await call
                assert r.status_code == status
                assert set(r.json()["error"]) >= {"type", "message"}
            first = await c.post("/agents/gated/runs", json={"task": "x"}, headers=token("alice"))
            assert first.status_code == 202
            capped = await c.post("/agents/gated/runs", json={"task": "y"}, headers=token("alice"))
            assert capped.status_code == 429
            gated.gate.set()
            await wait_status(c, first.json()["runId"], "alice", "completed")
            await app.flush()
            # the first run spent the (tiny) budget: the next one is refused by the budget
            budget = await c.post("/agents/gated/runs", json={"task": "z"}, headers=token("alice"))
            assert budget.status_code == 429
            assert budget.json()["error"]["type"] == "budget_exceeded"
        await app.flush()
        assert gated.started == 1
        assert [u.run_id for u in await ledger.usage(alice)] == [first.json()["runId"]]
        assert len(await traces.list(alice)) == 1
        exported = await memory.export(alice)
        run_records = [r.key for r in exported.project if r.key.startswith(".agenthood/runs/")]
        assert run_records == [".agenthood/runs/" + first.json()["runId"]]
        assert await registry_entries(app) == []
    finally:
        gated.gate.set()
        await app.aclose()


async def test_a_failed_run_is_recorded_failed() -> None:
    class Broken:
        name = "broken"
        description = "raises"

        async def run(self, task: str, ctx: RunContext) -> str:
            raise RuntimeError("boom")

    app = make_api([Broken()])
    try:
        async with client(app) as c:
            run_id = (
                await c.post("/agents/broken/runs", json={"task": "x"}, headers=token("u"))
            ).json()["runId"]
            done = await wait_status(c, run_id, "u", "failed")
    finally:
        await app.aclose()
    assert done["error"] == {
        "type": "agent_error",
        "message": "the agent failed; see the run trace",
    }
    assert done["result"] is None and done["stopReason"] is None


async def test_a_foreground_run_is_still_read_as_its_trace(
    api: tuple[AgenthoodAPI, GatedAgent],
) -> None:
    app, _ = api
    async with client(app) as c:
        run = await c.post("/agents/the-scribe/run", json={"task": "x"}, headers=token("alice"))
        trace = (await c.get(f"/runs/{run.json()['runId']}", headers=token("alice"))).json()
        events = await c.get(f"/runs/{run.json()['runId']}/events", headers=token("alice"))
    assert trace["runId"] == run.json()["runId"] and "totals" in trace and "result" not in trace
    assert events.status_code == 404  # only background runs have an event stream


async def test_shutdown_marks_running_runs_interrupted_and_charges_them() -> None:
    gated = GatedAgent()
    memory = InMemoryBackend()
    app = make_api([gated], memory=memory)
    async with client(app) as c:
        run_id = (
            await c.post("/agents/gated/runs", json={"task": "x"}, headers=token("alice"))
        ).json()["runId"]
        await wait_status(c, run_id, "alice", "running")
        await asyncio.sleep(0.05)
        record = await app.background.record(MemoryScope.operator(user="alice"), run_id)
        await app.background.stop()
        assert record is not None and record["status"] == "interrupted"
        refused = await c.post("/agents/gated/runs", json={"task": "x"}, headers=token("alice"))
        assert refused.status_code == 503
    await app.flush()
    usage = await app.ledger.usage(MemoryScope.operator(user="alice"))
    assert [u.run_id for u in usage] == [run_id]
    await app.aclose()


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"max_runs_per_user": 0}, ValueError, "max_runs_per_user"),
        ({"max_runs_per_user": 1.5}, TypeError, "max_runs_per_user"),
        ({"max_runs_per_user": True}, TypeError, "max_runs_per_user"),
        ({"run_lease": 0}, ValueError, "run_lease"),
        ({"run_lease": "30s"}, TypeError, "run_lease"),
    ],
)
def test_options_are_checked_at_construction(
    options: dict[str, Any], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=name):
        AgenthoodAPI(agents=demo_agents(), **options)


class Stepper:
    """Takes ten steps, calling the model at each."""

    name = "stepper"
    description = "many steps"

    async def run(self, task: str, ctx: RunContext) -> str:
        for i in range(10):
            ctx.step(f"step {i}")
            ctx.partial_output = f"after step {i}"
            await ctx.complete([{"role": "user", "content": task}])
        return "all done"


async def test_thinking_budget_and_run_timeout_stop_a_background_run() -> None:
    gated = GatedAgent()
    app = make_api([gated, Stepper()], run_timeout=0.3)
    try:
        async with client(app) as c:
            budgeted = await c.post(
                "/agents/stepper/runs",
                json={"task": "x", "budget": {"maxSteps": 2}},
                headers=token("alice"),
            )
            timed = await c.post("/agents/gated/runs", json={"task": "x"}, headers=token("alice"))
            by_budget = await wait_status(c, budgeted.json()["runId"], "alice", "stopped")
            by_clock = await wait_status(c, timed.json()["runId"], "alice", "stopped")
    finally:
        gated.gate.set()
        await app.aclose()
    assert by_budget["stopReason"] == by_budget["result"]["stopReason"] == "budget_exhausted:steps"
    assert by_budget["result"]["output"] == "after step 1" and by_budget["result"]["steps"] == 2
    assert by_clock["stopReason"] == by_clock["result"]["stopReason"] == "timeout"


async def test_openapi_documents_the_background_routes(
    api: tuple[AgenthoodAPI, GatedAgent],
) -> None:
    app, _ = api
    async with client(app) as c:
        doc = (await c.get("/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths["/agents/{name}/runs"]["post"]["responses"]) >= {"202", "404", "429"}
    assert "get" in paths["/runs/{run_id}/events"] and "post" in paths["/runs/{run_id}/cancel"]
    states = doc["components"]["schemas"]["RunStatus"]["properties"]["status"]["enum"]
    assert states == ["queued", "running", "completed", "stopped", "failed", "interrupted"]


async def test_a_value_that_is_not_a_run_record_is_no_run(
    api: tuple[AgenthoodAPI, GatedAgent],
) -> None:
    """The record key lives in the caller's own memory, which their agents can write: a value
    that is not a well-formed record of that run id is answered as no run (404), never a 500."""
    app, _ = api
    alice = MemoryScope.operator(user="alice")
    run_id = "ab" * 16
    async with client(app) as c:
        for value in (
            "text",
            {"runId": run_id},
            {"runId": "cd" * 16, "status": "running", "eventId": 1, "result": None},
            {"runId": run_id, "status": "done", "eventId": 1, "result": None},
            {"runId": run_id, "status": "running", "eventId": "1", "result": None},
            {"runId": run_id, "status": "completed", "eventId": 3, "result": {"x": 1}},
            {"runId": run_id, "status": "completed", "eventId": 3, "result": '1}, "x": {'},
            {"runId": run_id, "status": "completed", "eventId": 3, "result": "[1]"},
        ):
            await app.memory_backend.put(alice, "project", f".agenthood/runs/{run_id}", value)
            for method, path in (
                ("GET", f"/runs/{run_id}"),
                ("GET", f"/runs/{run_id}/events"),
                ("POST", f"/runs/{run_id}/cancel"),
            ):
                r = await c.request(method, path, headers=token("alice"))
                assert r.status_code == 404, (value, path)


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def shared_store(
    request: pytest.FixtureRequest, tmp_path: Any
) -> Any:  # a factory of backends that all open the same store
    if request.param == "sqlite":
        from agenthood_mw.memory import SQLiteBackend

        path = tmp_path / "memory.db"
        return lambda: SQLiteBackend(str(path))
    if request.param == "redis":
        from agenthood_mw.memory.redis import RedisBackend

        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        return lambda: RedisBackend(url, key_prefix=prefix)
    from agenthood_mw.memory.postgres import PostgresBackend

    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("postgres_schema")
    return lambda: PostgresBackend(dsn, schema=schema, max_size=4)


async def test_two_workers_on_one_store(shared_store: Any) -> None:
    """Worker A runs the run; worker B (same store) reads its status, follows it by polling,
    cannot cancel it (409); when A stops renewing its lease (a crash), B marks it interrupted."""
    gated = GatedAgent()
    a = make_api([gated], memory=shared_store(), run_lease=0.3)
    b = make_api([GatedAgent()], memory=shared_store(), run_lease=0.3)
    try:
        async with client(a) as ca, client(b) as cb:
            await b.background.start()
            run_id = (
                await ca.post("/agents/gated/runs", json={"task": "x"}, headers=token("alice"))
            ).json()["runId"]
            await wait_status(ca, run_id, "alice", "running")
            await asyncio.sleep(0.5)  # B sweeps: A is alive, its run stays running
            seen = await cb.get(f"/runs/{run_id}", headers=token("alice"))
            assert seen.json()["status"] == "running"
            assert (await cb.get(f"/runs/{run_id}", headers=token("bob"))).status_code == 404
            elsewhere = await cb.post(f"/runs/{run_id}/cancel", headers=token("alice"))
            assert elsewhere.status_code == 409
            assert elsewhere.json()["error"]["type"] == "run_elsewhere"
            # A "crashes": it stops renewing its lease, its run never ends
            keeper = a.background._keeper
            assert keeper is not None
            keeper.cancel()
            async with cb.stream("GET", f"/runs/{run_id}/events", headers=token("alice")) as s:
                text = "".join([chunk async for chunk in s.aiter_text()])
            assert [e["status"] for _, _, e in parse_sse(text)] == ["running", "interrupted"]
            final = (await cb.get(f"/runs/{run_id}", headers=token("alice"))).json()
            assert final["status"] == "interrupted" and final["result"] is None
            assert await registry_entries(b) == []
            # A was only stalled: when its run finishes after all, its final record (charged
            # once) replaces "interrupted", numbered after it
            gated.gate.set()
            late = await wait_status(cb, run_id, "alice", "completed")
            assert late["eventId"] == final["eventId"] + 1 and late["result"]["runId"] == run_id
            await a.flush()
            usage = await a.ledger.usage(MemoryScope.operator(user="alice"))
            assert [u.run_id for u in usage] == [run_id]
    finally:
        await b.aclose()
        gated.gate.set()
        await a.aclose()


async def test_a_store_that_cannot_record_the_run_answers_503_and_starts_nothing() -> None:
    gated = GatedAgent()
    memory = InMemoryBackend()
    app = make_api([gated], memory=memory, max_runs_per_user=1)
    await memory.close()  # the memory backend is down
    try:
        async with client(app) as c:
            for _ in range(2):  # the slot is given back: never 429
                r = await c.post("/agents/gated/runs", json={"task": "x"}, headers=token("u"))
                assert r.status_code == 503
                assert r.json()["error"]["type"] == "store_unavailable"
        await asyncio.sleep(0.05)
        assert gated.started == 0
        await app.flush()
        # no usage was charged (the ledger keeps the failed attempt with zero cost)
        assert await app.ledger.spend(MemoryScope.operator(user="u")) == 0
    finally:
        await app.aclose()


@given(st.text(max_size=12) | st.none())
def test_last_event_id_is_a_small_number_or_zero(value: str | None) -> None:
    parsed = last_event_id(value)
    assert 0 <= parsed < 10**9
    if parsed:
        assert value is not None and int(value) == parsed


@given(
    st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in ("result", "worker")),
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        max_size=6,
    ),
    st.none() | st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4),
)
def test_a_record_renders_as_json_with_its_result_unchanged(
    fields: dict[str, Any], result: dict[str, str] | None
) -> None:
    record = {**fields, "worker": "w", "result": None if result is None else json.dumps(result)}
    rendered = json.loads(render_record(record))
    assert rendered == {**fields, "result": result}


async def test_the_rate_limit_refuses_a_background_run_before_anything_exists() -> None:
    from agenthood_mw.auth import AuthMiddleware
    from agenthood_mw.ratelimit import RateLimitMiddleware

    from .test_app import SECRET

    gated = GatedAgent()
    memory = InMemoryBackend()
    u = MemoryScope.operator(user="u")
    app = AgenthoodAPI(
        agents=[gated],
        memory=memory,
        ledger=MemoryLedger(),
        traces=MemoryTraceStore(),
        max_runs_per_user=10,
    )
    app.add_middleware(RateLimitMiddleware, window="1m", max=2, burst=0)
    app.add_middleware(AuthMiddleware, strategy="jwt", secret=SECRET, audience="agenthood-api")
    try:
        async with client(app) as c:
            answers = [
                await c.post("/agents/gated/runs", json={"task": "x"}, headers=token("u"))
                for _ in range(3)
            ]
            assert [r.status_code for r in answers] == [202, 202, 429]
            assert answers[2].json()["error"]["type"] == "rate_limited"
            assert "retry-after" in answers[2].headers
            gated.gate.set()
            for r in answers[:2]:
                assert (await app.background.record(u, r.json()["runId"])) is not None
            for _ in range(1500):
                records = [await app.background.record(u, r.json()["runId"]) for r in answers[:2]]
                if all(rec is not None and rec["status"] == "completed" for rec in records):
                    break
                await asyncio.sleep(0.01)
        await app.flush()
        assert gated.started == 2
        assert len(await app.ledger.usage(MemoryScope.operator(user="u"))) == 2
        exported = await memory.export(MemoryScope.operator(user="u"))
        assert sum(r.key.startswith(".agenthood/runs/") for r in exported.project) == 2
    finally:
        await app.aclose()


async def test_a_background_run_sees_the_requests_conversation_id() -> None:
    class Echo:
        name = "echo"
        description = "answers with its conversation id"

        async def run(self, task: str, ctx: RunContext) -> str:
            return f"conversation={ctx.conversation_id}"

    app = make_api([Echo()])
    try:
        async with client(app) as c:
            outputs = []
            for body in ({"task": "x", "conversationId": "plans"}, {"task": "x"}):
                r = await c.post("/agents/echo/runs", json=body, headers=token("u"))
                assert r.status_code == 202
                done = await wait_status(c, r.json()["runId"], "u", "completed")
                outputs.append(done["result"]["output"])
    finally:
        await app.aclose()
    assert outputs == ["conversation=plans", "conversation=None"]


# -- ?detail=run: the run's own events ---------------------------------------------------------


def parse_run_sse(text: str) -> list[tuple[int | None, str, Any]]:
    """Every event of a stream, in order (``id`` None for an event without one)."""
    events: list[tuple[int | None, str, Any]] = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if fields:
            event_id = int(fields["id"]) if "id" in fields else None
            events.append((event_id, fields["event"], json.loads(fields["data"])))
    return events


async def run_events(
    c: httpx.AsyncClient, run_id: str, user: str = "alice", after: int | None = None
) -> httpx.Response:
    headers = token(user) if after is None else {**token(user), "last-event-id": str(after)}
    return await c.get(f"/runs/{run_id}/events?detail=run", headers=headers)


async def test_detail_run_streams_the_runs_own_events_in_order(
    api: tuple[AgenthoodAPI, GatedAgent],
) -> None:
    app, _ = api
    async with client(app) as c:
        # a run for the reviewer to review: it then streams its output and the model's text
        await c.post("/agents/the-developer/run", json={"task": "y"}, headers=token("alice"))
        run_id = (
            await c.post("/agents/the-reviewer/runs", json={"task": "x"}, headers=token("alice"))
        ).json()["runId"]
        done = await wait_status(c, run_id, "alice", "completed")
        r = await run_events(c, run_id)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_run_sse(r.text)
    ids = [i for i, _, _ in events]
    assert ids == list(range(1, len(events) + 1))  # numbered 1, 2, 3 ... none missing
    names = [name for _, name, _ in events]
    assert names[:3] == ["status", "status", "start"]
    assert [e["status"] for _, n, e in events if n == "status"] == [
        "queued",
        "running",
        "completed",
    ]
    assert names[-2:] == ["result", "status"]
    # the reviewer's steps, tool call, output and the model's streamed text
    assert {"step", "tool_call", "output", "delta"} <= set(names)
    assert [e["name"] for _, n, e in events if n == "step"] == ["read_history", "review"]
    deltas = "".join(e["text"] for _, n, e in events if n == "delta")
    result = events[-2][2]
    assert result == done["result"] and deltas.strip() and deltas.strip() in result["output"]
    start = events[2][2]
    assert start == {
        "runId": run_id,
        "agent": "the-reviewer",
        "userId": "alice",
        "memoryScope": "alice",
    }
    # the status events carry the status record, as the plain stream
    assert events[-1][2]["result"] == result and events[-1][2]["status"] == "completed"
    # ended: a reconnecting client gets exactly the events after its id
    for after in range(len(events) + 1):
        resumed = parse_run_sse((await run_events(c2 := client(app), run_id, after=after)).text)
        await c2.aclose()
        assert resumed == events[after:]


async def test_detail_run_resumes_in_the_middle_of_a_run_in_flight(
    api: tuple[AgenthoodAPI, GatedAgent],
) -> None:
    app, gated = api
    async with client(app) as c:
        run_id = (
            await c.post("/agents/gated/runs", json={"task": "x"}, headers=token("alice"))
        ).json()["runId"]
        await wait_status(c, run_id, "alice", "running")
        # the agent has made its step and model call and waits: a reader after event 1 takes
        # what there is and leaves (httpx's ASGI transport only answers a finished response,
        # so this reader is the stream's own generator)
        log = app.background.log(MemoryScope.operator(user="alice"), run_id)
        assert log is not None
        first: list[tuple[int | None, str, Any]] = []
        while not any(n == "delta" for _, n, _ in first):
            stream = log.follow(1)
            first = parse_run_sse((await anext(stream)).decode())
            await stream.aclose()
            await asyncio.sleep(0.01)
        assert first[0][0] == 2 and [n for _, n, _ in first][:3] == ["status", "start", "step"]
        assert first[-1][1] == "delta"  # the agent waits: nothing after its model call yet
        last = first[-1][0]
        assert isinstance(last, int)
        follower = asyncio.create_task(run_events(c, run_id, after=last))
        await asyncio.sleep(0.05)
        gated.gate.set()
        rest = parse_run_sse((await asyncio.wait_for(follower, 10)).text)
        whole = parse_run_sse((await run_events(c, run_id)).text)
    # the two halves are the whole stream after event 1: nothing twice, nothing lost
    assert whole[0][2]["status"] == "queued"
    assert first + rest == whole[1:]
    assert [n for _, n, _ in rest][-2:] == ["result", "status"]
    assert rest[-1][2]["status"] == "completed"


async def test_detail_run_is_owner_only_and_checked(
    api: tuple[AgenthoodAPI, GatedAgent],
) -> None:
    app, gated = api
    async with client(app) as c:
        run_id = (
            await c.post("/agents/gated/runs", json={"task": "x"}, headers=token("alice"))
        ).json()["runId"]
        await wait_status(c, run_id, "alice", "running")
        for after in (None, 1):
            bob = await run_events(c, run_id, user="bob", after=after)
            assert bob.status_code == 404 and bob.json()["error"]["type"] == "unknown_run"
            assert "delta" not in bob.text and run_id not in bob.text
        bad = await c.get(f"/runs/{run_id}/events?detail=all", headers=token("alice"))
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request"
        gated.gate.set()
        await wait_status(c, run_id, "alice", "completed")
        bob = await run_events(c, run_id, user="bob")
        assert bob.status_code == 404
        # without ?detail=run the stream is the status stream, unchanged
        plain = parse_sse((await c.get(f"/runs/{run_id}/events", headers=token("alice"))).text)
        assert [(i, e["status"]) for i, _, e in plain] == [(3, "completed")]


async def test_a_run_whose_events_exceeded_the_cap() -> None:
    app = make_api(demo_agents(), max_run_events=4)
    big = make_api(demo_agents())
    try:
        async with client(app) as c, client(big) as cb:
            for each in (c, cb):  # a run for the reviewer to review
                await each.post(
                    "/agents/the-developer/run", json={"task": "y"}, headers=token("alice")
                )
            # the same run without a cap: how many events it makes
            full_id = (
                await cb.post(
                    "/agents/the-reviewer/runs", json={"task": "x"}, headers=token("alice")
                )
            ).json()["runId"]
            await wait_status(cb, full_id, "alice", "completed")
            full = parse_run_sse((await run_events(cb, full_id)).text)
            total = len(full)
            assert total > 6
            run_id = (
                await c.post(
                    "/agents/the-reviewer/runs", json={"task": "x"}, headers=token("alice")
                )
            ).json()["runId"]
            await wait_status(c, run_id, "alice", "completed")
            kept_from = total - 3  # the last 4 events are kept
            # from the start: one "dropped" event (no id) naming what is gone, then the kept
            events = parse_run_sse((await run_events(c, run_id)).text)
            assert events[0] == (None, "dropped", {"after": 0, "through": kept_from - 1})
            assert [i for i, _, _ in events[1:]] == list(range(kept_from, total + 1))
            assert [n for _, n, _ in events[1:]] == [n for _, n, _ in full[kept_from - 1 :]]
            assert events[-2][1] == "result" and events[-1][2]["status"] == "completed"
            # resuming behind the kept window: the same, from that id
            behind = parse_run_sse((await run_events(c, run_id, after=2)).text)
            assert behind[0] == (None, "dropped", {"after": 2, "through": kept_from - 1})
            assert behind[1:] == events[1:]
            # resuming right before the window or inside it: nothing dropped, nothing twice
            for after in range(kept_from - 1, total + 1):
                inside = parse_run_sse((await run_events(c, run_id, after=after)).text)
                assert inside == events[1 + after - (kept_from - 1) :]
    finally:
        await app.aclose()
        await big.aclose()


def test_the_event_cap_is_checked_at_construction() -> None:
    for bad in (0, -1, 1.5, "10"):
        with pytest.raises((ValueError, TypeError), match="max_run_events"):
            make_api(demo_agents(), max_run_events=bad)


async def test_detail_run_ends_with_the_error_or_the_cancelled_result(
    api: tuple[AgenthoodAPI, GatedAgent],
) -> None:
    class Broken:
        name = "broken"
        description = "raises"

        async def run(self, task: str, ctx: RunContext) -> str:
            ctx.step("about to fail")
            raise RuntimeError("boom")

    broken = make_api([Broken()])
    app, _ = api
    try:
        async with client(broken) as cb, client(app) as c:
            failed_id = (
                await cb.post("/agents/broken/runs", json={"task": "x"}, headers=token("u"))
            ).json()["runId"]
            await wait_status(cb, failed_id, "u", "failed")
            failed = parse_run_sse((await run_events(cb, failed_id, user="u")).text)
            names = [n for _, n, _ in failed]
            assert names == ["status", "status", "start", "step", "error", "status"]
            assert failed[-2][2] == {
                "error": {"type": "agent_error", "message": "the agent failed; see the run trace"}
            }
            assert failed[-1][2]["status"] == "failed" and "boom" not in str(failed)
            # a cancelled run: its result (empty output, what it used), then "stopped"
            run_id = (
                await c.post("/agents/gated/runs", json={"task": "x"}, headers=token("alice"))
            ).json()["runId"]
            await wait_status(c, run_id, "alice", "running")
            stopped = (await c.post(f"/runs/{run_id}/cancel", headers=token("alice"))).json()
            events = parse_run_sse((await run_events(c, run_id)).text)
            assert [n for _, n, _ in events][-2:] == ["result", "status"]
            assert events[-2][2] == stopped["result"] and events[-2][2]["output"] == ""
            assert events[-2][2]["stopReason"] == "cancelled"
            assert events[-1][2]["status"] == "stopped"
            assert [i for i, _, _ in events] == list(range(1, len(events) + 1))
    finally:
        await broken.aclose()

"""One source of truth for money: a replayed idempotency key is counted once, in the ledger AND
in the traces (memory, SQLite, PostgreSQL), and re-writing a run changes nothing."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.metering import CostMeterMiddleware, Meter, current_meter
from agenthood_mw.metering._records import KEPT, NEW, REPLAY, as_counted

ALICE = MemoryScope.operator(user="alice", tenant="acme")


def _app(calls: dict[str, list[tuple[str, int, int, str | None]]]) -> Any:
    """Each request ``/agents/<agent>/run?<plan>`` reports the model calls of ``calls[plan]``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        meter = current_meter()
        for model, inp, out, key in calls[scope["query_string"].decode()]:
            meter.record(model=model, input_tokens=inp, output_tokens=out, idempotency_key=key)
            await asyncio.sleep(0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def _trace_money(mw: Any, scope: MemoryScope) -> tuple[Decimal, int, int, dict[str, Any]]:
    """What the traces say the user spent (as ``agenthood costs --user`` sums them)."""
    runs = await mw.traces.list(scope, limit=1000)
    cost = sum((Decimal(r["totals"]["totalCost"]) for r in runs), Decimal(0))
    inp = sum(r["totals"]["inputTokens"] for r in runs)
    out = sum(r["totals"]["outputTokens"] for r in runs)
    return cost, inp, out, {r["runId"]: r for r in runs}


@pytest.mark.parametrize("same_batch", [False, True])
async def test_a_replayed_key_is_counted_once_in_the_ledger_and_in_the_traces(
    prices: Any, with_identity: Any, ledger_url: str, same_batch: bool
) -> None:
    calls = {
        "first": [("gpt-4o", 1000, 100, "call-1"), ("tiny", 2000, 0, None)],
        # The client retried: call-1 again (already metered) plus one new call.
        "retry": [("gpt-4o", 1000, 100, "call-1"), ("gpt-4o", 400, 40, "call-2")],
    }
    mw = CostMeterMiddleware(_app(calls), prices=prices, ledger=ledger_url, on_alert=None)
    transport = httpx.ASGITransport(app=with_identity(mw))
    headers = {"x-test-user": "alice", "x-test-tenant": "acme"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r1 = await client.get("/agents/dev/run?first", headers=headers)
        if not same_batch:
            await mw.flush()
        r2 = await client.get("/agents/dev/run?retry", headers=headers)
    assert r1.status_code == r2.status_code == 200
    await mw.flush()
    ledger_spend = await mw.ledger.spend(ALICE)
    # gpt-4o: 1000 in x 2.50 + 100 out x 10.00 per M; tiny: 2000 x 0.15; then 400/40 gpt-4o.
    call_1, tiny, call_2 = Decimal("0.0035"), Decimal("0.0003"), Decimal("0.0014")
    assert ledger_spend == call_1 + tiny + call_2
    cost, inp, out, runs = await _trace_money(mw, ALICE)
    assert cost == ledger_spend  # the traces never count what the ledger de-duplicated
    assert (inp, out) == (1000 + 2000 + 400, 100 + 40)
    events = await mw.ledger.usage(ALICE)
    assert sum(e.input_tokens for e in events) == inp
    retry = next(r for r in runs.values() if r["totals"]["modelCalls"] == 1)
    assert retry["totals"]["totalCost"] == "0.0014"
    model_calls = [e for e in retry["events"] if e["type"] == "model_call"]
    assert [(e["cost"], e.get("replayed")) for e in model_calls] == [("0", True), ("0.0014", None)]
    report = {s.subject: s.cost for s in await mw.ledger.report("agent")}
    assert report == {"dev": ledger_spend}
    await mw.close()


async def test_rewriting_runs_changes_nothing_and_reports_their_events_as_kept(
    prices: Any, ledger: Any
) -> None:
    """The spool replays runs that may already be in the ledger: a re-write is KEPT (not a
    replay of another run: its trace keeps its cost) and adds nothing."""
    first = Meter(prices=prices, scope=ALICE, agent="dev", run_id="run-1")
    first.record(model="gpt-4o", input_tokens=1000, output_tokens=0, idempotency_key="k")
    first.record(model="tiny", input_tokens=1000, output_tokens=0)
    run1 = first.finish(status=200)
    second = Meter(prices=prices, scope=ALICE, agent="dev", run_id="run-2")
    second.record(model="gpt-4o", input_tokens=1000, output_tokens=0, idempotency_key="k")
    run2 = second.finish(status=200)
    # One batch holding run 1 twice and its replay: the first holder of a key counts it.
    assert ledger.write_usage([run1, run1, run2]) == [(NEW, NEW), (KEPT, KEPT), (REPLAY,)]
    assert ledger.write_usage([run2, run1]) == [(REPLAY,), (KEPT, KEPT)]
    assert ledger.write_runs([run1, run2]) == [0, 0]
    assert await ledger.spend(ALICE) == Decimal("0.0025") + Decimal("0.00015")
    assert as_counted(run1, (KEPT, KEPT)) is run1
    counted = as_counted(run2, (REPLAY,))
    assert counted.totals.cost_nanos == 0 and counted.totals.input_tokens == 0
    assert counted.usage == () and counted.totals.model_calls == 0
    assert counted.trace()["events"][0]["replayed"] is True


async def test_a_replay_is_refused_per_scope_not_across_users(prices: Any, ledger: Any) -> None:
    """The same idempotency key used by two users is two calls (keys are per scope)."""
    bob = MemoryScope.operator(user="bob", tenant="acme")
    runs = []
    for scope in (ALICE, bob):
        meter = Meter(prices=prices, scope=scope, agent="dev")
        meter.record(model="gpt-4o", input_tokens=1000, output_tokens=0, idempotency_key="k")
        runs.append(meter.finish(status=200))
    assert ledger.write_usage(runs) == [(NEW,), (NEW,)]
    assert await ledger.spend(bob) == Decimal("0.0025")


def test_a_subclass_wrapping_write_runs_sees_every_write_and_replays_still_count_once(
    prices: Any, tmp_path: Any
) -> None:
    """``write_usage`` is the storage hook; a ledger that wraps the older ``write_runs`` (to
    observe or delay writes) is still written through it, statuses and all."""
    from agenthood_mw.metering import SQLiteLedger, SQLiteTraceStore
    from agenthood_mw.metering._ledger import store
    from agenthood_mw.metering._recorder import Recorder

    class Counting(SQLiteLedger):
        calls = 0

        def write_runs(self, runs: Any) -> list[int]:
            self.calls += 1
            return super().write_runs(runs)

    db = str(tmp_path / "costs.db")
    ledger, traces = Counting(db), SQLiteTraceStore(db)
    recorder = Recorder(ledger, traces, None, None)
    runs = []
    for run_id in ("run-1", "run-2"):
        meter = Meter(prices=prices, scope=ALICE, agent="dev", run_id=run_id)
        meter.record(model="gpt-4o", input_tokens=1000, output_tokens=0, idempotency_key="k")
        runs.append(meter.finish(status=200))
        recorder.submit(runs[-1])
        assert recorder.flush() is True
    assert ledger.calls == 2
    replayed = asyncio.run(traces.get(ALICE, "run-2"))
    assert replayed is not None and replayed["totals"]["totalCost"] == "0"

    class Legacy(Counting):
        """Implements only the older hook, without calling the base class."""

        def write_runs(self, runs: Any) -> list[int]:
            self.calls += 1
            return [0 for _ in runs]

    legacy = Legacy(str(tmp_path / "legacy.db"))
    assert store(legacy, runs) == [(NEW,), (NEW,)]  # it reports no statuses: all count
    assert legacy.calls == 1
    recorder.close()
    for closing in (ledger, traces, legacy):
        closing.close_sync()

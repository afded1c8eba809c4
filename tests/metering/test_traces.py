"""Trace stores: scoped to the user, retention, erase; memory, SQLite and PostgreSQL."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.metering import Meter, TraceStore, trace_store_from_url


@pytest.fixture
async def store(ledger_url: str) -> AsyncIterator[TraceStore]:
    clock = [1_000_000.0]
    s = trace_store_from_url(ledger_url, retention="1d")
    s._clock = lambda: clock[0]  # type: ignore[method-assign]
    s.test_clock = clock  # type: ignore[attr-defined]
    yield s
    await s.close()


def finished_run(prices: Any, scope: MemoryScope, run_id: str, ts: float) -> Any:
    meter = Meter(prices=prices, scope=scope, agent="dev", run_id=run_id, clock=lambda: ts)
    meter.step("plan")
    meter.record(model="gpt-4o", input_tokens=10, output_tokens=10)
    meter.tool_call("search", arguments={"q": "x"}, error=ValueError("no results"))
    return meter.finish(status=200)


async def test_get_is_scoped_and_other_scopes_see_nothing(prices: Any, store: TraceStore) -> None:
    alice = MemoryScope.operator(user="alice", tenant="acme")
    bob = MemoryScope.operator(user="bob", tenant="acme")
    run = finished_run(prices, alice, "run-1", 1_000_000.0)
    await store.put(alice, run)
    trace = await store.get(alice, "run-1")
    assert trace is not None and trace["runId"] == "run-1"
    assert trace["memoryScope"] == "acme/alice"
    assert trace["events"][2]["error"] == "ValueError: no results"
    assert await store.get(bob, "run-1") is None
    assert await store.list(bob) == []
    with pytest.raises(TypeError, match="MemoryScope"):
        await store.get("alice", "run-1")  # type: ignore[arg-type]
    with pytest.raises(PermissionError):
        await store.put(bob, run)
    assert await store.erase(bob) == 0
    assert await store.erase(alice) == 1
    assert await store.get(alice, "run-1") is None


async def test_list_is_newest_first_and_retention_purges(prices: Any, store: TraceStore) -> None:
    scope = MemoryScope.operator(user="u")
    for i in range(5):
        await store.put(scope, finished_run(prices, scope, f"r{i}", 1_000_000.0 + i * 3600))
    assert [t["runId"] for t in await store.list(scope, limit=3)] == ["r4", "r3", "r2"]
    # r0 ended at T, r4 at T+4h; a day later (+1h) r0 is expired.
    assert await store.purge_expired(now=1_000_000.0 + 86400 + 1) == 1
    assert [t["runId"] for t in await store.list(scope)] == ["r4", "r3", "r2", "r1"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    owner=st.text(min_size=1, max_size=12).filter(str.isprintable),
    other=st.text(min_size=1, max_size=12).filter(str.isprintable),
    tenant=st.one_of(st.none(), st.sampled_from(["t", "t/x", "%", "_"])),
)
async def test_no_other_scope_can_read_a_trace(
    prices: Any, owner: str, other: str, tenant: str | None
) -> None:
    if not unicodedata.is_normalized("NFC", owner) or not unicodedata.is_normalized("NFC", other):
        return
    try:
        a = MemoryScope.operator(user=owner, tenant=tenant)
        b = MemoryScope.operator(user=other, tenant=tenant)
    except ValueError:
        return
    store = trace_store_from_url("sqlite:///:memory:")
    try:
        await store.put(a, finished_run(prices, a, "same-id", time.time()))
        if a != b:
            assert await store.get(b, "same-id") is None
            assert await store.list(b) == []
        else:
            assert await store.get(b, "same-id") is not None
    finally:
        await store.close()


_texts = st.none() | st.text(max_size=20)
_counts = st.integers(min_value=0, max_value=10**12)


@settings(max_examples=200, deadline=None)
@given(
    agent=_texts,
    path=_texts,
    stop=_texts,
    error=_texts,
    status=st.none() | st.integers(min_value=100, max_value=599),
    ts=st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**12), 10**12),
    totals=st.tuples(*[_counts] * 8),
    with_event=st.booleans(),
)
def test_trace_json_is_exactly_the_json_of_the_trace(
    agent: str | None,
    path: str | None,
    stop: str | None,
    error: str | None,
    status: int | None,
    ts: float,
    totals: tuple[int, ...],
    with_event: bool,
) -> None:
    import json

    from agenthood_mw.metering._records import RunRecord, Totals

    scope = MemoryScope.operator(user="usr_é", tenant="acme")
    events: tuple[Any, ...] = ({"type": "step", "name": "plan", "ts": ts},) if with_event else ()
    run = RunRecord(
        "run-1", scope, agent, ts, ts, status, stop, error, Totals(*totals), (), events, path
    )
    expected = json.dumps(run.trace(), separators=(",", ":"), default=str)
    assert run.trace_json() == expected


async def test_a_rewritten_run_keeps_its_first_trace_and_is_purged_once(
    prices: Any, store: TraceStore
) -> None:
    """Every store: the first write of a run id wins, and retention judges that write."""
    scope = MemoryScope.operator(user="u")
    first = finished_run(prices, scope, "run-1", 1_000_000.0)
    later = finished_run(prices, scope, "run-1", 1_000_000.0 + 3600)._replace(status=500)
    await store.put(scope, first)
    await store.put(scope, later)
    store.write_new_runs([finished_run(prices, scope, "run-2", 1_000_000.0 + 7200)])
    store.write_runs([first, later])  # a re-write after new runs went through the fast path
    assert [t["runId"] for t in await store.list(scope)] == ["run-2", "run-1"]
    trace = await store.get(scope, "run-1")
    assert trace is not None and trace["status"] == 200
    # Past retention for the first write only: the run id goes, once.
    assert await store.purge_expired(now=1_000_000.0 + 86400 + 1) == 1
    assert await store.get(scope, "run-1") is None
    assert [t["runId"] for t in await store.list(scope)] == ["run-2"]
    assert await store.erase(scope) == 1


def test_memory_store_keeps_each_run_once_under_concurrent_writers_and_readers(
    prices: Any,
) -> None:
    """Four threads write (the recorder's fast path and the de-duplicating path alike) while
    a fifth lists, reads and purges: every run is stored exactly once."""
    import threading

    from agenthood_mw.metering import MemoryTraceStore

    scopes = [MemoryScope.operator(user=f"u{i}") for i in range(3)]
    store = MemoryTraceStore(retention=100, clock=lambda: 1000.0)
    template = finished_run(prices, scopes[0], "t", 2000.0)
    per_thread = 5000

    def writer(k: int) -> None:
        for i in range(per_thread):
            run = template._replace(run_id=f"r{k}-{i}", scope=scopes[(i // 7 + k) % 3])
            if i % 3 == 0:
                store.write_runs([run, run])  # a repeated run is stored once
            elif i % 3 == 1:
                store.write_new_runs([run])
            else:
                store.write_new_run(run)

    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            store._list(scopes[0].storage_key, 1000, None)
            store._get(scopes[1].storage_key, "r0-5")
            store._purge(1500.0)  # nothing has ended before 1500: purges nothing

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    stored = sum(len(store._list(s.storage_key, 10**9, None)) for s in scopes)
    assert stored == 4 * per_thread
    ids = [r for s in scopes for r in store._data[s.storage_key].runs]
    assert len({r.run_id for r in ids}) == len(ids) == 4 * per_thread


async def test_a_memory_store_subclass_overriding_write_runs_sees_the_recorders_runs(
    prices: Any,
) -> None:
    from starlette.responses import PlainTextResponse

    from agenthood_mw import CostMeterMiddleware, Identity
    from agenthood_mw.metering import MemoryTraceStore

    seen: list[str] = []

    class Audited(MemoryTraceStore):
        def write_runs(self, runs: Any) -> None:
            seen.extend(r.run_id for r in runs)
            super().write_runs(runs)

    store = Audited()
    app = CostMeterMiddleware(PlainTextResponse("ok"), prices=prices, traces=store)
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/", "headers": [], "user": Identity(user_id="alice")}
    await app(scope, receive, send)
    run_id = dict(sent[0]["headers"])[b"x-agenthood-run-id"].decode()
    assert seen == [run_id]
    assert await store.get(MemoryScope.for_identity(Identity(user_id="alice")), run_id)
    await app.close()


def test_memory_store_subclasses_keep_the_base_contract(prices: Any) -> None:
    """``write_runs`` is ``_put`` then the purge (no recursion when a subclass writes it that
    way); overriding only ``write_new_runs`` also catches the recorder's one-run path."""
    from agenthood_mw.metering import MemoryTraceStore

    scope = MemoryScope.operator(user="u")
    run = finished_run(prices, scope, "r1", 1_000_000.0)

    class Filtered(MemoryTraceStore):
        def write_runs(self, runs: Any) -> None:
            self._put([r for r in runs if r.status == 200])
            self._purge_if_due()

    filtered = Filtered(retention=None)
    filtered.write_runs([run, run._replace(run_id="r2", status=500)])
    filtered.write_new_run(run._replace(run_id="r3", status=500))  # through write_runs
    assert [r.run_id for r in filtered._data[scope.storage_key].unique()] == ["r1"]

    seen: list[str] = []

    class Counted(MemoryTraceStore):
        def write_new_runs(self, runs: Any) -> None:
            seen.extend(r.run_id for r in runs)
            super().write_new_runs(runs)

    counted = Counted(retention=None)
    counted.write_new_run(run)
    assert seen == ["r1"]


async def test_memory_store_shows_a_repeated_new_run_once(prices: Any) -> None:
    """Runs handed in twice as new (a misuse) are still shown once: the first write wins."""
    from agenthood_mw.metering import MemoryTraceStore

    scope = MemoryScope.operator(user="u")
    first = finished_run(prices, scope, "r1", 1_000_000.0)
    store = MemoryTraceStore(retention=None)
    store.write_new_runs([first])
    store.write_new_run(first._replace(status=500))
    assert [t["status"] for t in await store.list(scope)] == [200]
    trace = await store.get(scope, "r1")
    assert trace is not None and trace["status"] == 200
    assert await store.erase(scope) == 1

"""LangGraph's own checkpointer suite (langgraph-checkpoint-conformance) on every backend.

Each run also fills a *neighbour* scope with the same thread ids the suite uses
(``thread-0``...) first: the suite counts checkpoints per thread, so a single record leaking
across scopes would fail it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

pytest.importorskip("langgraph.checkpoint.conformance")

from integrations.lg_backends import make_backend  # noqa: F401 - fixture
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import Capability
from langgraph.checkpoint.conformance.report import CapabilityReport
from langgraph.checkpoint.conformance.spec import (
    test_copy_thread,
    test_delete_for_runs,
    test_delete_thread,
    test_get_tuple,
    test_list,
    test_prune,
    test_put,
    test_put_writes,
)

from agenthood_mw import MemoryScope
from agenthood_mw.integrations.langgraph import ScopedCheckpointer
from agenthood_mw.memory import MemoryBackend

ALICE = MemoryScope.operator(user="alice", tenant="acme")
NEIGHBOUR = MemoryScope.operator(user="alice", tenant="acme-corp")
#: Every case of the suite: the five base capabilities and the three extended ones.
CASES = sum(
    len(getattr(module, name))
    for module in (
        test_put,
        test_put_writes,
        test_get_tuple,
        test_list,
        test_delete_thread,
        test_delete_for_runs,
        test_copy_thread,
        test_prune,
    )
    for name in dir(module)
    if name.startswith("ALL_") and name.endswith("_TESTS")
)


def neighbour(n: int) -> MemoryScope:
    """The n-th suite's neighbour (suites may share one PostgreSQL schema)."""
    return NEIGHBOUR if n == 0 else MemoryScope.operator(user=f"alice-{n}", tenant="acme-corp")


async def _fill_neighbour(backend: MemoryBackend, n: int) -> None:
    from langgraph.checkpoint.conformance.test_utils import put_test_checkpoints

    other = ScopedCheckpointer(backend, scope=neighbour(n))
    await put_test_checkpoints(other, n_threads=3, n_checkpoints=3, namespaces=["", "child:1"])
    stored = await other.aget_tuple({"configurable": {"thread_id": "thread-0"}})
    assert stored is not None
    await other.aput_writes(stored.config, [("ch", "neighbour")], "task-0")


async def _run(make: Callable[[], MemoryBackend]) -> CapabilityReport:
    backends: list[MemoryBackend] = []

    @checkpointer_test(name="ScopedCheckpointer")
    async def factory() -> AsyncIterator[ScopedCheckpointer]:
        backend = make()
        await _fill_neighbour(backend, len(backends))
        backends.append(backend)
        yield ScopedCheckpointer(backend, scope=ALICE)

    try:
        report = await validate(factory)
        for n, backend in enumerate(backends):  # deletes and prunes never reached a neighbour
            other = ScopedCheckpointer(backend, scope=neighbour(n))
            assert len([t async for t in other.alist(None)]) == 18
        return report
    finally:
        for backend in backends:
            await backend.close()


async def test_conformance_every_capability(make_backend: Callable[[], MemoryBackend]) -> None:  # noqa: F811
    report = await _run(make_backend)
    failures = {cap: result.failures for cap, result in report.results.items() if result.failures}
    assert failures == {}
    assert report.passed_all_base()
    assert report.passed_all()
    detected = {cap for cap, result in report.results.items() if result.detected}
    assert detected == {cap.value for cap in Capability}  # base and extended, all run
    assert sum(r.tests_skipped for r in report.results.values()) == 0
    assert sum(r.tests_passed for r in report.results.values()) == CASES

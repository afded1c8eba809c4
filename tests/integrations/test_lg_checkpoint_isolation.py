"""ScopedCheckpointer isolation: scopes, the ported leak cases, hostile backends, erase/export."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("langgraph.checkpoint.base")

from hypothesis import given, settings
from hypothesis import strategies as st
from integrations.lg_backends import make_backend  # noqa: F401 - fixture
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.conformance.test_utils import generate_metadata

from agenthood_mw import Identity, MemoryScope
from agenthood_mw._context import reset_identity, set_identity
from agenthood_mw.integrations.langgraph import ScopedCheckpointer
from agenthood_mw.memory import (
    InMemoryBackend,
    MemoryBackend,
    Record,
    ScopeViolationError,
    SyncMemory,
    Tier,
)

ALICE = MemoryScope.for_identity(Identity(user_id="alice", tenant="acme"))
BOB = MemoryScope.for_identity(Identity(user_id="bob", tenant="acme"))


def cfg(thread: str, ns: str = "", cid: str | None = None) -> Any:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if cid is not None:
        conf["checkpoint_id"] = cid
    return {"configurable": conf}


async def put(saver: ScopedCheckpointer, thread: str, secret: str, ns: str = "") -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = {"secret": secret}
    cp["channel_versions"] = {"secret": 1}
    stored = await saver.aput(cfg(thread, ns), cp, generate_metadata(), {"secret": 1})
    await saver.aput_writes(stored, [("secret", secret + "-write")], "task-1")
    return stored


async def everything(saver: ScopedCheckpointer, thread: str) -> list[Any]:
    return [t async for t in saver.alist({"configurable": {"thread_id": thread}})]


async def test_other_user_presenting_a_thread_id_sees_an_empty_thread(
    make_backend: Callable[[], MemoryBackend],  # noqa: F811
) -> None:
    backend = make_backend()
    try:
        alice = ScopedCheckpointer(backend, scope=ALICE)
        bob = ScopedCheckpointer(backend, scope=BOB)
        stored = await put(alice, "t-1", "alice-secret")
        assert await bob.aget_tuple(cfg("t-1")) is None
        assert await bob.aget_tuple(stored) is None  # even with A's exact checkpoint id
        assert await everything(bob, "t-1") == []
        assert [t async for t in bob.alist(None)] == []
        await bob.aput_writes(stored, [("secret", "bob-overwrite")], "task-1")
        await bob.adelete_thread("t-1")
        mine = await alice.aget_tuple(cfg("t-1"))
        assert mine is not None
        assert mine.checkpoint["channel_values"] == {"secret": "alice-secret"}
        assert mine.pending_writes == [("task-1", "secret", "alice-secret-write")]
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("mine", "theirs"),
    [("john-doe", "john_doe"), ("foo", "foobar"), ("acme", "acme-corp"), ("a/bc", "ab/c")],
)
async def test_ported_leak_cases_thread_ids_never_match_by_prefix(
    make_backend: Callable[[], MemoryBackend],  # noqa: F811
    mine: str,
    theirs: str,
) -> None:
    """The peers' leaks (LIKE wildcards, prefix matching across segment boundaries) as
    thread ids and namespaces, in one scope and across two."""
    backend = make_backend()
    try:
        alice = ScopedCheckpointer(backend, scope=ALICE)
        await put(alice, theirs, "theirs")
        await put(alice, "t", "ns-theirs", ns=theirs)
        assert await alice.aget_tuple(cfg(mine)) is None
        assert await everything(alice, mine) == []
        assert await alice.aget_tuple(cfg("t", mine)) is None
        assert [t async for t in alice.alist(cfg("t", mine))] == []
        await put(alice, mine, "mine")
        await alice.adelete_thread(mine)
        survivor = await alice.aget_tuple(cfg(theirs))
        assert survivor is not None
        assert survivor.checkpoint["channel_values"] == {"secret": "theirs"}
        # Across scopes: a tenant or user that differs only by a suffix shares nothing.
        neighbour = MemoryScope.operator(user="alice", tenant="acme-corp")
        other = ScopedCheckpointer(backend, scope=neighbour)
        assert await other.aget_tuple(cfg(theirs)) is None
        assert [t async for t in other.alist(None)] == []
    finally:
        await backend.close()


@settings(max_examples=40, deadline=None)
@given(a=st.text(min_size=1, max_size=12), b=st.text(min_size=1, max_size=12))
async def test_distinct_thread_ids_never_share_state(a: str, b: str) -> None:
    if a == b:
        return
    saver = ScopedCheckpointer(InMemoryBackend(), scope=ALICE)
    await put(saver, a, "a")
    assert await saver.aget_tuple(cfg(b)) is None
    assert await everything(saver, b) == []
    got = await saver.aget_tuple(cfg(a))
    assert got is not None
    assert got.config["configurable"]["thread_id"] == a


async def test_scope_comes_from_the_request_identity_and_is_required() -> None:
    saver = ScopedCheckpointer(InMemoryBackend())
    with pytest.raises(LookupError, match="no scope"):
        await saver.aget_tuple(cfg("t"))
    token = set_identity(Identity(user_id="alice", tenant="acme"))
    try:
        await put(saver, "t", "from-identity")
    finally:
        reset_identity(token)
    token = set_identity(Identity(user_id="bob", tenant="acme"))
    try:
        assert await saver.aget_tuple(cfg("t")) is None
    finally:
        reset_identity(token)
    with ScopedCheckpointer.bind_scope(ALICE):
        got = await saver.aget_tuple(cfg("t"))
    assert got is not None
    assert got.checkpoint["channel_values"] == {"secret": "from-identity"}
    with pytest.raises(TypeError, match="MemoryScope"):
        ScopedCheckpointer(InMemoryBackend(), scope="acme/alice")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="backend"):
        ScopedCheckpointer({})  # type: ignore[arg-type]


async def test_erase_and_export_of_a_user_include_their_threads(
    make_backend: Callable[[], MemoryBackend],  # noqa: F811
) -> None:
    backend = make_backend()
    try:
        alice = ScopedCheckpointer(backend, scope=ALICE)
        bob = ScopedCheckpointer(backend, scope=BOB)
        await put(alice, "t-1", "alice")
        await put(bob, "t-1", "bob")
        exported = await backend.export(ALICE)
        keys = [rec.key for rec in exported.project]
        assert any(k.startswith("langgraph.checkpoint/cp/t-1/") for k in keys)
        assert any(k.startswith("langgraph.checkpoint/wr/t-1/") for k in keys)
        assert await backend.erase(ALICE) >= 3
        assert await alice.aget_tuple(cfg("t-1")) is None
        assert await everything(alice, "t-1") == []
        assert await bob.aget_tuple(cfg("t-1")) is not None
    finally:
        await backend.close()


class ForeignThreadBackend(InMemoryBackend):
    """A buggy backend: reads of thread ``victim`` return the record of thread ``t``."""

    async def _get(self, scope: MemoryScope, tier: Tier, key: str, now: float) -> Record | None:
        rec = await super()._get(scope, tier, key.replace("/victim/", "/t/"), now)
        return None if rec is None else Record(rec.scope_key, tier, key, rec.value, now)


class ForeignScopeBackend(InMemoryBackend):
    """A hostile backend: every read answers with ALICE's data, whoever asks."""

    async def _get(self, scope: MemoryScope, tier: Tier, key: str, now: float) -> Record | None:
        return await super()._get(ALICE, tier, key, now)


async def test_a_backend_returning_another_threads_record_is_caught() -> None:
    saver = ScopedCheckpointer(ForeignThreadBackend(), scope=ALICE)
    stored = await put(saver, "t", "secret")
    victim = cfg("victim", cid=stored["configurable"]["checkpoint_id"])
    with pytest.raises(ScopeViolationError):
        await saver.aget_tuple(victim)


async def test_a_backend_returning_another_scopes_record_is_caught() -> None:
    backend = ForeignScopeBackend()
    await put(ScopedCheckpointer(backend, scope=ALICE), "t", "secret")
    with pytest.raises(ScopeViolationError):
        await ScopedCheckpointer(backend, scope=BOB).aget_tuple(cfg("t"))


def test_blocking_api_in_memory_and_through_sync_memory() -> None:
    saver = ScopedCheckpointer(InMemoryBackend(), scope=ALICE)
    cp = empty_checkpoint()
    stored = saver.put(cfg("t"), cp, generate_metadata(), {})
    saver.put_writes(stored, [("ch", 1)], "task")
    got = saver.get_tuple(cfg("t"))
    assert got is not None
    assert got.pending_writes == [("task", "ch", 1)]
    assert [t.config for t in saver.list(cfg("t"))] == [stored]
    saver.delete_thread("t")
    assert saver.get_tuple(cfg("t")) is None
    facade = SyncMemory(InMemoryBackend())
    try:
        bob = ScopedCheckpointer(facade, scope=BOB)
        bob.put(cfg("t"), cp, generate_metadata(), {})
        assert bob.get_tuple(cfg("t")) is not None
        assert ScopedCheckpointer(facade, scope=ALICE).get_tuple(cfg("t")) is None
    finally:
        facade.close()


async def test_blocking_api_refuses_to_block_the_event_loop() -> None:
    saver = ScopedCheckpointer(InMemoryBackend(), scope=ALICE)
    with pytest.raises(RuntimeError, match="async API"):
        saver.get_tuple(cfg("t"))


@pytest.mark.parametrize("facade", [False, True])
def test_a_sync_graph_keeps_each_scope_in_its_own_thread(facade: bool) -> None:
    from langgraph.graph import START, MessagesState, StateGraph

    builder = StateGraph(MessagesState)
    builder.add_node("echo", lambda state: {"messages": [("ai", "ok")]})
    builder.add_edge(START, "echo")
    sync = SyncMemory(InMemoryBackend()) if facade else None
    graph = builder.compile(checkpointer=ScopedCheckpointer(sync or InMemoryBackend()))
    config: Any = {"configurable": {"thread_id": "t"}}
    try:
        with ScopedCheckpointer.bind_scope(ALICE):
            graph.invoke({"messages": [("user", "hi")]}, config)
            graph.invoke({"messages": [("user", "again")]}, config)
            assert len(graph.get_state(config).values["messages"]) == 4
        with ScopedCheckpointer.bind_scope(BOB):
            assert graph.get_state(config).values == {}
            assert list(graph.get_state_history(config)) == []
    finally:
        if sync is not None:
            sync.close()


async def test_copy_prune_and_delete_for_runs_stay_in_the_scope() -> None:
    backend = InMemoryBackend()
    alice = ScopedCheckpointer(backend, scope=ALICE)
    bob = ScopedCheckpointer(backend, scope=BOB)
    await put(alice, "src", "alice-old")
    await put(bob, "dst", "bob-target")
    newest = await put(alice, "dst", "alice-newest")
    # Bob copying Alice's thread id copies his own (empty) thread: nothing of Alice's.
    await bob.acopy_thread("src", "mine")
    assert await bob.aget_tuple(cfg("mine")) is None
    # Alice copies an older thread onto one with a newer checkpoint: the head stays newest.
    await alice.acopy_thread("src", "dst")
    head = await alice.aget_tuple(cfg("dst"))
    assert head is not None
    assert head.config == newest
    assert len(await everything(alice, "dst")) == 2
    # prune and delete_for_runs never reach Bob's thread of the same id.
    await alice.aprune(["dst"], strategy="keep_latest")
    assert [t.config for t in await everything(alice, "dst")] == [newest]
    await alice.adelete_for_runs(["run-that-is-not-there"])
    await alice.aprune(["dst"], strategy="delete")
    assert await everything(alice, "dst") == []
    theirs = await bob.aget_tuple(cfg("dst"))
    assert theirs is not None
    assert theirs.checkpoint["channel_values"] == {"secret": "bob-target"}
    with pytest.raises(ValueError, match="strategy"):
        await alice.aprune(["dst"], strategy="everything")

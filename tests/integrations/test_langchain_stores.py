"""Scoped LangChain stores: the ``langchain-tests`` standard suites on every backend, plus
isolation tests of our own."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_core.stores")
pytest.importorskip("langchain_tests.integration_tests")

from langchain_tests.integration_tests import BaseStoreAsyncTests, BaseStoreSyncTests

from agenthood_mw import Identity, MemoryScope
from agenthood_mw._context import reset_identity, set_identity
from agenthood_mw.integrations.langchain import ScopedByteStore, ScopedJSONStore
from agenthood_mw.memory import (
    InMemoryBackend,
    InvalidValueError,
    MemoryBackend,
    ScopeViolationError,
    SyncMemory,
)
from agenthood_mw.testing import FakeClock

Factory = Callable[[FakeClock], MemoryBackend]


def _fresh_scope() -> MemoryScope:
    return MemoryScope.operator(user=f"u-{uuid.uuid4().hex}", tenant="langchain-tests")


# ---------------------------------------------------------------- the standard suites
class TestByteStoreSync(BaseStoreSyncTests[bytes]):
    @pytest.fixture
    def kv_store(self, make_backend: Factory) -> Iterator[ScopedByteStore]:  # type: ignore[override]
        sync = SyncMemory(make_backend(FakeClock()))
        try:
            yield ScopedByteStore(sync, scope=_fresh_scope())
        finally:
            sync.close()

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"\x00bar\xff", b""


class TestByteStoreAsync(BaseStoreAsyncTests[bytes]):
    @pytest.fixture
    async def kv_store(self, backend: MemoryBackend) -> ScopedByteStore:  # type: ignore[override]
        return ScopedByteStore(backend, scope=_fresh_scope())

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"\x00bar\xff", b""


class TestJSONStoreSync(BaseStoreSyncTests[Any]):
    @pytest.fixture
    def kv_store(self, make_backend: Factory) -> Iterator[ScopedJSONStore]:  # type: ignore[override]
        sync = SyncMemory(make_backend(FakeClock()))
        try:
            yield ScopedJSONStore(sync, scope=_fresh_scope())
        finally:
            sync.close()

    @pytest.fixture
    def three_values(self) -> tuple[Any, Any, Any]:
        return {"a": [1, 2.5, None]}, "bar", [True, {"nested": {"x": "y"}}]


class TestJSONStoreAsync(BaseStoreAsyncTests[Any]):
    @pytest.fixture
    async def kv_store(self, backend: MemoryBackend) -> ScopedJSONStore:  # type: ignore[override]
        return ScopedJSONStore(backend, scope=_fresh_scope())

    @pytest.fixture
    def three_values(self) -> tuple[Any, Any, Any]:
        return {"a": [1, 2.5, None]}, "bar", [True, {"nested": {"x": "y"}}]


# ---------------------------------------------------------------- isolation
ALICE = MemoryScope.operator(user="alice", tenant="acme")
BOB = MemoryScope.operator(user="bob", tenant="acme")


async def test_scopes_and_namespaces_never_meet(backend: MemoryBackend) -> None:
    a = ScopedJSONStore(backend, scope=ALICE)
    b = ScopedJSONStore(backend, scope=BOB)
    await a.amset([("k", 1), ("john-doe", 2)])
    assert await b.amget(["k", "john-doe", "john_doe"]) == [None, None, None]
    assert [k async for k in b.ayield_keys()] == []
    corp = ScopedJSONStore(backend, scope=ALICE, namespace="acme-corp")
    acme = ScopedJSONStore(backend, scope=ALICE, namespace="acme")
    await corp.amset([("k", "corp")])
    await acme.amset([("k", "acme")])
    assert await acme.amget(["k"]) == ["acme"]
    assert [k async for k in acme.ayield_keys()] == ["k"]
    raw = ScopedByteStore(backend, scope=ALICE)  # same scope, other kind: separate keys
    assert await raw.amget(["k"]) == [None]


@pytest.mark.parametrize("prefix", ["foo", "a%", "a_", "%", "a/", "é"])
async def test_prefixes_are_literal(backend: MemoryBackend, prefix: str) -> None:
    store = ScopedByteStore(backend, scope=ALICE)
    keys = ["foo", "foobar", "fo", "a%b", "a_b", "aXb", "%", "a/b", "a%2Fb", "é", "e\u0301"]
    await store.amset([(k, k.encode()) for k in keys])
    got = sorted([k async for k in store.ayield_keys(prefix=prefix)])
    assert got == sorted(k for k in keys if k.startswith(prefix))
    assert await store.amget(keys) == [k.encode() for k in keys]


async def test_identity_picks_the_scope(backend: MemoryBackend) -> None:
    store = ScopedJSONStore(backend)
    with pytest.raises(LookupError, match="no scope"):
        await store.amget(["k"])
    token = set_identity(Identity(user_id="alice", tenant="acme"))
    try:
        await store.amset([("k", "alice's")])
    finally:
        reset_identity(token)
    token = set_identity(Identity(user_id="bob", tenant="acme"))
    try:
        assert await store.amget(["k"]) == [None]
    finally:
        reset_identity(token)
    assert await ScopedJSONStore(backend, scope=ALICE).amget(["k"]) == ["alice's"]


async def test_bad_values_write_nothing(backend: MemoryBackend) -> None:
    js = ScopedJSONStore(backend, scope=ALICE)
    for bad in (float("nan"), {1: "int key"}, {"x": object()}):
        with pytest.raises(InvalidValueError):
            await js.amset([("first", 1), ("second", bad)])
        assert await js.amget(["first", "second"]) == [None, None]
    bs = ScopedByteStore(backend, scope=ALICE)
    with pytest.raises(TypeError, match="bytes"):
        await bs.amset([("first", b"1"), ("second", "text")])  # type: ignore[list-item]
    assert await bs.amget(["first"]) == [None]
    with pytest.raises(TypeError, match="key"):
        await bs.amget([1])  # type: ignore[list-item]


class _Leaky(InMemoryBackend):
    """A buggy backend: reads answer with BOB's records whatever scope was asked for."""

    async def _get(self, scope, tier, key, now):  # type: ignore[no-untyped-def]
        return await super()._get(BOB, tier, key, now)

    async def _list(self, scope, tier, prefix, upper, after, limit, now):  # type: ignore[no-untyped-def]
        return await super()._list(BOB, tier, prefix, upper, after, limit, now)


async def test_a_leaky_backend_is_caught() -> None:
    backend = _Leaky()
    await ScopedJSONStore(backend, scope=BOB).amset([("k", "bob's secret")])
    store = ScopedJSONStore(backend, scope=ALICE)
    with pytest.raises(ScopeViolationError):
        await store.amget(["k"])
    with pytest.raises(ScopeViolationError):
        [k async for k in store.ayield_keys()]


async def test_foreign_values_in_the_scope_are_refused(backend: MemoryBackend) -> None:
    store = ScopedByteStore(backend, scope=ALICE)
    await backend.put(ALICE, "facts", "langchain/bytes/default/k", {"b64": "not base64!"})
    with pytest.raises(ScopeViolationError, match="not a value of this store"):
        await store.amget(["k"])
    await backend.put(ALICE, "facts", "langchain/bytes/default/%6B", {"b64": ""})
    with pytest.raises(ScopeViolationError, match="not a key of this store"):
        [k async for k in store.ayield_keys()]


async def test_many_keys_page_through(backend: MemoryBackend) -> None:
    store = ScopedJSONStore(backend, scope=ALICE)
    await store.amset([(f"k{i:05d}", i) for i in range(1100)])
    keys = [k async for k in store.ayield_keys(prefix="k0")]
    assert keys == [f"k{i:05d}" for i in range(1100)]

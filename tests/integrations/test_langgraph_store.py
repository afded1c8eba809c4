"""ScopedStore: LangGraph's BaseStore contract, confined to one scope, on every backend."""

from __future__ import annotations

import hashlib
import itertools
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("langgraph.store.base")

from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore

from agenthood_mw import Identity, MemoryScope
from agenthood_mw._context import reset_identity, set_identity
from agenthood_mw.integrations.langgraph import ScopedStore
from agenthood_mw.memory import (
    InMemoryBackend,
    MemoryBackend,
    ScopeViolationError,
    SyncMemory,
)
from agenthood_mw.testing import FakeClock

ALICE = MemoryScope.operator(user="alice", tenant="acme")
BOB = MemoryScope.operator(user="bob", tenant="acme")


# TEST-ONLY deterministic embedding: a bag of hashed words, no model, no network.
DIMS = 32


def fake_embed(texts: list[str]) -> list[list[float]]:
    """Deterministic test embedding (NOT a real model): hashed bag of lower-cased words."""
    out = []
    for text in texts:
        vec = [0.0] * DIMS
        for word in text.lower().split():
            h = hashlib.sha256(word.encode()).digest()
            vec[h[0] % DIMS] += 1.0
        out.append(vec)
    return out


@contextmanager
def as_user(user: str, tenant: str = "acme") -> Iterator[None]:
    """Bind an authenticated identity, as AuthMiddleware does for a request."""
    token = set_identity(Identity(user_id=user, tenant=tenant))
    try:
        yield
    finally:
        reset_identity(token)


async def test_put_get_delete_and_created_at(backend: MemoryBackend, clock: FakeClock) -> None:
    store = ScopedStore(backend, scope=ALICE)
    await store.aput(("users", "prefs"), "theme", {"color": "dark"})
    item = await store.aget(("users", "prefs"), "theme")
    assert item is not None
    assert (item.namespace, item.key, item.value) == (
        ("users", "prefs"),
        "theme",
        {"color": "dark"},
    )
    created = item.created_at
    clock.advance(5)
    await store.aput(("users", "prefs"), "theme", {"color": "light"})
    again = await store.aget(("users", "prefs"), "theme")
    assert again is not None and again.value == {"color": "light"}
    assert again.created_at == created
    assert (again.updated_at - created).total_seconds() == pytest.approx(5)
    await store.adelete(("users", "prefs"), "theme")
    assert await store.aget(("users", "prefs"), "theme") is None


async def test_scopes_never_meet(backend: MemoryBackend) -> None:
    a, b = ScopedStore(backend, scope=ALICE), ScopedStore(backend, scope=BOB)
    await a.aput(("memories",), "m1", {"text": "alice secret"})
    assert await b.aget(("memories",), "m1") is None
    assert await b.asearch(("memories",)) == []
    assert await b.alist_namespaces() == []
    await b.aput(("memories",), "m1", {"text": "bob"})
    assert (await a.aget(("memories",), "m1")).value == {"text": "alice secret"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mine", "theirs"),
    [
        (("acme",), ("acme-corp",)),
        (("foo",), ("foobar",)),
        (("john-doe",), ("john_doe",)),
        (("a", "bc"), ("ab", "c")),
        (("a/b",), ("a", "b")),
        (("a:b",), ("a", "b")),
        (("a%2Fb",), ("a/b",)),
        (("é",), ("e\u0301",)),
    ],
)
async def test_namespace_boundaries(
    backend: MemoryBackend, mine: tuple[str, ...], theirs: tuple[str, ...]
) -> None:
    store = ScopedStore(backend, scope=ALICE)
    await store.aput(mine, "k", {"who": "mine"})
    await store.aput(theirs, "k", {"who": "theirs"})
    assert (await store.aget(mine, "k")).value == {"who": "mine"}  # type: ignore[union-attr]
    assert (await store.aget(theirs, "k")).value == {"who": "theirs"}  # type: ignore[union-attr]
    assert [i.value["who"] for i in await store.asearch(mine)] == ["mine"]
    assert [i.value["who"] for i in await store.asearch(theirs)] == ["theirs"]
    assert await store.alist_namespaces(prefix=mine) == [mine]
    assert sorted(await store.alist_namespaces()) == sorted([mine, theirs])


async def test_identity_picks_the_scope(backend: MemoryBackend) -> None:
    store = ScopedStore(backend)
    with pytest.raises(LookupError, match="no scope"):
        await store.aget(("x",), "k")
    with as_user("alice"):
        await store.aput(("notes",), "n", {"v": 1})
        assert (await store.aget(("notes",), "n")).value == {"v": 1}  # type: ignore[union-attr]
    with as_user("bob"):
        assert await store.aget(("notes",), "n") is None
        assert await store.asearch(("notes",)) == []
    with as_user("alice", tenant="acme-corp"):
        assert await store.aget(("notes",), "n") is None
    token = set_identity(Identity.anonymous())
    try:
        with pytest.raises(PermissionError):
            await store.aget(("notes",), "n")
    finally:
        reset_identity(token)


def test_bad_construction() -> None:
    with pytest.raises(TypeError, match="memory"):
        ScopedStore("sqlite:///x.db")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dims"):
        ScopedStore(InMemoryBackend(), index={"embed": fake_embed, "dims": 0})
    with pytest.raises(ValueError, match="default_ttl"):
        ScopedStore(InMemoryBackend(), ttl={"default_ttl": -1})


async def test_invalid_namespaces_and_values(backend: MemoryBackend) -> None:
    store = ScopedStore(backend, scope=ALICE)
    with pytest.raises(InvalidNamespaceError):
        await store.aput((), "k", {})
    with pytest.raises(InvalidNamespaceError):
        await store.aput(("langgraph",), "k", {})
    with pytest.raises(InvalidNamespaceError):
        await store.abatch([PutOp(("a.b",), "k", {})])
    with pytest.raises(InvalidNamespaceError):
        await store.abatch([GetOp(("a", ""), "k")])
    with pytest.raises(ValueError, match="JSON"):
        await store.aput(("a",), "k", {"x": float("nan")})
    assert await store.asearch(("a",)) == []


async def test_search_filters_offset_limit(backend: MemoryBackend) -> None:
    store = ScopedStore(backend, scope=ALICE)
    for i in range(12):
        await store.aput(
            ("docs", f"g{i % 3}"),
            f"d{i:02d}",
            {"n": i, "kind": "even" if i % 2 == 0 else "odd", "meta": {"tag": f"t{i % 2}"}},
        )
    everything = await store.asearch(("docs",), limit=100)
    assert len(everything) == 12
    keys = [i.key for i in await store.asearch(("docs",), limit=100)]
    page1 = [i.key for i in await store.asearch(("docs",), limit=5)]
    page2 = [i.key for i in await store.asearch(("docs",), limit=5, offset=5)]
    assert page1 + page2 == keys[:10]
    assert {i.key for i in await store.asearch(("docs", "g0"))} == {"d00", "d03", "d06", "d09"}
    odd = await store.asearch(("docs",), filter={"kind": "odd"}, limit=100)
    assert sorted(i.value["n"] for i in odd) == [1, 3, 5, 7, 9, 11]
    big = await store.asearch(("docs",), filter={"n": {"$gte": 9}}, limit=100)
    assert sorted(i.value["n"] for i in big) == [9, 10, 11]
    nested = await store.asearch(("docs",), filter={"meta": {"tag": "t1"}, "n": {"$lt": 4}})
    assert sorted(i.value["n"] for i in nested) == [1, 3]
    ne = await store.asearch(("docs", "g1"), filter={"kind": {"$ne": "odd"}})
    assert sorted(i.value["n"] for i in ne) == [4, 10]
    assert await store.asearch(("docs",), filter={"n": 2}, offset=1) == []


async def test_list_namespaces_matches_langgraph_inmemorystore(backend: MemoryBackend) -> None:
    ours = ScopedStore(backend, scope=ALICE)
    theirs = InMemoryStore()
    namespaces = [
        ("a",),
        ("a", "b"),
        ("a", "b", "c"),
        ("a", "c"),
        ("ab",),
        ("ab", "c"),
        ("x", "b"),
        ("x", "y", "b"),
        ("acme",),
        ("acme-corp", "b"),
    ]
    for ns in namespaces:
        await ours.aput(ns, "k", {"ns": list(ns)})
        await theirs.aput(ns, "k", {"ns": list(ns)})
    cases: list[dict[str, object]] = [
        {},
        {"prefix": ("a",)},
        {"prefix": ("acme",)},
        {"prefix": ("a", "*")},
        {"suffix": ("b",)},
        {"suffix": ("*", "b")},
        {"prefix": ("a",), "suffix": ("c",)},
        {"max_depth": 1},
        {"prefix": ("a",), "max_depth": 2},
        {"limit": 3, "offset": 2},
        {"prefix": ("nothing",)},
    ]
    for kwargs in cases:
        assert await ours.alist_namespaces(**kwargs) == await theirs.alist_namespaces(**kwargs), (
            kwargs
        )  # type: ignore[arg-type]
    for ns in [(), ("a",), ("ab",), ("acme",), ("x", "y")]:
        mine = sorted((i.namespace, i.key) for i in await ours.asearch(ns, limit=100))
        ref = sorted((i.namespace, i.key) for i in await theirs.asearch(ns, limit=100))
        assert mine == ref, ns


async def test_batch_runs_ops_in_order(backend: MemoryBackend) -> None:
    store = ScopedStore(backend, scope=ALICE)
    results = await store.abatch(
        [
            PutOp(("n",), "a", {"v": 1}),
            GetOp(("n",), "a"),
            SearchOp(("n",)),
            ListNamespacesOp(match_conditions=(MatchCondition("prefix", ("n",)),)),
            PutOp(("n",), "a", None),
            GetOp(("n",), "a"),
        ]
    )
    assert results[0] is None
    assert results[1].value == {"v": 1}  # type: ignore[union-attr]
    assert [i.key for i in results[2]] == ["a"]  # type: ignore[union-attr]
    assert results[3] == [("n",)]
    assert results[5] is None


async def test_ttl_expires_and_refreshes(backend: MemoryBackend, clock: FakeClock) -> None:
    store = ScopedStore(backend, scope=ALICE, ttl={"default_ttl": 1.0})
    await store.aput(("t",), "short", {"v": 1})
    await store.aput(("t",), "forever", {"v": 2}, ttl=None)
    clock.advance(50)
    assert await store.aget(("t",), "short") is not None  # refreshes: another minute from now
    clock.advance(50)
    assert await store.aget(("t",), "short", refresh_ttl=False) is not None
    clock.advance(15)
    assert await store.aget(("t",), "short") is None
    assert [i.key for i in await store.asearch(("t",))] == ["forever"]
    assert await store.alist_namespaces() == [("t",)]


async def test_semantic_search_ranks_within_the_scope(backend: MemoryBackend) -> None:
    index = {"embed": fake_embed, "dims": DIMS, "fields": ["text"]}
    a = ScopedStore(backend, scope=ALICE, index=index)  # type: ignore[arg-type]
    b = ScopedStore(backend, scope=BOB, index=index)  # type: ignore[arg-type]
    await a.aput(("mem",), "food", {"text": "likes pizza and pasta"})
    await a.aput(("mem",), "pets", {"text": "has a cat named tom"})
    await a.aput(("mem",), "raw", {"text": "pizza pizza"}, index=False)
    await b.aput(("mem",), "bob-food", {"text": "pizza pasta pizza pasta"})
    found = await a.asearch(("mem",), query="pizza pasta", limit=10)
    assert [i.key for i in found] == ["food", "pets", "raw"]
    assert found[0].score is not None and found[0].score > 0.5
    assert found[1].score is not None and found[1].score < found[0].score
    assert found[2].score is None  # not indexed: after the ranked ones, like InMemoryStore
    assert [i.key for i in await a.asearch(("mem",), query="pizza", limit=1, offset=1)] == ["pets"]
    assert [i.key for i in await b.asearch(("mem",), query="cat tom")] == ["bob-food"]


async def test_semantic_scores_match_langgraph_inmemorystore(backend: MemoryBackend) -> None:
    index = {"embed": fake_embed, "dims": DIMS, "fields": ["text", "tags[*]"]}
    ours = ScopedStore(backend, scope=ALICE, index=index)  # type: ignore[arg-type]
    theirs = InMemoryStore(index=index)  # type: ignore[arg-type]
    docs = {
        "d1": {"text": "red apple pie", "tags": ["fruit", "dessert"]},
        "d2": {"text": "green apple", "tags": ["fruit"]},
        "d3": {"text": "chocolate cake", "tags": ["dessert", "sweet cake"]},
        "d4": {"text": "stock market news", "tags": []},
    }
    for key, doc in docs.items():
        await ours.aput(("kb",), key, doc)
        await theirs.aput(("kb",), key, doc)
    for query in ("apple", "cake dessert", "news about the market", "fruit"):
        mine = [(i.key, round(i.score or 0, 5)) for i in await ours.asearch(("kb",), query=query)]
        ref = [(i.key, round(i.score or 0, 5)) for i in await theirs.asearch(("kb",), query=query)]
        assert sorted(mine, key=lambda x: (-x[1], x[0])) == sorted(ref, key=lambda x: (-x[1], x[0]))


def test_blocking_api_over_syncmemory(make_backend: object, clock: FakeClock) -> None:
    sync = SyncMemory(make_backend(clock))  # type: ignore[operator]
    try:
        store = ScopedStore(sync, scope=ALICE)
        store.put(("s",), "k", {"v": 1})
        assert store.get(("s",), "k").value == {"v": 1}  # type: ignore[union-attr]
        assert [i.key for i in store.search(("s",))] == ["k"]
        assert store.list_namespaces() == [("s",)]
        results: list[object] = []

        def from_thread() -> None:
            results.append(ScopedStore(sync, scope=BOB).get(("s",), "k"))

        t = threading.Thread(target=from_thread)
        t.start()
        t.join()
        assert results == [None]
        store.delete(("s",), "k")
        assert store.get(("s",), "k") is None
    finally:
        sync.close()


async def test_blocking_call_inside_the_loop_is_refused(backend: MemoryBackend) -> None:
    store = ScopedStore(backend, scope=ALICE)
    with pytest.raises(RuntimeError, match="await its async twin"):
        store.get(("s",), "k")


def test_blocking_call_from_a_worker_thread_uses_the_running_loop() -> None:
    import asyncio

    async def main() -> object:
        store = ScopedStore(InMemoryBackend(), scope=ALICE)
        await store.aput(("s",), "k", {"v": 7})
        return await asyncio.to_thread(lambda: store.get(("s",), "k"))

    item = asyncio.run(main())
    assert item.value == {"v": 7}  # type: ignore[attr-defined]


async def test_keys_written_outside_the_store_are_refused(backend: MemoryBackend) -> None:
    """A non-canonical key (``%61cme`` for ``acme``) never aliases a namespace: it is refused."""
    store = ScopedStore(backend, scope=ALICE)
    await store.aput(("acme",), "k", {"v": 1})
    await backend.put(ALICE, "facts", "langgraph/%61cme/:k", {"v": {}, "c": 0, "u": 0})
    assert (await store.aget(("acme",), "k")).value == {"v": 1}  # type: ignore[union-attr]
    with pytest.raises(ScopeViolationError, match="not a record of this store"):
        await store.asearch(("acme",))  # searches read the whole scope: they fail closed
    with pytest.raises(ScopeViolationError, match="not a record of this store"):
        await store.asearch(())
    with pytest.raises(ScopeViolationError, match="not a record of this store"):
        await store.alist_namespaces()
    await backend.delete(ALICE, "facts", "langgraph/%61cme/:k")
    await backend.put(ALICE, "facts", "langgraph/acme/:k2", {"v": "not a dict"})
    with pytest.raises(ScopeViolationError):
        await store.asearch(("acme",))


class _Leaky(InMemoryBackend):
    """A buggy backend: every listing also returns a record of another scope."""

    async def _list(self, scope, tier, prefix, upper, after, limit, now):  # type: ignore[no-untyped-def]
        rows = list(await super()._list(scope, tier, prefix, upper, after, limit, now))
        foreign = await super()._list(BOB, tier, prefix, upper, after, limit, now)
        return rows + list(foreign)

    async def _get(self, scope, tier, key, now):  # type: ignore[no-untyped-def]
        return await super()._get(BOB, tier, key, now)


async def test_a_leaky_backend_is_caught() -> None:
    backend = _Leaky()
    await backend.put(BOB, "facts", "langgraph/mem/:k", {"v": {"secret": 1}, "c": 0, "u": 0})
    store = ScopedStore(backend, scope=ALICE)
    with pytest.raises(ScopeViolationError):
        await store.asearch(("mem",))
    with pytest.raises(ScopeViolationError):
        await store.aget(("mem",), "k")
    with pytest.raises(ScopeViolationError):
        await store.alist_namespaces()


def test_plain_python_cosine_matches_numpy() -> None:
    from agenthood_mw.integrations.langgraph import _match

    vecs = [[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 0.5, 3.0]]
    fast = _match.cosine_scores(
        [0.5, 1.0, 1.0], [_match.unpack_vector(_match.pack_vector(v)) for v in vecs]
    )
    saved = _match._np
    _match._np = None
    try:
        slow = _match.cosine_scores(
            [0.5, 1.0, 1.0], [_match.unpack_vector(_match.pack_vector(v)) for v in vecs]
        )
    finally:
        _match._np = saved
    assert slow == pytest.approx(fast)
    assert slow[1] == 0.0
    assert math.isclose(slow[0], (0.5 + 2.0) / (math.sqrt(5) * 1.5))


async def test_snapshots_follow_writes_of_other_stores(backend: MemoryBackend) -> None:
    """Two stores on one storage stand for two processes: each sees the other's writes."""
    index = {"embed": fake_embed, "dims": DIMS, "fields": ["text"]}
    one = ScopedStore(backend, scope=ALICE, index=index)  # type: ignore[arg-type]
    two = ScopedStore(backend, scope=ALICE, index=index)  # type: ignore[arg-type]
    await one.aput(("m",), "a", {"text": "apple"})
    assert [i.key for i in await one.asearch(("m",), query="apple")] == ["a"]
    await two.aput(("m",), "b", {"text": "apple apple"})
    assert [i.key for i in await one.asearch(("m",), query="apple")] == ["a", "b"]
    await two.aput(("m",), "a", {"text": "banana"})
    hits = await one.asearch(("m",), query="banana")
    assert (hits[0].key, hits[0].value) == ("a", {"text": "banana"})
    await two.adelete(("m",), "b")
    assert [i.key for i in await one.asearch(("m",))] == ["a"]
    assert await one.alist_namespaces() == [("m",)]
    await two.adelete(("m",), "a")
    assert await one.alist_namespaces() == []


async def test_returned_values_are_copies(backend: MemoryBackend) -> None:
    store = ScopedStore(backend, scope=ALICE)
    await store.aput(("m",), "a", {"tags": ["x"]})
    first = await store.asearch(("m",))
    first[0].value["tags"].append("mutated")
    first[0].value["new"] = 1
    assert (await store.asearch(("m",)))[0].value == {"tags": ["x"]}


async def test_cached_snapshots_still_expire(backend: MemoryBackend, clock: FakeClock) -> None:
    store = ScopedStore(backend, scope=ALICE)
    await store.aput(("m",), "short", {"v": 1}, ttl=1.0)
    await store.aput(("m",), "long", {"v": 2})
    assert sorted(i.key for i in await store.asearch(("m",), refresh_ttl=False)) == [
        "long",
        "short",
    ]
    clock.advance(61)
    assert [i.key for i in await store.asearch(("m",), refresh_ttl=False)] == ["long"]
    await store.adelete(("m",), "long")
    assert await store.alist_namespaces() == []


@pytest.mark.parametrize("cache_scopes", [0, 1])
async def test_cache_size(backend: MemoryBackend, cache_scopes: int) -> None:
    a = ScopedStore(backend, scope=ALICE, cache_scopes=cache_scopes)
    b = ScopedStore(backend, scope=BOB, cache_scopes=cache_scopes)
    for _ in range(2):
        await a.aput(("m",), "k", {"who": "alice"})
        await b.aput(("m",), "k", {"who": "bob"})
        assert [i.value["who"] for i in await a.asearch(("m",))] == ["alice"]
        assert [i.value["who"] for i in await b.asearch(("m",))] == ["bob"]
    with pytest.raises(ValueError, match="cache_scopes"):
        ScopedStore(backend, cache_scopes=-1)


@given(
    st.lists(st.lists(st.integers(-3, 3), min_size=4, max_size=4), min_size=0, max_size=150),
    st.lists(st.integers(-3, 3), min_size=4, max_size=4),
    st.integers(1, 20),
)
@settings(max_examples=60, deadline=None)
def test_best_first_yields_every_row_once_in_score_order(
    rows: list[list[int]], query: list[int], hint: int
) -> None:
    from agenthood_mw.integrations.langgraph import _match

    vecs = [[float(x) for x in r] for r in rows]
    got = list(_match.best_first(_match.normalised_rows(vecs), [float(x) for x in query], hint))
    assert sorted(j for _, j in got) == list(range(len(rows)))
    scores = [s for s, _ in got]
    assert all(a >= b - 1e-6 for a, b in itertools.pairwise(scores))
    expected = _match.cosine_scores([float(x) for x in query], vecs)
    for score, j in got:
        assert score == pytest.approx(expected[j], abs=1e-5)


async def test_semantic_search_reads_past_the_best_rows_when_filtered(
    backend: MemoryBackend,
) -> None:
    index = {"embed": fake_embed, "dims": DIMS, "fields": ["text"]}
    store = ScopedStore(backend, scope=ALICE, index=index)  # type: ignore[arg-type]
    for i in range(90):
        text = "pizza " * (1 + i % 5) + f"topic{i}"
        await store.aput(("m",), f"k{i:03d}", {"text": text, "odd": i % 2})
    hits = await store.asearch(("m",), query="pizza", filter={"odd": 1}, limit=40, offset=5)
    assert len(hits) == 40 and all(h.value["odd"] == 1 for h in hits)
    scores = [h.score for h in hits]
    assert all(s is not None for s in scores) and scores == sorted(scores, reverse=True)  # type: ignore[type-var]


async def test_a_bad_op_runs_nothing_of_its_batch(backend: MemoryBackend) -> None:
    store = ScopedStore(backend, scope=ALICE)
    with pytest.raises(TypeError, match="unknown store operation"):
        await store.abatch([PutOp(("n",), "a", {"v": 1}), "not an op"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="ttl has unsupported keys"):
        ScopedStore(backend, ttl={"default_tll": 1})  # type: ignore[typeddict-unknown-key]
    assert await store.aget(("n",), "a") is None


async def test_concurrent_writers_never_leave_a_stale_snapshot(backend: MemoryBackend) -> None:
    """Writers (another store: another process) race a reader that keeps a snapshot; once the
    writers are done, the reader's next search shows exactly the final state."""
    import asyncio

    reader = ScopedStore(backend, scope=ALICE)
    writer = ScopedStore(backend, scope=ALICE)
    other = ScopedStore(backend, scope=BOB)

    async def write(i: int) -> None:
        for j in range(5):
            await writer.aput(("c", f"w{i}"), f"k{j}", {"i": i, "j": j})
        await writer.adelete(("c", f"w{i}"), "k0")
        await other.aput(("c", f"w{i}"), "bob", {"i": i})

    async def read() -> None:
        for _ in range(10):
            for item in await reader.asearch(("c",), limit=1000):
                assert item.key != "bob"
            await asyncio.sleep(0)

    await asyncio.gather(*(write(i) for i in range(8)), *(read() for _ in range(4)))
    final = {(i.namespace, i.key) for i in await reader.asearch(("c",), limit=1000)}
    assert final == {(("c", f"w{i}"), f"k{j}") for i in range(8) for j in range(1, 5)}
    assert len(await reader.alist_namespaces(prefix=("c",))) == 8


async def test_erase_and_export_include_store_items(backend: MemoryBackend) -> None:
    store = ScopedStore(backend, scope=ALICE)
    await store.aput(("mem",), "a", {"text": "x"})
    export = await backend.export(ALICE)
    assert any(r.key.startswith("langgraph/mem/") for r in export.facts)
    await backend.erase(ALICE)
    assert await store.aget(("mem",), "a") is None
    assert await store.asearch(("mem",)) == []


async def test_plain_python_search_ranks_like_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    from agenthood_mw.integrations.langgraph import _match

    index = {"embed": fake_embed, "dims": DIMS, "fields": ["text"]}
    texts = ["red apple pie", "green apple", "chocolate cake", "apple apple cake", "news"]

    async def ranking() -> list[tuple[str, float]]:
        store = ScopedStore(InMemoryBackend(), scope=ALICE, index=index)  # type: ignore[arg-type]
        for i, text in enumerate(texts):
            await store.aput(("kb",), f"d{i}", {"text": text})
        hits = await store.asearch(("kb",), query="apple cake", limit=3, offset=1)
        return [(h.key, round(h.score or 0.0, 5)) for h in hits]

    with_numpy = await ranking()
    monkeypatch.setattr(_match, "_np", None)
    assert await ranking() == with_numpy
    assert len(with_numpy) == 3

"""Conformance kit for :class:`~agenthood_mw.memory.MemoryBackend` implementations.

Subclass :class:`BackendConformance` in a test module and provide ONE fixture, ``make_backend``:
a callable that takes a clock (a zero-argument callable returning epoch seconds) and returns a
fresh backend built with ``clock=clock`` (or an awaitable of one). Every test opens its own
backend inside the running event loop, writes only to freshly minted scopes and closes the
backend at the end, so the kit is safe against a shared, persistent database::

    from agenthood_mw.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def make_backend(self, tmp_path):
            return lambda clock: MyBackend(tmp_path / "m.db", clock=clock)

Needs pytest, pytest-asyncio and hypothesis. Override ``stateful_settings`` to tune the
Hypothesis state machine (default: 80 runs of up to 60 steps, about 3 600 steps), and
``concurrent_operations`` to change how many operations the two load tests start at once
(default 1 000: as asyncio tasks on one backend, and from 32 threads through ``SyncMemory``).
"""

from __future__ import annotations

import asyncio
import inspect
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw._identity import Identity
from agenthood_mw.memory import (
    InvalidCursorError,
    InvalidKeyError,
    InvalidValueError,
    MemoryBackend,
    Record,
    ScopedMemory,
    SyncMemory,
    Tier,
)
from agenthood_mw.testing._memory_machine import FakeClock, MemoryMachine

__all__ = [
    "ADVERSARIAL_IDS",
    "ADVERSARIAL_KEYS",
    "LEAK_PAIRS",
    "NAMESPACE_PAIRS",
    "BackendConformance",
    "FakeClock",
]

BackendFactory = Callable[[Callable[[], float]], "MemoryBackend | Awaitable[MemoryBackend]"]

#: Scope ids that naive stores confuse with ``alice`` or with each other; all valid and distinct.
ADVERSARIAL_IDS: tuple[str, ...] = (
    "alice",
    "alice_x",
    "aliceX",
    "ALICE",
    "alice.x",
    "alice:x",
    "alice/x",
    "alice%",
    "alice%2Fx",
    "%",
    "_",
    "*",
    "?",
    "[",
    "]",
    "{x}",
    "{alice}",
    "\u00e9",  # NFC e-acute; its NFD twin is rejected by MemoryScope
    "x" * 256,
    "\u00e9" * 256,
    "\U0001d538" * 256,
)
#: Pairs that leaked into each other in other projects' stores (LIKE wildcards, prefix matching).
LEAK_PAIRS: tuple[tuple[str, str], ...] = (
    ("john-doe", "john_doe"),
    ("foo", "foobar"),
    ("acme", "acme-corp"),
)
#: LangGraph namespaces that differ only at a segment boundary or in an escape.
NAMESPACE_PAIRS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("a", "bc"), ("ab", "c")),
    (("a", "b"), ("a/b",)),
    (("c", "d"), ("c:d",)),
    (("e/f",), ("e%2Ff",)),
    (("x", "y", "z"), ("x", "yz")),
)
#: Fact keys / paths that must stay distinct and never act as patterns.
ADVERSARIAL_KEYS: tuple[str, ...] = (
    "a",
    "a_x",
    "aX",
    "A",
    "a.x",
    "a:x",
    "a/x",
    "a%",
    "%",
    "_",
    "*",
    "?",
    "[",
    "{x}",
    "\u00e9",
    "e\u0301",  # NFD: accepted as a different key, never merged with the NFC one
    "k" * 1024,
)


async def _create(factory: BackendFactory, clock: FakeClock) -> MemoryBackend:
    made = factory(clock)
    backend = await made if inspect.isawaitable(made) else made
    if not isinstance(backend, MemoryBackend):
        raise TypeError("make_backend must return a MemoryBackend")
    if backend.clock is not clock:
        raise TypeError("make_backend(clock) must build the backend with clock=clock")
    return backend


class _Run:
    """One test's backend, clock and freshly minted scopes (all erased at the end)."""

    def __init__(self, backend: MemoryBackend, clock: FakeClock) -> None:
        self.backend = backend
        self.clock = clock
        self.tenant = f"conformance-{uuid.uuid4().hex}"
        self.scopes: list[MemoryScope] = []

    def scope(self, user: str = "alice", *, tenant: str | None = None) -> MemoryScope:
        scope = MemoryScope.operator(user=user, tenant=self.tenant if tenant is None else tenant)
        self.scopes.append(scope)
        return scope


@asynccontextmanager
async def _opened(factory: BackendFactory) -> AsyncIterator[_Run]:
    clock = FakeClock()
    backend = await _create(factory, clock)
    run = _Run(backend, clock)
    try:
        yield run
    finally:
        try:
            for scope in run.scopes:
                await backend.erase(scope)
        finally:
            await backend.close()


async def _keys(
    backend: MemoryBackend, scope: MemoryScope, tier: Tier, prefix: str = ""
) -> list[str]:
    keys: list[str] = []
    cursor = None
    for _ in range(10_000):
        page = await backend.list(scope, tier, prefix, limit=7, cursor=cursor)
        keys += [r.key for r in page]
        if page.next_cursor is None:
            return keys
        cursor = page.next_cursor
    raise AssertionError("pagination did not terminate")


class BackendConformance:
    """Base class of the conformance suite. Provide the ``make_backend`` fixture."""

    stateful_settings: ClassVar[settings] = settings(
        max_examples=80,
        stateful_step_count=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )

    concurrent_operations: ClassVar[int] = 1000

    @pytest.fixture
    def make_backend(self) -> BackendFactory:
        raise NotImplementedError("provide a make_backend fixture returning a backend factory")

    # ------------------------------------------------------------------ functional
    @pytest.mark.asyncio
    async def test_put_get_delete_roundtrip(self, make_backend: BackendFactory) -> None:
        async with _opened(make_backend) as run:
            b, s = run.backend, run.scope()
            values: list[Any] = [
                None, True, 0, -(2**62), 1.5, "", "text \u00e9 \U0001f600", [1, [2, {}]],
                {"nested": {"list": [1, 2.25, None], "nul": "a\x00b"}},
            ]  # fmt: skip
            for i, value in enumerate(values):
                rec = await b.put(s, "facts", f"k{i}", value)
                assert rec.key == f"k{i}" and rec.value == value and rec.scope_key == s.storage_key
            for i, value in enumerate(values):
                got = await b.get(s, "facts", f"k{i}")
                assert got is not None and got.value == value and got.tier == "facts"
                assert got.scope == s and got.updated_at == run.clock.now
            run.clock.advance(1)
            await b.put(s, "facts", "k0", {"v": 2})
            got = await b.get(s, "facts", "k0")
            assert got is not None and got.value == {"v": 2} and got.updated_at == run.clock.now
            got.value["v"] = 3  # a returned value is a copy
            assert (await b.get(s, "facts", "k0")).value == {"v": 2}  # type: ignore[union-attr]
            assert await b.delete(s, "facts", "k0") is True
            assert await b.delete(s, "facts", "k0") is False
            assert await b.get(s, "facts", "k0") is None
            assert await b.get(s, "facts", "never") is None

    @pytest.mark.asyncio
    async def test_tiers_are_independent(self, make_backend: BackendFactory) -> None:
        async with _opened(make_backend) as run:
            b, s = run.backend, run.scope()
            await b.put(s, "facts", "same", "fact")
            await b.put(s, "project", "same", "doc")
            assert (await b.get(s, "facts", "same")).value == "fact"  # type: ignore[union-attr]
            assert (await b.get(s, "project", "same")).value == "doc"  # type: ignore[union-attr]
            await b.delete(s, "facts", "same")
            assert await b.get(s, "project", "same") is not None
            with pytest.raises(ValueError, match="tier"):
                await b.put(s, "episodic", "k", 1)  # type: ignore[arg-type]

    @pytest.mark.asyncio
    async def test_bad_values_write_nothing(self, make_backend: BackendFactory) -> None:
        async with _opened(make_backend) as run:
            b, s = run.backend, run.scope()
            await b.put(s, "facts", "kept", "old")
            deep: Any = []
            for _ in range(100):
                deep = [deep]
            bad: list[Any] = [
                {1, 2}, float("nan"), float("inf"), {1: "int key"}, object(), b"bytes",
                {"a": [1, {"b": object()}]}, "lone \ud800 surrogate", deep, "x" * (1 << 20),
            ]  # fmt: skip
            for value in bad:
                with pytest.raises(InvalidValueError):
                    await b.put(s, "facts", "kept", value)
                with pytest.raises(InvalidValueError):
                    await b.put(s, "facts", "new", value)
            assert (await b.get(s, "facts", "kept")).value == "old"  # type: ignore[union-attr]
            assert await b.get(s, "facts", "new") is None
            with pytest.raises(InvalidValueError):
                await b.append_event(s, ["not", "a", "dict"])  # type: ignore[arg-type]
            with pytest.raises(InvalidValueError):
                await b.append_event(s, {"x": float("nan")})
            assert len(await b.list_events(s)) == 0
            for ttl in (0, -1, "soon", float("nan")):
                with pytest.raises(ValueError, match="ttl"):
                    await b.put(s, "facts", "new", 1, ttl=ttl)
            assert await b.get(s, "facts", "new") is None

    @pytest.mark.asyncio
    async def test_bad_keys_are_rejected(self, make_backend: BackendFactory) -> None:
        async with _opened(make_backend) as run:
            b, s = run.backend, run.scope()
            bad: list[Any] = ["", "a\nb", "nul\x00", "tab\t", "x" * 1025, "\u00e9" * 513, "\ud800"]
            for key in bad:
                with pytest.raises(InvalidKeyError):
                    await b.put(s, "facts", key, 1)
                with pytest.raises(InvalidKeyError):
                    await b.get(s, "facts", key)
                with pytest.raises(InvalidKeyError):
                    await b.delete(s, "project", key)
                if key:
                    with pytest.raises(InvalidKeyError):
                        await b.list(s, "facts", key)
            not_str: list[Any] = [None, 3, b"k"]
            for key in not_str:
                with pytest.raises(InvalidKeyError):
                    await b.put(s, "facts", key, 1)
            assert len(await b.list(s, "facts")) == 0

    @pytest.mark.asyncio
    async def test_every_method_requires_a_scope(self, make_backend: BackendFactory) -> None:
        async with _opened(make_backend) as run:
            b = run.backend
            await b.put(run.scope(), "facts", "k", 1)
            for fake in (None, "alice", run.scope().storage_key, Identity(user_id="alice")):
                f: Any = fake
                calls: list[Awaitable[object]] = [
                    b.put(f, "facts", "k", 1),
                    b.get(f, "facts", "k"),
                    b.delete(f, "facts", "k"),
                    b.list(f, "facts"),
                    b.search(f, "facts", "k"),
                    b.append_event(f, {}),
                    b.list_events(f),
                    b.erase(f),
                    b.export(f),
                ]
                for call in calls:
                    with pytest.raises(TypeError, match="MemoryScope"):
                        await call
                with pytest.raises(TypeError):
                    ScopedMemory(b, fake)  # type: ignore[arg-type]

    @pytest.mark.asyncio
    async def test_list_prefix_and_pagination(self, make_backend: BackendFactory) -> None:
        async with _opened(make_backend) as run:
            b, s = run.backend, run.scope()
            keys = [f"notes/{i:03d}" for i in range(23)] + ["notes", "notes0", "other", "n"]
            for key in reversed(keys):
                await b.put(s, "project", key, {"k": key})
            assert await _keys(b, s, "project") == sorted(keys)
            assert await _keys(b, s, "project", "notes/") == sorted(keys[:23])
            assert await _keys(b, s, "project", "notes") == sorted([*keys[:23], "notes", "notes0"])
            assert await _keys(b, s, "project", "zzz") == []
            page = await b.list(s, "project", "notes/", limit=10)
            assert [r.key for r in page] == sorted(keys[:23])[:10]
            page2 = await b.list(s, "project", "notes/", limit=10, cursor=page.next_cursor)
            assert [r.key for r in page2] == sorted(keys[:23])[10:20]
            assert all(r.value == {"k": r.key} for r in page2)
            last = await b.list(s, "project", "notes/", limit=3, cursor=page2.next_cursor)
            assert len(last) == 3 and last.next_cursor is None
            for limit in (0, -1, 1001):
                with pytest.raises(ValueError, match="limit"):
                    await b.list(s, "project", limit=limit)
            for cursor in ("", "%zz", "a%0Ab", "\x00"):
                with pytest.raises(InvalidCursorError):
                    await b.list(s, "project", cursor=cursor)

    @pytest.mark.asyncio
    async def test_search(self, make_backend: BackendFactory) -> None:
        async with _opened(make_backend) as run:
            b, s = run.backend, run.scope()
            await b.put(s, "facts", "city", "Alice lives in Zürich")
            await b.put(s, "facts", "pet", {"kind": "cat", "name": "Straße"})
            await b.put(s, "facts", "count", 42)
            await b.put(s, "facts", "pattern", "100% of a_b")
            await b.put(s, "project", "src/auth.py", {"text": "async def auth(): ..."})

            async def keys(text: str, tier: Tier = "facts", limit: int = 20) -> list[str]:
                return [r.key for r in await b.search(s, tier, text, limit=limit)]

            assert await keys("alice") == ["city"]
            assert await keys("ZÜRICH lives") == ["city"]
            assert await keys("strasse") == ["pet"]  # case-folded
            assert await keys("kind") == ["pet"]  # dict keys are searchable
            assert await keys("42") == ["count"]
            assert await keys("%") == ["pattern"]  # not a wildcard
            assert await keys("_") == ["pattern"]
            assert await keys("alice cat") == []
            assert await keys("auth", "project") == ["src/auth.py"]
            assert await keys("auth") == []
            assert await keys("i", limit=2) == ["city", "pet"]
            with pytest.raises(ValueError, match="search"):
                await b.search(s, "facts", "   ")

    @pytest.mark.asyncio
    async def test_episodic_log(self, make_backend: BackendFactory) -> None:
        async with _opened(make_backend) as run:
            b, s = run.backend, run.scope()
            t0 = run.clock.now
            first = await b.append_event(s, {"n": 0})
            assert first.timestamp == t0 and first.data == {"n": 0} and first.scope == s
            for n in range(1, 12):
                run.clock.advance(10)
                await b.append_event(s, {"n": n})
            same = [await b.append_event(s, {"n": 100 + i}) for i in range(3)]
            await b.append_event(s, {"n": -1}, at=t0 - 5)
            page = await b.list_events(s, limit=50)
            assert [e.data["n"] for e in page][:3] == [102, 101, 100]
            assert [e.data["n"] for e in page][3:] == [*range(11, 0, -1), 0, -1]
            assert [(e.timestamp, e.id) for e in page] == sorted(
                ((e.timestamp, e.id) for e in page), reverse=True
            )
            assert same[0].id < same[1].id < same[2].id
            window = await b.list_events(s, since=t0 + 20, until=t0 + 50)
            assert [e.data["n"] for e in window] == [4, 3, 2]
            collected: list[int] = []
            cursor = None
            while True:
                p = await b.list_events(s, limit=4, since=t0, cursor=cursor)
                collected += [e.data["n"] for e in p]
                if p.next_cursor is None:
                    break
                cursor = p.next_cursor
            assert collected == [102, 101, 100, *range(11, 0, -1), 0]
            with pytest.raises(InvalidCursorError):
                await b.list_events(s, cursor="nope")
            with pytest.raises(ValueError, match="at"):
                await b.append_event(s, {}, at=-1)

    @pytest.mark.asyncio
    async def test_ttl(self, make_backend: BackendFactory) -> None:
        async with _opened(make_backend) as run:
            b, s = run.backend, run.scope()
            rec = await b.put(s, "facts", "temp", "soon gone", ttl=10)
            assert rec.expires_at == run.clock.now + 10
            await b.put(s, "facts", "minute", "m", ttl="1m")
            await b.put(s, "facts", "perm", "stays")
            run.clock.advance(9.5)
            assert await b.get(s, "facts", "temp") is not None
            run.clock.advance(0.5)
            assert await b.get(s, "facts", "temp") is None
            assert [r.key for r in await b.list(s, "facts")] == ["minute", "perm"]
            assert [r.key for r in await b.search(s, "facts", "gone")] == []
            assert [r.key for r in (await b.export(s)).facts] == ["minute", "perm"]
            assert await b.delete(s, "facts", "temp") is False
            await b.put(s, "facts", "temp", "back")
            run.clock.advance(3600)
            assert (await b.get(s, "facts", "temp")).value == "back"  # type: ignore[union-attr]
            assert await b.get(s, "facts", "minute") is None

    @pytest.mark.asyncio
    async def test_erase_and_export(self, make_backend: BackendFactory) -> None:
        async with _opened(make_backend) as run:
            b, s, other = run.backend, run.scope("alice"), run.scope("bob")
            for scope in (s, other):
                await b.put(scope, "facts", "f", 1)
                await b.put(scope, "project", "p", 2)
                await b.append_event(scope, {"e": 1})
                run.clock.advance(1)
                await b.append_event(scope, {"e": 2})
            export = await b.export(s)
            assert export.scope == s and len(export) == 4
            assert [e.data["e"] for e in export.events] == [1, 2]  # oldest first
            data = export.to_dict()
            assert data["scope"] == {"tenant": run.tenant, "user": "alice"}
            assert data["facts"][0]["key"] == "f" and data["project"][0]["value"] == 2
            assert await b.erase(s) == 4
            assert len(await b.export(s)) == 0
            assert await b.erase(s) == 0
            assert len(await b.export(other)) == 4

    # ------------------------------------------------------------------ isolation
    def test_malformed_scope_ids_are_rejected(self) -> None:
        for bad in ("", "alice\n", "al\x00ice", "e\u0301", "x" * 257, "\u202ealice"):
            with pytest.raises(ValueError, match="MemoryScope"):
                MemoryScope.operator(user=bad)
            with pytest.raises(ValueError, match="MemoryScope"):
                MemoryScope.operator(user="alice", tenant=bad)

    @pytest.mark.asyncio
    async def test_adversarial_scopes_are_isolated(self, make_backend: BackendFactory) -> None:
        async with _opened(make_backend) as run:
            b = run.backend
            scopes = [run.scope(u) for u in ADVERSARIAL_IDS]
            scopes += [
                run.scope("alice", tenant=run.tenant + sfx) for sfx in ("_x", ".x", "%", "/x")
            ]
            scopes.append(run.scope(run.tenant + "/alice", tenant=None))
            assert len({sc.storage_key for sc in scopes}) == len(scopes)
            for i, sc in enumerate(scopes):
                await b.put(sc, "facts", "shared", i)
                await b.put(sc, "facts", f"own-{i}", i)
                await b.put(sc, "facts", sc.user[:200], i)
                await b.put(sc, "project", "src/a.py", {"owner": i, "text": "needle common"})
                await b.append_event(sc, {"owner": i})
            for i, sc in enumerate(scopes):
                assert (await b.get(sc, "facts", "shared")).value == i  # type: ignore[union-attr]
                for j in (0, len(scopes) - 1, (i + 1) % len(scopes)):
                    if j != i:
                        assert await b.get(sc, "facts", f"own-{j}") is None
                expected = sorted({"shared", f"own-{i}", sc.user[:200]})
                assert await _keys(b, sc, "facts") == expected
                assert await _keys(b, sc, "facts", "own-") == [f"own-{i}"]
                assert all(r.value == i for r in await b.list(sc, "facts", "own"))
                found = await b.search(sc, "project", "needle", limit=1000)
                assert [r.value["owner"] for r in found] == [i]
                assert [e.data["owner"] for e in await b.list_events(sc, limit=1000)] == [i]
                export = await b.export(sc)
                assert len(export) == 5
                assert {r.value for r in export.facts} == {i}
                assert {r.scope_key for r in (*export.facts, *export.project)} == {sc.storage_key}
            assert await b.erase(scopes[0]) == 5
            for i, sc in enumerate(scopes[1:], start=1):
                assert len(await b.export(sc)) == 5
                assert (await b.get(sc, "facts", "shared")).value == i  # type: ignore[union-attr]

    @pytest.mark.asyncio
    async def test_adversarial_keys_are_literal(self, make_backend: BackendFactory) -> None:
        async with _opened(make_backend) as run:
            b, s = run.backend, run.scope()
            for i, key in enumerate(ADVERSARIAL_KEYS):
                await b.put(s, "facts", key, i)
            for i, key in enumerate(ADVERSARIAL_KEYS):
                assert (await b.get(s, "facts", key)).value == i  # type: ignore[union-attr]
            assert await _keys(b, s, "facts") == sorted(ADVERSARIAL_KEYS)
            for prefix in ("a", "a_", "a%", "%", "_", "*", "?", "[", "{", "\u00e9", "e"):
                expected = sorted(k for k in ADVERSARIAL_KEYS if k.startswith(prefix))
                assert await _keys(b, s, "facts", prefix) == expected, prefix
            assert [r.key for r in await b.search(s, "facts", "%")] == ["%", "a%"]

    # ------------------------------------------------------------------ concurrency
    @pytest.mark.asyncio
    async def test_parallel_writers_in_different_scopes(self, make_backend: BackendFactory) -> None:
        async with _opened(make_backend) as run:
            b = run.backend
            scopes = [run.scope(f"w{i}") for i in range(12)]

            async def writer(i: int, sc: MemoryScope) -> None:
                for n in range(15):
                    await b.put(sc, "facts", f"k{n:02d}", {"w": i, "n": n})
                    await b.append_event(sc, {"w": i, "n": n})

            await asyncio.gather(*(writer(i, sc) for i, sc in enumerate(scopes)))
            for i, sc in enumerate(scopes):
                recs = [r async for r in _all(b, sc)]
                assert [r.value for r in recs] == [{"w": i, "n": n} for n in range(15)]
                events = await b.list_events(sc, limit=100)
                assert sorted(e.data["n"] for e in events) == list(range(15))
                assert {e.data["w"] for e in events} == {i}

    @pytest.mark.asyncio
    async def test_cancelled_tasks_never_see_other_scopes(
        self, make_backend: BackendFactory
    ) -> None:
        async with _opened(make_backend) as run:
            b = run.backend
            scopes = [run.scope(f"c{i}") for i in range(8)]
            for i, sc in enumerate(scopes):
                await b.put(sc, "facts", "who", i)
                await b.put(sc, "facts", "pad", "x" * 2000)
            rng = random.Random(4)  # noqa: S311 - test scheduling only
            completed = 0

            async def reader(i: int, sc: MemoryScope) -> int:
                for _ in range(4):
                    rec = await b.get(sc, "facts", "who")
                    assert rec is not None and rec.value == i
                    page = await b.list(sc, "facts")
                    assert [r.key for r in page] == ["pad", "who"] and page[1].value == i
                return i

            for _ in range(15):
                tasks = [asyncio.create_task(reader(i, sc)) for i, sc in enumerate(scopes)]
                for _ in range(rng.randint(0, 3)):
                    await asyncio.sleep(0)
                for task in tasks:
                    if rng.random() < 0.5:
                        task.cancel()
                results = await asyncio.gather(*tasks, return_exceptions=True)
                for i, result in enumerate(results):
                    if isinstance(result, BaseException):
                        assert isinstance(result, asyncio.CancelledError), result
                    else:
                        assert result == i
                        completed += 1
            for i, sc in enumerate(scopes):  # the backend is still healthy afterwards
                assert (await b.get(sc, "facts", "who")).value == i  # type: ignore[union-attr]
            assert completed > 0

    @pytest.mark.asyncio
    async def test_concurrent_operations_as_tasks(self, make_backend: BackendFactory) -> None:
        """``concurrent_operations`` puts, gets, appends and lists in flight at once."""
        async with _opened(make_backend) as run:
            b, n = run.backend, self.concurrent_operations
            scopes = [run.scope(f"load{i}") for i in range(20)]
            for sc in scopes:
                await b.put(sc, "facts", "seed", sc.user)

            async def op(i: int) -> None:
                sc = scopes[i % len(scopes)]
                kind = i % 4
                if kind == 0:
                    assert (await b.put(sc, "facts", f"k{i}", i)).value == i
                elif kind == 1:
                    assert (await b.get(sc, "facts", "seed")).value == sc.user  # type: ignore[union-attr]
                elif kind == 2:
                    await b.append_event(sc, {"i": i})
                else:
                    assert all(r.scope == sc for r in await b.list(sc, "facts", limit=5))

            await asyncio.gather(*(op(i) for i in range(n)))
            _check_load(await _load_state(b, scopes), scopes, n)

    def test_concurrent_operations_from_threads(self, make_backend: BackendFactory) -> None:
        """The same load from 32 threads through the blocking :class:`SyncMemory` facade."""
        n = self.concurrent_operations
        with asyncio.Runner() as runner:
            backend = runner.run(_create(make_backend, FakeClock()))
        tenant = f"conformance-{uuid.uuid4().hex}"
        scopes = [MemoryScope.operator(user=f"load{i}", tenant=tenant) for i in range(20)]
        with SyncMemory(backend) as sync:
            views = [sync.scoped(sc) for sc in scopes]
            try:
                for view, sc in zip(views, scopes, strict=True):
                    view.facts.put("seed", sc.user)

                def op(i: int) -> None:
                    view, sc = views[i % len(views)], scopes[i % len(scopes)]
                    kind = i % 4
                    if kind == 0:
                        assert view.facts.put(f"k{i}", i).value == i
                    elif kind == 1:
                        assert view.facts.get_value("seed") == sc.user
                    elif kind == 2:
                        view.episodic.append({"i": i})
                    else:
                        assert all(r.scope == sc for r in view.facts.list(limit=5))

                with ThreadPoolExecutor(32) as pool:
                    list(pool.map(op, range(n)))
                _check_load(sync.run(_load_state(backend, scopes)), scopes, n)
            finally:
                for sc in scopes:
                    sync.erase(sc)

    # ------------------------------------------------------------------ stateful
    def test_stateful_against_a_dict_model(self, make_backend: BackendFactory) -> None:
        with asyncio.Runner() as runner:
            clock = FakeClock()
            backend = runner.run(_create(make_backend, clock))
            try:
                steps = [0]
                machine = type(
                    "MemoryMachine",
                    (MemoryMachine,),
                    {"runner": runner, "backend": backend, "clock": clock, "steps": steps},
                )
                run_state_machine_as_test(machine, settings=self.stateful_settings)
                assert steps[0] >= (self.stateful_settings.max_examples or 1), steps
            finally:
                runner.run(backend.close())

    # ------------------------------------------------------------------ peers' leaks
    @pytest.mark.asyncio
    async def test_peer_leak_pairs_stay_apart(self, make_backend: BackendFactory) -> None:
        """Ids that leaked in other stores (``john-doe``/``john_doe``: LIKE wildcards;
        ``foo``/``foobar``, ``acme``/``acme-corp``: prefix matching) as users, tenants and keys."""
        async with _opened(make_backend) as run:
            b = run.backend
            for x, y in LEAK_PAIRS:
                scopes = [
                    run.scope(x),
                    run.scope(y),
                    run.scope("u", tenant=f"{run.tenant}-{x}"),
                    run.scope("u", tenant=f"{run.tenant}-{y}"),
                ]
                for i, sc in enumerate(scopes):
                    await b.put(sc, "facts", "k", {"owner": i, "text": "leakcheck"})
                    await b.put(sc, "project", f"{x if i % 2 == 0 else y}/doc", i)
                for i, sc in enumerate(scopes):
                    assert (await b.get(sc, "facts", "k")).value["owner"] == i  # type: ignore[union-attr]
                    found = await b.search(sc, "facts", "leakcheck", limit=1000)
                    assert [r.value["owner"] for r in found] == [i]
                    assert [r.value for r in await b.list(sc, "project", limit=1000)] == [i]
                s = run.scope(f"keys-{x}")
                await b.put(s, "facts", f"{x}/1", "x")
                await b.put(s, "facts", f"{y}/1", "y")
                assert await _keys(b, s, "facts", f"{x}/") == [f"{x}/1"]
                assert await _keys(b, s, "facts", f"{y}/") == [f"{y}/1"]
                assert (await b.get(s, "facts", f"{x}/1")).value == "x"  # type: ignore[union-attr]

    @pytest.mark.asyncio
    async def test_langgraph_store_namespace_boundaries(self, make_backend: BackendFactory) -> None:
        """``ScopedStore`` on this backend: namespaces differing only at a segment boundary,
        and the peer leak pairs as namespaces, never meet (skipped without ``[langgraph]``)."""
        pytest.importorskip("langgraph.store.base")
        from agenthood_mw.integrations.langgraph import ScopedStore

        async with _opened(make_backend) as run:
            for x, y in LEAK_PAIRS:
                mine = ScopedStore(run.backend, scope=run.scope(x))
                theirs = ScopedStore(run.backend, scope=run.scope(y))
                await _check_namespace_pairs(mine, theirs)


async def _all(b: MemoryBackend, sc: MemoryScope) -> AsyncIterator[Record]:
    cursor = None
    while True:
        page = await b.list(sc, "facts", limit=4, cursor=cursor)
        for rec in page:
            yield rec
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def _load_state(
    b: MemoryBackend, scopes: list[MemoryScope]
) -> list[tuple[dict[str, Any], int]]:
    """Per scope: every fact (key -> value) and the number of events."""
    out = []
    for sc in scopes:
        facts = {r.key: r.value async for r in _all(b, sc)}
        events = await b.list_events(sc, limit=1000)
        out.append((facts, len(events)))
    return out


def _check_load(state: list[tuple[dict[str, Any], int]], scopes: list[MemoryScope], n: int) -> None:
    for j, (sc, (facts, events)) in enumerate(zip(scopes, state, strict=True)):
        mine = [i for i in range(n) if i % len(scopes) == j]
        assert facts == {"seed": sc.user} | {f"k{i}": i for i in mine if i % 4 == 0}
        assert events == sum(1 for i in mine if i % 4 == 2)


async def _check_namespace_pairs(store: Any, theirs: Any) -> None:
    """Write both namespaces of every pair in ``store`` and one of each in ``theirs``."""
    pairs = [((x,), (y,)) for x, y in LEAK_PAIRS] + list(NAMESPACE_PAIRS)
    for i, (a, c) in enumerate(pairs):
        await store.aput(a, "k", {"ns": "a", "i": i})
        await store.aput(c, "k", {"ns": "c", "i": i})
        await theirs.aput(a, "k", {"ns": "theirs", "i": i})
    for i, (a, c) in enumerate(pairs):
        for ns, tag in ((a, "a"), (c, "c")):
            assert (await store.aget(ns, "k")).value == {"ns": tag, "i": i}
            hits = [(h.namespace, h.value["ns"]) for h in await store.asearch(ns)]
            assert (ns, tag) in hits and all(h[0][: len(ns)] == ns for h in hits), hits
            assert all(n[: len(ns)] == ns for n in await store.alist_namespaces(prefix=ns))
        assert await theirs.aget(c, "k") is None
        assert (await theirs.aget(a, "k")).value == {"ns": "theirs", "i": i}
    assert {h.value["ns"] for h in await theirs.asearch((), limit=1000)} == {"theirs"}
    assert sorted(await theirs.alist_namespaces()) == sorted(a for a, _ in pairs)
    assert len(await store.alist_namespaces()) == 2 * len(pairs)

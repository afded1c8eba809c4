"""ScopedMemory (the per-request view), the sync facade and memory_from_url."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agenthood_mw import Identity
from agenthood_mw.memory import (
    InMemoryBackend,
    MemoryScope,
    ScopedMemory,
    SQLiteBackend,
    SyncMemory,
    memory_from_url,
)

ALICE = MemoryScope.for_identity(Identity(user_id="usr_8f3a", tenant="acme"))
BOB = MemoryScope.for_identity(Identity(user_id="usr_b0b", tenant="acme"))


async def test_scoped_memory_contract() -> None:
    backend = InMemoryBackend()
    memory = ScopedMemory(backend, ALICE)
    other = backend.scoped(BOB)
    assert memory.scope == ALICE and repr(memory).startswith("ScopedMemory(InMemoryBackend")
    await memory.facts.put("favourite_language", "python")
    await memory.project.put("src/middleware/auth.ts", {"text": "export async function auth"})
    event = await memory.episodic.append({"task": "refactor auth"})
    await other.facts.put("favourite_language", "rust")

    assert (await memory.facts.get("favourite_language")).value == "python"  # type: ignore[union-attr]
    assert await memory.facts.get_value("favourite_language") == "python"
    assert await memory.facts.get_value("missing", "default") == "default"
    assert [r.key for r in await memory.facts.list(prefix="fav", limit=10)] == [
        "favourite_language"
    ]
    assert [r.key for r in await memory.facts.search("python")] == ["favourite_language"]
    assert [r.key for r in await memory.project.search("async auth")] == ["src/middleware/auth.ts"]
    assert (await memory.project.get("src/middleware/auth.ts")) is not None
    assert [e.id for e in await memory.episodic.list(limit=5, since=0)] == [event.id]
    assert [r.key for r in await other.facts.search("python")] == []
    assert len(await memory.export()) == 3
    assert await memory.facts.delete("favourite_language") is True
    assert await memory.erase() == 2
    assert (await other.facts.get("favourite_language")).value == "rust"  # type: ignore[union-attr]


def test_view_has_no_way_to_change_scope() -> None:
    memory = ScopedMemory(InMemoryBackend(), ALICE)
    with pytest.raises(AttributeError):
        memory.scope = BOB  # type: ignore[misc]
    with pytest.raises(AttributeError):
        memory.facts = ScopedMemory(InMemoryBackend(), BOB).facts  # type: ignore[misc]
    with pytest.raises(AttributeError):
        memory.other = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="MemoryScope"):
        ScopedMemory(InMemoryBackend(), "usr_8f3a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="MemoryBackend"):
        ScopedMemory(object(), ALICE)  # type: ignore[arg-type]


def test_sync_facade_from_many_threads(tmp_path: Path) -> None:
    with SyncMemory(f"sqlite:///{tmp_path / 'wsgi.db'}") as sync:
        errors: list[BaseException] = []

        def worker(i: int) -> None:
            try:
                memory = sync.scoped(MemoryScope.operator(user=f"t{i}"))
                for n in range(10):
                    memory.facts.put(f"k{n}", {"thread": i})
                    memory.episodic.append({"n": n})
                assert {r.value["thread"] for r in memory.facts.list()} == {i}
                assert len(memory.episodic.list(limit=100)) == 10
                assert memory.facts.get_value("k3") == {"thread": i}
                assert [r.key for r in memory.facts.search("k9")] == ["k9"]
                assert memory.project.get("none") is None
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        scope = MemoryScope.operator(user="t0")
        assert len(sync.export(scope)) == 20
        assert sync.erase(scope) == 20
        assert sync.scoped(scope).facts.delete("k1") is False
    with pytest.raises(RuntimeError, match="closed"):
        sync.erase(scope)
    assert sync.backend.closed


async def test_memory_from_url(tmp_path: Path) -> None:
    assert isinstance(memory_from_url("memory://"), InMemoryBackend)
    backend = memory_from_url(f"sqlite:///{tmp_path / 'a.db'}")
    assert isinstance(backend, SQLiteBackend) and backend.path == str(tmp_path / "a.db")
    await backend.close()
    relative = memory_from_url("sqlite:///relative.db")
    assert isinstance(relative, SQLiteBackend) and relative.path == "relative.db"
    await relative.close()
    for bad in ("memory://x", "sqlite://", "sqlite:///", "ftp://x", "nothing", "sqlite:///a?b=1"):
        with pytest.raises(ValueError, match="url"):
            memory_from_url(bad)
    with pytest.raises(TypeError, match="url"):
        memory_from_url(None)  # type: ignore[arg-type]
    small = memory_from_url("memory://", max_records=1)
    await small.put(ALICE, "facts", "a", 1)


@pytest.mark.redis
async def test_memory_from_url_redis(redis_url: str, redis_prefix: str) -> None:
    from agenthood_mw.memory.redis import RedisBackend

    backend = memory_from_url(redis_url, key_prefix=redis_prefix)
    assert isinstance(backend, RedisBackend)
    await backend.put(ALICE, "facts", "k", 1)
    assert await backend.erase(ALICE) == 1
    await backend.close()


@pytest.mark.postgres
async def test_memory_from_url_postgres(postgres_dsn: str, postgres_schema: str) -> None:
    from agenthood_mw.memory.postgres import PostgresBackend

    backend = memory_from_url(postgres_dsn, schema=postgres_schema)
    assert isinstance(backend, PostgresBackend) and backend.schema == postgres_schema
    await backend.put(ALICE, "facts", "k", 1)
    assert await backend.erase(ALICE) == 1
    await backend.close()


def test_a_view_needs_a_backend() -> None:
    for not_a_backend in (object(), "sqlite:///x.db", None):
        with pytest.raises(TypeError, match="MemoryBackend"):
            ScopedMemory(not_a_backend, ALICE)  # type: ignore[arg-type]

"""SQLiteBackend specifics: persistence, WAL, processes, schema versioning, loop never blocked."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest

from agenthood_mw.memory import MemoryScope, SchemaVersionError, SQLiteBackend
from agenthood_mw.memory._sqlite import SCHEMA_VERSION


async def test_persists_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    scope = MemoryScope.operator(user="usr_8f3a", tenant="acme")
    async with SQLiteBackend(path) as first:
        await first.put(scope, "facts", "lang", "python")
        await first.append_event(scope, {"run": 1})
    async with SQLiteBackend(str(path)) as second:
        assert (await second.get(scope, "facts", "lang")).value == "python"  # type: ignore[union-attr]
        assert [e.data for e in await second.list_events(scope)] == [{"run": 1}]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    async with SQLiteBackend(path) as backend:
        with pytest.raises(SchemaVersionError, match="newer"):
            await backend.get(MemoryScope.operator(user="a"), "facts", "k")


def test_constructor_validates_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="path"):
        SQLiteBackend(":memory:")
    with pytest.raises(ValueError, match="threads"):
        SQLiteBackend(tmp_path / "x.db", threads=0)
    with pytest.raises(ValueError, match="timeout"):
        SQLiteBackend(tmp_path / "x.db", timeout=0)
    with pytest.raises(TypeError, match="path"):
        SQLiteBackend(3)  # type: ignore[arg-type]


async def test_blocking_calls_run_off_the_event_loop(tmp_path: Path) -> None:
    """While another connection holds the write lock, a put waits -- but the loop keeps going."""
    path = tmp_path / "busy.db"
    scope = MemoryScope.operator(user="a")
    async with SQLiteBackend(path, timeout=5) as backend:
        await backend.put(scope, "facts", "warm", 1)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        put_task = asyncio.create_task(backend.put(scope, "facts", "k", "v"))
        await asyncio.sleep(0.3)
        assert not put_task.done()
        assert ticks >= 5  # a blocked loop would not tick at all while the put waits
        blocker.execute("COMMIT")
        blocker.close()
        await asyncio.wait_for(put_task, 5)
        tick_task.cancel()
        assert (await backend.get(scope, "facts", "k")).value == "v"  # type: ignore[union-attr]


_WORKER = """
import asyncio, sys
from agenthood_mw.memory import MemoryScope, SQLiteBackend

async def main(path, worker, count):
    async with SQLiteBackend(path) as backend:
        scope = MemoryScope.operator(user=f"proc{worker}")
        shared = MemoryScope.operator(user="shared")
        for n in range(count):
            await backend.put(scope, "facts", f"k{n:03d}", n)
            await backend.append_event(shared, {"worker": worker, "n": n})

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


async def test_several_processes_share_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", _WORKER, path, str(w), "40")
        for w in range(3)
    ]
    for proc in procs:
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    async with SQLiteBackend(path) as backend:
        for w in range(3):
            page = await backend.list(MemoryScope.operator(user=f"proc{w}"), "facts", limit=100)
            assert [r.value for r in page] == list(range(40))
        events = await backend.list_events(MemoryScope.operator(user="shared"), limit=1000)
        assert sorted((e.data["worker"], e.data["n"]) for e in events) == [
            (w, n) for w in range(3) for n in range(40)
        ]


async def test_threads_share_one_backend(tmp_path: Path) -> None:
    async with SQLiteBackend(tmp_path / "t.db", threads=4) as backend:
        scopes = [MemoryScope.operator(user=f"u{i}") for i in range(8)]
        await asyncio.gather(
            *(backend.put(s, "facts", f"k{n}", i) for i, s in enumerate(scopes) for n in range(10))
        )
        for i, s in enumerate(scopes):
            assert {r.value for r in await backend.list(s, "facts")} == {i}

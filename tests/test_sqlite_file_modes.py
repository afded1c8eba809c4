"""Every SQLite store (memory, ledger, traces, API keys) is owner-only on disk (issue 11 #9)."""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agenthood_mw.auth import SQLiteKeyStore
from agenthood_mw.memory import MemoryScope, SQLiteBackend
from agenthood_mw.metering import SQLiteLedger, SQLiteTraceStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A world-readable (0755) data directory, with the usual umask 022 in force."""
    directory = tmp_path / "data"
    directory.mkdir()
    directory.chmod(0o755)
    old = os.umask(0o022)
    try:
        yield directory
    finally:
        os.umask(old)


def _assert_owner_only(directory: Path, db: str) -> None:
    files = {p.name: _mode(p) for p in directory.iterdir() if p.name.startswith(db)}
    assert {db, db + "-wal", db + "-shm"} <= set(files), files  # the WAL files exist: checked
    assert files == dict.fromkeys(files, 0o600), files


async def test_memory_db_and_its_wal_are_0600(data_dir: Path) -> None:
    backend = SQLiteBackend(data_dir / "memory.db")
    try:
        await backend.put(MemoryScope.operator(user="usr_8f3a"), "facts", "k", "secret")
        _assert_owner_only(data_dir, "memory.db")
    finally:
        await backend.close()


def test_costs_db_with_traces_is_0600(data_dir: Path) -> None:
    path = str(data_dir / "costs.db")
    ledger = SQLiteLedger(path)
    traces = SQLiteTraceStore(path)
    try:
        _assert_owner_only(data_dir, "costs.db")
    finally:
        ledger.close_sync()
        del traces


def test_keys_db_is_0600(data_dir: Path) -> None:
    store = SQLiteKeyStore(data_dir / "keys.db")
    try:
        _assert_owner_only(data_dir, "keys.db")
    finally:
        store.close()


async def test_an_existing_world_readable_db_loses_other_access(data_dir: Path) -> None:
    path = data_dir / "memory.db"
    sqlite3.connect(path).close()  # created 0644 by SQLite itself under umask 022
    path.chmod(0o664)
    backend = SQLiteBackend(path)
    try:
        await backend.put(MemoryScope.operator(user="u"), "facts", "k", 1)
        assert _mode(path) == 0o660  # group kept (an operator's choice), others removed
        assert _mode(data_dir / "memory.db-wal") == 0o660
    finally:
        await backend.close()

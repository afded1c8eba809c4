"""API-key stores (in-memory and SQLite) and the helper that creates a key.

Stores hold :class:`APIKeyRecord` objects -- the SHA-256 of each key, never the key itself. A
custom store implements the four methods of :class:`KeyStore`; set ``blocking = True`` on it
when ``get`` performs blocking I/O, so the ASGI middleware calls it from a worker thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

from agenthood_mw._core.apikeys import APIKeyRecord, generate_key, new_record
from agenthood_mw._core.durations import parse_duration
from agenthood_mw._sqlite_files import prepare_sqlite_file

__all__ = ["CreatedKey", "InMemoryKeyStore", "KeyStore", "SQLiteKeyStore", "create_api_key"]


@runtime_checkable
class KeyStore(Protocol):
    """Where API keys live. ``get`` is on the request path; the rest is administration."""

    def get(self, key_id: str) -> APIKeyRecord | None:
        """The record of ``key_id`` (revoked and expired ones included), or ``None``."""
        ...

    def add(self, record: APIKeyRecord) -> None:
        """Store a new record (``ValueError`` if the key id exists)."""
        ...

    def list(self, user_id: str | None = None) -> list[APIKeyRecord]:
        """Every record, or those of ``user_id``, oldest first."""
        ...

    def revoke(self, key_id: str) -> bool:
        """Revoke ``key_id``; ``False`` when unknown or already revoked."""
        ...


class InMemoryKeyStore:
    """A thread-safe in-process key store (tests, single-process services)."""

    blocking = False

    def __init__(self) -> None:
        self._records: dict[str, APIKeyRecord] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str) -> APIKeyRecord | None:
        return self._records.get(key_id)

    def add(self, record: APIKeyRecord) -> None:
        with self._lock:
            if record.key_id in self._records:
                raise ValueError("key_id: already exists")
            self._records[record.key_id] = record

    def list(self, user_id: str | None = None) -> list[APIKeyRecord]:
        with self._lock:
            records = list(self._records.values())
        return [r for r in records if user_id is None or r.user_id == user_id]

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            record = self._records.get(key_id)
            if record is None or record.revoked:
                return False
            self._records[key_id] = replace(record, revoked_at=time.time())
            return True


_SCHEMA = """
CREATE TABLE IF NOT EXISTS agenthood_api_keys (
    key_id      TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    tenant      TEXT,
    scopes      TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL,
    revoked_at  REAL,
    secret_hash TEXT NOT NULL
)
"""
_COLUMNS = "key_id, user_id, tenant, scopes, name, created_at, expires_at, revoked_at, secret_hash"


class SQLiteKeyStore:
    """API keys in a SQLite file (``":memory:"`` works too), safe to share between threads."""

    blocking = True

    def __init__(self, path: str | Path) -> None:
        if not isinstance(path, str | Path):
            raise TypeError("path: expected a file path")
        self.path = str(path)
        prepare_sqlite_file(self.path)  # created 0600 (agenthood_mw._sqlite_files)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL" if self.path != ":memory:" else "SELECT 1")
            self._conn.execute(_SCHEMA)

    @staticmethod
    def _record(row: tuple[object, ...]) -> APIKeyRecord:
        key_id, user_id, tenant, scopes, name, created, expires, revoked, digest = row
        return APIKeyRecord(
            key_id=str(key_id),
            user_id=str(user_id),
            tenant=None if tenant is None else str(tenant),
            scopes=frozenset(json.loads(str(scopes))),
            name=str(name),
            created_at=float(created),  # type: ignore[arg-type]
            expires_at=None if expires is None else float(expires),  # type: ignore[arg-type]
            revoked_at=None if revoked is None else float(revoked),  # type: ignore[arg-type]
            secret_hash=str(digest),
        )

    def get(self, key_id: str) -> APIKeyRecord | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM agenthood_api_keys WHERE key_id = ?",  # noqa: S608
                (key_id,),
            ).fetchone()
        return None if row is None else self._record(row)

    def add(self, record: APIKeyRecord) -> None:
        with self._lock:
            try:
                self._conn.execute(
                    f"INSERT INTO agenthood_api_keys ({_COLUMNS}) "  # noqa: S608
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.key_id,
                        record.user_id,
                        record.tenant,
                        json.dumps(sorted(record.scopes)),
                        record.name,
                        record.created_at,
                        record.expires_at,
                        record.revoked_at,
                        record.secret_hash,
                    ),
                )
            except sqlite3.IntegrityError:
                raise ValueError("key_id: already exists") from None

    def list(self, user_id: str | None = None) -> list[APIKeyRecord]:
        query = f"SELECT {_COLUMNS} FROM agenthood_api_keys"  # noqa: S608
        params: tuple[str, ...] = ()
        if user_id is not None:
            query += " WHERE user_id = ?"
            params = (user_id,)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY created_at, key_id", params).fetchall()
        return [self._record(r) for r in rows]

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            cur = self._conn.execute(
                "UPDATE agenthood_api_keys SET revoked_at = ? "
                "WHERE key_id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
        return cur.rowcount == 1

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()


@dataclass(frozen=True)
class CreatedKey:
    """A freshly created key. ``secret`` is the full key: show it once, it is not stored."""

    key_id: str
    secret: str = field(repr=False)
    record: APIKeyRecord

    @property
    def user_id(self) -> str:
        return self.record.user_id

    @property
    def expires_at(self) -> float | None:
        return self.record.expires_at


def create_api_key(
    store: KeyStore,
    *,
    user_id: str,
    tenant: str | None = None,
    scopes: tuple[str, ...] | list[str] | frozenset[str] = (),
    expires_in: float | str | None = None,
    name: str = "",
) -> CreatedKey:
    """Create and store a new API key for ``user_id``; the secret is only in the result.

    Args:
        store: any :class:`KeyStore`.
        user_id: the owner (``Identity.user_id`` of requests made with it).
        tenant: the owner's tenant.
        scopes: scopes granted to the key.
        expires_in: a duration (``"90d"``, seconds) of at most 3650 days, or ``None`` for no
            expiry.
        name: a label for listings.
    """
    if not isinstance(store, KeyStore):
        raise TypeError("store: expected a KeyStore (InMemoryKeyStore, SQLiteKeyStore, ...)")
    try:
        seconds = None if expires_in is None else parse_duration(expires_in, option="expires_in")
    except OverflowError:  # an int too large for a float: refused like any bad duration
        raise ValueError("expires_in: must be a duration of at most 3650 days") from None
    key_id, token = generate_key()
    record = new_record(
        key_id=key_id,
        token=token,
        user_id=user_id,
        tenant=tenant,
        scopes=scopes,
        expires_in=seconds,
        name=name,
        now=time.time(),
    )
    store.add(record)
    return CreatedKey(key_id=key_id, secret=token, record=record)

"""Scoped memory: every read and write takes a mandatory :class:`MemoryScope`.

Tiers: ``facts`` (long-term key/value), ``project`` (documents by path) and ``episodic``
(append-only events). Backends: :class:`InMemoryBackend`, :class:`SQLiteBackend`,
``agenthood_mw.memory.redis.RedisBackend`` and ``agenthood_mw.memory.postgres.PostgresBackend``;
or :func:`memory_from_url`. Agents get a :class:`ScopedMemory` bound to their caller's scope.
"""

from __future__ import annotations

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.memory._base import MemoryBackend
from agenthood_mw.memory._codec import MAX_KEY_BYTES, MAX_LIMIT, MAX_VALUE_BYTES, search_text
from agenthood_mw.memory._errors import (
    InvalidCursorError,
    InvalidKeyError,
    InvalidValueError,
    MemoryFullError,
    MemoryStoreError,
    SchemaVersionError,
    ScopeViolationError,
)
from agenthood_mw.memory._inmemory import InMemoryBackend
from agenthood_mw.memory._records import TIERS, Event, Page, Record, ScopeExport, Tier
from agenthood_mw.memory._sqlite import SQLiteBackend
from agenthood_mw.memory._sync import (
    SyncEpisodicMemory,
    SyncKeyValueMemory,
    SyncMemory,
    SyncScopedMemory,
)
from agenthood_mw.memory._url import memory_from_url
from agenthood_mw.memory._view import EpisodicMemory, KeyValueMemory, ScopedMemory

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_LIMIT",
    "MAX_VALUE_BYTES",
    "TIERS",
    "EpisodicMemory",
    "Event",
    "InMemoryBackend",
    "InvalidCursorError",
    "InvalidKeyError",
    "InvalidValueError",
    "KeyValueMemory",
    "MemoryBackend",
    "MemoryFullError",
    "MemoryScope",
    "MemoryStoreError",
    "Page",
    "Record",
    "SQLiteBackend",
    "SchemaVersionError",
    "ScopeExport",
    "ScopeViolationError",
    "ScopedMemory",
    "SyncEpisodicMemory",
    "SyncKeyValueMemory",
    "SyncMemory",
    "SyncScopedMemory",
    "Tier",
    "memory_from_url",
    "search_text",
]

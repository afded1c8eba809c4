"""``ScopedMemory``: one request's view of a backend, bound to one scope.

The view holds the scope; none of its methods accepts another, so agent code handed a view can
only ever reach its own user's memory. The view depends only on the backend's public methods
(the :class:`Store` protocol), so ``MemoryBackend.scoped()`` can build it without an import
circle; the blocking twins live in ``_sync``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from agenthood_mw._core.scope import MemoryScope, require_scope
from agenthood_mw.memory._records import Event, Page, Record, ScopeExport, Tier

__all__ = ["EpisodicMemory", "KeyValueMemory", "ScopedMemory", "Store"]

_TTL = float | str | timedelta | None
_When = float | datetime | None


@runtime_checkable
class Store(Protocol):
    """The public methods of a :class:`~agenthood_mw.memory.MemoryBackend` a view calls."""

    async def put(
        self, scope: MemoryScope, tier: Tier, key: str, value: object, *, ttl: _TTL = None
    ) -> Record: ...

    async def get(self, scope: MemoryScope, tier: Tier, key: str) -> Record | None: ...

    async def delete(self, scope: MemoryScope, tier: Tier, key: str) -> bool: ...

    async def list(
        self,
        scope: MemoryScope,
        tier: Tier,
        prefix: str = "",
        *,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Record]: ...

    async def search(
        self, scope: MemoryScope, tier: Tier, text: str, *, limit: int = 20
    ) -> tuple[Record, ...]: ...

    async def append_event(
        self, scope: MemoryScope, event: dict[str, Any], *, at: _When = None
    ) -> Event: ...

    async def list_events(
        self,
        scope: MemoryScope,
        *,
        limit: int = 50,
        since: _When = None,
        until: _When = None,
        cursor: str | None = None,
    ) -> Page[Event]: ...

    async def erase(self, scope: MemoryScope) -> int: ...

    async def export(self, scope: MemoryScope) -> ScopeExport: ...


def _require_backend(backend: object) -> Store:
    if not isinstance(backend, Store):
        raise TypeError(f"backend must be a MemoryBackend, got {type(backend).__name__}")
    return backend


class KeyValueMemory:
    """The ``facts`` or ``project`` tier of one scope (keys are fact keys or document paths)."""

    __slots__ = ("_backend", "_scope", "_tier")

    def __init__(self, backend: Store, scope: MemoryScope, tier: Tier) -> None:
        self._backend = backend
        self._scope = scope
        self._tier: Tier = tier

    @property
    def tier(self) -> Tier:
        return self._tier

    async def put(self, key: str, value: object, *, ttl: _TTL = None) -> Record:
        """Store a JSON value under ``key`` (replacing it); ``ttl`` makes it expire."""
        return await self._backend.put(self._scope, self._tier, key, value, ttl=ttl)

    async def get(self, key: str) -> Record | None:
        """The record under ``key`` or ``None``; its JSON value is ``record.value``."""
        return await self._backend.get(self._scope, self._tier, key)

    async def get_value(self, key: str, default: Any = None) -> Any:
        """Just the value under ``key``, or ``default``."""
        rec = await self._backend.get(self._scope, self._tier, key)
        return default if rec is None else rec.value

    async def delete(self, key: str) -> bool:
        """Delete ``key``; ``True`` if it existed."""
        return await self._backend.delete(self._scope, self._tier, key)

    async def list(
        self, prefix: str = "", *, limit: int = 100, cursor: str | None = None
    ) -> Page[Record]:
        """Records whose key starts with ``prefix``, ascending; pass ``page.next_cursor`` on."""
        return await self._backend.list(self._scope, self._tier, prefix, limit=limit, cursor=cursor)

    async def search(self, text: str, *, limit: int = 20) -> tuple[Record, ...]:
        """Records containing every term of ``text`` (case-insensitive)."""
        return await self._backend.search(self._scope, self._tier, text, limit=limit)


class EpisodicMemory:
    """The append-only event log of one scope."""

    __slots__ = ("_backend", "_scope")

    def __init__(self, backend: Store, scope: MemoryScope) -> None:
        self._backend = backend
        self._scope = scope

    async def append(self, event: dict[str, Any], *, at: _When = None) -> Event:
        """Append a JSON object, stamped ``at`` (epoch seconds / aware datetime) or now."""
        return await self._backend.append_event(self._scope, event, at=at)

    async def list(
        self,
        *,
        limit: int = 50,
        since: _When = None,
        until: _When = None,
        cursor: str | None = None,
    ) -> Page[Event]:
        """Events newest first, optionally ``since <= timestamp < until``."""
        return await self._backend.list_events(
            self._scope, limit=limit, since=since, until=until, cursor=cursor
        )


class ScopedMemory:
    """Memory of one scope: ``.facts``, ``.project`` (key/value) and ``.episodic`` (events).

    ``ScopedMemory(backend, scope)``; the scope cannot be changed or passed per call.
    """

    __slots__ = ("_backend", "_episodic", "_facts", "_project", "_scope")

    def __init__(self, backend: Store, scope: MemoryScope) -> None:
        self._backend = _require_backend(backend)
        self._scope = require_scope(scope)
        self._facts = KeyValueMemory(self._backend, self._scope, "facts")
        self._project = KeyValueMemory(self._backend, self._scope, "project")
        self._episodic = EpisodicMemory(self._backend, self._scope)

    @property
    def scope(self) -> MemoryScope:
        return self._scope

    @property
    def facts(self) -> KeyValueMemory:
        """Long-term key/value facts."""
        return self._facts

    @property
    def project(self) -> KeyValueMemory:
        """Documents keyed by path or id."""
        return self._project

    @property
    def episodic(self) -> EpisodicMemory:
        """The append-only event log."""
        return self._episodic

    async def export(self) -> ScopeExport:
        """Everything this scope holds."""
        return await self._backend.export(self._scope)

    async def erase(self) -> int:
        """Delete everything this scope holds; returns the number of items removed."""
        return await self._backend.erase(self._scope)

    def __repr__(self) -> str:
        return f"ScopedMemory({type(self._backend).__name__}, {self._scope!r})"

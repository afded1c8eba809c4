"""``ScopedMemory``: one request's view of a backend, bound to one scope; and its sync twin.

The view holds the scope; none of its methods accepts another, so agent code handed a view can
only ever reach its own user's memory.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from agenthood_mw._core.scope import MemoryScope, require_scope
from agenthood_mw.memory._base import MemoryBackend
from agenthood_mw.memory._records import Event, Page, Record, ScopeExport, Tier

__all__ = [
    "EpisodicMemory",
    "KeyValueMemory",
    "ScopedMemory",
    "SyncEpisodicMemory",
    "SyncKeyValueMemory",
    "SyncMemory",
    "SyncScopedMemory",
]

T = TypeVar("T")
_TTL = float | str | timedelta | None
_When = float | datetime | None


def _require_backend(backend: object) -> MemoryBackend:
    if not isinstance(backend, MemoryBackend):
        raise TypeError(f"backend must be a MemoryBackend, got {type(backend).__name__}")
    return backend


class KeyValueMemory:
    """The ``facts`` or ``project`` tier of one scope (keys are fact keys or document paths)."""

    __slots__ = ("_backend", "_scope", "_tier")

    def __init__(self, backend: MemoryBackend, scope: MemoryScope, tier: Tier) -> None:
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

    def __init__(self, backend: MemoryBackend, scope: MemoryScope) -> None:
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

    def __init__(self, backend: MemoryBackend, scope: MemoryScope) -> None:
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


class SyncMemory:
    """Blocking facade over a backend, for WSGI apps and scripts.

    Runs the backend on a private event loop in a daemon thread, so it is safe to call from
    any number of threads. The backend must then be used only through this facade.
    ``SyncMemory(backend)`` or ``SyncMemory("sqlite:///agenthood.db")``.
    """

    def __init__(self, backend: MemoryBackend | str, *, timeout: float = 30.0) -> None:
        if isinstance(backend, str):
            from agenthood_mw.memory._url import memory_from_url

            backend = memory_from_url(backend)
        self._backend = _require_backend(backend)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self._timeout = float(timeout)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="agenthood-memory", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def backend(self) -> MemoryBackend:
        return self._backend

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the facade's loop and wait for its result."""
        if self._closed:
            coro.close()
            raise RuntimeError("SyncMemory is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("SyncMemory.run() cannot be called from its own loop thread")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout)

    def scoped(self, scope: MemoryScope) -> SyncScopedMemory:
        """A blocking :class:`ScopedMemory` for ``scope``."""
        return SyncScopedMemory(self, scope)

    def erase(self, scope: MemoryScope) -> int:
        return self.run(self._backend.erase(require_scope(scope)))

    def export(self, scope: MemoryScope) -> ScopeExport:
        return self.run(self._backend.export(require_scope(scope)))

    def close(self) -> None:
        """Close the backend and stop the loop thread (idempotent)."""
        if self._closed:
            return
        try:
            self.run(self._backend.close())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self._timeout)
            self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SyncKeyValueMemory:
    """Blocking twin of :class:`KeyValueMemory`."""

    __slots__ = ("_run", "_tier")

    def __init__(self, runner: SyncMemory, tier: KeyValueMemory) -> None:
        self._run = runner.run
        self._tier = tier

    def put(self, key: str, value: object, *, ttl: _TTL = None) -> Record:
        return self._run(self._tier.put(key, value, ttl=ttl))

    def get(self, key: str) -> Record | None:
        return self._run(self._tier.get(key))

    def get_value(self, key: str, default: Any = None) -> Any:
        return self._run(self._tier.get_value(key, default))

    def delete(self, key: str) -> bool:
        return self._run(self._tier.delete(key))

    def list(
        self, prefix: str = "", *, limit: int = 100, cursor: str | None = None
    ) -> Page[Record]:
        return self._run(self._tier.list(prefix, limit=limit, cursor=cursor))

    def search(self, text: str, *, limit: int = 20) -> tuple[Record, ...]:
        return self._run(self._tier.search(text, limit=limit))


class SyncEpisodicMemory:
    """Blocking twin of :class:`EpisodicMemory`."""

    __slots__ = ("_log", "_run")

    def __init__(self, runner: SyncMemory, log: EpisodicMemory) -> None:
        self._run = runner.run
        self._log = log

    def append(self, event: dict[str, Any], *, at: _When = None) -> Event:
        return self._run(self._log.append(event, at=at))

    def list(
        self,
        *,
        limit: int = 50,
        since: _When = None,
        until: _When = None,
        cursor: str | None = None,
    ) -> Page[Event]:
        return self._run(self._log.list(limit=limit, since=since, until=until, cursor=cursor))


class SyncScopedMemory:
    """Blocking twin of :class:`ScopedMemory`: ``SyncMemory(backend).scoped(scope)``."""

    __slots__ = ("_episodic", "_facts", "_project", "_runner", "_view")

    def __init__(self, runner: SyncMemory, scope: MemoryScope) -> None:
        if not isinstance(runner, SyncMemory):
            raise TypeError("runner must be a SyncMemory")
        self._runner = runner
        self._view = ScopedMemory(runner.backend, scope)
        self._facts = SyncKeyValueMemory(runner, self._view.facts)
        self._project = SyncKeyValueMemory(runner, self._view.project)
        self._episodic = SyncEpisodicMemory(runner, self._view.episodic)

    @property
    def facts(self) -> SyncKeyValueMemory:
        return self._facts

    @property
    def project(self) -> SyncKeyValueMemory:
        return self._project

    @property
    def episodic(self) -> SyncEpisodicMemory:
        return self._episodic

    @property
    def scope(self) -> MemoryScope:
        return self._view.scope

    def export(self) -> ScopeExport:
        return self._runner.run(self._view.export())

    def erase(self) -> int:
        return self._runner.run(self._view.erase())

"""``SyncMemory``: a blocking facade over a backend, and the blocking twins of the views."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from agenthood_mw._core.scope import MemoryScope, require_scope
from agenthood_mw.memory._base import MemoryBackend
from agenthood_mw.memory._records import Event, Page, Record, ScopeExport
from agenthood_mw.memory._url import memory_from_url
from agenthood_mw.memory._view import EpisodicMemory, KeyValueMemory, ScopedMemory

__all__ = ["SyncEpisodicMemory", "SyncKeyValueMemory", "SyncMemory", "SyncScopedMemory"]

T = TypeVar("T")
_TTL = float | str | timedelta | None
_When = float | datetime | None


def _require_backend(backend: object) -> MemoryBackend:
    if not isinstance(backend, MemoryBackend):
        raise TypeError(f"backend must be a MemoryBackend, got {type(backend).__name__}")
    return backend


class SyncMemory:
    """Blocking facade over a backend, for WSGI apps and scripts.

    Runs the backend on a private event loop in a daemon thread, so it is safe to call from
    any number of threads. The backend must then be used only through this facade.
    ``SyncMemory(backend)`` or ``SyncMemory("sqlite:///agenthood.db")``.
    """

    def __init__(self, backend: MemoryBackend | str, *, timeout: float = 30.0) -> None:
        if isinstance(backend, str):
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

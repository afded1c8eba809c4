"""What the framework adapters share: the scope of a call and the backend they run on.

The scope is the current request's identity (``current_identity()``) or an explicit
:class:`MemoryScope` given at construction (background jobs); nothing else chooses it. The
backend is an async :class:`MemoryBackend` or a blocking :class:`SyncMemory` facade; blocking
calls need the latter, or an event loop running the backend in another thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from agenthood_mw._context import current_identity
from agenthood_mw._core.scope import MemoryScope, require_scope
from agenthood_mw.memory import MemoryBackend, SyncMemory

__all__ = ["Binding"]

T = TypeVar("T")


class Binding:
    """A backend (async or blocking facade) plus the rule that picks each call's scope."""

    __slots__ = ("_backend", "_loop", "_owner", "_scope", "_sync")

    def __init__(
        self, memory: object, scope: MemoryScope | None, *, owner: str, option: str = "memory"
    ) -> None:
        self._owner = owner
        if isinstance(memory, SyncMemory):
            self._sync: SyncMemory | None = memory
            self._backend: MemoryBackend = memory.backend
        elif isinstance(memory, MemoryBackend):
            self._sync = None
            self._backend = memory
        else:
            raise TypeError(
                f"{owner}: {option} must be a MemoryBackend or a SyncMemory, "
                f"got {type(memory).__name__}"
            )
        self._scope = None if scope is None else require_scope(scope)
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    @property
    def backend(self) -> MemoryBackend:
        return self._backend

    @property
    def explicit_scope(self) -> MemoryScope | None:
        return self._scope

    def scope(self) -> MemoryScope:
        """The scope of this call: the explicit one, else the current request's identity."""
        if self._scope is not None:
            return self._scope
        try:
            identity = current_identity()
        except LookupError:
            raise LookupError(
                f"{self._owner} has no scope: it was used outside a request handled by "
                "AuthMiddleware and was built without scope=MemoryScope.operator(...)"
            ) from None
        return MemoryScope.for_identity(identity)

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the loop that owns the backend."""
        if self._sync is not None:
            return await asyncio.to_thread(self._sync.run, coro)
        if self._loop is None or not self._loop.is_running():
            self._loop = asyncio.get_running_loop()
        return await coro

    def run_blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion from blocking code."""
        if self._sync is not None:
            return self._sync.run(coro)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise RuntimeError(
                f"a blocking {self._owner} method was called inside a running event loop; "
                "await its async twin instead"
            )
        loop = self._loop
        if loop is None or not loop.is_running():
            coro.close()
            raise RuntimeError(
                f"{self._owner} over an async MemoryBackend has no running event loop to use "
                "from blocking code; build it over SyncMemory(backend) for blocking use"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

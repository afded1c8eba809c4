"""``ScopedCheckpointer``: a LangGraph checkpointer that keeps every thread inside a MemoryScope.

Checkpoints and pending writes are records of the ``project`` tier of an agenthood
:class:`~agenthood_mw.memory.MemoryBackend` (in-memory, SQLite, Redis or PostgreSQL), so the
backend's own guarantees apply: every read and write carries the scope, whatever comes back is
verified to belong to it, and per-scope ``erase`` / ``export`` include the user's threads.

Keys (all inside the scope, each segment percent-encoded, so ``/`` never occurs inside one and
``foo`` can never reach ``foobar``)::

    langgraph.checkpoint/cp/<thread>/<ns>/<checkpoint_id>     the checkpoint and its metadata
    langgraph.checkpoint/wr/<thread>/<ns>/<checkpoint_id>/<task_id>   one task's pending writes
    langgraph.checkpoint/head/<thread>/<ns>                   the newest checkpoint id
"""

from __future__ import annotations

import asyncio
import base64
import builtins
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final, TypeVar
from urllib.parse import quote, unquote

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from agenthood_mw._context import current_identity
from agenthood_mw._core.scope import MemoryScope, require_scope
from agenthood_mw.memory import MemoryBackend, Record, ScopeViolationError, SyncMemory

__all__ = ["ScopedCheckpointer", "checkpoint_keys_prefix"]

T = TypeVar("T")

_TIER: Final = "project"
_ROOT: Final = "langgraph.checkpoint/"
_CP: Final = _ROOT + "cp/"
_WR: Final = _ROOT + "wr/"
_HEAD: Final = _ROOT + "head/"
_PAGE: Final = 1000

_bound_scope: ContextVar[MemoryScope | None] = ContextVar("agenthood_lg_scope", default=None)


def checkpoint_keys_prefix() -> str:
    """The key prefix (``project`` tier) under which checkpoints live in a user's scope."""
    return _ROOT


def _seg(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    return quote(value, safe="")


def _thread_id(config: RunnableConfig) -> str:
    conf = config.get("configurable") or {}
    tid = conf.get("thread_id")
    if tid is None or tid == "":
        raise ValueError('config["configurable"]["thread_id"] is required')
    if not isinstance(tid, str):
        tid = str(tid)  # LangGraph accepts e.g. UUIDs and ints as thread ids
    return tid


def _ns(config: RunnableConfig) -> str:
    ns = (config.get("configurable") or {}).get("checkpoint_ns") or ""
    if not isinstance(ns, str):
        raise TypeError("checkpoint_ns must be a str")
    return ns


def _cp_key(tid: str, ns: str, cid: str) -> str:
    return _CP + _path(tid, ns, cid)


def _wr_prefix(tid: str, ns: str, cid: str) -> str:
    return _WR + _path(tid, ns, cid) + "/"


def _path(tid: str, ns: str, cid: str) -> str:
    return f"{_seg(tid, 'thread_id')}/{_seg(ns, 'checkpoint_ns')}/{_seg(cid, 'checkpoint_id')}"


def _head_key(tid: str, ns: str) -> str:
    return f"{_HEAD}{_seg(tid, 'thread_id')}/{_seg(ns, 'checkpoint_ns')}"


def _config(tid: str, ns: str, cid: str) -> RunnableConfig:
    return {"configurable": {"thread_id": tid, "checkpoint_ns": ns, "checkpoint_id": cid}}


def _split_key(key: str, prefix: str, parts: int) -> builtins.list[str]:
    """Decode the segments of a key under ``prefix`` (strictly: a malformed key raises)."""
    segs = key[len(prefix) :].split("/")
    if not key.startswith(prefix) or len(segs) != parts:
        raise ScopeViolationError(f"malformed checkpoint key {key!r}")
    return [unquote(s, errors="strict") for s in segs]


class ScopedCheckpointer(BaseCheckpointSaver[int]):
    """A LangGraph ``BaseCheckpointSaver`` whose threads live inside the caller's MemoryScope.

    Args:
        backend: an agenthood :class:`~agenthood_mw.memory.MemoryBackend` (any: in-memory,
            SQLite, Redis, PostgreSQL), or a :class:`~agenthood_mw.memory.SyncMemory` facade
            around one (needed for the blocking API on Redis / PostgreSQL, whose connections
            belong to one event loop).
        scope: a fixed :class:`MemoryScope` (background jobs, operator tools). Without it each
            call uses the scope bound with :meth:`bind_scope`, else the current request's
            identity (``MemoryScope.for_identity(current_identity())``); no argument or config
            key chooses the scope from request data, and a call with no scope raises.
        serde: LangGraph serializer (default: LangGraph's ``JsonPlusSerializer``).

    User B presenting user A's ``thread_id`` reads B's own (empty) thread: thread ids are
    keys *inside* a scope, never across scopes.
    """

    def __init__(
        self,
        backend: MemoryBackend | SyncMemory,
        *,
        scope: MemoryScope | None = None,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if isinstance(backend, SyncMemory):
            self._facade: SyncMemory | None = backend
            self._backend = backend.backend
        elif isinstance(backend, MemoryBackend):
            self._facade = None
            self._backend = backend
        else:
            raise TypeError(
                f"backend must be a MemoryBackend or a SyncMemory, got {type(backend).__name__}"
            )
        self._scope = None if scope is None else require_scope(scope)

    # ------------------------------------------------------------------ scope
    @staticmethod
    @contextmanager
    def bind_scope(scope: MemoryScope) -> Iterator[None]:
        """Within the block (and tasks it starts), checkpointers without a fixed scope use
        ``scope``. :class:`LangGraphAgent` binds the run's scope this way."""
        token = _bound_scope.set(require_scope(scope))
        try:
            yield
        finally:
            _bound_scope.reset(token)

    def current_scope(self) -> MemoryScope:
        """The scope this call works in (fixed, bound, or the request's identity)."""
        if self._scope is not None:
            return self._scope
        bound = _bound_scope.get()
        if bound is not None:
            return bound
        try:
            identity = current_identity()
        except LookupError:
            raise LookupError(
                "ScopedCheckpointer has no scope: call it inside a request handled by "
                "AuthMiddleware, inside ScopedCheckpointer.bind_scope(scope), or construct it "
                "with scope=MemoryScope.operator(...)"
            ) from None
        return MemoryScope.for_identity(identity)

    @property
    def backend(self) -> MemoryBackend:
        """The memory backend the checkpoints are stored in."""
        return self._backend

    @property
    def fixed_scope(self) -> MemoryScope | None:
        """The scope given at construction, or ``None`` (the caller's scope per call)."""
        return self._scope

    # ------------------------------------------------------------------ codec
    def _dump(self, obj: object) -> builtins.list[str]:
        kind, data = self.serde.dumps_typed(obj)
        return [kind, base64.b64encode(data).decode("ascii")]

    def _load(self, stored: object) -> Any:
        if not (isinstance(stored, builtins.list) and len(stored) == 2):
            raise ScopeViolationError("malformed checkpoint record")
        kind, data = stored
        return self.serde.loads_typed((kind, base64.b64decode(data, validate=True)))

    # ------------------------------------------------------------------ storage helpers
    async def _records(self, scope: MemoryScope, prefix: str) -> builtins.list[Record]:
        out: builtins.list[Record] = []
        cursor: str | None = None
        while True:
            page = await self._backend.list(scope, _TIER, prefix, limit=_PAGE, cursor=cursor)
            out.extend(page)
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    async def _writes(
        self, scope: MemoryScope, tid: str, ns: str, cid: str
    ) -> builtins.list[PendingWrite]:
        prefix = _wr_prefix(tid, ns, cid)
        rows: builtins.list[tuple[str, str, int, str, Any]] = []
        for rec in await self._records(scope, prefix):
            (task_id,) = _split_key(rec.key, prefix, 1)
            value = rec.value
            if not isinstance(value, dict) or value.get("task_id") != task_id:
                raise ScopeViolationError("pending writes stored under another task's key")
            path = value.get("task_path", "")
            for idx, channel, blob in value["writes"]:
                rows.append((path, task_id, idx, channel, blob))
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
        return [(task_id, channel, self._load(blob)) for _, task_id, _, channel, blob in rows]

    async def _tuple(self, scope: MemoryScope, rec: Record) -> CheckpointTuple:
        tid, ns, cid = _split_key(rec.key, _CP, 3)
        value = rec.value
        if not isinstance(value, dict) or (
            value.get("thread_id"),
            value.get("checkpoint_ns"),
            value.get("checkpoint_id"),
        ) != (tid, ns, cid):
            raise ScopeViolationError("checkpoint stored under another thread's key")
        checkpoint: Checkpoint = self._load(value["checkpoint"])
        if checkpoint.get("id") != cid:
            raise ScopeViolationError("checkpoint id differs from its key")
        parent = value.get("parent_checkpoint_id")
        return CheckpointTuple(
            config=_config(tid, ns, cid),
            checkpoint=checkpoint,
            metadata=self._load(value["metadata"]),
            parent_config=_config(tid, ns, parent) if parent else None,
            pending_writes=await self._writes(scope, tid, ns, cid),
        )

    # ------------------------------------------------------------------ async API
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config`` (the thread's newest without ``checkpoint_id``),
        in the caller's scope; ``None`` when that scope has no such checkpoint."""
        return await self._call(self._get_tuple(self.current_scope(), config))

    async def _get_tuple(
        self, scope: MemoryScope, config: RunnableConfig
    ) -> CheckpointTuple | None:
        tid, ns = _thread_id(config), _ns(config)
        cid = get_checkpoint_id(config)
        if not cid:
            head = await self._backend.get(scope, _TIER, _head_key(tid, ns))
            if head is None:
                return None
            cid = head.value.get("checkpoint_id") if isinstance(head.value, dict) else None
            if not isinstance(cid, str):
                raise ScopeViolationError("malformed checkpoint head record")
        rec = await self._backend.get(scope, _TIER, _cp_key(tid, ns, cid))
        return None if rec is None else await self._tuple(scope, rec)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints of the caller's scope, newest first (by checkpoint id).

        ``config`` narrows to a thread (and namespace, and checkpoint id when given);
        ``None`` lists every thread of the scope. ``filter`` matches metadata keys exactly;
        ``before`` keeps checkpoints whose id is lower than its ``checkpoint_id``.
        """
        items = await self._call(self._list(self.current_scope(), config, filter, before, limit))
        for item in items:
            yield item

    async def _list(
        self,
        scope: MemoryScope,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> builtins.list[CheckpointTuple]:
        prefix, only_id = _list_prefix(config)
        before_id = get_checkpoint_id(before) if before else None
        candidates: builtins.list[tuple[str, Record]] = []
        for rec in await self._records(scope, prefix):
            cid = _split_key(rec.key, _CP, 3)[2]
            if (only_id and cid != only_id) or (before_id and cid >= before_id):
                continue
            candidates.append((cid, rec))
        candidates.sort(key=lambda c: c[0], reverse=True)
        out: builtins.list[CheckpointTuple] = []
        for _, rec in candidates:
            if limit is not None and len(out) >= limit:
                break
            if filter and not _matches(self._load(rec.value["metadata"]), filter):
                continue
            out.append(await self._tuple(scope, rec))
        return out

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store ``checkpoint`` in the caller's scope; return the config naming it."""
        return await self._call(self._put(self.current_scope(), config, checkpoint, metadata))

    async def _put(
        self,
        scope: MemoryScope,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
    ) -> RunnableConfig:
        tid, ns = _thread_id(config), _ns(config)
        cid = checkpoint["id"]
        value = {
            "thread_id": tid,
            "checkpoint_ns": ns,
            "checkpoint_id": cid,
            "parent_checkpoint_id": get_checkpoint_id(config),
            "checkpoint": self._dump(checkpoint),
            "metadata": self._dump(get_serializable_checkpoint_metadata(config, metadata)),
        }
        await self._backend.put(scope, _TIER, _cp_key(tid, ns, cid), value)
        head_key = _head_key(tid, ns)
        head = await self._backend.get(scope, _TIER, head_key)
        newest = head.value.get("checkpoint_id") if head and isinstance(head.value, dict) else None
        if not isinstance(newest, str) or newest < cid:
            await self._backend.put(scope, _TIER, head_key, {"checkpoint_id": cid})
        return _config(tid, ns, cid)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store one task's pending writes for the checkpoint named by ``config``."""
        await self._call(self._put_writes(self.current_scope(), config, writes, task_id, task_path))

    async def _put_writes(
        self,
        scope: MemoryScope,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> None:
        tid, ns = _thread_id(config), _ns(config)
        cid = get_checkpoint_id(config)
        if not cid:
            raise ValueError('put_writes needs config["configurable"]["checkpoint_id"]')
        key = _wr_prefix(tid, ns, cid) + _seg(task_id, "task_id")
        rec = await self._backend.get(scope, _TIER, key)
        stored: dict[int, builtins.list[Any]] = {}
        if rec is not None:
            if not isinstance(rec.value, dict) or rec.value.get("task_id") != task_id:
                raise ScopeViolationError("pending writes stored under another task's key")
            stored = {int(w[0]): w for w in rec.value["writes"]}
        for i, (channel, val) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, i)
            if idx >= 0 and idx in stored:
                continue  # a task's regular writes are idempotent; special ones replace
            stored[idx] = [idx, channel, self._dump(val)]
        value = {"task_id": task_id, "task_path": task_path, "writes": sorted(stored.values())}
        await self._backend.put(scope, _TIER, key, value)

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete the caller's thread ``thread_id`` (every namespace, checkpoint and write).
        Another scope's thread of the same id is untouched."""
        await self._call(self._delete_thread(self.current_scope(), thread_id))

    async def _delete_thread(self, scope: MemoryScope, thread_id: str) -> None:
        seg = _seg(str(thread_id), "thread_id") + "/"
        for root in (_HEAD, _CP, _WR):
            for rec in await self._records(scope, root + seg):
                await self._backend.delete(scope, _TIER, rec.key)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the caller's checkpoints (and their writes) whose metadata ``run_id`` is
        one of ``run_ids``."""
        await self._call(self._delete_for_runs(self.current_scope(), run_ids))

    async def _delete_for_runs(self, scope: MemoryScope, run_ids: Sequence[str]) -> None:
        wanted = {str(r) for r in run_ids}
        if not wanted:
            return
        touched: set[tuple[str, str]] = set()
        for rec in await self._records(scope, _CP):
            if self._load(rec.value["metadata"]).get("run_id") in wanted:
                tid, ns, cid = _split_key(rec.key, _CP, 3)
                await self._drop_checkpoint(scope, tid, ns, cid)
                touched.add((tid, ns))
        for tid, ns in touched:
            await self._reset_head(scope, tid, ns)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of the caller's thread ``source_thread_id`` to
        their thread ``target_thread_id`` (both inside the caller's scope)."""
        await self._call(
            self._copy_thread(self.current_scope(), source_thread_id, target_thread_id)
        )

    async def _copy_thread(self, scope: MemoryScope, source: str, target: str) -> None:
        src, dst = _seg(str(source), "thread_id") + "/", _seg(str(target), "thread_id") + "/"
        namespaces: set[str] = set()
        for root in (_CP, _WR):
            for rec in await self._records(scope, root + src):
                value = rec.value
                if root == _CP:
                    tid, ns, _ = _split_key(rec.key, _CP, 3)
                    if not isinstance(value, dict) or value.get("thread_id") != tid:
                        raise ScopeViolationError("checkpoint stored under another thread's key")
                    value = {**value, "thread_id": str(target)}
                    namespaces.add(ns)
                key = root + dst + rec.key[len(root + src) :]
                await self._backend.put(scope, _TIER, key, value)
        for ns in namespaces:  # the target's newest checkpoint may be its own, not a copy
            await self._reset_head(scope, str(target), ns)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune the caller's threads: ``"keep_latest"`` keeps the newest checkpoint of each
        namespace (and its writes), ``"delete"`` removes the threads."""
        await self._call(self._prune(self.current_scope(), thread_ids, strategy))

    async def _prune(self, scope: MemoryScope, thread_ids: Sequence[str], strategy: str) -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"strategy must be 'keep_latest' or 'delete', got {strategy!r}")
        for thread_id in thread_ids:
            if strategy == "delete":
                await self._delete_thread(scope, thread_id)
                continue
            newest: dict[str, str] = {}
            ids: builtins.list[tuple[str, str]] = []
            for rec in await self._records(scope, _CP + _seg(str(thread_id), "thread_id") + "/"):
                _, ns, cid = _split_key(rec.key, _CP, 3)
                ids.append((ns, cid))
                newest[ns] = max(cid, newest.get(ns, cid))
            for ns, cid in ids:
                if cid != newest[ns]:
                    await self._drop_checkpoint(scope, str(thread_id), ns, cid)

    async def _drop_checkpoint(self, scope: MemoryScope, tid: str, ns: str, cid: str) -> None:
        for rec in await self._records(scope, _wr_prefix(tid, ns, cid)):
            await self._backend.delete(scope, _TIER, rec.key)
        await self._backend.delete(scope, _TIER, _cp_key(tid, ns, cid))

    async def _reset_head(self, scope: MemoryScope, tid: str, ns: str) -> None:
        """Point the head of ``(tid, ns)`` at its newest remaining checkpoint (or drop it)."""
        prefix = _CP + _path(tid, ns, "")
        ids = [_split_key(rec.key, _CP, 3)[2] for rec in await self._records(scope, prefix)]
        if ids:
            await self._backend.put(scope, _TIER, _head_key(tid, ns), {"checkpoint_id": max(ids)})
        else:
            await self._backend.delete(scope, _TIER, _head_key(tid, ns))

    # ------------------------------------------------------------------ sync API
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._run(self._get_tuple(self.current_scope(), config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        scope = self.current_scope()
        yield from self._run(self._list(scope, config, filter, before, limit))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._run(self._put(self.current_scope(), config, checkpoint, metadata))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._run(self._put_writes(self.current_scope(), config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._run(self._delete_thread(self.current_scope(), thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._run(self._delete_for_runs(self.current_scope(), run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._run(self._copy_thread(self.current_scope(), source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._run(self._prune(self.current_scope(), thread_ids, strategy))

    # ------------------------------------------------------------------ loop plumbing
    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` here, or on the SyncMemory facade's loop when there is one."""
        if self._facade is None:
            return await coro
        return await asyncio.to_thread(self._facade.run, coro)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion from blocking code."""
        if self._facade is not None:
            return self._facade.run(coro)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        coro.close()
        raise RuntimeError(
            "ScopedCheckpointer's blocking methods cannot run on an event loop: use the async "
            "API (graph.ainvoke / astream), or pass a SyncMemory facade as the backend"
        )


def _list_prefix(config: RunnableConfig | None) -> tuple[str, str | None]:
    """The key prefix a ``list`` config narrows to, and the checkpoint id it names."""
    if config is None:
        return _CP, None
    conf = config.get("configurable") or {}
    prefix = _CP + _seg(_thread_id(config), "thread_id") + "/"
    ns = conf.get("checkpoint_ns")
    if ns is not None:
        prefix += _seg(ns, "checkpoint_ns") + "/"
    return prefix, get_checkpoint_id(config)


def _matches(metadata: Any, query: dict[str, Any]) -> bool:
    return isinstance(metadata, dict) and all(
        metadata.get(key) == value for key, value in query.items()
    )

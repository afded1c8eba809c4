"""``ScopedStore``: LangGraph's long-term memory (``BaseStore``) on an agenthood memory backend.

Every operation runs in one :class:`MemoryScope` -- the current request's identity, or the scope
given at construction for background jobs -- through the backend's public methods, which verify
that every record they return belongs to that scope. Namespaces are encoded reversibly into
keys (see ``_keys``); every key read back is decoded and checked against what was asked for.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Sequence
from typing import Any, Final

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
    get_text_at_path,
    tokenize_path,
    validate_op_namespace,
)

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.integrations._scoping import Binding
from agenthood_mw.integrations.langgraph import _keys
from agenthood_mw.integrations.langgraph._match import (
    matches_condition,
    matches_filter,
    pack_vector,
)
from agenthood_mw.integrations.langgraph._snapshot import Found, Snapshot, SnapshotCache
from agenthood_mw.memory import MAX_LIMIT, MemoryBackend, Record, ScopeViolationError, SyncMemory

__all__ = ["ScopedStore"]

_TIER: Final = "facts"
#: The scope's generation token (outside ``_keys.ROOT``, so never an item key).
_GENERATION: Final = "langgraph~generation"


def _check_ttl_config(ttl: object) -> TTLConfig | None:
    if ttl is None:
        return None
    if not isinstance(ttl, dict):
        raise TypeError("ttl must be a TTLConfig dict or None")
    unknown = set(ttl) - {
        "default_ttl",
        "refresh_on_read",
        "omit_expired",
        "sweep_interval_minutes",
    }
    if unknown:
        raise ValueError(f"ttl has unsupported keys {sorted(unknown)}")
    default = ttl.get("default_ttl")
    if default is not None and (
        isinstance(default, bool) or not isinstance(default, int | float) or default <= 0
    ):
        raise ValueError("ttl['default_ttl'] must be a positive number of minutes or None")
    return TTLConfig(**ttl)  # type: ignore[typeddict-item]


class ScopedStore(BaseStore):
    """A LangGraph ``BaseStore`` whose every read and write is confined to one user's scope.

    Args:
        memory: an async :class:`~agenthood_mw.memory.MemoryBackend`, or a
            :class:`~agenthood_mw.memory.SyncMemory` for blocking use (``store.put`` from
            scripts and sync graph nodes). Over an async backend the blocking methods work
            only from a thread other than the running loop's.
        scope: an explicit scope for background jobs; by default each call uses
            ``MemoryScope.for_identity(current_identity())`` and raises ``LookupError``
            outside a request.
        index: LangGraph's ``{"embed": ..., "dims": ..., "fields": [...]}`` to enable
            ``search(query=...)`` (cosine similarity, within the scope only).
        ttl: LangGraph's ``TTLConfig`` (``default_ttl`` in minutes, ``refresh_on_read``);
            expiry is the backend's own TTL, so expired items are never returned.
        cache_scopes: how many scopes' decoded snapshots ``search``/``list_namespaces`` keep
            in this process (LRU; ``0`` disables). A snapshot is reused only while the scope's
            generation token, rewritten by every write of any ``ScopedStore`` on the same
            storage, is unchanged.
    """

    supports_ttl: bool = True

    def __init__(
        self,
        memory: MemoryBackend | SyncMemory,
        *,
        scope: MemoryScope | None = None,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        cache_scopes: int = 16,
    ) -> None:
        self._bind = Binding(memory, scope, owner="ScopedStore")
        if isinstance(cache_scopes, bool) or not isinstance(cache_scopes, int) or cache_scopes < 0:
            raise ValueError("cache_scopes must be an int >= 0")
        self._snapshots = SnapshotCache(cache_scopes)
        self.ttl_config = _check_ttl_config(ttl)
        self.index_config: IndexConfig | None = None
        self._fields: list[tuple[str, str | list[str]]] = []
        self._dims = 0
        if index is not None:
            self._setup_index(index)

    def _setup_index(self, index: IndexConfig) -> None:
        if not isinstance(index, dict) or "embed" not in index:
            raise ValueError("index must be a dict with 'embed', 'dims' and optional 'fields'")
        dims = index.get("dims")
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
            raise ValueError("index['dims'] must be a positive int")
        self.index_config = IndexConfig(**index)
        self.embeddings = ensure_embeddings(index["embed"])
        self._dims = dims
        self._fields = [
            (p, p if p == "$" else tokenize_path(p)) for p in (index.get("fields") or ["$"])
        ]

    # ------------------------------------------------------------------ BaseStore API
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` in order, in the current scope (blocking)."""
        scope = self._bind.scope()
        return self._bind.run_blocking(self._run_ops(scope, list(ops)))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` in order, in the current scope."""
        scope = self._bind.scope()
        return await self._bind.run_async(self._run_ops(scope, list(ops)))

    # ------------------------------------------------------------------ operations
    async def _run_ops(self, scope: MemoryScope, ops: list[Op]) -> list[Result]:
        for op in ops:
            if not isinstance(op, GetOp | PutOp | SearchOp | ListNamespacesOp):
                raise TypeError(f"unknown store operation {type(op).__name__}")
            validate_op_namespace(op)
            if isinstance(op, PutOp):
                _check_put_namespace(op.namespace)
        results: list[Result] = []
        for op in ops:
            if isinstance(op, GetOp):
                results.append(await self._get(scope, op))
            elif isinstance(op, PutOp):
                await self._put(scope, op)
                results.append(None)
            elif isinstance(op, SearchOp):
                results.append(await self._search(scope, op))
            else:
                results.append(await self._list_namespaces(scope, op))
        return results

    def _decode(self, scope: MemoryScope, rec: Record) -> Found:
        pair = _keys.decode(rec.key)
        payload = rec.value
        if (
            pair is None
            or not isinstance(payload, dict)
            or not isinstance(payload.get("v"), dict)
            or not isinstance(payload.get("c"), int | float)
            or not isinstance(payload.get("u"), int | float)
        ):
            raise ScopeViolationError(
                f"ScopedStore read {rec.key!r} in scope {scope.label}, which is not a record "
                "of this store; nothing was returned"
            )
        return Found(pair[0], pair[1], payload, rec.expires_at)

    async def _get(self, scope: MemoryScope, op: GetOp) -> Item | None:
        mkey = _keys.encode(op.namespace, str(op.key))
        rec = await self._bind.backend.get(scope, _TIER, mkey)
        if rec is None:
            return None
        found = self._decode(scope, rec)
        if found.namespace != op.namespace or found.key != op.key:
            raise ScopeViolationError("ScopedStore read a record of another namespace or key")
        if op.refresh_ttl and found.ttl is not None:
            await self._rewrite(scope, rec, found.ttl)
        return found.item()

    async def _rewrite(self, scope: MemoryScope, rec: Record, ttl_minutes: float) -> None:
        await self._bind.backend.put(scope, _TIER, rec.key, rec.value, ttl=ttl_minutes * 60.0)
        await self._bump(scope)

    async def _bump(self, scope: MemoryScope) -> None:
        """Replace the scope's generation token (after the write it follows)."""
        await self._bind.backend.put(scope, _TIER, _GENERATION, secrets.token_hex(16))

    async def _put(self, scope: MemoryScope, op: PutOp) -> None:
        backend = self._bind.backend
        mkey = _keys.encode(op.namespace, str(op.key))
        if op.value is None:
            if await backend.delete(scope, _TIER, mkey):
                await self._bump(scope)
            return
        if not isinstance(op.value, dict):
            raise TypeError(f"a store value must be a dict, got {type(op.value).__name__}")
        now = backend.clock()
        old = await backend.get(scope, _TIER, mkey)
        created = now
        if old is not None:
            created = self._decode(scope, old).payload["c"]
        ttl = op.ttl if op.ttl is not None else None
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0
        ):
            raise ValueError("ttl must be a positive number of minutes or None")
        payload: dict[str, Any] = {"v": op.value, "c": created, "u": now, "t": ttl}
        vectors = await self._embed_value(op)
        if vectors:
            payload["e"] = vectors
        await backend.put(scope, _TIER, mkey, payload, ttl=None if ttl is None else ttl * 60.0)
        await self._bump(scope)

    async def _embed_value(self, op: PutOp) -> dict[str, str]:
        if self.index_config is None or op.index is False or op.value is None:
            return {}
        fields = self._fields if op.index is None else [(p, tokenize_path(p)) for p in op.index]
        paths: list[str] = []
        texts: list[str] = []
        for path, tokens in fields:
            found = get_text_at_path(op.value, tokens)
            for i, text in enumerate(found):
                paths.append(path if len(found) == 1 else f"{path}.{i}")
                texts.append(text)
        if not texts:
            return {}
        vectors = await self.embeddings.aembed_documents(texts)
        if len(vectors) != len(texts):
            raise ValueError(f"embed returned {len(vectors)} vectors for {len(texts)} texts")
        return {
            p: pack_vector(self._checked_vector(v)) for p, v in zip(paths, vectors, strict=True)
        }

    def _checked_vector(self, vector: Sequence[float]) -> Sequence[float]:
        if len(vector) != self._dims:
            raise ValueError(
                f"embed returned {len(vector)} dimensions, index['dims'] is {self._dims}"
            )
        if not all(math.isfinite(x) for x in vector):
            raise ValueError("embed returned a NaN or infinite value")
        return vector

    async def _snapshot(self, scope: MemoryScope) -> Snapshot:
        """Every live record of the store in ``scope``: cached while the generation holds."""
        backend = self._bind.backend
        token = await backend.get(scope, _TIER, _GENERATION)
        generation = None if token is None else token.value
        cached, stale = self._snapshots.get(scope.storage_key, generation)
        if cached is not None:
            return cached
        entries: list[Found] = []
        cursor: str | None = None
        while True:
            page = await backend.list(scope, _TIER, _keys.ROOT, limit=MAX_LIMIT, cursor=cursor)
            entries.extend(self._decode(scope, rec) for rec in page)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        snap = Snapshot(generation, entries, stale)
        self._snapshots.put(scope.storage_key, snap)
        return snap

    async def _search(self, scope: MemoryScope, op: SearchOp) -> list[SearchItem]:
        if op.offset < 0 or op.limit < 0:
            raise ValueError("search offset and limit must be >= 0")
        prefix = tuple(op.namespace_prefix)
        snap = await self._snapshot(scope)
        now = self._bind.backend.clock()
        n = len(prefix)

        def wanted(f: Found) -> bool:
            return (
                f.namespace[:n] == prefix
                and (f.expires_at is None or f.expires_at > now)
                and matches_filter(f.payload["v"], op.filter)
            )

        need = op.offset + op.limit
        picked: list[tuple[float | None, Found]] = []
        if op.query is not None and self.index_config is not None:
            qvec = self._checked_vector(await self.embeddings.aembed_query(str(op.query)))
            seen: set[int] = set()
            for score, i in snap.scored(list(qvec), need):
                if len(picked) >= need:
                    break
                if i not in seen:  # the first (best) score of an entry is its score
                    seen.add(i)
                    if wanted(snap.entries[i]):
                        picked.append((score, snap.entries[i]))
            unscored: Iterable[Found] = (f for i, f in enumerate(snap.entries) if i not in seen)
        else:
            unscored = iter(snap.entries)
        for f in unscored:
            if len(picked) >= need:
                break
            if wanted(f):
                picked.append((None, f))
        page = picked[op.offset : need]
        if op.refresh_ttl:
            await self._refresh(scope, [f for _, f in page])
        return [f.search_item(score) for score, f in page]

    async def _refresh(self, scope: MemoryScope, found: list[Found]) -> None:
        for f in found:
            if f.ttl is not None:
                live = await self._bind.backend.get(scope, _TIER, _keys.encode(f.namespace, f.key))
                if live is not None:
                    await self._rewrite(scope, live, f.ttl)

    async def _list_namespaces(
        self, scope: MemoryScope, op: ListNamespacesOp
    ) -> list[tuple[str, ...]]:
        if op.offset < 0 or op.limit < 0:
            raise ValueError("list_namespaces offset and limit must be >= 0")
        if op.max_depth is not None and op.max_depth < 1:
            raise ValueError("max_depth must be >= 1")
        conditions = op.match_conditions or ()
        snap = await self._snapshot(scope)
        now = self._bind.backend.clock()
        seen: set[tuple[str, ...]] = set()
        for f in snap.entries:
            ns = f.namespace
            if f.live(now) and all(matches_condition(c.match_type, c.path, ns) for c in conditions):
                seen.add(ns if op.max_depth is None else ns[: op.max_depth])
        return sorted(seen)[op.offset : op.offset + op.limit]


def _check_put_namespace(namespace: tuple[str, ...]) -> None:
    if not namespace:
        raise InvalidNamespaceError("Namespace cannot be empty.")
    if namespace[0] == "langgraph":
        raise InvalidNamespaceError(
            f'Root label for namespace cannot be "langgraph". Got: {namespace}'
        )

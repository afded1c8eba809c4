"""``ScopedStore``: LangGraph's long-term memory (``BaseStore``) on an agenthood memory backend.

Every operation runs in one :class:`MemoryScope` -- the current request's identity, or the scope
given at construction for background jobs -- through the backend's public methods, which verify
that every record they return belongs to that scope. Namespaces are encoded reversibly into
keys (see ``_keys``); every key read back is decoded and checked against what was asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
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
    cosine_scores,
    matches_condition,
    matches_filter,
    pack_vector,
    unpack_vector,
)
from agenthood_mw.memory import MAX_LIMIT, MemoryBackend, Record, ScopeViolationError, SyncMemory

__all__ = ["ScopedStore"]

_TIER: Final = "facts"
_VECTOR_CACHE_MAX: Final = 200_000


class _Found:
    """One decoded record: its namespace, key, payload and stored vectors."""

    __slots__ = ("item", "ttl", "vectors")

    def __init__(self, item: Item, ttl: float | None, vectors: dict[str, str]) -> None:
        self.item = item
        self.ttl = ttl
        self.vectors = vectors


def _when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _check_ttl_config(ttl: object) -> TTLConfig | None:
    if ttl is None:
        return None
    if not isinstance(ttl, dict):
        raise TypeError("ttl must be a TTLConfig dict or None")
    unknown = set(ttl) - {"default_ttl", "refresh_on_read", "sweep_interval_minutes"}
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
    """

    supports_ttl: bool = True

    def __init__(
        self,
        memory: MemoryBackend | SyncMemory,
        *,
        scope: MemoryScope | None = None,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
    ) -> None:
        self._bind = Binding(memory, scope, owner="ScopedStore")
        self.ttl_config = _check_ttl_config(ttl)
        self.index_config: IndexConfig | None = None
        self._fields: list[tuple[str, str | list[str]]] = []
        self._dims = 0
        if index is not None:
            self._setup_index(index)
        self._vector_cache: dict[str, Any] = {}

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
            elif isinstance(op, ListNamespacesOp):
                results.append(await self._list_namespaces(scope, op))
            else:
                raise TypeError(f"unknown store operation {type(op).__name__}")
        return results

    def _decode(self, scope: MemoryScope, rec: Record) -> _Found:
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
        namespace, key = pair
        item = Item(
            value=payload["v"],
            key=key,
            namespace=namespace,
            created_at=_when(payload["c"]),
            updated_at=_when(payload["u"]),
        )
        ttl = payload.get("t")
        vectors = payload.get("e") or {}
        return _Found(item, ttl if isinstance(ttl, int | float) else None, vectors)

    async def _get(self, scope: MemoryScope, op: GetOp) -> Item | None:
        mkey = _keys.encode(op.namespace, str(op.key))
        rec = await self._bind.backend.get(scope, _TIER, mkey)
        if rec is None:
            return None
        found = self._decode(scope, rec)
        if found.item.namespace != op.namespace or found.item.key != op.key:
            raise ScopeViolationError("ScopedStore read a record of another namespace or key")
        if op.refresh_ttl and found.ttl is not None:
            await self._rewrite(scope, rec, found.ttl)
        return found.item

    async def _rewrite(self, scope: MemoryScope, rec: Record, ttl_minutes: float) -> None:
        await self._bind.backend.put(scope, _TIER, rec.key, rec.value, ttl=ttl_minutes * 60.0)

    async def _put(self, scope: MemoryScope, op: PutOp) -> None:
        backend = self._bind.backend
        mkey = _keys.encode(op.namespace, str(op.key))
        if op.value is None:
            await backend.delete(scope, _TIER, mkey)
            return
        if not isinstance(op.value, dict):
            raise TypeError(f"a store value must be a dict, got {type(op.value).__name__}")
        now = backend.clock()
        old = await backend.get(scope, _TIER, mkey)
        created = now
        if old is not None:
            created = self._decode(scope, old).item.created_at.timestamp()
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

    async def _scan(self, scope: MemoryScope, namespace: tuple[str, ...]) -> list[Record]:
        """Every live record of the store under ``namespace`` (a prefix), ascending by key."""
        backend = self._bind.backend
        prefix = _keys.namespace_prefix(namespace)
        out: list[Record] = []
        cursor: str | None = None
        while True:
            page = await backend.list(scope, _TIER, prefix, limit=MAX_LIMIT, cursor=cursor)
            out.extend(page)
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    def _under(self, scope: MemoryScope, rec: Record, prefix: tuple[str, ...]) -> _Found:
        found = self._decode(scope, rec)
        if found.item.namespace[: len(prefix)] != prefix:
            raise ScopeViolationError("ScopedStore read a record outside the namespace prefix")
        return found

    async def _search(self, scope: MemoryScope, op: SearchOp) -> list[SearchItem]:
        if op.offset < 0 or op.limit < 0:
            raise ValueError("search offset and limit must be >= 0")
        prefix = tuple(op.namespace_prefix)
        ranked = op.query is not None and self.index_config is not None
        candidates: list[_Found] = []
        stop = None if (op.filter or ranked) else op.offset + op.limit
        for rec in await self._scan(scope, prefix):
            found = self._under(scope, rec, prefix)
            if matches_filter(found.item.value, op.filter):
                candidates.append(found)
                if stop is not None and len(candidates) >= stop:
                    break
        if ranked:
            scored = await self._rank(str(op.query), candidates)
        else:
            scored = [(None, f) for f in candidates]
        page = scored[op.offset : op.offset + op.limit]
        if op.refresh_ttl:
            for _, found in page:
                if found.ttl is not None:
                    mkey = _keys.encode(found.item.namespace, found.item.key)
                    live = await self._bind.backend.get(scope, _TIER, mkey)
                    if live is not None:
                        await self._rewrite(scope, live, found.ttl)
        return [
            SearchItem(
                namespace=f.item.namespace,
                key=f.item.key,
                value=f.item.value,
                created_at=f.item.created_at,
                updated_at=f.item.updated_at,
                score=score,
            )
            for score, f in page
        ]

    def _vector(self, packed: str) -> Any:
        vec = self._vector_cache.get(packed)
        if vec is None:
            if len(self._vector_cache) >= _VECTOR_CACHE_MAX:
                self._vector_cache.clear()
            vec = self._vector_cache[packed] = unpack_vector(packed)
        return vec

    async def _rank(
        self, query: str, candidates: list[_Found]
    ) -> list[tuple[float | None, _Found]]:
        """Candidates by best cosine similarity of any indexed field, unscored ones last."""
        qvec = self._checked_vector(await self.embeddings.aembed_query(query))
        owners: list[int] = []
        vectors: list[Any] = []
        for i, found in enumerate(candidates):
            for packed in found.vectors.values():
                owners.append(i)
                vectors.append(self._vector(packed))
        best: dict[int, float] = {}
        for i, score in zip(owners, cosine_scores(qvec, vectors), strict=True):
            if i not in best or score > best[i]:
                best[i] = score
        order = sorted(best, key=lambda i: -best[i])
        ranked: list[tuple[float | None, _Found]] = [(best[i], candidates[i]) for i in order]
        ranked += [(None, f) for i, f in enumerate(candidates) if i not in best]
        return ranked

    async def _list_namespaces(
        self, scope: MemoryScope, op: ListNamespacesOp
    ) -> list[tuple[str, ...]]:
        if op.offset < 0 or op.limit < 0:
            raise ValueError("list_namespaces offset and limit must be >= 0")
        if op.max_depth is not None and op.max_depth < 1:
            raise ValueError("max_depth must be >= 1")
        conditions = op.match_conditions or ()
        base: tuple[str, ...] = ()
        for cond in conditions:
            if cond.match_type == "prefix":
                literal = []
                for seg in cond.path:
                    if seg == "*":
                        break
                    literal.append(seg)
                if len(literal) > len(base):
                    base = tuple(literal)
        seen: set[tuple[str, ...]] = set()
        for rec in await self._scan(scope, base):
            ns = self._under(scope, rec, base).item.namespace
            if all(matches_condition(c.match_type, c.path, ns) for c in conditions):
                seen.add(ns if op.max_depth is None else ns[: op.max_depth])
        return sorted(seen)[op.offset : op.offset + op.limit]


def _check_put_namespace(namespace: tuple[str, ...]) -> None:
    if not namespace:
        raise InvalidNamespaceError("Namespace cannot be empty.")
    if namespace[0] == "langgraph":
        raise InvalidNamespaceError(
            f'Root label for namespace cannot be "langgraph". Got: {namespace}'
        )

"""Scoped ``langchain_core.stores.BaseStore`` implementations over a memory backend.

Keys are percent-encoded under ``langchain/<kind>/<namespace>/``; percent-encoding is a prefix
code (each character maps to a fixed text), so ``yield_keys(prefix=p)`` is the backend's range
scan of ``encode(p)`` and never a pattern. Every read goes through the backend's public methods,
which verify the scope; every key read back is decoded and checked against the request.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Final, Generic, TypeVar
from urllib.parse import quote, unquote

from langchain_core.stores import BaseStore

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.integrations._scoping import Binding
from agenthood_mw.memory import (
    MAX_LIMIT,
    InvalidValueError,
    MemoryBackend,
    Record,
    ScopeViolationError,
    SyncMemory,
)

__all__ = ["ScopedByteStore", "ScopedJSONStore"]

V = TypeVar("V")
_TIER: Final = "facts"


def _enc(text: str) -> str:
    return quote(text, safe="")


def _require_str_keys(value: object) -> None:
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise TypeError(f"dict key {k!r} is not a str")
            _require_str_keys(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _require_str_keys(item)


class _ScopedKV(BaseStore[str, V], Generic[V]):
    """The shared body: key mapping, scope, blocking and async twins."""

    _kind: str = ""

    def __init__(
        self,
        memory: MemoryBackend | SyncMemory,
        *,
        scope: MemoryScope | None = None,
        namespace: str = "default",
    ) -> None:
        self._bind = Binding(memory, scope, owner=type(self).__name__)
        if not isinstance(namespace, str) or not namespace:
            raise ValueError("namespace must be a non-empty str")
        self._root = f"langchain/{self._kind}/{_enc(namespace)}/"

    # ------------------------------------------------------------------ encoding
    def _encode_value(self, value: V) -> object:
        raise NotImplementedError

    def _decode_value(self, stored: object) -> V:
        raise NotImplementedError

    def _key(self, key: object) -> str:
        if not isinstance(key, str):
            raise TypeError(f"a store key must be a str, got {type(key).__name__}")
        return self._root + _enc(key)

    def _unkey(self, scope: MemoryScope, rec: Record) -> str:
        tail = rec.key[len(self._root) :]
        key = unquote(tail, errors="strict") if rec.key.startswith(self._root) else None
        if key is None or _enc(key) != tail:
            raise ScopeViolationError(
                f"{type(self).__name__} read {rec.key!r} in scope {scope.label}, which is not "
                "a key of this store; nothing was returned"
            )
        return key

    def _value(self, scope: MemoryScope, rec: Record) -> V:
        try:
            return self._decode_value(rec.value)
        except (TypeError, ValueError, KeyError):
            raise ScopeViolationError(
                f"{type(self).__name__} read {rec.key!r} in scope {scope.label}, which is not "
                "a value of this store; nothing was returned"
            ) from None

    # ------------------------------------------------------------------ async core
    async def _mget(self, scope: MemoryScope, keys: Sequence[str]) -> list[V | None]:
        mkeys = [self._key(k) for k in keys]
        backend = self._bind.backend
        recs = await asyncio.gather(*(backend.get(scope, _TIER, k) for k in mkeys))
        return [None if rec is None else self._value(scope, rec) for rec in recs]

    async def _mset(self, scope: MemoryScope, pairs: Sequence[tuple[str, V]]) -> None:
        encoded = [(self._key(k), self._encode_value(v)) for k, v in pairs]
        for mkey, stored in encoded:  # in order: the last of two equal keys wins
            await self._bind.backend.put(scope, _TIER, mkey, stored)

    async def _mdelete(self, scope: MemoryScope, keys: Sequence[str]) -> None:
        for mkey in [self._key(k) for k in keys]:
            await self._bind.backend.delete(scope, _TIER, mkey)

    async def _page(
        self, scope: MemoryScope, prefix: str | None, cursor: str | None
    ) -> tuple[list[str], str | None]:
        start = self._root if not prefix else self._key(prefix)
        page = await self._bind.backend.list(scope, _TIER, start, limit=MAX_LIMIT, cursor=cursor)
        return [self._unkey(scope, rec) for rec in page], page.next_cursor

    # ------------------------------------------------------------------ BaseStore API
    def mget(self, keys: Sequence[str]) -> list[V | None]:
        """The values of ``keys`` (``None`` where absent), in this caller's scope."""
        return self._bind.run_blocking(self._mget(self._bind.scope(), keys))

    async def amget(self, keys: Sequence[str]) -> list[V | None]:
        return await self._bind.run_async(self._mget(self._bind.scope(), keys))

    def mset(self, key_value_pairs: Sequence[tuple[str, V]]) -> None:
        """Store the pairs (all values are validated before anything is written)."""
        self._bind.run_blocking(self._mset(self._bind.scope(), key_value_pairs))

    async def amset(self, key_value_pairs: Sequence[tuple[str, V]]) -> None:
        await self._bind.run_async(self._mset(self._bind.scope(), key_value_pairs))

    def mdelete(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` (missing keys are ignored)."""
        self._bind.run_blocking(self._mdelete(self._bind.scope(), keys))

    async def amdelete(self, keys: Sequence[str]) -> None:
        await self._bind.run_async(self._mdelete(self._bind.scope(), keys))

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        """Every key (starting with ``prefix``) of this caller's scope, ascending."""
        scope = self._bind.scope()
        cursor: str | None = None
        while True:
            keys, cursor = self._bind.run_blocking(self._page(scope, prefix, cursor))
            yield from keys
            if cursor is None:
                return

    async def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[str]:
        scope = self._bind.scope()
        cursor: str | None = None
        while True:
            keys, cursor = await self._bind.run_async(self._page(scope, prefix, cursor))
            for key in keys:
                yield key
            if cursor is None:
                return


class ScopedByteStore(_ScopedKV[bytes]):
    """A LangChain ``ByteStore`` (``BaseStore[str, bytes]``) confined to one scope.

    Args:
        memory: an async ``MemoryBackend`` or a blocking ``SyncMemory``.
        scope: an explicit scope (background jobs); by default the current request's identity.
        namespace: separates several stores in one scope (default ``"default"``).
    """

    _kind = "bytes"

    def _encode_value(self, value: bytes) -> object:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"ScopedByteStore values must be bytes, got {type(value).__name__}")
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}

    def _decode_value(self, stored: object) -> bytes:
        if not isinstance(stored, dict) or not isinstance(stored.get("b64"), str):
            raise ValueError("not a byte-store value")
        return base64.b64decode(stored["b64"], validate=True)


class ScopedJSONStore(_ScopedKV[Any]):
    """A LangChain ``BaseStore[str, Any]`` of JSON values confined to one scope.

    Values must be JSON (dict, list, str, int, float, bool, None); anything else raises
    ``ValueError`` and nothing of that call is written. Arguments as :class:`ScopedByteStore`.
    """

    _kind = "json"

    def _encode_value(self, value: Any) -> object:
        try:
            json.dumps(value, allow_nan=False)
            _require_str_keys(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidValueError(f"ScopedJSONStore values must be JSON: {exc}") from None
        return {"json": value}

    def _decode_value(self, stored: object) -> Any:
        if not isinstance(stored, dict) or "json" not in stored:
            raise ValueError("not a JSON-store value")
        return stored["json"]

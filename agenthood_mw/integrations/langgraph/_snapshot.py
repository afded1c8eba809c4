"""Decoded store records and the per-scope snapshot searches run on.

A snapshot is every record of the store in one scope, read through the backend's public
``list`` (which verifies the scope of each record) and decoded with ``_keys`` (which verifies
the key). It is tagged with the scope's *generation*: a random token the store rewrites after
every write, so a snapshot whose tag still matches the stored token holds no stale item (the
token is read before the scan; every write replaces it after writing its item). Expiry is
checked at use against ``expires_at``, which only a write (and so a new token) can move.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from langgraph.store.base import Item, SearchItem

from agenthood_mw.integrations.langgraph._match import (
    best_first,
    normalised_rows,
    unpack_vector,
)

__all__ = ["Found", "Snapshot", "SnapshotCache"]


def _when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Found:
    """One decoded record: namespace, key, verified payload and expiry (items built on demand).

    ``payload`` is ``{"v": value, "c": created, "u": updated, "t": ttl minutes, "e": vectors}``.
    Items handed out carry a deep copy of the value, so a caller cannot alter a snapshot.
    """

    __slots__ = ("expires_at", "key", "namespace", "payload")

    def __init__(
        self,
        namespace: tuple[str, ...],
        key: str,
        payload: dict[str, Any],
        expires_at: float | None,
    ) -> None:
        self.namespace = namespace
        self.key = key
        self.payload = payload
        self.expires_at = expires_at

    @property
    def value(self) -> dict[str, Any]:
        value: dict[str, Any] = self.payload["v"]
        return value

    @property
    def ttl(self) -> float | None:
        ttl = self.payload.get("t")
        return ttl if isinstance(ttl, int | float) and not isinstance(ttl, bool) else None

    @property
    def vectors(self) -> dict[str, str]:
        vectors = self.payload.get("e")
        return vectors if isinstance(vectors, dict) else {}

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    def item(self) -> Item:
        return Item(
            value=copy.deepcopy(self.payload["v"]),
            key=self.key,
            namespace=self.namespace,
            created_at=_when(self.payload["c"]),
            updated_at=_when(self.payload["u"]),
        )

    def search_item(self, score: float | None) -> SearchItem:
        return SearchItem(
            namespace=self.namespace,
            key=self.key,
            value=copy.deepcopy(self.payload["v"]),
            created_at=_when(self.payload["c"]),
            updated_at=_when(self.payload["u"]),
            score=score,
        )


class Snapshot:
    """Every record of one scope (ascending by memory key), tagged with its generation."""

    __slots__ = ("_matrix", "_previous", "_unpacked", "entries", "generation")

    def __init__(
        self, generation: object, entries: list[Found], previous: Snapshot | None = None
    ) -> None:
        self.generation = generation
        self.entries = entries
        self._matrix: tuple[list[int], Any] | None = None
        # packed text -> vector, reused by the next snapshot of the scope (same text, same vector)
        self._unpacked: dict[str, Any] = {}
        self._previous = previous
        if previous is not None:
            previous._previous = None  # never a chain: one predecessor at most

    def scored(self, query: list[float], hint: int) -> Iterator[tuple[float, int]]:
        """``(cosine, entry index)`` of every indexed vector, best first, lazily (an entry
        with several indexed fields appears once per field)."""
        if self._matrix is None:
            known = {} if self._previous is None else self._previous._unpacked
            self._previous = None
            owners: list[int] = []
            vectors: list[Any] = []
            for i, entry in enumerate(self.entries):
                for packed in entry.vectors.values():
                    vec = known.get(packed)
                    if vec is None:
                        vec = unpack_vector(packed)
                    self._unpacked[packed] = vec
                    owners.append(i)
                    vectors.append(vec)
            self._matrix = (owners, normalised_rows(vectors))
        owners, rows = self._matrix
        for score, j in best_first(rows, query, hint):
            yield score, owners[j]


class SnapshotCache:
    """The snapshots of the most recently searched scopes (LRU, at most ``size``)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._snaps: OrderedDict[str, Snapshot] = OrderedDict()

    def get(self, scope_key: str, generation: object) -> tuple[Snapshot | None, Snapshot | None]:
        """``(current, stale)``: the snapshot if its generation matches, else the outdated one."""
        snap = self._snaps.get(scope_key)
        if snap is None:
            return None, None
        if snap.generation != generation:
            return None, snap
        self._snaps.move_to_end(scope_key)
        return snap, None

    def put(self, scope_key: str, snap: Snapshot) -> None:
        if self._size <= 0 or snap.generation is None:
            return
        self._snaps[scope_key] = snap
        self._snaps.move_to_end(scope_key)
        while len(self._snaps) > self._size:
            self._snaps.popitem(last=False)

"""Record types returned by memory backends: :class:`Record`, :class:`Event`, :class:`Page`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar, overload

from agenthood_mw._core.scope import MemoryScope

__all__ = ["TIERS", "Event", "Page", "Record", "ScopeExport", "Tier"]

#: A key/value tier: long-term ``facts`` or ``project`` documents.
Tier = Literal["facts", "project"]
TIERS: tuple[Tier, ...] = ("facts", "project")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Record:
    """One fact or project document.

    Attributes:
        scope_key: the :attr:`MemoryScope.storage_key` read back from storage (verified by the
            backend's public method before the record is handed out).
        tier: ``"facts"`` or ``"project"``.
        key: the fact key or document path, exactly as written.
        value: the JSON value (a fresh copy: mutating it changes nothing stored).
        updated_at: when it was last written (epoch seconds, from the backend's clock).
        expires_at: when it stops being visible (epoch seconds), or ``None``.
    """

    scope_key: str
    tier: Tier
    key: str
    value: Any
    updated_at: float
    expires_at: float | None = None

    @property
    def scope(self) -> MemoryScope:
        """The scope this record belongs to."""
        return MemoryScope.from_storage_key(self.scope_key)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for exports)."""
        return {
            "key": self.key,
            "value": self.value,
            "updatedAt": self.updated_at,
            "expiresAt": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the append-only episodic log.

    Attributes:
        scope_key: the owning scope's storage key (verified before handing out).
        id: a unique id (24 lowercase hex digits), ordered by append time within a process.
        timestamp: epoch seconds (the backend clock at append, or the ``at=`` given).
        data: the event's JSON object (a fresh copy).
    """

    scope_key: str
    id: str
    timestamp: float
    data: dict[str, Any]

    @property
    def scope(self) -> MemoryScope:
        """The scope this event belongs to."""
        return MemoryScope.from_storage_key(self.scope_key)

    @property
    def at(self) -> datetime:
        """The timestamp as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp, UTC)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for exports)."""
        return {"id": self.id, "timestamp": self.timestamp, "data": self.data}


@dataclass(frozen=True, slots=True)
class Page(Sequence[T], Generic[T]):
    """One page of a listing: a sequence of items plus the cursor of the next page.

    ``next_cursor`` is ``None`` on the last page; pass it back as ``cursor=`` to continue.
    """

    items: tuple[T, ...]
    next_cursor: str | None = None

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...
    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)


@dataclass(frozen=True, slots=True)
class ScopeExport:
    """Everything one scope holds, for a data-protection access request."""

    scope: MemoryScope
    exported_at: float
    facts: tuple[Record, ...] = field(default=())
    project: tuple[Record, ...] = field(default=())
    events: tuple[Event, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.facts) + len(self.project) + len(self.events)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"scope": {...}, "exportedAt", "facts", "project", "events"}``."""
        return {
            "scope": {"tenant": self.scope.tenant, "user": self.scope.user},
            "exportedAt": self.exported_at,
            "facts": [r.to_dict() for r in self.facts],
            "project": [r.to_dict() for r in self.project],
            "events": [e.to_dict() for e in self.events],
        }

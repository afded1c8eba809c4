"""``MemoryBackend``: the abstract base every backend derives from.

Public methods are final: they validate the scope and the arguments, call a protected hook
(``_put``, ``_get``, ...) that a subclass implements, and verify that everything the hook
returns belongs to the requested scope before handing it back. A subclass that overrides a
public method is rejected with ``TypeError`` when the class is created.
"""

from __future__ import annotations

import abc
import builtins
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Final, NoReturn, Self

from agenthood_mw._core.scope import MemoryScope, require_scope
from agenthood_mw.memory._codec import (
    MAX_KEY_BYTES,
    check_limit,
    check_tier,
    decode_event_cursor,
    decode_key_cursor,
    encode_event,
    encode_event_cursor,
    encode_key_cursor,
    encode_value,
    new_event_id,
    parse_ttl,
    prefix_upper_bound,
    search_terms,
    search_text,
    to_timestamp,
    validate_key,
    validate_prefix,
)
from agenthood_mw.memory._errors import ScopeViolationError
from agenthood_mw.memory._records import Event, Page, Record, ScopeExport, Tier
from agenthood_mw.memory._view import ScopedMemory

__all__ = ["MemoryBackend"]

_log = logging.getLogger("agenthood_mw.memory")

#: Methods a subclass may not override (it implements the ``_hooks`` instead): the public
#: API and the private checks it runs around every hook.
FINAL_METHODS: Final = frozenset(
    {
        "_checked",
        "_check_open",
        "_verify",
        "_verify_event",
        "_verify_key",
        "_violation",
        "put",
        "get",
        "delete",
        "list",
        "search",
        "append_event",
        "list_events",
        "erase",
        "export",
        "close",
        "scoped",
        "clock",
        "closed",
        "__aenter__",
        "__aexit__",
        "__init_subclass__",
    }
)
_EXPORT_PAGE: Final = 500
_ASCII_MAX: Final = MAX_KEY_BYTES
_TIER_SET: Final[frozenset[str]] = frozenset(("facts", "project"))
_Clock = Callable[[], float]


class MemoryBackend(abc.ABC):
    """Scoped storage for the three memory tiers. Every public method takes a ``MemoryScope``.

    Tiers: ``"facts"`` and ``"project"`` are key/value tiers (keys are fact keys or document
    paths); the episodic log is reached with :meth:`append_event` / :meth:`list_events`.

    Args:
        clock: returns epoch seconds; used for ``updated_at``, TTLs and event timestamps
            (default :func:`time.time`). Hooks receive ``now`` from it and must not read
            another clock, so tests can drive time.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        overridden = sorted(FINAL_METHODS & set(vars(cls)))
        if overridden:
            raise TypeError(
                f"{cls.__qualname__} overrides {', '.join(overridden)} of MemoryBackend; public "
                "methods enforce scope isolation and are final -- implement the _hooks instead"
            )

    def __init__(self, *, clock: _Clock | None = None) -> None:
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a callable returning epoch seconds")
        self._clock: _Clock = clock or time.time
        self._closed = False

    # ------------------------------------------------------------------ hooks
    @abc.abstractmethod
    async def _put(
        self,
        scope: MemoryScope,
        tier: Tier,
        key: str,
        value_json: str,
        search: str,
        now: float,
        expires_at: float | None,
    ) -> Record:
        """Insert or replace ``key``; return the stored record (value decoded from storage)."""

    @abc.abstractmethod
    async def _get(self, scope: MemoryScope, tier: Tier, key: str, now: float) -> Record | None:
        """The live (unexpired at ``now``) record of ``key``, or ``None``."""

    @abc.abstractmethod
    async def _delete(self, scope: MemoryScope, tier: Tier, key: str, now: float) -> bool:
        """Remove ``key``; return whether a live record was removed."""

    @abc.abstractmethod
    async def _list(
        self,
        scope: MemoryScope,
        tier: Tier,
        prefix: str,
        upper: str | None,
        after: str | None,
        limit: int,
        now: float,
    ) -> Sequence[Record]:
        """Up to ``limit`` live records with ``prefix <= key < upper`` (no bound if ``None``)
        and ``key > after`` (if given), ascending by key (code-point order)."""

    @abc.abstractmethod
    async def _search(
        self, scope: MemoryScope, tier: Tier, terms: tuple[str, ...], limit: int, now: float
    ) -> Sequence[Record]:
        """Up to ``limit`` live records whose stored search text contains every term,
        ascending by key."""

    @abc.abstractmethod
    async def _append_event(
        self, scope: MemoryScope, event_id: str, timestamp: float, data_json: str
    ) -> Event:
        """Append one event; return it as stored."""

    @abc.abstractmethod
    async def _list_events(
        self,
        scope: MemoryScope,
        since: float | None,
        until: float | None,
        before: tuple[float, str] | None,
        limit: int,
    ) -> Sequence[Event]:
        """Up to ``limit`` events with ``since <= timestamp < until`` and
        ``(timestamp, id) < before``, newest first (descending ``(timestamp, id)``)."""

    @abc.abstractmethod
    async def _erase(self, scope: MemoryScope) -> int:
        """Delete everything of ``scope`` (all tiers); return how many items were removed."""

    async def _close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once by :meth:`close`."""

    # ------------------------------------------------------------------ helpers
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")

    def _violation(self, op: str, scope: MemoryScope, why: str) -> NoReturn:
        _log.error(
            "memory backend %s.%s() returned data outside scope %r (%s); it was withheld",
            type(self).__qualname__,
            op,
            scope.storage_key,
            why,
        )
        raise ScopeViolationError(
            f"{type(self).__qualname__}.{op}() returned data that does not belong to the "
            f"requested scope ({why}); nothing was returned"
        )

    def _verify(self, op: str, scope: MemoryScope, tier: Tier, rec: object) -> Record:
        if type(rec) is not Record:
            self._violation(op, scope, f"expected a Record, got {type(rec).__name__}")
        if rec.scope_key != scope.storage_key:
            self._violation(op, scope, "record of another scope")
        if rec.tier != tier:
            self._violation(op, scope, "record of another tier")
        return rec

    def _checked(self, scope: MemoryScope, tier: Tier, key: str) -> tuple[MemoryScope, Tier, str]:
        """The validated arguments of a single-key operation (``put``, ``get``, ``delete``).

        Raises like :func:`require_scope`, :func:`check_tier` and :func:`validate_key`; the
        common case (a real scope, a known tier, a short printable ASCII key) is decided
        without calling them.
        """
        if scope.__class__ is not MemoryScope:
            scope = require_scope(scope)
        if self._closed:
            self._check_open()
        if tier not in _TIER_SET:
            tier = check_tier(tier)
        if not (
            type(key) is str and key.isascii() and key.isprintable() and 0 < len(key) <= _ASCII_MAX
        ):
            key = validate_key(key)
        return scope, tier, key

    def _verify_key(self, op: str, scope: MemoryScope, tier: Tier, key: str, rec: object) -> None:
        """Raise unless ``rec`` is the record of exactly (``scope``, ``tier``, ``key``)."""
        if (
            type(rec) is not Record
            or rec.scope_key != scope.storage_key
            or rec.tier != tier
            or rec.key != key
        ):
            self._verify(op, scope, tier, rec)
            self._violation(op, scope, "record of another key")

    def _verify_event(self, op: str, scope: MemoryScope, ev: object) -> Event:
        if type(ev) is not Event:
            self._violation(op, scope, f"expected an Event, got {type(ev).__name__}")
        if ev.scope_key != scope.storage_key:
            self._violation(op, scope, "event of another scope")
        return ev

    # ------------------------------------------------------------------ public API
    @property
    def clock(self) -> _Clock:
        """The clock (epoch seconds) this backend stamps records with."""
        return self._clock

    @property
    def closed(self) -> bool:
        return self._closed

    def scoped(self, scope: MemoryScope) -> ScopedMemory:
        """A :class:`ScopedMemory` view of this backend bound to ``scope``."""
        return ScopedMemory(self, scope)

    async def put(
        self,
        scope: MemoryScope,
        tier: Tier,
        key: str,
        value: object,
        *,
        ttl: float | str | timedelta | None = None,
    ) -> Record:
        """Store ``value`` (JSON) under ``key``, replacing any previous value.

        ``ttl`` (seconds, ``timedelta`` or ``"10m"``) makes the record invisible after that
        long. A bad key or value raises ``ValueError`` and nothing is written.
        """
        scope, tier, key = self._checked(scope, tier, key)
        value_json = encode_value(value)
        seconds = parse_ttl(ttl)
        now = self._clock()
        expires_at = None if seconds is None else now + seconds
        rec = await self._put(
            scope, tier, key, value_json, search_text(key, value), now, expires_at
        )
        self._verify_key("put", scope, tier, key, rec)
        return rec

    async def get(self, scope: MemoryScope, tier: Tier, key: str) -> Record | None:
        """The record stored under ``key``, or ``None`` (also when expired)."""
        scope, tier, key = self._checked(scope, tier, key)
        now = self._clock()
        rec = await self._get(scope, tier, key, now)
        if rec is None:
            return None
        self._verify_key("get", scope, tier, key, rec)
        if rec.expires_at is not None and rec.expires_at <= now:
            return None
        return rec

    async def delete(self, scope: MemoryScope, tier: Tier, key: str) -> bool:
        """Delete ``key``; ``True`` if a live record was removed."""
        scope, tier, key = self._checked(scope, tier, key)
        return bool(await self._delete(scope, tier, key, self._clock()))

    async def list(
        self,
        scope: MemoryScope,
        tier: Tier,
        prefix: str = "",
        *,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Record]:
        """Records whose key starts with ``prefix``, ascending by key, one page at a time.

        The prefix is a range scan, never a pattern: ``%``, ``_``, ``*`` are ordinary text.
        """
        scope = require_scope(scope)
        self._check_open()
        tier = check_tier(tier)
        prefix = validate_prefix(prefix)
        limit = check_limit(limit)
        after = None if cursor is None else decode_key_cursor(cursor)
        if after is not None and after < prefix:
            after = None
        upper = prefix_upper_bound(prefix)
        now = self._clock()
        rows = await self._list(scope, tier, prefix, upper, after, limit + 1, now)
        if len(rows) > limit + 1:
            self._violation("list", scope, "more records than the limit")
        sk = scope.storage_key
        previous = "" if after is None else after
        for rec in rows:
            if type(rec) is not Record or rec.scope_key != sk or rec.tier != tier:
                self._verify("list", scope, tier, rec)
            key = rec.key
            exp = rec.expires_at
            if key <= previous or not key.startswith(prefix) or (exp is not None and exp <= now):
                self._violation("list", scope, "record outside the requested range or order")
            previous = key
        if len(rows) > limit:
            items = tuple(rows[:limit])
            return Page(items, encode_key_cursor(items[-1].key))
        return Page(tuple(rows), None)

    async def search(
        self, scope: MemoryScope, tier: Tier, text: str, *, limit: int = 20
    ) -> tuple[Record, ...]:
        """Records containing every whitespace-separated term of ``text`` (case-insensitive,
        in the key, dict keys or scalar values), ascending by key."""
        scope = require_scope(scope)
        self._check_open()
        tier = check_tier(tier)
        terms = search_terms(text)
        limit = check_limit(limit)
        now = self._clock()
        rows = await self._search(scope, tier, terms, limit, now)
        if len(rows) > limit:
            self._violation("search", scope, "more records than the limit")
        sk = scope.storage_key
        for rec in rows:
            if type(rec) is not Record or rec.scope_key != sk or rec.tier != tier:
                self._verify("search", scope, tier, rec)
            if rec.expires_at is not None and rec.expires_at <= now:
                self._violation("search", scope, "expired record")
        return tuple(rows)

    async def append_event(
        self, scope: MemoryScope, event: dict[str, Any], *, at: float | datetime | None = None
    ) -> Event:
        """Append ``event`` (a JSON object) to the episodic log, stamped ``at`` or now."""
        scope = require_scope(scope)
        self._check_open()
        data_json = encode_event(event)
        timestamp = to_timestamp(self._clock() if at is None else at, what="at")
        ev = await self._append_event(scope, new_event_id(), timestamp, data_json)
        return self._verify_event("append_event", scope, ev)

    async def list_events(
        self,
        scope: MemoryScope,
        *,
        limit: int = 50,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
        cursor: str | None = None,
    ) -> Page[Event]:
        """Events newest first, optionally within ``since <= timestamp < until``."""
        scope = require_scope(scope)
        self._check_open()
        limit = check_limit(limit)
        lo = None if since is None else to_timestamp(since, what="since")
        hi = None if until is None else to_timestamp(until, what="until")
        before = None if cursor is None else decode_event_cursor(cursor)
        rows = await self._list_events(scope, lo, hi, before, limit + 1)
        if len(rows) > limit + 1:
            self._violation("list_events", scope, "more events than the limit")
        items: builtins.list[Event] = []
        prev = before
        for row in rows:
            ev = self._verify_event("list_events", scope, row)
            pos = (ev.timestamp, ev.id)
            if (
                (lo is not None and ev.timestamp < lo)
                or (hi is not None and ev.timestamp >= hi)
                or (prev is not None and pos >= prev)
            ):
                self._violation("list_events", scope, "event outside the requested range or order")
            prev = pos
            items.append(ev)
        if len(items) > limit:
            del items[limit:]
            last = items[-1]
            return Page(tuple(items), encode_event_cursor(last.timestamp, last.id))
        return Page(tuple(items), None)

    async def erase(self, scope: MemoryScope) -> int:
        """Delete everything ``scope`` holds in every tier; return how many items went."""
        scope = require_scope(scope)
        self._check_open()
        count = await self._erase(scope)
        return int(count)

    async def export(self, scope: MemoryScope) -> ScopeExport:
        """Everything ``scope`` holds (facts, project documents, events oldest first)."""
        scope = require_scope(scope)
        self._check_open()
        exported_at = self._clock()
        tiers: dict[Tier, builtins.list[Record]] = {"facts": [], "project": []}
        for tier, out in tiers.items():
            cursor: str | None = None
            while True:
                page = await self.list(scope, tier, limit=_EXPORT_PAGE, cursor=cursor)
                out.extend(page)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        events: builtins.list[Event] = []
        cursor = None
        while True:
            epage = await self.list_events(scope, limit=_EXPORT_PAGE, cursor=cursor)
            events.extend(epage)
            if epage.next_cursor is None:
                break
            cursor = epage.next_cursor
        events.reverse()
        return ScopeExport(
            scope=scope,
            exported_at=exported_at,
            facts=tuple(tiers["facts"]),
            project=tuple(tiers["project"]),
            events=tuple(events),
        )

    async def close(self) -> None:
        """Release connections and threads. Idempotent; the backend is unusable afterwards."""
        if self._closed:
            return
        self._closed = True
        await self._close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

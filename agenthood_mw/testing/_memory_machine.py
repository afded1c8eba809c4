"""The Hypothesis state machine of the conformance kit: random operations over several scopes,
checked step by step against a plain dict model."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.memory import MemoryBackend, Tier, search_text

__all__ = ["FakeClock", "MemoryMachine"]


class FakeClock:
    """A manual clock for TTL tests: ``clock()`` returns the time, ``advance(s)`` moves it."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


_USERS = ("a", "a_x", "A", "%", "a.x")
_KEYS = ("a", "a_x", "ab", "b", "%", "_", "a/b", "\u00e9", "e\u0301")
_PREFIXES = ("", "a", "a_", "%", "_", "e", "\u00e9", "zz")
_TERMS = ("a", "b", "ab", "%", "_", "\u00e9", "A", "x")
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text("abAB x\u00e9%_", max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text("ab_", max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


class MemoryMachine(RuleBasedStateMachine):
    """Random operations over several scopes, checked against a plain dict model.

    Bind ``runner``, ``backend``, ``clock`` and ``steps`` (a one-item step counter) in a
    subclass before running it.
    """

    runner: ClassVar[asyncio.Runner]
    backend: ClassVar[MemoryBackend]
    clock: ClassVar[FakeClock]
    steps: ClassVar[list[int]]

    def __init__(self) -> None:
        super().__init__()
        tenant = f"stateful-{uuid.uuid4().hex}"
        self.scopes = [MemoryScope.operator(user=u, tenant=tenant) for u in _USERS]
        # (scope index, tier) -> key -> (value, expires_at)
        self.kv: dict[tuple[int, Tier], dict[str, tuple[Any, float | None]]] = {}
        self.events: dict[int, list[tuple[float, str, Any]]] = {}

    def _do(self, coro: Awaitable[Any]) -> Any:
        self.steps[0] += 1

        async def wrapper() -> Any:
            return await coro

        return self.runner.run(wrapper())

    def _live(self, s: int, tier: Tier) -> dict[str, Any]:
        now = self.clock.now
        table = self.kv.get((s, tier), {})
        return {k: v for k, (v, exp) in table.items() if exp is None or exp > now}

    scope_ix = st.integers(0, len(_USERS) - 1)
    tiers = st.sampled_from(("facts", "project"))

    @rule(
        s=scope_ix,
        tier=tiers,
        key=st.sampled_from(_KEYS),
        value=_json,
        ttl=st.sampled_from((None, None, 5, 30)),
    )
    def put(self, s: int, tier: Tier, key: str, value: Any, ttl: int | None) -> None:
        rec = self._do(self.backend.put(self.scopes[s], tier, key, value, ttl=ttl))
        assert rec.value == value
        exp = None if ttl is None else self.clock.now + ttl
        self.kv.setdefault((s, tier), {})[key] = (value, exp)

    @rule(s=scope_ix, tier=tiers, key=st.sampled_from(_KEYS))
    def get(self, s: int, tier: Tier, key: str) -> None:
        rec = self._do(self.backend.get(self.scopes[s], tier, key))
        live = self._live(s, tier)
        if key in live:
            assert rec is not None and rec.value == live[key] and rec.key == key
        else:
            assert rec is None

    @rule(s=scope_ix, tier=tiers, key=st.sampled_from(_KEYS))
    def delete(self, s: int, tier: Tier, key: str) -> None:
        existed = self._do(self.backend.delete(self.scopes[s], tier, key))
        assert existed == (key in self._live(s, tier))
        self.kv.get((s, tier), {}).pop(key, None)

    @rule(s=scope_ix, tier=tiers, prefix=st.sampled_from(_PREFIXES), limit=st.integers(1, 4))
    def list_all(self, s: int, tier: Tier, prefix: str, limit: int) -> None:
        got: list[tuple[str, Any]] = []
        cursor = None
        for _ in range(50):
            page = self._do(
                self.backend.list(self.scopes[s], tier, prefix, limit=limit, cursor=cursor)
            )
            assert len(page) <= limit
            got += [(r.key, r.value) for r in page]
            cursor = page.next_cursor
            if cursor is None:
                break
        expected = sorted((k, v) for k, v in self._live(s, tier).items() if k.startswith(prefix))
        assert [k for k, _ in got] == [k for k, _ in expected]
        assert [v for _, v in got] == [v for _, v in expected]

    @rule(s=scope_ix, tier=tiers, term=st.sampled_from(_TERMS))
    def search(self, s: int, tier: Tier, term: str) -> None:
        got = self._do(self.backend.search(self.scopes[s], tier, term, limit=1000))
        folded = term.casefold()
        live = self._live(s, tier)
        expected = sorted(k for k, v in live.items() if folded in search_text(k, v))
        assert [r.key for r in got] == expected

    @rule(s=scope_ix, data=st.dictionaries(st.sampled_from("xyz"), _json, max_size=2))
    def append(self, s: int, data: dict[str, Any]) -> None:
        ev = self._do(self.backend.append_event(self.scopes[s], data))
        assert ev.timestamp == self.clock.now and ev.data == data
        self.events.setdefault(s, []).append((ev.timestamp, ev.id, data))

    @rule(
        s=scope_ix, back=st.sampled_from((None, 0, 5, 40)), width=st.sampled_from((None, 10, 100))
    )
    def list_events(self, s: int, back: int | None, width: int | None) -> None:
        since = None if back is None else self.clock.now - back
        until = None if since is None or width is None else since + width
        page = self._do(
            self.backend.list_events(self.scopes[s], limit=1000, since=since, until=until)
        )
        expected = sorted(
            (
                e
                for e in self.events.get(s, [])
                if (since is None or e[0] >= since) and (until is None or e[0] < until)
            ),
            reverse=True,
        )
        assert [(e.timestamp, e.id, e.data) for e in page] == expected

    @rule(s=scope_ix)
    def erase(self, s: int) -> None:
        self._do(self.backend.erase(self.scopes[s]))
        for tier in ("facts", "project"):
            self.kv.pop((s, tier), None)
        self.events.pop(s, None)

    @rule(seconds=st.sampled_from((1, 5, 29, 31)))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(s=scope_ix)
    def export(self, s: int) -> None:
        export = self._do(self.backend.export(self.scopes[s]))
        assert {r.key: r.value for r in export.facts} == self._live(s, "facts")
        assert {r.key: r.value for r in export.project} == self._live(s, "project")
        assert len(export.events) == len(self.events.get(s, []))

    def teardown(self) -> None:
        for scope in self.scopes:
            self._do(self.backend.erase(scope))

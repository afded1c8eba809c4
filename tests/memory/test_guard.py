"""The public methods are final and catch a backend that returns another scope's data."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from agenthood_mw.memory import (
    Event,
    InMemoryBackend,
    MemoryBackend,
    MemoryScope,
    Record,
    ScopedMemory,
    ScopeViolationError,
    Tier,
)

ALICE = MemoryScope.operator(user="alice")
ALICE_X = MemoryScope.operator(user="alice_x")


class ForgetsTheScope(InMemoryBackend):
    """A buggy backend: every read returns alice_x's data, whatever scope was asked for."""

    async def _get(self, scope: MemoryScope, tier: Tier, key: str, now: float) -> Record | None:
        return await super()._get(ALICE_X, tier, key, now)

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
        return await super()._list(ALICE_X, tier, prefix, upper, after, limit, now)

    async def _search(
        self, scope: MemoryScope, tier: Tier, terms: tuple[str, ...], limit: int, now: float
    ) -> Sequence[Record]:
        return await super()._search(ALICE_X, tier, terms, limit, now)

    async def _list_events(
        self,
        scope: MemoryScope,
        since: float | None,
        until: float | None,
        before: tuple[float, str] | None,
        limit: int,
    ) -> Sequence[Event]:
        return await super()._list_events(ALICE_X, since, until, before, limit)


class StampsTheWrongScope(InMemoryBackend):
    """A buggy backend whose writes come back labelled with another scope."""

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
        return await super()._put(ALICE_X, tier, key, value_json, search, now, expires_at)

    async def _append_event(
        self, scope: MemoryScope, event_id: str, timestamp: float, data_json: str
    ) -> Event:
        return await super()._append_event(ALICE_X, event_id, timestamp, data_json)


async def test_foreign_records_are_withheld_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    backend = ForgetsTheScope()
    await backend.put(ALICE_X, "facts", "secret", "alice_x's secret")
    await backend.append_event(ALICE_X, {"secret": True})
    view = ScopedMemory(backend, ALICE)
    reads = [
        ("get()", view.facts.get("secret")),
        ("list()", view.facts.list()),
        ("list()", view.facts.list("sec")),
        ("search()", view.facts.search("secret")),
        ("list_events()", view.episodic.list()),
        ("list()", view.export()),
    ]
    for op, coro in reads:
        caplog.clear()
        with (
            caplog.at_level(logging.ERROR, logger="agenthood_mw.memory"),
            pytest.raises(ScopeViolationError) as info,
        ):
            await coro
        assert "secret" not in str(info.value)
        assert caplog.records and caplog.records[0].levelno == logging.ERROR
        assert f"ForgetsTheScope.{op}" in caplog.text
        assert "alice_x's secret" not in caplog.text
    # with no foreign data present there is nothing to withhold: the result is simply empty
    assert await ForgetsTheScope().get(ALICE, "facts", "secret") is None


async def test_writes_answered_for_another_scope_are_caught() -> None:
    backend = StampsTheWrongScope()
    with pytest.raises(ScopeViolationError, match="put"):
        await backend.put(ALICE, "facts", "k", 1)
    with pytest.raises(ScopeViolationError, match="append_event"):
        await backend.append_event(ALICE, {"n": 1})


@pytest.mark.parametrize(
    "name",
    [
        *("get", "put", "list", "search", "erase", "export", "list_events", "close", "scoped"),
        # The checks the public methods run around the hooks are final too.
        *("_checked", "_verify", "_verify_key", "_verify_event", "_violation", "_check_open"),
    ],
)
def test_overriding_a_public_method_fails_at_class_creation(name: str) -> None:
    async def sneaky(self: object, *args: object, **kwargs: object) -> None:
        return None

    with pytest.raises(TypeError, match=f"overrides {name}"):
        type("Sneaky", (InMemoryBackend,), {name: sneaky})


def test_hooks_must_be_implemented() -> None:
    class Incomplete(MemoryBackend):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]


async def test_closed_backend_refuses_work() -> None:
    backend = InMemoryBackend()
    await backend.close()
    await backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        await backend.get(ALICE, "facts", "k")

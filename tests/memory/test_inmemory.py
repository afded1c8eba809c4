"""InMemoryBackend bounds: scopes are LRU-evicted, records capped, events ring-buffered."""

from __future__ import annotations

import pytest

from agenthood_mw.memory import InMemoryBackend, MemoryFullError, MemoryScope


async def test_bounds() -> None:
    now = [100.0]
    backend = InMemoryBackend(max_scopes=2, max_records=3, max_events=4, clock=lambda: now[0])
    a, b, c = (MemoryScope.operator(user=u) for u in "abc")
    for n in range(3):
        await backend.put(a, "facts" if n % 2 else "project", f"k{n}", n)
    with pytest.raises(MemoryFullError, match="max_records"):
        await backend.put(a, "facts", "k3", 3)
    await backend.put(a, "facts", "k1", "overwrite is fine")
    await backend.delete(a, "project", "k0")
    await backend.put(a, "facts", "k3", 3, ttl=1)
    now[0] += 5  # k3 expired: its slot is reclaimed on the next put
    await backend.put(a, "facts", "k4", 4)
    assert [r.key for r in await backend.list(a, "facts")] == ["k1", "k4"]
    for n in range(6):
        await backend.append_event(a, {"n": n})
    assert [e.data["n"] for e in await backend.list_events(a)] == [5, 4, 3, 2]
    await backend.put(b, "facts", "k", "b")
    await backend.get(a, "facts", "k1")  # a is now the most recently used
    await backend.put(c, "facts", "k", "c")  # evicts b
    assert await backend.get(b, "facts", "k") is None
    assert await backend.get(a, "facts", "k1") is not None


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="max_scopes"):
        InMemoryBackend(max_scopes=0)
    with pytest.raises(TypeError, match="max_records"):
        InMemoryBackend(max_records=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock"):
        InMemoryBackend(clock=3)  # type: ignore[arg-type]

"""The semantics table and invariants of the pure GCRA + moving-window core."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenthood_mw._core.gcra import Policy, WindowState, commit, evaluate
from agenthood_mw.ratelimit import RateLimiter

from .helpers import Clock

P = Policy.create(window=60, max=20, burst=5)


def hit(policy: Policy, state: WindowState, now: float, cost: int = 1) -> bool:
    outcome = evaluate(policy, state, now, cost)
    if outcome.allowed:
        commit(policy, state, now, cost)
    return outcome.allowed


def test_thirty_at_once_admits_twenty_five() -> None:
    state = WindowState()
    assert sum(hit(P, state, 0.0) for _ in range(30)) == 25


def test_as_fast_as_possible_for_ten_minutes_is_224() -> None:
    """A client that retries the moment it is allowed to: 25,25,25,25,24 then 20 a minute."""
    state = WindowState()
    per_minute = [0] * 10
    now = 0.0
    for _ in range(10_000):
        if now >= 600:
            break
        outcome = evaluate(P, state, now)
        if outcome.allowed:
            commit(P, state, now)
            per_minute[int(now // 60)] += 1
        else:
            now += outcome.retry_after
    assert per_minute == [25, 25, 25, 25, 24, 20, 20, 20, 20, 20]
    assert sum(per_minute) == 224


def test_polling_client_every_100ms_gets_the_same_224() -> None:
    state = WindowState()
    per_minute = [0] * 10
    for i in range(6000):
        now = i / 10
        if hit(P, state, now):
            per_minute[int(now // 60)] += 1
    assert per_minute == [25, 25, 25, 25, 24, 20, 20, 20, 20, 20]


def test_burst_zero_is_exactly_max_per_rolling_window() -> None:
    policy = Policy.create(window=60, max=20, burst=0)
    state = WindowState()
    admitted = [i / 10 for i in range(6000) if hit(policy, state, i / 10)]
    assert sum(1 for t in admitted if t < 60) == 20
    for t in admitted:
        assert sum(1 for u in admitted if t <= u < t + 60) <= 20
    assert len(admitted) == 200  # 20 per minute, sustained


def test_refused_request_changes_nothing() -> None:
    state = WindowState()
    for _ in range(25):
        assert hit(P, state, 0.0)
    tat, log = state.tat, list(state.log)
    for _ in range(100):
        assert not hit(P, state, 1.0)
    assert (state.tat, state.log) == (tat, log)


def test_retry_after_is_exact_and_honest() -> None:
    state = WindowState()
    for _ in range(25):
        hit(P, state, 0.0)
    outcome = evaluate(P, state, 10.0)
    assert not outcome.allowed
    assert outcome.retry_after == pytest.approx(50.0)  # the window frees at t=60
    assert not hit(P, state, 10.0 + outcome.retry_after - 0.001)
    assert hit(P, state, 10.0 + outcome.retry_after)


def test_remaining_and_reset_after() -> None:
    state = WindowState()
    first = evaluate(P, state, 0.0)
    assert (first.allowed, first.remaining) == (True, 24)
    commit(P, state, 0.0)
    assert first.reset_after == pytest.approx(60.0)
    for _ in range(24):
        hit(P, state, 0.0)
    last = evaluate(P, state, 0.0)
    assert (last.allowed, last.remaining) == (False, 0)
    assert last.reset_after == pytest.approx(75.0)  # 25 emission intervals of 3 s


def test_cost_weighs_and_too_costly_is_never_admitted() -> None:
    state = WindowState()
    assert hit(P, state, 0.0, cost=20)
    assert hit(P, state, 0.0, cost=5)
    assert not hit(P, state, 0.0, cost=1)
    outcome = evaluate(P, WindowState(), 0.0, cost=26)
    assert not outcome.allowed
    assert math.isinf(outcome.retry_after)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 60, "max": 0}, "max"),
        ({"window": 60, "max": 5, "burst": -1}, "burst"),
        ({"window": 0, "max": 5}, "window"),
        ({"window": 60, "max": 1.5}, "max"),
    ],
)
def test_policy_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        Policy.create(**kwargs)  # type: ignore[arg-type]


# --- property tests ------------------------------------------------------------------------

requests = st.lists(
    st.tuples(st.integers(min_value=0, max_value=5_000), st.integers(min_value=1, max_value=4)),
    min_size=1,
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(
    gaps=requests,
    window_ms=st.integers(min_value=100, max_value=60_000),
    max_=st.integers(min_value=1, max_value=30),
    burst=st.integers(min_value=0, max_value=10),
)
def test_never_more_than_max_plus_burst_in_any_rolling_window(
    gaps: list[tuple[int, int]], window_ms: int, max_: int, burst: int
) -> None:
    window = window_ms / 1000
    policy = Policy.create(window=window, max=max_, burst=burst)
    state = WindowState()
    now_ms = 0
    admitted: list[tuple[int, int]] = []
    for gap, cost in gaps:
        now_ms += gap
        if hit(policy, state, now_ms / 1000, cost):
            admitted.append((now_ms, cost))
    for start, _ in admitted:
        in_window = sum(c for t, c in admitted if start <= t < start + window_ms)
        assert in_window <= max_ + burst
    # Sustained: over any span, GCRA admits at most capacity + span * max / window units.
    if admitted:
        first, last = admitted[0][0], admitted[-1][0]
        total = sum(c for _, c in admitted)
        assert total <= max_ + burst + (last - first) * max_ / window_ms + 1e-6


@settings(max_examples=150, deadline=None)
@given(
    gaps=requests,
    max_=st.integers(min_value=1, max_value=30),
)
def test_burst_zero_never_exceeds_max_per_window(gaps: list[tuple[int, int]], max_: int) -> None:
    window_ms = 10_000
    policy = Policy.create(window=window_ms / 1000, max=max_, burst=0)
    state = WindowState()
    now_ms = 0
    admitted: list[tuple[int, int]] = []
    for gap, cost in gaps:
        now_ms += gap
        if hit(policy, state, now_ms / 1000, cost):
            admitted.append((now_ms, cost))
    for start, _ in admitted:
        assert sum(c for t, c in admitted if start <= t < start + window_ms) <= max_


@settings(max_examples=100, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["alice", "bob", "carol"]), st.integers(0, 3000)),
        max_size=200,
    )
)
def test_keys_never_share_quota(events: list[tuple[str, int]]) -> None:
    """Interleaving other users' requests never changes one user's decisions."""
    clock = Clock(0.0)
    shared = RateLimiter(window="10s", max=3, burst=2, clock=clock)
    alone = {u: RateLimiter(window="10s", max=3, burst=2, clock=clock) for u in ("alice", "bob")}
    now = 0.0
    for user, gap in events:
        now += gap / 1000
        clock.now = now
        got = shared.hit_sync(user)
        if user in alone:
            assert got == alone[user].hit_sync(user)


def test_long_logs_expire_in_amortised_constant_time_and_stay_exact() -> None:
    """Thousands of admissions per window: lazy compaction keeps the count exact."""
    policy = Policy.create(window=1, max=400, burst=100)
    state = WindowState()
    admitted: list[int] = []  # ticks of 0.25 ms, compared as integers (no float boundary)
    for i in range(20_000):  # every 0.25 ms for 5 s
        if hit(policy, state, i / 4000):
            admitted.append(i)
    assert len(state.log) <= 2 * 2 * 500 + 130  # bounded: live entries plus a lazy prefix
    assert sum(1 for t in admitted if t < 4000) == 500  # burst ceiling in the first second
    assert len(admitted) == 500 + 400 * 5 - 1  # then one every 2.5 ms, as the 224 of the table
    j = 0
    for i, t in enumerate(admitted):
        while t - admitted[j] >= 4000:
            j += 1
        assert i - j + 1 <= 500


# ``admit`` is the one-pass form of ``evaluate`` + ``commit`` (the in-process hot path): the
# same decision and the same state after every request, for any policy and request stream,
# including weightless requests, requests heavier than the capacity and simultaneous ones.
steps = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from([0.0, 0.0, 1e-9, 0.001, 0.5, 1.0, 2.9, 3.0, 7.5, 59.999, 60.0, 61.0]),
            st.floats(min_value=0.0, max_value=70.0),
        ),
        st.integers(min_value=0, max_value=30),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(
    window=st.sampled_from([1.0, 10.0, 60.0, 3600.0]),
    max_=st.integers(min_value=1, max_value=25),
    burst=st.integers(min_value=0, max_value=10),
    stream=steps,
    start=st.sampled_from([0.0, 1000.0, 1.7e9]),  # monotonic and Unix-time magnitudes
)
def test_admit_equals_evaluate_then_commit(
    window: float, max_: int, burst: int, stream: list[tuple[float, int]], start: float
) -> None:
    from agenthood_mw._core.gcra import admit

    policy = Policy.create(window=window, max=max_, burst=burst)
    one, two = WindowState(), WindowState()
    now = start
    for dt, cost in stream:
        now += dt
        fused = admit(policy, one, now, cost)
        expected = evaluate(policy, two, now, cost)
        if expected.allowed:
            commit(policy, two, now, cost)
        assert fused == expected
        assert (one.tat, one.total, one.head, one.log) == (two.tat, two.total, two.head, two.log)

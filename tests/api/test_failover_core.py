"""The sans-I/O failover policy: failure classification and the circuit breaker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenthood_mw._core.failover import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    FailureKind,
    classify_status,
    should_fail_over,
)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses_fail_over(status: int) -> None:
    assert classify_status(status)
    assert should_fail_over(FailureKind.HTTP, status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
def test_request_errors_do_not_fail_over(status: int) -> None:
    assert not classify_status(status)
    assert not should_fail_over(FailureKind.HTTP, status)


@given(st.integers(min_value=400, max_value=599))
def test_classification_is_5xx_or_a_short_list(status: int) -> None:
    assert classify_status(status) == (status >= 500 or status in {408, 425, 429})


@pytest.mark.parametrize(
    "kind", [FailureKind.CONNECTION, FailureKind.TIMEOUT, FailureKind.PROTOCOL]
)
def test_transport_failures_fail_over(kind: FailureKind) -> None:
    assert should_fail_over(kind)


def test_http_failure_needs_a_status() -> None:
    with pytest.raises(ValueError, match="status"):
        should_fail_over(FailureKind.HTTP)
    with pytest.raises(TypeError):
        classify_status("500")  # type: ignore[arg-type]


def test_breaker_opens_after_threshold_and_half_opens_after_cooldown() -> None:
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=2, cooldown=10, max_cooldown=40))
    assert breaker.state(0) is BreakerState.CLOSED
    breaker.record_failure(0)
    assert breaker.state(0) is BreakerState.CLOSED and breaker.allow(0)
    breaker.record_failure(1)
    assert breaker.state(1) is BreakerState.OPEN
    assert not breaker.allow(5)
    assert breaker.retry_at() == 11
    # cooldown over: exactly one trial goes through
    assert breaker.state(11) is BreakerState.HALF_OPEN
    assert breaker.allow(11)
    assert not breaker.allow(11)
    # trial fails: open again with a doubled cooldown
    breaker.record_failure(12)
    assert breaker.state(12) is BreakerState.OPEN
    assert breaker.state(31) is BreakerState.OPEN
    assert breaker.state(32) is BreakerState.HALF_OPEN
    assert breaker.allow(32)
    breaker.record_failure(32)  # cooldown 40 (capped)
    assert breaker.retry_at() == 72
    assert breaker.allow(72)
    breaker.record_success(72)
    assert breaker.state(72) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    # after success the cooldown is back to its base value
    breaker.record_failure(80)
    breaker.record_failure(80)
    assert breaker.retry_at() == 90


def test_success_resets_consecutive_failures() -> None:
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=3))
    breaker.record_failure(0)
    breaker.record_failure(0)
    breaker.record_success(0)
    breaker.record_failure(0)
    breaker.record_failure(0)
    assert breaker.state(0) is BreakerState.CLOSED


def test_release_frees_the_trial_slot() -> None:
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1, cooldown=1))
    breaker.record_failure(0)
    assert breaker.allow(1)
    breaker.release()
    assert breaker.state(1) is BreakerState.HALF_OPEN
    assert breaker.allow(1)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"failure_threshold": 0}, ValueError),
        ({"failure_threshold": 1.5}, TypeError),
        ({"cooldown": -1}, ValueError),
        ({"cooldown": float("nan")}, ValueError),
        ({"cooldown": "30s"}, TypeError),
        ({"cooldown": 60, "max_cooldown": 30}, ValueError),
    ],
)
def test_breaker_config_is_validated(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        BreakerConfig(**kwargs)  # type: ignore[arg-type]


_ops = st.lists(
    st.tuples(
        st.sampled_from(["allow", "success", "failure", "release"]),
        st.floats(min_value=0, max_value=50),
    ),
    max_size=60,
)


@given(ops=_ops, threshold=st.integers(min_value=1, max_value=4))
def test_breaker_invariants(ops: list[tuple[str, float]], threshold: int) -> None:
    """Under any sequence of events: an OPEN breaker never lets a call through; HALF_OPEN lets
    one trial through until its outcome is known; a success always closes; the cooldown stays
    within its bounds."""
    config = BreakerConfig(failure_threshold=threshold, cooldown=5, max_cooldown=20)
    breaker = CircuitBreaker(config)
    now = 0.0
    in_flight = False
    for op, advance in ops:
        now += advance
        state = breaker.state(now)
        if op == "allow":
            allowed = breaker.allow(now)
            if state is BreakerState.OPEN:
                assert not allowed
            elif state is BreakerState.CLOSED:
                assert allowed
            else:
                assert allowed == (not in_flight)
                in_flight = in_flight or allowed
        elif op == "success":
            breaker.record_success(now)
            in_flight = False
            assert breaker.state(now) is BreakerState.CLOSED
        elif op == "failure":
            breaker.record_failure(now)
            in_flight = False
            if breaker.consecutive_failures >= threshold:
                assert breaker.state(now) is BreakerState.OPEN
        else:
            breaker.release()
            in_flight = False
        retry = breaker.retry_at()
        if retry is not None:  # open: the trial comes at most max_cooldown from now
            assert retry <= now + 20
            assert (breaker.state(now) is BreakerState.HALF_OPEN) == (now >= retry)

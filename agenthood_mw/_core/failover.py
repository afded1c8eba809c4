"""Sans-I/O provider failover policy: which failures move on, and the circuit breaker.

No clock, no I/O: callers pass ``now`` (seconds from any monotonic clock) to every breaker
method, so a plain unit test drives the whole state machine.

Failure classification (OpenAI-compatible HTTP semantics):

* connection errors, timeouts, malformed responses, HTTP 408, 425, 429 and every 5xx → the
  next provider is tried;
* every other 4xx (400, 401, 403, 404, 422 ...) → the request itself is wrong (or the
  credential is): another provider would refuse it too, so the error is raised at once.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "FailureKind",
    "classify_status",
    "should_fail_over",
]

#: HTTP statuses that mean "this provider cannot serve now, another may".
RETRYABLE_STATUSES: Final = frozenset({408, 425, 429})


class FailureKind(enum.Enum):
    """Why one provider attempt failed."""

    CONNECTION = "connection_error"
    TIMEOUT = "timeout"
    HTTP = "http_error"
    PROTOCOL = "invalid_response"


def classify_status(status: int) -> bool:
    """True when an HTTP ``status`` from a provider should fail over to the next one."""
    if not isinstance(status, int) or isinstance(status, bool):
        raise TypeError("status must be an int")
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


def should_fail_over(kind: FailureKind, status: int | None = None) -> bool:
    """True when a failure of ``kind`` (with HTTP ``status`` for :attr:`FailureKind.HTTP`)
    should move on to the next provider; False when it must be raised to the caller.

    A malformed body from a provider (:attr:`FailureKind.PROTOCOL`) is that provider's fault,
    so it fails over.
    """
    if kind is FailureKind.HTTP:
        if status is None:
            raise ValueError("an HTTP failure needs its status")
        return classify_status(status)
    return True


class BreakerState(enum.Enum):
    """Circuit-breaker states (the classic three)."""

    CLOSED = "closed"  # healthy: calls go through
    OPEN = "open"  # cooling down: calls are skipped
    HALF_OPEN = "half_open"  # cooldown over: one trial call decides


@dataclass(frozen=True)
class BreakerConfig:
    """Breaker settings.

    Attributes:
        failure_threshold: consecutive failover-class failures that open the breaker.
        cooldown: seconds an open breaker skips the provider before a trial call.
        max_cooldown: the cooldown doubles after each failed trial, up to this bound.
    """

    failure_threshold: int = 3
    cooldown: float = 30.0
    max_cooldown: float = 300.0

    def __post_init__(self) -> None:
        if isinstance(self.failure_threshold, bool) or not isinstance(self.failure_threshold, int):
            raise TypeError("failure_threshold must be an int")
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        for option in ("cooldown", "max_cooldown"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{option} must be a number of seconds")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{option} must be a positive number of seconds")
        if self.max_cooldown < self.cooldown:
            raise ValueError("max_cooldown must be >= cooldown")


class CircuitBreaker:
    """One provider's breaker. Not thread-safe by itself; the async shell is single-threaded.

    CLOSED --(``failure_threshold`` consecutive failures)--> OPEN --(cooldown elapsed)-->
    HALF_OPEN --(trial succeeds)--> CLOSED, or --(trial fails)--> OPEN with a doubled cooldown.
    """

    __slots__ = ("_config", "_current_cooldown", "_failures", "_opened_at", "_trial_in_flight")

    def __init__(self, config: BreakerConfig | None = None) -> None:
        self._config = config or BreakerConfig()
        self._failures = 0
        self._opened_at: float | None = None
        self._current_cooldown = self._config.cooldown
        self._trial_in_flight = False

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def state(self, now: float) -> BreakerState:
        """The state at time ``now``."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        if now >= self._opened_at + self._current_cooldown:  # the same sum as retry_at()
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def retry_at(self) -> float | None:
        """When an open breaker lets a trial call through (``None`` when closed)."""
        if self._opened_at is None:
            return None
        return self._opened_at + self._current_cooldown

    def allow(self, now: float) -> bool:
        """Whether a call may be attempted now. In HALF_OPEN only one trial is let through
        until its outcome is recorded."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._trial_in_flight:
            return False
        self._trial_in_flight = True
        return True

    def record_success(self, now: float) -> None:
        """A call succeeded: close the breaker and reset the cooldown."""
        del now
        self._failures = 0
        self._opened_at = None
        self._current_cooldown = self._config.cooldown
        self._trial_in_flight = False

    def record_failure(self, now: float) -> None:
        """A failover-class failure: count it; open (or re-open, longer) the breaker."""
        was_trial = self._trial_in_flight
        self._trial_in_flight = False
        self._failures += 1
        if was_trial and self._opened_at is not None:
            self._current_cooldown = min(self._current_cooldown * 2, self._config.max_cooldown)
            self._opened_at = now
        elif self._failures >= self._config.failure_threshold:
            self._opened_at = now

    def release(self) -> None:
        """An attempt ended without a verdict on the provider's health (the request itself was
        refused, e.g. 400): free the half-open trial slot without changing state."""
        self._trial_in_flight = False

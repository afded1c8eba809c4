"""Pure rate-limit maths: GCRA combined with a moving-window log (no I/O, no clock).

A rule admits ``max`` requests per ``window`` sustained, plus a ``burst`` allowance:

* a GCRA (token bucket) with emission interval ``T = window / max`` and capacity
  ``C = max + burst``: a request of weight ``cost`` is admitted when the *theoretical arrival
  time* after it, ``max(tat, now) + cost * T``, is at most ``now + C * T``;
* a moving-window ceiling: at most ``C`` admitted units in any half-open interval of length
  ``window`` (an admitted unit counts while ``now - t < window``), kept as a log of
  ``(time, units)`` pairs with a running total.

Both must admit; a refused request changes nothing. Every function takes ``now`` explicitly, so
tests drive them with any clock. The same algorithm runs as one Lua script in Redis
(:mod:`agenthood_mw.ratelimit._redis`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "EPSILON",
    "Policy",
    "RateLimitDecision",
    "WindowState",
    "admit",
    "commit",
    "evaluate",
    "more_after",
]

#: Tolerance (seconds) for float rounding: a client that waits exactly ``retry_after`` is admitted.
EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Policy:
    """One rule's numbers, derived once at construction.

    Attributes:
        window: the window length in seconds.
        max: sustained admissions per window.
        burst: extra admissions allowed at once (refilled at the sustained rate).
        capacity: ``max + burst``, the most units admitted in any window.
        interval: the GCRA emission interval ``window / max``.
        tau: ``capacity * interval``, how far the theoretical arrival time may run ahead.
        ttl: after this long without an admission a key's state equals a fresh key's.
        name: the rule's name, reported in decisions and headers.
    """

    window: float
    max: int
    burst: int
    capacity: int
    interval: float
    tau: float
    ttl: float
    name: str = "default"

    @classmethod
    def create(cls, *, window: float, max: int, burst: int = 0, name: str = "default") -> Policy:
        """Validate and derive (``window`` in seconds)."""
        if not (isinstance(window, int | float) and math.isfinite(window) and window > 0):
            raise ValueError(f"window: must be a positive number of seconds, got {window!r}")
        if isinstance(max, bool) or not isinstance(max, int):
            raise TypeError(f"max: expected an int, got {type(max).__name__}")
        if max < 1:
            raise ValueError(f"max: must be at least 1, got {max}")
        if isinstance(burst, bool) or not isinstance(burst, int):
            raise TypeError(f"burst: expected an int, got {type(burst).__name__}")
        if burst < 0:
            raise ValueError(f"burst: must be 0 or more, got {burst}")
        capacity = max + burst
        interval = float(window) / max
        tau = interval * capacity
        return cls(float(window), max, burst, capacity, interval, tau, tau, name)


class WindowState:
    """Mutable per-key state: the GCRA theoretical arrival time and the admitted-units log.

    ``log`` is flat and oldest first: ``[t0, n0, t1, n1, ...]``, ``n`` units admitted at time
    ``t`` (one pair per admission, so a weighted request costs one entry, not ``n``). Entries
    before index ``head`` have expired (they are compacted away lazily, so expiring is O(1)
    amortised); ``total`` is the sum of the live ``n``. ``log`` is empty or has a live entry.
    """

    __slots__ = ("head", "log", "tat", "total")

    def __init__(self) -> None:
        self.tat = -math.inf
        self.total = 0
        self.head = 0
        self.log: list[float] = []


class RateLimitDecision(NamedTuple):
    """The outcome of one rate-limit check.

    Attributes:
        allowed: whether the request was admitted (and counted).
        limit: the most units admitted in any window (``max + burst``).
        remaining: unit requests that would still be admitted right after this one.
        reset_after: seconds until the quota is fully restored.
        retry_after: seconds until a refused request would be admitted (0 when admitted,
            ``inf`` when its cost exceeds ``limit`` and it can never be admitted).
        policy: the name of the rule that decided.
        more_after: seconds until at least one more unit is available (``remaining`` grows),
            0 when the quota is full: the ``t`` of the ``RateLimit`` field. ``None`` (a
            decision built by hand) means "use ``reset_after``".
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float
    policy: str = "default"
    more_after: float | None = None


def _more_after(
    policy: Policy, base: float, bucket: int, left: int, oldest: float, now: float
) -> float:
    """Seconds until a quota grows by one unit (0 when it is full).

    ``base`` is the theoretical arrival time (not before ``now``), ``bucket`` the units the
    GCRA would admit now, ``left`` the units the window would (``capacity - total``) and
    ``oldest`` the time of the oldest unit in the window. The quota is the smaller of the two;
    whichever is the smaller grows first, and when both are equal both must grow. For a
    refused unit request this equals its ``retry_after``.
    """
    capacity = policy.capacity
    if bucket >= capacity and left >= capacity:
        return 0.0
    wait = 0.0
    if bucket <= left:
        wait = base - policy.tau + (bucket + 1) * policy.interval - now
    if left <= bucket and left < capacity:
        frees = oldest + policy.window - now
        if frees > wait:
            wait = frees
    return wait if wait > 0 else 0.0


def _bucket(policy: Policy, base: float, now: float) -> int:
    """Units the GCRA would admit at ``now`` with theoretical arrival time ``base``."""
    return int((policy.tau - (base - now)) / policy.interval + EPSILON)


def more_after(policy: Policy, state: WindowState, now: float) -> float:
    """Seconds until the quota of ``state`` grows by one unit (0 when full): ``t``."""
    base = state.tat if state.tat > now else now
    oldest = state.log[state.head] if state.log else now
    left = policy.capacity - state.total
    return _more_after(policy, base, _bucket(policy, base, now), left, oldest, now)


def _expire(state: WindowState, now: float, window: float) -> None:
    """Drop entries that left the window (``now - t >= window``)."""
    log = state.log
    cut = now - window + EPSILON
    i = state.head
    n = len(log)
    dropped = 0
    while i < n and log[i] <= cut:
        dropped += int(log[i + 1])
        i += 2
    state.total -= dropped
    if i >= n:
        log.clear()
        i = 0
    elif i > 64 and 2 * i > n:
        del log[:i]
        i = 0
    state.head = i


def _frees_at(log: list[float], head: int, units: int) -> float:
    """Admission time of the entry whose expiry frees ``units`` units (oldest first)."""
    acc = 0.0
    for i in range(head, len(log), 2):
        acc += log[i + 1]
        if acc >= units:
            return log[i]
    return math.inf  # pragma: no cover - callers ask for at most ``total`` units


def evaluate(policy: Policy, state: WindowState, now: float, cost: int = 1) -> RateLimitDecision:
    """Decide one request of weight ``cost`` at time ``now`` without counting it.

    Expired log entries are dropped from ``state`` (that does not change any decision).
    Call :func:`commit` to record an admitted request.
    """
    log = state.log
    window = policy.window
    if log and log[state.head] <= now - window + EPSILON:
        _expire(state, now, window)
    interval = policy.interval
    capacity = policy.capacity
    tat = state.tat
    base = tat if tat > now else now
    count = state.total
    if cost <= capacity:
        new_tat = base + cost * interval
        gcra_wait = new_tat - policy.tau - now
        excess = count + cost - capacity
        window_wait = _frees_at(log, state.head, excess) + window - now if excess > 0 else 0.0
        if gcra_wait <= EPSILON and window_wait <= EPSILON:
            remaining = int((policy.tau - (new_tat - now)) / interval + EPSILON)
            left = capacity - count - cost
            reset = new_tat - now
            # The newest logged unit is this request's (or, for cost 0, the last one's).
            if cost:
                if reset < window:
                    reset = window
            elif log and log[-2] + window - now > reset:
                reset = log[-2] + window - now
            # The state after commit(): the bucket at new_tat, count + cost units.
            oldest = log[state.head] if log else now
            more = _more_after(policy, new_tat, remaining, left, oldest, now)
            return RateLimitDecision(
                True,
                capacity,
                left if left < remaining else remaining,
                reset,
                0.0,
                policy.name,
                more,
            )
        retry = gcra_wait if gcra_wait > window_wait else window_wait
    else:
        retry = math.inf
    remaining = int((policy.tau - (base - now)) / interval + EPSILON)
    left = capacity - count
    if left < remaining:
        remaining = left
    reset = base - now
    if log and log[-2] + window - now > reset:
        reset = log[-2] + window - now
    return RateLimitDecision(
        False,
        capacity,
        max(remaining, 0),
        max(reset, 0.0),
        max(retry, 0.0),
        policy.name,
        _more_after(
            policy,
            base,
            _bucket(policy, base, now),
            capacity - count,
            log[state.head] if log else now,
            now,
        ),
    )


def commit(policy: Policy, state: WindowState, now: float, cost: int = 1) -> None:
    """Record an admitted request of weight ``cost`` at time ``now`` in ``state``."""
    if cost <= 0:
        return  # a weightless request admits and records nothing
    tat = state.tat
    state.tat = (tat if tat > now else now) + cost * policy.interval
    log = state.log
    if log and log[-2] == now:
        log[-1] += cost
    else:
        log.append(now)
        log.append(cost)
    state.total += cost


def admit(policy: Policy, state: WindowState, now: float, cost: int = 1) -> RateLimitDecision:
    """:func:`evaluate`, then :func:`commit` when the request is admitted: one pass.

    The same decision and the same resulting state as the two calls (a property test pins
    this); the common case -- a request of weight >= 1 with room in both the bucket and the
    window -- is decided and recorded without a second function call.
    """
    log = state.log
    window = policy.window
    if log and log[state.head] <= now - window + EPSILON:
        _expire(state, now, window)
    count = state.total
    capacity = policy.capacity
    if cost >= 1 and count + cost <= capacity:
        tat = state.tat
        interval = policy.interval
        new_tat = (tat if tat > now else now) + cost * interval
        ahead = new_tat - now
        tau = policy.tau
        if new_tat - tau - now <= EPSILON:  # the same expression as evaluate()'s
            state.tat = new_tat
            if log and log[-2] == now:
                log[-1] += cost
            else:
                log.append(now)
                log.append(cost)
            state.total = count + cost
            remaining = int((tau - ahead) / interval + EPSILON)
            left = capacity - count - cost
            return RateLimitDecision(
                True,
                capacity,
                left if left < remaining else remaining,
                ahead if ahead > window else window,
                0.0,
                policy.name,
                _more_after(policy, new_tat, remaining, left, log[state.head], now),
            )
    decision = evaluate(policy, state, now, cost)
    if decision.allowed:
        commit(policy, state, now, cost)
    return decision

"""``RateLimiter``: one rule on one storage, usable outside the middleware."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote

from agenthood_mw._core import keys
from agenthood_mw._core.durations import parse_duration
from agenthood_mw._core.gcra import Policy
from agenthood_mw._core.ratelimit import (
    RateLimitDecision,
    RateLimitRule,
    validate_storage,
    validate_strategy,
)
from agenthood_mw._core.urls import check_redis_url
from agenthood_mw.ratelimit._memory import DEFAULT_MAX_KEYS, MemoryGCRA

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "Backend",
    "FailureLog",
    "RateLimitStorageError",
    "RateLimiter",
    "make_backend",
]

DEFAULT_KEY_PREFIX = "agenthood:rl:"
logger = logging.getLogger("agenthood_mw.ratelimit")

Item = tuple[Policy, str, int]


class RateLimitStorageError(Exception):
    """The rate-limit storage (Redis) could not be reached or answered with an error."""


class Backend(Protocol):
    """What every storage implementation offers (all-or-nothing over a request's rules)."""

    errors: tuple[type[BaseException], ...]

    async def hit(self, items: Sequence[Item]) -> list[RateLimitDecision]: ...

    def hit_sync(self, items: Sequence[Item]) -> list[RateLimitDecision]: ...


class _MemoryBackend:
    """Adapts :class:`MemoryGCRA` to :class:`Backend`."""

    errors: tuple[type[BaseException], ...] = ()

    def __init__(self, store: MemoryGCRA) -> None:
        self.store = store

    async def hit(self, items: Sequence[Item]) -> list[RateLimitDecision]:
        return self.store.hit(items)

    def hit_sync(self, items: Sequence[Item]) -> list[RateLimitDecision]:
        return self.store.hit_sync(items)


def make_backend(
    *,
    storage: object,
    strategy: object,
    key_prefix: object = DEFAULT_KEY_PREFIX,
    storage_options: Mapping[str, Any] | None = None,
    clock: Callable[[], float] | None = None,
    max_keys: object = DEFAULT_MAX_KEYS,
    windows: Sequence[float] = (),
) -> Backend:
    """Validate the storage options and build the backend (no network I/O here)."""
    scheme = validate_storage(storage)
    strategy = validate_strategy(strategy)
    assert isinstance(storage, str)
    if scheme != "memory":
        # A malformed URL (bad port, database, query option) fails here, not on every request.
        check_redis_url(storage, option="storage")
    if not isinstance(key_prefix, str) or not key_prefix or "{" in key_prefix or "}" in key_prefix:
        raise ValueError("key_prefix: expected a non-empty string without '{' or '}'")
    if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
        raise ValueError(f"max_keys: expected a positive int, got {max_keys!r}")
    if storage_options is not None and not isinstance(storage_options, Mapping):
        raise TypeError("storage_options: expected a mapping of client options")
    if clock is not None:
        if not callable(clock):
            raise TypeError("clock: expected a callable returning seconds")
        if scheme != "memory" or strategy != "gcra":
            raise ValueError("clock: only supported with storage='memory://' and strategy='gcra'")
    if strategy != "gcra":
        for window in windows:
            if window < 1 or window != int(window):
                raise ValueError(
                    f"window: strategy={strategy!r} needs a whole number of seconds, got {window}"
                )
        from agenthood_mw.ratelimit._windows import LimitsWindows

        return LimitsWindows(strategy, storage, key_prefix=key_prefix, options=storage_options)
    if scheme == "memory":
        return _MemoryBackend(MemoryGCRA(clock=clock, max_keys=max_keys))
    from agenthood_mw.ratelimit._redis import RedisGCRA

    return RedisGCRA(storage, key_prefix=key_prefix, options=storage_options)


class FailureLog:
    """Counts storage failures and logs a warning at most once per ``interval`` seconds."""

    __slots__ = ("_last", "count", "interval")

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self.count = 0
        self._last = -float("inf")

    def record(self, exc: BaseException, *, fail_open: bool) -> None:
        """Count one failure; warn if the last warning is older than the interval."""
        self.count += 1
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            logger.warning(
                "rate-limit storage unavailable (%s: %s); requests are %s (%d failures so far)",
                type(exc).__name__,
                exc,
                "admitted (fail_open=True)" if fail_open else "refused with 503",
                self.count,
            )


def check_cost(cost: object) -> int:
    """A request's weight: an int >= 0."""
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError(f"cost: expected an int, got {type(cost).__name__}")
    if cost < 0:
        raise ValueError(f"cost: must be 0 or more, got {cost}")
    return cost


class RateLimiter:
    """One limit (``max`` per ``window`` plus ``burst``) on one storage, keyed by any string.

    Usable on its own, e.g. to bound tokens per minute::

        limiter = RateLimiter(window="1m", max=100_000, storage="redis://localhost:6379")
        decision = await limiter.hit(f"user:{user_id}", cost=tokens)
        if not decision.allowed:
            ...  # wait decision.retry_after seconds

    Args:
        window: ``"30s"``, ``"1m"``, ``"1h"``, ``"1d"`` or seconds.
        max: sustained admissions per window (>= 1).
        burst: extra admissions allowed at once (>= 0); see ``docs/rate-limiting.md``.
        storage: ``memory://`` (per process), ``redis://``, ``rediss://``,
            ``redis+sentinel://``, ``redis+cluster://``.
        strategy: ``"gcra"`` (GCRA + moving-window ceiling, one Redis round trip),
            ``"moving-window"``, ``"sliding-window"`` or ``"fixed-window"`` (limits).
        name: the policy name (also part of the storage key).
        key_prefix: prefix of every Redis key.
        storage_options: extra keyword arguments for the Redis client.
        clock: a seconds clock for ``memory://`` + ``gcra`` (tests); default monotonic.
        max_keys: bound on keys held by ``memory://`` + ``gcra``.

    Raises:
        RateLimitStorageError: from :meth:`hit` / :meth:`hit_sync` when the storage fails.
    """

    def __init__(
        self,
        *,
        window: object,
        max: int,
        burst: int = 0,
        storage: str = "memory://",
        strategy: str = "gcra",
        name: str = "default",
        key_prefix: str = DEFAULT_KEY_PREFIX,
        storage_options: Mapping[str, Any] | None = None,
        clock: Callable[[], float] | None = None,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        rule = RateLimitRule(window=window, max=max, burst=burst, name=name)
        self.name = rule.name
        self.policy = Policy.create(
            window=rule.window, max=rule.max, burst=rule.burst, name=rule.name
        )
        self.window = parse_duration(window, option="window")
        self._backend = make_backend(
            storage=storage,
            strategy=strategy,
            key_prefix=key_prefix,
            storage_options=storage_options,
            clock=clock,
            max_keys=max_keys,
            windows=(rule.window,),
        )

    def _items(self, key: str, cost: int) -> list[Item]:
        if not isinstance(key, str):
            raise TypeError(f"key: expected a str, got {type(key).__name__}")
        subject = quote(key, safe="")
        return [(self.policy, keys.rate_limit_key(subject, self.name), check_cost(cost))]

    async def hit(self, key: str, cost: int = 1) -> RateLimitDecision:
        """Count ``cost`` units for ``key`` if the limit admits them (nothing when refused)."""
        items = self._items(key, cost)
        try:
            return (await self._backend.hit(items))[0]
        except self._backend.errors as exc:
            raise RateLimitStorageError(f"{type(exc).__name__}: {exc}") from exc

    def hit_sync(self, key: str, cost: int = 1) -> RateLimitDecision:
        """:meth:`hit` for synchronous code (WSGI, threads)."""
        items = self._items(key, cost)
        try:
            return self._backend.hit_sync(items)[0]
        except self._backend.errors as exc:
            raise RateLimitStorageError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Release storage connections (asyncio)."""
        closer = getattr(self._backend, "aclose", None)
        if closer is not None:
            await closer()

    def close(self) -> None:
        """Release storage connections (blocking)."""
        closer = getattr(self._backend, "close", None)
        if closer is not None:
            closer()

"""The window strategies (``moving-window``, ``sliding-window``, ``fixed-window``) via limits.

Each rule becomes a :class:`limits.RateLimitItem` of ``max + burst`` per ``window`` (decided
once). Several rules are tested first and then counted; unlike the ``gcra`` script this is not
one atomic step, so under a race a refused request may have been counted by an earlier rule.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from agenthood_mw._core.gcra import Policy, RateLimitDecision
from agenthood_mw.ratelimit._redis import redis_options

__all__ = ["LimitsWindows"]

Item = tuple[Policy, str, int]

_STRATEGIES = {
    "moving-window": "MovingWindowRateLimiter",
    "sliding-window": "SlidingWindowCounterRateLimiter",
    "fixed-window": "FixedWindowRateLimiter",
}


class LimitsWindows:
    """A limits strategy over a limits storage (memory, or Redis with sync + asyncio clients)."""

    def __init__(
        self,
        strategy: str,
        storage: str,
        *,
        key_prefix: str,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        import limits.strategies
        from limits.errors import StorageError
        from limits.storage import MemoryStorage

        if storage.startswith("redis+cluster://"):
            # limits' asyncio cluster storage races in redis-py's lazy slot discovery when
            # concurrent first requests arrive (raw AttributeError, seen in
            # tests/ratelimit/test_topologies.py); refuse rather than answer 500 under load.
            raise ValueError(
                f"strategy: {strategy!r} is not supported on redis+cluster:// storage; "
                "use the default strategy='gcra' (one atomic script per request)"
            )
        self._class_name = _STRATEGIES[strategy]
        self._uri = storage
        self._prefix = key_prefix
        self._options = dict(options or {})
        self._items: dict[Policy, Any] = {}
        self.errors: tuple[type[BaseException], ...] = (StorageError, OSError)
        self._memory = storage.startswith("memory://")
        self._sync: Any = None
        self._async: Any = None
        if self._memory:
            self._sync = getattr(limits.strategies, self._class_name)(MemoryStorage())
        else:
            from agenthood_mw.ratelimit._redis import _import_redis

            self.errors += (_import_redis().RedisError,)

    def _item(self, policy: Policy) -> Any:
        item = self._items.get(policy)
        if item is None:
            from limits import RateLimitItemPerSecond

            item = RateLimitItemPerSecond(policy.capacity, int(policy.window), namespace="AH")
            self._items[policy] = item
        return item

    def _sync_limiter(self) -> Any:
        if self._sync is None:
            import limits.strategies
            from limits.storage import storage_from_string

            opts = redis_options(self._uri, self._options, asyncio=False)
            storage = storage_from_string(
                self._uri, key_prefix=self._prefix, wrap_exceptions=True, **opts
            )
            self._sync = getattr(limits.strategies, self._class_name)(storage)
        return self._sync

    def _async_limiter(self) -> Any:
        if self._async is None:
            import limits.aio.strategies
            from limits.storage import storage_from_string

            opts = redis_options(self._uri, self._options, asyncio=True)
            storage = storage_from_string(
                "async+" + self._uri,
                implementation="redispy",
                key_prefix=self._prefix,
                wrap_exceptions=True,
                **opts,
            )
            self._async = getattr(limits.aio.strategies, self._class_name)(storage)
        return self._async

    def hit_sync(self, items: Sequence[Item]) -> list[RateLimitDecision]:
        """Test every rule, then count every rule (blocking)."""
        limiter = self._sync_limiter()
        specs = [(self._item(p), k.replace("|", "/"), c) for p, k, c in items]
        names = [p.name for p, _, _ in items]
        ok = all(limiter.test(item, key, cost=cost) for item, key, cost in specs)
        if ok:
            for item, key, cost in specs:
                if not limiter.hit(item, key, cost=cost):
                    ok = False
                    break
        stats = [limiter.get_window_stats(item, key) for item, key, _ in specs]
        return _outcomes(ok, stats, specs, names)

    async def hit(self, items: Sequence[Item]) -> list[RateLimitDecision]:
        """Test every rule, then count every rule."""
        if self._memory:
            return self.hit_sync(items)
        limiter = self._async_limiter()
        specs = [(self._item(p), k.replace("|", "/"), c) for p, k, c in items]
        names = [p.name for p, _, _ in items]
        ok = True
        for item, key, cost in specs:
            if not await limiter.test(item, key, cost=cost):
                ok = False
                break
        if ok:
            for item, key, cost in specs:
                if not await limiter.hit(item, key, cost=cost):
                    ok = False
                    break
        stats = [await limiter.get_window_stats(item, key) for item, key, _ in specs]
        return _outcomes(ok, stats, specs, names)


def _outcomes(
    ok: bool,
    stats: Sequence[Any],
    specs: Sequence[tuple[Any, str, int]],
    names: Sequence[str],
) -> list[RateLimitDecision]:
    now = time.time()
    out = []
    for st, (item, _key, cost), name in zip(stats, specs, names, strict=True):
        reset_after = max(0.0, st.reset_time - now)
        if ok:
            retry = 0.0
        elif cost > item.amount:
            retry = float("inf")
        elif st.remaining >= cost:
            retry = 0.0  # this rule would admit; another one refused
        else:
            retry = reset_after
        # limits' reset time is when the oldest counted hit leaves the window (moving) or the
        # window restarts (fixed, sliding): the moment more quota becomes available.
        more = 0.0 if st.remaining >= item.amount else reset_after
        out.append(
            RateLimitDecision(ok, item.amount, max(0, st.remaining), reset_after, retry, name, more)
        )
    return out

"""Redis storage for the ``gcra`` strategy: one Lua script, one round trip, the server's clock.

The script evaluates every rule of a request (GCRA + moving-window log each) and records them
all or none, atomically. Clients come from :mod:`limits`' storage classes, so every URI limits
understands works: ``redis://``, ``rediss://``, ``redis+unix://``, ``redis+sentinel://``,
``redis+cluster://``. A request's keys share one non-empty hash tag (the client key), so a
cluster keeps them in one slot. Sentinel and cluster clients get the same fail-fast defaults as
a single server, and the number of scripts in flight is bounded (waiting, not failing, for a
free slot) because their connection pools do not block.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from agenthood_mw._core.gcra import Policy, RateLimitDecision

__all__ = ["GCRA_SCRIPT", "RedisGCRA", "redis_options"]

# KEYS: per rule, the state hash (fields t = TAT, n = units in the window) then the log list
# (newest first, elements "<t_us>:<units>").  ARGV: per rule, interval_us, capacity, window_us,
# tau_us, cost.  Times are microseconds of the server clock; the TAT is stored with 17
# significant digits (an exact double).  Returns per rule {allowed (1 counted, 0 refused, 2
# would admit but another rule refused), remaining, reset_after_us, retry_after_us (-1 never),
# more_after_us (until one more unit is available)}.
GCRA_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_s = string.format('%.0f', now)
local n = #KEYS / 2
local ok = true
local st = {}
local function parse(e)
  local sep = string.find(e, ':', 1, true)
  return tonumber(string.sub(e, 1, sep - 1)), tonumber(string.sub(e, sep + 1))
end
for i = 1, n do
  local a = (i - 1) * 5
  local interval = tonumber(ARGV[a + 1])
  local capacity = tonumber(ARGV[a + 2])
  local window = tonumber(ARGV[a + 3])
  local tau = tonumber(ARGV[a + 4])
  local cost = tonumber(ARGV[a + 5])
  local hkey, lkey = KEYS[2 * i - 1], KEYS[2 * i]
  local vals = redis.call('HMGET', hkey, 't', 'n')
  local tat = tonumber(vals[1] or '0')
  local total = tonumber(vals[2] or '0')
  local oldest = redis.call('LINDEX', lkey, -1)
  while oldest do
    local ts, units = parse(oldest)
    if now - ts < window then break end
    total = total - units
    redis.call('RPOP', lkey)
    oldest = redis.call('LINDEX', lkey, -1)
  end
  if not oldest or total < 0 then total = 0 end
  local base = tat
  if base < now then base = now end
  local allowed = false
  local gwait, wwait = -1, -1
  local new_tat = base
  if cost <= capacity then
    new_tat = base + cost * interval
    gwait = new_tat - tau - now
    wwait = 0
    local excess = total + cost - capacity
    if excess > 0 then
      local olds = redis.call('LRANGE', lkey, -excess, -1)
      local acc = 0
      for j = #olds, 1, -1 do
        local ts, units = parse(olds[j])
        acc = acc + units
        if acc >= excess then wwait = ts + window - now break end
      end
    end
    allowed = gwait <= 0 and wwait <= 0
  end
  if not allowed then ok = false end
  st[i] = {allowed, base, new_tat, total, gwait, wwait, interval, capacity, window, tau, cost,
           hkey, lkey}
end
local res = {}
for i = 1, n do
  local s = st[i]
  local allowed, base, total = s[1], s[2], s[4]
  local interval, capacity, window, tau, cost = s[7], s[8], s[9], s[10], s[11]
  local newest = -1
  if ok and cost > 0 then
    base = s[3]
    total = total + cost
    newest = now
    local head = redis.call('LINDEX', s[13], 0)
    if head and parse(head) == now then
      local _, units = parse(head)
      redis.call('LSET', s[13], 0, now_s .. ':' .. (units + cost))
    else
      redis.call('LPUSH', s[13], now_s .. ':' .. cost)
    end
    local keep = base - now
    if keep < window then keep = window end
    keep = math.ceil(keep / 1000) + 1
    redis.call('HSET', s[12], 't', string.format('%.17g', base), 'n', total)
    redis.call('PEXPIRE', s[12], keep)
    redis.call('PEXPIRE', s[13], keep)
  else
    local head = redis.call('LINDEX', s[13], 0)
    if head then newest = parse(head) end
  end
  local remaining = math.floor((tau - (base - now)) / interval + 1e-6)
  if capacity - total < remaining then remaining = capacity - total end
  if remaining < 0 then remaining = 0 end
  local reset = base - now
  if newest >= 0 and newest + window - now > reset then reset = newest + window - now end
  if reset < 0 then reset = 0 end
  local retry = 0
  if not allowed then
    if cost > capacity then retry = -1 else retry = math.max(s[5], s[6], 0) end
  end
  -- Until the quota grows by one unit (the smaller of the bucket's and the window's grows
  -- first; both when equal); 0 when it is full. As _more_after() in agenthood_mw._core.gcra.
  local grem = math.floor((tau - (base - now)) / interval + 1e-6)
  local wrem = capacity - total
  local more = 0
  if grem < capacity or wrem < capacity then
    if grem <= wrem then more = base - tau + (grem + 1) * interval - now end
    if wrem <= grem and total > 0 then
      local last = redis.call('LINDEX', s[13], -1)
      if last then
        local frees = parse(last) + window - now
        if frees > more then more = frees end
      end
    end
  end
  if more < 0 then more = 0 end
  local flag = 0
  if allowed and ok then flag = 1 elseif allowed then flag = 2 end
  res[5 * i - 4] = flag
  res[5 * i - 3] = remaining
  res[5 * i - 2] = math.ceil(reset)
  -- Both waits to the nearest microsecond, so a refused unit request's retry equals its t.
  if retry > 0 then retry = math.floor(retry + 0.5) end
  res[5 * i - 1] = retry
  res[5 * i] = math.floor(more + 0.5)
end
return res
"""


_HA_SCHEMES = ("redis+sentinel://", "redis+cluster://")
DEFAULT_MAX_CONNECTIONS = 16
DEFAULT_POOL_TIMEOUT = 5.0


def redis_options(
    storage: str, options: Mapping[str, Any] | None, *, asyncio: bool
) -> dict[str, Any]:
    """Client options: short timeouts, no retries and (single server) a blocking pool.

    A rate limiter must answer quickly when Redis is down (then ``fail_open`` decides), so the
    defaults are a 2 s connect timeout, a 2 s read timeout and no automatic retries, for the
    Redis connections and, with ``redis+sentinel://``, for the Sentinel connections too
    (``sentinel_kwargs``). For a single server, concurrent requests wait (up to
    ``pool_timeout``, 5 s) for one of ``max_connections`` (16) connections instead of failing;
    Sentinel and cluster pools cannot block, so :class:`RedisGCRA` bounds the scripts in flight
    itself (``max_connections`` and ``pool_timeout`` are then limits of that bound). Every
    default can be overridden through ``options``.
    """
    opts = dict(options or {})
    if storage.startswith("redis+cluster://"):
        # Unchanged here: the limits window strategies rely on redis-py's retries to survive
        # its asyncio cluster client's lazy-initialization race. RedisGCRA initializes the
        # client before use and then applies the fail-fast defaults (``_cluster_options``).
        return opts
    if storage.startswith("redis+sentinel://"):
        opts.pop("pool_timeout", None)  # not a client option: RedisGCRA's bound uses it
        _fail_fast(opts, asyncio=asyncio)
        sentinel_kwargs = dict(opts.get("sentinel_kwargs") or {})
        _fail_fast(sentinel_kwargs, asyncio=asyncio)
        opts["sentinel_kwargs"] = sentinel_kwargs
        return opts
    if not storage.startswith(("redis://", "rediss://", "redis+unix://")):
        return opts
    if "connection_pool" in opts:
        return opts
    uri = storage.replace("redis+unix://", "unix://", 1)
    max_connections = opts.pop("max_connections", DEFAULT_MAX_CONNECTIONS)
    pool_timeout = opts.pop("pool_timeout", DEFAULT_POOL_TIMEOUT)
    _fail_fast(opts, asyncio=asyncio)
    if asyncio:
        from redis.asyncio import BlockingConnectionPool as AsyncPool

        pool: Any = AsyncPool.from_url(
            uri, max_connections=max_connections, timeout=pool_timeout, **opts
        )
    else:
        from redis import BlockingConnectionPool

        pool = BlockingConnectionPool.from_url(
            uri, max_connections=max_connections, timeout=pool_timeout, **opts
        )
    return {"connection_pool": pool}


def _fail_fast(opts: dict[str, Any], *, asyncio: bool) -> None:
    """Default 2 s connect/read timeouts and no retries (in place; given options win)."""
    from redis.backoff import NoBackoff

    opts.setdefault("socket_connect_timeout", 2.0)
    opts.setdefault("socket_timeout", 2.0)
    if "retry" not in opts:
        if asyncio:
            from redis.asyncio.retry import Retry as AsyncRetry

            opts["retry"] = AsyncRetry(NoBackoff(), 0)
        else:
            from redis.retry import Retry

            opts["retry"] = Retry(NoBackoff(), 0)


def _cluster_options(options: Mapping[str, Any], *, asyncio: bool) -> dict[str, Any]:
    """``redis+cluster://`` options for :class:`RedisGCRA`: the fail-fast defaults."""
    opts = dict(options)
    opts.pop("pool_timeout", None)
    _fail_fast(opts, asyncio=asyncio)
    return opts


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "storage: redis:// storage needs redis-py; install agenthood-mw[redis]"
        ) from exc
    return redis


class RedisGCRA:
    """The ``gcra`` strategy on Redis (sync and asyncio clients created lazily)."""

    def __init__(
        self, storage: str, *, key_prefix: str, options: Mapping[str, Any] | None = None
    ) -> None:
        redis = _import_redis()
        # RedisClusterException is not a RedisError (e.g. "cluster cannot be connected").
        self.errors: tuple[type[BaseException], ...] = (
            redis.RedisError,
            redis.exceptions.RedisClusterException,
            OSError,
        )
        self._uri = storage
        self._options = dict(options or {})
        self._prefix = key_prefix
        # Sentinel and cluster pools raise instead of waiting: bound the scripts in flight.
        self._bounded = storage.startswith(_HA_SCHEMES)
        self._slots = self._options.get("max_connections", DEFAULT_MAX_CONNECTIONS)
        self._pool_timeout = self._options.get("pool_timeout", DEFAULT_POOL_TIMEOUT)
        if isinstance(self._slots, bool) or not isinstance(self._slots, int) or self._slots < 1:
            raise ValueError(
                f"storage_options: max_connections must be a positive int, got {self._slots!r}"
            )
        if isinstance(self._pool_timeout, bool) or not isinstance(self._pool_timeout, int | float):
            raise TypeError("storage_options: pool_timeout must be a number of seconds")
        self._async_slots: asyncio.Semaphore | None = None
        self._async_lock: asyncio.Lock | None = None
        self._sync_slots = threading.BoundedSemaphore(self._slots)
        self._async_script: Any = None
        self._sync_script: Any = None
        self._async_storage: Any = None
        self._sync_storage: Any = None

    def _args(self, items: Sequence[tuple[Policy, str, int]]) -> tuple[list[str], list[Any]]:
        keys: list[str] = []
        args: list[str | int] = []
        prefix = self._prefix
        for policy, key, cost in items:
            tag, _, rule = key.partition("|")
            # An empty tag "{}" would not count as a hash tag: the two keys could land in two
            # cluster slots (CROSSSLOT). Keys are percent-encoded, so "%" alone is no real key.
            base = f"{prefix}{{{tag or '%'}}}:{rule}"
            keys += (base + ":s", base + ":w")
            args += _policy_args(policy)
            args.append(cost)
        return keys, args

    async def hit(self, items: Sequence[tuple[Policy, str, int]]) -> list[RateLimitDecision]:
        """Decide all ``items`` in one round trip (asyncio client)."""
        script = self._async_script
        if script is None:
            script = await self._start_async()
        keys, args = self._args(items)
        if not self._bounded:
            return _outcomes(await script(keys=keys, args=args), items)
        slots = self._async_slots
        assert slots is not None
        if slots.locked():
            try:
                await asyncio.wait_for(slots.acquire(), self._pool_timeout)
            except TimeoutError:
                raise self._no_slot() from None
        else:
            await slots.acquire()  # free: returns without suspending
        try:
            return _outcomes(await script(keys=keys, args=args), items)
        finally:
            slots.release()

    def hit_sync(self, items: Sequence[tuple[Policy, str, int]]) -> list[RateLimitDecision]:
        """Decide all ``items`` in one round trip (blocking client)."""
        script = self._sync_script
        if script is None:
            script = self._sync_script = self._make_sync()
        keys, args = self._args(items)
        if not self._bounded:
            return _outcomes(script(keys=keys, args=args), items)
        if not self._sync_slots.acquire(timeout=self._pool_timeout):
            raise self._no_slot()
        try:
            return _outcomes(script(keys=keys, args=args), items)
        finally:
            self._sync_slots.release()

    def _no_slot(self) -> BaseException:
        from redis.exceptions import ConnectionError as RedisConnectionError

        return RedisConnectionError(
            f"no Redis connection free within pool_timeout={self._pool_timeout} s "
            f"(max_connections={self._slots} requests in flight)"
        )

    async def _start_async(self) -> Any:
        """Create the asyncio client once, even when many requests arrive together.

        redis-py's asyncio ``RedisCluster`` discovers the slots lazily, and concurrent first
        commands race in that discovery (connections are closed under each other: "Connection
        lost"). So the first request initializes the cluster client, under a lock, before any
        other request may use it; a failure leaves nothing behind and the next request retries.
        """
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        async with self._async_lock:
            if self._async_script is None:
                script = self._make_async()
                client = self._async_storage.bridge.get_connection()
                if self._uri.startswith("redis+cluster://"):
                    try:
                        await client.initialize()
                    except BaseException:
                        self._async_storage = None
                        await client.aclose()
                        raise
                self._async_script = script
            return self._async_script

    def _make_async(self) -> Any:
        from limits.storage import storage_from_string

        opts = redis_options(self._uri, self._options, asyncio=True)
        if self._uri.startswith("redis+cluster://"):
            opts = _cluster_options(opts, asyncio=True)
        self._async_storage = storage_from_string(
            "async+" + self._uri, implementation="redispy", key_prefix=self._prefix, **opts
        )
        client = self._async_storage.bridge.get_connection()
        self._async_slots = asyncio.Semaphore(self._slots)
        return client.register_script(GCRA_SCRIPT)

    def _make_sync(self) -> Any:
        from limits.storage import storage_from_string

        opts = redis_options(self._uri, self._options, asyncio=False)
        if self._uri.startswith("redis+cluster://"):
            opts = _cluster_options(opts, asyncio=False)
        self._sync_storage = storage_from_string(self._uri, key_prefix=self._prefix, **opts)
        return self._sync_storage.get_connection().register_script(GCRA_SCRIPT)

    async def aclose(self) -> None:
        """Close the asyncio client's connections."""
        storage, self._async_storage, self._async_script = self._async_storage, None, None
        if storage is not None:
            await storage.bridge.get_connection().aclose()
            for client in getattr(getattr(storage.bridge, "sentinel", None), "sentinels", ()):
                await client.aclose()  # the Sentinel connections too

    def close(self) -> None:
        """Close the blocking client's connections."""
        storage, self._sync_storage, self._sync_script = self._sync_storage, None, None
        if storage is not None:
            storage.get_connection().close()
            for client in getattr(getattr(storage, "sentinel", None), "sentinels", ()):
                client.close()  # the Sentinel connections too


_ARGS_CACHE: dict[Policy, tuple[str, ...]] = {}


def _policy_args(policy: Policy) -> tuple[str, ...]:
    cached = _ARGS_CACHE.get(policy)
    if cached is None:
        cached = _ARGS_CACHE[policy] = (
            repr(policy.interval * 1e6),
            str(policy.capacity),
            repr(policy.window * 1e6),
            repr(policy.tau * 1e6),
        )
    return cached


def _outcomes(
    raw: Sequence[int], items: Sequence[tuple[Policy, str, int]]
) -> list[RateLimitDecision]:
    out = []
    for i, (policy, _key, _cost) in enumerate(items):
        allowed, remaining, reset_us, retry_us, more_us = (int(v) for v in raw[5 * i : 5 * i + 5])
        retry = math.inf if retry_us < 0 else retry_us / 1e6
        out.append(
            RateLimitDecision(
                allowed == 1,
                policy.capacity,
                remaining,
                reset_us / 1e6,
                retry,
                policy.name,
                more_us / 1e6,
            )
        )
    return out

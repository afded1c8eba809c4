"""``RedisBackend`` (extra ``[redis]``): memory in Redis via redis-py's asyncio client.

Layout per scope, all keys sharing the hash tag ``{<storage_key>}`` so one scope lives on one
cluster slot: ``<key_prefix>{<sk>}:facts:d`` (hash key -> JSON envelope) and ``...:facts:i``
(sorted set of keys, the per-scope index, read with lex *ranges*), the same for ``project``, and
``...:events:i`` / ``...:events:d`` for the episodic log. No KEYS/SCAN and no glob pattern is
ever built from user text; ``erase`` deletes six fixed keys in one transaction.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw._core.urls import check_redis_url
from agenthood_mw.memory._base import MemoryBackend
from agenthood_mw.memory._codec import event_sort_key
from agenthood_mw.memory._records import Event, Record, Tier

try:
    import redis.asyncio as aioredis
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "agenthood_mw.memory.redis needs redis-py; install agenthood-mw[redis]"
    ) from exc

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_POOL_TIMEOUT", "RedisBackend"]

#: Connections in the pool a ``RedisBackend(url)`` owns, unless ``max_connections=`` says.
DEFAULT_MAX_CONNECTIONS: Final = 16
#: Seconds an operation waits for a free pooled connection, unless ``pool_timeout=`` says.
DEFAULT_POOL_TIMEOUT: Final = 5.0
#: Largest ``pool_timeout`` accepted (a longer wait would hide an outage).
MAX_POOL_TIMEOUT: Final = 300.0

_BATCH: Final = 256
_PARTS: Final = ("facts:d", "facts:i", "project:d", "project:i", "events:d", "events:i")


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def _check_prefix(key_prefix: object) -> str:
    if not isinstance(key_prefix, str):
        raise TypeError("key_prefix must be a str")
    if any(c in key_prefix for c in "{}*?[]\\") or not key_prefix.isprintable():
        raise ValueError(
            "key_prefix must be printable and contain none of { } * ? [ ] \\ "
            "(the scope's hash tag must be the first {...} of every key)"
        )
    return key_prefix


def _check_size(value: object) -> int:
    if value is None:
        return DEFAULT_MAX_CONNECTIONS
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_connections must be a positive int, got {value!r}")
    return value


def _check_timeout(value: object) -> float:
    if value is None:
        return DEFAULT_POOL_TIMEOUT
    # a range check, not math.isfinite: it rejects NaN and inf and never overflows on an int
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_POOL_TIMEOUT
    ):
        raise ValueError(
            f"pool_timeout must be a number of seconds in (0, {MAX_POOL_TIMEOUT:g}], got {value!r}"
        )
    return float(value)


class RedisBackend(MemoryBackend):
    """Memory in Redis: ``RedisBackend("redis://127.0.0.1:6379/0")``.

    With ``url``, the backend owns a *blocking, bounded* connection pool: at most
    ``max_connections`` connections, and an operation that finds them all busy waits up to
    ``pool_timeout`` seconds for one (then ``redis.exceptions.ConnectionError``) instead of
    failing at once with ``MaxConnectionsError``, so any number of concurrent operations
    share one backend.

    Args:
        url: a redis-py URL (``redis://``, ``rediss://``, ``unix://``); or pass ``client=``.
        client: an existing ``redis.asyncio.Redis`` (not closed by :meth:`close`; its own
            pool applies, so ``max_connections`` and ``pool_timeout`` cannot be given).
        key_prefix: prepended to every key (default ``"agenthood:memory:"``).
        max_connections: size of the owned pool (default 16).
        pool_timeout: seconds an operation waits for a free connection (default 5).
        clock: epoch-seconds clock; TTLs are evaluated against it, not by Redis.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        key_prefix: str = "agenthood:memory:",
        max_connections: int | None = None,
        pool_timeout: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(clock=clock)
        self._prefix = _check_prefix(key_prefix)
        if (url is None) == (client is None):
            raise ValueError("pass exactly one of url or client")
        if client is not None:
            if not isinstance(client, aioredis.Redis):
                raise TypeError("client must be a redis.asyncio.Redis")
            if max_connections is not None or pool_timeout is not None:
                raise ValueError(
                    "max_connections and pool_timeout size the pool built from url; "
                    "a borrowed client keeps its own pool"
                )
            self._redis: Redis = client
            self._owns_client = False
        else:
            if not isinstance(url, str) or not url:
                raise ValueError("url must be a non-empty redis:// URL")
            check_redis_url(url, option="url")
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=_check_size(max_connections),
                timeout=_check_timeout(pool_timeout),
            )
            self._redis = aioredis.Redis.from_pool(pool)  # closes the pool on aclose()
            self._owns_client = True

    def _key(self, scope: MemoryScope, part: str) -> str:
        return f"{self._prefix}{{{scope.storage_key}}}:{part}"

    def scope_keys(self, scope: MemoryScope) -> tuple[str, ...]:
        """Every Redis key that can hold data of ``scope`` (for operators and tests)."""
        return tuple(self._key(scope, part) for part in _PARTS)

    async def _close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()

    # ---------------------------------------------------------------- key/value tiers
    @staticmethod
    def _envelope(sk: str, value_json: str, search: str, now: float, exp: float | None) -> str:
        return json.dumps({"s": sk, "v": value_json, "t": search, "u": now, "e": exp})

    @staticmethod
    def _decode(tier: Tier, key: str, raw: bytes) -> Record:
        env = json.loads(raw)
        return Record(env["s"], tier, key, json.loads(env["v"]), env["u"], env["e"])

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
        env = self._envelope(scope.storage_key, value_json, search, now, expires_at)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(scope, f"{tier}:d"), key, env)
            pipe.zadd(self._key(scope, f"{tier}:i"), {key: 0})
            await pipe.execute()
        return Record(scope.storage_key, tier, key, json.loads(value_json), now, expires_at)

    async def _get(self, scope: MemoryScope, tier: Tier, key: str, now: float) -> Record | None:
        raw = await self._redis.hget(self._key(scope, f"{tier}:d"), key)
        if raw is None:
            return None
        rec = self._decode(tier, key, _b(raw))
        if rec.expires_at is not None and rec.expires_at <= now:
            return None
        return rec

    async def _delete(self, scope: MemoryScope, tier: Tier, key: str, now: float) -> bool:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self._key(scope, f"{tier}:d"), key)
            pipe.hdel(self._key(scope, f"{tier}:d"), key)
            pipe.zrem(self._key(scope, f"{tier}:i"), key)
            raw, _, _ = await pipe.execute()
        if raw is None:
            return False
        exp = json.loads(raw)["e"]
        return exp is None or exp > now

    async def _scan(
        self,
        scope: MemoryScope,
        tier: Tier,
        lo: bytes,
        hi: bytes,
        limit: int,
        now: float,
        terms: tuple[str, ...] = (),
    ) -> list[Record]:
        """Walk the per-scope index over the lex range [lo, hi), collecting live matches."""
        index, data = self._key(scope, f"{tier}:i"), self._key(scope, f"{tier}:d")
        out: list[Record] = []
        batch = min(max(limit + 8, 16), _BATCH) if not terms else _BATCH
        while len(out) < limit:
            members = await self._redis.zrangebylex(index, lo, hi, start=0, num=batch)
            if not members:
                break
            raws = await self._redis.hmget(data, members)
            for member, raw in zip(members, raws, strict=True):
                if raw is None:
                    continue
                env = json.loads(raw)
                exp = env["e"]
                if (exp is not None and exp <= now) or not all(t in env["t"] for t in terms):
                    continue
                key = _b(member).decode("utf-8")
                out.append(Record(env["s"], tier, key, json.loads(env["v"]), env["u"], exp))
                if len(out) >= limit:
                    break
            if len(members) < batch:
                break
            lo = b"(" + _b(members[-1])
        return out

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
        if after is not None:
            lo = b"(" + after.encode("utf-8")
        else:
            lo = b"[" + prefix.encode("utf-8") if prefix else b"-"
        hi = b"+" if upper is None else b"(" + upper.encode("utf-8")
        return await self._scan(scope, tier, lo, hi, limit, now)

    async def _search(
        self, scope: MemoryScope, tier: Tier, terms: tuple[str, ...], limit: int, now: float
    ) -> Sequence[Record]:
        return await self._scan(scope, tier, b"-", b"+", limit, now, terms)

    # ---------------------------------------------------------------- episodic log
    async def _append_event(
        self, scope: MemoryScope, event_id: str, timestamp: float, data_json: str
    ) -> Event:
        member = event_sort_key(timestamp, event_id)
        env = json.dumps({"s": scope.storage_key, "d": data_json})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(scope, "events:d"), member, env)
            pipe.zadd(self._key(scope, "events:i"), {member: 0})
            await pipe.execute()
        return Event(scope.storage_key, event_id, timestamp, json.loads(data_json))

    async def _list_events(
        self,
        scope: MemoryScope,
        since: float | None,
        until: float | None,
        before: tuple[float, str] | None,
        limit: int,
    ) -> Sequence[Event]:
        bounds = []
        if until is not None:
            bounds.append(event_sort_key(until, ""))
        if before is not None:
            bounds.append(event_sort_key(*before))
        hi = "(" + min(bounds) if bounds else "+"
        lo = "-" if since is None else "[" + event_sort_key(since, "")
        members = await self._redis.zrevrangebylex(
            self._key(scope, "events:i"), hi, lo, start=0, num=limit
        )
        if not members:
            return []
        raws = await self._redis.hmget(self._key(scope, "events:d"), members)
        out: list[Event] = []
        for member, raw in zip(members, raws, strict=True):
            if raw is None:
                continue
            text = _b(member).decode("ascii")
            ts_hex, event_id = text[:16], text[16:]
            env = json.loads(raw)
            (ts,) = struct.unpack(">d", bytes.fromhex(ts_hex))
            out.append(Event(env["s"], event_id, ts, json.loads(env["d"])))
        return out

    async def _erase(self, scope: MemoryScope) -> int:
        keys = self.scope_keys(scope)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hlen(keys[0])
            pipe.hlen(keys[2])
            pipe.hlen(keys[4])
            pipe.delete(*keys)
            a, b, c, _ = await pipe.execute()
        return int(a) + int(b) + int(c)

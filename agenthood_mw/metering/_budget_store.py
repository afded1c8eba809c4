"""Where budget counters live: in the process (``memory://``) or shared in Redis.

Both stores apply the same rule as :class:`~agenthood_mw._core.budgets.BudgetBook` (admit while
``committed + reserved < limit``, reserve, reconcile, expire). The Redis store runs each
decision as one Lua script, so several worker processes share one exact count. A window seen
for the first time is seeded from the ledger (``seed``), so a restart or a flushed Redis never
resets a budget.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from agenthood_mw._core.budgets import (
    DEFAULT_MAX_ACCOUNTS,
    Admission,
    BudgetBook,
    BudgetRule,
    Hold,
    Refusal,
)
from agenthood_mw._core.budgets import window_bounds as _bounds
from agenthood_mw._core.urls import check_redis_url, redact

__all__ = ["BudgetStore", "MemoryBudgetStore", "RedisBudgetStore", "budget_store_from_url"]

Seed = Callable[[BudgetRule, str, float], int]  # (rule, subject, window_start) -> committed


class BudgetStore:
    """Interface of the budget counters (all methods synchronous)."""

    #: Whether calls do network I/O (the ASGI shell then runs them in a worker thread).
    blocking = False

    def admit(self, subjects: dict[str, str | None], now: float, seed: Seed) -> Admission | Refusal:
        raise NotImplementedError

    def extend(self, holds: Sequence[Hold], spent: int, now: float) -> Refusal | None:
        raise NotImplementedError

    def resize(self, holds: Sequence[Hold], amount: int, now: float) -> Refusal | None:
        """Set the holds to ``amount`` when it fits the budgets (see ``BudgetBook.resize``)."""
        raise NotImplementedError

    def settle(self, holds: Sequence[Hold], actual: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        return None


class MemoryBudgetStore(BudgetStore):
    """Counters in this process (each worker process enforces its own view)."""

    def __init__(
        self, rules: Sequence[BudgetRule], *, ttl: float, max_accounts: int = DEFAULT_MAX_ACCOUNTS
    ) -> None:
        self.book = BudgetBook(rules, ttl=ttl, max_accounts=max_accounts)
        self._lock = threading.Lock()

    def missing(self, subjects: dict[str, str | None], now: float) -> list[Any]:
        with self._lock:
            return self.book.missing(subjects, now)

    def load(self, rule: BudgetRule, subject: str, now: float, committed: int) -> None:
        with self._lock:
            self.book.load(rule, subject, now, committed)

    def admit(self, subjects: dict[str, str | None], now: float, seed: Seed) -> Admission | Refusal:
        for rule, subject in self.missing(subjects, now):
            start, _ = _bounds(rule.window, now)
            self.load(rule, subject, now, seed(rule, subject, start))
        with self._lock:
            return self.book.admit(subjects, now)

    def extend(self, holds: Sequence[Hold], spent: int, now: float) -> Refusal | None:
        with self._lock:
            return self.book.extend(holds, spent, now)

    def resize(self, holds: Sequence[Hold], amount: int, now: float) -> Refusal | None:
        with self._lock:
            return self.book.resize(holds, amount, now)

    def settle(self, holds: Sequence[Hold], actual: int) -> None:
        with self._lock:
            self.book.settle(holds, actual)


# Each account is a hash: field "c" = committed nano-dollars, fields "h:<id>" =
# "<amount>:<expiry>" for live reservations. Amounts are integers kept as strings.
_RESERVED = """
local function reserved(key, now)
  local total = 0
  local all = redis.call('HGETALL', key)
  for j = 1, #all, 2 do
    local f = all[j]
    if string.sub(f, 1, 2) == 'h:' then
      local v = all[j + 1]
      local sep = string.find(v, ':', 1, true)
      local amount = tonumber(string.sub(v, 1, sep - 1))
      local expiry = tonumber(string.sub(v, sep + 1))
      if expiry <= now then
        redis.call('HDEL', key, f)
      else
        total = total + amount
      end
    end
  end
  return total
end
"""

# KEYS: accounts. ARGV: now, hold id, then per key: limit, amount, expiry, key ttl, seed|"".
_ADMIT = (
    _RESERVED
    + """
local now = tonumber(ARGV[1])
local hold = ARGV[2]
local need = {}
local committed = {}
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 5
  local c = redis.call('HGET', KEYS[i], 'c')
  if not c then
    if ARGV[b + 5] == '' then
      need[#need + 1] = i
    else
      redis.call('HSET', KEYS[i], 'c', ARGV[b + 5])
      c = ARGV[b + 5]
    end
  end
  committed[i] = c
end
if #need > 0 then
  local out = {-1}
  for _, i in ipairs(need) do out[#out + 1] = i end
  return out
end
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 5
  local spent = tonumber(committed[i])
  if spent + reserved(KEYS[i], now) >= tonumber(ARGV[b + 1]) then
    return {0, i, committed[i]}
  end
end
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 5
  redis.call('HSET', KEYS[i], 'h:' .. hold, ARGV[b + 2] .. ':' .. ARGV[b + 3])
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[b + 4]))
end
return {1}
"""
)

# KEYS: accounts whose hold is used up. ARGV: now, hold id, then per key: limit, amount, expiry.
_EXTEND = (
    _RESERVED
    + """
local now = tonumber(ARGV[1])
local hold = ARGV[2]
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 3
  local c = redis.call('HGET', KEYS[i], 'c')
  if c and tonumber(c) + reserved(KEYS[i], now) >= tonumber(ARGV[b + 1]) then
    return {0, i, c}
  end
end
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 3
  redis.call('HSET', KEYS[i], 'h:' .. hold, ARGV[b + 2] .. ':' .. ARGV[b + 3])
end
return {1}
"""
)

# KEYS: accounts. ARGV: now, hold id, amount, expiry, then per key: limit.
# A hold grows only when committed + other holds + amount fits the limit; shrinking always works.
_RESIZE = (
    _RESERVED
    + """
local now = tonumber(ARGV[1])
local field = 'h:' .. ARGV[2]
local amount = tonumber(ARGV[3])
for i = 1, #KEYS do
  local c = redis.call('HGET', KEYS[i], 'c')
  if c then
    local total = reserved(KEYS[i], now)
    local current = 0
    local v = redis.call('HGET', KEYS[i], field)
    if v then current = tonumber(string.sub(v, 1, string.find(v, ':', 1, true) - 1)) end
    if amount > current and tonumber(c) + total - current + amount > tonumber(ARGV[4 + i]) then
      return {0, i, c}
    end
  end
end
for i = 1, #KEYS do
  if redis.call('HEXISTS', KEYS[i], 'c') == 1 then
    redis.call('HSET', KEYS[i], field, ARGV[3] .. ':' .. ARGV[4])
  end
end
return {1}
"""
)

# KEYS: accounts. ARGV: hold id, actual cost.
_SETTLE = """
for i = 1, #KEYS do
  redis.call('HDEL', KEYS[i], 'h:' .. ARGV[1])
  if redis.call('HEXISTS', KEYS[i], 'c') == 1 then
    redis.call('HINCRBY', KEYS[i], 'c', ARGV[2])
  end
end
return 1
"""


class RedisBudgetStore(BudgetStore):
    """Counters shared by every process through Redis (``budget_storage="redis://..."``).

    Keys are ``{key_prefix}{budget}:{window}:{window start}:{subject}`` (the subject
    percent-encoded), hashes that expire one reservation TTL after their window ends. Each
    decision is one Lua script (atomic). Redis Cluster is not supported (a request's budgets
    are checked in one script).
    """

    blocking = True

    def __init__(
        self,
        url: str,
        rules: Sequence[BudgetRule],
        *,
        ttl: float,
        key_prefix: str = "agenthood:budget:",
    ) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ImportError(
                "budget_storage='redis://...' needs redis-py; install agenthood-mw[redis]"
            ) from exc
        if not isinstance(key_prefix, str) or not key_prefix:
            raise ValueError("budget_key_prefix: expected a non-empty string")
        self.rules = tuple(rules)
        self.ttl = ttl
        self.prefix = key_prefix
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._admit = self._client.register_script(_ADMIT)
        self._extend = self._client.register_script(_EXTEND)
        self._settle = self._client.register_script(_SETTLE)
        self._resize = self._client.register_script(_RESIZE)
        self._amounts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._id_prefix = os.urandom(6).hex()

    def _key(self, rule: BudgetRule, subject: str, start: float) -> str:
        return f"{self.prefix}{rule.index}:{int(rule.window)}:{int(start)}:" + quote(
            subject, safe=""
        )

    def admit(self, subjects: dict[str, str | None], now: float, seed: Seed) -> Admission | Refusal:
        applicable = []
        for rule in self.rules:
            subject = subjects.get(rule.per)
            if subject is not None:
                start, end = _bounds(rule.window, now)
                applicable.append((rule, subject, start, end, self._key(rule, subject, start)))
        if not applicable:
            return Admission(())
        hold_id = f"{self._id_prefix}{next(self._ids):x}"
        seeds = [""] * len(applicable)
        for _ in range(2):
            args: list[Any] = [repr(now), hold_id]
            for (rule, _s, _st, end, _k), seed_value in zip(applicable, seeds, strict=True):
                key_ttl = max(1, int(end - now + self.ttl + 60))
                args += [rule.limit, rule.reserve, repr(now + self.ttl), key_ttl, seed_value]
            result = self._admit(keys=[a[4] for a in applicable], args=args)
            code = int(result[0])
            if code == 1:
                with self._lock:
                    for rule, _s, _st, _e, key in applicable:
                        self._amounts[(key, hold_id)] = rule.reserve
                holds = tuple(
                    Hold(rule, subject, start, hold_id)
                    for rule, subject, start, _e, _k in applicable
                )
                return Admission(holds)
            if code == 0:
                rule, subject, _st, end, _k = applicable[int(result[1]) - 1]
                committed = int(result[2])
                retry = end - now if committed >= rule.limit else 1.0
                return Refusal(rule, subject, retry, committed)
            for index in result[1:]:
                rule, subject, start, _e, _k = applicable[int(index) - 1]
                seeds[int(index) - 1] = str(seed(rule, subject, start))
        raise RuntimeError("budget store: the Redis account could not be seeded")

    def extend(self, holds: Sequence[Hold], spent: int, now: float) -> Refusal | None:
        todo = []
        with self._lock:
            for hold in holds:
                key = self._key(hold.rule, hold.subject, hold.window_start)
                amount = self._amounts.get((key, str(hold.hold_id)))
                if amount is not None and spent >= amount:
                    todo.append((hold, key))
        if not todo:
            return None
        hold_id = str(todo[0][0].hold_id)
        args: list[Any] = [repr(now), hold_id]
        for hold, _key in todo:
            args += [hold.rule.limit, spent + hold.rule.reserve, repr(now + self.ttl)]
        result = self._extend(keys=[k for _, k in todo], args=args)
        if int(result[0]) == 0:
            hold, _key = todo[int(result[1]) - 1]
            _, end = _bounds(hold.rule.window, now)
            return Refusal(hold.rule, hold.subject, end - now, int(result[2]))
        with self._lock:
            for hold, key in todo:
                self._amounts[(key, hold_id)] = spent + hold.rule.reserve
        return None

    def resize(self, holds: Sequence[Hold], amount: int, now: float) -> Refusal | None:
        if not holds:
            return None
        hold_id = str(holds[0].hold_id)
        keys = [self._key(h.rule, h.subject, h.window_start) for h in holds]
        args: list[Any] = [repr(now), hold_id, amount, repr(now + self.ttl)]
        args += [h.rule.limit for h in holds]
        result = self._resize(keys=keys, args=args)
        if int(result[0]) == 0:
            hold = holds[int(result[1]) - 1]
            committed = int(result[2])
            _, end = _bounds(hold.rule.window, now)
            retry = end - now if committed >= hold.rule.limit else 1.0
            return Refusal(hold.rule, hold.subject, retry, committed)
        with self._lock:
            for key in keys:
                self._amounts[(key, hold_id)] = amount
        return None

    def settle(self, holds: Sequence[Hold], actual: int) -> None:
        if not holds:
            return
        hold_id = str(holds[0].hold_id)
        keys = [self._key(h.rule, h.subject, h.window_start) for h in holds]
        self._settle(keys=keys, args=[hold_id, actual])
        with self._lock:
            for key in keys:
                self._amounts.pop((key, hold_id), None)

    def close(self) -> None:
        self._client.close()


def budget_store_from_url(
    url: str,
    rules: Sequence[BudgetRule],
    *,
    ttl: float,
    key_prefix: str = "agenthood:budget:",
    max_accounts: int = DEFAULT_MAX_ACCOUNTS,
) -> BudgetStore:
    """``memory://`` or ``redis://...`` / ``rediss://...`` (``max_accounts`` bounds the memory
    book; Redis keys expire on their own)."""
    if not isinstance(url, str):
        raise TypeError("budget_storage: expected 'memory://' or a redis:// URL")
    if url == "memory://":
        return MemoryBudgetStore(rules, ttl=ttl, max_accounts=max_accounts)
    if url.startswith(("redis://", "rediss://", "unix://")):
        check_redis_url(url, option="budget_storage")
        return RedisBudgetStore(url, rules, ttl=ttl, key_prefix=key_prefix)
    raise ValueError(f"budget_storage: unsupported URL {redact(url)!r} (memory:// or redis://...)")

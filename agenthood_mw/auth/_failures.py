"""The failed-authentication limit: failures counted per client address with ``limits``.

Only an invalid credential (a 401 ``invalid_token``) is counted; a valid credential never
touches the counter, so it is never slowed. The counter is a ``limits`` moving window on
``memory://`` (per process) or Redis (shared by every worker), the storages the rate limiter
offers. Called by the authenticate flow in ``_core.authcore`` through a ``Call`` step: inline
for memory, in a worker thread (ASGI) for Redis.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

__all__ = ["FailedAuthLimit", "build_failure_limit"]

_NAMESPACE = "agenthood-auth-failures"
_SCHEMES = ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster", "redis+unix")


class FailedAuthLimit:
    """At most ``item.amount`` failed authentications per client address in any window."""

    def __init__(self, item: RateLimitItem, storage: str, options: Mapping[str, Any]) -> None:
        self.item = item
        self.blocking = not storage.startswith("memory://")
        self.storage = storage_from_string(storage, **options)
        self._limiter = MovingWindowRateLimiter(self.storage)

    def hit(self, address: str) -> float | None:
        """Count one failure of ``address``; ``None`` while within the limit, else the
        seconds until its oldest counted failure leaves the window."""
        if self._limiter.hit(self.item, address):
            return None
        reset_time = self._limiter.get_window_stats(self.item, address).reset_time
        return max(1.0, reset_time - time.time())


def build_failure_limit(limit: object, storage: object, options: object) -> FailedAuthLimit | None:
    """Validate ``failed_auth_limit``/``failed_auth_storage``/``failed_auth_storage_options``."""
    if limit is None:
        return None
    if not isinstance(limit, str):
        raise TypeError("failed_auth_limit: expected a limit such as '20/minute', or None")
    try:
        parsed = parse(limit)
    except ValueError:
        raise ValueError(
            f"failed_auth_limit: {limit!r} is not a limit; use e.g. '20/minute' or '100/hour'"
        ) from None
    if parsed.amount < 1:
        raise ValueError("failed_auth_limit: the amount must be at least 1")
    item = type(parsed)(parsed.amount, parsed.multiples, namespace=_NAMESPACE)
    if not isinstance(storage, str):
        raise TypeError("failed_auth_storage: expected a URL such as 'memory://' or 'redis://...'")
    scheme, sep, _rest = storage.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise ValueError(
            f"failed_auth_storage: unknown storage {storage.split('@')[-1]!r}; "
            "expected memory:// or redis://"
        )
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise TypeError("failed_auth_storage_options: expected a mapping or None")
    settings: dict[str, Any] = dict(options)
    if scheme != "memory":
        # A Redis that stops answering must not hold a request forever.
        settings.setdefault("socket_timeout", 2.0)
        settings.setdefault("socket_connect_timeout", 2.0)
    try:
        return FailedAuthLimit(item, storage, settings)
    except Exception as exc:
        raise ValueError(f"failed_auth_storage: cannot use this storage ({exc})") from None

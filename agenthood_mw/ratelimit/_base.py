"""Construction shared by the ASGI and WSGI ``RateLimitMiddleware`` (validation happens in the
engine)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from agenthood_mw._core.ratelimit import RateLimitRule
from agenthood_mw.ratelimit._engine import DEFAULT_IPV6_PREFIX, RateLimitEngine
from agenthood_mw.ratelimit._limiter import DEFAULT_KEY_PREFIX
from agenthood_mw.ratelimit._memory import DEFAULT_MAX_KEYS

__all__ = ["RateLimitBase"]


class RateLimitBase:
    """The keyword list of both shells (so the ASGI and WSGI classes cannot drift apart):
    ``app`` plus the options of :class:`RateLimitEngine`, built once as :attr:`engine`."""

    #: "ASGI" or "WSGI", for the error message of a non-callable ``app``.
    _app_kind = "ASGI"

    def __init__(
        self,
        app: Any,
        *,
        window: object = "1m",
        max: int | None = None,
        burst: int = 0,
        storage: str = "memory://",
        strategy: str = "gcra",
        rules: Sequence[RateLimitRule] = (),
        key: Callable[[Any], str | None] | None = None,
        cost: Callable[[Any], int] | None = None,
        trusted_proxies: Collection[str] = (),
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        exempt_paths: Iterable[str] = (),
        fail_open: bool = True,
        headers: bool = True,
        legacy_headers: bool = False,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        storage_options: Mapping[str, Any] | None = None,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] | None = None,
        warn_interval: float = 60.0,
    ) -> None:
        if not callable(app):
            raise TypeError(f"app: expected an {self._app_kind} application")
        self.app = app
        #: The limiter's shell-neutral engine: :meth:`RateLimitEngine.decide`.
        self.engine = RateLimitEngine(
            window=window,
            max=max,
            burst=burst,
            storage=storage,
            strategy=strategy,
            rules=rules,
            key=key,
            cost=cost,
            trusted_proxies=trusted_proxies,
            ipv6_prefix=ipv6_prefix,
            exempt_paths=exempt_paths,
            fail_open=fail_open,
            headers=headers,
            legacy_headers=legacy_headers,
            key_prefix=key_prefix,
            storage_options=storage_options,
            max_keys=max_keys,
            clock=clock,
            warn_interval=warn_interval,
        )

    async def aclose(self) -> None:
        """Release the storage's asyncio connections (Redis)."""
        closer = getattr(self.engine.backend, "aclose", None)
        if closer is not None:
            await closer()

    def close(self) -> None:
        """Release the storage's blocking connections (Redis, WSGI)."""
        closer = getattr(self.engine.backend, "close", None)
        if closer is not None:
            closer()

    @property
    def storage_failures(self) -> int:
        """How many requests met a storage failure (admitted or refused per ``fail_open``)."""
        return self.engine.failures.count

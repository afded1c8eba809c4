"""Construction shared by the ASGI and WSGI ``RateLimitMiddleware`` (validation happens here)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from agenthood_mw._core.paths import PathSet
from agenthood_mw._core.ratelimit import (
    ClientAddress,
    CompiledRule,
    Planner,
    RateLimitRule,
    identity_key,
)
from agenthood_mw._identity import Identity
from agenthood_mw.ratelimit._limiter import (
    DEFAULT_KEY_PREFIX,
    Backend,
    FailureLog,
    _MemoryBackend,
    check_cost,
    make_backend,
)
from agenthood_mw.ratelimit._memory import DEFAULT_MAX_KEYS, MemoryGCRA

__all__ = ["RateLimitBase"]

_KEY_CACHE_SIZE = 65536


class RateLimitBase:
    """Options and per-request key/cost derivation common to both shells.

    The constructor (and so the keyword list) is this one for both shells: the ASGI and WSGI
    classes cannot drift apart. A shell adds its own per-instance state in :meth:`_setup`.
    """

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
        self.planner = Planner(
            window=window,
            max=max,
            burst=burst,
            rules=rules,
            headers=headers,
            legacy_headers=legacy_headers,
        )
        if key is not None and not callable(key):
            raise TypeError("key: expected a callable returning the key string (or None)")
        if cost is not None and not callable(cost):
            raise TypeError("cost: expected a callable returning an int weight")
        if not isinstance(fail_open, bool):
            raise TypeError("fail_open: expected True or False")
        if isinstance(warn_interval, bool) or not isinstance(warn_interval, int | float):
            raise TypeError("warn_interval: expected a number of seconds")
        self.key_func = key
        self.cost_func = cost
        self.fail_open = fail_open
        self.client_address = ClientAddress(trusted_proxies)
        self.exempt = PathSet(exempt_paths, option="exempt_paths")
        self.has_exempt = bool(self.exempt)
        #: Headers on, no legacy fields: the hot path formats two fields itself.
        self.plain_headers = bool(headers) and not legacy_headers
        self.backend: Backend = make_backend(
            storage=storage,
            strategy=strategy,
            key_prefix=key_prefix,
            storage_options=storage_options,
            clock=clock,
            max_keys=max_keys,
            windows=self.planner.windows,
        )
        self.memory: MemoryGCRA | None = (
            self.backend.store if isinstance(self.backend, _MemoryBackend) else None
        )
        self.failures = FailureLog(warn_interval)
        self._only: CompiledRule | None = self.planner.only
        self._user_keys: dict[tuple[str | None, str], str] = {}
        self._addr_keys: dict[str, str] = {}
        self._setup()

    def _setup(self) -> None:
        """Per-shell state derived from the validated options (override in a shell)."""

    async def aclose(self) -> None:
        """Release the storage's asyncio connections (Redis)."""
        closer = getattr(self.backend, "aclose", None)
        if closer is not None:
            await closer()

    def close(self) -> None:
        """Release the storage's blocking connections (Redis, WSGI)."""
        closer = getattr(self.backend, "close", None)
        if closer is not None:
            closer()

    @property
    def storage_failures(self) -> int:
        """How many requests met a storage failure (admitted or refused per ``fail_open``)."""
        return self.failures.count

    def user_key(self, user: object) -> str | None:
        """The key of an authenticated user (cached), or ``None``."""
        if type(user) is Identity:
            if not user.authenticated:
                return None
            cache_key = (user.tenant, user.user_id)
            key = self._user_keys.get(cache_key)
            if key is None:
                key = identity_key(user)
                assert key is not None
                if len(self._user_keys) >= _KEY_CACHE_SIZE:
                    self._user_keys.clear()
                self._user_keys[cache_key] = key
            return key
        return identity_key(user)

    def address_key(self, address: str) -> str:
        """The key of an anonymous client address (cached)."""
        key = self._addr_keys.get(address)
        if key is None:
            key = "a:" + quote(address, safe="")
            if len(self._addr_keys) >= _KEY_CACHE_SIZE:
                self._addr_keys.clear()
            self._addr_keys[address] = key
        return key

    def custom_key(self, request: Any) -> str | None:
        """The ``key=`` callable's key, namespaced and encoded."""
        assert self.key_func is not None
        value = self.key_func(request)
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"key: the callable must return a str or None, got {value!r}")
        return "k:" + quote(value, safe="")

    def request_cost(self, request: Any) -> int:
        """The ``cost=`` hook's weight (1 without a hook)."""
        if self.cost_func is None:
            return 1
        return check_cost(self.cost_func(request))

    def items(
        self, method: str, path: str, ident: str, cost: int
    ) -> tuple[list[CompiledRule], list[tuple[Any, str, int]]]:
        """The applicable rules and the storage items for them."""
        only = self._only
        if only is not None:
            return [only], [(only.policy, f"{ident}|{only.name}", cost)]
        rules = []
        items = []
        for rule, suffix in self.planner.match(method, path):
            rules.append(rule)
            items.append((rule.policy, f"{ident}|{suffix}", cost))
        return rules, items

"""``RateLimitEngine``: the limiter's one shell-neutral call, :meth:`RateLimitEngine.decide`.

The ASGI and WSGI middlewares read the request's identity, method, path and client address,
call :meth:`~RateLimitEngine.decide` (or :meth:`~RateLimitEngine.decide_sync`), and move the
:class:`Verdict` into bytes: the error response, or the app with the verdict's headers.
Everything else -- which rules apply, the key, the storage call, the headers, the refusal --
happens here and in :mod:`agenthood_mw._core.ratelimit`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from agenthood_mw._core import keys
from agenthood_mw._core.gcra import Policy
from agenthood_mw._core.paths import PathSet
from agenthood_mw._core.ratelimit import (
    NOT_LIMITED,
    UNAVAILABLE,
    ClientAddress,
    CompiledRule,
    Planner,
    RateLimitRule,
    Verdict,
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

__all__ = ["DEFAULT_IPV6_PREFIX", "RateLimitEngine"]

#: Bound on each key cache (identities, client addresses); a full cache is emptied.
KEY_CACHE_SIZE = 65536
#: IPv6 clients are grouped by this many leading bits (one subscriber's /64 is one client).
DEFAULT_IPV6_PREFIX = 64


class Plan(NamedTuple):
    """The rules that apply to one request and the storage items to count for them."""

    rules: Sequence[CompiledRule]
    items: list[tuple[Policy, str, int]]


def _remember(cache: dict[Any, str], key: Any, value: str) -> str:
    if len(cache) >= KEY_CACHE_SIZE:
        cache.clear()
    cache[key] = value
    return value


class RateLimitEngine:
    """The limiter of one middleware: validated options, storage, and :meth:`decide`.

    Built by the middleware from its keyword arguments (see
    :class:`agenthood_mw.RateLimitMiddleware`); every option is validated here, at
    construction, with an error naming it.
    """

    def __init__(
        self,
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
        self.client_address = ClientAddress(trusted_proxies, ipv6_prefix=ipv6_prefix)
        #: Whether :meth:`decide` reads ``forwarded_for`` (only behind trusted proxies).
        self.reads_forwarded_for = self.client_address.enabled
        self.exempt = PathSet(exempt_paths, option="exempt_paths")
        self.has_exempt = bool(self.exempt)
        self.backend: Backend = make_backend(
            storage=storage,
            strategy=strategy,
            key_prefix=key_prefix,
            storage_options=storage_options,
            clock=clock,
            max_keys=max_keys,
            windows=self.planner.windows,
        )
        #: The in-process store, called without ``await`` (it never does I/O).
        self.memory: MemoryGCRA | None = (
            self.backend.store if isinstance(self.backend, _MemoryBackend) else None
        )
        self.failures = FailureLog(warn_interval)
        # One bounded cache per concern: an identity's subject, a client address's subject.
        self._user_subjects: dict[tuple[str | None, str], str] = {}
        self._address_subjects: dict[tuple[str | None, tuple[str, ...]], str] = {}

    # -- the public call -----------------------------------------------------------------------
    async def decide(
        self,
        identity: object,
        method: str,
        path: str,
        *,
        client: str | None = None,
        forwarded_for: Sequence[str] = (),
        request: Any = None,
    ) -> Verdict:
        """Count this request against every applicable rule and say what to answer.

        Args:
            identity: the authenticated user (``scope["user"]``), or ``None``/anonymous.
            method: the HTTP method (rules may be restricted to methods).
            path: the path relative to the app's mount point (``exempt_paths``, rule
                templates).
            client: the peer address, keying an anonymous caller.
            forwarded_for: the ``X-Forwarded-For`` values, read only from trusted proxies.
            request: the ASGI scope / WSGI environ, handed to the ``key=``/``cost=`` hooks.

        Returns:
            a :class:`Verdict`: admit (with headers), or the error response to send.
        """
        subject = self.subject(identity, path, client, forwarded_for, request)
        if subject is None:
            return NOT_LIMITED
        cost = 1 if self.cost_func is None else check_cost(self.cost_func(request))
        memory = self.memory
        only = self.planner.only
        if memory is not None and only is not None:
            # One rule in this process (the usual setup): no lists to build, nothing awaited.
            key = keys.rate_limit_key(subject, only.name)
            return self.planner.verdict_one(only, memory.hit_one(only.policy, key, cost))
        plan = self.plan(subject, method, path, cost)
        if plan is None:
            return NOT_LIMITED
        if memory is not None:
            return self.planner.verdict(plan.rules, memory.hit(plan.items))
        try:
            outcomes = await self.backend.hit(plan.items)
        except self.backend.errors as exc:
            return self.unavailable(exc)
        return self.planner.verdict(plan.rules, outcomes)

    def decide_sync(
        self,
        identity: object,
        method: str,
        path: str,
        *,
        client: str | None = None,
        forwarded_for: Sequence[str] = (),
        request: Any = None,
    ) -> Verdict:
        """:meth:`decide` for synchronous callers (WSGI, threads): the same verdicts."""
        subject = self.subject(identity, path, client, forwarded_for, request)
        if subject is None:
            return NOT_LIMITED
        cost = 1 if self.cost_func is None else check_cost(self.cost_func(request))
        plan = self.plan(subject, method, path, cost)
        if plan is None:
            return NOT_LIMITED
        try:
            outcomes = self.backend.hit_sync(plan.items)
        except self.backend.errors as exc:
            return self.unavailable(exc)
        return self.planner.verdict(plan.rules, outcomes)

    # -- the two sans-I/O halves -----------------------------------------------------------------
    def plan(self, subject: str, method: str, path: str, cost: int) -> Plan | None:
        """The rules that apply to a request of ``subject`` and the storage items to count;
        ``None`` when no rule applies."""
        only = self.planner.only
        if only is not None:
            return Plan((only,), [(only.policy, keys.rate_limit_key(subject, only.name), cost)])
        rules = []
        items = []
        for rule, suffix in self.planner.match(method, path):
            rules.append(rule)
            items.append((rule.policy, keys.rate_limit_key(subject, suffix), cost))
        return Plan(rules, items) if rules else None

    def unavailable(self, exc: BaseException) -> Verdict:
        """The verdict when the storage failed: admit (``fail_open``) or a 503 with
        ``Retry-After``. Counted and logged (at most once per ``warn_interval``)."""
        self.failures.record(exc, fail_open=self.fail_open)
        return Verdict(None) if self.fail_open else Verdict(None, error=UNAVAILABLE)

    # -- keys ----------------------------------------------------------------------------------
    def subject(
        self,
        identity: object,
        path: str,
        client: str | None,
        forwarded_for: Sequence[str],
        request: Any,
    ) -> str | None:
        """The request's subject key (:mod:`agenthood_mw._core.keys`); ``None``: not limited
        (an exempt path, or the ``key=`` hook said so)."""
        if self.has_exempt and path in self.exempt:
            return None
        if self.key_func is not None:
            value = self.key_func(request)
            if value is None:
                return None
            if not isinstance(value, str):
                raise TypeError(f"key: the callable must return a str or None, got {value!r}")
            return keys.custom_subject(value)
        if type(identity) is Identity:
            if identity.authenticated:
                found = self._user_subjects.get((identity.tenant, identity.user_id))
                if found is not None:
                    return found
                scope = keys.scope_of(identity)
                if scope is not None:
                    key = (identity.tenant, identity.user_id)
                    return _remember(self._user_subjects, key, keys.rate_limit_subject(scope))
        elif identity is not None:
            scope = keys.scope_of(identity)  # another BaseUser: not cached (no immutable id)
            if scope is not None:
                return keys.rate_limit_subject(scope)
        # Anonymous, or an identity no scope can be minted for: keyed by its address.
        return self.address_subject(client, forwarded_for)

    def address_subject(self, client: str | None, forwarded_for: Sequence[str]) -> str:
        """The subject of an anonymous caller: its normalised client address."""
        hops = tuple(forwarded_for) if self.reads_forwarded_for else ()
        found = self._address_subjects.get((client, hops))
        if found is not None:
            return found
        address = self.client_address.resolve(client, hops)
        subject = keys.rate_limit_subject(keys.anonymous_scope(address))
        return _remember(self._address_subjects, (client, hops), subject)

"""ASGI ``RateLimitMiddleware``: moves bytes; decisions come from the core and the storage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from agenthood_mw._asgi import add_headers, agenthood_state, route_path, send_error
from agenthood_mw._core.ratelimit import (
    UNAVAILABLE,
    CompiledRule,
    RateLimitDecision,
)
from agenthood_mw._identity import Identity
from agenthood_mw.ratelimit._base import RateLimitBase

if TYPE_CHECKING:
    from agenthood_mw.metering._asgi import CostMeterMiddleware

__all__ = ["RateLimitMiddleware"]

_XFF = b"x-forwarded-for"


class RateLimitMiddleware(RateLimitBase):
    """Per-user rate limits for any ASGI app (pure ASGI; websockets are limited at connect).

    ``max`` requests per ``window`` sustained plus ``burst`` at once, per authenticated user
    (per tenant when set; read from ``scope["user"]``), else per client address. See
    ``docs/rate-limiting.md`` for the exact semantics.

    Args:
        app: the wrapped ASGI app.
        window: ``"30s"``, ``"1m"``, ``"1h"``, ``"1d"`` or seconds.
        max: sustained requests per window (>= 1); omit only when ``rules`` are given.
        burst: extra requests allowed at once (>= 0).
        storage: ``memory://`` (one process), ``redis://``, ``rediss://``,
            ``redis+sentinel://``, ``redis+cluster://`` (several workers / machines).
        strategy: ``"gcra"`` (default), ``"moving-window"``, ``"sliding-window"``,
            ``"fixed-window"``.
        rules: further :class:`RateLimitRule` s (per route, per agent) checked together.
        key: ``key(scope) -> str | None`` replacing the default key; ``None`` = not limited.
        cost: ``cost(scope) -> int``, the request's weight (default 1).
        trusted_proxies: addresses/networks whose ``X-Forwarded-For`` is believed.
        exempt_paths: paths never limited (``"/health"``, ``"/static/*"``). Paths here and in
            rule templates are relative to the app: a mount prefix (``root_path``) is not
            part of them.
        fail_open: when the storage fails, admit (``True``) or answer 503 (``False``).
        headers: add ``RateLimit-Policy`` / ``RateLimit`` to responses.
        legacy_headers: also add ``X-RateLimit-Limit/Remaining/Reset``.
        key_prefix: prefix of every Redis key.
        storage_options: extra keyword arguments for the Redis client.
        max_keys: bound on keys held in ``memory://``.
        clock: a seconds clock for ``memory://`` + ``gcra`` (tests).
        warn_interval: seconds between two storage-failure warnings.
    """

    app: ASGIApp

    def _setup(self) -> None:
        only = self._only
        #: One rule, in-process storage, default key and cost, plain headers: the hot path.
        self._fast = (
            only is not None
            and self.memory is not None
            and self.key_func is None
            and self.cost_func is None
            and self.plain_headers
        )
        if self._fast:
            assert only is not None and self.memory is not None
            self._fast_rule = only
            self._hit_one = self.memory.hit_one
        # (identity object, its storage key) of the last authenticated request: an Identity is
        # immutable, and the pair holds a reference so the object's id cannot be reused.
        self._last: tuple[object, str] = (object(), "")
        # A CostMeterMiddleware directly inside this one adds our headers along with its own
        # (one ``send`` wrapper instead of two; same headers, same order, see _inner_meter).
        self._meter_layer: CostMeterMiddleware | None = _inner_meter(self.app)

    def _fast_key(self, scope: Scope, user: object) -> str | None:
        """The storage key of the single rule (hot path), remembering the last identity's."""
        assert self._only is not None
        if type(user) is Identity and user.authenticated:
            ident = self._user_keys.get((user.tenant, user.user_id)) or self.user_key(user)
            assert ident is not None
            key = ident + self._only.suffix
            self._last = (user, key)
            return key
        ident = self._key(scope)
        return None if ident is None else ident + self._only.suffix

    def _key(self, scope: Scope) -> str | None:
        if self.key_func is not None:
            return self.custom_key(scope)
        key = self.user_key(scope.get("user"))
        if key is not None:
            return key
        client = scope.get("client")
        peer = client[0] if client else None
        if self.client_address.enabled:
            xff = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == _XFF]
            return self.address_key(self.client_address.resolve(peer, xff))
        return self.address_key(peer or "unknown")

    def _fast_decision(self, scope: Scope) -> RateLimitDecision | None:
        """The hot path's decision, already counted when admitted: one rule, in-process
        storage, default key and cost. ``None`` (nothing counted) when the request takes
        another path: not in fast mode, an exempt path, or no key (passed through).

        :class:`~agenthood_mw.AuthMiddleware` calls this directly when this layer sits
        right inside it (see ``AuthMiddleware``'s handoff); this layer's own ``__call__`` does
        the same.
        """
        if not self._fast or (self.has_exempt and route_path(scope) in self.exempt):
            return None
        user = scope.get("user")
        last = self._last
        key = last[1] if user is last[0] else self._fast_key(scope, user)
        if key is None:
            return None
        return self._hit_one(self._fast_rule.policy, key, 1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        if self._fast:
            # Hot path: one rule, in-process storage, nothing awaited before the app.
            o = self._fast_decision(scope)
            if o is None:  # exempt, or no key: not limited
                await self.app(scope, receive, send)
                return
            if o[0]:  # allowed
                agenthood_state(scope)["rate_limit"] = o
                if kind != "http":
                    await self.app(scope, receive, send)
                    return
                headers = self._fast_rule.header_pair(o[2], o[3])
                meter_layer = self._meter_layer
                if meter_layer is not None and self.app is meter_layer:
                    await meter_layer._handle(scope, receive, send, headers)
                else:
                    await self.app(scope, receive, add_headers(send, headers))
                return
            await self._refuse_fast(scope, receive, send, o)
            return
        if self.has_exempt and route_path(scope) in self.exempt:
            await self.app(scope, receive, send)
            return
        user = scope.get("user")
        if type(user) is Identity and user.authenticated and self.key_func is None:
            ident: str | None = self._user_keys.get((user.tenant, user.user_id))
            if ident is None:
                ident = self.user_key(user)
        else:
            ident = self._key(scope)
        if ident is None:
            await self.app(scope, receive, send)
            return
        cost = 1 if self.cost_func is None else self.request_cost(scope)
        method = scope.get("method", "GET")
        rules, items = self.items(method, route_path(scope), ident, cost)
        if not rules:
            await self.app(scope, receive, send)
            return
        memory = self.memory
        outcomes: list[RateLimitDecision]
        if memory is not None:
            outcomes = memory.hit(items)
        else:
            try:
                outcomes = await self.backend.hit(items)
            except self.backend.errors as exc:
                self.failures.record(exc, fail_open=self.fail_open)
                agenthood_state(scope)["rate_limit"] = None
                if self.fail_open:
                    await self.app(scope, receive, send)
                else:
                    await send_error(scope, send, UNAVAILABLE)
                return
        await self._conclude(scope, receive, send, rules, outcomes)

    async def _refuse_fast(
        self, scope: Scope, receive: Receive, send: Send, decision: RateLimitDecision
    ) -> None:
        """The response to a refused fast-path decision (the single rule's 429)."""
        assert self._only is not None
        await self._conclude(scope, receive, send, [self._only], [decision])

    async def _conclude(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rules: list[CompiledRule],
        outcomes: list[RateLimitDecision],
    ) -> None:
        """Refuse, or run the app with the rate-limit headers, from the rules' outcomes."""
        verdict = self.planner.verdict(rules, outcomes)
        agenthood_state(scope)["rate_limit"] = verdict.decision
        if verdict.error is not None:
            await send_error(scope, send, verdict.error)
            return
        if not verdict.headers or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in verdict.headers)
        meter_layer = self._meter_layer
        if meter_layer is not None and self.app is meter_layer:
            await meter_layer._handle(scope, receive, send, extra)
            return
        await self.app(scope, receive, add_headers(send, extra))


def _inner_meter(app: object) -> CostMeterMiddleware | None:
    """``app`` when it is exactly a :class:`CostMeterMiddleware` (not a subclass, which may
    override ``__call__``), else ``None``.

    The rate limiter then calls the meter's request handler directly with its own headers
    instead of wrapping ``send`` around it: the response carries the same headers in the same
    order (the meter's, then ours), including the meter's own error responses. The shell checks
    ``meter_layer is self.app`` on every request, so replacing ``app`` later is honoured.
    """
    from agenthood_mw.metering._asgi import CostMeterMiddleware

    return app if type(app) is CostMeterMiddleware else None

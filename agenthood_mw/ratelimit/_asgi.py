"""ASGI ``RateLimitMiddleware``: reads the request, calls the engine's ``decide``, moves bytes."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from agenthood_mw._asgi import add_headers, agenthood_state, route_path, send_error
from agenthood_mw.ratelimit._base import RateLimitBase

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
        ipv6_prefix: anonymous IPv6 clients are keyed by this network prefix (1-128 bits,
            default 64); IPv4-mapped addresses count as IPv4.
        exempt_paths: paths never limited, matched exactly (``"/health"`` is not
            ``"/health/"``), or ``"/static/*"`` for a subtree. Paths here and in rule
            templates are relative to the app: a mount prefix (``root_path``) is not part of
            them.
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        engine = self.engine
        peer = scope.get("client")
        verdict = await engine.decide(
            scope.get("user"),
            scope.get("method", "GET"),
            route_path(scope),
            client=peer[0] if peer else None,
            forwarded_for=_forwarded_for(scope) if engine.reads_forwarded_for else (),
            request=scope,
        )
        if not verdict.limited:
            await self.app(scope, receive, send)
            return
        agenthood_state(scope)["rate_limit"] = verdict.decision
        if verdict.error is not None:
            await send_error(scope, send, verdict.error)
            return
        if kind == "http":
            send = add_headers(send, verdict.headers)
        await self.app(scope, receive, send)


def _forwarded_for(scope: Scope) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == _XFF]

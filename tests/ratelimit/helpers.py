"""Shared helpers for the rate-limit tests: a controllable clock, an identity-setting app."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from agenthood_mw import Identity


class Clock:
    """A manual seconds clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SetUser:
    """Stand-in for AuthMiddleware: ``X-User`` / ``X-Tenant`` headers -> ``scope["user"]``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers", ()))
            user = headers.get(b"x-user")
            if user:
                tenant = headers.get(b"x-tenant")
                scope["user"] = Identity(
                    user_id=user.decode(), tenant=tenant.decode() if tenant else None
                )
            else:
                scope["user"] = Identity.anonymous()
        await self.app(scope, receive, send)


def parse_ratelimit(value: str) -> dict[str, dict[str, Any]]:
    """Parse a ``RateLimit`` / ``RateLimit-Policy`` field (RFC 8941 list of string items)."""
    out: dict[str, dict[str, Any]] = {}
    for member in value.split(","):
        parts = [p.strip() for p in member.split(";")]
        name = parts[0]
        assert name.startswith('"') and name.endswith('"'), value
        params: dict[str, Any] = {}
        for p in parts[1:]:
            k, _, v = p.partition("=")
            assert k.isalpha() and k.islower(), value
            params[k] = int(v) if v.isdigit() else float(v)
        out[name[1:-1]] = params
    return out

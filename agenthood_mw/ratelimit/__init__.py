"""Per-user rate limiting: GCRA with a moving-window ceiling, in memory or shared via Redis.

``RateLimitMiddleware`` is the ASGI middleware (the WSGI twin is
:class:`WSGIRateLimitMiddleware`, re-exported by
:mod:`agenthood_mw.wsgi`); ``RateLimiter`` applies one limit anywhere (e.g. tokens per
minute). Both middlewares call one engine, :meth:`RateLimitEngine.decide`, which returns a
:class:`Verdict`. Semantics, headers and storage choices: ``docs/rate-limiting.md``.
"""

from __future__ import annotations

from agenthood_mw._core.ratelimit import RateLimitDecision, RateLimitRule, Verdict
from agenthood_mw.ratelimit._asgi import RateLimitMiddleware
from agenthood_mw.ratelimit._engine import RateLimitEngine
from agenthood_mw.ratelimit._limiter import RateLimiter, RateLimitStorageError
from agenthood_mw.ratelimit._wsgi import RateLimitMiddleware as WSGIRateLimitMiddleware

__all__ = [
    "RateLimitDecision",
    "RateLimitEngine",
    "RateLimitMiddleware",
    "RateLimitRule",
    "RateLimitStorageError",
    "RateLimiter",
    "Verdict",
    "WSGIRateLimitMiddleware",
]

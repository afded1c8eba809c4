"""Per-user rate limiting: GCRA with a moving-window ceiling, in memory or shared via Redis.

``RateLimitMiddleware`` is the ASGI middleware (the WSGI twin is
:class:`WSGIRateLimitMiddleware`, re-exported by
:mod:`agenthood_mw.wsgi`); ``RateLimiter`` applies one limit anywhere (e.g. tokens per
minute). Semantics, headers and storage choices: ``docs/rate-limiting.md``.
"""

from __future__ import annotations

from agenthood_mw._core.ratelimit import RateLimitDecision, RateLimitRule
from agenthood_mw.ratelimit._asgi import RateLimitMiddleware
from agenthood_mw.ratelimit._limiter import RateLimiter, RateLimitStorageError
from agenthood_mw.ratelimit._wsgi import RateLimitMiddleware as WSGIRateLimitMiddleware

__all__ = [
    "RateLimitDecision",
    "RateLimitMiddleware",
    "RateLimitRule",
    "RateLimitStorageError",
    "RateLimiter",
    "WSGIRateLimitMiddleware",
]

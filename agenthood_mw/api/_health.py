"""``GET /health``: one shared store check at a time, its result kept for a short time.

The endpoint is unauthenticated and each check reads three stores; callers share the check in
flight (a single flight per event loop) and its result for ``ttl`` seconds, so any number of
probes costs at most three store reads per ``ttl``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["HealthCache"]

Check = Callable[[], Awaitable[dict[str, str]]]


class HealthCache:
    """Runs ``check`` at most once at a time and reuses its result for ``ttl`` seconds."""

    def __init__(
        self, check: Check, *, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._check = check
        self.ttl = ttl
        self._clock = clock
        self._result: dict[str, str] | None = None
        self._expires = 0.0
        self._inflight: asyncio.Future[dict[str, str]] | None = None

    async def checks(self) -> dict[str, str]:
        """The result of the store checks (cached, or shared with the check in flight)."""
        if self._result is not None and self._clock() < self._expires:
            return self._result
        task = self._inflight
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(self._run())
            self._inflight = task
        # shielded: a caller that goes away does not cancel the check the others wait for
        return await asyncio.shield(task)

    def retry_after(self) -> int:
        """Whole seconds until a new check can give another answer (at least 1)."""
        return max(1, math.ceil(self._expires - self._clock()))

    async def _run(self) -> dict[str, str]:
        try:
            result = await self._check()
            self._result = result
            self._expires = self._clock() + self.ttl
            return result
        finally:
            self._inflight = None


def health_body(checks: dict[str, str]) -> tuple[dict[str, Any], bool]:
    """The response body and whether every store answered."""
    healthy = all(v == "ok" for v in checks.values())
    return {"status": "ok" if healthy else "unavailable", "checks": checks}, healthy

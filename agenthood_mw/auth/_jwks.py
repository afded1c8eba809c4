"""Fetching a JWKS endpoint for the JWT authenticator (the policy is in ``_core.jwt``).

Fetching uses PyJWT's :class:`~jwt.PyJWKClient` (urllib, redirects refused) without its own
caches: :class:`~agenthood_mw._core.jwt.JWKSKeys` decides when to fetch and keeps the keys. The
ASGI shell runs the fetch in a worker thread, so the event loop never blocks. Key-bearing token
headers (``jku``, ``x5u``, ``jwk``) are never looked at: only the configured URL is fetched.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio.to_thread
import jwt

from agenthood_mw._core.jwt import JWKSKeys

__all__ = ["JWKSFetcher"]

logger = logging.getLogger("agenthood_mw.auth")


class JWKSFetcher:
    """Keeps the keys of one JWKS URL current; safe to share between threads."""

    def __init__(self, url: str, keys: JWKSKeys, *, timeout: float) -> None:
        self.url = url
        self.keys = keys
        self._client = jwt.PyJWKClient(
            url,
            cache_keys=False,
            cache_jwk_set=False,
            timeout=timeout,
            headers={"User-Agent": "agenthood-mw", "Accept": "application/json"},
        )
        self._lock = threading.Lock()

    def _refresh(self, kid: str | None, alg: str) -> None:
        # One fetch at a time; whoever waited re-checks, and the cooldown stops a second fetch.
        with self._lock:
            if not self.keys.should_fetch(kid, alg):
                return
            self.keys.fetch_started()
            try:
                document: Any = self._client.fetch_data()
                self.keys.fetch_succeeded(document)
            except Exception as exc:
                logger.warning(
                    "JWKS fetch from %s failed (%s); %s",
                    self.url,
                    type(exc).__name__,
                    "serving the previous keys" if self.keys.loaded else "no key available yet",
                )

    def key_sync(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The verification key, fetching in this thread when due (WSGI)."""
        # A fetch in flight (the lock is held) is waited for rather than raced.
        if self._lock.locked() or self.keys.should_fetch(kid, alg):
            self._refresh(kid, alg)
        return self.keys.key_for(kid, alg)

    async def key_async(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The verification key, fetching in a worker thread when due (ASGI)."""
        if self._lock.locked() or self.keys.should_fetch(kid, alg):
            await anyio.to_thread.run_sync(self._refresh, kid, alg)
        return self.keys.key_for(kid, alg)

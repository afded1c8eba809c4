"""Fetching a JWKS endpoint for the JWT authenticator (the policy is in ``_core.jwt``).

Fetching uses PyJWT's :class:`~jwt.PyJWKClient` (urllib, redirects refused) without its own
caches: :class:`~agenthood_mw._core.jwt.JWKSKeys` decides when to fetch and keeps the keys. The
authenticate flow yields the fetch as a blocking step, so the ASGI shell runs it in a worker
thread and the event loop never blocks. Key-bearing token
headers (``jku``, ``x5u``, ``jwk``) are never looked at: only the configured URL is fetched.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

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

    def due(self, kid: str | None, alg: str) -> bool:
        """Whether :meth:`refresh` should run before a token with this ``kid``/``alg`` is
        verified (a fetch in flight, whose lock is held, is waited for rather than raced)."""
        return self._lock.locked() or self.keys.should_fetch(kid, alg)

    def refresh(self, kid: str | None, alg: str) -> None:
        """Fetch the key set when still due (blocking I/O: the ASGI shell runs it in a
        worker thread, the WSGI shell inline)."""
        self._refresh(kid, alg)

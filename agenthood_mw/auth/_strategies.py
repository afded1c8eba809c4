"""The built-in authenticators: ``"jwt"`` and ``"api_key"`` (see :class:`Authenticator`)."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from agenthood_mw._core.apikeys import APIKeyRecord, check_record, looks_like_api_key, parse_key
from agenthood_mw._core.authcore import Credential
from agenthood_mw._core.authflow import Call, Flow, FlowAuthenticator
from agenthood_mw._core.jwt import JWTSettings
from agenthood_mw._identity import Identity
from agenthood_mw.auth._jwks import JWKSFetcher
from agenthood_mw.auth._keystore import KeyStore

__all__ = ["APIKeyAuthenticator", "JWTAuthenticator"]


class JWTAuthenticator(FlowAuthenticator):
    """Verifies JWS compact tokens from ``Authorization: Bearer`` with a fixed key or a JWKS."""

    name = "jwt"
    cacheable = True

    def __init__(
        self, settings: JWTSettings, *, key: Any = None, jwks: JWKSFetcher | None = None
    ) -> None:
        if (key is None) == (jwks is None):
            raise ValueError("JWTAuthenticator needs exactly one of key= or jwks=")
        self.settings = settings
        self._key = key
        self._jwks = jwks

    def recognizes(self, credential: Credential) -> bool:
        return credential.source == "authorization" and credential.token.count(".") == 2

    def auth_flow(self, credential: Credential) -> Flow[Identity]:
        """Check the header, fetch the JWKS when due (a blocking step), verify."""
        header = self.settings.header(credential.token)
        key = self._key
        if self._jwks is not None:
            kid, alg = header.get("kid"), header["alg"]
            if self._jwks.due(kid, alg):
                yield Call(partial(self._jwks.refresh, kid, alg), blocking=True)
            key = self._jwks.keys.key_for(kid, alg)
        return self.settings.verify(credential.token, key)


class APIKeyAuthenticator(FlowAuthenticator):
    """Checks ``ah_`` API keys (``Authorization: Bearer ah_...`` or the API-key header).

    Keys are looked up on every request (never cached), so a revocation is immediate.
    """

    name = "api_key"
    cacheable = False

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.blocking = bool(getattr(store, "blocking", False))

    def recognizes(self, credential: Credential) -> bool:
        return looks_like_api_key(credential.token)

    def auth_flow(self, credential: Credential) -> Flow[Identity]:
        """Check the format and checksum (garbage never reaches the store), look the key up
        (a blocking step for a blocking store), compare."""
        key_id = parse_key(credential.token)
        record: APIKeyRecord | None = yield Call(
            partial(self.store.get, key_id), blocking=self.blocking
        )
        return check_record(credential.token, record, time.time())

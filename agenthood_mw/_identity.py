"""The authenticated caller: one immutable object shared by every middleware."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from starlette.authentication import BaseUser

__all__ = ["ANONYMOUS_USER_ID", "Identity"]

#: ``user_id`` of an unauthenticated identity (``optional=True`` mode).
ANONYMOUS_USER_ID = ""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, eq=True)
class Identity(BaseUser):
    """Who is calling, as established by :class:`~agenthood_mw.AuthMiddleware`.

    It is a Starlette :class:`~starlette.authentication.BaseUser`, so ``request.user``,
    ``@requires(...)`` and templates work unchanged. ``scope["user"]`` holds it for ASGI apps,
    ``environ["agenthood.identity"]`` for WSGI apps, and :func:`~agenthood_mw.current_identity`
    returns it anywhere in the request's task.

    Attributes:
        user_id: the verified subject (JWT ``sub`` or the configured ``user_claim``, or the
            API key's owner). Empty only for the anonymous identity.
        tenant: the tenant the user belongs to, when the token carries one.
        scopes: the granted OAuth-style scopes (``agents:run`` ...).
        claims: the verified claims, read-only (empty for API keys).
        method: how the caller was authenticated: ``"jwt"``, ``"api_key"``, ``"anonymous"`` or
            the name of a custom authenticator.
        authenticated: ``False`` only for the anonymous identity.
    """

    user_id: str
    tenant: str | None = None
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(
        default_factory=lambda: _EMPTY, compare=False, hash=False, repr=False
    )
    method: str = "jwt"
    authenticated: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.user_id, str):
            raise TypeError("Identity.user_id must be a str")
        if self.authenticated and not self.user_id:
            raise ValueError("an authenticated Identity needs a non-empty user_id")
        # Accept any iterable of scopes from callers, store an immutable set.
        object.__setattr__(self, "scopes", frozenset(self.scopes))
        if not isinstance(self.claims, MappingProxyType):
            object.__setattr__(self, "claims", MappingProxyType(dict(self.claims)))

    @classmethod
    def anonymous(cls) -> Identity:
        """The identity of a caller that presented no credential (``optional=True``)."""
        return _ANONYMOUS

    @property
    def is_authenticated(self) -> bool:
        return self.authenticated

    @property
    def display_name(self) -> str:
        return self.user_id

    @property
    def identity(self) -> str:
        return self.user_id

    def has_scopes(self, *required: str) -> bool:
        """True when every scope in ``required`` was granted."""
        return all(s in self.scopes for s in required)


_ANONYMOUS = Identity(user_id=ANONYMOUS_USER_ID, method="anonymous", authenticated=False)

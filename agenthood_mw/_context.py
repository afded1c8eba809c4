"""Per-request context variables (set by the middlewares, read anywhere in the request)."""

from __future__ import annotations

from contextvars import ContextVar, Token

from agenthood_mw._identity import Identity

__all__ = ["current_identity", "identity_var", "reset_identity", "set_identity"]

_identity: ContextVar[Identity | None] = ContextVar("agenthood_identity", default=None)
#: The context variable behind :func:`current_identity` (for shells that bind it per chunk).
identity_var = _identity


def current_identity() -> Identity:
    """Return the :class:`Identity` of the request being handled.

    Raises:
        LookupError: when called outside a request that passed through ``AuthMiddleware``
            (never a silent anonymous default: a missing identity is a wiring bug).
    """
    identity = _identity.get()
    if identity is None:
        raise LookupError(
            "current_identity() was called outside a request handled by AuthMiddleware"
        )
    return identity


def set_identity(identity: Identity) -> Token[Identity | None]:
    """Bind ``identity`` to the current context; returns the token for :func:`reset_identity`."""
    return _identity.set(identity)


def reset_identity(token: Token[Identity | None]) -> None:
    """Undo :func:`set_identity`."""
    _identity.reset(token)

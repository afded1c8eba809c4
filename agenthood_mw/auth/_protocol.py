"""The :class:`Authenticator` protocol custom strategies implement, and its outcomes."""

from __future__ import annotations

from agenthood_mw._core.authcore import (
    Authenticator,
    AuthUnavailable,
    Credential,
    InvalidCredential,
)

__all__ = ["AuthUnavailable", "Authenticator", "Credential", "InvalidCredential"]

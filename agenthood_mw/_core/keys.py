"""Every per-subject key, derived in one place from a :class:`MemoryScope`.

A subject is a :class:`MemoryScope`: an authenticated caller's ``(tenant, user)``, or, for an
unauthenticated caller, the reserved tenant :data:`ANONYMOUS_TENANT` with the caller's
normalised client address as the user (no identity can claim that tenant, so no token or API
key ever shares a key with an address). Each store then keys the subject the same way:

==========================  =================================================================
what                        key
==========================  =================================================================
memory, traces, ledger,     :func:`subject_key` -- ``scope.storage_key``
budgets, checkpoints        (``<tenant>/<user>``, each part percent-encoded)
request rate, per rule      :func:`rate_limit_key` -- ``u:<storage_key>|<rule>[:<params>]``
token rate                  :func:`token_rate_key` -- ``tpm:<storage_key>``
operator ``key=`` callable  :func:`custom_subject` -- ``k:<percent-encoded text>``
==========================  =================================================================

The storage key only holds ``A-Z a-z 0-9 - . _ ~ %`` and one ``/``, so the prefixes and the
``|`` before the rule can never be forged by user text: distinct scopes and rules never give
equal keys (a property test pins it).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

from agenthood_mw._core.scope import ANONYMOUS_TENANT, MemoryScope, require_scope
from agenthood_mw._identity import Identity

__all__ = [
    "RATE_LIMIT_PREFIX",
    "TOKEN_RATE_PREFIX",
    "anonymous_scope",
    "custom_subject",
    "rate_limit_key",
    "rate_limit_subject",
    "scope_of",
    "subject_key",
    "token_rate_key",
]

#: Prefix of a scope's request-rate keys.
RATE_LIMIT_PREFIX: Final = "u:"
#: Prefix of a scope's token-rate key.
TOKEN_RATE_PREFIX: Final = "tpm:"  # noqa: S105 - a key prefix, not a secret
#: Prefix of a key returned by an operator's ``key=`` callable (never a scope's).
CUSTOM_PREFIX: Final = "k:"
#: The anonymous subject of a client whose address cannot name a scope (never an IP address).
UNNAMED_CLIENT: Final = "unknown"


def subject_key(scope: MemoryScope) -> str:
    """The key of a subject's memory, traces, checkpoints, ledger rows and budgets."""
    return require_scope(scope).storage_key


def token_rate_key(scope: MemoryScope) -> str:
    """The key of a subject's tokens-per-minute bucket."""
    return TOKEN_RATE_PREFIX + require_scope(scope).storage_key


def rate_limit_subject(scope: MemoryScope) -> str:
    """The common part of a subject's request-rate keys (one per rule, see
    :func:`rate_limit_key`)."""
    return RATE_LIMIT_PREFIX + require_scope(scope).storage_key


def rate_limit_key(subject: str, rule: str) -> str:
    """The request-rate key of ``subject`` (:func:`rate_limit_subject` or
    :func:`custom_subject`) under one rule (its name, then ``:<param values>`` for a path
    template; both free of ``|``)."""
    return f"{subject}|{rule}"


def custom_subject(value: str) -> str:
    """The subject of a request keyed by the operator's ``key=`` callable."""
    return CUSTOM_PREFIX + quote(value, safe="")


def anonymous_scope(address: str) -> MemoryScope:
    """The subject of an unauthenticated caller: its normalised client address in the
    reserved anonymous tenant (``"unknown"`` when the text cannot name a scope)."""
    try:
        return MemoryScope.operator(user=address, tenant=ANONYMOUS_TENANT)
    except (TypeError, ValueError):
        return MemoryScope.operator(user=UNNAMED_CLIENT, tenant=ANONYMOUS_TENANT)


def scope_of(user: object) -> MemoryScope | None:
    """The scope of an authenticated ``scope["user"]`` (an :class:`Identity` or any Starlette
    ``BaseUser`` with ``user_id``/``identity`` and ``tenant``).

    ``None`` for an anonymous caller, and for a user no scope can be minted for (the reserved
    anonymous tenant, a malformed id): callers then treat the request as anonymous.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    if isinstance(user, Identity):
        try:
            return MemoryScope.for_identity(user)
        except (PermissionError, TypeError, ValueError):
            return None
    user_id = getattr(user, "user_id", None)
    if not isinstance(user_id, str):
        user_id = getattr(user, "identity", None) or getattr(user, "display_name", None)
    tenant = getattr(user, "tenant", None)
    if not isinstance(tenant, str) or not tenant:
        tenant = None
    if not isinstance(user_id, str) or tenant == ANONYMOUS_TENANT:
        return None
    try:
        return MemoryScope.operator(user=user_id, tenant=tenant)
    except (TypeError, ValueError):
        return None

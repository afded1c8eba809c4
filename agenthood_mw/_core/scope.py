"""``MemoryScope``: the mandatory namespace of every memory, trace and ledger operation.

A scope is minted from an authenticated :class:`~agenthood_mw.Identity` or by an explicit
operator call -- never from request data. Its ``storage_key`` is a reversible encoding in which
user text can never form a delimiter, a SQL ``LIKE`` wildcard, a Redis glob or hash-tag brace.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Final
from urllib.parse import quote, unquote

from agenthood_mw._identity import Identity

__all__ = [
    "ANONYMOUS_TENANT",
    "MAX_SCOPE_PART_LENGTH",
    "MemoryScope",
    "require_scope",
    "validate_scope_part",
]

#: Longest tenant or user id accepted in a scope (in characters).
MAX_SCOPE_PART_LENGTH: Final = 256

#: Tenant reserved for unauthenticated requests (metering attributes them here). No identity
#: can claim it: :meth:`MemoryScope.for_identity` refuses it, so no token or API key ever
#: shares a scope (budget, ledger, traces) with anonymous callers.
ANONYMOUS_TENANT: Final = "agenthood.anonymous"

_MINT: Final = object()
_SEP: Final = "/"


def validate_scope_part(value: object, *, what: str) -> str:
    """Check one scope component and return it unchanged.

    Rules: a ``str``; non-empty; at most :data:`MAX_SCOPE_PART_LENGTH` characters; no control,
    format, surrogate or unassigned code points; already in Unicode NFC. Nothing is normalised
    (normalising could merge two distinct subjects); ids are compared byte for byte.
    """
    if not isinstance(value, str):
        raise TypeError(f"MemoryScope {what} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"MemoryScope {what} must not be empty")
    if len(value) > MAX_SCOPE_PART_LENGTH:
        raise ValueError(f"MemoryScope {what} is longer than {MAX_SCOPE_PART_LENGTH} characters")
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise ValueError(f"MemoryScope {what} contains a control or invalid character")
    if not unicodedata.is_normalized("NFC", value):
        raise ValueError(f"MemoryScope {what} is not in Unicode NFC form")
    return value


def _encode(part: str) -> str:
    return quote(part, safe="", encoding="utf-8", errors="strict")


# A label part: any text in which ``%`` and ``/`` appear only as the escapes ``%25`` / ``%2F``.
_LABEL_PART: Final = re.compile(r"(?:[^%/]|%25|%2F)+")


def _label_part(part: str) -> str:
    return part.replace("%", "%25").replace("/", "%2F")


def _unlabel_part(text: str) -> str:
    if not _LABEL_PART.fullmatch(text):
        raise ValueError(f"malformed MemoryScope label part {text!r}")
    return text.replace("%2F", "/").replace("%25", "%")


class MemoryScope:
    """The namespace one user's data lives in: ``(tenant, user)``. Immutable and hashable.

    Create one with :meth:`for_identity` (the normal path) or :meth:`operator` (admin tools:
    data-protection erase/export, the CLI). The constructor is private.

    Attributes:
        tenant: the tenant id, or ``None``.
        user: the user id.
        storage_key: reversible, delimiter-safe encoding used by every backend (only
            ``A-Z a-z 0-9 - . _ ~ %`` and one ``/`` separator).
    """

    __slots__ = ("_key", "_tenant", "_user")

    _tenant: str | None
    _user: str
    _key: str

    def __init__(self, tenant: str | None, user: str, *, _token: object = None) -> None:
        if _token is not _MINT:
            raise TypeError(
                "MemoryScope cannot be built directly; use MemoryScope.for_identity(identity) "
                "or MemoryScope.operator(user=..., tenant=...)"
            )
        if tenant is not None:
            validate_scope_part(tenant, what="tenant")
        validate_scope_part(user, what="user")
        object.__setattr__(self, "_tenant", tenant)
        object.__setattr__(self, "_user", user)
        object.__setattr__(self, "_key", _encode(tenant or "") + _SEP + _encode(user))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("MemoryScope is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("MemoryScope is immutable")

    @classmethod
    def for_identity(cls, identity: Identity) -> MemoryScope:
        """The scope of an authenticated caller (``per-user`` isolation: tenant + user)."""
        if not isinstance(identity, Identity):
            raise TypeError("MemoryScope.for_identity() needs an agenthood_mw.Identity")
        if not identity.is_authenticated:
            raise PermissionError("an anonymous identity has no memory scope")
        if identity.tenant == ANONYMOUS_TENANT:
            raise PermissionError(
                f"the tenant {ANONYMOUS_TENANT!r} is reserved for unauthenticated requests"
            )
        return cls(identity.tenant, identity.user_id, _token=_MINT)

    @classmethod
    def operator(cls, *, user: str, tenant: str | None = None) -> MemoryScope:
        """An explicitly named scope, for operator tools (erase/export, CLI, migrations)."""
        return cls(tenant, user, _token=_MINT)

    @classmethod
    def from_storage_key(cls, key: str) -> MemoryScope:
        """Decode a :attr:`storage_key` (for backends listing their own scopes)."""
        if not isinstance(key, str) or key.count(_SEP) != 1:
            raise ValueError("malformed MemoryScope storage key")
        raw_tenant, raw_user = key.split(_SEP)
        tenant = unquote(raw_tenant, errors="strict") if raw_tenant else None
        scope = cls(tenant, unquote(raw_user, errors="strict"), _token=_MINT)
        if scope.storage_key != key:
            raise ValueError("malformed MemoryScope storage key")
        return scope

    @property
    def tenant(self) -> str | None:
        return self._tenant

    @property
    def user(self) -> str:
        return self._user

    @property
    def storage_key(self) -> str:
        return self._key

    @property
    def label(self) -> str:
        """The one textual rendering of a scope (``memoryScope`` in responses, traces, reports,
        alerts, CLI output): ``usr_8f3a`` for a tenantless user, ``acme/usr_8f3a`` for user
        ``usr_8f3a`` of tenant ``acme``.

        Unambiguous and reversible (:meth:`from_label`): inside each part ``%`` is written
        ``%25`` and ``/`` is written ``%2F``, so the only bare ``/`` separates tenant from user
        and a tenantless ``t1/u`` (``t1%2Fu``) never looks like user ``u`` of tenant ``t1``.
        Every other character is shown as is.
        """
        user = _label_part(self._user)
        return user if self._tenant is None else f"{_label_part(self._tenant)}/{user}"

    @classmethod
    def from_label(cls, label: str) -> MemoryScope:
        """The scope a :attr:`label` renders (for operator tools reading reports or traces).

        Raises ``ValueError`` for text no scope renders to (an unescaped ``%``, more than one
        ``/``, an empty or invalid part) and ``TypeError`` for a non-``str``.
        """
        if not isinstance(label, str):
            raise TypeError(f"MemoryScope label must be a str, got {type(label).__name__}")
        parts = label.split(_SEP)
        if len(parts) > 2:
            raise ValueError("malformed MemoryScope label: more than one unescaped '/'")
        user = _unlabel_part(parts[-1])
        tenant = _unlabel_part(parts[0]) if len(parts) == 2 else None
        return cls(tenant, user, _token=_MINT)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemoryScope):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(("MemoryScope", self._key))

    def __repr__(self) -> str:
        return f"MemoryScope(tenant={self._tenant!r}, user={self._user!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (MemoryScope.from_storage_key, (self._key,))


def require_scope(scope: object) -> MemoryScope:
    """Return ``scope`` if it is a :class:`MemoryScope`; raise ``TypeError`` otherwise."""
    if not isinstance(scope, MemoryScope):
        raise TypeError(
            f"a MemoryScope is required, got {type(scope).__name__}; every memory, trace and "
            "ledger operation must be scoped"
        )
    return scope

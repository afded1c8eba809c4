"""Sans-I/O authentication decisions shared by the ASGI and WSGI ``AuthMiddleware`` shells.

What lives here: extracting one credential from the request headers (RFC 6750 rules), the
RFC 6750 error responses (precomputed per realm), the :class:`Authenticator` protocol and the
chain that picks the first authenticator recognising a credential, the subject and scope
checks, and the verified-token cache policy (bounded, an entry never outlives its token's
``exp``). The flow that strings them together is in :mod:`agenthood_mw._core.authflow`.
Nothing here performs I/O; the shells feed header bytes in and send what is decided.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

from cachetools import FIFOCache

from agenthood_mw._core.scope import MemoryScope, validate_scope_part
from agenthood_mw._errors import HTTPError
from agenthood_mw._identity import Identity

__all__ = [
    "MAX_EPOCH",
    "AuthError",
    "AuthUnavailable",
    "Authenticator",
    "Challenges",
    "Credential",
    "InsufficientScope",
    "InvalidCredential",
    "MalformedRequest",
    "MissingCredential",
    "TokenCache",
    "cache_expiry",
    "check_identity",
    "check_scopes",
    "check_subject",
    "extract_credential",
    "select_authenticator",
    "validate_scopes",
]

#: RFC 6750 ``b64token``: the only characters a bearer token may contain.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: RFC 6750 ``scope-token`` characters (``%x21 / %x23-5B / %x5D-7E``).
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_REALM = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


# --- outcomes -------------------------------------------------------------------------------


class AuthError(Exception):
    """Base of the authentication outcomes; never carries token material in its message."""


class MissingCredential(AuthError):
    """No credential (or one in a scheme this server does not accept): 401 with a challenge."""


class InvalidCredential(AuthError):
    """The credential was recognised but is invalid, expired or revoked: 401 invalid_token.

    Custom :class:`Authenticator` implementations raise this; its message is never sent.
    """


class MalformedRequest(AuthError):
    """Duplicate or conflicting credentials, or a syntactically broken header: 400."""


class InsufficientScope(AuthError):
    """Authenticated, but a required scope is missing: 403 insufficient_scope."""


class AuthUnavailable(AuthError):
    """The credential cannot be checked right now (no signing key ever obtained): 503."""


@dataclass(frozen=True, slots=True)
class Credential:
    """One credential presented by the client.

    Attributes:
        token: the credential text (a JWT, an ``ah_`` API key, or anything a custom
            authenticator understands), without the ``Bearer`` scheme.
        source: ``"authorization"`` (``Authorization: Bearer ...``) or the lower-case name of
            the API-key header it came from (``"x-api-key"``).
    """

    token: str
    source: str

    def __repr__(self) -> str:  # never print secrets
        return f"Credential(source={self.source!r}, token=<{len(self.token)} chars>)"


@runtime_checkable
class Authenticator(Protocol):
    """What ``AuthMiddleware(strategy=...)`` accepts besides ``"jwt"`` and ``"api_key"``.

    Required:
        ``name``: a short label (used in logs and as the default ``Identity.method``).
        ``recognizes(credential) -> bool``: cheap and pure -- does this credential look like
            one of mine? The first authenticator of the chain that recognises it decides.
        ``authenticate(credential) -> Identity``: verify it; raise :class:`InvalidCredential`
            when it is not valid (the exception text is never sent to the client) or
            :class:`AuthUnavailable` when it cannot be checked right now.

    Optional attributes, read once at construction:
        ``async authenticate_async(credential) -> Identity``: used by the ASGI shell instead
            of ``authenticate`` when present.
        ``blocking: bool`` (default ``False``): ``authenticate`` performs blocking I/O, so the
            ASGI shell runs it in a worker thread.
        ``cacheable: bool`` (default ``False``): identities carry an ``exp`` claim and may be
            kept in the verified-token cache until then.
    """

    name: str

    def recognizes(self, credential: Credential) -> bool: ...

    def authenticate(self, credential: Credential) -> Identity: ...


# --- header parsing -------------------------------------------------------------------------


def extract_credential(
    authorization: Sequence[bytes],
    api_key: Sequence[bytes] = (),
    *,
    api_key_source: str = "x-api-key",
    max_length: int = 8192,
) -> Credential | None:
    """Pick the request's single credential out of its header values.

    Args:
        authorization: every ``Authorization`` header value, in order.
        api_key: every value of the API-key header (empty when that header is disabled).
        api_key_source: the header's name, recorded in :attr:`Credential.source`.
        max_length: longest accepted credential in bytes (longer is an invalid token).

    Returns:
        ``None`` when the request carries no credential at all.

    Raises:
        MalformedRequest: two ``Authorization`` headers, two API-key headers, both at once,
            a comma-joined value, or a ``Bearer`` header whose token is empty or not a
            ``b64token``.
        MissingCredential: an ``Authorization`` header in another scheme (``Basic`` ...).
        InvalidCredential: a credential longer than ``max_length``.
    """
    if len(authorization) + len(api_key) > 1:
        raise MalformedRequest("more than one credential")
    if authorization:
        raw = authorization[0]
        if len(raw) > max_length + 7:
            raise InvalidCredential("oversized")
        text = raw.decode("latin-1")
        scheme, sep, token = text.strip().partition(" ")
        if scheme.lower() != "bearer":
            if "," in text:
                raise MalformedRequest("comma-joined authorization values")
            raise MissingCredential("unsupported scheme")
        token = token.strip(" ")
        if not sep or not token or _B64TOKEN.fullmatch(token) is None:
            raise MalformedRequest("malformed bearer token")
        return Credential(token, "authorization")
    if api_key:
        raw = api_key[0]
        if len(raw) > max_length:
            raise InvalidCredential("oversized")
        token = raw.decode("latin-1").strip(" ")
        if not token or _B64TOKEN.fullmatch(token) is None:
            raise MalformedRequest("malformed api key header")
        return Credential(token, api_key_source)
    return None


def select_authenticator(chain: Sequence[Authenticator], credential: Credential) -> Authenticator:
    """The first authenticator of ``chain`` that recognises ``credential``.

    Raises:
        InvalidCredential: when none does (a 5-segment JWE, a garbage string ...).
    """
    for authenticator in chain:
        if authenticator.recognizes(credential):
            return authenticator
    raise InvalidCredential("no authenticator recognises the credential")


def check_subject(value: object, *, what: str) -> str:
    """Check a user or tenant id and return it unchanged (``ValueError`` naming ``what``).

    The subject rule (``docs/auth.md``), the same for JWT ``sub``/user/tenant claims, API-key
    users and tenants (at creation and on every request) and custom authenticators: a
    non-empty string, not blank, without leading or trailing whitespace, whose only
    whitespace is the plain space (no tab, no-break or ideographic space ...), that can name
    a ``MemoryScope`` (NFC, no control, format, surrogate, private-use or unassigned code
    points, at most 256 characters). Nothing is trimmed or normalised: ``" alice"`` is
    refused, never silently made ``"alice"``.
    """
    try:
        validate_scope_part(value, what=what)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: cannot name a memory scope ({exc})") from None
    assert isinstance(value, str)
    if value.isspace():
        raise ValueError(f"{what}: must not be blank")
    if value != value.strip():
        raise ValueError(f"{what}: must not start or end with whitespace")
    if any(ch.isspace() and ch != " " for ch in value):
        raise ValueError(f"{what}: the only whitespace allowed inside an id is the plain space")
    return value


def check_identity(identity: object) -> Identity:
    """Accept an authenticator's result: an authenticated :class:`Identity` whose ``user_id``
    and ``tenant`` follow the subject rule (:func:`check_subject`) and that can name its
    ``MemoryScope`` (``MemoryScope.for_identity`` succeeds: no reserved tenant either).

    Raises:
        TypeError: not an authenticated ``Identity`` (a broken authenticator: 503).
        InvalidCredential: an identity no scope accepts (401), so a request never reaches the
            app with a caller whose memory, traces and ledger could not be addressed.
    """
    if not isinstance(identity, Identity) or not identity.is_authenticated:
        raise TypeError("an Authenticator must return an authenticated Identity")
    try:
        check_subject(identity.user_id, what="user")
        if identity.tenant is not None:
            check_subject(identity.tenant, what="tenant")
        MemoryScope.for_identity(identity)
    except (TypeError, ValueError, PermissionError):
        raise InvalidCredential("identity cannot name a memory scope") from None
    return identity


def check_scopes(identity: Identity, required: frozenset[str]) -> None:
    """Raise :class:`InsufficientScope` unless ``identity`` holds every ``required`` scope."""
    if required and not required <= identity.scopes:
        raise InsufficientScope("missing scope")


#: Latest instant (epoch seconds) a time claim or an expiry may name: 9999-12-31T23:59:59Z.
MAX_EPOCH = 253_402_300_799


def cache_expiry(identity: Identity) -> float | None:
    """When a cached verification of ``identity`` must be forgotten: its ``exp`` claim.

    ``None`` (never cached) without a usable ``exp``: a custom authenticator's claims may hold
    any number, and ``10**400`` must not reach ``float()``.
    """
    exp = identity.claims.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool) and 0 < exp <= MAX_EPOCH:
        return float(exp)
    return None


# --- responses ------------------------------------------------------------------------------


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class Challenges:
    """The RFC 6750 error responses for one realm, built once at construction."""

    __slots__ = ("invalid_token", "malformed", "missing", "realm", "unavailable")

    def __init__(self, realm: str) -> None:
        if not isinstance(realm, str):
            raise TypeError("realm: expected a string")
        if not realm or len(realm) > 200 or _REALM.fullmatch(realm) is None:
            raise ValueError("realm: must be 1-200 printable ASCII characters without '\"'")
        self.realm = realm
        base = f'Bearer realm="{_quote(realm)}"'
        self.missing = HTTPError(
            401,
            "unauthorized",
            "Authentication is required.",
            (("www-authenticate", base),),
        )
        self.invalid_token = HTTPError(
            401,
            "invalid_token",
            "The access token is invalid, expired or revoked.",
            (
                (
                    "www-authenticate",
                    f'{base}, error="invalid_token", '
                    'error_description="The access token is invalid"',
                ),
            ),
        )
        self.malformed = HTTPError(
            400,
            "invalid_request",
            "The request carries a malformed or more than one credential.",
            (("www-authenticate", f'{base}, error="invalid_request"'),),
        )
        self.unavailable = HTTPError(
            503,
            "auth_unavailable",
            "Authentication is temporarily unavailable; retry later.",
            (("retry-after", "5"),),
        )

    def insufficient_scope(self, required: Iterable[str]) -> HTTPError:
        """403 naming the scopes the resource needs (RFC 6750 ``scope`` attribute)."""
        scope = " ".join(sorted(required))
        return HTTPError(
            403,
            "insufficient_scope",
            "The access token lacks a scope this resource requires.",
            (
                (
                    "www-authenticate",
                    f'Bearer realm="{_quote(self.realm)}", error="insufficient_scope", '
                    f'scope="{scope}"',
                ),
            ),
            {"required_scopes": sorted(required)},
        )

    @staticmethod
    def too_many_failures(retry_after: float) -> HTTPError:
        """429 for a client address over its failed-authentication limit."""
        return HTTPError(
            429,
            "too_many_failed_authentications",
            "Too many failed authentication attempts from this address; retry later.",
            (("retry-after", str(max(1, math.ceil(retry_after)))),),
        )

    def for_error(self, error: AuthError, required: frozenset[str]) -> HTTPError:
        """The response for an authentication outcome."""
        if isinstance(error, InvalidCredential):
            return self.invalid_token
        if isinstance(error, MissingCredential):
            return self.missing
        if isinstance(error, MalformedRequest):
            return self.malformed
        if isinstance(error, InsufficientScope):
            return self.insufficient_scope(required)
        return self.unavailable


def validate_scopes(value: object, *, option: str) -> frozenset[str]:
    """Validate an operator-supplied collection of scope names."""
    if isinstance(value, str):
        raise TypeError(f"{option}: expected a list of scope names, not a single string")
    if not isinstance(value, Iterable):
        raise TypeError(f"{option}: expected a list of scope names")
    scopes: set[str] = set()
    for item in value:
        if not isinstance(item, str) or _SCOPE_TOKEN.fullmatch(item) is None:
            raise ValueError(f"{option}: {item!r} is not a valid scope name")
        scopes.add(item)
    return frozenset(scopes)


# --- verified-token cache -------------------------------------------------------------------

V = TypeVar("V")


class TokenCache(Generic[V]):
    """Bounded cache of verified credentials; an entry is never served past its token's ``exp``.

    Keys are the raw ``Authorization`` header bytes, so a hit costs one lookup and no parsing.
    Storage is a ``cachetools.FIFOCache`` (bounded, oldest evicted first) whose lookup is a
    plain dict access; each entry carries its expiry, checked on every read, and an expired
    entry is dropped when read or when it reaches the head of the queue. ``maxsize=0``
    disables caching. ``threadsafe=True`` (WSGI) guards it with a lock; the ASGI shell only
    touches it from the event loop.
    """

    __slots__ = ("_cache", "_lock", "_now")

    def __init__(
        self, maxsize: int, *, threadsafe: bool, clock: Callable[[], float] = time.time
    ) -> None:
        self._cache: FIFOCache[Hashable, tuple[V, float]] | None = (
            FIFOCache(maxsize) if maxsize else None
        )
        self._lock: threading.Lock | None = threading.Lock() if threadsafe else None
        self._now = clock

    def get(self, key: Hashable) -> V | None:
        """The cached value for ``key``, or ``None`` (also once its ``exp`` is reached)."""
        cache = self._cache
        if cache is None:
            return None
        lock = self._lock
        try:
            if lock is None:
                value, expires = cache[key]
            else:
                with lock:
                    value, expires = cache[key]
        except KeyError:
            return None
        if expires > self._now():
            return value
        self._drop(key)
        return None

    def _drop(self, key: Hashable) -> None:
        assert self._cache is not None
        if self._lock is None:
            self._cache.pop(key, None)
        else:
            with self._lock:
                self._cache.pop(key, None)

    def put(self, key: Hashable, value: V, expires_at: float) -> None:
        """Remember ``value`` until ``expires_at`` (epoch seconds); ignored when already past."""
        cache = self._cache
        now = self._now()
        if cache is None or expires_at <= now:
            return
        lock = self._lock
        if lock is not None:
            lock.acquire()
        try:
            # Opportunistic cleanup: drop the oldest entry when it has expired.
            for oldest in cache:
                _value, oldest_expiry = cache[oldest]
                if oldest_expiry <= now:
                    del cache[oldest]
                break
            cache[key] = (value, expires_at)
        finally:
            if lock is not None:
                lock.release()

    def __len__(self) -> int:
        """Number of live (unexpired) entries."""
        cache = self._cache
        if cache is None:
            return 0
        now = self._now()
        if self._lock is None:
            return sum(1 for _value, exp in cache.values() if exp > now)
        with self._lock:
            return sum(1 for _value, exp in cache.values() if exp > now)

"""Sans-I/O API-key decisions: the ``ah_`` key format, its checksum, hashing and validity.

A key looks like ``ah_<key id: 12 hex>_<secret: 43 base62><checksum: 6 base62>``. The key id is
public (it names the key in listings and is the store's lookup key), the secret carries about
256 bits of entropy, and the CRC-32 checksum lets garbage be refused without any lookup. Stores
keep only the SHA-256 of the whole key (the secret is high-entropy, so a slow KDF adds nothing)
and the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from agenthood_mw._core.authcore import InvalidCredential, check_subject, validate_scopes
from agenthood_mw._identity import Identity

__all__ = [
    "MAX_KEY_LIFETIME",
    "PREFIX",
    "APIKeyRecord",
    "check_record",
    "generate_key",
    "hash_key",
    "looks_like_api_key",
    "parse_key",
]

PREFIX = "ah_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SECRET_LEN = 43  # 43 base62 characters ~ 256 bits
#: Longest ``expires_in`` of a new key: about ten years (``None`` means no expiry).
MAX_KEY_LIFETIME = 3650 * 86400.0
_FORMAT = re.compile(r"ah_([0-9a-f]{12})_([0-9A-Za-z]{43})([0-9A-Za-z]{6})")


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        digits.append(_ALPHABET[rem])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), 6)


def generate_key() -> tuple[str, str]:
    """A new random key: ``(key_id, full_key)``."""
    key_id = secrets.token_hex(6)
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LEN))
    body = f"{PREFIX}{key_id}_{secret}"
    return key_id, body + _checksum(body)


def looks_like_api_key(token: str) -> bool:
    """Cheap test used to route a credential to the API-key authenticator."""
    return token.startswith(PREFIX)


def parse_key(token: str) -> str:
    """The key id of a well-formed key with a valid checksum.

    Raises:
        InvalidCredential: wrong format or checksum (no store lookup needed).
    """
    match = _FORMAT.fullmatch(token)
    if match is None:
        raise InvalidCredential("malformed api key")
    body = token[:-6]
    if not hmac.compare_digest(_checksum(body), match.group(3)):
        raise InvalidCredential("bad api key checksum")
    return match.group(1)


def hash_key(token: str) -> str:
    """The stored form of a key: hex SHA-256 of the whole key."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class APIKeyRecord:
    """A stored API key (never its secret).

    Attributes:
        key_id: public identifier (``ah_<key_id>_...``).
        user_id: the owner; becomes ``Identity.user_id``.
        tenant: the owner's tenant, if any.
        scopes: scopes granted to requests made with this key.
        name: a label for humans.
        created_at: epoch seconds.
        expires_at: epoch seconds, or ``None`` for no expiry.
        revoked_at: epoch seconds once revoked.
        secret_hash: SHA-256 of the full key (see :func:`hash_key`).
    """

    key_id: str
    user_id: str
    tenant: str | None
    scopes: frozenset[str]
    name: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None = None
    secret_hash: str = field(default="", repr=False)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def active(self, now: float) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def _subject(value: object, option: str) -> None:
    try:
        check_subject(value, what=option)
    except ValueError as exc:
        shown = value[:40] if isinstance(value, str) else value
        raise ValueError(f"{option}: {shown!r} is not a valid id: {exc}") from None


def check_lifetime(expires_in: object) -> float | None:
    """A new key's ``expires_in`` in seconds: ``None``, or a positive, finite number of at
    most :data:`MAX_KEY_LIFETIME` (``ValueError`` naming ``expires_in`` otherwise)."""
    if expires_in is None:
        return None
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        raise TypeError("expires_in: expected a number of seconds or None")
    # Compared before any float conversion: 10**400 is refused, never an OverflowError.
    if not 0 < expires_in <= MAX_KEY_LIFETIME:
        raise ValueError(
            f"expires_in: must be more than 0 and at most {MAX_KEY_LIFETIME:.0f} seconds "
            "(3650 days); use None for a key that never expires"
        )
    return float(expires_in)


def new_record(
    *,
    key_id: str,
    token: str,
    user_id: object,
    tenant: object,
    scopes: Iterable[str],
    expires_in: object,
    name: object,
    now: float,
) -> APIKeyRecord:
    """Validate the creation arguments and build the record to store."""
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("user_id: must be a non-empty string of at most 256 characters")
    _subject(user_id, "user_id")
    if tenant is not None:
        if not isinstance(tenant, str) or not tenant:
            raise ValueError("tenant: must be None or a non-empty string")
        _subject(tenant, "tenant")
    lifetime = check_lifetime(expires_in)
    if not isinstance(name, str) or len(name) > 200:
        raise ValueError("name: must be a string of at most 200 characters")
    return APIKeyRecord(
        key_id=key_id,
        user_id=user_id,
        tenant=tenant,
        scopes=validate_scopes(scopes, option="scopes"),
        name=name,
        created_at=now,
        expires_at=None if lifetime is None else now + lifetime,
        secret_hash=hash_key(token),
    )


def check_record(token: str, record: APIKeyRecord | None, now: float) -> Identity:
    """Decide whether ``token`` is a valid key given its stored ``record``.

    Raises:
        InvalidCredential: unknown, wrong secret, revoked or expired.
    """
    if record is None:
        # Burn the same hashing work as a real check so timing does not reveal unknown ids.
        hmac.compare_digest(hash_key(token), "0" * 64)
        raise InvalidCredential("unknown api key")
    if not hmac.compare_digest(hash_key(token), record.secret_hash):
        raise InvalidCredential("wrong api key")
    if not record.active(now):
        raise InvalidCredential("revoked or expired api key")
    return Identity(
        user_id=record.user_id,
        tenant=record.tenant,
        scopes=record.scopes,
        claims={"key_id": record.key_id, "name": record.name},
        method="api_key",
    )

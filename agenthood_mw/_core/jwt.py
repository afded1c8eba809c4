"""Sans-I/O JWT decisions: algorithm policy, key preparation, claim checks, JWKS key policy.

PyJWT does the cryptography and the registered-claim checks; this module adds what a
multi-user service needs on top (explicit algorithms of a single key family, never ``none``,
no ``crit`` extensions, required ``exp``/``iat``/``sub``, a maximum token lifetime, user and
tenant ids that can name a ``MemoryScope``, scope parsing) and turns verified claims into an
:class:`Identity`. The JWKS part decides when a key set must be fetched; fetching is the
shell's job.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
from cachetools import TTLCache
from jwt.algorithms import (
    Algorithm,
    ECAlgorithm,
    HMACAlgorithm,
    OKPAlgorithm,
    RSAAlgorithm,
    get_default_algorithms,
)

from agenthood_mw._core.authcore import (
    MAX_EPOCH,
    AuthUnavailable,
    InvalidCredential,
    check_subject,
)
from agenthood_mw._identity import Identity

__all__ = [
    "FAMILIES",
    "MAX_LEEWAY",
    "TIME_CLAIMS",
    "JWKSKeys",
    "JWTSettings",
    "algorithm_family",
    "prepare_public_key",
    "prepare_secret",
    "validate_jwks_url",
]

_ALGORITHMS: dict[str, Algorithm] = {
    name: alg for name, alg in get_default_algorithms().items() if name.lower() != "none"
}


def _family(alg: Algorithm) -> str:
    if isinstance(alg, HMACAlgorithm):
        return "HMAC"
    if isinstance(alg, RSAAlgorithm):  # RSAPSSAlgorithm subclasses it: same RSA key
        return "RSA"
    if isinstance(alg, ECAlgorithm):
        return "EC"
    if isinstance(alg, OKPAlgorithm):
        return "OKP"
    raise AssertionError(f"unknown algorithm class {type(alg).__name__}")  # pragma: no cover


#: JOSE algorithm name -> key family (HMAC, RSA, EC, OKP). ``none`` is not in it.
FAMILIES: Mapping[str, str] = {name: _family(alg) for name, alg in _ALGORITHMS.items()}
_KTY = {"HMAC": "oct", "RSA": "RSA", "EC": "EC", "OKP": "OKP"}
#: Header parameters that would make us fetch or trust a key named by the token itself.
_KEY_BEARING_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c"})
_MAX_CLAIM_TEXT = 256
#: Largest accepted ``leeway`` in seconds: a clock-skew allowance, not a grace period.
MAX_LEEWAY = 300.0
#: The numeric date claims checked on every token (RFC 7519 §4.1.4-4.1.6).
TIME_CLAIMS = ("exp", "nbf", "iat")


def algorithm_family(
    algorithms: object, *, option: str = "algorithms"
) -> tuple[tuple[str, ...], str]:
    """Validate ``algorithms``: explicit, known, never ``none``, all of one key family."""
    if isinstance(algorithms, str):
        algorithms = [algorithms]
    if not isinstance(algorithms, list | tuple | frozenset | set) or not algorithms:
        raise ValueError(f"{option}: give the accepted JWT algorithms explicitly, e.g. ['HS256']")
    names: list[str] = []
    for name in algorithms:
        if not isinstance(name, str):
            raise TypeError(f"{option}: algorithm names must be strings")
        if name.strip().lower() == "none":
            raise ValueError(f"{option}: the 'none' algorithm is never accepted")
        if name not in FAMILIES:
            raise ValueError(f"{option}: unknown algorithm {name!r}; known: {sorted(FAMILIES)}")
        names.append(name)
    families = {FAMILIES[n] for n in names}
    if len(families) != 1:
        raise ValueError(
            f"{option}: all algorithms must use one key family (HMAC, RSA, EC or OKP); "
            f"got {sorted(names)}"
        )
    return tuple(dict.fromkeys(names)), families.pop()


def prepare_secret(secret: object, algorithms: tuple[str, ...]) -> bytes:
    """The HMAC key as bytes, refused when shorter than the hash size (RFC 7518 §3.2)."""
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, bytes):
        raise TypeError("secret: expected str or bytes")
    for name in algorithms:
        alg = _ALGORITHMS[name]
        try:
            key = alg.prepare_key(secret)
        except jwt.InvalidKeyError:
            raise ValueError(
                "secret: looks like an asymmetric key; pass it as public_key="
            ) from None
        problem = alg.check_key_length(key)
        if problem:
            need = {"HS384": 48, "HS512": 64}.get(name, 32)
            raise ValueError(
                f"secret: too short for {name} ({len(key)} bytes; use at least {need} random bytes)"
            )
    return secret


def prepare_public_key(public_key: object, algorithms: tuple[str, ...], family: str) -> Any:
    """Parse ``public_key`` once (PEM/DER/JWK text, bytes, dict or a key object)."""
    if isinstance(public_key, jwt.PyJWK):
        public_key = public_key.key
    if isinstance(public_key, Mapping):
        try:
            public_key = jwt.PyJWK(dict(public_key), algorithm=algorithms[0]).key
        except jwt.PyJWTError as exc:
            raise ValueError(f"public_key: not a usable JWK ({type(exc).__name__})") from None
    alg = _ALGORITHMS[algorithms[0]]
    if isinstance(public_key, bytes) and not public_key.lstrip().startswith((b"-", b"{", b"ssh")):
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        try:
            public_key = load_der_public_key(public_key)  # DER SubjectPublicKeyInfo
        except ValueError:
            raise ValueError("public_key: bytes are neither PEM, JWK nor DER") from None
    if isinstance(public_key, str | bytes):
        text = public_key.decode("latin-1") if isinstance(public_key, bytes) else public_key
        if text.lstrip().startswith("{"):
            try:
                public_key = alg.from_jwk(text)
            except (jwt.PyJWTError, ValueError) as exc:
                raise ValueError(f"public_key: not a usable JWK ({type(exc).__name__})") from None
    try:
        key = alg.prepare_key(public_key)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise ValueError(
            f"public_key: not a {family} public key usable with {list(algorithms)} "
            f"({type(exc).__name__})"
        ) from None
    if hasattr(key, "sign") or hasattr(key, "private_numbers") or hasattr(key, "private_bytes"):
        raise ValueError("public_key: this is a private key; pass only the public key")
    return key


def validate_jwks_url(url: object) -> str:
    """``https://`` URLs, or ``http://`` to a loopback host (local identity providers, tests)."""
    if not isinstance(url, str):
        raise TypeError("jwks_url: expected a URL string")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost", "::1"}:
        return url
    raise ValueError("jwks_url: must be an https:// URL (http:// only for a loopback host)")


def _subject(value: object, what: str) -> str:
    """A ``sub``, user or tenant claim, refused unless it follows the subject rule
    (:func:`~agenthood_mw._core.authcore.check_subject`)."""
    try:
        return check_subject(value, what=what)
    except ValueError:
        raise InvalidCredential(f"{what} claim is not a valid id") from None


def _time_claim(claims: dict[str, Any], name: str) -> int | float | None:
    """A NumericDate claim: a number of seconds in 1970..9999 (``None`` when absent).

    The range check comes first and works on ints of any size, so ``10**400`` or
    ``-10**400`` is a bad token (401), never an ``OverflowError`` in a float conversion;
    NaN and the infinities fail it too.
    """
    value = claims.get(name)
    if value is None and name == "nbf":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidCredential("bad time claim")
    if not 0 <= value <= MAX_EPOCH:
        raise InvalidCredential("bad time claim")
    return value


@dataclass(frozen=True)
class JWTSettings:
    """Everything a JWT check needs, validated once; built by the middleware's constructor."""

    algorithms: tuple[str, ...]
    audience: str | tuple[str, ...] | None = None
    issuer: str | None = None
    leeway: float = 0.0
    max_token_lifetime: float | None = 86400.0
    user_claim: str = "sub"
    tenant_claim: str | None = "tenant"
    scopes_claim: str = "scope"
    method: str = "jwt"
    _options: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        require = ["exp", "iat", "sub"]
        if self.audience is not None:
            require.append("aud")
        if self.issuer is not None:
            require.append("iss")
        if self.user_claim not in require:
            require.append(self.user_claim)
        self._options.update(
            {
                "require": require,
                "verify_signature": True,
                "verify_exp": True,
                "verify_iat": True,
                "verify_nbf": True,
                "verify_aud": self.audience is not None,
                "verify_iss": self.issuer is not None,
                "verify_sub": True,
                "enforce_minimum_key_length": True,
            }
        )

    def header(self, token: str) -> dict[str, Any]:
        """The unverified header, refused unless its ``alg`` is allowed and it is plain JWS."""
        # Only the first segment is decoded here; PyJWT validates the whole token afterwards.
        segment = token.partition(".")[0]
        try:
            header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        except Exception:
            raise InvalidCredential("malformed token") from None
        if not isinstance(header, dict):
            raise InvalidCredential("malformed token")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidCredential("algorithm not allowed")
        # No JOSE extension is understood, so any "crit" (and b64=false) is refused. Key-bearing
        # headers (jku/jwk/x5u/x5c) are never followed; the configured key decides.
        if "crit" in header or "b64" in header:
            raise InvalidCredential("unsupported header")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > _MAX_CLAIM_TEXT):
            raise InvalidCredential("bad kid")
        return header

    def verify(self, token: str, key: Any) -> Identity:
        """Verify ``token`` with ``key``; the :class:`Identity` of its caller.

        Raises:
            InvalidCredential: for any failure (the reason is never shown to the client).
        """
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options=self._options,  # type: ignore[arg-type]
            )
        except Exception:
            # Any failure at all, including OverflowError on absurd numbers, is a bad token.
            raise InvalidCredential("verification failed") from None
        return self.identity(claims)

    def identity(self, claims: dict[str, Any]) -> Identity:
        """Check the claims PyJWT does not and build the :class:`Identity`."""
        exp, _nbf, iat = (_time_claim(claims, name) for name in TIME_CLAIMS)
        assert exp is not None and iat is not None
        if exp <= iat:
            raise InvalidCredential("bad lifetime")
        if self.max_token_lifetime is not None and exp - iat > self.max_token_lifetime:
            raise InvalidCredential("lifetime too long")
        _subject(claims["sub"], "sub")
        # The user and tenant become the caller's MemoryScope: refuse here (401) what a
        # scope would refuse later (a 500 on every request).
        user_id = _subject(claims.get(self.user_claim), "user")
        tenant: str | None = None
        if self.tenant_claim is not None and claims.get(self.tenant_claim) is not None:
            tenant = _subject(claims[self.tenant_claim], "tenant")
        return Identity(
            user_id=user_id,
            tenant=tenant,
            scopes=_scopes(claims.get(self.scopes_claim)),
            claims=claims,
            method=self.method,
        )


def _scopes(value: object) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        items: list[object] = list(value.split())
    elif isinstance(value, list):
        items = value
    else:
        raise InvalidCredential("bad scope claim")
    if len(items) > 256:
        raise InvalidCredential("bad scope claim")
    for item in items:
        if not isinstance(item, str) or not item or len(item) > _MAX_CLAIM_TEXT or " " in item:
            raise InvalidCredential("bad scope claim")
    return frozenset(items)  # type: ignore[arg-type]


class JWKSKeys:
    """Key policy of one JWKS endpoint: which key verifies a token, and when to fetch.

    The parsed key set lives in a ``cachetools.TTLCache`` (fresh for ``ttl`` seconds); the
    last good set is kept aside and served while the endpoint is down. A fetch is due when no
    set was ever obtained, when the fresh copy expired, or when a token names an unknown
    ``kid`` -- never more than once per ``cooldown``.
    """

    def __init__(
        self,
        algorithms: tuple[str, ...],
        family: str,
        *,
        ttl: float,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._algorithms = algorithms
        self._kty = _KTY[family]
        self._cooldown = cooldown
        self._clock = clock
        self._fresh: TTLCache[str, dict[tuple[str | None, str], jwt.PyJWK]] = TTLCache(
            maxsize=1, ttl=ttl, timer=clock
        )
        self._stale: dict[tuple[str | None, str], jwt.PyJWK] | None = None
        self._last_attempt: float | None = None
        self._lock = threading.Lock()  # fetches complete in worker threads

    @property
    def loaded(self) -> bool:
        """Whether a key set was ever obtained."""
        return self._stale is not None

    def _keys(self) -> dict[tuple[str | None, str], jwt.PyJWK] | None:
        with self._lock:
            return self._fresh.get("keys", self._stale)

    def should_fetch(self, kid: str | None, alg: str) -> bool:
        """Whether the shell should fetch the key set before verifying this token."""
        now = self._clock()
        if self._last_attempt is not None and now - self._last_attempt < self._cooldown:
            return False
        with self._lock:
            keys = self._fresh.get("keys")
        return keys is None or self._lookup(keys, kid, alg) is None

    def fetch_started(self) -> None:
        """Record an attempt (starts the cooldown)."""
        self._last_attempt = self._clock()

    def fetch_succeeded(self, document: object) -> None:
        """Install the key set from a fetched JWKS document (raises ValueError when unusable)."""
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWK Set")
        keys: dict[tuple[str | None, str], jwt.PyJWK] = {}
        for jwk in document["keys"]:
            if not isinstance(jwk, dict) or jwk.get("kty") != self._kty:
                continue
            if jwk.get("use", "sig") != "sig" or "d" in jwk:
                continue  # encryption keys and private material are never used
            kid = jwk.get("kid")
            if kid is not None and not isinstance(kid, str):
                continue
            declared = jwk.get("alg")
            for alg in self._algorithms:
                if declared is not None and declared != alg:
                    continue
                try:
                    keys[(kid, alg)] = jwt.PyJWK(jwk, algorithm=alg)
                except Exception:  # noqa: S112 - an unusable member is skipped, as PyJWKSet does
                    continue
        if not keys:
            raise ValueError("no usable signing key")
        with self._lock:
            self._fresh["keys"] = keys
            self._stale = keys

    @staticmethod
    def _lookup(
        keys: dict[tuple[str | None, str], jwt.PyJWK], kid: str | None, alg: str
    ) -> jwt.PyJWK | None:
        key = keys.get((kid, alg))
        if key is None and kid is None:
            # A token without kid is accepted only when the set has exactly one usable key.
            candidates = [k for (_kid, a), k in keys.items() if a == alg]
            if len(candidates) == 1:
                return candidates[0]
        return key

    def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The key verifying a token with this ``kid``/``alg``.

        Raises:
            AuthUnavailable: no key set was ever obtained (answered 503).
            InvalidCredential: the set has no such key.
        """
        keys = self._keys()
        if keys is None:
            raise AuthUnavailable("no JWKS obtained yet")
        key = self._lookup(keys, kid, alg)
        if key is None:
            raise InvalidCredential("unknown kid")
        return key

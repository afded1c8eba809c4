"""Validation and reversible encodings shared by every backend (pure functions, no I/O).

Keys are stored exactly as given (no normalisation) and compared in code-point order, which is
UTF-8 byte order -- the order of SQLite ``BINARY``, PostgreSQL ``COLLATE "C"`` and Redis lex
ranges. A prefix becomes the half-open range ``[prefix, prefix_upper_bound(prefix))`` so no
backend ever matches user text as a pattern.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import struct
import threading
import time
import unicodedata
from datetime import datetime
from typing import Any, Final

from agenthood_mw._core.durations import parse_duration
from agenthood_mw.memory._errors import InvalidCursorError, InvalidKeyError, InvalidValueError
from agenthood_mw.memory._records import TIERS, Tier

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_LIMIT",
    "MAX_VALUE_BYTES",
    "check_limit",
    "check_tier",
    "decode_event_cursor",
    "decode_key_cursor",
    "encode_event",
    "encode_event_cursor",
    "encode_key_cursor",
    "encode_value",
    "event_sort_key",
    "new_event_id",
    "parse_ttl",
    "prefix_upper_bound",
    "search_terms",
    "search_text",
    "to_timestamp",
    "validate_key",
    "validate_prefix",
]

#: Longest key or path, in UTF-8 bytes.
MAX_KEY_BYTES: Final = 1024
#: Largest serialised value, in UTF-8 bytes.
MAX_VALUE_BYTES: Final = 1 << 20
#: Largest page size for list/search/event listings.
MAX_LIMIT: Final = 1000
_MAX_DEPTH: Final = 64
_MAX_TERMS: Final = 16
_BAD_KEY_CATEGORIES: Final = frozenset({"Cc", "Cs", "Zl", "Zp"})
#: Exactly the code points of Unicode category ``Cc`` (C0, DEL, C1).
_CONTROL_CHARS: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
_EVENT_CURSOR = re.compile(r"[0-9a-f]{40}")


def check_tier(tier: object) -> Tier:
    if tier == "facts":
        return "facts"
    if tier == "project":
        return "project"
    raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")


def check_limit(limit: object, *, what: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"{what} must be an int, got {type(limit).__name__}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"{what} must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def _check_key_text(key: str, what: str) -> None:
    if key.isascii() and key.isprintable():
        if len(key) > MAX_KEY_BYTES:
            raise InvalidKeyError(f"{what} is longer than {MAX_KEY_BYTES} bytes")
        return
    for ch in key:
        if unicodedata.category(ch) in _BAD_KEY_CATEGORIES:
            raise InvalidKeyError(f"{what} contains a control or invalid character")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"{what} is longer than {MAX_KEY_BYTES} bytes")


def validate_key(key: object, *, what: str = "key") -> str:
    """Check a fact key or document path and return it unchanged (never normalised)."""
    if type(key) is not str:
        if isinstance(key, str):
            key = str(key)
        else:
            raise InvalidKeyError(f"{what} must be a str, got {type(key).__name__}")
    if not key:
        raise InvalidKeyError(f"{what} must not be empty")
    _check_key_text(key, what)
    return key


def validate_prefix(prefix: object) -> str:
    """Like :func:`validate_key`, but the empty prefix (everything) is allowed."""
    if prefix == "":
        return ""
    return validate_key(prefix, what="prefix")


def prefix_upper_bound(prefix: str) -> str | None:
    """Smallest string greater than every string starting with ``prefix`` (``None``: no bound).

    Code-point successor of the last character (skipping surrogates, which no key contains).
    """
    if prefix and prefix[-1] < "\ud7ff":
        return prefix[:-1] + chr(ord(prefix[-1]) + 1)
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:
                nxt = 0xE000
            chars.append(chr(nxt))
            return "".join(chars)
    return None


def _check_value(value: object, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise InvalidValueError(f"value is nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidValueError(
                "value contains a NaN or infinite float, which JSON cannot hold"
            )
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_value(item, depth + 1)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise InvalidValueError(
                    f"value has a dict key of type {type(k).__name__}; JSON object keys are str"
                )
            _check_value(item, depth + 1)
        return
    raise InvalidValueError(
        f"value of type {type(value).__name__} is not JSON-serialisable "
        "(use dict, list, str, int, float, bool or None)"
    )


def encode_value(value: object) -> str:
    """Validate a JSON value and return its canonical text. Raises :class:`InvalidValueError`."""
    _check_value(value, 0)
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidValueError(
            "value contains a lone surrogate, which is not valid UTF-8"
        ) from None
    if size > MAX_VALUE_BYTES:
        raise InvalidValueError(f"value is larger than {MAX_VALUE_BYTES} bytes once serialised")
    return text


def encode_event(data: object) -> str:
    """Validate an episodic event (a JSON object) and return its text."""
    if not isinstance(data, dict):
        raise InvalidValueError(f"an event must be a dict, got {type(data).__name__}")
    return encode_value(data)


def _leaves(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for k, item in value.items():
            out.append(k)
            _leaves(item, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _leaves(item, out)
    elif value is not None and not isinstance(value, bool):
        out.append(str(value))


def _fold(text: str) -> str:
    folded = text.casefold()
    if not folded.isprintable():
        folded = _CONTROL_CHARS.sub(" ", folded)
    return folded


def search_text(key: str, value: object) -> str:
    """The text a record is searched in: key, dict keys and scalar leaves, case-folded.

    A record matches ``search(text)`` when every case-folded term of ``text`` is a substring
    of this text (exported for conformance kits and models of a backend).
    """
    parts = [key]
    _leaves(value, parts)
    return _fold("\n".join(parts))


def search_terms(text: object) -> tuple[str, ...]:
    """Split a query into case-folded terms; a record matches when it contains all of them."""
    if not isinstance(text, str):
        raise TypeError(f"search text must be a str, got {type(text).__name__}")
    if text.isascii() and text.isprintable():
        terms = tuple(dict.fromkeys(text.lower().split()))
    else:
        terms = tuple(dict.fromkeys(t for t in _fold(text).split() if t))
    if not terms:
        raise ValueError("search text must contain at least one non-blank term")
    if len(terms) > _MAX_TERMS:
        raise ValueError(f"search text has more than {_MAX_TERMS} terms")
    for term in terms:
        try:
            term.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("search text contains a lone surrogate") from None
    return terms


def parse_ttl(ttl: object) -> float | None:
    """``None`` (no expiry) or a positive duration: seconds, ``timedelta`` or ``"10m"``."""
    if ttl is None:
        return None
    return parse_duration(ttl, option="ttl")


def to_timestamp(value: object, *, what: str) -> float:
    """Epoch seconds from an int/float (>= 0) or an aware ``datetime``."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{what} must be a timezone-aware datetime")
        value = value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be epoch seconds or an aware datetime")
    ts = float(value) + 0.0
    if not math.isfinite(ts) or ts < 0:
        raise ValueError(f"{what} must be a finite, non-negative epoch timestamp")
    return ts


_last_ns = 0
_ns_lock = threading.Lock()


def new_event_id() -> str:
    """24 hex digits: nanoseconds (strictly increasing per process) then 32 random bits."""
    global _last_ns
    with _ns_lock:
        ns = _last_ns = max(time.time_ns(), _last_ns + 1)
    return f"{ns:016x}{secrets.token_hex(4)}"


def event_sort_key(timestamp: float, event_id: str) -> str:
    """Order-preserving text of ``(timestamp, id)`` for timestamps >= 0 (big-endian IEEE-754)."""
    return struct.pack(">d", timestamp).hex() + event_id


def encode_event_cursor(timestamp: float, event_id: str) -> str:
    return event_sort_key(timestamp, event_id)


def decode_event_cursor(cursor: object) -> tuple[float, str]:
    if not isinstance(cursor, str) or not _EVENT_CURSOR.fullmatch(cursor):
        raise InvalidCursorError("cursor is not an episodic-listing cursor of this library")
    (ts,) = struct.unpack(">d", bytes.fromhex(cursor[:16]))
    if not math.isfinite(ts) or ts < 0:
        raise InvalidCursorError("cursor is not an episodic-listing cursor of this library")
    return ts, cursor[16:]


def encode_key_cursor(key: str) -> str:
    """Opaque cursor of a key listing: the hex of the last key's UTF-8 bytes."""
    return key.encode("utf-8").hex()


def decode_key_cursor(cursor: object) -> str:
    if not isinstance(cursor, str) or not cursor:
        raise InvalidCursorError("cursor must be a non-empty str from a previous page")
    try:
        if not cursor.isascii() or cursor != cursor.lower():
            raise ValueError
        key = bytes.fromhex(cursor).decode("utf-8")
        validate_key(key)
    except (ValueError, UnicodeDecodeError):
        raise InvalidCursorError("cursor is not a listing cursor of this library") from None
    if key.encode("utf-8").hex() != cursor:
        raise InvalidCursorError("cursor is not a listing cursor of this library")
    return key

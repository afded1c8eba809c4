"""Parsing of the duration strings used by every option (``"30s"``, ``"1m"``, ``"7d"``)."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Final

__all__ = ["MAX_DURATION", "parse_duration"]

#: The longest duration any option accepts: 100 years (of 365.25 days), in seconds. A moment
#: that far ahead is still a valid date, so nothing built from a duration can overflow.
MAX_DURATION: Final = 3_155_760_000

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
# ASCII digits only (``\d`` would accept other scripts' digits). A float holds any of them:
# too many digits give ``inf``, refused as above the maximum.
_PATTERN = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d|w)?\s*$", re.ASCII)


def _describe(seconds: float) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _seconds(value: object, option: str) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{option}: expected a duration such as '1m' or a number of seconds")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int):  # checked as an int: float(10**400) would overflow
        if abs(value) > MAX_DURATION:
            return 2.0 * MAX_DURATION if value > 0 else -1.0
        return float(value)
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(
                f"{option}: {value[:40]!r} is not a duration; use a number with a unit "
                "(ms, s, m, h, d, w), e.g. '30s', '1m', '1h', '1d'"
            )
        return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    raise TypeError(f"{option}: expected a duration such as '1m' or a number of seconds")


def parse_duration(
    value: object, *, option: str, allow_zero: bool = False, maximum: float | None = None
) -> float:
    """Return ``value`` in seconds.

    Accepts a number of seconds, a :class:`~datetime.timedelta`, or a string such as ``"30s"``,
    ``"1m"``, ``"1h"``, ``"1d"``, ``"2w"``, ``"250ms"`` (no unit means seconds). Never more than
    ``maximum`` seconds (default and upper bound :data:`MAX_DURATION`, 100 years).

    Raises:
        ValueError / TypeError: naming ``option`` when the value is not a positive duration
        within the maximum.
    """
    seconds = _seconds(value, option)
    shown = repr(value)
    shown = shown if len(shown) <= 42 else shown[:39] + "..."
    if math.isnan(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{option}: must be a positive duration, got {shown}")
    limit = MAX_DURATION if maximum is None else min(maximum, MAX_DURATION)
    if seconds > limit:
        raise ValueError(f"{option}: must be at most {_describe(limit)}, got {shown}")
    return seconds

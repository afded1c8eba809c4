"""Parsing of the duration strings used by every option (``"30s"``, ``"1m"``, ``"7d"``)."""

from __future__ import annotations

import math
import re
from datetime import timedelta

__all__ = ["parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")


def parse_duration(value: object, *, option: str, allow_zero: bool = False) -> float:
    """Return ``value`` in seconds.

    Accepts a number of seconds, a :class:`~datetime.timedelta`, or a string such as ``"30s"``,
    ``"1m"``, ``"1h"``, ``"1d"``, ``"2w"``, ``"250ms"`` (no unit means seconds).

    Raises:
        ValueError / TypeError: naming ``option`` when the value is not a positive duration.
    """
    if isinstance(value, bool):
        raise TypeError(f"{option}: expected a duration such as '1m' or a number of seconds")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(
                f"{option}: {value!r} is not a duration; use a number with a unit "
                "(ms, s, m, h, d, w), e.g. '30s', '1m', '1h', '1d'"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise TypeError(f"{option}: expected a duration such as '1m' or a number of seconds")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{option}: must be a positive duration, got {value!r}")
    return seconds

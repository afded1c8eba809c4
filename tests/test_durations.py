"""Every duration option is bounded (issue 11 #1/#4): nothing built from one can overflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenthood_mw._core.durations import MAX_DURATION, parse_duration


@pytest.mark.parametrize(
    "value",
    [
        "99999999999999999999w",
        "1" + "0" * 400,
        "1" + "0" * 5000 + "ms",
        10**400,
        10**20,
        MAX_DURATION + 1,
        1e300,
        float("inf"),
        "36526d",
        timedelta(days=36526),
    ],
)
def test_above_the_maximum_is_refused_naming_the_option(value: object) -> None:
    with pytest.raises(ValueError, match=r"^--expires-in: must be at most 36525d"):
        parse_duration(value, option="--expires-in")


@pytest.mark.parametrize("value", [-(10**400), -1e300, float("nan"), "٣s", "１s", "1e3s"])
def test_negative_nan_and_non_ascii_digits_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="--ttl"):
        parse_duration(value, option="--ttl")


def test_a_per_option_maximum() -> None:
    assert parse_duration("1d", option="--ttl", maximum=86400) == 86400
    with pytest.raises(ValueError, match=r"--ttl: must be at most 1d, got '25h'"):
        parse_duration("25h", option="--ttl", maximum=86400)
    with pytest.raises(ValueError, match="at most 36525d"):  # never above the global bound
        parse_duration(MAX_DURATION + 1, option="x", maximum=10.0**30)


def test_long_values_are_shortened_in_the_message() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(10**400, option="x")
    assert len(str(info.value)) < 120


@given(st.one_of(st.integers(), st.floats(), st.text(max_size=30), st.timedeltas()))
def test_an_accepted_duration_is_a_representable_moment(value: object) -> None:
    try:
        seconds = parse_duration(value, option="x", allow_zero=True)
    except (ValueError, TypeError):
        return
    assert 0 <= seconds <= MAX_DURATION
    assert datetime.now(UTC) + timedelta(seconds=seconds) > datetime.now(UTC) - timedelta(1)

"""Pricing maths: exact ``Decimal`` prices, integer nano-dollar costs. No floats, no I/O.

Money enters as ``Decimal`` (or ``str``/``int``), prices are kept exactly as *atto-dollars per
token* (10⁻¹⁸ USD, an ``int``), and every cost is an ``int`` of **nano-dollars** (10⁻⁹ USD).
A usage record's cost is computed exactly in atto-dollars and rounded once (half-even) to
nano-dollars; sums are integer sums, so a million small records never drift.

A price finer than one atto-dollar per token (LiteLLM's ``8.000000000000001e-07`` or
``0.0000011428571428571428``) is rounded once, half-even, to whole atto-dollars per token when
read with ``round_prices=True`` (the price-file loaders); that moves a price by at most
0.5 × 10⁻¹⁸ $ per token, i.e. under half a nano-dollar per billion tokens.

Beyond flat prices a :class:`ModelPrice` carries long-context tiers (``tiers``: above a
prompt size every rate switches), a 1-hour cache-write rate and per-service-tier prices
(``service_tiers``: ``"priority"``, ``"flex"``, ``"batch"`` ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Final

__all__ = [
    "ATTO_PER_NANO",
    "NANOS_PER_DOLLAR",
    "SERVICE_TIER_ALIASES",
    "ModelPrice",
    "Usage",
    "cost_nanos",
    "cost_nanos_of",
    "format_nanos",
    "nanos_to_decimal",
    "to_decimal",
    "to_nanos",
    "valid_counts",
]

#: Nano-dollars in one dollar: the integer unit every stored cost uses.
NANOS_PER_DOLLAR: Final = 10**9
#: Atto-dollars (10⁻¹⁸ USD) in one nano-dollar: the unit of per-token prices.
ATTO_PER_NANO: Final = 10**9
_ATTO_PER_DOLLAR: Final = 10**18


def to_decimal(value: object, *, option: str, allow_float: bool = False) -> Decimal:
    """Parse an amount of money (``Decimal``, ``int`` or a decimal ``str``) exactly.

    Floats are refused unless ``allow_float`` (price tables read from JSON), in which case the
    shortest ``repr`` is used (``2.5e-06`` -> ``Decimal("0.0000025")``), never the binary value.

    Raises:
        TypeError / ValueError: naming ``option`` for anything that is not a finite amount.
    """
    if isinstance(value, bool):
        raise TypeError(f"{option}: expected a Decimal or a decimal string, got bool")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not allow_float:
            raise TypeError(
                f"{option}: money must not be a float (use Decimal or a string such as '0.25')"
            )
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{option}: {value!r} is not a decimal amount") from None
    else:
        raise TypeError(f"{option}: expected a Decimal or a decimal string, got {type(value)}")
    if not result.is_finite():
        raise ValueError(f"{option}: {value!r} is not a finite amount")
    return result


def to_nanos(value: object, *, option: str) -> int:
    """An amount of dollars as integer nano-dollars (rounded half-even to 10⁻⁹)."""
    amount = to_decimal(value, option=option)
    return int((amount * NANOS_PER_DOLLAR).to_integral_value(rounding=ROUND_HALF_EVEN))


def nanos_to_decimal(nanos: int) -> Decimal:
    """Integer nano-dollars as an exact ``Decimal`` of dollars (``1800000`` -> ``0.0018``)."""
    return Decimal(format_nanos(nanos))


def format_nanos(nanos: int) -> str:
    """Nano-dollars as a plain decimal string without exponent (``"0.0018"``)."""
    if not nanos:
        return "0"
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), NANOS_PER_DOLLAR)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:09d}".rstrip("0")


def _atto_per_token(
    value: object, *, option: str, per_tokens: int, round_prices: bool = False
) -> int:
    amount = to_decimal(value, option=option, allow_float=True)
    if amount < 0:
        raise ValueError(f"{option}: a price cannot be negative")
    atto = amount.scaleb(18) / per_tokens
    whole = atto.to_integral_value(rounding=ROUND_HALF_EVEN)
    if atto != whole and not round_prices:
        raise ValueError(f"{option}: {value!r} is finer than 10⁻¹⁸ dollars per token")
    return int(whole)


#: Service-tier names a call may report, mapped to the price tier they bill at. ``None``,
#: ``"default"``, ``"standard"``, ``"auto"`` and ``"on_demand"`` mean the standard price.
SERVICE_TIER_ALIASES: Final = {
    "priority": "priority",
    "fast": "priority",
    "flex": "flex",
    "batch": "batch",
    "batches": "batch",
    "balanced": "balanced",
    "ultrafast": "ultrafast",
}


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Per-token prices of one model, in atto-dollars (10⁻¹⁸ USD) per token.

    ``cached_input`` applies to cache reads, ``cache_write`` to cache creation (5-minute TTL),
    ``cache_write_1h`` to 1-hour cache writes and ``reasoning`` to reasoning tokens; each falls
    back (1-hour writes to ``cache_write``, the others to the input/output price) when ``None``.

    ``tiers`` are long-context prices, ascending ``(threshold, price)`` pairs: when a call's
    ``input_tokens`` is **strictly above** ``threshold``, every rate of the highest such tier
    applies to the whole call (input, output, cache reads and writes); at exactly the
    threshold the lower price applies. ``service_tiers`` maps a tier name (``"priority"``,
    ``"flex"``, ``"batch"`` ...) to that tier's full price (with its own long-context tiers);
    a call in a tier the model has no price for is billed at the standard price.
    """

    input: int
    output: int
    cached_input: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None
    cache_write_1h: int | None = None
    tiers: tuple[tuple[int, ModelPrice], ...] = ()
    service_tiers: tuple[tuple[str, ModelPrice], ...] = ()

    def for_service_tier(self, service_tier: str | None) -> ModelPrice:
        """The price billed in ``service_tier`` (the standard price when it has none)."""
        if service_tier is None or not self.service_tiers:
            return self
        name = SERVICE_TIER_ALIASES.get(service_tier.lower())
        for tier, price in self.service_tiers:
            if tier == name:
                return price
        return self

    def at(self, input_tokens: int) -> ModelPrice:
        """The flat price of a call whose prompt has ``input_tokens`` tokens."""
        chosen = self
        for threshold, price in self.tiers:
            if input_tokens <= threshold:
                break
            chosen = price
        return chosen

    def with_tiers(
        self,
        tiers: tuple[tuple[int, ModelPrice], ...] = (),
        service_tiers: tuple[tuple[str, ModelPrice], ...] = (),
    ) -> ModelPrice:
        """A copy with long-context and service tiers (validated: ascending thresholds)."""
        thresholds = [t for t, _ in tiers]
        if thresholds != sorted(set(thresholds)) or any(t < 0 for t in thresholds):
            raise ValueError("tiers: thresholds must be distinct, ascending and not negative")
        return replace(self, tiers=tiers, service_tiers=service_tiers)

    @classmethod
    def from_amounts(
        cls,
        *,
        input: object = None,
        output: object = None,
        cached_input: object = None,
        cache_write: object = None,
        reasoning: object = None,
        per_tokens: int = 1,
        option: str = "prices",
        cache_write_1h: object = None,
        round_prices: bool = False,
    ) -> ModelPrice:
        """Build from dollar amounts per ``per_tokens`` tokens (1 or 1 000 000).

        ``round_prices`` rounds a price finer than 10⁻¹⁸ $/token half-even instead of refusing it.
        """

        def conv(v: object, name: str) -> int | None:
            if v is None:
                return None
            return _atto_per_token(
                v, option=f"{option}.{name}", per_tokens=per_tokens, round_prices=round_prices
            )

        inp = conv(input, "input")
        out = conv(output, "output")
        if inp is None or out is None:
            raise ValueError(f"{option}: both an input and an output price are required")
        return cls(
            inp,
            out,
            conv(cached_input, "cached_input"),
            conv(cache_write, "cache_write"),
            conv(reasoning, "reasoning"),
            conv(cache_write_1h, "cache_write_1h"),
        )


_USAGE_FIELDS: Final = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
)


@dataclass(slots=True)
class Usage:
    """Token counts of one model call, OpenAI semantics (treat as immutable).

    ``input_tokens`` counts every prompt token; ``cached_input_tokens`` (cache reads) and
    ``cache_creation_input_tokens`` (cache writes) are subsets of it. ``reasoning_tokens`` is a
    subset of ``output_tokens``. ``cache_creation_1h_input_tokens`` (1-hour cache writes) is a
    subset of ``cache_creation_input_tokens``. ``service_tier`` names the tier the provider
    billed the call in (``"priority"``, ``"flex"``, ``"batch"``; ``None`` for standard).
    """

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    service_tier: str | None = None

    def __post_init__(self) -> None:
        i, o = self.input_tokens, self.output_tokens
        c, r, w = self.cached_input_tokens, self.reasoning_tokens, self.cache_creation_input_tokens
        h = self.cache_creation_1h_input_tokens
        if (
            not (type(i) is int and type(o) is int and type(c) is int and type(r) is int)
            or type(w) is not int
            or type(h) is not int
        ):
            for name in _USAGE_FIELDS:
                v = getattr(self, name)
                if isinstance(v, bool) or not isinstance(v, int):
                    raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if i < 0 or o < 0 or c < 0 or r < 0 or w < 0 or h < 0:
            raise ValueError("token counts must not be negative")
        if h > w:
            raise ValueError(
                "cache_creation_1h_input_tokens cannot exceed cache_creation_input_tokens"
            )
        if self.service_tier is not None and not isinstance(self.service_tier, str):
            raise TypeError("service_tier must be a str or None")
        if c + w > i:
            raise ValueError(
                "cached_input_tokens + cache_creation_input_tokens cannot exceed input_tokens "
                "(input_tokens counts every prompt token, cached ones included)"
            )
        if r > o:
            raise ValueError("reasoning_tokens cannot exceed output_tokens")


def cost_atto(price: ModelPrice, usage: Usage) -> int:
    """The exact cost of ``usage`` in atto-dollars (long-context and service tiers applied)."""
    return _atto(
        price,
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.reasoning_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_creation_1h_input_tokens,
        usage.service_tier,
    )


def _atto(
    price: ModelPrice,
    inp: int,
    out: int,
    cached: int,
    reasoning: int,
    written: int,
    written_1h: int = 0,
    service_tier: str | None = None,
) -> int:
    if service_tier is not None:
        price = price.for_service_tier(service_tier)
    if price.tiers:
        price = price.at(inp)
    total = (inp - cached - written) * price.input
    if cached:
        total += cached * (price.input if price.cached_input is None else price.cached_input)
    if written:
        write_price = price.input if price.cache_write is None else price.cache_write
        total += written * write_price
        if written_1h and price.cache_write_1h is not None:
            total += written_1h * (price.cache_write_1h - write_price)
    if price.reasoning is None:
        return total + out * price.output
    return total + (out - reasoning) * price.output + reasoning * price.reasoning


def _round_half_even(atto: int) -> int:
    q, r = divmod(atto, ATTO_PER_NANO)
    twice = 2 * r
    if twice > ATTO_PER_NANO or (twice == ATTO_PER_NANO and q % 2 == 1):
        q += 1
    return q


def cost_nanos(price: ModelPrice, usage: Usage) -> int:
    """The cost of ``usage`` in nano-dollars: exact, rounded once, half-even."""
    return _round_half_even(cost_atto(price, usage))


def cost_nanos_of(
    price: ModelPrice,
    inp: int,
    out: int,
    cached: int = 0,
    reasoning: int = 0,
    written: int = 0,
    *,
    written_1h: int = 0,
    service_tier: str | None = None,
) -> int:
    """:func:`cost_nanos` for already validated token counts (the metering hot path).

    ``written_1h`` (1-hour cache writes) is a subset of ``written``.
    """
    return _round_half_even(
        _atto(price, inp, out, cached, reasoning, written, written_1h, service_tier)
    )


def valid_counts(
    inp: object, out: object, cached: object, reasoning: object, written: object
) -> bool:
    """True when the counts form a valid :class:`Usage` (fast check; build a ``Usage`` to get
    the precise error otherwise)."""
    return (
        type(inp) is int
        and type(out) is int
        and type(cached) is int
        and type(reasoning) is int
        and type(written) is int
        and cached >= 0
        and written >= 0
        and cached + written <= inp
        and 0 <= reasoning <= out
    )


def ceil_div(a: int, b: int) -> int:
    """Integer ceiling division (for Retry-After seconds and the like)."""
    return -(-a // b)


def seconds_ceil(seconds: float) -> int:
    """Whole seconds, rounded up, at least 1 (``Retry-After`` values)."""
    return max(1, math.ceil(seconds))

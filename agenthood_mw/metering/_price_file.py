"""Read LiteLLM's ``model_prices_and_context_window.json`` entries into :class:`ModelPrice`.

What is read (everything else is kept out of the table and counted in one summary warning):

* flat per-token prices: ``input_cost_per_token``, ``output_cost_per_token``,
  ``cache_read_input_token_cost``, ``cache_creation_input_token_cost``,
  ``cache_creation_input_token_cost_above_1hr`` (1-hour cache writes) and
  ``output_cost_per_reasoning_token``;
* long-context tiers: the same keys with ``_above_{N}k_tokens`` (``128k``, ``200k``, ``272k``
  ...) and LiteLLM's ``tiered_pricing`` list (``range: [start, end]``);
* service tiers: the same keys with ``_priority``, ``_flex``, ``_batches``, ``_balanced`` or
  ``_ultrafast``; a missing tier key falls back to the standard key, as LiteLLM does;
* ``alias_of`` entries, resolved to their target's price.

The threshold rule is LiteLLM's (``litellm_core_utils/llm_cost_calc/utils.py``,
``_get_token_base_cost``): the prompt's input token count must be strictly above the threshold
(inclusive for ``xai``, as LiteLLM bills xAI's higher tier from the threshold itself), and a
tier key a tier does not define keeps the lower tier's rate.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Final

from agenthood_mw._core.pricing import ModelPrice

__all__ = ["LoadReport", "is_litellm_entry", "key_is_token_price", "parse_litellm_file"]

#: LiteLLM key stem -> ModelPrice field.
_STEMS: Final = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "cache_creation_input_token_cost": "cache_write",
    "output_cost_per_reasoning_token": "reasoning",
}
#: Key suffix -> service tier name (see ``SERVICE_TIER_ALIASES`` in ``_core.pricing``).
_SUFFIXES: Final = {
    "_priority": "priority",
    "_flex": "flex",
    "_batches": "batch",
    "_balanced": "balanced",
    "_ultrafast": "ultrafast",
}
_KEY: Final = re.compile(
    r"^(cache_creation_input_token_cost_above_1hr|"
    + "|".join(k for k in _STEMS if not k.endswith("1hr"))
    + r")(?:_above_(\d+)(k?)_tokens)?("
    + "|".join(_SUFFIXES)
    + r")?$"
)
_FIELDS: Final = ("input", "output", "cached_input", "cache_write", "reasoning", "cache_write_1h")
_INCLUSIVE_PROVIDERS: Final = frozenset({"xai"})
_ATTO: Final = Decimal(10) ** 18
#: Keys that mark an entry as LiteLLM's format (as opposed to the short per-1M form).
_MARKERS: Final = ("litellm_provider", "mode", "alias_of", "tiered_pricing")

# (field, threshold or None, tier or None) per key; None for keys that are not token prices.
_KeyInfo = tuple[str, int | None, str | None]
_key_cache: dict[str, _KeyInfo | None] = {}


def is_litellm_entry(entry: Mapping[str, Any]) -> bool:
    """True when ``entry`` uses LiteLLM's keys rather than the short per-1M form."""
    return any(m in entry for m in _MARKERS) or any("cost" in k for k in entry)


def key_is_token_price(key: str) -> bool:
    """True for the LiteLLM keys a :class:`PriceTable` reads as per-token prices."""
    return _key_info(key) is not None


def _key_info(key: str) -> _KeyInfo | None:
    try:
        return _key_cache[key]
    except KeyError:
        pass
    m = _KEY.match(key)
    info: _KeyInfo | None = None
    if m is not None:
        stem, number, k, suffix = m.groups()
        threshold = None if number is None else int(number) * (1000 if k else 1)
        info = (_STEMS[stem], threshold, None if suffix is None else _SUFFIXES[suffix])
    if len(_key_cache) < 4096:
        _key_cache[key] = info
    return info


class _Converter:
    """Dollars-per-token amounts to atto-dollars per token, rounded half-even, memoised."""

    def __init__(self) -> None:
        self.memo: dict[object, int] = {}
        self.rounded = 0

    def __call__(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
            raise ValueError(f"not a number: {value!r}")
        hit = self.memo.get(value)
        if hit is not None:
            return hit
        try:
            amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
        if not amount.is_finite() or amount < 0:
            raise ValueError(f"not a price: {value!r}")
        exact = amount * _ATTO
        whole = exact.to_integral_value(rounding=ROUND_HALF_EVEN)
        if whole != exact:
            self.rounded += 1
        self.memo[value] = int(whole)
        return int(whole)


@dataclass
class LoadReport:
    """What loading a LiteLLM price file did (``PriceTable.report``).

    ``loaded`` entries have a token price of their own; ``aliases`` resolved to one;
    ``skipped`` maps each entry without a usable token price to the reason; ``ignored_keys``
    counts price keys the table does not apply (per image, per second, per character, audio
    tokens ...); ``rounded`` counts distinct prices finer than 10⁻¹⁸ $/token rounded half-even.
    """

    loaded: int = 0
    aliases: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    ignored_keys: Counter[str] = field(default_factory=Counter)
    rounded: int = 0

    def summary(self) -> str:
        """One line for the log."""
        reasons = Counter(self.skipped.values())
        parts = [f"{self.loaded + self.aliases} models priced ({self.aliases} aliases)"]
        if self.skipped:
            detail = ", ".join(f"{n} {r}" for r, n in reasons.most_common(4))
            parts.append(f"{len(self.skipped)} entries skipped ({detail})")
        if self.ignored_keys:
            keys = ", ".join(k for k, _ in self.ignored_keys.most_common(5))
            parts.append(
                f"{sum(self.ignored_keys.values())} non-token prices not applied (e.g. {keys})"
            )
        if self.rounded:
            parts.append(f"{self.rounded} prices rounded half-even to 10⁻¹⁸ $/token")
        return "; ".join(parts)


def _collect(
    entry: Mapping[str, Any], conv: _Converter, report: LoadReport
) -> dict[tuple[str, int | None, str | None], int]:
    rates: dict[tuple[str, int | None, str | None], int] = {}
    for key, value in entry.items():
        if value is None or "cost" not in key:  # every price key says "cost"
            continue
        info = _key_info(key)
        if info is None:
            report.ignored_keys[key] += 1
        else:
            rates[info] = conv(value)
    return rates


def _flat(
    rates: Mapping[tuple[str, int | None, str | None], int],
    threshold: int | None,
    tier: str | None,
    below: Mapping[str, int | None],
) -> dict[str, int | None]:
    """One flat rate set: the tier's key, else the standard key, else the rate below."""
    out: dict[str, int | None] = {}
    for name in _FIELDS:
        value = rates.get((name, threshold, tier))
        if value is None and tier is not None:
            value = rates.get((name, threshold, None))
        out[name] = below.get(name) if value is None else value
    return out


def _price(
    values: Mapping[str, int | None],
    tiers: tuple[tuple[int, ModelPrice], ...] = (),
    services: tuple[tuple[str, ModelPrice], ...] = (),
) -> ModelPrice:
    return ModelPrice(
        values["input"] or 0,
        values["output"] or 0,
        values["cached_input"],
        values["cache_write"],
        values["reasoning"],
        values["cache_write_1h"],
        tiers,
        services,
    )


def _tiered(
    rates: Mapping[tuple[str, int | None, str | None], int],
    tier: str | None,
    inclusive: bool,
    services: tuple[tuple[str, ModelPrice], ...] = (),
) -> ModelPrice:
    base = _flat(rates, None, tier, {})
    thresholds = sorted({t for (_, t, s) in rates if t is not None and s in (None, tier)})
    tiers: list[tuple[int, ModelPrice]] = []
    below = base
    for threshold in thresholds:
        below = _flat(rates, threshold, tier, below)
        tiers.append((threshold - 1 if inclusive else threshold, _price(below)))
    return _price(base, tuple(tiers), services)


def _from_tiered_pricing(tiers: list[Any], conv: _Converter) -> ModelPrice | None:
    """LiteLLM's ``tiered_pricing`` list: a tier applies when ``start < input_tokens``."""
    ranged: list[tuple[int, ModelPrice]] = []
    for tier in tiers:
        if not isinstance(tier, Mapping):
            return None
        bounds = tier.get("range")
        rates = {
            info[0]: conv(v)
            for k, v in tier.items()
            if (info := _key_info(k)) and info[1:] == (None, None) and v is not None
        }
        if not isinstance(bounds, list) or not bounds or not rates.keys() & {"input", "output"}:
            return None
        start = int(Decimal(str(bounds[0])))
        ranged.append((start, _price({name: rates.get(name) for name in _FIELDS})))
    ranged.sort(key=lambda pair: pair[0])
    return ranged[0][1].with_tiers(tuple(ranged[1:]))


def _parse_one(entry: Mapping[str, Any], conv: _Converter, report: LoadReport) -> ModelPrice | str:
    """The entry's price, or the reason it has none."""
    tiered = entry.get("tiered_pricing")
    if isinstance(tiered, list) and tiered:
        price = _from_tiered_pricing(tiered, conv)
        if price is not None:
            return price
    rates = _collect(entry, conv, report)
    if not any(f in ("input", "output") and t is None and s is None for f, t, s in rates):
        mode = entry.get("mode")
        return f"no token price (mode {mode})" if isinstance(mode, str) else "no token price"
    inclusive = entry.get("litellm_provider") in _INCLUSIVE_PROVIDERS
    names = sorted({s for (_, _, s) in rates if s is not None})
    services = tuple((name, _tiered(rates, name, inclusive)) for name in names)
    return _tiered(rates, None, inclusive, services)


def parse_litellm_file(
    data: Mapping[str, Any],
    skip: Iterable[str] = ("sample_spec",),
    known: Mapping[str, ModelPrice] | None = None,
) -> tuple[dict[str, ModelPrice], LoadReport]:
    """Every entry of a LiteLLM price file that has a token price, aliases resolved.

    Never raises on an entry: a malformed one is skipped with its reason in the report.
    """
    report = LoadReport()
    conv = _Converter()
    table: dict[str, ModelPrice] = {}
    aliases: dict[str, str] = {}
    skipped = set(skip)
    for name, entry in data.items():
        if name in skipped or not isinstance(entry, Mapping):
            report.skipped[name] = "not a model entry"
            continue
        target = entry.get("alias_of")
        if isinstance(target, str):
            aliases[name] = target
            continue
        try:
            result = _parse_one(entry, conv, report)
        except (ValueError, TypeError, ArithmeticError) as exc:
            result = f"unreadable price ({exc})"
        if isinstance(result, str):
            report.skipped[name] = result
        else:
            table[name] = result
    _resolve_aliases(aliases, table, report, known or {})
    report.rounded = conv.rounded
    return table, report


def _resolve_aliases(
    aliases: dict[str, str],
    table: dict[str, ModelPrice],
    report: LoadReport,
    known: Mapping[str, ModelPrice],
) -> None:
    for name, target in aliases.items():
        seen = {name}
        while target in aliases and target not in seen:
            seen.add(target)
            target = aliases[target]
        price = table.get(target) or known.get(target)
        if price is None:
            report.skipped[name] = "alias of an unpriced model"
        else:
            table[name] = price
            report.aliases += 1
    report.loaded = len(table) - report.aliases

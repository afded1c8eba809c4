"""``PriceTable``: per-model token prices from a mapping or LiteLLM's price JSON."""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
from collections.abc import Mapping
from importlib import resources
from typing import Any, Final, Literal

from agenthood_mw._core.pricing import ModelPrice, Usage, cost_nanos, cost_nanos_of
from agenthood_mw.metering._price_file import LoadReport, is_litellm_entry, parse_litellm_file

__all__ = ["LoadReport", "PriceTable", "UnknownModelError"]

logger = logging.getLogger("agenthood_mw.metering")

_SHORT_KEYS: Final = frozenset(
    {"input", "output", "cached_input", "cache_write", "reasoning", "cache_write_1h"}
)
UnknownPolicy = Literal["error", "zero", "default"]


class UnknownModelError(LookupError):
    """A model has no price and the table's ``unknown`` policy is ``"error"``."""


#: The price snapshot shipped in the package (see docs/prices.md and data/NOTICE).
SNAPSHOT: Final = "litellm_prices.json.gz"
_snapshot_cache: tuple[dict[str, ModelPrice], LoadReport] | None = None


def _parse_short(name: str, entry: Mapping[str, Any]) -> ModelPrice:
    option = f"prices[{name!r}]"
    unknown = set(entry) - _SHORT_KEYS
    if unknown:
        raise ValueError(
            f"{option}: unknown keys {sorted(unknown)}; use input/output/cached_input/"
            "cache_write/cache_write_1h/reasoning (dollars per 1M tokens) or LiteLLM's "
            "*_cost_per_token keys"
        )
    return ModelPrice.from_amounts(**dict(entry), per_tokens=1_000_000, option=option)


def _parse_mapping(
    prices: Mapping[str, Mapping[str, Any]], known: Mapping[str, ModelPrice]
) -> tuple[dict[str, ModelPrice], LoadReport]:
    """Split short-form entries (strict) from LiteLLM entries (lenient, reported)."""
    short: dict[str, ModelPrice] = {}
    litellm: dict[str, Mapping[str, Any]] = {}
    for name, entry in prices.items():
        if not isinstance(name, str) or not isinstance(entry, Mapping):
            raise TypeError("prices: every entry must map a model name to a mapping")
        if name == "sample_spec":
            continue
        if is_litellm_entry(entry) or not _SHORT_KEYS.intersection(entry):
            litellm[name] = entry  # LiteLLM's form, or not a model (its ``fallback_...``)
        else:
            short[name] = _parse_short(name, entry)
    table, report = parse_litellm_file(litellm, known={**known, **short})
    table.update(short)
    report.loaded += len(short)
    return table, report


def _log_report(report: LoadReport) -> None:
    if report.skipped or report.ignored_keys or report.rounded:
        logger.warning("price table: %s", report.summary())


class PriceTable:
    """Token prices per model.

    Entries use either the short form, in **dollars per million tokens**
    (``{"gpt-4o": {"input": "2.50", "output": "10.00", "cached_input": "1.25"}}``, also
    ``cache_write``, ``cache_write_1h`` and ``reasoning``), or LiteLLM's per-token keys
    (``input_cost_per_token``, ``output_cost_per_token``, ``cache_read_input_token_cost``,
    ``cache_creation_input_token_cost``, ``cache_creation_input_token_cost_above_1hr``,
    ``output_cost_per_reasoning_token``, their ``_above_{N}k_tokens`` long-context tiers and
    ``_priority`` / ``_flex`` / ``_batches`` service tiers, ``tiered_pricing`` and
    ``alias_of``). LiteLLM entries are read leniently: an entry without a token price (image,
    audio, per-second ...) or with an unreadable one is skipped, prices finer than 10⁻¹⁸ $/token
    are rounded half-even, and one summary warning says what was left out (``report``).
    Short-form entries are strict: a mistake raises at construction.

    Args:
        prices: mapping of model name to entry.
        unknown: what a model without a price costs: ``"error"`` (raise
            :class:`UnknownModelError`, the default), ``"zero"`` (free, with one warning per
            model) or ``"default"`` (the ``default`` entry's prices).
        default: the entry used for unknown models when ``unknown="default"``.

    Lookup tries the exact name, then ``"{provider}/{model}"``, then the name after its first
    ``/`` (``"openai/gpt-4o"`` finds ``"gpt-4o"``).
    """

    def __init__(
        self,
        prices: Mapping[str, Mapping[str, Any]],
        *,
        unknown: UnknownPolicy = "error",
        default: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(prices, Mapping):
            raise TypeError("prices: expected a mapping of model name to prices")
        if unknown not in ("error", "zero", "default"):
            raise ValueError("unknown: must be 'error', 'zero' or 'default'")
        if (unknown == "default") != (default is not None):
            raise ValueError("default: required exactly when unknown='default'")
        self._default: ModelPrice | None = None
        if default is not None:
            if not isinstance(default, Mapping):
                raise TypeError("default: expected a mapping of prices")
            parsed, _ = _parse_mapping({"default": default}, {})
            if "default" not in parsed:
                raise ValueError("default: no token price in the default entry")
            self._default = parsed["default"]
        table, self.report = _parse_mapping(prices, {})
        _log_report(self.report)
        self._table = table
        self.unknown: UnknownPolicy = unknown
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_json(
        cls,
        path: str | os.PathLike[str],
        *,
        unknown: UnknownPolicy = "error",
        default: Mapping[str, Any] | None = None,
    ) -> PriceTable:
        """Load a JSON file (LiteLLM's ``model_prices_and_context_window.json`` layout).

        Numbers are read from their decimal text, never through a binary float.
        """
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh, parse_float=str)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of model entries")
        return cls(data, unknown=unknown, default=default)

    @classmethod
    def default(
        cls,
        *,
        unknown: UnknownPolicy = "error",
        default: Mapping[str, Any] | None = None,
    ) -> PriceTable:
        """The price snapshot shipped with the package (LiteLLM's price file, token-priced
        models only; its date is in docs/prices.md). Each call returns a new table, so
        :meth:`update` on one does not change another."""
        global _snapshot_cache
        if _snapshot_cache is None:
            raw = resources.files("agenthood_mw.metering").joinpath("data", SNAPSHOT).read_bytes()
            data = json.loads(gzip.decompress(raw), parse_float=str)
            _snapshot_cache = parse_litellm_file(data)
        prices, report = _snapshot_cache
        table = cls({}, unknown=unknown, default=default)
        table._table = dict(prices)
        table.report = LoadReport(loaded=report.loaded, aliases=report.aliases)
        return table

    def update(self, prices: Mapping[str, Mapping[str, Any]]) -> None:
        """Add or replace model prices (negotiated prices, new models), in either form.

        All entries are validated first; on an error nothing changes. ``alias_of`` entries may
        name a model already in the table.
        """
        if not isinstance(prices, Mapping):
            raise TypeError("prices: expected a mapping of model name to prices")
        table, report = _parse_mapping(prices, self._table)
        _log_report(report)
        with self._lock:
            self._table = {**self._table, **table}

    def models(self) -> list[str]:
        """The priced model names (aliases included), sorted."""
        return sorted(self._table)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self._find(model, None) is not None

    def __len__(self) -> int:
        return len(self._table)

    def _find(self, model: str, provider: str | None) -> ModelPrice | None:
        table = self._table
        price = table.get(model)
        if price is None and provider:
            price = table.get(f"{provider}/{model}")
        if price is None and "/" in model:
            price = table.get(model.split("/", 1)[1])
        return price

    def price(self, model: str, provider: str | None = None) -> ModelPrice:
        """The price of ``model`` after the unknown-model policy."""
        price = self._find(model, provider)
        if price is not None:
            return price
        if self.unknown == "default" and self._default is not None:
            return self._default
        if self.unknown == "zero":
            with self._lock:
                first = model not in self._warned
                self._warned.add(model)
            if first:
                logger.warning("no price for model %r: metered at zero cost", model)
            return ModelPrice(0, 0)
        raise UnknownModelError(
            f"no price for model {model!r}; add it to the PriceTable or choose "
            "unknown='zero' / unknown='default'"
        )

    def cost_nanos(
        self,
        model: str,
        usage: Usage,
        provider: str | None = None,
        *,
        service_tier: str | None = None,
    ) -> int:
        """The cost of ``usage`` on ``model`` in integer nano-dollars.

        The long-context tier follows ``usage.input_tokens``; the service tier is
        ``service_tier`` when given, else ``usage.service_tier`` (see docs/prices.md).
        """
        price = self.price(model, provider)
        if service_tier is None:
            return cost_nanos(price, usage)
        return cost_nanos_of(
            price,
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens,
            usage.reasoning_tokens,
            usage.cache_creation_input_tokens,
            written_1h=usage.cache_creation_1h_input_tokens,
            service_tier=service_tier,
        )

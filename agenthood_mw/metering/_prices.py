"""``PriceTable``: per-model token prices from a mapping or LiteLLM's price JSON."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, Literal

from agenthood_mw._core.pricing import ModelPrice, Usage, cost_nanos

__all__ = ["PriceTable", "UnknownModelError"]

logger = logging.getLogger("agenthood_mw.metering")

_LITELLM_KEYS: Final = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write",
    "output_cost_per_reasoning_token": "reasoning",
}
_SHORT_KEYS: Final = frozenset({"input", "output", "cached_input", "cache_write", "reasoning"})
UnknownPolicy = Literal["error", "zero", "default"]


class UnknownModelError(LookupError):
    """A model has no price and the table's ``unknown`` policy is ``"error"``."""


def _parse_entry(name: str, entry: Mapping[str, Any]) -> ModelPrice | None:
    option = f"prices[{name!r}]"
    if any(k in entry for k in _LITELLM_KEYS) or any(
        k == "litellm_provider" or "cost_per" in k for k in entry
    ):
        if "input_cost_per_token" not in entry or "output_cost_per_token" not in entry:
            return None  # e.g. embedding or image entries: not a chat model price
        args = {short: entry.get(long) for long, short in _LITELLM_KEYS.items()}
        return ModelPrice.from_amounts(**args, per_tokens=1, option=option)
    unknown = set(entry) - _SHORT_KEYS
    if unknown:
        raise ValueError(
            f"{option}: unknown keys {sorted(unknown)}; use input/output/cached_input/"
            "cache_write/reasoning (dollars per 1M tokens) or LiteLLM's *_cost_per_token keys"
        )
    return ModelPrice.from_amounts(**dict(entry), per_tokens=1_000_000, option=option)


class PriceTable:
    """Token prices per model.

    Entries use either the short form, in **dollars per million tokens**
    (``{"gpt-4o": {"input": "2.50", "output": "10.00", "cached_input": "1.25"}}``), or LiteLLM's
    per-token keys (``input_cost_per_token``, ``output_cost_per_token``,
    ``cache_read_input_token_cost``, ``cache_creation_input_token_cost``,
    ``output_cost_per_reasoning_token``). LiteLLM entries without token prices (image,
    embedding-only ...) and its ``sample_spec`` entry are skipped.

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
        table: dict[str, ModelPrice] = {}
        for name, entry in prices.items():
            if not isinstance(name, str) or not isinstance(entry, Mapping):
                raise TypeError("prices: every entry must map a model name to a mapping")
            if name == "sample_spec":
                continue
            parsed = _parse_entry(name, entry)
            if parsed is not None:
                table[name] = parsed
        self._table = table
        self.unknown: UnknownPolicy = unknown
        self._default = None if default is None else _parse_entry("default", default)
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

        Numbers are parsed as ``Decimal`` directly, never through a binary float.
        """
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh, parse_float=Decimal)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of model entries")
        return cls(data, unknown=unknown, default=default)

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

    def cost_nanos(self, model: str, usage: Usage, provider: str | None = None) -> int:
        """The cost of ``usage`` on ``model`` in integer nano-dollars."""
        return cost_nanos(self.price(model, provider), usage)

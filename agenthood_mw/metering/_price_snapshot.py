"""Build the price snapshot shipped in ``agenthood_mw/metering/data`` from LiteLLM's file.

Refresh it with::

    python -m agenthood_mw.metering._price_snapshot path/to/model_prices_and_context_window.json

It keeps the entries :meth:`PriceTable.from_json` prices (token prices, long-context and
service tiers, aliases) and, of each, only the keys the table reads, so the snapshot is small
and loads without a warning. LiteLLM's file is MIT-licensed; ``data/NOTICE`` keeps its notice.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from agenthood_mw.metering._price_file import key_is_token_price, parse_litellm_file

__all__ = ["build_snapshot", "main"]

_KEEP = ("litellm_provider", "mode", "alias_of", "tiered_pricing")


def build_snapshot(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The priced entries of ``data``, reduced to the keys a :class:`PriceTable` reads."""
    table, _ = parse_litellm_file(data)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(table):
        entry = data[name]
        kept = {k: v for k, v in entry.items() if k in _KEEP or key_is_token_price(k)}
        out[name] = {k: v for k, v in kept.items() if v is not None}
    return out


def main(argv: list[str] | None = None) -> int:
    """Write ``data/litellm_prices.json.gz`` from the LiteLLM file named on the command line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m agenthood_mw.metering._price_snapshot PRICE_FILE", file=sys.stderr)
        return 2
    data = json.loads(Path(args[0]).read_text(encoding="utf-8"), parse_float=Decimal)
    snapshot = build_snapshot(data)
    text = json.dumps(snapshot, sort_keys=True, separators=(",", ":"), default=str)
    target = Path(__file__).parent / "data" / "litellm_prices.json.gz"
    target.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    print(f"{len(snapshot)} entries -> {target} ({target.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

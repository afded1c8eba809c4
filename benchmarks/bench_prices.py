"""Price tables: loading LiteLLM's whole price file, the shipped snapshot, the cost hot path.

Run (litellm from the test extra provides the file)::

    python benchmarks/bench_prices.py [PATH_TO_model_prices_and_context_window.json]

Loading is timed in-process, ``repeat`` times, each on a cold key cache; the median and the
best are printed. The hot path is ``cost_nanos_of`` on a flat price and on a price with
long-context and service tiers (what ``Meter.record`` calls per usage record).
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
import timeit
from pathlib import Path

from agenthood_mw._core.pricing import cost_nanos_of
from agenthood_mw.metering import PriceTable, _price_file, _prices


def _default_file() -> Path:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pass the price file path (or install litellm)")
    return Path(spec.submodule_search_locations[0]) / "model_prices_and_context_window_backup.json"


def _time_load(load: object, repeat: int = 15) -> tuple[float, float, float]:
    """Median wall time, best wall time and median CPU time (less sensitive to other jobs)."""
    wall, cpu = [], []
    for _ in range(repeat):
        _price_file._key_cache.clear()
        start, start_cpu = time.perf_counter(), time.process_time()
        load()  # type: ignore[operator]
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), min(wall), statistics.median(cpu)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else _default_file()
    import logging

    logging.getLogger("agenthood_mw.metering").setLevel(logging.ERROR)
    table = PriceTable.from_json(path)
    med, best, cpu = _time_load(lambda: PriceTable.from_json(path))
    print(
        f"from_json, {len(table)} models from {path.name}: "
        f"median {med * 1e3:.1f} ms, best {best * 1e3:.1f} ms, CPU median {cpu * 1e3:.1f} ms"
    )

    def cold_default() -> PriceTable:
        _prices._snapshot_cache = None
        return PriceTable.default()

    med, best, cpu = _time_load(cold_default)
    print(
        f"default(), first load of the snapshot: "
        f"median {med * 1e3:.1f} ms, best {best * 1e3:.1f} ms, CPU median {cpu * 1e3:.1f} ms"
    )
    med, best, cpu = _time_load(PriceTable.default)
    print(f"default(), later calls: median {med * 1e3:.2f} ms")
    flat = table.price("gpt-4o-mini")
    tiered = table.price("gemini-2.5-pro")
    n = 200_000
    for name, stmt in (
        ("flat", lambda: cost_nanos_of(flat, 1000, 200, 100, 0, 0)),
        ("tiered", lambda: cost_nanos_of(tiered, 250_000, 200, 100, 0, 0)),
        (
            "tiered+priority",
            lambda: cost_nanos_of(tiered, 250_000, 200, 100, 0, 0, service_tier="priority"),
        ),
    ):
        best_ns = min(timeit.repeat(stmt, number=n, repeat=5)) / n * 1e9
        print(f"cost_nanos_of {name}: {best_ns:.0f} ns per call")


if __name__ == "__main__":
    main()

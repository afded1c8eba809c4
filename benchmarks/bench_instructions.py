"""Instructions per request, counted by valgrind: a deterministic companion to the timings.

Run: ``.venv/bin/python benchmarks/bench_instructions.py`` (needs ``valgrind``; Debian's
package). Each variant runs in a child process under ``valgrind --tool=callgrind`` twice, with
2 000 and 12 000 requests; the difference divided by 10 000 is the cost of one request, free of
start-up and of the other processes sharing the machine. Time on a shared VM moves by several
per cent between runs; this count moves by well under one, so it tells whether a change to the
hot path helped. It does not see cache misses or branch mispredictions: the timings
(``bench_metering.py --cpu``) remain the figures the goals are judged on.

Variants are those of ``bench_metering.py``: the bare route, auth + rate limit, and the full
stack (auth -> rate limit -> metering, memory stores).
"""

from __future__ import annotations

import asyncio
import gc
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

VARIANTS = ("bare", "auth + rate limit", "full stack (memory)")


def build(variant: str) -> tuple[Any, Any]:
    from _harness import http_scope, trivial_app
    from bench_metering import full_stack

    path = "/agents/the-developer/run"
    if variant == "bare":
        return trivial_app(), http_scope(path)
    app, _meter, token = full_stack(None if variant == "auth + rate limit" else "memory://")
    return app, http_scope(path, headers=[(b"authorization", f"Bearer {token}".encode())])


def child(variant: str, n: int) -> None:
    from _harness import call

    app, scope = build(variant)

    async def run() -> None:
        for _ in range(n):
            await call(app, scope)

    gc.disable()
    asyncio.run(run())


def count(variant: str, n: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            variant,
            str(n),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:  # pragma: no cover - valgrind changed its report
        raise RuntimeError(out.stderr[-2000:])
    return int(found.group(1))


def main() -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    per = {v: (count(v, 12_000) - count(v, 2_000)) / 10_000 for v in VARIANTS}
    print(f"{'variant':<40} {'instr/req':>10} {'× bare':>8}")
    for name, value in per.items():
        print(f"{name:<40} {value:>10.0f} {value / per['bare']:>8.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        sys.path.insert(0, str(Path(__file__).parent))
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()

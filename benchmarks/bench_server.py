"""Requests/s of a real server: uvicorn (one worker) under ``wrk``; bare app, our stack, peers.

Run: ``.venv/bin/python benchmarks/bench_server.py`` (``--seconds 5 --reps 3`` by default).

Needs ``wrk`` (Debian: ``apt-get install -y wrk``), the ``[serve]`` extra (uvicorn with uvloop and
httptools) and, for the peer stack, slowapi (``pip install slowapi``, benchmark only). The Redis
variant runs against a private ``redis-server`` on a free port when that binary exists (never
the shared server); otherwise it is left out.

Every variant (see ``server_apps.py``) serves one trivial route; servers are started once per
mode and measured in interleaved rounds (bare, full, ..., bare, full, ...) so that machine drift
hits every variant alike; the figure is the median over the rounds. The server is pinned to one
CPU and ``wrk`` to the other when ``taskset`` exists (this machine has two).

Modes: ``fast`` = ``--loop uvloop --http httptools`` (what ``[serve]`` installs and
``agenthood serve`` uses when they are importable); ``h11`` = ``--loop asyncio --http h11``
(plain uvicorn).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = {
    "fast": ["--loop", "uvloop", "--http", "httptools"],
    "h11": ["--loop", "asyncio", "--http", "h11"],
}
VARIANTS = ["bare", "full", "full-redis-sqlite", "peer"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() else []


def _wait(url: str, headers: dict[str, str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"server at {url} did not answer 200 within {timeout:.0f}s")
        time.sleep(0.1)


def _wrk(url: str, token: str, seconds: int, connections: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of one wrk run; fails loudly on non-2xx answers."""
    out = subprocess.run(
        [
            *_pin(0),
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw non-2xx answers:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(label: str) -> float:
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, pct("50"), pct("99")


def _start_redis() -> tuple[subprocess.Popen[bytes], str] | None:
    if shutil.which("redis-server") is None:
        return None
    port = _free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None


def run_mode(
    mode: str, variants: list[str], token: str, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, list[tuple[float, float, float]]]:
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    results: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants}
    try:
        for variant in variants:
            port = _free_port()
            proc = subprocess.Popen(
                [
                    *_pin(1),
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "server_apps:make",
                    "--app-dir",
                    str(HERE),
                    "--port",
                    str(port),
                    "--host",
                    "127.0.0.1",
                    "--workers",
                    "1",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                    *MODES[mode],
                ],
                env={**env, "BENCH_VARIANT": variant},
            )
            url = f"http://127.0.0.1:{port}/agents/dev/run"
            servers[variant] = (proc, url)
            _wait(url, {"Authorization": f"Bearer {token}"})
            _wrk(url, token, 1, args.connections)  # warm-up
        for _ in range(args.reps):
            for variant in variants:
                results[variant].append(
                    _wrk(servers[variant][1], token, args.seconds, args.connections)
                )
    finally:
        for proc, _url in servers.values():
            proc.terminate()
        for proc, _url in servers.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return results


def report(
    mode: str, results: dict[str, list[tuple[float, float, float]]], args: argparse.Namespace
) -> None:
    med = {v: statistics.median(r[0] for r in rows) for v, rows in results.items()}
    bare = med.get("bare")
    peer = med.get("peer")
    print(
        f"\n== {mode}: uvicorn {' '.join(MODES[mode])}, 1 worker, wrk -t1 -c{args.connections} "
        f"-d{args.seconds}s, {args.reps} interleaved rounds (median)"
    )
    head = ("variant", "req/s", "x bare", "x peer", "p50 ms", "p99 ms")
    print(f"{head[0]:<22}{head[1]:>10}" + "".join(f"{h:>9}" for h in head[2:]) + "  rounds")
    for variant, rows in results.items():
        rps = med[variant]
        p50 = statistics.median(r[1] for r in rows)
        p99 = statistics.median(r[2] for r in rows)
        xb = f"{rps / bare:.2f}" if bare else "-"
        xp = f"{rps / peer:.2f}" if peer else "-"
        rounds = " ".join(f"{r[0]:.0f}" for r in rows)
        print(f"{variant:<22}{rps:>10.0f}{xb:>9}{xp:>9}{p50:>9.2f}{p99:>9.2f}  {rounds}")
    if bare:
        for variant in results:
            if variant != "bare":
                added = (1 / med[variant] - 1 / bare) * 1e6
                print(f"  {variant}: {added:.1f} us added per request (1/rps difference)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--modes", default="fast,h11")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    from agenthood_mw.auth import mint_token

    token = mint_token(secret="bench-secret-" + "x" * 40, user_id="usr_8f3a", scopes=["agents:run"])
    variants = [v for v in args.variants.split(",") if v]
    if "peer" in variants:
        try:
            import slowapi  # noqa: F401
        except ImportError:
            print("slowapi not installed (pip install slowapi): peer stack left out")
            variants.remove("peer")
    env = dict(os.environ)
    redis = None
    tmp = tempfile.TemporaryDirectory()
    if "full-redis-sqlite" in variants:
        redis = _start_redis()
        if redis is None:
            print("redis-server not found: the Redis + SQLite variant is left out")
            variants.remove("full-redis-sqlite")
        else:
            env["BENCH_REDIS_URL"] = redis[1]
            env["BENCH_SQLITE_PATH"] = str(Path(tmp.name) / "costs.db")
    try:
        for mode in args.modes.split(","):
            if mode == "fast":
                try:
                    import httptools  # noqa: F401
                    import uvloop  # noqa: F401
                except ImportError:
                    print(
                        "uvloop/httptools missing (pip install 'agenthood-mw[serve]'): no fast mode"
                    )
                    continue
            report(mode, run_mode(mode, variants, token, args, env), args)
    finally:
        if redis is not None:
            redis[0].terminate()
            redis[0].wait(timeout=10)
        tmp.cleanup()
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

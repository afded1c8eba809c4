"""RateLimitMiddleware cost, Redis round trips, and memory per idle user.

Run: ``.venv/bin/python benchmarks/bench_ratelimit.py`` (add ``--redis`` for round trips and
latency with Redis, ``--load`` for 3 uvicorn workers under ``wrk``; both start a private
redis-server on a free port, never touching the shared one).

Variants (raw ASGI, no HTTP server, see ``_harness.py``), all admitting every request (limit
set high, the same for both stacks) so that the full path is timed:

* bare: the trivial Starlette route;
* rate limit (memory): ``RateLimitMiddleware`` alone, an authenticated ``scope["user"]``;
* auth + rate limit (memory): ``AuthMiddleware`` (HS256 JWT, repeated token) then the limiter;
* peer stack: Starlette ``AuthenticationMiddleware`` with a PyJWT backend + slowapi's
  ``SlowAPIASGIMiddleware``, the same limit, keyed by the same user;
* refused (429) path of the limiter.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from typing import Any

import jwt
from _harness import bench, call, http_scope, print_table, trivial_app
from starlette.types import Scope

from agenthood_mw import Identity
from agenthood_mw._core.gcra import Policy
from agenthood_mw.ratelimit import RateLimitMiddleware
from agenthood_mw.ratelimit._memory import MemoryGCRA

SECRET = "bench-secret-" + "x" * 40
AUDIENCE = "agenthood-api"
HIGH = 10**9  # never refuses during the run: the full admitted path is timed


def _token() -> str:
    try:
        from agenthood_mw.auth import mint_token

        return mint_token(secret=SECRET, user_id="usr_8f3a", scopes=["agents:run"])
    except ImportError:  # pragma: no cover - before the auth area exists
        return jwt.encode(
            {"sub": "usr_8f3a", "aud": AUDIENCE, "exp": int(time.time()) + 3600},
            SECRET,
            algorithm="HS256",
        )


def _peer_stack() -> Any:
    """Starlette AuthenticationMiddleware (PyJWT backend) + slowapi, same limit."""
    from slowapi import Limiter
    from slowapi.errors import RateLimitExceeded
    from slowapi.extension import _rate_limit_exceeded_handler
    from slowapi.middleware import SlowAPIASGIMiddleware
    from starlette.authentication import (
        AuthCredentials,
        AuthenticationBackend,
        AuthenticationError,
        SimpleUser,
    )
    from starlette.middleware.authentication import AuthenticationMiddleware

    class JWTBackend(AuthenticationBackend):
        async def authenticate(self, conn: Any) -> Any:
            header = conn.headers.get("authorization")
            if not header:
                return None
            _scheme, _, token = header.partition(" ")
            try:
                claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE)
            except jwt.PyJWTError as exc:
                raise AuthenticationError("invalid token") from exc
            return AuthCredentials(claims.get("scope", "").split()), SimpleUser(claims["sub"])

    limiter = Limiter(
        key_func=lambda request: request.user.display_name,
        default_limits=[f"{HIGH}/minute"],
        storage_uri="memory://",
    )
    app = trivial_app()
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)
    app.add_middleware(SlowAPIASGIMiddleware)
    app.add_middleware(AuthenticationMiddleware, backend=JWTBackend())
    return app


class _WithUser:
    """Sets an authenticated Identity, as AuthMiddleware would (rate limit measured alone)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.user = Identity(user_id="usr_8f3a")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        scope["user"] = self.user
        await self.app(scope, receive, send)


def timing() -> list[str]:
    token = _token()
    auth_headers = [(b"authorization", f"Bearer {token}".encode())]
    bare_scope = http_scope("/agents/dev/run")
    auth_scope = http_scope("/agents/dev/run", headers=auth_headers)
    variants: dict[str, Any] = {"bare": (trivial_app(), lambda i: bare_scope)}
    variants["rate limit (memory)"] = (
        _WithUser(RateLimitMiddleware(trivial_app(), window="1m", max=HIGH, burst=5)),
        lambda i: bare_scope,
    )
    try:
        from agenthood_mw.auth import AuthMiddleware

        stack = AuthMiddleware(
            RateLimitMiddleware(trivial_app(), window="1m", max=HIGH, burst=5),
            strategy="jwt",
            secret=SECRET,
            audience=AUDIENCE,
        )
        variants["auth + rate limit (memory)"] = (stack, lambda i: auth_scope)
        variants["auth alone"] = (
            AuthMiddleware(trivial_app(), strategy="jwt", secret=SECRET, audience=AUDIENCE),
            lambda i: auth_scope,
        )
    except ImportError:  # pragma: no cover
        pass
    variants["peer: Starlette auth + slowapi"] = (_peer_stack(), lambda i: auth_scope)
    refused = RateLimitMiddleware(trivial_app(), window="1h", max=1, burst=0)
    asyncio.run(call(_WithUser(refused), bare_scope))
    variants["rate limit, refused (429)"] = (_WithUser(refused), lambda i: bare_scope)
    return print_table(bench(variants))


def memory_per_user(n: int = 100_000) -> list[str]:
    lines = []
    policy = Policy.create(window=60, max=20, burst=5)
    for per_user in (1, 25):
        store = MemoryGCRA(clock=lambda: 0.0)  # no expiry while measuring
        keys = [f"u::usr_{i:06d}|default" for i in range(n)]
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for key in keys:
            for _ in range(per_user):
                store.hit([(policy, key, 1)])
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(store) == n
        lines.append(
            f"memory:// idle users: {n} users x {per_user} request(s) each -> "
            f"{(after - before) / n:.0f} bytes/user (tracemalloc; key strings excluded)"
        )
    for line in lines:
        print(line)
    return lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _count_commands(url: str, app: Any, n: int) -> dict[str, int]:
    """Commands sent by clients (not by scripts) while ``n`` requests go through ``app``."""
    import redis

    scope = http_scope("/agents/dev/run")
    seen: list[str] = []
    started = threading.Event()
    stop = threading.Event()

    def monitor() -> None:
        with redis.Redis.from_url(url).monitor() as m:
            for cmd in m.listen():
                if stop.is_set():
                    return
                if started.is_set() and cmd.get("client_type") != "lua":
                    seen.append(str(cmd["command"]).split(" ")[0].upper())

    async def drive() -> None:
        for _ in range(5):  # warm-up: connection, SCRIPT LOAD
            await call(app, scope)
        await asyncio.sleep(0.3)
        seen.clear()
        started.set()
        for _ in range(n):
            await call(app, scope)
        await asyncio.sleep(0.3)
        stop.set()

    t = threading.Thread(target=monitor, daemon=True)
    t.start()
    time.sleep(0.3)
    asyncio.run(drive())
    redis.Redis.from_url(url).ping()  # wakes the monitor so it sees ``stop``
    t.join(timeout=5)
    counts: dict[str, int] = {}
    for c in seen:
        if c != "PING":
            counts[c] = counts.get(c, 0) + 1
    return counts


def redis_round_trips(n: int = 200) -> list[str]:
    """Count the commands a client sends per request with MONITOR on a private server."""
    import redis

    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    lines = []
    try:
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        for strategy in ("gcra", "moving-window"):
            app = _WithUser(
                RateLimitMiddleware(
                    trivial_app(), window="1m", max=20, burst=5, storage=url, strategy=strategy
                )
            )
            counts = _count_commands(url, app, n)
            total = sum(counts.values())
            lines.append(
                f"redis round trips per request, strategy={strategy}: {total / n:.2f} "
                f"({', '.join(f'{k}={v}' for k, v in sorted(counts.items()))} for {n} requests)"
            )
        # Latency with Redis (raw ASGI, one process, 127.0.0.1).
        app = _WithUser(
            RateLimitMiddleware(trivial_app(), window="1m", max=HIGH, burst=5, storage=url)
        )
        bare = trivial_app()
        scope = http_scope("/agents/dev/run")
        lines += print_table(
            bench(
                {"bare": (bare, lambda i: scope), "rate limit (redis)": (app, lambda i: scope)},
                requests_per_round=500,
                rounds=9,
                warmup=200,
            )
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    for line in lines:
        print(line)
    return lines


def create_app() -> Any:
    """uvicorn ``--factory`` target for the load test (variant from the environment)."""
    import os

    variant = os.environ["AGENTHOOD_BENCH_VARIANT"]
    app = trivial_app()
    if variant == "bare":
        return app
    from agenthood_mw.auth import AuthMiddleware

    storage = os.environ.get("AGENTHOOD_BENCH_STORAGE", "memory://")
    if variant == "auth+ratelimit":
        app = RateLimitMiddleware(app, window="1m", max=HIGH, burst=5, storage=storage)
    return AuthMiddleware(app, strategy="jwt", secret=SECRET, audience=AUDIENCE)


def uvicorn_load(seconds: int = 10, workers: int = 3) -> list[str]:
    """requests/s of ``workers`` uvicorn workers under wrk on 127.0.0.1 (Redis: private)."""
    import os
    import shutil

    if shutil.which("wrk") is None:
        return ["wrk not installed: load test skipped"]
    rport = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    lines = []
    token = _token()
    try:
        time.sleep(0.5)
        for variant, storage in (
            ("bare", ""),
            ("auth", ""),
            ("auth+ratelimit", "memory://"),
            ("auth+ratelimit", f"redis://127.0.0.1:{rport}/0"),
        ):
            port = _free_port()
            env = dict(os.environ, AGENTHOOD_BENCH_VARIANT=variant, AGENTHOOD_BENCH_STORAGE=storage)
            uv = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "bench_ratelimit:create_app",
                    "--app-dir",
                    os.path.dirname(os.path.abspath(__file__)),
                    "--port",
                    str(port),
                    "--workers",
                    str(workers),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                env=env,
            )
            try:
                time.sleep(3)
                out = subprocess.run(
                    [
                        "wrk",
                        "-t2",
                        "-c64",
                        f"-d{seconds}s",
                        "-H",
                        f"Authorization: Bearer {token}",
                        f"http://127.0.0.1:{port}/agents/dev/run",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=seconds + 30,
                    check=True,
                ).stdout
            finally:
                uv.terminate()
                uv.wait(timeout=20)
            rps = next(x for x in out.splitlines() if "Requests/sec" in x).split()[-1]
            non2xx = [x.strip() for x in out.splitlines() if "Non-2xx" in x]
            name = variant + (f" ({storage.split(':')[0]})" if storage else "")
            lines.append(
                f"uvicorn x{workers} + wrk -t2 -c64 -d{seconds}s, {name}: {rps} req/s"
                + (f" [{non2xx[0]}]" if non2xx else "")
            )
    finally:
        server.terminate()
        server.wait(timeout=10)
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    timing()
    memory_per_user()
    if "--redis" in sys.argv:
        redis_round_trips()
    if "--load" in sys.argv:
        uvicorn_load()

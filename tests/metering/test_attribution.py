"""Attribution follows the request (issue 12): usage recorded from asyncio tasks,
``asyncio.to_thread``, ``anyio.to_thread.run_sync`` and a shared ``ThreadPoolExecutor``
(through ``bind``) is charged to the request's user, under real concurrency (50 users x 10
requests in flight through one ASGI app; a real uvicorn server; the WSGI shell from threads).
Usage reported after the response is refused (``run_finished``) and charged to nobody.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio.to_thread
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agenthood_mw import Identity, MemoryScope, current_meter
from agenthood_mw.metering import BudgetExhausted, CostMeterMiddleware, Metering, PriceTable, bind
from agenthood_mw.wsgi import CostMeterMiddleware as WSGICostMeterMiddleware

from .conftest import PRICES, _with_identity

# tiny: 150 nanos per input token, 600 per output token.
RECORDS_PER_REQUEST = 5


def tokens_of(user: str) -> int:
    """Each user records a distinct number of input tokens: a misattributed record shows."""
    return 1000 + int(user.removeprefix("u"))


def cost_of(user: str) -> int:
    return tokens_of(user) * 150 + 100 * 600


def spend(metering: Metering, user: str) -> int:
    key = MemoryScope.for_identity(Identity(user_id=user)).storage_key
    return int(metering.ledger.spend_between("user", key, 0, 2**40))


class App:
    """An ASGI app whose handler records from every kind of context, and leaves one task
    behind that records after the response (``late``)."""

    def __init__(self, metering: Metering) -> None:
        self.metering = metering
        self.pool = ThreadPoolExecutor(max_workers=4)  # shared by every user's requests
        self.release_late = asyncio.Event()
        self.late: list[asyncio.Task[str]] = []
        self.unbound: list[str] = []
        routes = [Route("/agents/a/run", self.route, methods=["POST"])]
        self.asgi = _with_identity(CostMeterMiddleware(Starlette(routes=routes), metering=metering))

    async def route(self, request: Request) -> JSONResponse:
        user = request.headers["x-test-user"]
        n = tokens_of(user)

        def record() -> None:
            current_meter().record(model="tiny", input_tokens=n, output_tokens=100)

        async def in_task() -> None:
            await asyncio.sleep(0)
            record()

        record()
        await asyncio.create_task(in_task())
        await asyncio.to_thread(record)
        await anyio.to_thread.run_sync(record)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.pool, bind(record))
        # Without bind() a pool thread has no meter: nothing is charged (to anyone).
        try:
            await loop.run_in_executor(self.pool, record)
        except LookupError:
            self.unbound.append(user)

        async def late() -> str:
            await self.release_late.wait()
            try:
                record()
            except BudgetExhausted as exc:
                return exc.reason
            return "charged"

        self.late.append(asyncio.create_task(late()))
        return JSONResponse({"user": user})


async def _requests(client: httpx.AsyncClient, users: int, per_user: int) -> None:
    async def one(user: str) -> None:
        response = await client.post("/agents/a/run", headers={"x-test-user": user})
        assert response.status_code == 200
        assert response.json() == {"user": user}

    await asyncio.gather(*(one(f"u{u}") for u in range(users) for _ in range(per_user)))


def _check(app: App, metering: Metering, users: int, per_user: int) -> None:
    assert metering.flush(30)
    for u in range(users):
        user = f"u{u}"
        assert spend(metering, user) == per_user * RECORDS_PER_REQUEST * cost_of(user), user
    assert len(app.unbound) == users * per_user


async def _release_late(app: App, metering: Metering, users: int, per_user: int) -> None:
    before = {f"u{u}": spend(metering, f"u{u}") for u in range(users)}
    app.release_late.set()
    reasons = await asyncio.gather(*app.late)
    assert reasons == ["run_finished"] * (users * per_user)
    assert metering.flush(30)
    assert {f"u{u}": spend(metering, f"u{u}") for u in range(users)} == before


def test_50_users_x_10_concurrent_requests_in_process() -> None:
    metering = Metering(prices=PriceTable(PRICES))

    async def main() -> App:
        app = App(metering)
        transport = httpx.ASGITransport(app=app.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await _requests(client, users=50, per_user=10)
        _check(app, metering, 50, 10)
        await _release_late(app, metering, 50, 10)
        app.pool.shutdown()
        return app

    asyncio.run(main())
    metering.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_uvicorn_server() -> None:
    metering = Metering(prices=PriceTable(PRICES))
    users, per_user = 20, 5

    async def main() -> None:
        app = App(metering)
        port = _free_port()
        config = uvicorn.Config(app.asgi, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            limits = httpx.Limits(max_connections=100)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as c:
                await _requests(c, users, per_user)
            _check(app, metering, users, per_user)
            await _release_late(app, metering, users, per_user)
        finally:
            server.should_exit = True
            await serving
            app.pool.shutdown()

    asyncio.run(main())
    metering.close()


def test_wsgi_shell_from_concurrent_threads() -> None:
    metering = Metering(prices=PriceTable(PRICES))
    pool = ThreadPoolExecutor(max_workers=3)
    leftovers: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        user = environ["agenthood.identity"].user_id
        n = tokens_of(user)

        def record() -> None:
            current_meter().record(model="tiny", input_tokens=n, output_tokens=100)

        record()
        pool.submit(bind(record)).result()
        pool.submit(bind(record)).result()
        leftovers.append(bind(record))  # called after the response
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    mw = WSGICostMeterMiddleware(app, metering=metering)
    users, per_user = 20, 5
    barrier = threading.Barrier(users * per_user)
    errors: list[BaseException] = []

    def request(user: str) -> None:
        try:
            environ = {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/agents/a/run",
                "agenthood.identity": Identity(user_id=user),
            }
            barrier.wait()
            assert b"".join(mw(environ, lambda *a: None)) == b"ok"
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [
        threading.Thread(target=request, args=(f"u{u}",))
        for u in range(users)
        for _ in range(per_user)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert metering.flush(30)
    for u in range(users):
        assert spend(metering, f"u{u}") == per_user * 3 * cost_of(f"u{u}")
    for late in leftovers:
        with pytest.raises(BudgetExhausted, match="run_finished"):
            pool.submit(late).result()
    assert metering.flush(30)
    for u in range(users):
        assert spend(metering, f"u{u}") == per_user * 3 * cost_of(f"u{u}")
    pool.shutdown()
    metering.close()


def test_bind_runs_each_call_in_its_own_copy() -> None:
    """A bound function may run in several threads at once (one Context cannot)."""
    metering = Metering(prices=PriceTable(PRICES))
    scope = MemoryScope.operator(user="u7")
    with metering.run(scope) as meter:
        fn = bind(lambda: current_meter())
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(m is meter for m in pool.map(lambda _: fn(), range(64)))
    metering.close()

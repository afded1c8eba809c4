"""The run is ended and handed to the ledger before the response's last byte reaches the server.

Issue 11 (reliability): a client must never hold a completed response whose run was not yet
submitted. The ASGI shell ends the run before it passes the final ``http.response.body``
(``more_body`` false); the WSGI shell before it hands over the chunk completing the announced
``Content-Length`` (or the last item of a list body), else when the body is exhausted (before the
server writes the end of a chunked body). The drivers below act as the server: when the last
piece arrives they look in the ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from agenthood_mw import Identity, MemoryScope, current_meter
from agenthood_mw.metering import Budget, CostMeterMiddleware, PriceTable
from agenthood_mw.wsgi import CostMeterMiddleware as WSGICostMeterMiddleware

from .conftest import PRICES

ALICE = Identity(user_id="alice")
ALICE_KEY = MemoryScope.for_identity(ALICE).storage_key
# 100 input tokens at $0.15/M + 10 output tokens at $0.60/M = $0.000021 per model call
CALL_NANOS = 21_000


def spent(ledger: Any) -> int:
    return int(ledger.spend_between("user", ALICE_KEY, 0, 2**40))


async def streaming_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Two model calls, each followed by a streamed chunk, then the final (empty) message."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(2):
        current_meter().record(model="tiny", input_tokens=100, output_tokens=10)
        await send({"type": "http.response.body", "body": b"chunk %d\n" % i, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def drive(app: Any, *, on_body: Any) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            await on_body(message)
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/agents/a/run", "headers": []}
    await app({**scope, "user": ALICE}, receive, send)
    return sent


@pytest.mark.parametrize(
    ("ledger", "options"),
    [
        ("memory", {}),
        ("sqlite", {}),
        # begin_async / end_async: a token rate, budgets seeded from a database ledger
        ("sqlite", {"tokens_per_minute": 10_000, "budgets": [Budget(limit="1.00")]}),
    ],
    ids=["memory", "sqlite", "sqlite-budget-token-rate"],
)
async def test_asgi_run_is_in_the_ledger_when_the_final_body_reaches_the_server(
    ledger: str, options: dict[str, Any], tmp_path: Any
) -> None:
    url = "memory://" if ledger == "memory" else f"sqlite:///{tmp_path}/costs.db"
    mw = CostMeterMiddleware(
        streaming_app, prices=PriceTable(PRICES), ledger=url, on_alert=None, **options
    )
    assert mw.metering.awaits is bool(options)
    seen: list[tuple[bool, int]] = []

    async def on_body(message: Message) -> None:
        # A flush waits only for runs already handed over: if the run were still open, the
        # ledger would not have it after this.
        assert await mw.flush(timeout=10)
        seen.append((message.get("more_body", False), spent(mw.ledger)))

    try:
        sent = await drive(mw, on_body=on_body)
        # Streaming still streams: the chunks passed while the run was open (nothing in the
        # ledger yet); the final message arrived after the run and both its calls were in.
        assert [m.get("body") for m in sent[1:]] == [b"chunk 0\n", b"chunk 1\n", b""]
        assert seen == [(True, 0), (True, 0), (False, 2 * CALL_NANOS)]
        (trace,) = await mw.traces.list(MemoryScope.for_identity(ALICE))
        assert trace["status"] == 200
    finally:
        await mw.close()


async def test_asgi_usage_after_the_final_body_is_late_and_refused() -> None:
    refused: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        meter = current_meter()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        try:  # e.g. a background task after the response: the run is over
            meter.record(model="tiny", input_tokens=1, output_tokens=1)
        except Exception as exc:
            refused.append(getattr(exc, "reason", ""))

    mw = CostMeterMiddleware(app, prices=PriceTable(PRICES), on_alert=None)
    await drive(mw, on_body=lambda message: _noop())
    assert refused == ["run_finished"]
    assert spent(mw.ledger) == 0


async def _noop() -> None:
    return None


def wsgi_call(app: Any, check: Any) -> list[bytes]:
    """A WSGI server: ``check(chunk_index_or_None)`` runs as each chunk (and the end) arrives."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/agents/a/run",
        "agenthood.identity": ALICE,
    }

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return lambda data: None

    body = app(environ, start_response)
    chunks: list[bytes] = []
    try:
        for chunk in body:
            chunks.append(chunk)
            check(len(chunks) - 1)
        check(None)
    finally:
        body.close()  # type: ignore[attr-defined]
    return chunks


def generator_app(length: bool) -> Any:
    def app(environ: Any, start_response: Any) -> Iterator[bytes]:
        headers = [("Content-Type", "text/plain")]
        if length:
            headers.append(("Content-Length", "16"))
        start_response("200 OK", headers)
        for i in range(2):
            current_meter().record(model="tiny", input_tokens=100, output_tokens=10)
            yield b"chunk %d\n" % i

    return app


def list_app(environ: Any, start_response: Any) -> list[bytes]:
    current_meter().record(model="tiny", input_tokens=100, output_tokens=10)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"a", b"b", b""]


@pytest.mark.parametrize(
    ("app", "last"),
    [
        (generator_app(length=True), 1),  # the chunk completing Content-Length
        (list_app, 1),  # the last non-empty item of a list body
        (generator_app(length=False), None),  # a chunked body: when it is exhausted
    ],
    ids=["content-length", "list", "chunked"],
)
def test_wsgi_run_is_in_the_ledger_when_the_last_chunk_reaches_the_server(
    app: Any, last: int | None
) -> None:
    mw = WSGICostMeterMiddleware(app, prices=PriceTable(PRICES), on_alert=None)
    seen: list[tuple[int | None, int]] = []

    def check(index: int | None) -> None:
        seen.append((index, spent(mw.ledger)))

    try:
        wsgi_call(mw, check)
        ended_at = next(i for i, (_, nanos) in enumerate(seen) if nanos)
        assert seen[ended_at][0] == last
        assert all(nanos == 0 for _, nanos in seen[:ended_at])
        assert seen[-1][1] == (CALL_NANOS if app is list_app else 2 * CALL_NANOS)
    finally:
        mw.close()

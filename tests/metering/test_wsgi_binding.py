"""The WSGI meter is bound while the app and its streamed body run, and never leaks.

Regression: the WSGI shell used to bind the meter with ``set_meter`` and unbind it only when the
server closed the body; a server (or test client) that never calls ``close()`` left the finished
meter bound in its thread, so ``current_meter()`` answered for a request that was over.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from agenthood_mw import Identity, MemoryScope, PriceTable, current_meter
from agenthood_mw.wsgi import CostMeterMiddleware

PRICES = {"tiny": {"input": "1.00", "output": "2.00"}}


def streaming_app(environ: Any, start_response: Any) -> Any:
    seen: list[str] = environ.setdefault("test.seen", [])

    def body() -> Iterator[bytes]:
        for i in range(3):
            meter = current_meter()  # raises LookupError if not bound around this chunk
            meter.record(model="tiny", input_tokens=10, output_tokens=5)
            seen.append(meter.run_id)
            yield f"chunk {i}\n".encode()

    start_response("200 OK", [("content-type", "text/plain")])
    return body()


def identity_first(app: Any) -> Any:
    def wrapped(environ: Any, start_response: Any) -> Any:
        environ["agenthood.identity"] = Identity(user_id="alice")
        return app(environ, start_response)

    return wrapped


def call(app: Any, *, close: bool) -> tuple[list[bytes], dict[str, Any], dict[str, str]]:
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/stream"}
    headers: dict[str, str] = {}

    def start_response(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> Any:
        headers.update(hdrs)
        return lambda data: None

    body = app(environ, start_response)
    chunks = list(body)
    if close:
        body.close()
    return chunks, environ, headers


@pytest.mark.parametrize("close", [True, False])
def test_streamed_body_sees_the_meter_and_nothing_leaks(close: bool) -> None:
    mw = CostMeterMiddleware(streaming_app, prices=PriceTable(PRICES))
    try:
        chunks, environ, headers = call(identity_first(mw), close=close)
        assert len(chunks) == 3
        assert environ["test.seen"] == [headers["X-Agenthood-Run-Id"]] * 3
        # The server's thread has no meter bound, closed or not.
        with pytest.raises(LookupError):
            current_meter()
        mw.flush()
        alice = MemoryScope.for_identity(Identity(user_id="alice")).storage_key
        spent = mw.ledger.spend_between("user", alice, 0, 2**40)
        # 30 input tokens at $1/M + 15 output tokens at $2/M = $0.00006, recorded in the body.
        # Settled when the body is exhausted, before the server completes the response (issue
        # 11): also when a server never calls close() (it used to be settled only by close()).
        assert spent == 60_000
    finally:
        mw.close()


def test_body_iterated_in_another_thread_still_sees_its_meter() -> None:
    mw = CostMeterMiddleware(streaming_app, prices=PriceTable(PRICES))
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/stream"}
    body = identity_first(mw)(environ, lambda status, headers, exc_info=None: None)
    out: list[bytes] = []
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            out.extend(body)
            body.close()  # type: ignore[attr-defined]
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=drive)
    worker.start()
    worker.join(10)
    mw.close()
    assert errors == []
    assert len(out) == 3
    assert len(set(environ["test.seen"])) == 1

"""``CostMeterMiddleware`` for WSGI apps (Flask, gunicorn): same keywords as the ASGI class."""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from agenthood_mw._core.pricing import format_nanos
from agenthood_mw._errors import HTTPError
from agenthood_mw._wsgi import BoundBody, WSGIApp, agenthood_state, route_path, send_error
from agenthood_mw.metering._asgi import stop_error
from agenthood_mw.metering._engine import Metering
from agenthood_mw.metering._meter import BudgetExhausted, Meter, _current
from agenthood_mw.metering._shell import MeterShell

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["CostMeterMiddleware"]

IDENTITY_KEY = "agenthood.identity"


class CostMeterMiddleware(MeterShell):
    """WSGI twin of :class:`agenthood_mw.metering.CostMeterMiddleware` (same keywords).

    The identity is read from ``environ["agenthood.identity"]``; the meter is at
    ``environ["agenthood.state"]["meter"]`` and ``current_meter()``. The run is ended (settled
    and handed to the ledger) before the server gets the body's last chunk, or when it closes
    the response iterable (a client that went away). ``agent`` receives the WSGI ``environ``.
    """

    _app_kind = "WSGI"
    app: WSGIApp

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until every finished run is in the ledger and the trace store, at most
        ``timeout`` seconds (``None``: without limit); ``False`` when the time ran out."""
        return self.metering.flush(timeout)

    def close(self) -> None:
        """Flush, stop the writer thread and close the stores this middleware opened (a
        ``metering=`` object passed in is only flushed: its owner closes it)."""
        if self._owns_metering:
            self.metering.close()
        else:
            self.metering.flush()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        metering = self.metering
        path = route_path(environ)
        exempt = metering.exempt
        if exempt is not None and path in exempt:
            return self.app(environ, start_response)
        agent = metering.agent_of_path(path) if self._agent is None else self._agent(environ)
        meter = metering.begin(environ.get(IDENTITY_KEY), path, agent)
        if isinstance(meter, HTTPError):
            return send_error(start_response, meter)
        state = agenthood_state(environ)
        state["meter"] = meter
        state["run_id"] = meter.run_id
        exchange = _Exchange(metering, meter, start_response)
        # The meter is bound while the app runs and, through the body wrapper, around every
        # chunk of a streamed body and its close(); never left bound in the server's thread.
        token = _current.set(meter)
        try:
            body = self.app(environ, exchange.start_response)
        except BudgetExhausted as exc:
            if exchange.status is not None:
                exchange.end()
                raise
            error = stop_error(exc)
            exchange.status = error.status
            exchange.end()  # nothing of the app runs any more: settle now
            return send_error(start_response, error)
        except BaseException as exc:
            meter.record_error(exc)
            exchange.end()
            raise
        finally:
            _current.reset(token)
        return _MeteredBody(body, _current, meter, exchange)


class _Exchange:
    """One metered request's response: adds the run id (and cost) headers, keeps the status
    and the announced length, and ends the run once."""

    __slots__ = ("_start_response", "ended", "length", "meter", "metering", "status")

    def __init__(self, metering: Metering, meter: Meter, start_response: StartResponse) -> None:
        self.metering = metering
        self.meter = meter
        self._start_response = start_response
        self.status: int | None = None
        self.length: int | None = None  # Content-Length announced by the app
        self.ended = False

    def start_response(
        self, status_line: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        self.status = int(status_line.split(" ", 1)[0])
        for name, value in headers:
            if name.lower() == "content-length" and value.isdigit():
                self.length = int(value)
        headers = [*headers, ("X-Agenthood-Run-Id", self.meter.run_id)]
        if self.metering.cost_header:
            headers.append(("X-Agenthood-Cost", format_nanos(self.meter.cost_nanos)))
        return self._start_response(status_line, headers, exc_info)

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self.metering.end(self.meter, self.status)


class _MeteredBody(BoundBody[Meter]):
    """The app's body, bound to the meter (see :class:`BoundBody`), that ends the run before
    the server gets the last chunk: the chunk completing the announced ``Content-Length`` (or
    the last item of a list body), else when the body is exhausted (before the server writes
    the end of a chunked body); or at ``close()`` (a client that went away)."""

    __slots__ = ("_exchange", "_left")

    def __init__(
        self,
        body: Iterable[bytes],
        var: ContextVar[Meter | None],
        meter: Meter,
        exchange: _Exchange,
    ) -> None:
        super().__init__(body, var, meter, exchange.end)
        self._exchange = exchange
        self._left: int | None = None
        if isinstance(body, list | tuple):
            self._left = sum(len(chunk) for chunk in body)

    def __next__(self) -> bytes:
        exchange = self._exchange
        if exchange.ended:
            return super().__next__()
        try:
            chunk = super().__next__()
        except StopIteration:
            exchange.end()
            raise
        left = self._left if self._left is not None else exchange.length
        if left is not None:
            left -= len(chunk)
            self._left = left
            if left <= 0:
                exchange.end()
        return chunk

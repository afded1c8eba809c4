"""``CostMeterMiddleware`` for WSGI apps (Flask, gunicorn): same keywords as the ASGI class."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from agenthood_mw._errors import HTTPError
from agenthood_mw._wsgi import BoundBody, WSGIApp, agenthood_state, route_path, send_error
from agenthood_mw.metering._asgi import stop_error
from agenthood_mw.metering._engine import (
    RESERVED_TENANT_ERROR,
    agent_from_path,
)
from agenthood_mw.metering._meter import BudgetExhausted, _current
from agenthood_mw.metering._shell import MeterShell

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["CostMeterMiddleware"]

IDENTITY_KEY = "agenthood.identity"


def _default_agent(environ: WSGIEnvironment) -> str | None:
    return agent_from_path(route_path(environ))


class CostMeterMiddleware(MeterShell):
    """WSGI twin of :class:`agenthood_mw.metering.CostMeterMiddleware` (same keywords).

    The identity is read from ``environ["agenthood.identity"]``; the meter is at
    ``environ["agenthood.state"]["meter"]`` and ``current_meter()``. The run is settled when the
    server closes the response iterable (so streamed bodies and client disconnects are charged).
    ``agent`` receives the WSGI ``environ``.
    """

    _app_kind = "WSGI"
    app: WSGIApp

    def _builtin_agent(self) -> Callable[[Any], str | None]:
        return _default_agent

    def flush(self) -> None:
        """Block until every finished run is written."""
        self.engine.flush()

    def close(self) -> None:
        """Flush, stop the writer thread and close the stores this middleware opened."""
        self.engine.close_sync()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        engine = self.engine
        path = route_path(environ)
        if path in engine.exempt:
            return self.app(environ, start_response)
        mscope = engine.scope_for(environ.get(IDENTITY_KEY))
        if mscope is None:
            return send_error(start_response, RESERVED_TENANT_ERROR)
        agent = engine.agent_for(self._agent(environ))
        admitted = engine.admit(mscope, agent)
        if isinstance(admitted, HTTPError):
            return send_error(start_response, admitted)
        tpm_key = engine.tpm_key(mscope)
        if tpm_key is not None:
            error = engine.tpm_admit_sync(tpm_key)
            if error is not None:
                engine.release(admitted)
                return send_error(start_response, error)
        meter = engine.open(mscope, agent, admitted, path, tpm_key)
        state = agenthood_state(environ)
        state["meter"] = meter
        state["run_id"] = meter.run_id
        status: list[int | None] = [None]

        def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = int(status_line.split(" ", 1)[0])
            headers = [*headers, ("X-Agenthood-Run-Id", meter.run_id)]
            if engine.cost_header:
                headers.append(("X-Agenthood-Cost", engine.cost_text(meter).decode()))
            return start_response(status_line, headers, exc_info)

        def done() -> None:
            run = engine.settle(meter, status[0])
            if tpm_key is not None:
                engine.tpm_charge_sync(tpm_key, run.totals.total_tokens)

        # The meter is bound while the app runs and, through BoundBody, around every chunk of
        # a streamed body and its close(); never left bound in the server's thread.
        token = _current.set(meter)
        try:
            body = self.app(environ, start)
        except BudgetExhausted as exc:
            if status[0] is not None:
                done()
                raise
            error = stop_error(exc)
            status[0] = error.status
            body = send_error(start_response, error)
            done()  # nothing of the app runs any more: settle now
            return body
        except BaseException as exc:
            meter.record_error(exc)
            done()
            raise
        finally:
            _current.reset(token)
        return BoundBody(body, _current, meter, done)

"""One captured model call: stack-neutral (httpx and httpx2 shells share it).

:func:`open_call` runs before the request is sent: it finds the current meter (none: the call is
not captured), recognises the endpoint, reads the request's model, an input-token estimate and
its output bound (``max_tokens`` ...) and reserves what the call may cost on the run's budgets
(``Meter.reserve_call``; ``BudgetExhausted`` propagates and nothing is sent). :func:`aopen_call`
is its async twin (``Meter.areserve_call``). :class:`Call` then watches the response bytes as
the client reads them and charges the meter once, when the body ends, is closed early or breaks: it
settles the reservation with the usage read (or estimated), or releases it when the attempt
produced none (an error status, a connection error).
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import Any, Protocol

from agenthood_mw._core.pricing import Usage
from agenthood_mw.capture._wire_anthropic import MessagesReader
from agenthood_mw.capture._wire_openai import ChatReader, EmbeddingsReader, ResponsesReader
from agenthood_mw.metering import (
    CallReservation,
    Meter,
    ResponseUsage,
    current_meter,
    estimate_tokens,
)

__all__ = ["Call", "aopen_call", "open_call"]

logger = logging.getLogger("agenthood_mw.capture")

_CHARS_PER_TOKEN = 4  # the documented estimate: 4 bytes of request body per input token


class Reader(Protocol):
    provider: str
    events: int

    @property
    def usage(self) -> ResponseUsage | None: ...

    def feed_body(self, body: Any) -> None: ...

    def feed_event(self, data: bytes) -> None: ...


def _reader(method: str, path: str) -> Reader | None:
    if method != "POST":
        return None
    if path.endswith("/chat/completions"):
        return ChatReader()
    if path.endswith("/responses"):
        return ResponsesReader()
    if path.endswith("/embeddings"):
        return EmbeddingsReader()
    if path.endswith("/messages"):
        return MessagesReader()
    return None


def _meter() -> Meter | None:
    try:
        return current_meter()
    except LookupError:
        return None


_OUTPUT_BOUNDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_PROMPT_KEYS = ("system", "instructions", "messages", "input", "prompt")


class Plan:
    """What the request body says before it is sent: model, input estimate, output bound."""

    __slots__ = ("input_tokens", "max_output_tokens", "model")

    def __init__(self, model: str | None, input_tokens: int, max_output_tokens: int | None) -> None:
        self.model = model
        self.input_tokens = input_tokens
        self.max_output_tokens = max_output_tokens


def _prompt_tokens(value: object, model: str) -> int:
    if isinstance(value, str | list | tuple):
        try:
            return estimate_tokens(value, model)
        except (TypeError, ValueError):
            return 0
    return 0


def plan_of(content: bytes) -> Plan:
    """Parse a recognised endpoint's JSON body: its ``model``, ``estimate_tokens`` over its
    ``system`` / ``instructions`` / ``messages`` / ``input`` / ``prompt``, and its first
    ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens``. A body that is not a
    JSON object, or names no model, plans nothing (the call is only checked, not reserved)."""
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(model, str) or not model:
        return Plan(None, 0, None)
    tokens = sum(_prompt_tokens(body.get(key), model) for key in _PROMPT_KEYS)
    bound = None
    for key in _OUTPUT_BOUNDS:
        value = body.get(key)
        if type(value) is int and value >= 0:
            bound = value
            break
    return Plan(model, tokens, bound)


def _prepare(method: str, path: str, content: bytes | None) -> Call | None:
    meter = _meter()
    if meter is None:
        return None
    reader = _reader(method, path)
    if reader is None:
        return None
    return Call(meter, reader, path, content or b"")


def open_call(method: str, path: str, content: bytes | None) -> Call | None:
    """The call to watch, or ``None`` (no current meter, or not a model endpoint); its
    reservation is made on the run's budgets.

    Raises:
        BudgetExhausted: the run may not make this model call; nothing must be sent.
    """
    call = _prepare(method, path, content)
    if call is None:
        return None
    plan = plan_of(call.content)
    if plan.model is None:
        call.meter.check_budget()
    else:
        call.reservation = call.meter.reserve_call(
            model=plan.model,
            input_tokens_estimate=plan.input_tokens,
            max_output_tokens=plan.max_output_tokens,
            provider=call.reader.provider,
        )
    return call


async def aopen_call(method: str, path: str, content: bytes | None) -> Call | None:
    """:func:`open_call` for an async transport (``Meter.areserve_call``: a Redis budget store
    is not called on the event loop)."""
    call = _prepare(method, path, content)
    if call is None:
        return None
    plan = plan_of(call.content)
    if plan.model is None:
        call.meter.check_budget()
    else:
        call.reservation = await call.meter.areserve_call(
            model=plan.model,
            input_tokens_estimate=plan.input_tokens,
            max_output_tokens=plan.max_output_tokens,
            provider=call.reader.provider,
        )
    return call


class Call:
    """The response side of one HTTP attempt (see the module docstring)."""

    def __init__(self, meter: Meter, reader: Reader, path: str, content: bytes) -> None:
        self.meter = meter
        self.reader = reader
        self.path = path
        self.content = content  # the request body
        self.reservation: CallReservation | None = None
        self.status = 0
        self._sse = False
        self._rest = b""
        self._body: list[bytes] | None = None
        self._size = 0
        self._inflate: Any = None
        self._done = False
        self._broken = False

    @property
    def model(self) -> str | None:
        """The model the request asked for (``None`` if the body names none)."""
        try:
            body = json.loads(self.content) if self.content else None
        except ValueError:
            return None
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) and model else None

    @property
    def est_input(self) -> int:
        """The input estimate: the request body's size in bytes / 4, rounded up."""
        return -(-len(self.content) // _CHARS_PER_TOKEN)

    def failed(self, error: BaseException) -> None:
        """The attempt raised before a response (connection error, timeout): traced, free."""
        self._release()
        self._trace(charged=False, error=type(error).__name__)

    def _release(self) -> None:
        if self.reservation is not None:
            self.reservation.release()

    def watch(self, status: int, content_type: str, encoding: str) -> bool:
        """Whether the body must be watched; an error status is traced and costs nothing."""
        self.status = status
        if not 200 <= status < 300:
            self._release()
            self._trace(charged=False)
            return False
        encoding = encoding.strip().lower()
        if encoding in ("gzip", "deflate"):
            self._inflate = zlib.decompressobj(31 if encoding == "gzip" else 15)
        elif encoding not in ("", "identity"):
            self._release()
            self._trace(charged=False, error=f"unreadable content-encoding {encoding}")
            return False
        self._sse = content_type.startswith("text/event-stream")
        if not self._sse:
            self._body = []
        return True

    def feed(self, chunk: bytes) -> None:
        """One chunk of the (raw) response body, as the client reads it. A body the capture
        cannot read (malformed usage, a corrupt gzip stream) is logged and no longer watched;
        the client's reading never fails because of the capture."""
        if self._broken:
            return
        try:
            self._feed(chunk)
        except (ValueError, TypeError, AttributeError, zlib.error) as exc:
            self._broken = True
            self._body = None
            logger.warning("capture: unreadable response on %s: %s", self.path, exc)

    def _feed(self, chunk: bytes) -> None:
        if self._inflate is not None:
            chunk = self._inflate.decompress(chunk)
        if self._body is not None:
            self._body.append(chunk)
            self._size += len(chunk)
            return
        if b"\n" not in chunk:
            self._rest += chunk
            return
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        feed = self.reader.feed_event
        for line in lines:
            if line.startswith(b"data:"):
                feed(line[5:].strip())

    def finish(self) -> None:
        """The body ended, was closed early or broke: charge the meter (once)."""
        if self._done:
            return
        self._done = True
        try:
            if not self._broken:
                self._read_rest()
        except (ValueError, TypeError, AttributeError) as exc:  # malformed: estimated below
            logger.warning("capture: unreadable usage on %s: %s", self.path, exc)
        try:
            usage = self.reader.usage
        except (ValueError, TypeError, AttributeError):
            usage = None
        if usage is not None:
            self._charge(usage, estimated=False)
        else:
            self._charge(self._estimate(), estimated=True)

    def _read_rest(self) -> None:
        if self._body is not None:
            body = b"".join(self._body)
            self._body = None
            if body:
                self.reader.feed_body(json.loads(body))
        elif self._rest.startswith(b"data:"):
            rest, self._rest = self._rest, b""
            self.reader.feed_event(rest[5:].strip())

    def _estimate(self) -> ResponseUsage:
        reader = self.reader
        started = getattr(reader, "started", None)
        known = started() if started is not None else None
        if known is not None:  # Anthropic: exact input from message_start
            u = known.usage
            return ResponseUsage(
                known.model,
                Usage(
                    u.input_tokens,
                    max(u.output_tokens, reader.events),
                    cached_input_tokens=u.cached_input_tokens,
                    cache_creation_input_tokens=u.cache_creation_input_tokens,
                    cache_creation_1h_input_tokens=u.cache_creation_1h_input_tokens,
                    service_tier=u.service_tier,
                ),
                reader.provider,
            )
        if self._sse or isinstance(reader, EmbeddingsReader):
            out = reader.events
        else:  # a complete JSON body without usage: an upper bound
            out = -(-self._size // _CHARS_PER_TOKEN)
        return ResponseUsage(self.model, Usage(self.est_input, out), reader.provider)

    def _model(self, found: str | None) -> str | None:
        """The answered model when priced (a dated snapshot), else the requested one."""
        if found:
            prices = self.meter.prices
            if found in prices or f"{self.reader.provider}/{found}" in prices:
                return found
            return self.model or found
        return self.model

    def _charge(self, found: ResponseUsage, *, estimated: bool) -> None:
        model = self._model(found.model)
        u = found.usage
        if model is None:
            logger.error("capture: %s answered with no model name; usage not charged", self.path)
            self._release()
            self._trace(charged=False, estimated=estimated)
            return
        if estimated:  # an exact charge is traced by its usage event alone
            self._trace(
                charged=True,
                estimated=True,
                model=model,
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
            )
        record = self.meter.record if self.reservation is None else self.reservation.settle
        try:
            record(
                model=model,
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cached_input_tokens=u.cached_input_tokens,
                reasoning_tokens=u.reasoning_tokens,
                cache_creation_input_tokens=u.cache_creation_input_tokens,
                cache_creation_1h_input_tokens=u.cache_creation_1h_input_tokens,
                service_tier=u.service_tier,
                provider=found.provider,
            )
        except Exception as exc:
            logger.debug("capture: %s not charged: %s", self.path, exc)
        finally:
            self._release()

    def _trace(self, **attrs: Any) -> None:
        if self.meter.closed:
            return
        self.meter.annotate("http_attempt", path=self.path, status=self.status, **attrs)

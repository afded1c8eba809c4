"""One captured model call: stack-neutral (httpx and httpx2 shells share it).

:func:`open_call` runs before the request is sent: it finds the current meter (none: the call is
not captured), recognises the endpoint, and checks the run's budgets (``BudgetExhausted``
propagates and nothing is sent). :class:`Call` then watches the response bytes as the client
reads them and charges the meter once, when the body ends, is closed early or breaks.
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import Any, Protocol

from agenthood_mw._core.pricing import Usage
from agenthood_mw.capture._wire_anthropic import MessagesReader
from agenthood_mw.capture._wire_openai import ChatReader, EmbeddingsReader, ResponsesReader
from agenthood_mw.metering import Meter, ResponseUsage, current_meter

__all__ = ["Call", "open_call"]

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


def open_call(method: str, path: str, content: bytes | None) -> Call | None:
    """The call to watch, or ``None`` (no current meter, or not a model endpoint).

    Raises:
        BudgetExhausted: the run may not make another model call; nothing must be sent.
    """
    meter = _meter()
    if meter is None:
        return None
    reader = _reader(method, path)
    if reader is None:
        return None
    meter.check_budget()
    return Call(meter, reader, path, content or b"")


class Call:
    """The response side of one HTTP attempt (see the module docstring)."""

    def __init__(self, meter: Meter, reader: Reader, path: str, content: bytes) -> None:
        self.meter = meter
        self.reader = reader
        self.path = path
        self._content = content  # the request body, parsed only if its model is needed
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
            body = json.loads(self._content) if self._content else None
        except ValueError:
            return None
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) and model else None

    @property
    def est_input(self) -> int:
        """The input estimate: the request body's size in bytes / 4, rounded up."""
        return -(-len(self._content) // _CHARS_PER_TOKEN)

    def failed(self, error: BaseException) -> None:
        """The attempt raised before a response (connection error, timeout): traced, free."""
        self._trace(charged=False, error=type(error).__name__)

    def watch(self, status: int, content_type: str, encoding: str) -> bool:
        """Whether the body must be watched; an error status is traced and costs nothing."""
        self.status = status
        if not 200 <= status < 300:
            self._trace(charged=False)
            return False
        encoding = encoding.strip().lower()
        if encoding in ("gzip", "deflate"):
            self._inflate = zlib.decompressobj(31 if encoding == "gzip" else 15)
        elif encoding not in ("", "identity"):
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
        try:
            self.meter.record(
                model=model,
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cached_input_tokens=u.cached_input_tokens,
                reasoning_tokens=u.reasoning_tokens,
                cache_creation_input_tokens=u.cache_creation_input_tokens,
                provider=found.provider,
            )
        except Exception as exc:
            logger.debug("capture: %s not charged: %s", self.path, exc)

    def _trace(self, **attrs: Any) -> None:
        if self.meter.closed:
            return
        self.meter.annotate("http_attempt", path=self.path, status=self.status, **attrs)

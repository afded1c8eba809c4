"""Spike alerts: the runbook's rule applied as runs are recorded, and the alert sinks."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from agenthood_mw._core.pricing import nanos_to_decimal
from agenthood_mw._core.scope import MemoryScope
from agenthood_mw._core.spikes import DAY, History, SpikeDecision, SpikeRule, day_of
from agenthood_mw.metering._ledger import Ledger, Per, subject_of
from agenthood_mw.metering._records import RunRecord

__all__ = ["LoggingAlertSink", "SpikeAlert", "SpikeMonitor", "WebhookAlertSink"]

logger = logging.getLogger("agenthood_mw.metering")
AlertSink = Callable[["SpikeAlert"], object]


@dataclass(frozen=True, slots=True)
class SpikeAlert:
    """One subject spent more today than the spike rule allows.

    Attributes:
        per: ``"user"`` or ``"agent"``.
        subject: the agent name or the user's scope label.
        scope: the user's :class:`MemoryScope` (``None`` for agents).
        day: the UTC date (``"2026-05-01"``).
        today: spend so far today (dollars).
        baseline: the 7-day average (dollars; 0 for the new-subject rule).
        rule: ``"baseline"`` or ``"new_subject"``.
        history_days: full days since the subject's first spend.
    """

    per: str
    subject: str
    scope: MemoryScope | None
    day: str
    today: Decimal
    baseline: Decimal
    threshold: Decimal
    rule: str
    history_days: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (amounts as decimal strings)."""
        return {
            "type": "cost_spike",
            "per": self.per,
            "subject": self.subject,
            "day": self.day,
            "today": format(self.today, "f"),
            "baseline7d": format(self.baseline, "f"),
            "threshold": format(self.threshold, "f"),
            "rule": self.rule,
            "historyDays": self.history_days,
        }


def make_alert(per: str, key: str, day: int, d: SpikeDecision) -> SpikeAlert:
    scope = MemoryScope.from_storage_key(key) if per == "user" else None
    return SpikeAlert(
        per,
        scope.label if scope is not None else key,
        scope,
        datetime.fromtimestamp(day * DAY, UTC).date().isoformat(),
        nanos_to_decimal(d.today),
        nanos_to_decimal(d.baseline),
        nanos_to_decimal(d.threshold),
        d.rule,
        d.history_days,
    )


def normalise_sinks(on_alert: object) -> tuple[AlertSink, ...]:
    if on_alert is None:
        return ()
    if callable(on_alert):
        return (on_alert,)
    if isinstance(on_alert, Iterable) and not isinstance(on_alert, str | bytes | Mapping):
        sinks = tuple(on_alert)
        if all(callable(s) for s in sinks):
            return sinks
    raise TypeError("on_alert: expected a callable taking a SpikeAlert, or a list of them")


def emit(sinks: Sequence[AlertSink], alert: SpikeAlert) -> None:
    for sink in sinks:
        try:
            sink(alert)
        except Exception:
            logger.exception("alert sink %r failed", sink)


class SpikeMonitor:
    """Applies the spike rule to every recorded run (per user and per agent).

    The history of a subject is read from the ledger once per day and kept up to date in
    memory; the once-per-day guarantee is stored in the ledger (``claim_alert``), so several
    processes sharing a ledger alert once between them.
    """

    def __init__(
        self,
        ledger: Ledger,
        rule: SpikeRule,
        sinks: Sequence[AlertSink],
        *,
        clock: Callable[[], float] = time.time,
        kinds: Sequence[Per] = ("user", "agent"),
    ) -> None:
        self.ledger = ledger
        self.rule = rule
        self.sinks = tuple(sinks)
        self.kinds = tuple(kinds)
        self._clock = clock
        self._day = -1
        self._state: dict[tuple[str, str], list[Any]] = {}  # -> [History, alerted]
        self._lock = threading.Lock()

    def observe(self, runs: Sequence[RunRecord], new_nanos: Sequence[int]) -> list[SpikeAlert]:
        """Account runs already written to the ledger; emit and return the new alerts."""
        alerts = []
        today = day_of(self._clock())
        with self._lock:
            if today != self._day:
                self._day, self._state = today, {}
            for run, new in zip(runs, new_nanos, strict=True):
                if new <= 0:
                    continue
                for per in self.kinds:
                    subject = subject_of(per, run.scope, run.agent)
                    if subject is None:
                        continue
                    state = self._state.get((per, subject))
                    if state is None:
                        # Fresh read: already includes this run (written before observe).
                        hist = self.ledger.history(per, subject, today, self.rule.baseline_days)
                        state = self._state[(per, subject)] = [hist, False]
                    elif state[1]:
                        continue  # alerted today: nothing more to decide
                    else:
                        h: History = state[0]
                        state[0] = History(h.today + new, h.previous, h.first_day)
                    decision = self.rule.decide(state[0], today)
                    if decision.alert:
                        state[1] = True
                        if self.ledger.claim_alert(per, subject, today, self._clock()):
                            alerts.append(make_alert(per, subject, today, decision))
        for alert in alerts:
            emit(self.sinks, alert)
        return alerts


class LoggingAlertSink:
    """Logs each alert (default: WARNING on the ``agenthood_mw.alerts`` logger)."""

    def __init__(self, logger: logging.Logger | None = None, *, level: int = logging.WARNING):
        self.logger = logger or logging.getLogger("agenthood_mw.alerts")
        self.level = level

    def __call__(self, alert: SpikeAlert) -> None:
        self.logger.log(
            self.level,
            "cost spike: %s %s spent %s today (7-day average %s, rule %s)",
            alert.per,
            alert.subject,
            alert.today,
            alert.baseline,
            alert.rule,
            extra={"agenthood_alert": alert.as_dict()},
        )


class WebhookAlertSink:
    """POSTs each alert as JSON to ``url`` from a background thread (never the request path).

    Args:
        url: ``http://`` or ``https://`` endpoint.
        timeout: seconds per POST (default 5).
        headers: extra request headers (e.g. an authorization token).
        max_queue: alerts waiting to be sent; beyond it new alerts are dropped and logged.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        max_queue: int = 1000,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError("url: expected an http:// or https:// URL")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError("timeout: must be a positive number of seconds")
        self.url = url
        self.timeout = float(timeout)
        self.headers = {"content-type": "application/json", **dict(headers or {})}
        self._queue: queue.Queue[SpikeAlert | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0

    def __call__(self, alert: SpikeAlert) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="agenthood-alert-webhook", daemon=True
                )
                self._thread.start()
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            logger.error("alert webhook queue full; dropped alert %s", alert.as_dict())

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            try:
                if alert is None:
                    return
                self._post(alert)
            finally:
                self._queue.task_done()

    def _post(self, alert: SpikeAlert) -> None:
        body = json.dumps(alert.as_dict()).encode()
        request = urllib.request.Request(  # noqa: S310 - scheme checked at construction
            self.url, data=body, headers=self.headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                response.read()
            self.sent += 1
        except Exception as exc:
            self.failed += 1
            logger.error("alert webhook POST to %s failed: %s", self.url, type(exc).__name__)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (waiting at most ``timeout`` seconds) and stop the thread."""
        with self._lock:
            thread = self._thread
            self._thread = None
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)

"""Moves finished runs to the ledger, trace store, spike monitor and OpenTelemetry.

For in-process stores (``memory://``) a run is written inline when the request ends (the
memory ledger skips runs without usage; the memory trace store appends to a buffer that every
read folds in first, so nothing is lost or hidden). For
SQLite and PostgreSQL a background thread writes batches, so the request path never waits on
the database; :meth:`Recorder.flush` (lifespan shutdown, ``close()``, interpreter exit) waits
until every submitted run is written. A failed write is retried; a batch that still fails is
logged in full (JSON) at ERROR level so it can be replayed.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence

from agenthood_mw.metering._alerts import SpikeMonitor
from agenthood_mw.metering._ledger import Ledger, MemoryLedger
from agenthood_mw.metering._records import RunRecord
from agenthood_mw.metering._traces import TraceStore

__all__ = ["Recorder"]

logger = logging.getLogger("agenthood_mw.metering")
_RETRY_DELAYS = (0.05, 0.25, 1.0)


class Recorder:
    def __init__(
        self,
        ledger: Ledger,
        traces: TraceStore | None,
        monitor: SpikeMonitor | None,
        exporter: Callable[[RunRecord], None] | None,
        *,
        batch_size: int = 200,
        linger: float = 0.02,
    ) -> None:
        self.ledger = ledger
        self.traces = traces
        self.monitor = monitor
        self.exporter = exporter
        self.batch_size = batch_size
        # The writer waits up to this long for a batch to fill (a flush or close ends the wait):
        # one transaction and one thread wake-up per batch instead of per request.
        self.linger = linger
        self._idle = False  # the writer waits for work: only then does submit() notify
        self._urgent = 0  # flush() callers waiting: the writer must not linger
        self.inline = not ledger.blocking and (traces is None or not traces.blocking)
        # ``MemoryLedger.write_runs`` of a run without usage events is a no-op returning [0].
        self._skip_empty = type(ledger) is MemoryLedger
        self._write_trace = None if traces is None else traces.write_new_run
        self._queue: deque[RunRecord] = deque()
        self._cond = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self.lost = 0
        ref = weakref.ref(self)
        atexit.register(_flush_at_exit, ref)

    def submit(self, run: RunRecord) -> None:
        """Hand over a finished run (never raises on the request path for blocking stores)."""
        if self.inline:
            if not run.usage and self._skip_empty:
                # The memory ledger stores nothing for a run without usage: only the trace.
                write_trace = self._write_trace
                if write_trace is not None:
                    write_trace(run)
                if self.exporter is not None:
                    self._after((run,), (0,))
                return
            batch = (run,)
            try:
                new = self.ledger.write_runs(batch)
            except Exception:
                self._process(batch)  # the retrying path
                return
            if self.traces is not None:
                self.traces.write_new_runs(batch)
            if new[0] or self.exporter is not None:
                self._after(batch, new)
            return
        with self._cond:
            self._queue.append(run)
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="agenthood-meter-writer", daemon=True
                )
                self._thread.start()
            if self._idle:
                self._idle = False
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._idle = True
                    self._cond.wait()
                self._idle = False
                if not self._queue and self._closed:
                    self._thread = None
                    return
                if (
                    len(self._queue) < self.batch_size
                    and not self._closed
                    and not self._urgent
                    and self.linger > 0
                ):
                    # Let the batch fill; submit() does not notify meanwhile, flush() does.
                    self._cond.wait(self.linger)
                batch = [
                    self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))
                ]
            try:
                self._process(batch)
            finally:
                with self._cond:
                    self._pending -= len(batch)
                    self._cond.notify_all()

    def _process(self, batch: Sequence[RunRecord]) -> None:
        new = self._write_ledger(batch)
        if new is None:
            return
        if self.traces is not None:
            try:
                self.traces.write_new_runs(batch)
            except Exception:
                logger.exception("writing %d run traces failed", len(batch))
        self._after(batch, new)

    def _after(self, batch: Sequence[RunRecord], new: Sequence[int]) -> None:
        if self.monitor is not None and any(new):
            try:
                self.monitor.observe(batch, new)
            except Exception:
                logger.exception("spike alert check failed")
        if self.exporter is not None:
            for run in batch:
                try:
                    self.exporter(run)
                except Exception:
                    logger.exception("OpenTelemetry export failed")

    def _write_ledger(self, batch: Sequence[RunRecord]) -> list[int] | None:
        try:
            return self.ledger.write_runs(batch)
        except Exception:
            logger.warning("ledger write failed; retrying", exc_info=True)
        for delay in (*_RETRY_DELAYS, None):
            try:
                return self.ledger.write_runs(batch)
            except Exception as exc:
                if delay is None:  # pragma: no branch
                    self.lost += len(batch)
                    logger.error(
                        "ledger write failed (%s); %d runs not stored: %s",
                        type(exc).__name__,
                        len(batch),
                        "[" + ",".join(r.trace_json() for r in batch) + "]",
                    )
                    return None
                time.sleep(delay)
        return None  # pragma: no cover

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every submitted run is written; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._urgent += 1
            try:
                self._cond.notify_all()  # a lingering writer writes now
                while self._pending:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            finally:
                self._urgent -= 1
        return True

    def close(self, timeout: float | None = 30.0) -> bool:
        """Flush, then stop the writer thread."""
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
        return done


def _flush_at_exit(ref: Callable[[], Recorder | None]) -> None:
    recorder = ref()
    if recorder is not None and not recorder.inline:
        recorder.flush(10.0)

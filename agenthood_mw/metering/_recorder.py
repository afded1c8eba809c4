"""Moves finished runs to the ledger, trace store, spike monitor and OpenTelemetry.

For in-process stores (``memory://``) a run is written inline when the request ends (the
memory ledger skips runs without usage; the memory trace store appends to a buffer that every
read folds in first, so nothing is lost or hidden). For
SQLite and PostgreSQL a background thread writes batches, so the request path never waits on
the database; :meth:`Recorder.flush` (lifespan shutdown, ``close()``, interpreter exit) waits
until every submitted run is written. A failed write is retried; a batch that still fails is
logged in full (JSON) at ERROR level and stays in the spool.

Durability: when the ledger names a spool directory (the SQL ledgers do), :meth:`submit`
appends the run to the crash spool (:mod:`._spool`) before it returns, and a new recorder
replays the spool files of dead processes into the ledger first. A run submitted before its
response completed is therefore in the ledger after a ``kill -9`` and a restart.

One source of truth for money: the trace, the spike monitor and the exporter receive each run
as the ledger counted it (:func:`~._records.as_counted`): a usage event the ledger refused as a
replay of another run's idempotency key is not counted again in the run's trace totals.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence

from agenthood_mw.metering._alerts import SpikeMonitor
from agenthood_mw.metering._ledger import Ledger, MemoryLedger, store
from agenthood_mw.metering._records import REPLAY, RunRecord, as_counted, new_nanos
from agenthood_mw.metering._spool import Spool, encode_run
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
        batch_size: int = 2000,
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
        #: Runs replayed from the spool files of dead processes when this recorder started.
        self.recovered = 0
        self._spool: Spool | None = None
        if not self.inline and ledger.spool_dir is not None:
            self._spool = Spool(ledger.spool_dir)
            self._recover()
        ref = weakref.ref(self)
        atexit.register(_flush_at_exit, ref)
        if not self.inline:
            _LIVE.add(self)

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
            try:
                statuses = store(self.ledger, (run,))[0]
            except Exception:
                self._process((run,))  # the retrying path
                return
            new = new_nanos(run, statuses) if statuses else 0
            if REPLAY in statuses:
                run = as_counted(run, statuses)
            if self.traces is not None:
                self.traces.write_new_runs((run,))
            if new or self.exporter is not None:
                self._after((run,), (new,))
            return
        spool = self._spool
        data = None if spool is None else encode_run(run)
        with self._cond:
            if data is not None and spool is not None:
                # Under the lock: the writer counts runs in this order, and zeroes the spool only
                # when nothing is pending.
                spool.append(data)
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
            stored = False
            try:
                stored = self._process(batch)
            except Exception:  # a bug in a store or sink must not stop the writer
                logger.exception("writing %d runs failed", len(batch))
            finally:
                with self._cond:
                    spool = self._spool
                    if spool is not None:
                        if stored:
                            spool.done(len(batch))
                        else:
                            spool.keep(len(batch))
                    self._pending -= len(batch)
                    self._cond.notify_all()

    def _process(self, batch: Sequence[RunRecord]) -> bool:
        """Write ``batch`` to the ledger, then (as the ledger counted it) to the trace store,
        the spike monitor and the exporter; False when the ledger refused it."""
        statuses = self._write_ledger(batch)
        if statuses is None:
            return False
        runs = [as_counted(r, st) for r, st in zip(batch, statuses, strict=True)]
        new = [new_nanos(r, st) for r, st in zip(batch, statuses, strict=True)]
        if self.traces is not None:
            try:
                self.traces.write_new_runs(runs)
            except Exception:
                logger.exception("writing %d run traces failed", len(batch))
        self._after(runs, new)
        return True

    def _recover(self) -> None:
        """Replay the spool files of dead processes (idempotent), then delete them; a file
        whose runs the ledger refuses is kept for the next start."""
        assert self._spool is not None
        exporter, self.exporter = self.exporter, None  # spans of a past process: not re-sent
        try:
            for path, runs, claim in self._spool.orphans():
                stored = True
                for i in range(0, len(runs), self.batch_size):
                    if not self._process(runs[i : i + self.batch_size]):
                        stored = False
                        break
                claim.release(stored)
                if stored:
                    self.recovered += len(runs)
                    if runs:
                        logger.info("replayed %d runs from the metering spool %s", len(runs), path)
        finally:
            self.exporter = exporter

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

    def _write_ledger(self, batch: Sequence[RunRecord]) -> list[tuple[int, ...]] | None:
        try:
            return store(self.ledger, batch)
        except Exception:
            logger.warning("ledger write failed; retrying", exc_info=True)
        for delay in (*_RETRY_DELAYS, None):
            try:
                return store(self.ledger, batch)
            except Exception as exc:
                if delay is None:  # pragma: no branch
                    self.lost += len(batch)
                    logger.error(
                        "ledger write failed (%s); %d runs not stored%s: %s",
                        type(exc).__name__,
                        len(batch),
                        "" if self._spool is None else " (kept in the spool for the next start)",
                        "[" + ",".join(r.trace_json() for r in batch) + "]",
                    )
                    return None
                time.sleep(delay)
        return None  # pragma: no cover

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted run is written (or given up on after its retries);
        return whether that happened within ``timeout`` seconds (``None``: wait until it
        does). Runs not written in time are still written later, and stay in the spool."""
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
        """Flush, then stop the writer thread and release the spool (its files are deleted
        when every run is written; otherwise they stay for the next start)."""
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
        self._release_spool()
        return done

    def _release_spool(self) -> None:
        with self._cond:
            spool = self._spool
            if spool is not None and not self._pending:
                self._spool = None
                spool.close()

    def _forked(self) -> None:
        """In a forked child: the parent's queue, writer thread and spool files stay the
        parent's; this copy starts empty with its own spool files."""
        self._cond = threading.Condition()
        self._queue.clear()
        self._pending = 0
        self._thread = None
        self._idle = False
        if self._spool is not None:
            self._spool.after_fork()


def _flush_at_exit(ref: Callable[[], Recorder | None]) -> None:
    recorder = ref()
    if recorder is not None and not recorder.inline and recorder.flush(10.0):
        recorder._release_spool()


#: Recorders with a writer thread or a spool (reset in a forked child).
_LIVE: weakref.WeakSet[Recorder] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for recorder in list(_LIVE):
        recorder._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)

"""The crash spool: finished runs on local disk until they are in the database.

The SQL ledgers are written off the request path, in batches, by the recorder's writer
thread. So that a run whose response was completed survives a ``kill -9`` of the worker, the
recorder appends each run to this spool -- one JSON line copied into a shared memory mapping
of the spool file (``mmap``, ``MAP_SHARED``), no system call and no ``fsync`` -- before
:meth:`Recorder.submit` returns. The pages of a shared file mapping belong to the kernel's page
cache: when the process dies they are still written back to the file, exactly as an
``os.write`` would have been (which costs a system call, about 1.3 µs here, against 0.25 µs
for the copy; ``benchmarks/bench_metering.py --cpu``). The space of a segment is reserved up
front (``posix_fallocate``), so a full disk fails when a segment is created (logged), never
with a ``SIGBUS`` while writing.

The next process on the same spool directory replays the orphaned files into the ledger
(idempotent: usage events are keyed by ``(scope, event key)``, runs and traces by
``(scope, run id)``), then deletes them. A file holds its records, one per line, then zero
bytes. Once every run of a segment is in the database the segment is zeroed and reused (the
active one) or deleted (a rotated one).

Each process writes its own files (``<pid>-<random>-<n>.spool``, created 0600 in a 0700
directory) and holds an exclusive ``flock`` on each while it lives; a file is replayed only by
a process that takes that lock, so two workers sharing a directory never replay each other's
live runs, and a file is replayed by one of them only.

Limits: a power loss or kernel crash may lose what the kernel had not written back (no
``fsync``); a full disk makes the append fail (logged, the run still goes to the database
in the normal way); ``flock`` is unreliable on network file systems (keep the spool local).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import mmap
import os
import struct
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii as _quote

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.metering._records import RunRecord, Totals, UsageEvent

__all__ = ["Spool", "decode_run", "encode_run"]

logger = logging.getLogger("agenthood_mw.metering")

_SUFFIX = ".spool"
_FRESH = ".new"  # a segment being made (renamed to ``.spool`` once locked)
_VERSION = 1
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=True)
_ZERO_TOTALS = Totals()

#: A segment is rotated once it holds this many bytes (then deleted when all its runs are in).
SEGMENT_BYTES = 8 << 20


def encode_run(run: RunRecord) -> bytes:
    """One spool line (JSON, newline-terminated) holding everything :func:`decode_run` needs.
    An empty run's times are written as the hex of their 16 bytes (exact; ``repr`` of two
    floats costs more than the rest of the line)."""
    run_id, scope, agent, started, ended, status, stop, error, totals, usage, events, path = run
    if (
        not events
        and not usage
        and stop is None
        and error is None
        and type(started) is float
        and type(ended) is float
        and (status is None or type(status) is int)
        and type(run_id) is str
        and run_id.isalnum()
        and run_id.isascii()
        and totals == _ZERO_TOTALS
    ):
        # Most requests record nothing: assembled without the JSON encoder (on the request
        # path: ``bench_metering.py --cpu``). A run id of ASCII letters and digits needs no
        # JSON escaping.
        head = _HEADS.get((scope.storage_key, agent, path))
        if head is None:
            head = _head(run)
        return (
            f'[{_VERSION},"{run_id}","{_TIMES(started, ended).hex()}",0,'
            f"{'null' if status is None else status}{head}"
        ).encode()
    index = {id(ev): i for i, ev in enumerate(run.usage)}
    doc = [
        _VERSION,
        run.run_id,
        started,
        ended,
        run.status,
        run.scope.storage_key,
        run.agent,
        run.path,
        run.stop_reason,
        run.error,
        0 if run.totals == _ZERO_TOTALS else list(run.totals),
        [list(ev) for ev in run.usage],
        [index.get(id(e), -1) if isinstance(e, UsageEvent) else e for e in events],
    ]
    return (_ENCODER.encode(doc) + "\n").encode()


#: (scope key, agent, path) -> the end of an empty run's line (bounded: cleared when full).
_HEADS: dict[tuple[str, str | None, str | None], str] = {}
#: Both times of a run as 16 bytes (written in hex: exact, and cheaper than two ``repr``).
_TIMES = struct.Struct("<dd").pack
_UNTIMES = struct.Struct("<dd").unpack


def _head(run: RunRecord) -> str:
    if len(_HEADS) >= 4096:
        _HEADS.clear()
    head = _HEADS[(run.scope.storage_key, run.agent, run.path)] = (
        f",{_quote(run.scope.storage_key)},{_text(run.agent)},{_text(run.path)},"
        "null,null,0,[],[]]\n"
    )
    return head


def _untime(started: object, ended: object) -> tuple[float, float]:
    """The run's times: ``"<hex of both>", 0`` (the fast path) or two JSON numbers."""
    if isinstance(started, str) and ended == 0:
        pair: tuple[float, float] = _UNTIMES(bytes.fromhex(started))
        return pair
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (started, ended)):
        raise ValueError("not a time")
    return float(started), float(ended)  # type: ignore[arg-type]


def _text(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def decode_run(line: bytes) -> RunRecord:
    """The run of one spool line (``ValueError`` when it is not one, e.g. a torn last line)."""
    try:
        doc = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a spool record: {exc}") from None
    if not isinstance(doc, list) or len(doc) != 13 or doc[0] != _VERSION:
        raise ValueError("not a spool record of this version")
    (_, run_id, started, ended, status, key, agent, path, stop, error, totals, usage, events) = doc
    try:
        usage_events = tuple(UsageEvent(*u) for u in usage)
        trace = tuple(
            usage_events[e] if isinstance(e, int) else e
            for e in events
            if not (isinstance(e, int) and not 0 <= e < len(usage_events))
        )
        started, ended = _untime(started, ended)
        return RunRecord(
            str(run_id),
            MemoryScope.from_storage_key(key),
            agent,
            started,
            ended,
            status,
            stop,
            error,
            _ZERO_TOTALS if totals == 0 else Totals(*totals),
            usage_events,
            trace,
            path,
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a spool record: {exc}") from None


class _Segment:
    """One spool file, mapped: records from offset 0, then zero bytes up to ``capacity``."""

    __slots__ = ("capacity", "end", "fd", "keep", "map", "path", "start", "used")

    def __init__(self, path: str, fd: int, capacity: int, start: int) -> None:
        self.path, self.fd, self.capacity = path, fd, capacity
        self.map = mmap.mmap(fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.used = 0
        self.start = start  # the (0-based) number of its first run
        self.end = -1  # runs appended before this segment was rotated out (-1: active)
        self.keep = False  # holds runs the database refused: left for the next start

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


class Spool:
    """One process's spool files in ``directory`` (see the module docstring).

    Not thread-safe by itself: the recorder calls :meth:`append`, :meth:`done` and
    :meth:`keep` under its own lock, in submission order.
    """

    def __init__(self, directory: str, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = os.path.abspath(directory)
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"spool_dir: cannot create the spool directory {self.directory!r}: {exc}"
            ) from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise ValueError(f"spool_dir: the spool directory {self.directory!r} is not writable")
        self.segment_bytes = segment_bytes
        self._segments: list[_Segment] = []  # rotated ones, oldest first, then the active one
        self._active: _Segment | None = None
        self._serial = 0
        self._appended = 0  # runs appended by this process
        self._done = 0  # runs (counted in submission order) that are in the database
        self._failing = False  # the last append failed (logged once until one succeeds)

    # -- writing ------------------------------------------------------------------------------
    def _open_segment(self, size: int) -> _Segment:
        self._serial += 1
        name = f"{os.getpid()}-{os.urandom(4).hex()}-{self._serial}{_SUFFIX}"
        path = os.path.join(self.directory, name)
        # Made under a name recovery ignores, then renamed once locked: another process
        # starting meanwhile can never take (and delete) a file this one is about to use.
        fresh = path + _FRESH
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(fresh, flags, 0o600)
        except FileNotFoundError:  # removed by another process closing its spool meanwhile
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(fresh, flags, 0o600)
        capacity = max(self.segment_bytes, size)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.posix_fallocate(fd, 0, capacity)  # a full disk fails here, not as a SIGBUS
            segment = _Segment(path, fd, capacity, self._appended - 1)
        except (OSError, ValueError):
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(fresh)
            raise
        try:
            os.rename(fresh, path)
        except OSError:
            segment.close()
            with contextlib.suppress(OSError):
                os.unlink(fresh)
            raise
        self._segments.append(segment)
        self._active = segment
        return segment

    def append(self, data: bytes) -> None:
        """Append one encoded run (never raises: a failure is logged, the run goes on)."""
        self._appended += 1
        segment = self._active
        try:
            if segment is None or segment.used + len(data) > segment.capacity:
                if segment is not None:
                    segment.end = self._appended - 1
                    self._active = None
                segment = self._open_segment(len(data))
            end = segment.used + len(data)
            segment.map[segment.used : end] = data
            segment.used = end
        except (OSError, ValueError) as exc:
            if not self._failing:
                self._failing = True
                logger.error(
                    "cannot append to the metering spool in %s (%s): runs reach the ledger "
                    "but a crash before they are written loses them",
                    self.directory,
                    exc,
                )
            return
        self._failing = False

    def done(self, count: int) -> None:
        """The next ``count`` runs (in submission order) are in the database."""
        self._done += count
        self._release()

    def keep(self, count: int) -> None:
        """The next ``count`` runs could not be written: keep their segments for the next
        start (the active one is rotated out so that it is never zeroed)."""
        first = self._done
        self._done += count
        for segment in self._segments:
            end = self._appended if segment.end < 0 else segment.end
            if segment.start < first + count and end > first:
                segment.keep = True
        if self._active is not None and self._active.keep:
            self._active.end = self._appended
            self._active = None
        self._release()

    def _release(self) -> None:
        done = self._done
        while self._segments and 0 <= self._segments[0].end <= done:
            segment = self._segments.pop(0)
            self._drop(segment, unlink=not segment.keep)
        active = self._active
        if active is not None and done >= self._appended and active.used:
            # Every run is in the database: zero what was written, start again at offset 0.
            active.map[: active.used] = bytes(active.used)
            active.used = 0

    @staticmethod
    def _drop(segment: _Segment, *, unlink: bool) -> None:
        try:
            if unlink:
                os.unlink(segment.path)  # before close: the lock guards it until it is gone
        except FileNotFoundError:  # the directory was removed (a temporary one)
            pass
        except OSError:
            logger.exception("removing the metering spool %s failed", segment.path)
        segment.close()

    def close(self) -> None:
        """Release the files: those whose runs are all in the database are deleted, the
        others (a flush that timed out, a refused write) stay for the next start."""
        clean = self._done >= self._appended
        kept = False
        for segment in self._segments:
            kept = kept or segment.keep or not clean
            self._drop(segment, unlink=clean and not segment.keep)
        self._segments = []
        self._active = None
        if not kept:
            with contextlib.suppress(OSError):  # not empty: another process's files are there
                os.rmdir(self.directory)

    def after_fork(self) -> None:
        """In a forked child: the parent's files stay the parent's (this copy of their
        descriptors is closed, so the parent's death releases their locks)."""
        for segment in self._segments:
            with contextlib.suppress(OSError, ValueError):
                segment.close()  # this process's mapping and descriptor only
        self._segments = []
        self._active = None
        self._appended = self._done = 0

    # -- recovery -----------------------------------------------------------------------------
    def orphans(self) -> Iterator[tuple[str, list[RunRecord], _Claim]]:
        """Files of dead processes, each locked for the caller: ``(path, runs, claim)``.
        Call ``claim.release(replayed)`` when done (``True`` deletes the file)."""
        try:
            names = sorted(
                n for n in os.listdir(self.directory) if n.endswith((_SUFFIX, _SUFFIX + _FRESH))
            )
        except OSError:
            logger.exception("cannot list the metering spool %s", self.directory)
            return
        for name in names:
            path = os.path.join(self.directory, name)
            if name.endswith(_FRESH):  # a process died while making it: it holds no run
                claim = _Claim.take(path)
                if claim is not None:
                    claim.release(True)
                continue
            claim = _Claim.take(path)
            if claim is None:
                continue  # a live process owns it, or it is already gone
            try:
                runs = claim.read()
            except OSError:
                logger.exception("cannot read the metering spool %s", path)
                claim.release(False)
                continue
            yield path, runs, claim


class _Claim:
    """An orphaned spool file, locked by this process."""

    def __init__(self, path: str, fd: int) -> None:
        self.path, self.fd = path, fd

    @classmethod
    def take(cls, path: str) -> _Claim | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Another process may have replayed and removed it between our open and lock.
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise FileNotFoundError(path)
        except OSError:
            os.close(fd)
            return None
        return cls(path, fd)

    def read(self) -> list[RunRecord]:
        chunks = []
        while chunk := os.read(self.fd, 1 << 20):
            chunks.append(chunk)
        runs = []
        records = b"".join(chunks).split(b"\0", 1)[0]  # the zero bytes after the last record
        for number, line in enumerate(records.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                runs.append(decode_run(line))
            except ValueError as exc:  # a torn last line: its response never completed
                logger.warning("metering spool %s line %d skipped: %s", self.path, number, exc)
        return runs

    def release(self, replayed: bool) -> None:
        if replayed:
            try:
                os.unlink(self.path)
            except OSError:
                logger.exception("removing the replayed metering spool %s failed", self.path)
        os.close(self.fd)

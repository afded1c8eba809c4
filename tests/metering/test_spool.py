"""The crash spool and the recorder's flush: what is submitted survives the process, once."""

from __future__ import annotations

import os
import stat
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.metering import Meter, PriceTable, SQLiteLedger
from agenthood_mw.metering._recorder import Recorder
from agenthood_mw.metering._records import RunRecord
from agenthood_mw.metering._spool import Spool, decode_run, encode_run
from agenthood_mw.metering._traces import SQLiteTraceStore

from .conftest import PRICES

ALICE = MemoryScope.operator(user="alice", tenant="acme")


def make_run(i: int, *, calls: int = 1, scope: MemoryScope = ALICE, **extra: Any) -> RunRecord:
    meter = Meter(prices=PriceTable(PRICES), scope=scope, agent="dev", path="/agents/dev/run")
    for j in range(calls):
        meter.record(model="gpt-4o", input_tokens=1000 + i, output_tokens=j)
    meter.step("plan", n=i)
    meter.tool_call("search", arguments={"q": "x\ny"}, result=[1, 2])
    if extra.get("error"):
        meter.record_error(RuntimeError(extra["error"]))
    return meter.finish(status=extra.get("status", 200))


def spool_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.spool")) if directory.exists() else []


def test_a_run_survives_the_spool_encoding_exactly() -> None:
    runs = [
        make_run(1),
        make_run(2, calls=3, error="boom \u2028 é", status=None),
        Meter(prices=PriceTable(PRICES), scope=ALICE).finish(),  # the common empty run
        Meter(prices=PriceTable(PRICES), scope=MemoryScope.operator(user="b/%")).finish(status=7),
    ]
    for run in runs:
        line = encode_run(run)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        back = decode_run(line)
        assert back == run
        assert back.trace() == run.trace()


@settings(max_examples=60, deadline=None)
@given(
    agent=st.text(min_size=1, max_size=20),
    error=st.text(max_size=40),
    path=st.none() | st.text(max_size=20),
    user=st.from_regex(r"[A-Za-z0-9%/:._é\-]{1,10}", fullmatch=True),
)
def test_any_text_round_trips_on_one_line(agent: str, error: str, path: Any, user: str) -> None:
    scope = MemoryScope.operator(user=user, tenant="t")
    meter = Meter(prices=PriceTable(PRICES), scope=scope, agent=agent, path=path)
    meter.record(model="tiny", input_tokens=3, output_tokens=1, idempotency_key=error or "k")
    if error:
        meter.record_error(error)
    run = meter.finish(status=200)
    line = encode_run(run)
    assert line.count(b"\n") == 1
    assert decode_run(line) == run


def test_torn_or_foreign_lines_are_refused() -> None:
    line = encode_run(make_run(1))
    for bad in (line[: len(line) // 2], b"[2]", b"{}", b"\xff\xfe", b"[1,2,3]"):
        with pytest.raises(ValueError, match="spool record"):
            decode_run(bad)


def test_spool_files_are_private_truncated_when_written_and_removed_on_close(
    tmp_path: Path,
) -> None:
    ledger = SQLiteLedger(str(tmp_path / "costs.db"))
    spool_dir = tmp_path / "costs.db.spool"
    assert ledger.spool_dir == str(spool_dir)
    recorder = Recorder(ledger, None, None, None)
    recorder.submit(make_run(1))
    (path,) = spool_files(spool_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(spool_dir.stat().st_mode) == 0o700
    assert path.name.startswith(f"{os.getpid()}-")
    assert recorder.flush() is True
    assert not path.read_bytes().strip(b"\0")  # every run is in the database: nothing to replay
    assert recorder.close() is True
    assert spool_files(spool_dir) == []
    ledger.close_sync()


class _GatedLedger(SQLiteLedger):
    """A SQLite ledger whose writes wait for ``gate`` (or fail while ``fail`` is set)."""

    def __init__(self, path: str, **kw: Any) -> None:
        super().__init__(path, **kw)
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def write_usage(self, runs: Any) -> list[tuple[int, ...]]:
        self.gate.wait()
        if self.fail:
            raise ConnectionError("database down")
        return super().write_usage(runs)


def test_flush_honours_its_timeout_and_says_whether_it_finished(tmp_path: Path) -> None:
    ledger = _GatedLedger(str(tmp_path / "costs.db"))
    recorder = Recorder(ledger, None, None, None)
    ledger.gate.clear()
    recorder.submit(make_run(1))
    assert recorder.flush(0.2) is False  # the write is stuck: flush says so
    ledger.gate.set()
    assert recorder.flush() is True  # None: waits until every run is written
    assert recorder.close() is True
    ledger.close_sync()


def test_runs_the_database_refused_stay_in_the_spool_and_are_replayed_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agenthood_mw.metering._recorder._RETRY_DELAYS", (0.0,))
    db = str(tmp_path / "costs.db")
    down = _GatedLedger(db)
    down.fail = True
    recorder = Recorder(down, None, None, None)
    runs = [make_run(i) for i in range(5)]
    for run in runs:
        recorder.submit(run)
    assert recorder.flush() is True  # given up on after its retries...
    assert recorder.lost == 5
    recorder.close()
    assert len(spool_files(tmp_path / "costs.db.spool")) == 1  # ...but kept on disk
    down.close_sync()

    ledger = SQLiteLedger(db)
    restarted = Recorder(ledger, SQLiteTraceStore(db), None, None)
    assert restarted.recovered == 5
    assert spool_files(tmp_path / "costs.db.spool") == []
    spend = ledger.spend_between("user", ALICE.storage_key, 0, float("inf"))
    assert spend == sum(r.totals.cost_nanos for r in runs)
    restarted.close()
    ledger.close_sync()


def test_orphans_are_replayed_once_and_live_spools_are_left_alone(tmp_path: Path) -> None:
    db = str(tmp_path / "costs.db")
    spool_dir = tmp_path / "costs.db.spool"
    # A "dead" process: its runs were appended, never written, and its lock is gone.
    dead = Spool(str(spool_dir))
    runs = [make_run(i, calls=2) for i in range(20)]
    for run in runs:
        dead.append(encode_run(run))
    dead.append(encode_run(make_run(99))[:40])  # torn last line: that response never completed
    for segment in dead._segments:
        segment.close()  # what the kernel does when the process is killed
    dead._segments = []
    # A live process on the same directory: its file is locked and must not be touched.
    live = Spool(str(spool_dir))
    live.append(encode_run(make_run(500)))

    ledger = SQLiteLedger(db)
    recorder = Recorder(ledger, None, None, None)
    assert recorder.recovered == 20
    second = Recorder(ledger, None, None, None)  # another restart finds nothing more to do
    assert second.recovered == 0
    expected = sum(r.totals.cost_nanos for r in runs)
    assert ledger.spend_between("user", ALICE.storage_key, 0, float("inf")) == expected
    assert len(spool_files(spool_dir)) == 1  # the live one
    live.done(1)
    live.close()
    for r in (recorder, second):
        r.close()
    ledger.close_sync()
    assert spool_files(spool_dir) == []


def test_segments_rotate_and_are_deleted_once_written(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "s"), segment_bytes=2000)
    lines = [encode_run(make_run(i)) for i in range(12)]
    for line in lines:
        spool.append(line)
    files = spool_files(tmp_path / "s")
    assert len(files) > 2
    spool.done(6)
    remaining = spool_files(tmp_path / "s")
    assert 0 < len(remaining) < len(files)
    kept = sum(len(p.read_bytes().splitlines()) for p in remaining)
    assert kept >= 6  # every run not yet written is still on disk
    spool.done(6)
    (active,) = spool_files(tmp_path / "s")
    assert not active.read_bytes().strip(b"\0")  # zeroed, to be reused
    spool.close()
    assert not (tmp_path / "s").exists()


def test_spool_dir_option(tmp_path: Path) -> None:
    from agenthood_mw.metering import ledger_from_url

    custom = tmp_path / "elsewhere"
    led = ledger_from_url(f"sqlite:///{tmp_path}/c.db?spool_dir={custom}")
    assert led.spool_dir == str(custom)
    led.close_sync()
    off = ledger_from_url(f"sqlite:///{tmp_path}/c.db?spool_dir=off")
    assert off.spool_dir is None
    off.close_sync()
    assert SQLiteLedger(":memory:").spool_dir is None
    with pytest.raises(TypeError, match="spool_dir"):
        SQLiteLedger(str(tmp_path / "d.db"), spool_dir=42)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="spool_dir"):
        Recorder(
            SQLiteLedger(str(tmp_path / "e.db"), spool_dir=str(blocker / "x")), None, None, None
        )


def test_postgres_default_spool_is_per_database(
    postgres_dsn: str, postgres_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agenthood_mw.metering import PostgresLedger

    monkeypatch.setenv("AGENTHOOD_SPOOL_DIR", str(tmp_path))
    a = PostgresLedger(postgres_dsn, schema=postgres_schema)
    b = PostgresLedger(postgres_dsn, schema=postgres_schema, table_prefix="other_")
    assert a.spool_dir is not None and b.spool_dir is not None
    assert Path(a.spool_dir).parent == tmp_path and a.spool_dir != b.spool_dir
    recorder = Recorder(a, None, None, None)
    run = make_run(1)
    recorder.submit(run)
    assert recorder.flush() is True
    assert recorder.close() is True
    assert a.spend_between("user", ALICE.storage_key, 0, float("inf")) == run.totals.cost_nanos
    for led in (a, b):
        led.close_sync()
    assert Decimal(run.totals.cost_text) > 0


def test_a_full_disk_is_logged_once_and_the_runs_still_reach_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import errno

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    ledger = SQLiteLedger(str(tmp_path / "costs.db"))
    recorder = Recorder(ledger, None, None, None)
    monkeypatch.setattr(os, "posix_fallocate", no_space)  # the disk fills up
    runs = [make_run(i) for i in range(3)]
    with caplog.at_level("ERROR", logger="agenthood_mw.metering"):
        for run in runs:
            recorder.submit(run)
    errors = [r for r in caplog.records if "cannot append to the metering spool" in r.message]
    assert len(errors) == 1  # once, not per request
    assert spool_files(tmp_path / "costs.db.spool") == []  # no half-made file
    assert recorder.flush() is True
    spend = ledger.spend_between("user", ALICE.storage_key, 0, float("inf"))
    assert spend == sum(r.totals.cost_nanos for r in runs)
    recorder.close()
    ledger.close_sync()


def test_flush_waits_for_every_usage_row_on_postgres(
    postgres_dsn: str, postgres_schema: str, tmp_path: Path
) -> None:
    """Issue 11 #12: after ``flush()`` the ledger holds every row submitted before it."""
    from agenthood_mw.metering import PostgresLedger, PostgresTraceStore

    ledger = PostgresLedger(postgres_dsn, schema=postgres_schema, spool_dir=str(tmp_path))
    traces = PostgresTraceStore(postgres_dsn, schema=postgres_schema)
    recorder = Recorder(ledger, traces, None, None)
    runs = [make_run(i, calls=4) for i in range(2500)]  # 10 000 usage rows
    for run in runs:
        recorder.submit(run)
    assert recorder.flush() is True
    spend = ledger.spend_between("user", ALICE.storage_key, 0, float("inf"))
    assert spend == sum(r.totals.cost_nanos for r in runs)
    assert len(ledger._user_events(ALICE.storage_key, None, None, 100_000)) == 10_000
    recorder.close()
    ledger.close_sync()
    traces.close_sync()


def test_a_forked_child_spools_to_its_own_file(tmp_path: Path) -> None:
    """gunicorn --preload: the parent's spool stays the parent's, the child writes its own,
    and what a killed child spooled is replayed at the next start."""
    ledger = _GatedLedger(str(tmp_path / "costs.db"))
    recorder = Recorder(ledger, None, None, None)
    recorder.submit(make_run(1))
    assert recorder.flush() is True
    (parent_file,) = spool_files(tmp_path / "costs.db.spool")
    pid = os.fork()
    if pid == 0:  # the child: its writes never reach the database; it dies with them spooled
        code = 1
        try:
            ledger.gate.clear()
            recorder.submit(make_run(2))
            code = 0 if len(spool_files(tmp_path / "costs.db.spool")) == 2 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent_file in spool_files(tmp_path / "costs.db.spool")
    restarted = Recorder(ledger, None, None, None)
    assert restarted.recovered == 1  # the child's run; the parent's live file is left alone
    assert spool_files(tmp_path / "costs.db.spool") == [parent_file]
    assert ledger.spend_between("user", ALICE.storage_key, 0, float("inf")) == sum(
        make_run(i).totals.cost_nanos for i in (1, 2)
    )
    for r in (recorder, restarted):
        r.close()
    ledger.close_sync()


def test_a_segment_being_made_is_never_taken_and_a_dead_ones_leftover_is_removed(
    tmp_path: Path,
) -> None:
    spool_dir = tmp_path / "costs.db.spool"
    spool_dir.mkdir(mode=0o700)
    leftover = spool_dir / "1-dead-1.spool.new"  # a process died between open and rename
    leftover.write_bytes(b"")
    ledger = SQLiteLedger(str(tmp_path / "costs.db"))
    recorder = Recorder(ledger, None, None, None)
    assert not leftover.exists() and recorder.recovered == 0
    recorder.submit(make_run(1))
    names = [p.name for p in spool_dir.iterdir()]
    assert len(names) == 1 and names[0].endswith(".spool")  # renamed once locked
    recorder.close()
    ledger.close_sync()

"""Faults on SQLite, made for real: writers in several processes on one file, a write lock held
past the bound, a processor killed while holding the write lock. What they prove is
docs/failures.md."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
import pytest_twisted
import sqlalchemy as sa

from crashdb.backends import sqlite as sqliteBackend
from crashdb.connector import DBConnector
from crashdb.exceptions import DatabaseUnavailableError
from crashdb.partitions import WEEK, partitionName
from crashdb.pool import RETRY_WINDOW
from crashdb.test.util import faults
from crashdb.test.util.db import upgradeUrl
from crashdb.test.util.faults import FIRST_WEEK, inThread, report

PROCESSES = 4
CALLS = 150  # per process, half reports and half raw crashes


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'crashdb.sqlite'}"
    upgradeUrl(url)
    return url


def stored(url: str) -> tuple[dict, dict]:
    """Reports ``{uuid: (rows, extensions)}`` and raw crashes ``{uuid: rows}``, all weeks."""
    engine = sa.create_engine(url)
    reports: dict = {}
    raw: dict = {}
    try:
        for week in range(3):
            monday = FIRST_WEEK + WEEK * week
            reports.update(faults.storedReports(
                engine, partitionName("reports", monday), partitionName("extensions", monday)))
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    f"SELECT uuid, count(*) FROM {partitionName('raw_crashes', monday)}"
                    " GROUP BY uuid")
                raw.update(dict(rows.all()))
    finally:
        engine.dispose()
    return reports, raw


def test_writers_in_several_processes_never_see_the_file_locked(url):
    workers = [faults.spawn("writer", url, f"p{i}", str(CALLS)) for i in range(PROCESSES)]
    try:
        for worker in workers:
            assert "ready" in faults.readMessage(worker)
        for worker in workers:  # all at once, so that they contend for the write lock
            worker.stdin.write("go\n")
            worker.stdin.flush()
        summaries = [faults.readMessage(worker) for worker in workers]
        assert [worker.wait(timeout=60) for worker in workers] == [0] * PROCESSES
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()

    for summary in summaries:
        assert summary["calls"] == CALLS
        assert summary["failures"] == [], summary["failures"][:3]
        # the documented bound: the retry window plus one wait for the lock
        assert summary["slowest"] < RETRY_WINDOW + sqliteBackend.BUSY_TIMEOUT_MS / 1000
    reports, raw = stored(url)
    expected = {f"p{p}-{n}" for p in range(PROCESSES) for n in range(CALLS)}
    assert set(reports) | set(raw) == expected and not set(reports) & set(raw)
    assert all(counts == (1, 2) for counts in reports.values()), "a report stored twice"
    assert all(count == 1 for count in raw.values())
    assert len(reports) == len(raw) == PROCESSES * CALLS // 2


def holdWriteLock(path: str, seconds: float) -> threading.Thread:
    """Another connection holds the write lock for ``seconds``, as a busy writer would."""
    held = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=hold, name="lock-holder")
    thread.start()
    held.wait(5)
    return thread


@pytest_twisted.inlineCallbacks
def test_a_write_lock_held_past_the_bound_fails_clearly_and_briefer_ones_wait(
    url, monkeypatch
):
    monkeypatch.setattr(sqliteBackend, "BUSY_TIMEOUT_MS", 300)  # to keep the test short
    db = DBConnector(url)
    db.pool.retryWindow = 1.0
    path = sa.make_url(url).database
    try:
        yield db.partitions.ensureWeek(FIRST_WEEK)
        holder = holdWriteLock(path, 0.8)  # shorter than window + busy timeout: waited out
        yield db.reports.addReport(report("waited", FIRST_WEEK))
        yield inThread(holder.join)

        holder = holdWriteLock(path, 4)  # longer: a clear error within the bound
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match="database is locked") as info:
            yield db.reports.addReport(report("refused", FIRST_WEEK))
        elapsed = time.monotonic() - started
        assert db.pool.retryWindow <= elapsed < db.pool.retryWindow + 0.3 + 2
        assert "gave up after" in str(info.value)
        yield inThread(holder.join)

        yield db.reports.addReport(report("after", FIRST_WEEK))  # the connector carries on
        assert (yield db.reports.getReport("refused")) is None
        assert (yield db.reports.countReports()) == 2
    finally:
        yield db.stop()


@pytest_twisted.inlineCallbacks
def test_a_processor_killed_holding_the_write_lock_loses_and_repeats_no_job(url):
    outcome = yield faults.killProcessorThenRescue(url)
    faults.checkRescue(outcome)

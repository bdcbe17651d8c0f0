"""Faults on PostgreSQL, made for real: the server crashed mid-ingest, sessions terminated
between and during calls, a connection lost before and during COMMIT.

These tests run a PostgreSQL server of their own (:func:`faults.crashableServer`, with
``synchronous_commit = on``) because they crash it. What they prove is docs/failures.md.
"""

from __future__ import annotations

import logging
import time

import psycopg2
import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from crashdb.connector import DBConnector
from crashdb.exceptions import CommitOutcomeUnknownError, CrashDBError, DatabaseUnavailableError
from crashdb.test.util import faults
from crashdb.test.util.faults import FIRST_WEEK, Ingest, inThread, report, sleep


@pytest.fixture(scope="module")
def server():
    server = faults.crashableServer()
    yield server
    server.cleanup()


@pytest.fixture
def url(server):
    """A migrated database of its own on the crashable server."""
    with faults.migratedDatabase(server, "faults") as url:
        yield url


@pytest.fixture
def admin(url):
    engine = faults.adminEngine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def connectors():
    """Makes DBConnectors that are stopped after the test, whatever happened."""
    made: list[DBConnector] = []

    def make(url: str, threads: int = 4) -> DBConnector:
        made.append(DBConnector(url, threads=threads))
        return made[-1]

    yield make
    for db in made:
        pytest_twisted.blockon(db.stop())


def retries(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "crashdb.pool" and "retrying" in r.msg]


def assertStoredOnce(stored: dict, uuids) -> None:
    missing = [u for u in uuids if u not in stored]
    assert not missing, f"{len(missing)} acknowledged reports lost, e.g. {missing[:3]}"
    wrong = {u: stored[u] for u in uuids if stored[u] != (1, 2)}
    assert not wrong, f"reports stored other than once with their 2 extensions: {wrong}"


def assertOnlyClearErrors(load: Ingest) -> None:
    errors = [c.error for c in load.calls if c.error is not None]
    unclear = [e for e in errors if not isinstance(e, DatabaseUnavailableError)]
    assert not unclear, f"callers saw errors other than DatabaseUnavailableError: {unclear[:3]}"


@pytest_twisted.inlineCallbacks
def test_server_crash_mid_ingest_keeps_every_acknowledged_write_exactly_once(
    server, url, admin, connectors, caplog
):
    db = connectors(url, threads=4)
    yield db.setup()
    load = Ingest(db, writers=6)
    load.start()
    yield sleep(1.5)
    crashing = time.monotonic()
    yield inThread(server.crash)  # pg_ctl stop -m immediate
    crashed = time.monotonic()
    yield sleep(3)
    restarting = time.monotonic()
    yield inThread(server.start)  # crash recovery, same port
    restarted = time.monotonic()
    yield sleep(2)
    yield load.stop(timeout=30)  # a hung call would time out here

    assert load.inFlightAt(crashing), "the crash hit no call in flight"
    assert retries(caplog), "the pool never had to retry: the crash went unnoticed"
    assertOnlyClearErrors(load)
    bound = db.pool.retryWindow + 5
    slow = [c for c in load.calls if c.duration > bound]
    assert not slow, f"calls took longer than {bound}s: {[c.duration for c in slow]}"
    during = [c for c in load.calls if crashed < c.started < restarting]
    for call in during:  # waited for the restart, or failed clearly
        assert call.error is not None or call.finished >= restarting
    after = [c for c in load.calls if c.started > restarted and c.acknowledged]
    assert len(after) > 10, "the same connector did not carry on after the restart"

    stored = yield inThread(faults.storedReports, admin)
    assertStoredOnce(stored, load.uuids(lambda c: c.acknowledged))
    refused = load.uuids(lambda c: type(c.error) is DatabaseUnavailableError)
    assert not set(refused) & set(stored), "a call reported as not written was written"
    assert set(stored) <= set(load.uuids())

    yield load.resendFailures()  # what a caller told "may be sent again" does
    stored = yield inThread(faults.storedReports, admin)
    assert set(stored) == set(load.uuids())
    assertStoredOnce(stored, load.uuids())


@pytest_twisted.inlineCallbacks
def test_calls_during_a_long_outage_fail_clearly_within_the_bound(
    server, url, admin, connectors
):
    db = connectors(url, threads=2)
    db.pool.retryWindow = 1.0
    yield db.reports.addReport(report("before", FIRST_WEEK))
    yield inThread(server.crash)

    started = time.monotonic()
    queued = [db.reports.addReport(report(f"outage-{i}", FIRST_WEEK)) for i in range(20)]
    results = yield defer.DeferredList(queued, consumeErrors=True)
    elapsed = time.monotonic() - started
    errors = [failure.value for ok, failure in results if not ok]
    assert len(errors) == 20
    assert all(type(e) is DatabaseUnavailableError for e in errors), errors[:3]
    assert "database unavailable" in str(errors[0]) and "refused" in str(errors[0])
    # the window counts from each call, so 20 calls on 2 threads do not take 10 windows
    assert elapsed < db.pool.retryWindow + 3
    with pytest.raises(DatabaseUnavailableError):
        yield db.reports.getReport("before")

    yield inThread(server.start)
    assert (yield db.reports.getReport("before"))["uuid"] == "before"
    yield db.reports.addReport(report("after", FIRST_WEEK))
    stored = yield inThread(faults.storedReports, admin)
    assert stored == {"before": (1, 2), "after": (1, 2)}


@pytest_twisted.inlineCallbacks
def test_stop_during_an_outage_ends_in_flight_calls_and_threads(server, url, connectors):
    others = set(faults.crashdbThreads())
    db = connectors(url, threads=3)
    db.pool.retryWindow = 1.5
    yield db.reports.addReport(report("before", FIRST_WEEK))
    yield inThread(server.crash)
    calls = [db.reports.addReport(report(f"outage-{i}", FIRST_WEEK)) for i in range(6)]
    started = time.monotonic()
    yield db.stop()
    assert time.monotonic() - started < db.pool.retryWindow + 3
    results = yield defer.DeferredList(calls, consumeErrors=True)
    assert all(not ok and isinstance(f.value, DatabaseUnavailableError) for ok, f in results)
    assert set(faults.crashdbThreads()) <= others
    with pytest.raises(CrashDBError, match="stopped"):
        yield db.reports.addReport(report("late", FIRST_WEEK))


@pytest_twisted.inlineCallbacks
def test_sessions_terminated_between_calls_are_replaced_silently(url, admin, connectors):
    db = connectors(url, threads=4)
    first = [report(f"first-{i}", FIRST_WEEK) for i in range(8)]
    yield defer.gatherResults([db.reports.addReport(r) for r in first])
    assert (yield inThread(faults.countCrashdbBackends, admin, sa.make_url(url).database)) >= 2

    killed = yield inThread(faults.terminateCrashdbBackends, admin, sa.make_url(url).database)
    assert killed >= 2
    yield faults.waitFor(
        lambda: faults.countCrashdbBackends(admin, sa.make_url(url).database) == 0,
        5, "the terminated sessions to go")

    second = [report(f"second-{i}", FIRST_WEEK) for i in range(8)]
    yield defer.gatherResults([db.reports.addReport(r) for r in second])  # no error
    assert (yield db.reports.countReports()) == 16
    stored = yield inThread(faults.storedReports, admin)
    assertStoredOnce(stored, [r["uuid"] for r in first + second])


@pytest_twisted.inlineCallbacks
def test_sessions_terminated_during_ingest_lose_and_double_nothing(
    url, admin, connectors, caplog
):
    db = connectors(url, threads=4)
    database = sa.make_url(url).database
    load = Ingest(db, writers=6)
    load.start()
    killed = rounds = 0
    # 30 rounds of terminations 0.1 s apart, more while fewer than 21 calls were acknowledged
    # (a loaded machine gets through fewer in 3 s), for at most a minute
    deadline = time.monotonic() + 60
    while rounds < 30 or (sum(c.acknowledged for c in load.calls) <= 20
                          and time.monotonic() < deadline):
        yield sleep(0.1)
        killed += yield inThread(faults.terminateCrashdbBackends, admin, database)
        rounds += 1
    yield load.stop(timeout=30)

    assert killed >= 10
    assert retries(caplog), "no termination hit a call in flight"
    assertOnlyClearErrors(load)
    assert sum(c.acknowledged for c in load.calls) > 20
    stored = yield inThread(faults.storedReports, admin)
    assertStoredOnce(stored, load.uuids(lambda c: c.acknowledged))
    refused = load.uuids(lambda c: type(c.error) is DatabaseUnavailableError)
    assert not set(refused) & set(stored)

    yield load.resendFailures()
    stored = yield inThread(faults.storedReports, admin)
    assert set(stored) == set(load.uuids())
    assertStoredOnce(stored, load.uuids())


def countTransactions(engine: sa.Engine) -> list[int]:
    """A one-element list counting the transactions begun on ``engine`` from now on."""
    begun = [0]

    @sa.event.listens_for(engine, "begin")
    def onBegin(conn):
        begun[0] += 1

    return begun


@pytest_twisted.inlineCallbacks
def test_a_connection_lost_before_commit_is_retried_and_stores_once(url, admin, connectors):
    db = connectors(url)
    yield db.partitions.ensureWeek(FIRST_WEEK)
    killed = []

    @sa.event.listens_for(db.engine, "before_cursor_execute")
    def killOnFirstInsert(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO reports_") and not killed:
            killed.append(faults.backendPid(conn))
            faults.terminateBackend(admin, killed[0])  # the INSERT now meets a dead session

    begun = countTransactions(db.engine)
    reportid = yield db.reports.addReport(report("retried", FIRST_WEEK))
    assert killed and begun[0] == 2  # the whole transaction ran again
    stored = yield inThread(faults.storedReports, admin)
    assert stored == {"retried": (1, 2)}
    assert (yield db.reports.getReport("retried"))["id"] == reportid


@pytest.mark.parametrize("committed", [False, True], ids=["before-server-commit", "ack-lost"])
@pytest_twisted.inlineCallbacks
def test_a_connection_lost_during_commit_is_not_retried(
    url, admin, connectors, monkeypatch, committed
):
    """The outcome is unknown, so the pool must not run the call again; the caller learns so,
    and sending the same write again stores it exactly once either way."""
    db = connectors(url)
    yield db.partitions.ensureWeek(FIRST_WEEK)
    dialect = db.engine.dialect
    realCommit = dialect.do_commit
    broken = []

    def commitThenLoseConnection(connection):
        pid = connection.dbapi_connection.get_backend_pid()
        broken.append(pid)
        if not committed:  # the session dies before the server sees COMMIT
            faults.terminateBackend(admin, pid)
            realCommit(connection)
        else:  # COMMIT is done, but the answer never arrives
            realCommit(connection)
            faults.terminateBackend(admin, pid)
            raise psycopg2.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(dialect, "do_commit", commitThenLoseConnection)
    begun = countTransactions(db.engine)
    with pytest.raises(CommitOutcomeUnknownError) as info:
        yield db.reports.addReport(report("ambiguous", FIRST_WEEK))
    assert begun[0] == 1 and len(broken) == 1, "a call was retried after COMMIT was sent"
    assert "may be sent again" in str(info.value)
    monkeypatch.setattr(dialect, "do_commit", realCommit)

    stored = yield inThread(faults.storedReports, admin)
    assert stored == ({"ambiguous": (1, 2)} if committed else {})
    reportid = yield db.reports.addReport(report("ambiguous", FIRST_WEEK))  # sent again
    stored = yield inThread(faults.storedReports, admin)
    assert stored == {"ambiguous": (1, 2)}
    assert (yield db.reports.getReport("ambiguous"))["id"] == reportid


@pytest_twisted.inlineCallbacks
def test_a_processor_killed_holding_row_locks_loses_and_repeats_no_job(url):
    """SIGKILLed with a batch claimed, inside a transaction holding its jobs' row locks: the
    server rolls it back, expiry releases its claims, and a ProcessorService finishes every
    other job exactly once."""
    outcome = yield faults.killProcessorThenRescue(url)
    faults.checkRescue(outcome)

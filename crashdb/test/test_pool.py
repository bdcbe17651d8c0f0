"""The pool's contract: a transaction per call, retries only where nothing can have committed,
bounded waiting, and a stop that leaves no thread or connection behind."""

from __future__ import annotations

import queue
import sqlite3
import threading
import time

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from crashdb.backends import SQLiteBackend, createEngine
from crashdb.connector import DBConnector
from crashdb.exceptions import (
    CommitOutcomeUnknownError,
    CrashDBError,
    DatabaseUnavailableError,
    RetryAfterRepair,
)
from crashdb.pool import MAX_REPAIRS, DBThreadPool, SynchronousDBPool
from crashdb.test.util import faults

LOCKED = "database is locked"


def sqliteError(message: str) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))


@pytest.fixture
def engine(tmp_path):
    engine, backend, _ = createEngine(f"sqlite:///{tmp_path / 'pool.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    yield engine
    engine.dispose()


def rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql("SELECT id, v FROM t ORDER BY id")]


@pytest.fixture(params=["threaded", "synchronous"])
def pool(request, engine):
    """Both pools honour the same contract."""
    if request.param == "threaded":
        pool = DBThreadPool(engine, SQLiteBackend(engine), 2)
    else:
        pool = SynchronousDBPool(engine, SQLiteBackend(engine))
    yield pool
    pytest_twisted.blockon(pool.stop())


def insert(conn, value="x", id=1):
    conn.exec_driver_sql("INSERT INTO t (id, v) VALUES (?, ?)", (id, value))
    return id


@pytest_twisted.inlineCallbacks
def test_the_transaction_commits_when_thd_returns(pool, engine):
    assert (yield pool.do(insert, "kept")) == 1
    assert rows(engine) == [(1, "kept")]


@pytest_twisted.inlineCallbacks
def test_the_transaction_rolls_back_when_thd_raises(pool, engine):
    def insertThenFail(conn):
        insert(conn)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        yield pool.do(insertThenFail)
    assert rows(engine) == []


class Flaky:
    """A thd that raises ``errors`` one per run, then inserts; counts its runs."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.runs = 0

    def __call__(self, conn):
        self.runs += 1
        insert(conn, f"run {self.runs}")
        if self.errors:
            raise self.errors.pop(0)
        return self.runs


@pytest_twisted.inlineCallbacks
def test_a_transient_error_before_commit_is_retried(pool, engine):
    thd = Flaky(sqliteError(LOCKED), sqliteError(LOCKED))
    assert (yield pool.do(thd)) == 3
    assert rows(engine) == [(1, "run 3")]  # the failed runs left nothing


@pytest_twisted.inlineCallbacks
def test_a_real_error_is_not_retried(pool, engine):
    yield pool.do(insert)
    thd = Flaky()
    with pytest.raises(sa.exc.IntegrityError):  # the database's own words
        yield pool.do(thd)
    assert thd.runs == 1


@pytest_twisted.inlineCallbacks
def test_retrying_gives_up_clearly_after_the_window(pool, engine):
    pool.retryWindow = 0.5
    thd = Flaky(*[sqliteError(LOCKED)] * 1000)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError, match="database is locked") as info:
        yield pool.do(thd)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 3
    assert 3 <= thd.runs < 15
    assert "gave up after" in str(info.value)
    assert isinstance(info.value.__cause__, sa.exc.OperationalError)
    assert rows(engine) == []


@pytest_twisted.inlineCallbacks
def test_a_connection_lost_inside_thd_is_retried(pool, engine):
    """A thd that swallows a disconnect (or raises something else because of it) leaves no
    transaction to commit; the pool runs it again."""
    runs = []

    def thd(conn):
        runs.append(1)
        insert(conn)
        if len(runs) == 1:
            conn.invalidate()
        return len(runs)

    assert (yield pool.do(thd)) == 2
    assert rows(engine) == [(1, "x")]


class LosingStrategy(SQLiteBackend):
    """SQLite standing in for a server: "connection lost" is a disconnect."""

    def isConnectionLost(self, error):
        return "connection lost" in str(error.orig)

    def isRetryable(self, error):
        return self.isConnectionLost(error) or super().isRetryable(error)


def breakCommit(monkeypatch, engine, message, commitFirst: bool, times: int = 1):
    """Make the next ``times`` COMMITs raise ``message`` (after committing, if asked)."""
    dialect = engine.dialect
    real = dialect.do_commit
    left = [times]

    def commit(connection):
        if left[0] <= 0:
            return real(connection)
        left[0] -= 1
        if commitFirst:
            real(connection)
        raise sqlite3.OperationalError(message)

    monkeypatch.setattr(dialect, "do_commit", commit)


@pytest.mark.parametrize("commitFirst", [False, True])
@pytest_twisted.inlineCallbacks
def test_a_connection_lost_during_commit_is_never_retried(engine, monkeypatch, commitFirst):
    pool = SynchronousDBPool(engine, LosingStrategy(engine))
    breakCommit(monkeypatch, engine, "connection lost", commitFirst)
    thd = Flaky()
    with pytest.raises(CommitOutcomeUnknownError, match="may be sent again"):
        yield pool.do(thd)
    assert thd.runs == 1
    assert rows(engine) == ([(1, "run 1")] if commitFirst else [])


@pytest_twisted.inlineCallbacks
def test_a_commit_the_database_refused_is_retried(engine, monkeypatch):
    """An answer to COMMIT saying it failed (here SQLite's busy lock) means rolled back."""
    pool = SynchronousDBPool(engine, LosingStrategy(engine))
    breakCommit(monkeypatch, engine, LOCKED, commitFirst=False)
    thd = Flaky()
    assert (yield pool.do(thd)) == 2
    assert rows(engine) == [(1, "run 2")]


@pytest_twisted.inlineCallbacks
def test_retry_after_repair_repairs_then_runs_again(pool, engine):
    repaired = []
    thd = Flaky(RetryAfterRepair("missing", repaired.append))
    assert (yield pool.do(thd)) == 2
    assert repaired == [engine] and rows(engine) == [(1, "run 2")]


@pytest_twisted.inlineCallbacks
def test_retry_after_repair_is_bounded(pool, engine):
    repaired = []

    def thd(conn):
        raise RetryAfterRepair("never fixed", repaired.append)

    with pytest.raises(CrashDBError, match=f"gave up after repairing {MAX_REPAIRS} times"):
        yield pool.do(thd)
    assert len(repaired) == MAX_REPAIRS


@pytest_twisted.inlineCallbacks
def test_a_repair_meeting_a_transient_error_is_retried(pool, engine):
    attempts = []

    def repair(engine):
        attempts.append(1)
        if len(attempts) == 1:
            raise sqliteError(LOCKED)

    thd = Flaky(RetryAfterRepair("missing", repair))
    assert (yield pool.do(thd)) == 2
    assert len(attempts) == 2


@pytest_twisted.inlineCallbacks
def test_calls_after_stop_fail_cleanly(pool):
    yield pool.do(insert)
    yield pool.stop()
    with pytest.raises(CrashDBError, match="stopped"):
        yield pool.do(insert, id=2)
    with pytest.raises(CrashDBError, match="stopped"):
        yield pool.doWithEngine(lambda engine: None)
    yield pool.stop()  # idempotent


class Concurrency:
    """A thd that notes how many runs overlap, sleeping a little in the database thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = self.done = 0

    def __call__(self, conn, value):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.01)
            conn.execute(sa.text("SELECT 1"))
            with self.lock:
                self.done += 1
            return value
        finally:
            with self.lock:
                self.now -= 1


@pytest.mark.parametrize("dbUrl", ["sqlite", "postgresql"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_more_calls_than_threads_and_connections_queue_and_complete(dbUrl):
    db = DBConnector(dbUrl, threads=2)
    thd = Concurrency()
    try:
        results = yield defer.gatherResults([db.pool.do(thd, i) for i in range(60)])
    finally:
        yield db.stop()
    assert results == list(range(60)) and thd.done == 60
    # never more at once than threads; SQLite's BEGIN IMMEDIATE lets one writer in at a time
    assert thd.most == (2 if db.backend.name == "postgresql" else 1)


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_threads_outnumbering_the_connection_pool_wait_their_turn(dbUrl):
    """Even an engine whose connection pool is smaller than the thread pool completes all."""
    engine, backend, _ = createEngine(dbUrl)
    small = sa.create_engine(engine.url, pool_size=1, max_overflow=0, pool_timeout=30,
                             connect_args={"application_name": "crashdb"})
    engine.dispose()
    pool = DBThreadPool(small, backend, 4)
    thd = Concurrency()
    try:
        results = yield defer.gatherResults([pool.do(thd, i) for i in range(30)])
    finally:
        yield pool.stop()
    assert results == list(range(30)) and thd.most <= 4


@pytest.mark.parametrize("dbUrl", ["sqlite", "postgresql"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_stop_lets_calls_in_flight_finish_and_leaves_nothing_behind(dbUrl):
    others = set(faults.crashdbThreads())
    db = DBConnector(dbUrl, threads=3)
    thd = Concurrency()
    calls = [db.pool.do(thd, i) for i in range(30)]
    yield faults.waitFor(lambda: thd.done > 0, 10, "the first call", blocking=False)
    stopping = db.stop()
    again = db.stop()
    late = db.pool.do(thd, "late")
    yield defer.gatherResults([stopping, again])  # a second stop() waits for the first
    results = yield defer.DeferredList(calls, consumeErrors=True)
    assert [value for ok, value in results] == list(range(30))  # all finished
    with pytest.raises(CrashDBError, match="stopped"):
        yield late
    assert set(faults.crashdbThreads()) <= others
    assert db.engine.pool.checkedout() == 0
    if db.backend.name == "postgresql":
        admin = faults.adminEngine(dbUrl)
        database = sa.make_url(dbUrl).database
        try:
            yield faults.waitFor(lambda: faults.countCrashdbBackends(admin, database) == 0,
                                 5, "crashdb's sessions to close")
        finally:
            admin.dispose()


class ThreadedFakeReactor:
    """Just enough reactor for the pool: system event triggers and callFromThread."""

    def __init__(self) -> None:
        self.triggers: dict[int, tuple] = {}
        self.fromThreads: queue.Queue = queue.Queue()

    def addSystemEventTrigger(self, phase, event, function, *args, **kw):
        token = len(self.triggers) + 1
        self.triggers[token] = (phase, event, function)
        return token

    def removeSystemEventTrigger(self, token):
        del self.triggers[token]

    def callFromThread(self, function, *args, **kw):
        self.fromThreads.put((function, args, kw))

    def runUntil(self, deferred: defer.Deferred, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not deferred.called:
            function, args, kw = self.fromThreads.get(timeout=deadline - time.monotonic())
            function(*args, **kw)


def test_reactor_shutdown_stops_the_pool(engine):
    reactor = ThreadedFakeReactor()
    pool = DBThreadPool(engine, SQLiteBackend(engine), 2, reactor=reactor)
    assert reactor.triggers == {}  # threads start with the first call
    done = pool.do(insert)
    reactor.runUntil(done)
    assert done.result == 1
    [(phase, event, trigger)] = reactor.triggers.values()
    assert (phase, event) == ("during", "shutdown")
    stopped = trigger()
    reactor.runUntil(stopped)
    assert pool._threadpool.threads and not any(t.is_alive() for t in pool._threadpool.threads)
    failed = pool.do(insert, id=2)
    assert isinstance(failed.result.value, CrashDBError)
    failed.addErrback(lambda f: None)


def test_stop_removes_the_shutdown_trigger(engine):
    reactor = ThreadedFakeReactor()
    pool = DBThreadPool(engine, SQLiteBackend(engine), 2, reactor=reactor)
    reactor.runUntil(pool.do(insert))
    assert len(reactor.triggers) == 1
    reactor.runUntil(pool.stop())
    assert reactor.triggers == {}


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_a_connection_error_waiting_cannot_cure_is_not_retried(dbUrl):
    """A database that does not exist fails at once, in the server's words."""
    missing = sa.make_url(dbUrl).set(database="crashdb_no_such_database")
    db = DBConnector(missing.render_as_string(hide_password=False), threads=1)
    started = time.monotonic()
    try:
        with pytest.raises(sa.exc.OperationalError, match="does not exist"):
            yield db.setup()
    finally:
        yield db.stop()
    assert time.monotonic() - started < 2  # well inside the retry window: no retries

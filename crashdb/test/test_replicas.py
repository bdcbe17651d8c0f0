"""Reads on streaming replicas (SPEC 17): a real hot standby made by ``pg_basebackup -R`` from a
throwaway primary, started once for this module. Which server answered is shown by pausing the
replica's replay (``pg_wal_replay_pause()``) and writing on the primary: a read that misses the
new report was answered by the replica."""

from __future__ import annotations

import itertools
import logging
import time

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from crashdb import pool
from crashdb.connector import DBConnector
from crashdb.exceptions import InvalidInputError
from crashdb.test.util.db import requirePostgres, upgradeUrl
from crashdb.test.util.faults import FIRST_WEEK, inThread, report, sleep
from crashdb.test.util.pgserver import PostgresServer

_names = itertools.count(1)


@pytest.fixture(scope="module")
def servers():
    primary = PostgresServer()
    try:
        primary.start()
        replica = primary.startReplica()
    except RuntimeError as error:
        primary.cleanup()
        if requirePostgres():
            pytest.fail(f"CRASHDB_REQUIRE_PG=1 but no primary and replica: {error}")
        pytest.skip(f"cannot start a primary and a replica: {error}")
    yield primary, replica
    replica.cleanup()
    primary.cleanup()


def _execute(url: str, statement: str) -> object:
    engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg2"),
                              isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            result = conn.exec_driver_sql(statement)
            return result.scalar() if result.returns_rows else None
    finally:
        engine.dispose()


def _waitForReplay(replicaUrl: str, query: str, expected: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _execute(replicaUrl, query) != expected:
        assert time.monotonic() < deadline, f"the replica never replayed {query!r}"
        time.sleep(0.05)


@pytest.fixture
def urls(servers, monkeypatch):
    """(primary URL, replica URL) of a new, migrated database that the replica has replayed."""
    primary, replica = servers
    replica.start()  # a test may have stopped it
    _execute(replica.url, "SELECT pg_wal_replay_resume()")
    name = f"replicas_{next(_names)}"
    primaryUrl = primary.createDatabase(name)
    upgradeUrl(primaryUrl)
    replicaUrl = replica.databaseUrl(name)
    _waitForReplay(primary.url, f"SELECT 1 FROM pg_database WHERE datname = '{name}'", 1)
    deadline = time.monotonic() + 30
    while True:  # the database, then its migrated schema, reach the replica
        try:
            if _execute(replicaUrl, "SELECT count(*) FROM alembic_version") == 1:
                break
        except sa.exc.DBAPIError:
            pass  # not there yet: no such database, or no such table
        assert time.monotonic() < deadline, "the new database never reached the replica"
        time.sleep(0.1)
    monkeypatch.setattr(pool, "REPLICA_PAUSE", 1.0)  # to keep the tests short
    yield primaryUrl, replicaUrl
    replica.start()
    _execute(replica.url, "SELECT pg_wal_replay_resume()")
    _execute(primary.url, f'DROP DATABASE "{name}" WITH (FORCE)')


def _countOnReplica(replicaUrl: str) -> int:
    return _execute(replicaUrl, "SELECT count(*) FROM reports")


@pytest_twisted.inlineCallbacks
def test_reads_run_on_the_replica_and_writes_on_the_primary(urls):
    primaryUrl, replicaUrl = urls
    db = DBConnector(primaryUrl, replica_urls=[replicaUrl], max_replica_lag=3600)
    try:
        yield db.reports.addReport(report("first", FIRST_WEEK))
        yield inThread(_waitForReplay, replicaUrl, "SELECT count(*) FROM reports", 1)
        yield inThread(_execute, replicaUrl, "SELECT pg_wal_replay_pause()")
        yield db.reports.addReport(report("second", FIRST_WEEK))  # the primary has it now
        assert (yield inThread(_execute, primaryUrl, "SELECT count(*) FROM reports")) == 2
        # the replica answers, so the read misses what it has not replayed
        assert (yield db.reports.countReports()) == 1
        assert (yield db.reports.getReport("second")) is None
        # jobs are read on the primary, always
        yield db.jobs.addJobs(["queued"])
        assert [job["uuid"] for job in (yield db.jobs.getJobs())] == ["queued"]
    finally:
        yield db.stop()


@pytest_twisted.inlineCallbacks
def test_a_replica_lagging_beyond_the_bound_is_skipped_then_used_again(urls, caplog):
    primaryUrl, replicaUrl = urls
    db = DBConnector(primaryUrl, replica_urls=[replicaUrl], max_replica_lag=1)
    try:
        yield db.reports.addReport(report("first", FIRST_WEEK))
        yield inThread(_waitForReplay, replicaUrl, "SELECT count(*) FROM reports", 1)
        yield inThread(_execute, replicaUrl, "SELECT pg_wal_replay_pause()")
        yield db.reports.addReport(report("second", FIRST_WEEK))
        yield sleep(1.5)  # the replica's last replayed transaction is now older than the bound
        with caplog.at_level(logging.WARNING, logger="crashdb.pool"):
            assert (yield db.reports.countReports()) == 2  # from the primary, never stale data
        assert any("skipped" in r.getMessage() and "behind" in r.getMessage()
                   for r in caplog.records)
        yield inThread(_execute, replicaUrl, "SELECT pg_wal_replay_resume()")
        yield inThread(_waitForReplay, replicaUrl, "SELECT count(*) FROM reports", 2)
        yield sleep(1.2)  # past the pause
        # caught up and past the pause: the replica is back in rotation. Prove it answers by
        # pausing its replay and writing on the primary; the bound is widened first, or the
        # proof would race the new WAL's arrival (which makes the paused replica lag again)
        db.pool.maxReplicaLag = 3600
        yield inThread(_execute, replicaUrl, "SELECT pg_wal_replay_pause()")
        yield db.reports.addReport(report("third", FIRST_WEEK))
        assert (yield db.reports.countReports()) == 2  # the replica answered
    finally:
        yield db.stop()


@pytest_twisted.inlineCallbacks
def test_stopping_the_replica_mid_run_loses_no_read_and_restarting_brings_reads_back(
    servers, urls
):
    _, replica = servers
    primaryUrl, replicaUrl = urls
    db = DBConnector(primaryUrl, replica_urls=[replicaUrl], max_replica_lag=3600)
    yield db.reports.addReport(report("present", FIRST_WEEK))
    yield inThread(_waitForReplay, replicaUrl, "SELECT count(*) FROM reports", 1)
    errors: list[BaseException] = []
    answers = [0]
    stopping = False

    async def reader() -> None:
        while not stopping:
            try:
                assert (await db.reports.getReport("present"))["uuid"] == "present"
                answers[0] += 1
            except Exception as error:
                errors.append(error)
            await sleep(0.01)

    readers = [defer.ensureDeferred(reader()) for _ in range(4)]
    try:
        yield sleep(0.5)
        yield inThread(replica.crash)
        yield sleep(1.5)
        during = answers[0]
        yield sleep(1)
        assert answers[0] > during, "reads stopped while the replica was down"
        yield inThread(replica.start)
        yield inThread(_execute, replicaUrl, "SELECT pg_wal_replay_pause()")
        yield db.reports.addReport(report("later", FIRST_WEEK))
        yield sleep(1.5)  # past the pause: the replica is tried again
    finally:
        stopping = True
        yield defer.gatherResults(readers)
    try:
        assert not errors, f"readers saw errors: {errors[:3]!r}"
        assert (yield db.reports.getReport("later")) is None  # the replica is back in use
    finally:
        yield db.stop()


def test_sqlite_has_no_replicas(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    with pytest.raises(InvalidInputError) as info:
        DBConnector(url, replica_urls=[f"sqlite:///{tmp_path / 'b.sqlite'}"])
    assert info.value.field == "replica_urls" and "PostgreSQL" in str(info.value)
    monkeypatch.setenv("CRASHDB_REPLICA_URLS", "postgresql://u@127.0.0.1:1/x, ")
    with pytest.raises(InvalidInputError):
        DBConnector(url)
    monkeypatch.setenv("CRASHDB_REPLICA_URLS", "")
    DBConnector(url)  # no replicas: fine

"""A database restart loses no crash (issue 23): reads never report "commit unknown", the
processor service retries jobs that failed because of the database, the demo's collector sends
idempotent writes again, and the whole pipeline survives its database going away twice."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer, reactor

from crashdb import model, partitions
from crashdb.app.demo import Demo
from crashdb.backends import createEngine
from crashdb.connector import DBConnector
from crashdb.exceptions import CommitOutcomeUnknownError, DatabaseUnavailableError
from crashdb.test.util import faults
from crashdb.test.util.db import upgradeUrl
from crashdb.test.util.faults import FIRST_WEEK, inThread, report, sleep


@pytest.fixture(scope="module")
def server():
    server = faults.crashableServer()
    yield server
    server.cleanup()


@pytest.fixture
def url(server):
    with faults.migratedDatabase(server, "restarts") as url:
        yield url


@pytest_twisted.inlineCallbacks
def test_a_read_whose_connection_dies_at_its_end_is_answered(url, monkeypatch):
    """A read is rolled back, never committed: losing the connection as it ends loses nothing,
    where a write in the same spot is "commit unknown"."""
    db = DBConnector(url, threads=2)
    try:
        yield db.reports.addReport(report("kept", FIRST_WEEK))
        dialect = db.engine.dialect

        def lose(connection):
            raise dialect.loaded_dbapi.OperationalError("server closed the connection")

        monkeypatch.setattr(dialect, "do_rollback", lose)
        monkeypatch.setattr(dialect, "do_commit", lose)
        assert (yield db.reports.countReports()) == 1
        assert (yield db.reports.getReport("kept"))["uuid"] == "kept"
        with pytest.raises(CommitOutcomeUnknownError):
            yield db.reports.addReport(report("ambiguous", FIRST_WEEK))
    finally:
        monkeypatch.undo()
        yield db.stop()


@pytest_twisted.inlineCallbacks
def test_readers_see_no_error_through_three_server_crashes(server, url):
    db = DBConnector(url, threads=4)
    yield db.reports.addReport(report("present", FIRST_WEEK))
    errors: list[BaseException] = []
    answers = collections.Counter()
    stopping = False

    async def reader(kind: str) -> None:
        while not stopping:
            try:
                if kind == "get":
                    found = await db.reports.getReport("present")
                    assert found is not None and found["uuid"] == "present"
                else:
                    assert await db.reports.countReports() == 1
                answers[kind] += 1
            except Exception as error:  # anything at all is a failure of this test
                errors.append(error)
            await sleep(0.02)

    readers = [defer.ensureDeferred(reader(kind)) for kind in ("get", "count", "get", "count")]
    try:
        for _ in range(3):
            yield sleep(1)
            yield inThread(server.crash)
            yield sleep(2)
            yield inThread(server.start)
        yield sleep(1)
        before = sum(answers.values())
        yield sleep(1)
        assert sum(answers.values()) > before, "the readers did not carry on"
    finally:
        stopping = True
        yield defer.gatherResults(readers)
        yield db.stop()
    assert not errors, f"readers saw {len(errors)} errors, e.g. {errors[:3]!r}"
    assert answers["get"] > 10 and answers["count"] > 10


@pytest_twisted.inlineCallbacks
def test_the_service_runs_a_job_again_after_a_database_error(db):
    """Only the process function's own errors fail a job at once; database errors are retried
    (the job kept), and after ``databaseAttempts`` of them the job fails saying so."""
    from crashdb.app.service import ProcessorService

    yield db.jobs.addJobs(["flaky", "broken", "hopeless"])
    calls = collections.Counter()

    def process(job):
        calls[job["uuid"]] += 1
        if job["uuid"] == "flaky" and calls["flaky"] < 3:
            raise CommitOutcomeUnknownError("the connection was lost during COMMIT")
        if job["uuid"] == "broken":
            raise ValueError("a bad crash")
        if job["uuid"] == "hopeless":
            raise DatabaseUnavailableError("database unavailable")
        return None

    service = ProcessorService(db, "p", process, pollInterval=0.01, maxPollInterval=0.02,
                               databaseAttempts=4)
    yield service.startService()
    try:
        deadline = time.monotonic() + 30
        while True:
            jobs = {job["uuid"]: job for job in (yield db.jobs.getJobs())}
            if all(job["complete"] for job in jobs.values()) or time.monotonic() > deadline:
                break
            yield sleep(0.05)
    finally:
        yield service.stopService()
    assert jobs["flaky"]["success"] is True and calls["flaky"] == 3
    assert jobs["broken"]["success"] is False and calls["broken"] == 1
    assert "ValueError: a bad crash" in jobs["broken"]["message"]
    assert jobs["hopeless"]["success"] is False and calls["hopeless"] == 4
    assert "gave up after 4 attempts" in jobs["hopeless"]["message"]


def _assertEveryCrashProcessedOnce(db_url: str, uuids: set[str]) -> None:
    engine, backend, _ = createEngine(db_url)
    try:
        with engine.connect() as conn:
            source = partitions.readable(conn, backend, "reports")  # every week
            reports = collections.Counter(conn.execute(sa.select(source.c.uuid)).scalars())
            jobs = {uuid: (complete, success) for uuid, complete, success in conn.execute(
                sa.select(model.jobs.c.uuid, model.jobs.c.complete, model.jobs.c.success))}
    finally:
        engine.dispose()
    missing = uuids - set(reports)
    assert not missing, f"{len(missing)} crashes have no report, e.g. {sorted(missing)[:3]}"
    doubled = [uuid for uuid, count in reports.items() if count != 1]
    assert not doubled, f"crashes with more than one report: {doubled[:3]}"
    unfinished = {uuid: state for uuid, state in jobs.items() if state != (True, True)}
    assert set(jobs) == uuids and not unfinished, f"jobs not successful: {list(unfinished)[:3]}"


async def _runDemo(db: DBConnector, crashes: int) -> tuple[Demo, object]:
    demo = Demo(reactor, db, crashes=crashes, processors=3, seed=23, out=lambda line: None,
                progress_stream=open(os.devnull, "w"))
    return demo, defer.ensureDeferred(demo.run())


@pytest_twisted.inlineCallbacks
def test_the_pipeline_survives_two_postgresql_crashes(server, url):
    db = DBConnector(url, threads=6)
    demo, running = yield defer.ensureDeferred(_runDemo(db, 1500))
    try:
        for reached in (lambda: demo.result.collected >= 400,
                        lambda: demo.result.processed >= 900):
            while not reached() and not running.called:
                yield sleep(0.05)
            assert not running.called, "the pipeline ended before the crash"
            yield inThread(server.crash)
            yield sleep(2)
            yield inThread(server.start)
        result = yield running
    finally:
        yield db.stop()
    assert result.collected == 1500 and result.failed == 0
    uuids = set(demo._ours)
    yield inThread(_assertEveryCrashProcessedOnce, url, uuids)


LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("ROLLBACK")
"""


@pytest_twisted.inlineCallbacks
def test_the_pipeline_survives_its_sqlite_file_locked_by_another_process(tmp_path):
    url = f"sqlite:///{tmp_path / 'crashdb.sqlite'}"
    upgradeUrl(url)
    db = DBConnector(url)
    demo, running = yield defer.ensureDeferred(_runDemo(db, 600))
    try:
        for reached in (lambda: demo.result.collected >= 200,
                        lambda: demo.result.processed >= 300):
            while not reached() and not running.called:
                yield sleep(0.05)
            assert not running.called, "the pipeline ended before the lock"
            locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(tmp_path /
                                       "crashdb.sqlite"), "3"], stdout=subprocess.PIPE, text=True)
            assert (yield inThread(locker.stdout.readline)).strip() == "locked"
            yield inThread(locker.wait)
        result = yield running
    finally:
        yield db.stop()
    assert result.collected == 600 and result.failed == 0
    yield inThread(_assertEveryCrashProcessedOnce, url, set(demo._ours))

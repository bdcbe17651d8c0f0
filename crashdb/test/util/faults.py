"""Helpers for tests that break things for real: a PostgreSQL server a test may crash, killing
crashdb's server sessions, a concurrent ingest load that records every call's outcome, and
checks that nothing (threads, connections) is left behind.

Worker processes for multi-process faults are this module run as a script (``python -m
crashdb.test.util.faults MODE ...``, see :func:`main`); each prints one JSON object per line.

The crashable server runs with ``synchronous_commit = on``: crashdb promises that a write whose
Deferred succeeded survives a server crash only as far as the server's own durability settings
do, and the throwaway test cluster trades that away for speed. (``fsync`` stays off: a process
crash keeps what the kernel was given; surviving an OS crash needs ``fsync = on`` as well.)
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from twisted.internet import defer, reactor, task, threads

from crashdb import model
from crashdb.connector import DBConnector
from crashdb.partitions import WEEK
from crashdb.test.util.db import requirePostgres, upgradeUrl
from crashdb.test.util.pgserver import DEFAULT_SETTINGS, PostgresServer

UTC = datetime.UTC
#: Monday of the first week the ingest load writes into.
FIRST_WEEK = datetime.datetime(2012, 10, 15, 12, 0, tzinfo=UTC)
#: What crashdb's sessions call themselves on PostgreSQL (crashdb.backends.postgresql).
APPLICATION_NAME = "crashdb"

DURABLE_SETTINGS = dict(DEFAULT_SETTINGS, synchronous_commit="on")


def crashableServer() -> PostgresServer:
    """A started PostgreSQL server of the caller's own, with durable commits, to crash at will.

    Fails (CRASHDB_REQUIRE_PG=1) or skips the test when PostgreSQL cannot be started."""
    server = PostgresServer()
    server.settings = dict(DURABLE_SETTINGS)
    try:
        server.start()
    except RuntimeError as error:
        server.cleanup()
        if requirePostgres():
            pytest.fail(f"CRASHDB_REQUIRE_PG=1 but PostgreSQL would not start: {error}")
        pytest.skip(f"cannot start PostgreSQL: {error}")
    return server


@contextlib.contextmanager
def migratedDatabase(server: PostgresServer, prefix: str) -> Iterator[str]:
    """The URL of a migrated database of its own on the crashable ``server``, dropped with its
    sessions afterwards; the server is started first (and again before the drop) in case a
    test left it down."""
    server.start()  # a no-op unless an earlier test left it down
    name = f"{prefix}_{os.getpid()}_{time.monotonic_ns()}"
    url = server.createDatabase(name)
    upgradeUrl(url)
    try:
        yield url
    finally:
        server.start()
        admin = adminEngine(server.url)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


def adminEngine(url: str) -> sa.Engine:
    """An engine outside crashdb (no pool, autocommit) to inspect and disturb the server."""
    url = sa.make_url(url).set(drivername="postgresql+psycopg2")
    return sa.create_engine(
        url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 5, "application_name": "crashdb-test-admin"},
    )


def crashdbBackends(admin: sa.Engine, database: str) -> list[int]:
    """Process ids of crashdb's sessions on ``database``."""
    with admin.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"
                    " AND application_name = :a"),
            {"d": database, "a": APPLICATION_NAME},
        )
        return [pid for (pid,) in rows]


def _scalar(admin: sa.Engine, query: str, **params: Any) -> Any:
    with admin.connect() as conn:
        return conn.execute(sa.text(query), params).scalar()


def countCrashdbBackends(admin: sa.Engine, database: str) -> int:
    return _scalar(
        admin,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND application_name = :a",
        d=database, a=APPLICATION_NAME,
    )


def terminateCrashdbBackends(admin: sa.Engine, database: str) -> int:
    """``pg_terminate_backend`` every crashdb session on ``database``; how many were killed."""
    return _scalar(
        admin,
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = :d AND application_name = :a AND pid <> pg_backend_pid()",
        d=database, a=APPLICATION_NAME,
    )


def terminateBackend(admin: sa.Engine, pid: int, timeout: float = 5.0) -> None:
    """Kill one server session and wait until it is gone."""
    assert _scalar(admin, "SELECT pg_terminate_backend(:p)", p=pid)
    deadline = time.monotonic() + timeout
    while _scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = :p", p=pid):
        assert time.monotonic() < deadline, f"backend {pid} still alive after {timeout}s"
        time.sleep(0.01)


def backendPid(conn: sa.Connection) -> int:
    """The server process id behind a crashdb connection."""
    return conn.connection.dbapi_connection.get_backend_pid()  # type: ignore[union-attr]


def crashdbThreads() -> list[threading.Thread]:
    """Live threads the pool started (its workers and its stopper)."""
    return [t for t in threading.enumerate() if "crashdb" in t.name]


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


def inThread(function: Callable[..., Any], *args: Any) -> defer.Deferred:
    """Run a blocking helper (pg_ctl, admin queries) off the reactor thread."""
    return threads.deferToThread(function, *args)


@defer.inlineCallbacks
def waitFor(predicate: Callable[[], Any], timeout: float, what: str, blocking: bool = True):
    """Poll ``predicate`` (in a thread if ``blocking``) until true; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = (yield inThread(predicate)) if blocking else predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        yield sleep(0.05)


def report(uuid: str, when: datetime.datetime) -> dict[str, Any]:
    """A report with two extensions, so that doubled child rows would show."""
    return {
        "uuid": uuid,
        "date_processed": when,
        "product": "Firefox",
        "signature": "fault::test",
        "extensions": [{"extension_id": "a@example.com", "extension_version": "1"},
                       {"extension_id": "b@example.com"}],
    }


@dataclass
class Call:
    """One write the load made: its uuids, and how and when it ended."""

    uuids: list[str]
    when: datetime.datetime
    bulk: bool
    started: float
    finished: float | None = None
    error: BaseException | None = None

    @property
    def acknowledged(self) -> bool:
        return self.finished is not None and self.error is None

    @property
    def duration(self) -> float:
        return (self.finished or time.monotonic()) - self.started


@dataclass
class Ingest:
    """``writers`` concurrent loops of ``db.reports.addReport`` and bulk ``addReports`` with
    fresh uuids, until ``stop()``. A new week begins every ``perWeek`` calls, so partition
    creation (the pool's repair path) happens during the load too."""

    db: Any
    writers: int = 6
    batch: int = 20
    perWeek: int = 150
    weeks: int = 8
    prefix: str = "ingest"
    calls: list[Call] = field(default_factory=list)
    _stopping: bool = False
    _loops: list[defer.Deferred] = field(default_factory=list)
    _sequence: Any = field(default_factory=itertools.count)

    def start(self) -> None:
        self._loops = [defer.ensureDeferred(self._writer(i)) for i in range(self.writers)]

    async def _writer(self, index: int) -> None:
        while not self._stopping:
            number = next(self._sequence)
            when = FIRST_WEEK + WEEK * ((number // self.perWeek) % self.weeks)
            bulk = number % 2 == 1
            count = self.batch if bulk else 1
            uuids = [f"{self.prefix}-{number}-{i}" for i in range(count)]
            call = Call(uuids, when, bulk, time.monotonic())
            self.calls.append(call)
            try:
                if bulk:
                    await self.db.reports.addReports([report(u, when) for u in uuids])
                else:
                    await self.db.reports.addReport(report(uuids[0], when))
            except Exception as error:
                call.error = error
                await sleep(0.05)  # do not spin while the database is away
            finally:
                call.finished = time.monotonic()

    @defer.inlineCallbacks
    def stop(self, timeout: float):
        """Stop issuing calls; wait (at most ``timeout`` s) for those in flight to finish."""
        self._stopping = True
        done = defer.DeferredList(self._loops, fireOnOneErrback=True, consumeErrors=True)
        done.addTimeout(timeout, reactor)
        yield done

    def inFlightAt(self, moment: float) -> list[Call]:
        return [c for c in self.calls if c.started <= moment and (c.finished or 1e18) >= moment]

    @defer.inlineCallbacks
    def resendFailures(self):
        """Send every failed call again, as a caller told "may be sent again" would."""
        for call in self.calls:
            if call.error is not None:
                yield self.db.reports.addReports([report(u, call.when) for u in call.uuids])

    def uuids(self, predicate: Callable[[Call], bool] = lambda call: True) -> list[str]:
        return [u for c in self.calls if predicate(c) for u in c.uuids]


def storedReports(engine: sa.Engine, reportsTable: str = "reports",
                  extensionsTable: str = "extensions") -> dict[str, tuple[int, int]]:
    """``{uuid: (report rows, extension rows)}`` as stored, read outside crashdb."""
    with engine.connect() as conn:
        reports = dict(conn.execute(sa.text(
            f"SELECT uuid, count(*) FROM {reportsTable} GROUP BY uuid")).all())
        extensions = dict(conn.execute(sa.text(
            f"SELECT r.uuid, count(*) FROM {reportsTable} r"
            f" JOIN {extensionsTable} e ON e.report_id = r.id GROUP BY r.uuid")).all())
    return {uuid: (count, extensions.get(uuid, 0)) for uuid, count in reports.items()}


# -- other processes ------------------------------------------------------------------------------


def say(**message: Any) -> None:
    print(json.dumps(message), flush=True)


def spawn(*args: str) -> subprocess.Popen:
    """This module as a worker process (see :func:`main`), talking JSON lines on stdout."""
    return subprocess.Popen([sys.executable, "-m", __name__, *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def readMessage(process: subprocess.Popen) -> dict[str, Any]:
    line = process.stdout.readline()  # type: ignore[union-attr]
    assert line, f"worker exited with {process.wait()}"
    return json.loads(line)


async def writer(reactor: Any, url: str, prefix: str, count: str) -> None:
    """Store ``count`` reports and raw crashes (alternately, 8 calls in flight, over 3 weeks)
    once told to go; report every failure and the slowest call."""
    db = DBConnector(url, reactor=reactor)
    await db.setup()
    say(ready=os.getpid())
    sys.stdin.readline()
    failures: list[str] = []
    latencies: list[float] = []
    limit = defer.DeferredSemaphore(8)

    async def one(number: int) -> None:
        uuid, when = f"{prefix}-{number}", FIRST_WEEK + WEEK * (number % 3)
        started = time.monotonic()
        try:
            if number % 2:
                await db.rawcrashes.addRawCrash(uuid, when, {"number": number})
            else:
                await db.reports.addReport(report(uuid, when))
        except Exception as error:
            failures.append(f"{type(error).__name__}: {error}")
        latencies.append(time.monotonic() - started)

    await defer.gatherResults([
        limit.run(lambda number=number: defer.ensureDeferred(one(number)))
        for number in range(int(count))
    ])
    await db.stop()
    say(failures=failures, slowest=max(latencies), calls=len(latencies))


async def victim(reactor: Any, url: str, name: str) -> None:
    """A processor that claims a batch of 10, completes half, then dies (killed by the test)
    inside an open write transaction: SQLite's write lock, PostgreSQL row locks on its jobs."""
    db = DBConnector(url, reactor=reactor)
    processorid = await db.processors.findProcessorId(name)
    await db.processors.setProcessorState(processorid, True)
    claimed = [job["jobid"] for job in await db.jobs.claimNextJobs(processorid, limit=10)]
    completed = claimed[: len(claimed) // 2]
    await db.jobs.completeJobs(completed, processorid, True)

    def holdLocks(conn: sa.Connection) -> None:
        conn.execute(sa.update(model.jobs).where(model.jobs.c.id.in_(claimed))
                     .values(message="written by a processor that then died"))
        say(processorid=processorid, claimed=claimed, completed=completed)
        time.sleep(3600)  # until SIGKILL

    await db.pool.do(holdLocks)


def main(argv: list[str]) -> None:
    from crashdb.app.cli import runDeferred

    workers = {"writer": writer, "victim": victim}
    runDeferred(workers[argv[0]], *argv[1:])


# -- a killed processor ---------------------------------------------------------------------------


@defer.inlineCallbacks
def killProcessorThenRescue(url: str, jobs: int = 40):
    """Queue ``jobs`` jobs; a processor process claims 10, completes 5 and is SIGKILLed inside
    an open write transaction; expiry releases its claims; a ProcessorService in this process
    finishes the rest. Returns what each did, for the test to check "every job exactly once"."""
    from crashdb.app.service import ProcessorService

    db = DBConnector(url, threads=2)
    process = None
    try:
        queued = yield db.jobs.addJobs([f"job-{i:04d}" for i in range(jobs)])
        process = spawn("victim", url, "victim")
        dying = yield inThread(readMessage, process)
        os.kill(process.pid, signal.SIGKILL)
        yield inThread(process.wait, 30)

        held = yield db.jobs.getJobs(claimed=dying["processorid"], complete=False)
        yield sleep(0.01)
        expired = yield db.processors.expireProcessors(0)  # housekeeping, as after a timeout
        released = yield db.jobs.getJobs(claimed=dying["processorid"], complete=False)

        processed: list[int] = []

        def work(job: dict[str, Any]) -> defer.Deferred:
            processed.append(job["jobid"])
            return sleep(0.001)

        rescuer = ProcessorService(db, "rescuer", work, batchSize=7, concurrency=4,
                                   heartbeatInterval=3600, pollInterval=0.05, maxPollInterval=0.2)
        yield rescuer.startService()
        yield waitFor(lambda: len(processed) >= jobs - len(dying["completed"]), 30,
                      "the rescuer to process the jobs", blocking=False)
        yield sleep(0.3)  # anything processed twice would show by now
        yield rescuer.stopService()
        final = yield db.jobs.getJobs()
        return {
            "queued": queued, "victim": dying, "heldAtDeath": [j["jobid"] for j in held],
            "expired": expired, "stillHeld": released, "processed": processed,
            "rescuer": rescuer.processorid, "final": final,
        }
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        yield db.stop()


def checkRescue(outcome: dict[str, Any]) -> None:
    """Every job was completed exactly once: by the victim before it died, or by the rescuer."""
    dead = outcome["victim"]
    claimed, completed = set(dead["claimed"]), set(dead["completed"])
    assert len(claimed) == 10 and len(completed) == 5
    assert set(outcome["heldAtDeath"]) == claimed - completed  # the claims outlived the process
    assert outcome["expired"] == [dead["processorid"]] and outcome["stillHeld"] == []
    processed = outcome["processed"]
    assert len(processed) == len(set(processed)), "a job was processed twice"
    assert set(processed) == set(outcome["queued"]) - completed
    final = {job["jobid"]: job for job in outcome["final"]}
    assert all(job["complete"] and job["success"] for job in final.values())
    assert all(job["message"] is None for job in final.values())  # the dead write rolled back
    for jobid, job in final.items():
        owner = dead["processorid"] if jobid in completed else outcome["rescuer"]
        assert job["claimed_by_processorid"] == owner, job


if __name__ == "__main__":
    main(sys.argv[1:])

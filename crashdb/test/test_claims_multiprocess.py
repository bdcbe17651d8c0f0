"""Claims across processes on PostgreSQL: four processes drain one queue without a job being
claimed twice, and the jobs of a processor killed mid-batch are finished by another after expiry.

The workers are this module run as a script (``python -m crashdb.test.test_claims_multiprocess
MODE URL NAME``); each prints one JSON object per line.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from crashdb import model
from crashdb.connector import DBConnector
from crashdb.pool import SynchronousDBPool

UTC = datetime.UTC
MODULE = "crashdb.test.test_claims_multiprocess"


# -- the workers ----------------------------------------------------------------------------------


def say(**message) -> None:
    print(json.dumps(message), flush=True)


async def drain(reactor, url: str, name: str) -> None:
    """claimNextJobs + completeJobs with two loops at once, until the queue stays empty."""
    from twisted.internet import defer, task

    db = DBConnector(url, reactor=reactor)
    await db.setup()
    pid = await db.processors.findProcessorId(name)
    await db.processors.setProcessorState(pid, True)
    say(ready=pid)
    sys.stdin.readline()  # the go signal: every worker starts together

    async def loop() -> None:
        empty = 0
        while empty < 3:
            jobs = await db.jobs.claimNextJobs(pid, limit=10)
            if not jobs:
                empty += 1
                await task.deferLater(reactor, 0.05, lambda: None)
                continue
            empty = 0
            ids = [job["jobid"] for job in jobs]
            say(claimed=ids)
            await db.jobs.completeJobs(ids, pid, True)

    await defer.gatherResults([defer.ensureDeferred(loop()) for _ in range(2)])
    await db.processors.setProcessorState(pid, False)
    await db.stop()
    say(done=pid)


async def serve(reactor, url: str, name: str, hangOdd: bool) -> None:
    """A ProcessorService; with ``hangOdd`` the jobs with odd ids never finish."""
    from twisted.internet import defer, task

    from crashdb.app.service import ProcessorService

    db = DBConnector(url, reactor=reactor)
    await db.setup()

    def process(job):
        say(processing=job["jobid"])
        if hangOdd and job["jobid"] % 2:
            return defer.Deferred()  # stuck until the process is killed
        return task.deferLater(reactor, 0.001, lambda: None)

    service = ProcessorService(db, name, process, batchSize=10, concurrency=10,
                               heartbeatInterval=3600, pollInterval=0.05, maxPollInterval=0.2)
    await service.startService()
    say(ready=service.processorid)
    while (await db.jobs.getJobs(complete=False, limit=1)) or service._running:
        await task.deferLater(reactor, 0.1, lambda: None)
    await service.stopService()
    await db.stop()
    say(done=service.processorid, succeeded=service.succeeded)


def main(argv: list[str]) -> None:
    from crashdb.app.cli import runDeferred

    mode, url, name = argv[:3]
    if mode == "drain":
        runDeferred(drain, url, name)
    else:
        runDeferred(serve, url, name, mode == "serve-hang-odd")


# -- the tests ------------------------------------------------------------------------------------


def worker(mode: str, url: str, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", MODULE, mode, url, name],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def readMessage(process: subprocess.Popen) -> dict:
    line = process.stdout.readline()
    assert line, f"worker exited with {process.wait()}"
    return json.loads(line)


def queueJobs(engine: sa.Engine, count: int) -> list[int]:
    now = datetime.datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(model.jobs.insert(), [
            {"uuid": f"crash-{i:06d}", "priority": i % 3, "queued_at": now} for i in range(count)
        ])
        return list(conn.execute(sa.select(model.jobs.c.id)).scalars())


def jobRows(engine: sa.Engine) -> dict[int, sa.Row]:
    with engine.connect() as conn:
        return {row.id: row for row in conn.execute(sa.select(model.jobs))}


def result(d):
    out: list = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


@pytest.mark.parametrize("dbUrl", ["postgresql", "citus"], indirect=True)
def test_four_processes_drain_the_queue_without_claiming_a_job_twice(dbUrl):
    engine = sa.create_engine(dbUrl)
    try:
        ids = queueJobs(engine, 1600)
        workers = [worker("drain", dbUrl, f"drainer{i}") for i in range(4)]
        pids = [readMessage(w)["ready"] for w in workers]
        for w in workers:
            w.stdin.write("go\n")
            w.stdin.flush()
        claimedBy: dict[int, list[int]] = {}  # jobid -> processor ids that claimed it
        for w, pid in zip(workers, pids):
            while "done" not in (message := readMessage(w)):
                for jobid in message["claimed"]:
                    claimedBy.setdefault(jobid, []).append(pid)
            assert w.wait(timeout=60) == 0
        twice = {jobid: by for jobid, by in claimedBy.items() if len(by) > 1}
        assert twice == {}
        assert sorted(claimedBy) == sorted(ids)  # none left behind
        rows = jobRows(engine)
        assert all(row.complete and row.success for row in rows.values())
        assert all(rows[jobid].claimed_by_processorid == by[0] for jobid, by in claimedBy.items())
        shares = Counter(by[0] for by in claimedBy.values())
        assert len(shares) == 4, shares  # every process took part
    finally:
        engine.dispose()


@pytest.mark.parametrize("dbUrl", ["postgresql", "citus"], indirect=True)
def test_jobs_of_a_processor_killed_mid_batch_are_finished_after_expiry(dbUrl):
    engine = sa.create_engine(dbUrl)
    db = DBConnector(dbUrl)
    db.pool = SynchronousDBPool(db.engine, db.backend)
    victim = None
    try:
        queueJobs(engine, 60)
        victim = worker("serve-hang-odd", dbUrl, "victim")
        victimId = readMessage(victim)["ready"]
        # it completes the even jobs of its batches and hangs on the odd ones, until all ten
        # of its slots are stuck: then it dies without a word
        deadline = time.monotonic() + 60
        while True:
            held = [r.id for r in jobRows(engine).values()
                    if r.claimed_by_processorid == victimId and not r.complete]
            if len(held) == 10 and all(jobid % 2 for jobid in held):
                break
            assert time.monotonic() < deadline, held
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        finishedByVictim = {r.id for r in jobRows(engine).values() if r.complete}
        assert finishedByVictim and all(jobid % 2 == 0 for jobid in finishedByVictim)

        # the claims outlive the process until housekeeping expires it
        time.sleep(0.01)
        assert result(db.processors.expireProcessors(0)) == [victimId]
        rows = jobRows(engine)
        assert all(rows[jobid].claimed_by_processorid is None for jobid in held)

        rescuer = worker("serve", dbUrl, "rescuer")
        rescuerId = readMessage(rescuer)["ready"]
        processed = []
        while "done" not in (message := readMessage(rescuer)):
            processed.append(message["processing"])
        assert rescuer.wait(timeout=60) == 0
        rows = jobRows(engine)
        assert all(row.complete and row.success for row in rows.values())
        assert set(held) <= set(processed)
        assert {rows[jobid].claimed_by_processorid for jobid in held} == {rescuerId}
        assert all(rows[jobid].claimed_by_processorid == victimId for jobid in finishedByVictim)
        assert not set(processed) & finishedByVictim  # nothing done twice
    finally:
        if victim is not None and victim.poll() is None:
            victim.kill()
        result(db.stop())
        engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])

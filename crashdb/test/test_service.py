"""ProcessorService: the ready-made processing loop, driven by a fake clock over the fake
database (everything synchronous and deterministic), and once over real databases."""

from __future__ import annotations

import datetime

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer, task
from twisted.python import failure

from crashdb.app.service import ProcessorService, failureMessage
from crashdb.test.fake import fakedb

UTC = datetime.UTC
T0 = datetime.datetime(2012, 10, 16, 12, 0, tzinfo=UTC)


def result(d: defer.Deferred):
    """The result of a Deferred that has fired (the fake database fires them at once)."""
    out: list = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], failure.Failure):
        out[0].raiseException()
    return out[0]


def pump(clock: task.Clock) -> None:
    """Run everything due now, including what that schedules for now."""
    while any(call.getTime() <= clock.seconds() for call in clock.getDelayedCalls()):
        clock.advance(0)


class Harness:
    """A fake database, a fake clock, and a process function whose jobs can be held open."""

    def __init__(self, hold: bool = False, **kw) -> None:
        self.db = fakedb.FakeDBConnector()
        self.clock = task.Clock()
        self.hold = hold
        self.seen: list[dict] = []
        self.waiting: dict[str, defer.Deferred] = {}
        self.failWith: dict[str, Exception] = {}
        kw.setdefault("pollInterval", 1.0)
        kw.setdefault("maxPollInterval", 8.0)
        self.service = ProcessorService(self.db, "proc", self.process, clock=self.clock, **kw)

    def process(self, job: dict):
        self.seen.append(job)
        if job["uuid"] in self.failWith:
            raise self.failWith[job["uuid"]]
        if self.hold:
            self.waiting[job["uuid"]] = d = defer.Deferred()
            return d
        return job["uuid"]

    def add(self, uuids, priority=0):
        return result(self.db.jobs.addJobs(list(uuids), priority))

    def start(self):
        d = self.service.startService()
        pump(self.clock)
        assert d.called
        return self.service.processorid

    def jobs(self, **kw) -> dict[str, dict]:
        return {j["uuid"]: j for j in result(self.db.jobs.getJobs(**kw))}

    def processor(self) -> dict:
        return result(self.db.processors.getProcessor(self.service.processorid))


def countCalls(obj, name: str) -> list:
    calls: list = []
    original = getattr(obj, name)

    def wrapper(*args, **kw):
        calls.append(args)
        return original(*args, **kw)

    setattr(obj, name, wrapper)
    return calls


def test_registers_and_heartbeats():
    h = Harness(heartbeatInterval=10.0)
    pid = h.start()
    assert h.processor()["active"] is True
    with h.db.engine.begin() as conn:
        conn.execute(sa.update(h.db.model.processors).values(last_active=T0))
    h.clock.advance(9.9)
    assert h.processor()["last_active"] == T0
    h.clock.advance(0.1)
    assert h.processor()["last_active"] > T0
    assert pid == result(h.db.processors.findProcessorId("proc"))


def test_processes_every_job_in_claim_order_and_completes_it():
    h = Harness(concurrency=1, batchSize=1)
    h.add([f"low{i}" for i in range(5)])
    h.add(["high"], priority=10)
    pid = h.start()
    pump(h.clock)
    assert [j["uuid"] for j in h.seen] == ["high"] + [f"low{i}" for i in range(5)]
    jobs = h.jobs()
    assert all(j["complete"] and j["success"] is True and j["claimed_by_processorid"] == pid
               for j in jobs.values())
    assert h.service.succeeded == 6 and h.service.failed == 0


def test_a_batch_finishing_at_once_is_completed_in_one_statement():
    h = Harness(batchSize=5, concurrency=5)
    h.failWith["bad"] = ValueError("no")
    h.add(["a", "b", "bad", "c", "d"])
    writes = countCalls(h.db.jobs, "completeJobs")
    h.start()
    pump(h.clock)
    ids = {uuid: job["jobid"] for uuid, job in h.jobs().items()}
    assert sorted(w[0] for w in writes) == sorted(
        [[ids["a"], ids["b"], ids["c"], ids["d"]], [ids["bad"]]])


def test_failures_are_completed_with_their_message():
    h = Harness()
    h.failWith["bad"] = ValueError("cannot read the minidump")
    h.add(["good", "bad"])
    h.start()
    pump(h.clock)
    jobs = h.jobs()
    assert (jobs["good"]["success"], jobs["good"]["message"]) == (True, None)
    assert (jobs["bad"]["complete"], jobs["bad"]["success"]) == (True, False)
    assert jobs["bad"]["message"] == "ValueError: cannot read the minidump"
    assert h.service.failed == 1


def test_asynchronous_results_and_failures():
    h = Harness(hold=True)
    h.add(["a", "b"])
    h.start()
    pump(h.clock)
    assert set(h.waiting) == {"a", "b"}
    assert not any(j["complete"] for j in h.jobs().values())
    h.waiting["a"].callback("done")
    h.waiting["b"].errback(RuntimeError("symbol server down"))
    jobs = h.jobs()
    assert jobs["a"]["success"] is True
    assert jobs["b"]["message"] == "RuntimeError: symbol server down"


def test_failure_message_is_storable():
    message = failureMessage(defer.fail(KeyError("x\x00y")).result)
    assert "\x00" not in message and message.startswith("KeyError")
    assert len(failureMessage(defer.fail(ValueError("v" * 5000)).result)) == 2000
    assert failureMessage(defer.fail(ValueError()).result) == "ValueError"


def test_concurrency_is_bounded_and_batches_refill_free_slots():
    h = Harness(hold=True, concurrency=3, batchSize=2)
    h.add([f"j{i}" for i in range(10)])
    claims = countCalls(h.db.jobs, "claimNextJobs")
    pid = h.start()
    pump(h.clock)
    assert sorted(h.waiting) == ["j0", "j1", "j2"]
    assert [c[1] for c in claims] == [2, 1]  # a batch of two, then the one free slot
    assert len(h.jobs(claimed=pid)) == 3
    h.waiting.pop("j0").callback(None)
    pump(h.clock)
    assert sorted(h.waiting) == ["j1", "j2", "j3"]
    while h.waiting:
        h.waiting.pop(sorted(h.waiting)[0]).callback(None)
        pump(h.clock)
    assert all(j["complete"] for j in h.jobs().values())
    assert len(h.seen) == 10


def test_polls_back_off_while_the_queue_is_empty():
    h = Harness(pollInterval=1.0, maxPollInterval=8.0)
    claims = countCalls(h.db.jobs, "claimNextJobs")
    times = []
    h.db.jobs.claimNextJobs = lambda *a, real=h.db.jobs.claimNextJobs: (
        times.append(h.clock.seconds()), real(*a))[1]
    h.start()
    for _ in range(64):
        h.clock.advance(0.5)
    # first poll at start, then after 1, 2, 4, 8, 8, 8... seconds
    assert times == [0, 1, 3, 7, 15, 23, 31]
    h.add(["late"])
    h.service.wakeUp()
    pump(h.clock)
    assert [j["uuid"] for j in h.seen] == ["late"]
    # work found: the back-off starts over
    before = len(claims)
    h.clock.advance(1.0)
    assert len(claims) == before + 1


def test_claim_errors_are_logged_and_retried_after_a_pause():
    h = Harness(pollInterval=1.0)
    h.add(["a"])
    real = h.db.jobs.claimNextJobs
    failures = [RuntimeError("connection refused")]

    def flaky(*args):
        if failures:
            return defer.fail(failures.pop())
        return real(*args)

    h.db.jobs.claimNextJobs = flaky
    h.start()
    pump(h.clock)
    assert h.seen == []
    h.clock.advance(1.0)
    assert [j["uuid"] for j in h.seen] == ["a"]


def test_clean_stop_waits_for_running_jobs_then_releases_claims():
    h = Harness(hold=True, concurrency=2)
    h.add(["a", "b", "c"])
    h.start()
    pump(h.clock)
    stopped = h.service.stopService()
    assert not stopped.called
    h.waiting["a"].callback(None)
    h.waiting["b"].callback(None)
    assert stopped.called
    jobs = h.jobs()
    assert jobs["a"]["complete"] and jobs["b"]["complete"]
    assert jobs["c"]["claimed"] is False  # never started
    assert h.processor()["active"] is False
    h.clock.advance(60)
    assert len(h.seen) == 2  # no polling after the stop


def test_stop_timeout_releases_the_claims_of_unfinished_jobs():
    h = Harness(hold=True, stopTimeout=5.0)
    h.add(["slow"])
    h.start()
    pump(h.clock)
    stopped = h.service.stopService()
    h.clock.advance(4.9)
    assert not stopped.called
    h.clock.advance(0.1)
    assert stopped.called
    job = h.jobs()["slow"]
    assert (job["claimed"], job["complete"]) == (False, False)
    h.waiting["slow"].callback(None)  # finishing late records nothing
    assert h.jobs()["slow"]["complete"] is False


def test_restart_under_the_same_name_releases_the_previous_runs_claims():
    h = Harness()
    result(h.db.insertTestData([
        fakedb.Processor(id=7, name="proc", active=True, last_active=T0),
        fakedb.Job(uuid="orphan", claimed_by_processorid=7, claimed_at=T0),
    ]))
    assert h.start() == 7
    pump(h.clock)
    assert [j["uuid"] for j in h.seen] == ["orphan"]
    assert h.jobs()["orphan"]["success"] is True


def test_outcomes_of_jobs_released_by_expiry_are_dropped_and_the_rest_kept():
    h = Harness(hold=True, heartbeatInterval=10.0, concurrency=3)  # no slot free to re-claim
    h.add(["x", "a", "b"])
    h.start()
    pump(h.clock)
    assert sorted(h.waiting) == ["a", "b", "x"]
    db = h.db
    # the processor stalled: housekeeping expired it and another processor took job a over
    future = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
    assert result(db.processors.expireProcessors(60, now=future)) == [
        h.service.processorid]
    other = result(db.processors.findProcessorId("other"))
    result(db.jobs.claimJobs([h.jobs()["a"]["jobid"]], other))
    h.clock.advance(10.0)  # our heartbeat makes us active again
    result(db.jobs.claimJobs([h.jobs()["b"]["jobid"]], h.service.processorid))
    # hold the first write so that a and b finish together and are written as one group
    gate = defer.Deferred()
    real = db.jobs.completeJobs

    def gated(*args, **kw):
        return gate.addCallback(lambda _: real(*args, **kw))

    db.jobs.completeJobs = gated
    h.waiting.pop("x").callback(None)
    db.jobs.completeJobs = real
    writes = countCalls(db.jobs, "completeJobs")
    h.waiting.pop("a").callback(None)
    h.waiting.pop("b").callback(None)
    gate.callback(None)
    jobs = h.jobs()
    assert (jobs["a"]["claimed_by_processorid"], jobs["a"]["complete"]) == (other, False)
    assert jobs["b"]["complete"] is True and jobs["b"]["success"] is True
    assert jobs["x"]["complete"] is False  # released by expiry, outcome dropped
    assert h.service.succeeded == 1
    ids = {uuid: job["jobid"] for uuid, job in jobs.items()}
    assert [w[0] for w in writes] == [[ids["a"], ids["b"]], [ids["a"]], [ids["b"]]]


def test_rejects_bad_settings():
    db = fakedb.FakeDBConnector()
    with pytest.raises(ValueError):
        ProcessorService(db, "p", lambda job: None, concurrency=0)
    with pytest.raises(ValueError):
        ProcessorService(db, "p", lambda job: None, pollInterval=5, maxPollInterval=1)


@pytest_twisted.inlineCallbacks
def test_drains_a_real_database_with_the_reactor(realdb):
    from twisted.internet import reactor

    db = realdb
    yield db.jobs.addJobs([f"u{i}" for i in range(120)])
    seen: list[int] = []

    def process(job):
        seen.append(job["jobid"])
        return task.deferLater(reactor, 0.001, lambda: None)

    service = ProcessorService(db, "real", process, batchSize=10, concurrency=20,
                               pollInterval=0.05, maxPollInterval=0.2)
    yield service.startService()
    for _ in range(400):
        left = yield db.jobs.getJobs(complete=False)
        if not left:
            break
        yield task.deferLater(reactor, 0.05, lambda: None)
    yield service.stopService()
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 120
    done = yield db.jobs.getJobs(complete=True)
    assert len(done) == 120 and all(j["claimed_by_processorid"] == service.processorid
                                    for j in done)
    assert (yield db.processors.getProcessor(service.processorid))["active"] is False


def test_jobs_of_a_claim_whose_commit_was_lost_are_released_then_done_once():
    from crashdb.exceptions import CommitOutcomeUnknownError

    h = Harness(hold=True, pollInterval=1.0, concurrency=2, batchSize=1)
    h.add(["running", "lost", "later"])
    real = h.db.jobs.claimNextJobs
    calls = []

    def claimLosingTheSecondCommit(*args):
        calls.append(args)
        d = real(*args)
        if len(calls) == 2:  # the claim commits, but the answer never arrives
            d.addCallback(lambda jobs: defer.fail(CommitOutcomeUnknownError("lost")))
        return d

    h.db.jobs.claimNextJobs = claimLosingTheSecondCommit
    pid = h.start()
    pump(h.clock)
    assert sorted(h.waiting) == ["running"]  # "lost" is claimed by us, unknown to us
    jobs = h.jobs()
    assert jobs["lost"]["claimed_by_processorid"] is None  # released at once
    assert jobs["running"]["claimed_by_processorid"] == pid  # what we run is kept
    h.clock.advance(1.0)
    assert sorted(h.waiting) == ["lost", "running"]
    for uuid in list(h.waiting):
        h.waiting.pop(uuid).callback(None)
    pump(h.clock)
    h.clock.advance(2.0)
    h.waiting.pop("later").callback(None)
    assert all(j["complete"] for j in h.jobs().values())
    assert sorted(j["uuid"] for j in h.seen) == ["later", "lost", "running"]

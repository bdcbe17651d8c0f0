"""Behaviour of the ``processors`` component, on the fake, SQLite and PostgreSQL."""

from __future__ import annotations

import datetime
import subprocess
import sys

import pytest
import pytest_twisted
import sqlalchemy as sa

from crashdb import model
from crashdb.exceptions import InvalidInputError
from crashdb.test.fake import fakedb

pytestmark = pytest.mark.citus  # also on a coordinator with two workers (SPEC 17)

UTC = datetime.UTC
T0 = datetime.datetime(2012, 10, 16, 12, 0, tzinfo=UTC)
MINUTE = datetime.timedelta(minutes=1)


def processorsAndJobs():
    """Processor 1 holds jobs 10 (incomplete) and 11 (complete); processor 2 holds job 12."""
    return [
        fakedb.Processor(id=1, name="p1", active=True, last_active=T0),
        fakedb.Processor(id=2, name="p2", active=True, last_active=T0 + 10 * MINUTE),
        fakedb.Job(id=10, claimed_by_processorid=1, claimed_at=T0),
        fakedb.Job(id=11, claimed_by_processorid=1, claimed_at=T0, complete=True,
                   completed_at=T0, success=True),
        fakedb.Job(id=12, claimed_by_processorid=2, claimed_at=T0),
        fakedb.Job(id=13),
    ]


@pytest_twisted.inlineCallbacks
def claims(db):
    jobs = yield db.jobs.getJobs()
    return {job["jobid"]: job["claimed_by_processorid"] for job in jobs}


@pytest_twisted.inlineCallbacks
def test_find_processor_id_creates_an_inactive_processor_once(db):
    first = yield db.processors.findProcessorId("host1:/srv/processor")
    again = yield db.processors.findProcessorId("host1:/srv/processor")
    other = yield db.processors.findProcessorId("host2:/srv/processor")
    assert first == again != other
    processor = yield db.processors.getProcessor(first)
    assert processor == {"id": first, "name": "host1:/srv/processor", "active": False,
                         "last_active": None}


@pytest_twisted.inlineCallbacks
def test_find_processor_id_survives_losing_the_race(db):
    raced = []

    def otherProcessWins(conn):
        raced.append(True)
        conn.execute(db.model.processors.insert().values(id=42, name="racer", active=True))

    db.processors._race_hook = otherProcessWins
    found = yield db.processors.findProcessorId("racer")
    assert raced and found == 42
    processors = yield db.processors.getProcessors()
    assert [p["name"] for p in processors] == ["racer"]


@pytest_twisted.inlineCallbacks
def test_find_processor_id_rejects_bad_names(db):
    for bad in ("", "x" * 256, "nul\x00", 7, None):
        with pytest.raises(InvalidInputError) as info:
            yield db.processors.findProcessorId(bad)
        assert info.value.field == "name"
    assert (yield db.processors.getProcessors()) == []


@pytest_twisted.inlineCallbacks
def test_set_processor_state_reports_changes_and_heartbeats(db):
    pid = yield db.processors.findProcessorId("p")
    before = datetime.datetime.now(UTC)
    assert (yield db.processors.setProcessorState(pid, True)) is True
    first = yield db.processors.getProcessor(pid)
    assert first["active"] is True
    assert before <= first["last_active"] <= datetime.datetime.now(UTC)

    assert (yield db.processors.setProcessorState(pid, True)) is False  # a heartbeat
    second = yield db.processors.getProcessor(pid)
    assert second["active"] is True and second["last_active"] >= first["last_active"]

    assert (yield db.processors.setProcessorState(pid, False)) is True
    assert (yield db.processors.setProcessorState(pid, False)) is False
    stopped = yield db.processors.getProcessor(pid)
    assert stopped["active"] is False and stopped["last_active"] == second["last_active"]


@pytest_twisted.inlineCallbacks
def test_set_processor_state_of_unknown_processor_changes_nothing(db):
    assert (yield db.processors.setProcessorState(99, True)) is False
    assert (yield db.processors.setProcessorState(99, False)) is False
    assert (yield db.processors.getProcessors()) == []


@pytest_twisted.inlineCallbacks
def test_deactivating_releases_claims_on_incomplete_jobs_only(db):
    yield db.insertTestData(processorsAndJobs())
    assert (yield db.processors.setProcessorState(1, False)) is True
    assert (yield claims(db)) == {10: None, 11: 1, 12: 2, 13: None}
    released = yield db.jobs.getJob(10)
    assert released["claimed"] is False and released["claimed_at"] is None
    kept = yield db.jobs.getJob(11)
    assert kept["claimed_at"] == T0 and kept["complete"] is True


@pytest_twisted.inlineCallbacks
def test_deactivating_an_inactive_processor_still_releases_its_claims(db):
    yield db.insertTestData([
        fakedb.Processor(id=1, name="p1", active=False),
        fakedb.Job(id=10, claimed_by_processorid=1, claimed_at=T0),
    ])
    assert (yield db.processors.setProcessorState(1, False)) is False
    assert (yield claims(db)) == {10: None}


@pytest_twisted.inlineCallbacks
def test_get_processors_orders_by_id(db):
    yield db.insertTestData([
        fakedb.Processor(id=5, name="b", active=True, last_active=T0),
        fakedb.Processor(id=3, name="a"),
    ])
    processors = yield db.processors.getProcessors()
    assert processors == [
        {"id": 3, "name": "a", "active": False, "last_active": None},
        {"id": 5, "name": "b", "active": True, "last_active": T0},
    ]
    assert (yield db.processors.getProcessor(4)) is None


@pytest_twisted.inlineCallbacks
def test_expire_processors_deactivates_the_silent_and_releases_their_claims(db):
    yield db.insertTestData(processorsAndJobs())
    # p1 last checked in at T0, p2 at T0 + 10 min; at T0 + 12 min with a 5 min timeout only p1
    expired = yield db.processors.expireProcessors(5 * MINUTE, now=T0 + 12 * MINUTE)
    assert expired == [1]
    assert (yield claims(db)) == {10: None, 11: 1, 12: 2, 13: None}
    states = {p["id"]: p["active"] for p in (yield db.processors.getProcessors())}
    assert states == {1: False, 2: True}
    # already inactive: not expired again
    assert (yield db.processors.expireProcessors(5 * MINUTE, now=T0 + 12 * MINUTE)) == []


@pytest_twisted.inlineCallbacks
def test_expire_processors_takes_seconds_and_spares_the_fresh(db):
    yield db.insertTestData(processorsAndJobs())
    assert (yield db.processors.expireProcessors(3600, now=T0 + 12 * MINUTE)) == []
    assert (yield db.processors.expireProcessors(60.0, now=T0 + 12 * MINUTE)) == [1, 2]
    assert (yield claims(db)) == {10: None, 11: 1, 12: None, 13: None}


@pytest_twisted.inlineCallbacks
def test_expire_processors_sweeps_claims_of_a_stale_inactive_processor(db):
    # expired once, it claimed again before its next heartbeat, then died
    yield db.insertTestData([
        fakedb.Processor(id=1, name="p1", active=False, last_active=T0),
        fakedb.Processor(id=2, name="p2", active=False, last_active=T0 + 10 * MINUTE),
        fakedb.Job(id=10, claimed_by_processorid=1, claimed_at=T0 + MINUTE),
        fakedb.Job(id=12, claimed_by_processorid=2, claimed_at=T0 + 10 * MINUTE),
    ])
    assert (yield db.processors.expireProcessors(5 * MINUTE, now=T0 + 12 * MINUTE)) == []
    assert (yield claims(db)) == {10: None, 12: 2}


@pytest_twisted.inlineCallbacks
def test_expire_processors_rejects_bad_arguments(db):
    yield db.insertTestData(processorsAndJobs())
    for timeout in (-1, datetime.timedelta(seconds=-1), "60", None, True, float("nan"), 1e300):
        with pytest.raises(InvalidInputError) as info:
            yield db.processors.expireProcessors(timeout, now=T0)
        assert info.value.field == "timeout"
    with pytest.raises(InvalidInputError) as info:
        yield db.processors.expireProcessors(60, now=datetime.datetime(2012, 10, 16))
    assert info.value.field == "now"
    assert (yield claims(db))[10] == 1


@pytest_twisted.inlineCallbacks
def test_set_processor_state_rejects_bad_arguments(db):
    with pytest.raises(InvalidInputError) as info:
        yield db.processors.setProcessorState("1", True)
    assert info.value.field == "processorid"
    with pytest.raises(InvalidInputError) as info:
        yield db.processors.setProcessorState(1, 1)
    assert info.value.field == "active"
    with pytest.raises(InvalidInputError):
        yield db.processors.getProcessor(None)


# -- crashdb housekeeping (cron) -----------------------------------------------------------------


def crashdbCommand(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crashdb", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("dbUrl", ["sqlite", "postgresql"], indirect=True)
def test_housekeeping_expires_silent_processors_and_prunes_old_jobs(dbUrl):
    now = datetime.datetime.now(UTC)
    engine = sa.create_engine(dbUrl)
    try:
        with engine.begin() as conn:
            conn.execute(model.processors.insert(), [
                {"id": 1, "name": "dead", "active": True, "last_active": now - 10 * MINUTE},
                {"id": 2, "name": "alive", "active": True, "last_active": now},
            ])
            job = {"queued_at": now, "claimed_at": now, "complete": False, "success": None,
                   "completed_at": None}  # an executemany takes its columns from the first row
            conn.execute(model.jobs.insert(), [
                {**job, "id": 1, "uuid": "held-by-dead", "claimed_by_processorid": 1},
                {**job, "id": 2, "uuid": "held-by-alive", "claimed_by_processorid": 2},
                {**job, "id": 3, "uuid": "old", "claimed_by_processorid": 2, "complete": True,
                 "success": True, "completed_at": now - datetime.timedelta(days=8)},
                {**job, "id": 4, "uuid": "recent", "claimed_by_processorid": 2, "complete": True,
                 "success": True, "completed_at": now - datetime.timedelta(days=6)},
            ])
        result = crashdbCommand("housekeeping", "--db", dbUrl)
        assert result.returncode == 0, result.stderr
        assert "expired processors 1 " in result.stdout
        assert "pruned 1 jobs" in result.stdout
        with engine.connect() as conn:
            jobs = dict(conn.execute(sa.select(model.jobs.c.uuid,
                                               model.jobs.c.claimed_by_processorid)).all())
            active = dict(conn.execute(sa.select(model.processors.c.name,
                                                 model.processors.c.active)).all())
        assert jobs == {"held-by-dead": None, "held-by-alive": 2, "recent": 2}
        assert active == {"dead": False, "alive": True}

        again = crashdbCommand("housekeeping", "--db", dbUrl, "--keep-days", "0",
                               "--no-expire")
        assert again.returncode == 0, again.stderr
        assert "pruned 1 jobs" in again.stdout and "expire" not in again.stdout
    finally:
        engine.dispose()


@pytest.mark.parametrize("flag", [["--expire-after", "0"], ["--keep-days", "-1"],
                                  ["--keep-days", "1e12"]])
def test_housekeeping_rejects_bad_flags_in_one_line(dbUrl, flag):
    result = crashdbCommand("housekeeping", "--db", dbUrl, *flag)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("crashdb: error:")

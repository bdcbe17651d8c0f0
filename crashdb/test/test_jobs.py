"""Behaviour of the ``jobs`` component (the claim rules one by one), on the fake, SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from crashdb import jobs as jobsmodule
from crashdb.exceptions import AlreadyClaimedError, InvalidInputError, NotClaimedError
from crashdb.test.fake import fakedb
from crashdb.test.util import db as dbutil

pytestmark = pytest.mark.citus  # also on a coordinator with two workers (SPEC 17)

UTC = datetime.UTC
T0 = datetime.datetime(2012, 10, 16, 12, 0, tzinfo=UTC)
MINUTE = datetime.timedelta(minutes=1)
JOB_KEYS = {"jobid", "uuid", "priority", "queued_at", "claimed", "claimed_at",
            "claimed_by_processorid", "complete", "completed_at", "success", "message"}


def twoProcessors():
    return [fakedb.Processor(id=1, name="p1", active=True, last_active=T0),
            fakedb.Processor(id=2, name="p2", active=True, last_active=T0)]


def queue():
    """Jobs 1-3 free, 4 claimed by p2, 5 completed by p1, 6 claimed by p1."""
    return twoProcessors() + [
        fakedb.Job(id=1, uuid="u1"),
        fakedb.Job(id=2, uuid="u2"),
        fakedb.Job(id=3, uuid="u3"),
        fakedb.Job(id=4, uuid="u4", claimed_by_processorid=2, claimed_at=T0),
        fakedb.Job(id=5, uuid="u5", claimed_by_processorid=1, claimed_at=T0, complete=True,
                   completed_at=T0, success=True, message="ok"),
        fakedb.Job(id=6, uuid="u6", claimed_by_processorid=1, claimed_at=T0),
    ]


@pytest_twisted.inlineCallbacks
def state(db):
    """``{jobid: (claimed_by_processorid, complete)}`` of every job."""
    jobs = yield db.jobs.getJobs()
    return {j["jobid"]: (j["claimed_by_processorid"], j["complete"]) for j in jobs}


# -- addJobs, getJob, getJobs -------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_add_jobs_returns_ids_in_order_and_keeps_queued_uuids(db):
    ids = yield db.jobs.addJobs(["a", "b", "c"], priority=5)
    assert len(set(ids)) == 3
    again = yield db.jobs.addJobs(["c", "d", "a", "d"], priority=9)
    assert again[0] == ids[2] and again[2] == ids[0] and again[1] == again[3]
    job = yield db.jobs.getJob(ids[0])
    assert job["priority"] == 5  # an existing job is left as it was
    assert len((yield db.jobs.getJobs())) == 4
    assert (yield db.jobs.addJobs([])) == []


@pytest_twisted.inlineCallbacks
def test_add_jobs_in_bulk(db):
    uuids = [f"crash-{i:05d}" for i in range(2500)]  # more than SQLite's 999 variables
    ids = yield db.jobs.addJobs(uuids)
    assert len(set(ids)) == 2500
    job = yield db.jobs.getJob(ids[1234])
    assert job["uuid"] == "crash-01234"


@pytest_twisted.inlineCallbacks
def test_add_jobs_rejects_bad_input_and_writes_nothing(db):
    cases = [
        ("u1", "uuids", None),
        (["ok", "x" * 51], "uuids", 1),
        (["ok", "nul\x00"], "uuids", 1),
        (["ok", ""], "uuids", 1),
        (["ok", 7], "uuids", 1),
    ]
    for uuids, field, index in cases:
        with pytest.raises(InvalidInputError) as info:
            yield db.jobs.addJobs(uuids)
        assert (info.value.field, info.value.index) == (field, index)
    for priority in ("1", 2**31, True, None):
        with pytest.raises(InvalidInputError) as info:
            yield db.jobs.addJobs(["ok"], priority=priority)
        assert info.value.field == "priority"
    assert (yield db.jobs.getJobs()) == []


@pytest_twisted.inlineCallbacks
def test_get_job_returns_a_jobdict_with_aware_times(db):
    before = datetime.datetime.now(UTC)
    [jobid] = yield db.jobs.addJobs(["uuid-1"], priority=3)
    job = yield db.jobs.getJob(jobid)
    assert set(job) == JOB_KEYS
    assert job["jobid"] == jobid and job["uuid"] == "uuid-1" and job["priority"] == 3
    assert before <= job["queued_at"] <= datetime.datetime.now(UTC)
    assert job["queued_at"].tzinfo is not None
    assert (job["claimed"], job["claimed_at"], job["claimed_by_processorid"]) == (False, None, None)
    assert (job["complete"], job["completed_at"], job["success"], job["message"]) == (
        False, None, None, None)
    assert (yield db.jobs.getJob(jobid + 1000)) is None


@pytest_twisted.inlineCallbacks
def test_get_jobs_filters_by_claim_and_completion(db):
    yield db.insertTestData(queue())

    def ids(jobs):
        return [j["jobid"] for j in jobs]

    assert ids((yield db.jobs.getJobs())) == [1, 2, 3, 4, 5, 6]
    assert ids((yield db.jobs.getJobs(claimed=True))) == [4, 5, 6]
    assert ids((yield db.jobs.getJobs(claimed=False))) == [1, 2, 3]
    assert ids((yield db.jobs.getJobs(claimed=1))) == [5, 6]  # a completed job keeps its claim
    assert ids((yield db.jobs.getJobs(claimed=2))) == [4]
    assert ids((yield db.jobs.getJobs(complete=True))) == [5]
    assert ids((yield db.jobs.getJobs(claimed=1, complete=False))) == [6]
    assert ids((yield db.jobs.getJobs(complete=False, limit=2))) == [1, 2]
    assert (yield db.jobs.getJobs(limit=0)) == []
    done = (yield db.jobs.getJobs(complete=True))[0]
    assert done["claimed"] is True and done["success"] is True and done["message"] == "ok"


@pytest_twisted.inlineCallbacks
def test_get_jobs_rejects_bad_filters(db):
    for kw, field in [({"claimed": "yes"}, "claimed"), ({"complete": 1}, "complete"),
                      ({"limit": -1}, "limit"), ({"limit": 1.5}, "limit")]:
        with pytest.raises(InvalidInputError) as info:
            yield db.jobs.getJobs(**kw)
        assert info.value.field == field


# -- claimJobs ------------------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_claim_jobs_claims_them_all(db):
    yield db.insertTestData(queue())
    yield db.jobs.claimJobs([1, 2], 1, claimed_at=T0 + MINUTE)
    job = yield db.jobs.getJob(2)
    assert (job["claimed"], job["claimed_by_processorid"], job["claimed_at"]) == (
        True, 1, T0 + MINUTE)
    assert (yield state(db))[3] == (None, False)


@pytest_twisted.inlineCallbacks
def test_claim_is_all_or_nothing(db):
    yield db.insertTestData(queue())
    before = yield state(db)
    # 4 is claimed by p2, 5 is complete, 99 does not exist: each spoils the whole claim
    for spoiler in (4, 5, 99):
        with pytest.raises(AlreadyClaimedError) as info:
            yield db.jobs.claimJobs([1, 2, spoiler, 3], 1)
        assert str(spoiler) in str(info.value)
        assert (yield state(db)) == before


@pytest_twisted.inlineCallbacks
def test_claim_is_all_or_nothing_across_batches(db):
    # more ids than one statement takes on SQLite: the first batches' claims are rolled back
    yield db.insertTestData(twoProcessors())
    ids = yield db.jobs.addJobs([f"u{i}" for i in range(1200)])
    yield db.jobs.claimJobs([ids[-1]], 2)
    with pytest.raises(AlreadyClaimedError):
        yield db.jobs.claimJobs(ids, 1)
    assert (yield db.jobs.getJobs(claimed=1)) == []
    yield db.jobs.claimJobs(ids[:-1], 1)
    assert len((yield db.jobs.getJobs(claimed=1))) == 1199


@pytest_twisted.inlineCallbacks
def test_reclaiming_own_claim_refreshes_claimed_at(db):
    yield db.insertTestData(queue())
    yield db.jobs.claimJobs([6, 1, 6], 1, claimed_at=T0 + 5 * MINUTE)
    assert (yield db.jobs.getJob(6))["claimed_at"] == T0 + 5 * MINUTE
    assert (yield db.jobs.getJob(1))["claimed_by_processorid"] == 1


@pytest_twisted.inlineCallbacks
def test_claim_by_unknown_processor_is_invalid_input(db):
    yield db.insertTestData(queue())
    with pytest.raises(InvalidInputError) as info:
        yield db.jobs.claimJobs([1], 77)
    assert info.value.field == "processorid"
    with pytest.raises(InvalidInputError) as info:
        yield db.jobs.claimNextJobs(77, limit=2)
    assert info.value.field == "processorid"
    assert (yield state(db))[1] == (None, False)


@pytest_twisted.inlineCallbacks
def test_claim_rejects_bad_arguments(db):
    yield db.insertTestData(queue())
    cases = [
        (([1, "2"], 1), {}, "jobids"),
        ((1, 1), {}, "jobids"),
        (([1], None), {}, "processorid"),
        (([1], 1), {"claimed_at": datetime.datetime(2012, 1, 1)}, "claimed_at"),
    ]
    for args, kw, field in cases:
        with pytest.raises(InvalidInputError) as info:
            yield db.jobs.claimJobs(*args, **kw)
        assert info.value.field == field
    with pytest.raises(InvalidInputError) as info:
        yield db.jobs.claimJobs([1, True], 1)
    assert info.value.index == 1
    assert (yield state(db))[1] == (None, False)


# -- claimNextJobs --------------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_claim_next_jobs_takes_highest_priority_then_oldest(db):
    yield db.insertTestData(twoProcessors() + [
        fakedb.Job(id=1, priority=0, queued_at=T0),
        fakedb.Job(id=2, priority=5, queued_at=T0 + MINUTE),
        fakedb.Job(id=3, priority=5, queued_at=T0),
        fakedb.Job(id=4, priority=0, queued_at=T0 - MINUTE),
        fakedb.Job(id=5, priority=0, queued_at=T0),
        fakedb.Job(id=6, priority=9, queued_at=T0, complete=True),
        fakedb.Job(id=7, priority=9, queued_at=T0, claimed_by_processorid=2, claimed_at=T0),
    ])
    first = yield db.jobs.claimNextJobs(1, limit=3)
    assert [j["jobid"] for j in first] == [3, 2, 4]
    assert all(j["claimed"] and j["claimed_by_processorid"] == 1 for j in first)
    assert all(j["claimed_at"].tzinfo is not None and set(j) == JOB_KEYS for j in first)
    rest = yield db.jobs.claimNextJobs(2, limit=10)
    assert [j["jobid"] for j in rest] == [1, 5]
    assert (yield db.jobs.claimNextJobs(1)) == []


@pytest_twisted.inlineCallbacks
def test_claim_next_jobs_defaults_to_one(db):
    yield db.insertTestData(twoProcessors())
    yield db.jobs.addJobs(["a", "b"])
    claimed = yield db.jobs.claimNextJobs(1)
    assert [j["uuid"] for j in claimed] == ["a"]


@pytest_twisted.inlineCallbacks
def test_claim_next_jobs_rejects_bad_arguments(db):
    for args, field in [(("1",), "processorid"), ((1, 0), "limit"), ((1, "2"), "limit")]:
        with pytest.raises(InvalidInputError) as info:
            yield db.jobs.claimNextJobs(*args)
        assert info.value.field == field


@pytest_twisted.inlineCallbacks
def test_concurrent_claimers_never_get_the_same_job(realdb):
    db = realdb
    processors = [fakedb.Processor(id=i, name=f"p{i}") for i in range(1, 9)]
    yield db.insertTestData(processors)
    yield db.jobs.addJobs([f"u{i}" for i in range(400)])
    taken: list[int] = []
    while True:
        # eight claimers at once, on as many threads as the pool has
        batches = yield defer.gatherResults(
            [db.jobs.claimNextJobs(p.id, limit=7) for p in processors])
        got = [j["jobid"] for batch in batches for j in batch]
        if not got:
            break
        taken.extend(got)
    assert len(taken) == len(set(taken)) == 400
    assert (yield db.jobs.getJobs(claimed=False)) == []


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_claim_next_jobs_skips_rows_locked_by_another_claimer(dbUrl):
    """On PostgreSQL a claimer holding rows does not make the next one wait: it gets others."""
    db = dbutil.TestDBConnector(dbUrl)
    engine = sa.create_engine(dbUrl)
    try:
        yield db.insertTestData(twoProcessors())
        yield db.jobs.addJobs(["a", "b", "c"])
        with engine.connect() as other:
            other.exec_driver_sql("SET lock_timeout = '2s'")
            held = other.execute(db.jobs._claimNext, {
                "processorid": 2, "claimed_at": T0, "limit": 2}).all()  # not committed
            assert len(held) == 2
            from twisted.internet import reactor

            # were it to wait for the locked rows, the timeout would fail the test
            claimed = yield db.jobs.claimNextJobs(1, limit=3).addTimeout(10, reactor)
            assert [j["uuid"] for j in claimed] == ["c"]
            other.rollback()
        again = yield db.jobs.claimNextJobs(1, limit=3)
        assert [j["uuid"] for j in again] == ["a", "b"]
    finally:
        engine.dispose()
        yield db.stop()


@pytest_twisted.inlineCallbacks
def test_claim_query_scans_the_partial_index(realdb):
    """The claim stays an index scan of jobs_unclaimed_idx however many completed jobs pile up."""
    db = realdb
    yield db.insertTestData(twoProcessors())
    ids = yield db.jobs.addJobs([f"u{i}" for i in range(4000)])
    yield db.jobs.claimJobs(ids[:2500], 1)
    yield db.jobs.completeJobs(ids[:2000], 1, True)  # 2,000 done, 500 running, 1,500 queued
    statement = db.jobs._claimNext.compile(
        dialect=db.engine.dialect, compile_kwargs={"literal_binds": False})
    params = {"processorid": 1, "claimed_at": T0, "limit": 10}

    def explain(conn):
        if db.kind in ("postgresql", "citus"):
            conn.exec_driver_sql("ANALYZE jobs")
            prefix = "EXPLAIN "
        else:
            conn.exec_driver_sql("ANALYZE")
            prefix = "EXPLAIN QUERY PLAN "
        rows = conn.exec_driver_sql(prefix + str(statement), tuple(
            statement.construct_params(params)[name] for name in statement.positiontup
        ) if statement.positional else statement.construct_params(params))
        return "\n".join(str(row) for row in rows)

    plan = yield db.pool.do(explain)
    assert "jobs_unclaimed_idx" in plan, plan
    if db.kind in ("postgresql", "citus"):
        assert "LockRows" in plan and "Seq Scan" not in plan, plan


# -- unclaimJobs ----------------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_unclaim_releases_only_own_incomplete_claims(db):
    yield db.insertTestData(queue())
    yield db.jobs.unclaimJobs([4, 5, 6, 1, 99], 1)
    after = yield state(db)
    assert after == {1: (None, False), 2: (None, False), 3: (None, False), 4: (2, False),
                     5: (1, True), 6: (None, False)}
    assert (yield db.jobs.getJob(6))["claimed_at"] is None


# -- completeJobs ---------------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_complete_jobs_records_the_outcome_and_keeps_the_claim(db):
    yield db.insertTestData(queue())
    yield db.jobs.claimJobs([1, 2], 1, claimed_at=T0)
    yield db.jobs.completeJobs([1, 6], 1, False, message="boom", completed_at=T0 + MINUTE)
    yield db.jobs.completeJobs([2], 1, True)
    failed = yield db.jobs.getJob(6)
    assert (failed["complete"], failed["success"], failed["message"], failed["completed_at"]) == (
        True, False, "boom", T0 + MINUTE)
    assert (failed["claimed_by_processorid"], failed["claimed_at"]) == (1, T0)
    done = yield db.jobs.getJob(2)
    assert done["success"] is True and done["message"] is None
    assert done["completed_at"] > T0


@pytest_twisted.inlineCallbacks
def test_complete_jobs_not_ours_raises_and_changes_nothing(db):
    yield db.insertTestData(queue())
    before = yield db.jobs.getJobs()
    # 1 unclaimed, 4 claimed by p2, 5 already complete, 99 unknown
    for spoiler in (1, 4, 5, 99):
        with pytest.raises(NotClaimedError) as info:
            yield db.jobs.completeJobs([6, spoiler], 1, True)
        assert str(spoiler) in str(info.value)
        assert (yield db.jobs.getJobs()) == before


@pytest_twisted.inlineCallbacks
def test_complete_jobs_rejects_bad_arguments(db):
    yield db.insertTestData(queue())
    cases = [
        (([6], 1, "yes"), {}, "success"),
        (([6], 1, True), {"message": "nul\x00"}, "message"),
        (([6], 1, True), {"message": 5}, "message"),
        (([6], 1, True), {"completed_at": datetime.datetime(2012, 1, 1)}, "completed_at"),
        (([6.0], 1, True), {}, "jobids"),
    ]
    for args, kw, field in cases:
        with pytest.raises(InvalidInputError) as info:
            yield db.jobs.completeJobs(*args, **kw)
        assert info.value.field == field
    assert (yield state(db))[6] == (1, False)


# -- pruneJobs ------------------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_prune_jobs_deletes_only_jobs_completed_before_the_cutoff(db, monkeypatch):
    monkeypatch.setattr(jobsmodule, "PRUNE_CHUNK", 3)  # several chunks
    rows = twoProcessors()
    for i in range(1, 8):  # completed 1..7 minutes after T0
        rows.append(fakedb.Job(id=i, claimed_by_processorid=1, claimed_at=T0, complete=True,
                               completed_at=T0 + i * MINUTE, success=True))
    rows.append(fakedb.Job(id=20, claimed_by_processorid=2, claimed_at=T0))
    rows.append(fakedb.Job(id=21))
    yield db.insertTestData(rows)
    deleted = yield db.jobs.pruneJobs(T0 + 7 * MINUTE)
    assert deleted == 6
    assert sorted((yield state(db))) == [7, 20, 21]
    assert (yield db.jobs.pruneJobs(T0 + 7 * MINUTE)) == 0
    with pytest.raises(InvalidInputError):
        yield db.jobs.pruneJobs(datetime.datetime(2012, 1, 1))

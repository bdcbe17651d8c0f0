"""Racing writers into a week that has no partition yet all succeed, each row stored once; a
one-week query reads one partition."""

from __future__ import annotations

import datetime
import multiprocessing

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from crashdb import partitions
from crashdb.partitions import WEEK, weekStart

UTC = datetime.UTC
WHEN = datetime.datetime(2015, 3, 4, 5, 6, tzinfo=UTC)


def reportsOf(prefix: str, count: int) -> list[dict]:
    return [{"uuid": f"{prefix}-{i}", "date_processed": WHEN + datetime.timedelta(seconds=i),
             "signature": "race"} for i in range(count)]


@pytest_twisted.inlineCallbacks
def test_many_threads_create_the_same_missing_week(realdb):
    calls = [realdb.reports.addReports(reportsOf(f"t{n}", 20)) for n in range(12)]
    calls += [realdb.rawcrashes.addRawCrash(f"raw{n}", WHEN, {"n": n}) for n in range(12)]
    results = yield defer.gatherResults(calls, consumeErrors=True)
    ids = [i for batch in results[:12] for i in batch]
    assert len(ids) == len(set(ids)) == 240
    assert (yield realdb.reports.countReports(signature="race")) == 240
    parts = yield realdb.partitions.getPartitions()
    assert [p["name"] for p in parts] == [f"{t}_20150302" for t in
                                          ("extensions", "plugins_reports", "raw_crashes",
                                           "reports")]


def _insertFromProcess(url: str, prefix: str, barrier) -> None:
    from twisted.internet import defer, task

    from crashdb.connector import DBConnector

    @defer.inlineCallbacks
    def main(reactor):
        db = DBConnector(url, reactor=reactor)
        yield db.setup()
        barrier.wait(30)
        yield defer.gatherResults(
            [db.reports.addReports(reportsOf(f"{prefix}-{n}", 25)) for n in range(4)],
            consumeErrors=True)
        yield db.stop()

    task.react(main)


@pytest_twisted.inlineCallbacks
def test_several_processes_create_the_same_missing_week(realdb):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    workers = [context.Process(target=_insertFromProcess, args=(realdb.db_url, f"p{n}", barrier))
               for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    count = yield realdb.reports.countReports(signature="race")
    assert count == 4 * 4 * 25
    ids = yield realdb.pool.do(lambda conn: conn.exec_driver_sql(
        "SELECT count(DISTINCT id), count(DISTINCT uuid) FROM reports_20150302").one())
    assert tuple(ids) == (400, 400)


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
def test_one_week_query_prunes_to_one_partition_among_many(dbUrl):
    from crashdb.backends import createEngine

    engine, backend, _ = createEngine(dbUrl)
    try:
        first = weekStart(WHEN)
        for n in range(24):
            partitions.createWeek(engine, backend, first + n * WEEK)
        start = first + 10 * WEEK
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            plan = "\n".join(conn.execute(sa.text(
                "EXPLAIN SELECT * FROM reports WHERE date_processed >= :start"
                " AND date_processed < :end AND product = 'Firefox'"),
                {"start": start, "end": start + WEEK}).scalars())
    finally:
        engine.dispose()
    touched = {word for word in plan.replace("(", " ").split() if word.startswith("reports_")}
    assert touched == {f"reports_{start:%Y%m%d}"}, plan


def test_sqlite_reads_only_overlapping_children(tmp_path):
    from crashdb.backends import createEngine
    from crashdb.test.util.db import upgradeUrl

    url = f"sqlite:///{tmp_path / 'many.sqlite'}"
    upgradeUrl(url)
    engine, backend, _ = createEngine(url)
    try:
        first = weekStart(WHEN)
        for n in range(24):
            partitions.createWeek(engine, backend, first + n * WEEK)
        with engine.connect() as conn:
            one = partitions.readable(conn, backend, "reports", first + 3 * WEEK, first + 4 * WEEK)
            two = partitions.readable(conn, backend, "reports", first + 3 * WEEK, first + 4 * WEEK
                                    + datetime.timedelta(seconds=1))
            sql = str(two.compile())
            narrow = partitions.readable(conn, backend, "reports", first + 3 * WEEK,
                                         first + 5 * WEEK, columns=("uuid", "signature"))
            rows = conn.execute(sa.select(narrow)).all()
    finally:
        engine.dispose()
    assert one.name == f"reports_{first + 3 * WEEK:%Y%m%d}"
    assert list(narrow.c.keys()) == ["uuid", "signature"] and rows == []
    assert sorted(set(w for w in sql.replace(",", " ").replace(".", " ").split()
                      if w.startswith("reports_"))) == [
        f"reports_{first + 3 * WEEK:%Y%m%d}", f"reports_{first + 4 * WEEK:%Y%m%d}"]

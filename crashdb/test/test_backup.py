"""Backup and restore as docs/backup.md tells an operator: ``pg_dump -Fc`` of a working crashdb
database, ``pg_restore`` into an empty one, and crashdb carries on there."""

from __future__ import annotations

import datetime
import random
import uuid as uuidlib

import pytest
import pytest_twisted
import sqlalchemy as sa

from crashdb import model
from crashdb.exceptions import DatabaseNotReadyError
from crashdb.test.util import db as dbutil
from crashdb.test.util.legacy import newEmptyPostgresDatabase
from crashdb.test.util.pgschema import describeTable, runClient

UTC = datetime.UTC
WEEKS = [datetime.datetime(2012, 10, 15, tzinfo=UTC) + datetime.timedelta(days=7 * n)
         for n in range(3)]


def _report(rng: random.Random, monday: datetime.datetime) -> dict:
    return {
        "uuid": str(uuidlib.UUID(int=rng.getrandbits(128))),
        "date_processed": monday + datetime.timedelta(seconds=rng.randrange(604800)),
        "product": rng.choice(["Firefox", "Thunderbird"]),
        "version": rng.choice(["16.0", "17.0b1"]),
        "signature": rng.choice(["js::GC", "nsFoo::Bar"]),
        "extensions": [{"extension_id": f"ext{n}@example.com", "extension_version": "1.0"}
                       for n in range(rng.randrange(3))],
        "plugins": [{"filename": "flash.dll", "name": "Flash", "version": "11.4"}]
        if rng.random() < 0.5 else [],
    }


@pytest.fixture
def restoreUrl():
    """The URL of a new empty database to restore into (dropped afterwards)."""
    url = newEmptyPostgresDatabase("crashdb_restore")
    yield url
    dbutil.postgres.dropDatabase(url)


def _schema(conn: sa.Connection) -> dict:
    names = conn.exec_driver_sql(
        "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p')"
        " AND relnamespace = current_schema()::regnamespace").scalars().all()
    return {name: describeTable(conn, name) for name in names}


def _everything(conn: sa.Connection) -> dict:
    """Every row of every crashdb table, for comparing two databases."""
    rows = {}
    for table in model.tablesFor("postgresql"):
        keys = [c for c in table.c]
        rows[table.name] = sorted(tuple(row) for row in conn.execute(
            sa.select(*keys).order_by(*keys)))
    return rows


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_pg_dump_restored_into_an_empty_database_is_a_working_crashdb(dbUrl, restoreUrl,
                                                                     tmp_path):
    rng = random.Random(2012)
    source = dbutil.TestDBConnector(dbUrl)
    yield source.setup()
    try:
        reports = [_report(rng, rng.choice(WEEKS)) for _ in range(60)]
        ids = yield source.reports.addReports(reports)
        yield source.rawcrashes.addRawCrash(reports[0]["uuid"], reports[0]["date_processed"],
                                            {"ProductName": "Firefox"})
        yield source.jobs.addJobs([r["uuid"] for r in reports[:5]])
        # a writer that is not crashdb, without ids
        runClient("psql", dbUrl, "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-c",
                  "INSERT INTO reports (uuid, date_processed, product)"
                  " VALUES ('from-psql', '2012-10-16 00:00:00+00', 'Firefox')")
        partitions = yield source.partitions.getPartitions()
        schema = yield source.pool.do(_schema)
        data = yield source.pool.do(_everything)
    finally:
        yield source.stop()

    dump = tmp_path / "crashdb.dump"
    runClient("pg_dump", dbUrl, "--format=custom", "--file", str(dump))
    runClient("pg_restore", restoreUrl, "--exit-on-error", str(dump))

    restored = dbutil.TestDBConnector(restoreUrl)
    yield restored.setup()  # check_version: the alembic version came along
    try:
        assert (yield restored.model.is_current()) is True
        assert (yield restored.partitions.getPartitions()) == partitions
        assert (yield restored.pool.do(_schema)) == schema  # every table, index, default
        assert (yield restored.pool.do(_everything)) == data
        for report, report_id in zip(reports, ids):
            got = yield restored.reports.getReport(report["uuid"], report["date_processed"])
            assert got["id"] == report_id and got["signature"] == report["signature"]

        # new reports go in, new weeks too, and ids continue after the restored ones
        newWeek = WEEKS[-1] + datetime.timedelta(days=7)
        more = [_report(rng, monday) for monday in (WEEKS[0], newWeek) for _ in range(20)]
        moreIds = yield restored.reports.addReports(more)
        stored = max(row[0] for row in data["reports"])
        assert stored >= max(ids) and min(moreIds) > stored
        assert len(set(moreIds)) == len(moreIds)
        names = {p["name"] for p in (yield restored.partitions.getPartitions("reports"))}
        assert f"reports_{newWeek:%Y%m%d}" in names
        for report, report_id in zip(more, moreIds):
            got = yield restored.reports.getReport(report["uuid"], report["date_processed"])
            assert got["id"] == report_id
            extensions = yield restored.extensions.getExtensions(report_id,
                                                                 report["date_processed"])
            assert [e["extension_id"] for e in extensions] == [
                e["extension_id"] for e in report["extensions"]]
        runClient("psql", restoreUrl, "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-c",
                  "INSERT INTO reports (uuid, date_processed)"
                  " VALUES ('psql-after', '2012-11-06 00:00:00+00')")
        got = yield restored.reports.getReport("psql-after")
        assert got["id"] > max(moreIds)
    finally:
        yield restored.stop()


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_a_restore_without_the_version_table_is_refused(dbUrl, restoreUrl, tmp_path):
    """What docs/backup.md warns of: leave ``alembic_version`` out of a restore and crashdb
    refuses the database rather than guessing its schema."""
    dump = tmp_path / "crashdb.dump"
    runClient("pg_dump", dbUrl, "--format=custom", "--file", str(dump),
              "--exclude-table=alembic_version")
    runClient("pg_restore", restoreUrl, "--exit-on-error", str(dump))
    restored = dbutil.TestDBConnector(restoreUrl)
    try:
        with pytest.raises(DatabaseNotReadyError):
            yield restored.setup()
    finally:
        yield restored.stop()

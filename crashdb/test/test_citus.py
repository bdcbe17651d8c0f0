"""crashdb on a Citus cluster (SPEC 17): what ``upgrade-db`` makes of each table, weekly
children distributed with their parents, the bulk path and ids, and what it refuses.

The behaviour suites run on the same cluster through the ``citus`` marker; these tests look at
the cluster's own catalog."""

from __future__ import annotations

import datetime
import io
import itertools

import pytest
import pytest_twisted
import sqlalchemy as sa

from crashdb import model
from crashdb.backends.citus import referenceTables
from crashdb.test.test_cli import crashdb
from crashdb.test.util.db import PostgresUnavailable, citus, requirePostgres

UTC = datetime.UTC
MONDAY = datetime.datetime(2012, 10, 15, tzinfo=UTC)
_names = itertools.count(1)


@pytest.fixture
def cluster():
    try:
        return citus.cluster()
    except PostgresUnavailable as error:
        if requirePostgres():
            pytest.fail(str(error))
        pytest.skip(str(error))


def _query(url: str, statement: str, **params) -> list[tuple]:
    engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg2"),
                              poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            return [tuple(row) for row in conn.execute(sa.text(statement), params)]
    finally:
        engine.dispose()


def _kinds(url: str) -> dict[str, tuple[str, int]]:
    """``{table: (Citus's partition method, co-location group)}`` of every Citus table."""
    return {name: (method, group) for name, method, group in _query(
        url, "SELECT logicalrelid::regclass::text, partmethod, colocationid"
             " FROM pg_dist_partition")}


def test_upgrade_db_distributes_the_schema(cluster):
    url = cluster.createDatabase(f"crashdb_fresh_{next(_names)}")
    result = crashdb("upgrade-db", "--db", url)
    assert result.returncode == 0, result.stderr
    assert "distributed on uuid" in result.stdout
    kinds = _kinds(url)
    crashData = {kinds[name] for name in model.PARTITIONED_TABLES}
    assert len(crashData) == 1 and next(iter(crashData))[0] == "h"  # hashed, one group
    assert {name for name, (method, _) in kinds.items() if method == "n"} >= set(
        referenceTables()) | {"jobs"}
    types = dict(_query(url, "SELECT table_name::text, citus_table_type FROM citus_tables"))
    assert {name: types[name] for name in referenceTables()} == {
        name: "reference" for name in referenceTables()}  # copied to every node
    assert {types[name] for name in model.PARTITIONED_TABLES} == {"distributed"}
    shards = _query(url, "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'jobs'::regclass")
    placements = _query(url, "SELECT DISTINCT nodeport FROM pg_dist_shard_placement p"
                             " JOIN pg_dist_shard s USING (shardid)"
                             " WHERE s.logicalrelid = 'jobs'::regclass")
    assert shards == [(1,)] and placements == [(cluster.coordinator.port,)]  # on the coordinator
    again = crashdb("upgrade-db", "--db", url)  # idempotent
    assert again.returncode == 0, again.stderr
    assert _kinds(url) == kinds


@pytest.mark.parametrize("db", ["citus"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_weeks_are_distributed_with_their_parents_on_every_worker(db):
    created = yield db.partitions.ensureWeek(MONDAY)
    assert len(created) == 4
    url = db.engine.url.render_as_string(hide_password=False)
    kinds = _kinds(url)
    assert {kinds[name] for name in created} == {kinds["reports"]}  # co-located with the rest
    workers = _query(url, "SELECT DISTINCT nodeport FROM pg_dist_shard_placement p"
                          " JOIN pg_dist_shard s USING (shardid)"
                          " WHERE s.logicalrelid = 'reports_20121015'::regclass")
    assert len(workers) == 2
    yield db.reports.addReports([{"uuid": f"u{n}", "date_processed": MONDAY} for n in range(3)])
    sizes = yield db.partitions.getPartitionSizes()  # crashdb partitions list: the shards'
    assert sizes["reports_20121015"][0] == 3 and sizes["reports_20121015"][1] > 0
    dropped = yield db.partitions.dropWeeksBefore(MONDAY + datetime.timedelta(days=7))
    assert sorted(dropped) == sorted(created)
    assert not set(created) & set(_kinds(url))


@pytest.mark.parametrize("db", ["citus"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_ids_stay_unique_between_the_bulk_path_and_a_plain_copy(db):
    reports = [{"uuid": f"bulk-{n}", "date_processed": MONDAY + datetime.timedelta(minutes=n),
                "signature": "s", "extensions": [{"extension_id": "a@b"}]} for n in range(500)]
    ids = yield db.reports.addReports(reports[:250])

    def copyWithoutIds(conn: sa.Connection) -> None:
        lines = "".join(f"copy-{n}\t{MONDAY + datetime.timedelta(hours=n)}\n" for n in range(100))
        cursor = conn.connection.dbapi_connection.cursor()
        cursor.copy_expert("COPY reports (uuid, date_processed) FROM STDIN", io.StringIO(lines))

    yield db.pool.do(copyWithoutIds)
    ids += yield db.reports.addReports(reports[250:])

    def stored(conn: sa.Connection) -> tuple[list, int]:
        rows = conn.execute(sa.select(model.reports.c.id)).scalars().all()
        extensions = conn.execute(sa.select(sa.func.count()).select_from(model.extensions).where(
            model.extensions.c.uuid.like("bulk-%"))).scalar_one()
        return rows, extensions

    rows, extensions = yield db.pool.do(stored)
    assert len(rows) == len(set(rows)) == 600
    assert set(ids) <= set(rows) and extensions == 500


def test_a_database_already_holding_weeks_is_not_distributed(cluster):
    name = f"crashdb_plain_{next(_names)}"
    url = cluster.createDatabase(name, citus=False)
    assert crashdb("upgrade-db", "--db", url).returncode == 0
    assert crashdb("partitions", "create", "--ahead", "0", "--db", url).returncode == 0
    cluster.addCitus(name)
    result = crashdb("upgrade-db", "--db", url)
    assert result.returncode == 1
    assert "already holds weeks" in result.stderr and "Traceback" not in result.stderr
    assert _kinds(url) == {}  # nothing distributed: the upgrade's transaction rolled back

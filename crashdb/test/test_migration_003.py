"""Migration 003 (the shared id sequence as every reports child's default) on a database made
by 002, whose children were made the old way, each with a SERIAL id of its own."""

from __future__ import annotations

import datetime
import random
import threading
import time
import uuid as uuidlib

import pytest
import sqlalchemy as sa

from crashdb import migrate, model, partitions
from crashdb.backends import createEngine
from crashdb.partitions import childTable, weekTables
from crashdb.test.test_schema import differences
from crashdb.test.util.db import upgradeTo, useModelBefore007
from crashdb.test.util.pgschema import describeTable

UTC = datetime.UTC
WEEKS = [datetime.datetime(2012, 10, 15, tzinfo=UTC) + datetime.timedelta(days=7 * n)
         for n in range(3)]
NEW_WEEK = WEEKS[-1] + datetime.timedelta(days=7)
SHARED = "nextval('reports_id_seq'::regclass)"


@pytest.fixture
def oldChildren(monkeypatch):
    """While active, children are made as before 003: every column copied from the parent as it
    is, which made ``reports_<week>.id`` a SERIAL with a sequence of its own on PostgreSQL (and
    as before 007: no uuid on the add-on tables)."""

    def use(active: bool) -> None:
        if active:
            useModelBefore007(monkeypatch)
            monkeypatch.setattr(partitions, "_childColumn",
                                lambda parent, column, spec, backend, keyed:
                                sa.Column(column.name, column.type, nullable=column.nullable))
        else:
            monkeypatch.undo()
        monkeypatch.setattr(partitions, "_child_metadata", {})

    return use


def _makeOld(engine, backend, oldChildren, rng: random.Random) -> dict[str, dict]:
    """A database at 002 with old children and data in every week: reports written as crashdb
    wrote them (ids reserved from the shared counter) with extensions, and on PostgreSQL rows
    written straight into the last week's child without ids, which drew from its own sequence
    (moved on to 500, as after a DBA's load). The rows by uuid."""
    assert upgradeTo(engine, backend, "002") == (None, "002")
    oldChildren(True)
    for monday in WEEKS:
        partitions.createWeek(engine, backend, monday)
    rows: dict[str, dict] = {}
    with engine.begin() as conn:
        for monday in WEEKS:
            reports = childTable("reports", monday, backend)
            extensions = childTable("extensions", monday, backend)
            for report_id in backend.reserveIds(conn, "reports", 5):
                row = {"id": report_id, "uuid": str(uuidlib.UUID(int=rng.getrandbits(128))),
                       "date_processed": monday + datetime.timedelta(hours=rng.randrange(168)),
                       "product": "Firefox"}
                conn.execute(reports.insert().values(**row))
                conn.execute(extensions.insert().values(
                    report_id=report_id, date_processed=row["date_processed"], extension_key=0,
                    extension_id="ext@example.com"))
                rows[row["uuid"]] = row
        if backend.name == "postgresql":
            child = f"reports_{WEEKS[-1]:%Y%m%d}"
            conn.exec_driver_sql(f"SELECT setval('{child}_id_seq', 500)")
            for n in range(3):
                row = {"uuid": f"dba-{n}", "date_processed": WEEKS[-1] + datetime.timedelta(
                    hours=n), "product": "Firefox"}
                row["id"] = conn.execute(sa.text(
                    f"INSERT INTO {child} (uuid, date_processed, product)"
                    " VALUES (:uuid, :date_processed, :product) RETURNING id"), row).scalar_one()
                rows[row["uuid"]] = row
    oldChildren(False)
    return rows


def _stored(conn, backend) -> dict[str, tuple]:
    reports = partitions.readable(conn, backend, "reports")
    return {uuid: (report_id, when) for uuid, report_id, when in conn.execute(
        sa.select(reports.c.uuid, reports.c.id, reports.c.date_processed))}


CATALOG = sa.text(
    "SELECT c.relname, c.relfilenode FROM pg_class c"
    " WHERE c.relname LIKE 'reports%' OR c.relname LIKE 'extensions%'"
)
DEFAULTS = sa.text(
    "SELECT c.relname, pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d"
    " JOIN pg_class c ON c.oid = d.adrelid JOIN pg_attribute a"
    " ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
    " WHERE a.attname = 'id' AND c.relname LIKE 'reports%'"
)
SEQUENCES = sa.text("SELECT relname FROM pg_class WHERE relkind = 'S' AND relname LIKE 'reports%'")


def test_upgrade_from_002_shares_the_sequence_without_rewriting(emptyUrl, oldChildren):
    engine, backend, _ = createEngine(emptyUrl)
    postgres_ = backend.name == "postgresql"
    try:
        rows = _makeOld(engine, backend, oldChildren, random.Random(3))
        names = [f"reports_{monday:%Y%m%d}" for monday in WEEKS]
        with engine.connect() as conn:
            before = _stored(conn, backend)
            if postgres_:
                files = dict(conn.execute(CATALOG).all())
                # the defect repaired: a stray sequence per child, the parent without default
                assert set(conn.execute(SEQUENCES).scalars()) == {"reports_id_seq"} | {
                    f"{name}_id_seq" for name in names}
                assert "reports" not in dict(conn.execute(DEFAULTS).all())
        assert {uuid: (row["id"], row["date_processed"]) for uuid, row in rows.items()} == before

        before_version, after = upgradeTo(engine, backend)
        assert (before_version, after) == ("002", migrate.headVersion())

        partitions.createWeek(engine, backend, NEW_WEEK)  # a child made after the upgrade
        with engine.begin() as conn:
            assert _stored(conn, backend) == before  # every row kept, ids unchanged
            extensions = partitions.readable(conn, backend, "extensions")
            assert sorted(conn.execute(sa.select(extensions.c.report_id)).scalars()) == sorted(
                row["id"] for uuid, row in rows.items() if not uuid.startswith("dba-"))
            assert differences(conn, weekTables(WEEKS[0], backend)
                               + weekTables(NEW_WEEK, backend)) == []
            if postgres_:
                now = dict(conn.execute(CATALOG).all())
                kept = {name: node for name, node in files.items() if not name.endswith("_seq")}
                assert {name: now[name] for name in kept} == kept  # nothing rewritten
                assert set(conn.execute(SEQUENCES).scalars()) == {"reports_id_seq"}
                defaults = dict(conn.execute(DEFAULTS).all())
                assert defaults == {name: SHARED for name in
                                    ["reports", *names, f"reports_{NEW_WEEK:%Y%m%d}"]}
                # a repaired child is exactly a child made by the new code
                old, new = (describeTable(conn, f"reports_{m:%Y%m%d}") for m in (WEEKS[0],
                                                                                NEW_WEEK))
                assert old[0] == new[0]
                assert {f.replace(f"{WEEKS[0]:%Y%m%d}", "W") for f in old[1] if "Partition"
                        not in f and "CHECK" not in f} == {
                    f.replace(f"{NEW_WEEK:%Y%m%d}", "W") for f in new[1] if "Partition"
                    not in f and "CHECK" not in f}

            # writers without ids: through the parent, into an old child, into the new one
            made = []
            for n, monday in enumerate([WEEKS[0], WEEKS[-1], NEW_WEEK]):
                when = monday + datetime.timedelta(hours=1)
                if postgres_:
                    target = "reports" if n == 0 else f"reports_{monday:%Y%m%d}"
                    made.append(conn.execute(sa.text(
                        f"INSERT INTO {target} (uuid, date_processed) VALUES (:u, :d)"
                        " RETURNING id"), {"u": f"new-{n}", "d": when}).scalar_one())
                else:
                    made.append(conn.execute(childTable("reports", monday, backend).insert()
                                             .values(uuid=f"new-{n}", date_processed=when)
                                             ).inserted_primary_key[0])
            made += backend.reserveIds(conn, "reports", 3)
        old_ids = [report_id for report_id, _ in before.values()]
        assert len(set(made)) == len(made)
        assert min(made) > max(old_ids)  # past every stored id, the child-drawn 501-503 too
        if postgres_:
            assert max(old_ids) == 503

        assert upgradeTo(engine, backend) == (after, after)  # again: nothing to do
    finally:
        engine.dispose()


@pytest.mark.parametrize("emptyUrl", ["postgresql"], indirect=True)
def test_upgrade_never_blocks_others_longer_than_a_lock_timeout(emptyUrl, oldChildren):
    """A long transaction reading reports holds the upgrade off; meanwhile other sessions'
    reads are never queued behind the upgrade for longer than its lock timeout (2 s), and the
    upgrade completes once the long transaction ends."""
    engine, backend, _ = createEngine(emptyUrl)
    try:
        _makeOld(engine, backend, oldChildren, random.Random(4))
        result: dict[str, object] = {}

        def upgrade() -> None:
            started = time.monotonic()
            try:
                result["versions"] = upgradeTo(engine, backend)
            except Exception as error:  # asserted below
                result["error"] = error
            result["took"] = time.monotonic() - started

        with engine.connect() as holder:
            holder.exec_driver_sql("SELECT count(*) FROM reports")  # holds its locks till rollback
            upgrading = threading.Thread(target=upgrade)
            upgrading.start()
            waits = []
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                started = time.monotonic()
                with engine.connect() as reader:
                    reader.exec_driver_sql("SET LOCAL lock_timeout = '4s'")  # fail, not hang
                    try:
                        reader.exec_driver_sql("SELECT count(*) FROM reports").scalar_one()
                    except sa.exc.OperationalError:
                        waits.append(float("inf"))
                        break
                waits.append(time.monotonic() - started)
                time.sleep(0.05)
            holder.rollback()
        assert max(waits) < 2 + 1.5, waits  # one lock timeout, and some slack for a busy host
        assert len(waits) > 3
        upgrading.join(60)
        assert "error" not in result
        assert result["versions"] == ("002", migrate.headVersion())
        assert result["took"] > 6  # it waited for the long transaction to end
        with engine.connect() as conn:
            assert dict(conn.execute(DEFAULTS).all())["reports"] == SHARED
    finally:
        engine.dispose()


def test_model_keeps_the_sequence_on_the_parent():
    """The model says what 003 made: the parent's id defaults to the shared sequence."""
    column = model.reports.c.id
    assert column.default is model.reports_id_seq
    assert column.server_default is not None

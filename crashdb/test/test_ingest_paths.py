"""The bulk path of ``reports.addReports``: the optimistic append (COPY on PostgreSQL) and its
careful fallback, on every backend; the PostgreSQL COPY machinery on its own."""

from __future__ import annotations

import datetime

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from crashdb import partitions
from crashdb.backends import createEngine
from crashdb.bulk import bulkInsertWeeks
from crashdb.connector import DBConnector
from crashdb.exceptions import InvalidInputError
from crashdb.partitions import WEEK, childTable, weekStart
from crashdb.pool import MAX_REPAIRS
from crashdb.reports import BULK_MIN_ROWS, REPORT_FIELDS
from crashdb.test.util import faults

pytestmark = pytest.mark.citus  # also on a coordinator with two workers (SPEC 17)

UTC = datetime.UTC
TUESDAY = datetime.datetime(2012, 10, 16, 10, 30, tzinfo=UTC)
TOKYO = datetime.timezone(datetime.timedelta(hours=9))
NASTY = [
    "back\\slash", "tab\there", "new\nline", "carriage\rreturn", "\\N", "\\", "trailing\\",
    "\\t not a tab", "", " ", "\r\n\t\\", "naïve — ünïcödé ✓ 🚀", "quote ' and \" and ,",
    "\x01\x7f",
]


def reports(count, start=0, when=TUESDAY, step=datetime.timedelta(hours=7), **extra):
    return [{"uuid": f"u{i:05}", "date_processed": when + i * step, **extra}
            for i in range(start, start + count)]


def full(index, uuid):
    """A report with every column set, text columns from NASTY."""
    nasty = NASTY[index % len(NASTY)]
    return {
        "uuid": uuid,
        "date_processed": TUESDAY + datetime.timedelta(days=index % 10, microseconds=index),
        "client_crash_date": datetime.datetime(2012, 10, 16, 18, 0, tzinfo=TOKYO),
        "product": nasty[:30], "version": nasty[:16], "build": "20121010150351",
        "signature": nasty, "url": nasty, "install_age": 2**31 - 1, "last_crash": -(2**31),
        "uptime": 0, "cpu_name": nasty, "cpu_info": nasty, "reason": nasty, "address": "0x0",
        "os_name": nasty, "os_version": nasty, "email": nasty, "user_id": nasty,
        "started_datetime": datetime.datetime(2012, 10, 16, tzinfo=UTC),  # microsecond 0
        "completed_datetime": datetime.datetime(2012, 10, 16, 9, 0, 0, 1, tzinfo=UTC),
        "success": index % 2 == 0, "truncated": index % 2 == 1,
        "processor_notes": nasty * 3, "user_comments": nasty, "app_notes": nasty,
        "distributor": nasty[:20], "distributor_version": nasty[:20],
        "topmost_filenames": nasty, "addons_checked": False, "flash_version": nasty,
        "hangid": nasty, "process_type": None, "release_channel": nasty, "productid": nasty,
    }


def count(db, table="reports"):
    def thd(conn):
        source = partitions.readable(conn, db.backend, table)
        return conn.execute(sa.select(sa.func.count()).select_from(source)).scalar_one()

    return db.pool.do(thd)


@pytest_twisted.inlineCallbacks
def test_every_value_round_trips_through_the_bulk_path(db):
    rows = [full(i, f"u{i:03}") for i in range(3 * len(NASTY))]
    rows[1] = {"uuid": "sparse", "date_processed": TUESDAY}  # every nullable column None
    ids = yield db.reports.addReports(rows)
    assert len(set(ids)) == len(rows)
    for row, report_id in zip(rows, ids):
        got = yield db.reports.getReport(row["uuid"], row["date_processed"])
        expected = {name: None for name in REPORT_FIELDS} | row | {"id": report_id}
        assert got == expected
        assert all(got[c].tzinfo == UTC for c in ("date_processed", "client_crash_date")
                   if got[c] is not None)


@pytest_twisted.inlineCallbacks
def test_a_big_batch_returns_ids_in_input_order_with_repeats(db):
    rows = reports(40)
    rows.insert(7, dict(rows[30]))  # the same uuid and week, again
    ids = yield db.reports.addReports(rows)
    assert ids[7] == ids[31] and len(set(ids)) == 40
    for row, report_id in zip(rows, ids):
        got = yield db.reports.getReport(row["uuid"], row["date_processed"])
        assert got["id"] == report_id


@pytest_twisted.inlineCallbacks
def test_missing_weeks_are_created_by_the_bulk_path(db):
    rows = reports(30, step=datetime.timedelta(days=1))  # four weeks, none created yet
    ids = yield db.reports.addReports(rows)
    assert len(set(ids)) == 30
    parts = yield db.partitions.getPartitions("reports")
    assert [p["start"] for p in parts] == [weekStart(TUESDAY) + n * WEEK for n in range(5)]
    assert (yield db.reports.countReports()) == 30


@pytest.mark.parametrize("size", [BULK_MIN_ROWS - 1, 40])
@pytest_twisted.inlineCallbacks
def test_all_missing_weeks_of_a_batch_are_created_by_one_repair(db, size, monkeypatch):
    rows = reports(size, step=(MAX_REPAIRS + 3) * WEEK / size)
    weeks = {weekStart(row["date_processed"]) for row in rows}
    attempts = []
    write = db.reports._write
    monkeypatch.setattr(db.reports, "_write", lambda *a: attempts.append(1) or write(*a))
    ids = yield db.reports.addReports(rows)
    assert len(set(ids)) == size and len(weeks) > MAX_REPAIRS
    assert len(attempts) == 2  # the first finds a week missing; its repair creates them all
    parts = yield db.partitions.getPartitions("reports")
    assert {p["start"] for p in parts} == weeks


@pytest_twisted.inlineCallbacks
def test_readding_a_big_batch_returns_its_ids_and_changes_nothing(db):
    rows = reports(40, step=datetime.timedelta(hours=9),
                   extensions=[{"extension_id": "a@x"}, {"extension_id": "b@x"}],
                   plugins=[{"filename": "f.dll", "name": "F", "version": "1"}])
    ids = yield db.reports.addReports(rows)
    changed = [dict(row, signature="changed", extensions=[{"extension_id": "c@x"}])
               for row in rows]
    again = yield db.reports.addReports(list(reversed(changed)))
    assert again == list(reversed(ids))
    assert (yield db.reports.countReports(signature="changed")) == 0
    assert (yield count(db, "extensions")) == 80
    assert (yield count(db, "plugins_reports")) == 40
    extensions = yield db.extensions.getExtensions(ids[5], rows[5]["date_processed"])
    assert [e["extension_id"] for e in extensions] == ["a@x", "b@x"]


@pytest_twisted.inlineCallbacks
def test_a_batch_of_new_and_stored_reports_stores_only_the_new(db):
    stored = reports(20, extensions=[{"extension_id": "old@x"}])
    oldIds = yield db.reports.addReports(stored)
    mixed = reports(40, extensions=[{"extension_id": "new@x", "extension_version": "2"}])
    ids = yield db.reports.addReports(mixed)
    assert ids[:20] == oldIds and len(set(ids)) == 40
    assert (yield db.reports.countReports()) == 40
    for row, report_id in zip(mixed, ids):
        extensions = yield db.extensions.getExtensions(report_id, row["date_processed"])
        assert [e["extension_id"] for e in extensions] == [
            "old@x" if report_id in oldIds else "new@x"]


@pytest_twisted.inlineCallbacks
def test_a_uuid_stored_meanwhile_by_another_writer_is_not_duplicated(db):
    """Another writer stores one of the batch's uuids after our ids were reserved: the
    optimistic append fails on it, and the careful path returns the other writer's id."""
    rows = reports(30, extensions=[{"extension_id": "mine@x"}])
    victim = rows[12]
    child = childTable("reports", weekStart(victim["date_processed"]), db.backend)
    for row in rows[0], rows[-1]:  # else the repair's rollback would undo the race
        yield db.partitions.ensureWeek(row["date_processed"])
    theirs = {"id": 10**6, "uuid": victim["uuid"], "date_processed": victim["date_processed"],
              "signature": "theirs"}

    def race(conn):
        db.reports._race_hook = None
        if db.backend.name == "postgresql":  # a transaction of its own, committed first
            other = sa.create_engine(conn.engine.url)
            with other.begin() as otherConn:
                otherConn.execute(child.insert().values(theirs))
            other.dispose()
        else:  # one writer at a time: the same transaction stands in for it
            conn.execute(child.insert().values(theirs))

    db.reports._race_hook = race
    try:
        ids = yield db.reports.addReports(rows)
    finally:
        db.reports._race_hook = None
    assert ids[12] == 10**6 and len(set(ids)) == 30
    assert (yield db.reports.countReports()) == 30
    assert (yield db.reports.getReport(victim["uuid"]))["signature"] == "theirs"
    assert (yield db.extensions.getExtensions(10**6, victim["date_processed"])) == []
    assert (yield count(db, "extensions")) == 29


@pytest_twisted.inlineCallbacks
def test_concurrent_writers_of_the_same_uuids_agree(realdb):
    first = reports(60, extensions=[{"extension_id": "a@x"}])
    second = reports(60, start=30, extensions=[{"extension_id": "a@x"}])
    for _ in range(3):
        a, b = yield defer.gatherResults([realdb.reports.addReports(first),
                                          realdb.reports.addReports(second)])
        assert a[30:] == b[:30]
    assert (yield realdb.reports.countReports()) == 90
    assert (yield count(realdb, "extensions")) == 90


BAD_ROWS = [
    (17, {"signature": "s" * 256}, "signature"),
    (3, {"product": "nul\x00"}, "product"),
    (29, {"date_processed": datetime.datetime(2012, 10, 30)}, "date_processed"),
    (20, {"uuid": None}, "uuid"),
    (25, {"no_such_column": 1}, "no_such_column"),
    (8, {"extensions": [{"extension_id": 5}]}, "extensions.extension_id"),
    (31, {"uptime": True}, "uptime"),
]


@pytest.mark.parametrize("index,change,field", BAD_ROWS, ids=[f for _, _, f in BAD_ROWS])
@pytest_twisted.inlineCallbacks
def test_a_bad_row_in_a_big_batch_stores_nothing_and_creates_no_week(db, index, change, field):
    rows = reports(32, step=datetime.timedelta(hours=13))  # three weeks, none created
    rows[index] = {**rows[index], **change}
    with pytest.raises(InvalidInputError) as info:
        yield db.reports.addReports(rows)
    assert (info.value.index, info.value.field) == (index, field)
    assert (yield db.partitions.getPartitions()) == []


@pytest_twisted.inlineCallbacks
def test_a_bad_extension_among_many_is_refused_with_its_reports_index(db):
    """Extensions are checked as they are written (a COPY of their own on PostgreSQL, after the
    reports'): a bad one still names its report and stores nothing, and no week is made."""
    rows = reports(32, step=datetime.timedelta(hours=13),
                   extensions=[{"extension_id": "a@x"}, {"extension_id": "b@x"}])
    rows[20] = {**rows[20], "extensions": [{"extension_id": "a@x"},
                                           {"extension_id": "b@x", "bogus": 1}]}
    with pytest.raises(InvalidInputError) as info:
        yield db.reports.addReports(rows)
    assert (info.value.index, info.value.field) == (20, "extensions.bogus")
    assert (yield db.partitions.getPartitions()) == []
    for row in rows:
        yield db.partitions.ensureWeek(row["date_processed"])
    with pytest.raises(InvalidInputError) as info:  # the weeks exist: the reports' COPY succeeds
        yield db.reports.addReports(rows)
    assert (info.value.index, info.value.field) == (20, "extensions.bogus")
    assert (yield db.reports.countReports()) == 0
    assert (yield count(db, "extensions")) == 0


@pytest_twisted.inlineCallbacks
def test_a_bad_extension_of_a_report_stored_meanwhile_is_still_refused(db):
    """The careful path writes no extensions for a report another writer stored first, and
    checks them all the same."""
    rows = reports(30, extensions=[{"extension_id": "mine@x"}])
    victim = rows[12] = {**rows[12], "extensions": [{"extension_version": "no id"}]}
    child = childTable("reports", weekStart(victim["date_processed"]), db.backend)
    for row in rows[0], rows[-1]:
        yield db.partitions.ensureWeek(row["date_processed"])

    def race(conn):
        db.reports._race_hook = None
        conn.execute(child.insert().values(id=10**6, uuid=victim["uuid"],
                                           date_processed=victim["date_processed"]))

    db.reports._race_hook = race
    try:
        with pytest.raises(InvalidInputError) as info:
            yield db.reports.addReports(rows)
    finally:
        db.reports._race_hook = None
    assert (info.value.index, info.value.field) == (12, "extensions.extension_id")
    assert (yield db.reports.countReports()) == 0


@pytest_twisted.inlineCallbacks
def test_the_first_bad_row_is_reported_whatever_week_is_written_first(db):
    rows = reports(32, step=datetime.timedelta(hours=13))  # three weeks
    yield db.partitions.ensureWeek(rows[31]["date_processed"])  # only the last one exists
    rows.insert(0, rows.pop(30))  # so that the last week is written first
    rows[3] = {**rows[3], "version": "v" * 17}  # in the first week
    rows[31] = {**rows[31], "version": "v" * 17}  # in the last week
    with pytest.raises(InvalidInputError) as info:
        yield db.reports.addReports(rows)
    assert (info.value.index, info.value.field) == (3, "version")
    rows[3] = {**rows[3], "version": "1.0"}
    with pytest.raises(InvalidInputError) as info:
        yield db.reports.addReports(rows)
    assert (info.value.index, info.value.field) == (31, "version")
    assert (yield db.reports.countReports()) == 0
    assert len((yield db.partitions.getPartitions("reports"))) == 1


@pytest_twisted.inlineCallbacks
def test_a_bad_row_repeating_a_uuid_is_still_rejected(db):
    rows = reports(20)
    rows.append({**rows[4], "uptime": "long"})  # never written: the first one stands for it
    with pytest.raises(InvalidInputError) as info:
        yield db.reports.addReports(rows)
    assert (info.value.index, info.value.field) == (20, "uptime")
    assert (yield db.reports.countReports()) == 0


@pytest_twisted.inlineCallbacks
def test_small_and_big_batches_store_the_same(db):
    """The fast path stores exactly what the plain INSERT path does, down to the raw values
    (SQLite compares timestamps as text: a different format would break range queries)."""
    big = [full(i, f"u{i:03}") for i in range(2 * BULK_MIN_ROWS)]
    for row in big[:4]:
        row["date_processed"] = row["date_processed"].replace(microsecond=0)
    small = [dict(row, uuid="s" + row["uuid"]) for row in big[:BULK_MIN_ROWS - 1]]
    yield db.reports.addReports(small)
    yield db.reports.addReports(big)

    def raw(conn):
        child = childTable("reports", weekStart(TUESDAY), db.backend)
        rows = conn.exec_driver_sql(f"SELECT * FROM {child.name} ORDER BY uuid").all()
        return {row[3]: row[1:3] + row[4:] for row in rows}  # all but id and uuid

    stored = yield db.pool.do(raw)
    paired = [(stored["s" + uuid], values) for uuid, values in stored.items()
              if "s" + uuid in stored]
    assert len(paired) >= 6 and all(small == bulk for small, bulk in paired)
    boundary = big[0]["date_processed"]
    found = yield db.reports.getReports(start=boundary,
                                        end=boundary + datetime.timedelta(microseconds=1))
    assert sorted(r["uuid"] for r in found) == ["su000", "u000"]


# -- the PostgreSQL COPY machinery on its own -----------------------------------------------------

ROW_COLUMNS = ("id", "uuid", "date_processed", "signature")


@pytest.fixture
def pg(dbUrl):
    engine, backend, _ = createEngine(dbUrl)
    partitions.createWeek(engine, backend, weekStart(TUESDAY))
    yield engine, backend, childTable("reports", weekStart(TUESDAY), backend)
    engine.dispose()


def rowsFor(count, start=0):
    return [(i, f"u{i}", TUESDAY, f"sig\t{i}\\") for i in range(start, start + count)]


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
def test_copy_rows_round_trip_and_survive_a_duplicate_in_a_savepoint(pg):
    engine, backend, child = pg
    with engine.begin() as conn:
        backend.copyRows(conn, child, ROW_COLUMNS, rowsFor(50))
        with pytest.raises(sa.exc.IntegrityError) as info:
            with conn.begin_nested():
                backend.copyRows(conn, child, ROW_COLUMNS, rowsFor(20, start=1000) + rowsFor(1))
        assert backend.isUniqueViolation(info.value)
        got = conn.execute(sa.select(child.c.id, child.c.signature).order_by(child.c.id)).all()
    assert got == [(i, f"sig\t{i}\\") for i in range(50)]


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
def test_copy_into_a_missing_child_is_the_missing_table_error(pg):
    engine, backend, _ = pg
    missing = childTable("reports", weekStart(TUESDAY) + 10 * WEEK, backend)
    with engine.begin() as conn, pytest.raises(sa.exc.DBAPIError) as info:
        backend.copyRows(conn, missing, ROW_COLUMNS, rowsFor(20))
    assert backend.isMissingTable(info.value)


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
def test_an_error_making_the_rows_aborts_the_copy_and_is_raised_as_is(pg):
    engine, backend, child = pg

    def rows():
        yield from rowsFor(5000)
        raise InvalidInputError("bad", field="x", index=5000)

    class Sized:
        def __len__(self):
            return 5001

        def __iter__(self):
            return rows()

    with engine.connect() as conn:
        with pytest.raises(InvalidInputError) as info:
            with conn.begin():
                backend.bulkInsert(conn, child, ROW_COLUMNS, Sized())
        assert info.value.index == 5000
        assert conn.execute(sa.select(sa.func.count()).select_from(child)).scalar_one() == 0


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
def test_insert_new_through_staging_skips_stored_keys(pg):
    engine, backend, child = pg
    with engine.begin() as conn:
        backend.copyRows(conn, child, ROW_COLUMNS, rowsFor(10))
        rows = [(1000 + i, *rest) for i, *rest in rowsFor(40)]  # uuids u0..u39, new ids
        assert len(rows) >= backend.COPY_MIN_ROWS
        inserted = backend.insertNew(conn, child, ROW_COLUMNS, rows, "uuid")
        assert inserted == {f"u{i}" for i in range(10, 40)}
        again = backend.insertNew(conn, child, ROW_COLUMNS, rows[:3], "uuid")  # an INSERT
        assert again == set()
        ids = dict(conn.execute(sa.select(child.c.uuid, child.c.id)).all())
        temporary = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_class WHERE relpersistence = 't'").scalar_one()
    assert [ids[f"u{i}"] for i in (0, 9, 10, 39)] == [0, 9, 1010, 1039]
    assert temporary == 0


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
def test_one_copy_through_the_parent_routes_rows_and_reports_a_missing_week(pg):
    engine, backend, child = pg
    monday = weekStart(TUESDAY)
    nextWeek = [(100 + i, f"n{i}", TUESDAY + WEEK, "next") for i in range(10)]
    with engine.begin() as conn, pytest.raises(sa.exc.DBAPIError) as info:
        bulkInsertWeeks(conn, backend, "reports", ROW_COLUMNS,
                                 {monday: rowsFor(10), monday + WEEK: nextWeek})
    assert backend.isMissingPartition(info.value) and not backend.isMissingTable(info.value)
    partitions.createWeek(engine, backend, monday + WEEK)
    with engine.begin() as conn:
        bulkInsertWeeks(conn, backend, "reports", ROW_COLUMNS,
                                 {monday: rowsFor(10), monday + WEEK: nextWeek})
        later = childTable("reports", monday + WEEK, backend)
        counts = [conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                  for t in (child, later)]
        with pytest.raises(sa.exc.IntegrityError) as info, conn.begin_nested():
            conn.execute(child.insert().values(id=1, uuid="late", date_processed=TUESDAY + WEEK))
    assert counts == [10, 10]
    assert not backend.isMissingPartition(info.value)  # a child's own date check


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_a_session_lost_at_the_copy_is_retried_and_stores_the_batch_once(dbUrl, monkeypatch):
    """The connection dies as the COPY starts: the error is the lost connection's (so the pool
    retries the whole transaction), and the batch is stored exactly once."""
    db = DBConnector(dbUrl)
    admin = faults.adminEngine(dbUrl)
    rows = reports(40, extensions=[{"extension_id": "a@x"}])
    for row in rows[0], rows[-1]:
        yield db.partitions.ensureWeek(row["date_processed"])

    def kill(conn):
        db.reports._race_hook = None
        faults.terminateBackend(admin, faults.backendPid(conn))

    db.reports._race_hook = kill
    attempts = []
    write = db.reports._write
    monkeypatch.setattr(db.reports, "_write", lambda *a: attempts.append(1) or write(*a))
    try:
        ids = yield db.reports.addReports(rows)
        assert len(set(ids)) == 40 and len(attempts) == 2
        assert (yield db.reports.countReports()) == 40
        assert (yield count(db, "extensions")) == 40
    finally:
        admin.dispose()
        yield db.stop()

"""Behaviour of ``db.reports``, ``db.extensions`` and ``db.plugins`` on every backend."""

from __future__ import annotations

import datetime

import pytest
import pytest_twisted
import sqlalchemy as sa

from crashdb import model
from crashdb.exceptions import InvalidInputError

pytestmark = pytest.mark.citus  # also on a coordinator with two workers (SPEC 17)

UTC = datetime.UTC
TUESDAY = datetime.datetime(2012, 10, 16, 10, 30, tzinfo=UTC)
NEXT_WEEK = TUESDAY + datetime.timedelta(days=7)


def report(uuid="00000000-0000-0000-0000-000000000001", when=TUESDAY, **extra):
    return {"uuid": uuid, "date_processed": when, **extra}


FULL = {
    "client_crash_date": datetime.datetime(2012, 10, 16, 9, 0, tzinfo=UTC),
    "product": "Firefox",
    "version": "16.0.1",
    "build": "20121010150351",
    "signature": "js::GCMarker::processMarkStackTop",
    "url": "http://example.com/page",
    "install_age": 12345,
    "last_crash": 600,
    "uptime": 42,
    "cpu_name": "x86",
    "cpu_info": "GenuineIntel family 6 model 23 stepping 10",
    "reason": "EXCEPTION_ACCESS_VIOLATION_READ",
    "address": "0x0",
    "os_name": "Windows NT",
    "os_version": "6.1.7601 Service Pack 1",
    "email": "someone@example.com",
    "user_id": "",
    "started_datetime": datetime.datetime(2012, 10, 16, 10, 0, tzinfo=UTC),
    "completed_datetime": datetime.datetime(2012, 10, 16, 10, 0, 5, 123456, tzinfo=UTC),
    "success": True,
    "truncated": False,
    "processor_notes": "processed by test",
    "user_comments": "it crashed — again ✓",
    "app_notes": "AdapterVendorID: 0x8086",
    "distributor": "mozilla",
    "distributor_version": "1.0",
    "topmost_filenames": "jsgc.cpp",
    "addons_checked": True,
    "flash_version": "11.4.402.287",
    "hangid": None,
    "process_type": "plugin",
    "release_channel": "release",
    "productid": "{ec8030f7-c20a-464f-9b0e-13a3a9e97384}",
}


@pytest_twisted.inlineCallbacks
def test_every_column_round_trips(db):
    report_id = yield db.reports.addReport(report(**FULL))
    got = yield db.reports.getReport("00000000-0000-0000-0000-000000000001")
    assert got == {"id": report_id, "uuid": "00000000-0000-0000-0000-000000000001",
                   "date_processed": TUESDAY, **FULL}
    assert set(got) == {c.name for c in model.reports.c}
    assert got["date_processed"].tzinfo == UTC


@pytest_twisted.inlineCallbacks
def test_datetimes_in_other_zones_come_back_in_utc(db):
    tokyo = datetime.timezone(datetime.timedelta(hours=9))
    # Monday 08:00 Tokyo is Sunday 23:00 UTC: the previous week
    when = datetime.datetime(2012, 10, 22, 8, 0, tzinfo=tokyo)
    yield db.reports.addReport(report(when=when))
    got = yield db.reports.getReport("00000000-0000-0000-0000-000000000001", when)
    assert got["date_processed"] == when and got["date_processed"].tzinfo == UTC
    assert got["date_processed"].hour == 23
    parts = yield db.partitions.getPartitions("reports")
    assert [p["name"] for p in parts] == ["reports_20121015"]


@pytest_twisted.inlineCallbacks
def test_readding_a_uuid_returns_its_id_and_changes_nothing(db):
    first = yield db.reports.addReport(report(signature="one", extensions=[
        {"extension_id": "a@x", "extension_version": "1"}]))
    again = yield db.reports.addReport(report(signature="two", extensions=[
        {"extension_id": "b@x"}, {"extension_id": "c@x"}]))
    assert again == first
    got = yield db.reports.getReport("00000000-0000-0000-0000-000000000001")
    assert got["signature"] == "one"
    extensions = yield db.extensions.getExtensions(first, TUESDAY)
    assert [e["extension_id"] for e in extensions] == ["a@x"]
    assert (yield db.reports.countReports()) == 1


@pytest_twisted.inlineCallbacks
def test_uuid_uniqueness_is_per_week(db):
    first = yield db.reports.addReport(report(signature="old"))
    second = yield db.reports.addReport(report(when=NEXT_WEEK, signature="new"))
    assert first != second
    latest = yield db.reports.getReport("00000000-0000-0000-0000-000000000001")
    assert latest["signature"] == "new"
    older = yield db.reports.getReport("00000000-0000-0000-0000-000000000001", TUESDAY)
    assert older["signature"] == "old"


@pytest_twisted.inlineCallbacks
def test_bulk_returns_ids_in_input_order_across_weeks(db):
    rows = [report(uuid=f"u{i}", when=TUESDAY + datetime.timedelta(days=3 * i)) for i in range(6)]
    rows.append(report(uuid="u2", when=rows[2]["date_processed"]))  # repeated within the batch
    ids = yield db.reports.addReports(rows)
    assert len(ids) == 7 and len(set(ids)) == 6 and ids[6] == ids[2]
    for row, report_id in zip(rows, ids):
        got = yield db.reports.getReport(row["uuid"], row["date_processed"])
        assert got["id"] == report_id
    again = yield db.reports.addReports(list(reversed(rows)))
    assert again == list(reversed(ids))
    parts = yield db.partitions.getPartitions("reports")
    assert len(parts) == 3


@pytest_twisted.inlineCallbacks
def test_ids_are_unique_across_partitions(db):
    ids = []
    for week in range(4):
        ids.append((yield db.reports.addReport(
            report(uuid=f"w{week}", when=TUESDAY + datetime.timedelta(weeks=week)))))
    assert len(set(ids)) == 4 and ids == sorted(ids)


BAD = [
    ({"uuid": "x" * 51}, "uuid"),
    ({"signature": "s" * 256}, "signature"),
    ({"product": "bad\x00nul"}, "product"),
    ({"uptime": "12"}, "uptime"),
    ({"uptime": 2**31}, "uptime"),
    ({"success": 1}, "success"),
    ({"client_crash_date": datetime.datetime(2012, 10, 16)}, "client_crash_date"),
    ({"date_processed": datetime.datetime(2012, 10, 16)}, "date_processed"),
    ({"date_processed": None}, "date_processed"),
    ({"no_such_column": 1}, "no_such_column"),
    ({"id": 5}, "id"),
    ({"extensions": [{"extension_version": "1"}]}, "extensions.extension_id"),
    ({"extensions": [{"extension_id": "a", "bogus": 1}]}, "extensions.bogus"),
    ({"plugins": [{"filename": "f.dll", "name": "F"}]}, "plugins.version"),
    ({"plugins": [{"filename": "f", "name": "F", "version": "1"}] * 2}, "plugins"),
    ({"extensions": "a@x"}, "extensions"),
]


@pytest.mark.parametrize("change,field", BAD, ids=[f for _, f in BAD])
@pytest_twisted.inlineCallbacks
def test_bad_input_is_rejected_and_nothing_written(db, change, field):
    with pytest.raises(InvalidInputError) as info:
        yield db.reports.addReport({**report(), **change})
    assert info.value.field == field and info.value.index is None
    assert (yield db.reports.countReports()) == 0


@pytest_twisted.inlineCallbacks
def test_missing_uuid_is_rejected(db):
    with pytest.raises(InvalidInputError) as info:
        yield db.reports.addReport({"date_processed": TUESDAY})
    assert info.value.field == "uuid"


@pytest_twisted.inlineCallbacks
def test_one_bad_row_rejects_the_whole_batch(db):
    rows = [report(uuid=f"u{i}") for i in range(5)]
    rows[3]["signature"] = "s" * 300
    with pytest.raises(InvalidInputError) as info:
        yield db.reports.addReports(rows)
    assert (info.value.index, info.value.field) == (3, "signature")
    assert (yield db.reports.countReports()) == 0
    assert (yield db.partitions.getPartitions()) == []


@pytest_twisted.inlineCallbacks
def test_a_database_error_rolls_back_the_whole_batch(db):
    """A failure after some weeks were written leaves none of them."""
    yield db.reports.addReport(report(uuid="keep"))

    def breakNextWeek(conn):  # a table where next week's reports child would go
        conn.exec_driver_sql("CREATE TABLE reports_20121022 (x INTEGER)")

    yield db.pool.do(breakNextWeek)
    with pytest.raises(sa.exc.DBAPIError):
        yield db.reports.addReports([report(uuid="a"), report(uuid="b", when=NEXT_WEEK)])
    yield db.pool.do(lambda conn: conn.exec_driver_sql("DROP TABLE reports_20121022"))
    assert (yield db.reports.countReports()) == 1
    assert (yield db.reports.getReport("a")) is None


@pytest_twisted.inlineCallbacks
def test_get_reports_filters_orders_and_pages(db):
    rows = []
    for i in range(10):
        rows.append(report(uuid=f"u{i:02}", when=TUESDAY + datetime.timedelta(days=i),
                           product="Firefox" if i % 2 else "Thunderbird",
                           version="1.0", signature=f"sig{i % 3}"))
    yield db.reports.addReports(list(reversed(rows)))
    everything = yield db.reports.getReports()
    assert [r["uuid"] for r in everything] == [f"u{i:02}" for i in range(10)]
    firefox = yield db.reports.getReports(product="Firefox")
    assert [r["uuid"] for r in firefox] == ["u01", "u03", "u05", "u07", "u09"]
    window = yield db.reports.getReports(start=rows[2]["date_processed"],
                                         end=rows[5]["date_processed"])
    assert [r["uuid"] for r in window] == ["u02", "u03", "u04"]
    page = yield db.reports.getReports(limit=3, offset=4)
    assert [r["uuid"] for r in page] == ["u04", "u05", "u06"]
    assert (yield db.reports.countReports(signature="sig0")) == 4
    assert (yield db.reports.countReports(product="Firefox", version="1.0",
                                          start=rows[3]["date_processed"])) == 4
    assert (yield db.reports.countReports(product="Nothing")) == 0
    newest = yield db.reports.getReports(product="Firefox", limit=3, newestFirst=True)
    assert [r["uuid"] for r in newest] == ["u09", "u07", "u05"]
    # ties in date_processed: by id, descending too (the exact reverse of the default order)
    yield db.reports.addReports([report(uuid=f"t{i}", when=TUESDAY, signature="tie")
                                 for i in range(3)])
    tied = yield db.reports.getReports(signature="tie")
    assert [r["uuid"] for r in (yield db.reports.getReports(signature="tie", newestFirst=True))
            ] == [r["uuid"] for r in reversed(tied)]


@pytest_twisted.inlineCallbacks
def test_get_report_that_does_not_exist_is_none(db):
    assert (yield db.reports.getReport("nope")) is None
    assert (yield db.reports.getReport("nope", TUESDAY)) is None


@pytest_twisted.inlineCallbacks
def test_bad_filters_are_rejected(db):
    with pytest.raises(InvalidInputError):
        yield db.reports.getReports(start=datetime.datetime(2012, 1, 1))
    with pytest.raises(InvalidInputError):
        yield db.reports.getReports(limit=-1)
    with pytest.raises(InvalidInputError) as raised:
        yield db.reports.getReports(newestFirst="yes")
    assert raised.value.field == "newestFirst"
    with pytest.raises(InvalidInputError):
        yield db.reports.countReports(product=5)
    with pytest.raises(InvalidInputError):
        yield db.reports.addReports("not a list")


@pytest_twisted.inlineCallbacks
def test_extensions_are_numbered_in_the_order_given(db):
    report_id = yield db.reports.addReport(report(extensions=[
        {"extension_id": "z@x", "extension_version": "3"},
        {"extension_id": "a@x", "extension_version": None},
        {"extension_id": "m@x", "extension_version": "1"},
    ]))
    got = yield db.extensions.getExtensions(report_id, TUESDAY)
    assert got == [
        {"report_id": report_id, "date_processed": TUESDAY, "extension_key": 0,
         "extension_id": "z@x", "extension_version": "3"},
        {"report_id": report_id, "date_processed": TUESDAY, "extension_key": 1,
         "extension_id": "a@x", "extension_version": None},
        {"report_id": report_id, "date_processed": TUESDAY, "extension_key": 2,
         "extension_id": "m@x", "extension_version": "1"},
    ]
    assert (yield db.extensions.getExtensions(report_id, NEXT_WEEK)) == []


@pytest_twisted.inlineCallbacks
def test_plugins_are_stored_with_the_report(db):
    report_id = yield db.reports.addReport(report(plugins=[
        {"filename": "NPSWF32.dll", "name": "Shockwave Flash", "version": "11.4"},
        {"filename": "npjp2.dll", "name": "Java", "version": "7"},
    ]))
    flash = yield db.plugins.findPluginId("NPSWF32.dll", "Shockwave Flash")
    got = yield db.plugins.getPluginReports(report_id, TUESDAY)
    assert {(g["filename"], g["version"]) for g in got} == {("NPSWF32.dll", "11.4"),
                                                            ("npjp2.dll", "7")}
    assert [g for g in got if g["plugin_id"] == flash][0] == {
        "report_id": report_id, "plugin_id": flash, "date_processed": TUESDAY,
        "version": "11.4", "filename": "NPSWF32.dll", "name": "Shockwave Flash"}
    other = yield db.reports.addReport(report(uuid="other", plugins=[
        {"filename": "NPSWF32.dll", "name": "Shockwave Flash", "version": "11.5"}]))
    mine = yield db.plugins.getPluginReports(other, TUESDAY)
    assert [m["plugin_id"] for m in mine] == [flash]


@pytest_twisted.inlineCallbacks
def test_find_plugin_id_is_find_or_create(db):
    first = yield db.plugins.findPluginId("a.dll", "A")
    assert (yield db.plugins.findPluginId("a.dll", "A")) == first
    assert (yield db.plugins.findPluginId("a.dll", "B")) != first
    with pytest.raises(InvalidInputError):
        yield db.plugins.findPluginId("a.dll", None)


@pytest_twisted.inlineCallbacks
def test_find_plugin_id_survives_a_race(db):
    """Another writer creates the plugin between our look-up and our insert."""
    component = db.plugins

    def race(conn):
        component._race_hook = None
        conn.execute(model.plugins.insert().values(filename="r.dll", name="R"))

    component._race_hook = race
    try:
        found = yield db.plugins.findPluginId("r.dll", "R")
    finally:
        component._race_hook = None
    count = yield db.pool.do(lambda conn: conn.execute(
        sa.select(sa.func.count()).select_from(model.plugins)).scalar_one())
    assert count == 1
    assert (yield db.plugins.findPluginId("r.dll", "R")) == found


@pytest_twisted.inlineCallbacks
def test_one_batch_may_create_many_missing_weeks(db):
    rows = [report(uuid=f"w{n}", when=TUESDAY + datetime.timedelta(weeks=n)) for n in range(12)]
    ids = yield db.reports.addReports(rows)
    assert len(set(ids)) == 12
    assert len((yield db.partitions.getPartitions("reports"))) == 12


@pytest_twisted.inlineCallbacks
def test_deleting_a_report_cascades_to_its_extensions_and_plugins(db):
    report_id = yield db.reports.addReport(report(
        extensions=[{"extension_id": "a@x"}, {"extension_id": "b@x"}],
        plugins=[{"filename": "f.dll", "name": "F", "version": "1"}]))

    def delete(conn):
        conn.exec_driver_sql(f"DELETE FROM reports_20121015 WHERE id = {report_id}")

    yield db.pool.do(delete)
    assert (yield db.extensions.getExtensions(report_id, TUESDAY)) == []
    assert (yield db.plugins.getPluginReports(report_id, TUESDAY)) == []


@pytest_twisted.inlineCallbacks
def test_readded_reports_consume_no_ids(db):
    """A re-delivered batch, or one mixing stored and new uuids, draws ids only for the new
    reports: the int32 id space is not spent on rows that are not written."""
    stored = [report(uuid=f"stored-{i}", when=TUESDAY + datetime.timedelta(days=i % 9))
              for i in range(40)]  # two weeks; above BULK_MIN_ROWS: the fast path
    first = yield db.reports.addReports(stored)
    again = yield db.reports.addReports(stored)
    assert again == first
    fresh = [report(uuid=f"fresh-{i}", when=NEXT_WEEK) for i in range(20)]
    mixed = yield db.reports.addReports(stored[:30] + fresh)
    assert mixed[:30] == first[:30]
    assert sorted(mixed[30:]) == list(range(max(first) + 1, max(first) + 21))
    small = yield db.reports.addReports(stored[:3] + [report(uuid="one-more")])  # careful path
    assert small[:3] == first[:3] and small[3] == max(first) + 21


@pytest_twisted.inlineCallbacks
def test_a_readded_report_is_still_validated(db):
    yield db.reports.addReports([report(uuid=f"v{i}") for i in range(20)])
    with pytest.raises(InvalidInputError) as caught:
        yield db.reports.addReports([report(uuid="v0", uptime="long"), report(uuid="v1")])
    assert caught.value.index == 0 and caught.value.field == "uptime"

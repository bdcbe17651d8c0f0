"""The fake connector: ready on construction, synchronous, isolated, and seeded by row classes."""

from __future__ import annotations

import datetime
import threading

import pytest
import pytest_twisted

from crashdb.exceptions import InvalidInputError
from crashdb.test.fake import fakedb

UTC = datetime.UTC


def test_ready_on_construction_and_deferreds_have_fired():
    db = fakedb.FakeDBConnector()
    threads = threading.active_count()
    d = db.reports.addReport({"uuid": "u", "date_processed": fakedb.DEFAULT_DATE})
    results = []
    d.addCallback(results.append)
    assert results and isinstance(results[0], int)
    assert threading.active_count() == threads
    assert db.model.is_current().result is True


def test_errors_arrive_as_failed_deferreds():
    db = fakedb.FakeDBConnector()
    d = db.reports.addReport({"uuid": "u"})
    failures = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(InvalidInputError)


def test_each_fake_is_a_separate_database():
    first, second = fakedb.FakeDBConnector(), fakedb.FakeDBConnector()
    first.reports.addReport({"uuid": "u", "date_processed": fakedb.DEFAULT_DATE})
    assert first.reports.countReports().result == 1
    assert second.reports.countReports().result == 0


def test_row_classes_reject_columns_the_model_lacks():
    with pytest.raises(InvalidInputError) as info:
        fakedb.Report(uuid="u", no_such_column=1)
    assert info.value.field == "no_such_column"
    with pytest.raises(InvalidInputError):
        fakedb.Job(uuid=5)


@pytest_twisted.inlineCallbacks
def test_insert_test_data_across_new_weeks_gives_distinct_ids(db):
    days = [1, 9, 16, 2]
    rows = [fakedb.Report(date_processed=datetime.datetime(2012, 10, d, tzinfo=UTC))
            for d in days]
    yield db.insertTestData(rows)
    ids = [row.id for row in rows]
    assert len(set(ids)) == 4
    for row in rows:
        got = yield db.reports.getReport(row.uuid)
        assert got["id"] == row.id


def test_row_classes_fill_defaults():
    report = fakedb.Report()
    assert report.uuid and report.date_processed == fakedb.DEFAULT_DATE
    assert fakedb.Report().uuid != report.uuid
    assert fakedb.Job().priority == 0


@pytest_twisted.inlineCallbacks
def test_insert_test_data_orders_by_foreign_keys_and_advances_ids(db):
    when = datetime.datetime(2012, 10, 16, tzinfo=UTC)
    yield db.insertTestData([
        fakedb.Extension(report_id=10, date_processed=when, extension_id="e@x"),
        fakedb.PluginReport(report_id=10, plugin_id=3, date_processed=when),
        fakedb.Plugin(id=3, filename="f.dll", name="F"),
        fakedb.Report(id=10, uuid="seeded", date_processed=when, signature="s"),
        fakedb.RawCrash(uuid="seeded", date_processed=when, raw_crash={"a": 1}),
    ])
    got = yield db.reports.getReport("seeded")
    assert got["id"] == 10 and got["signature"] == "s"
    assert [e["extension_id"] for e in (yield db.extensions.getExtensions(10, when))] == ["e@x"]
    assert [p["name"] for p in (yield db.plugins.getPluginReports(10, when))] == ["F"]
    assert (yield db.rawcrashes.getRawCrash("seeded")) == {"a": 1}
    fresh = yield db.reports.addReport({"uuid": "new", "date_processed": when})
    assert fresh > 10  # ids handed out later never collide with seeded ones
    plugin = yield db.plugins.findPluginId("g.dll", "G")
    assert plugin > 3


@pytest_twisted.inlineCallbacks
def test_seeded_facet_rows_are_what_a_rolled_up_day_reads(db):
    """A front end's test can seed a signature's summary without any reports."""
    day = fakedb.DEFAULT_DATE.date()
    yield db.insertTestData([
        fakedb.RollupDay(day=day),
        fakedb.SignatureFacet(day=day, signature="s", field="product", term="Firefox", count=4),
        fakedb.SignatureFacet(day=day, signature="s", field="os_name", term="Linux", count=3),
        fakedb.SignatureFacet(day=day, signature="s", field="os_name", term=None, count=1),
        fakedb.SignatureFacet(day=day, signature="s", field="installation", term="1", count=4),
    ])
    summary = yield db.signatures.getSummary("s", start_day=day,
                                             end_day=day + datetime.timedelta(days=1))
    assert (summary["count"], summary["installations"]) == (4, 1)
    assert summary["facets"]["os_name"] == [{"term": "Linux", "count": 3, "percent": 75.0},
                                            {"term": None, "count": 1, "percent": 25.0}]


@pytest_twisted.inlineCallbacks
def test_seeded_facets_without_a_count_do_not_divide_by_zero(db):
    day = fakedb.DEFAULT_DATE.date()
    yield db.insertTestData([fakedb.RollupDay(day=day), fakedb.ProductFacet(day=day, field="build",
                                                                            term="1", count=2),
                             fakedb.SignatureFacet(day=day, signature="s", field="build",
                                                   term="1", count=2)])
    period = {"start_day": day, "end_day": day + datetime.timedelta(days=1)}
    summary = yield db.signatures.getSummary("s", **period)
    assert summary["count"] == 0 and summary["facets"]["build"] == [
        {"term": "1", "count": 2, "percent": 0.0}]
    assert (yield db.signatures.getCorrelations("s", "Firefox", min_count=0, **period)) == []

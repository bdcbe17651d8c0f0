"""The worked example of docs/testing.md: an application's tests on the fake database.

``example_app.processCrash`` is tested twice over, as an application would: with a
``twisted.trial`` test case and with plain pytest functions. Neither needs a reactor, a thread
or a file: the fake's Deferreds have fired before each call returns.
"""

from __future__ import annotations

import datetime

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.trial import unittest

from crashdb.exceptions import InvalidInputError
from crashdb.test import example_app
from crashdb.test.fake import fakedb

UTC = datetime.UTC
SUBMITTED = datetime.datetime(2012, 10, 16, 10, 30, tzinfo=UTC)  # a Tuesday


def rawCrash(**changes):
    """A raw crash as a collector stores it; ``changes`` replace or add keys."""
    crash = {
        "ProductName": "Firefox",
        "Version": "16.0.1",
        "BuildID": "20121010150351",
        "TopFrame": "js::GCMarker::processMarkStackTop",
        "StartupTime": "1350383358",
        "CrashTime": "1350383400",
        "Add-ons": "{972ce4c6-7e08-4474-a285-3208198ce6fd}:16.0.1,adblock@example.com:2.1",
        "submitted_timestamp": SUBMITTED.isoformat(),
    }
    crash.update(changes)
    return crash


# -- with twisted.trial ---------------------------------------------------------------------------


class ProcessCrashTests(unittest.TestCase):
    def setUp(self):
        self.db = fakedb.FakeDBConnector()  # a new, empty, migrated database for every test
        return self.db.insertTestData([
            fakedb.RawCrash(uuid="u1", date_processed=SUBMITTED, raw_crash=rawCrash()),
        ])

    @defer.inlineCallbacks
    def test_raw_crash_becomes_a_report(self):
        report_id = yield example_app.processCrash(self.db, "u1", SUBMITTED)
        report = yield self.db.reports.getReport("u1", SUBMITTED)
        self.assertEqual(report["id"], report_id)
        self.assertEqual(report["date_processed"], SUBMITTED)
        self.assertEqual((report["product"], report["version"], report["uptime"]),
                         ("Firefox", "16.0.1", 42))
        extensions = yield self.db.extensions.getExtensions(report_id, SUBMITTED)
        self.assertEqual(
            [(e["extension_key"], e["extension_id"], e["extension_version"]) for e in extensions],
            [(0, "{972ce4c6-7e08-4474-a285-3208198ce6fd}", "16.0.1"),
             (1, "adblock@example.com", "2.1")])

    def test_processing_twice_stores_one_report(self):
        # the fake's Deferreds have fired already: trial's successResultOf reads them directly
        first = self.successResultOf(example_app.processCrash(self.db, "u1"))
        again = self.successResultOf(example_app.processCrash(self.db, "u1"))
        self.assertEqual(first, again)
        self.assertEqual(self.successResultOf(self.db.reports.countReports()), 1)

    def test_unknown_crash_fails(self):
        self.failureResultOf(example_app.processCrash(self.db, "nope"), example_app.CrashNotFound)


# -- with plain pytest ----------------------------------------------------------------------------


def resultOf(d: defer.Deferred):
    """The result of a Deferred that has fired (the fake's all have), or raise its error."""
    outcome = []
    d.addBoth(outcome.append)
    assert outcome, "the Deferred has not fired"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


@pytest.fixture
def fake():
    db = fakedb.FakeDBConnector()
    yield db
    resultOf(db.stop())


def test_values_too_long_for_their_column_are_cut_to_fit(fake):
    resultOf(fake.rawcrashes.addRawCrash("u2", SUBMITTED, rawCrash(URL="http://x/" + "a" * 300)))
    report_id = resultOf(example_app.processCrash(fake, "u2"))
    report = resultOf(fake.reports.getReport("u2"))
    assert report["id"] == report_id
    assert len(report["url"]) == 255
    assert report["processor_notes"] == "url truncated to 255 characters"


def test_the_fake_rejects_what_the_database_rejects(fake):
    # why the processor cuts values: crashdb refuses a URL longer than its column, on the fake
    # exactly as on SQLite and PostgreSQL, and stores nothing
    with pytest.raises(InvalidInputError) as error:
        resultOf(fake.reports.addReport(
            {"uuid": "u3", "date_processed": SUBMITTED, "url": "a" * 256}))
    assert error.value.field == "url"
    assert resultOf(fake.reports.countReports()) == 0


def test_crash_without_submission_time_is_refused(fake):
    crash = rawCrash()
    del crash["submitted_timestamp"]
    resultOf(fake.insertTestData([fakedb.RawCrash(uuid="u4", raw_crash=crash)]))
    with pytest.raises(example_app.BadRawCrash):
        resultOf(example_app.processCrash(fake, "u4"))
    assert resultOf(fake.reports.countReports()) == 0


def test_missing_uptime_is_noted():
    report = example_app.reportFromRawCrash("u5", rawCrash(CrashTime=None))
    assert "uptime" not in report
    assert report["processor_notes"].startswith("no uptime")

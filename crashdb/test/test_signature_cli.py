"""``crashdb rollup`` and ``crashdb signature`` on real databases; errors are one line."""

from __future__ import annotations

import datetime
import random
import re

import pytest
import pytest_twisted

from crashdb.test.fake import fakedb
from crashdb.test.test_cli import crashdb
from crashdb.test.util import db as dbutil
from crashdb.validation import STORED_DAYS

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
PLANTED = "bad@addon"


def _today() -> datetime.date:
    return datetime.datetime.now(UTC).date()


@pytest_twisted.inlineCallbacks
def _seed(url: str, days: list[datetime.date]):
    """Reports on ``days``: signature 'planted' always has the planted add-on, others seldom."""
    rng = random.Random(30)
    db = dbutil.TestDBConnector(url)
    try:
        reports = []
        for n in range(300):
            day = days[n % len(days)]
            reports.append(fakedb.Report(
                date_processed=datetime.datetime(day.year, day.month, day.day, tzinfo=UTC)
                + datetime.timedelta(seconds=rng.randrange(3600)),
                product="Firefox", version="17.0b3", build=rng.choice(["20121025", "20121101"]),
                signature="planted" if n % 10 == 0 else rng.choice(["a", "b", "c"]),
                os_name=rng.choice(["Windows NT", "Linux"]), uptime=rng.randrange(7200)))
        yield db.insertTestData(reports)
        yield db.insertTestData([
            fakedb.Extension(report_id=r.id, date_processed=r.date_processed,
                             extension_id=PLANTED)
            for r in reports if r.signature == "planted" or rng.random() < 0.03])
    finally:
        yield db.stop()
    return reports


@pytest_twisted.inlineCallbacks
def _read(url: str, call):
    db = dbutil.TestDBConnector(url)
    try:
        yield db.setup()
        result = yield call(db)
    finally:
        yield db.stop()
    return result


@pytest.mark.parametrize("dbUrl", ["sqlite", "postgresql"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_rollup_defaults_to_yesterday_and_today_and_is_idempotent(dbUrl):
    today = _today()
    days = [today - 2 * DAY, today - DAY, today]
    reports = yield _seed(dbUrl, days)
    first = crashdb("rollup", "--db", dbUrl)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"{d:%Y-%m-%d}" for d in days[1:]]
    assert all("tcbs" in line and "signatures" in line for line in lines)
    again = crashdb("rollup", "--db", dbUrl)
    # the same top crashers; no lifecycle changes, so no signature rows written
    assert again.stdout == re.sub(r"signatures \d+", "signatures 0", first.stdout)
    assert "signatures 0" not in first.stdout
    crashers = yield _read(dbUrl, lambda db: db.tcbs.getTopCrashers(
        "Firefox", start_day=days[0], end_day=today + DAY, limit=100))
    assert sum(c["count"] for c in crashers) == sum(
        r.date_processed.date() in days[1:] for r in reports)
    single = crashdb("rollup", "--day", f"{days[0]:%Y-%m-%d}", "--db", dbUrl)
    assert single.returncode == 0 and single.stdout.startswith(f"{days[0]:%Y-%m-%d}: ")
    found = yield _read(dbUrl, lambda db: db.signatures.getSignature("planted"))
    assert found["first_report"].date() == days[0]


@pytest.mark.parametrize("args,message", [
    (["--day", "2012-13-01"], "--day: not a date of the form YYYY-MM-DD: '2012-13-01'"),
    (["--days", "-1"], "--days must be from 0 to {most}"),
    (["--days", "9" * 20], "--days must be from 0 to {most}"),
    (["--day", "0001-01-01"], "--day: out of range: give a day from 1000-01-06 to 9999-12-26"),
])
def test_rollup_mistakes_are_one_line(dbUrl, args, message):
    result = crashdb("rollup", "--db", dbUrl, *args)
    most = (_today() - STORED_DAYS[0]).days
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"crashdb: error: {message}".format(most=most)]


@pytest.mark.parametrize("dbUrl", ["sqlite", "postgresql"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_signature_shows_lifecycle_summary_and_correlations(dbUrl):
    today = _today()
    days = [today - 3 * DAY, today - DAY]
    reports = yield _seed(dbUrl, days)
    assert crashdb("rollup", "--days", "3", "--db", dbUrl).returncode == 0
    result = crashdb("signature", "planted", "--db", dbUrl)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    planted = [r for r in reports if r.signature == "planted"]
    assert out.startswith("Signature: planted\n")
    assert f"first build {min(r.build for r in planted)}" in out
    assert f"  {len(planted)} crashes on 0 installations" in out
    windows = sum(r.os_name == "Windows NT" for r in planted)
    percent = 100.0 * windows / len(planted)
    assert f"{percent:5.1f}% {windows:>6}  Windows NT" in out
    correlations = out.split("Correlations with all crashes of Firefox")[1].splitlines()
    assert correlations[2].split()[0] == "100.0%"  # every planted crash has the add-on
    assert correlations[2].endswith(f"addon = {PLANTED}")
    versioned = crashdb("signature", "planted", "--product", "Firefox", "--version", "17.0b3",
                        "--days", "1", "--db", dbUrl)
    assert versioned.returncode == 0, versioned.stderr
    assert "Summary: Firefox 17.0b3, " in versioned.stdout


@pytest.mark.parametrize("args,message", [
    (["never"], "no crash with signature 'never' has been rolled up or reported in the period"),
    (["x", "--days", "0"], "--days must be from 1 to {most}"),
    (["x", "--days", "9" * 20], "--days must be from 1 to {most}"),
    (["x", "--product", "F" * 31], "field 'product': longer than 30 characters (31)"),
])
def test_signature_mistakes_are_one_line(dbUrl, args, message):
    result = crashdb("signature", "--db", dbUrl, *args)
    most = (_today() + DAY - STORED_DAYS[0]).days
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"crashdb: error: {message}".format(most=most)]

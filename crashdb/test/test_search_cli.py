"""``crashdb search``: hits and facets for a terminal, one-line errors, on both backends."""

from __future__ import annotations

import datetime

import pytest
import pytest_twisted

from crashdb.app.scripts import search as searchScript
from crashdb.test.fake import fakedb
from crashdb.test.test_cli import crashdb

UTC = datetime.UTC
MONDAY = datetime.datetime(2012, 10, 15, tzinfo=UTC)


def rows() -> list[fakedb.Row]:
    made: list[fakedb.Row] = []
    for n in range(12):
        report = fakedb.Report(
            date_processed=MONDAY + datetime.timedelta(hours=5 * n),
            uuid=f"uuid-{n:02d}", product="Firefox", version="17.0b3",
            signature="js::GC" if n % 3 else "nsFoo::Bar\x1b[31m", os_name="Windows NT",
            uptime=30 * n)
        made.append(report)
        made.append(fakedb.RawCrash(uuid=report.uuid, date_processed=report.date_processed,
                                    raw_crash={"GraphicsAdapter": "0x10de" if n < 4 else "0x8086"}))
    return made


@pytest_twisted.inlineCallbacks
def test_search_prints_hits_and_facets(realdb):
    yield realdb.insertTestData(rows())
    result = crashdb("search", "--db", realdb.db_url, "--start", "2012-10-15",
                     "--end", "2012-10-22", "--filter", "signature ~ JS::",
                     "--filter", "raw.GraphicsAdapter ^ 0x10DE", "--filter", "uptime >= 30",
                     "--facet", "signature", "--facet", "uptime", "--facet", "_histogram.day",
                     "--facet", "_cardinality.installations", "--limit", "2",
                     "--columns", "uuid,uptime")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # reports 1 and 2 (report 3 has signature nsFoo::Bar), newest first
    assert lines[0].startswith("2 reports from 2012-10-15 00:00 to 2012-10-22 00:00")
    assert lines[2].split() == ["uuid", "uptime"]
    assert [line.split() for line in lines[3:5]] == [["uuid-02", "60"], ["uuid-01", "30"]]
    text = result.stdout
    assert "signature:\n          2  js::GC\n" in text
    assert "uptime:\n          1  1-5 min\n          1  < 1 min\n" in text
    assert "_histogram.day:\n          2  2012-10-15\n          0  2012-10-16\n" in text
    assert "_cardinality.installations: 0" in text


@pytest_twisted.inlineCallbacks
def test_crash_strings_cannot_drive_the_terminal(realdb):
    yield realdb.insertTestData(rows())
    result = crashdb("search", "--db", realdb.db_url, "--start", "2012-10-15",
                     "--end", "2012-10-16", "--filter", "signature ^ nsfoo",
                     "--facet", "signature", "--facet", "raw.GraphicsAdapter")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "nsFoo::Bar\\x1b[31m" in result.stdout
    assert "2 reports" in result.stdout and "0x10de" in result.stdout


@pytest.mark.parametrize("arguments,message", [
    (["--filter", "nosuch = 1"], "field 'nosuch': unknown field"),
    (["--filter", "signature"], "expected 'FIELD OP VALUE'"),
    (["--filter", "uptime > soon"], "expected an integer, got 'soon'"),
    (["--filter", "signature like x"], "expected 'FIELD OP VALUE'"),
    (["--filter", "uptime ~ 1"], "operator ~ does not apply"),
    (["--filter", "raw.bad-key = 1"], "raw crash key"),
    (["--filter", "raw.ä = 1"], "raw crash key"),
    (["--facet", "_histogram.week"], "unknown field"),
    (["--limit", "-1"], "field 'limit'"),
    (["--sort=-nosuch"], "sort by a report column"),
])
def test_user_mistakes_are_one_line(tmp_path, arguments, message):
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    assert crashdb("upgrade-db", "--db", url).returncode == 0
    result = crashdb("search", "--db", url, "--start", "2012-10-15", "--end", "2012-10-22",
                     *arguments)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("crashdb: error:") and message in result.stderr


def test_bad_dates_are_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    result = crashdb("search", "--db", url, "--start", "last tuesday", "--end", "2012-10-22")
    assert result.returncode == 1
    assert result.stderr.strip() == ("crashdb: error: --start: expected a date or ISO 8601 time,"
                                     " got 'last tuesday'")


@pytest.mark.parametrize("text,triple", [
    ("signature ~ js::", ("signature", "~", "js::")),
    ("signature=a = b", ("signature", "=", "a = b")),
    ("uptime<60", ("uptime", "<", 60)),
    ("success != yes", ("success", "!=", True)),
    ("hangid exists", ("hangid", "exists", True)),
    ("raw.K exists false", ("raw.K", "exists", False)),
    ("date_processed >= 2012-10-15T06:00", ("date_processed", ">=",
                                             datetime.datetime(2012, 10, 15, 6, tzinfo=UTC))),
])
def test_filters_are_parsed_and_typed_by_field(text, triple):
    assert searchScript.parseFilter(text) == triple

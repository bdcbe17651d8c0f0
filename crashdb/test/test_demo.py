"""``crashdb demo``: its crashes, its processor's reports, the whole pipeline, the command twice."""

from __future__ import annotations

import collections
import datetime
import os
import random
import re
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet import defer

from crashdb.app.demo import (
    DEMO_DAYS,
    CrashGenerator,
    Demo,
    crashUuid,
    dayOfUuid,
    reportFromRawCrash,
)
from crashdb.connector import DBConnector
from crashdb.test.fake.fakedb import FakeDBConnector
from crashdb.validation import STORED_DAYS

UTC = datetime.UTC
NOW = datetime.datetime(2012, 10, 31, 15, 0, tzinfo=UTC)


def test_crash_ids_end_with_their_day():
    rng = random.Random(1)
    for day in (datetime.date(2012, 10, 16), datetime.date(2009, 1, 5)):
        uuid = crashUuid(rng, day)
        assert len(uuid) == 36 and uuid.endswith(f"2{day:%y%m%d}")
        assert dayOfUuid(uuid) == datetime.datetime(day.year, day.month, day.day, tzinfo=UTC)


def test_generated_crashes_have_a_head_and_a_long_tail():
    crashes = CrashGenerator(random.Random(2), NOW).crashes(3000)
    received = [when for _, when, _ in crashes]
    assert received == sorted(received)
    assert NOW - DEMO_DAYS * datetime.timedelta(days=1) <= received[0] and received[-1] <= NOW
    signatures = collections.Counter(raw["dump"]["signature"] for _, _, raw in crashes)
    top = signatures.most_common()
    assert top[0][1] > 0.1 * len(crashes)  # a dominant crasher
    assert len(signatures) > 80 and sum(1 for _, n in top if n <= 5) > 20  # and a long tail
    products = collections.Counter(raw["ProductName"] for _, _, raw in crashes)
    assert len(products) == 4 and products.most_common(1)[0][0] == "Firefox"
    systems = collections.Counter(raw["dump"]["os_name"] for _, _, raw in crashes)
    assert set(systems) == {"Windows NT", "Mac OS X", "Linux"}
    assert 0 < sum("HangID" in raw for _, _, raw in crashes) < 0.2 * len(crashes)
    assert sum("PluginFilename" in raw for _, _, raw in crashes) > 0.1 * len(crashes)
    assert len({uuid for uuid, _, _ in crashes}) == len(crashes)


def test_a_regression_appears_only_in_the_last_week():
    crashes = CrashGenerator(random.Random(3), NOW).crashes(3000)
    days = {when.date() for _, when, raw in crashes
            if raw["dump"]["signature"] == "mozilla::dom::WebSocket::Send"}
    assert days and min(days) >= (NOW - datetime.timedelta(days=6)).date()


@pytest_twisted.inlineCallbacks
def test_processor_turns_every_raw_crash_into_a_valid_report():
    db = FakeDBConnector()
    crashes = CrashGenerator(random.Random(4), NOW).crashes(300)
    for uuid, _, raw in crashes:
        report = reportFromRawCrash(uuid, raw, "p1")
        yield db.reports.addReport(report)  # validation would reject a bad one
    uuid, received, raw = next(c for c in crashes if "PluginFilename" in c[2] and "HangID" in c[2])
    stored = yield db.reports.getReport(uuid, received)
    assert stored["date_processed"] == received
    assert stored["signature"] == raw["dump"]["signature"]
    assert stored["hangid"] == raw["HangID"] and stored["process_type"] == "plugin"
    assert stored["uptime"] == int(raw["CrashTime"]) - int(raw["StartupTime"])
    plugins = yield db.plugins.getPluginReports(stored["id"], received)
    assert [(p["filename"], p["version"]) for p in plugins] == [
        (raw["PluginFilename"], raw["PluginVersion"])
    ]
    extensions = yield db.extensions.getExtensions(stored["id"], received)
    assert ",".join(f"{e['extension_id']}:{e['extension_version']}" for e in extensions) == raw[
        "Add-ons"]
    assert (yield db.reports.countReports()) == 300


@pytest_twisted.inlineCallbacks
def test_the_pipeline_processes_every_crash_and_rolls_up_every_report(db):
    from twisted.internet import reactor

    lines: list[str] = []
    demo = Demo(reactor, db, crashes=150, processors=2, seed=5, out=lines.append,
                progress_stream=open(os.devnull, "w"))
    result = yield defer.ensureDeferred(demo.run())
    assert (result.collected, result.processed, result.failed) == (150, 150, 0)
    assert (yield db.reports.countReports()) == 150
    jobs = yield db.jobs.getJobs()
    assert len(jobs) == 150 and all(job["complete"] and job["success"] for job in jobs)
    # the rollup holds every report, none twice
    start, end = result.days[0], result.days[-1] + datetime.timedelta(days=1)
    total = 0
    for product in ("Firefox", "Thunderbird", "FennecAndroid", "SeaMonkey"):
        crashers = yield db.tcbs.getTopCrashers(product, start_day=start, end_day=end, limit=1000)
        total += sum(c["count"] for c in crashers)
    assert total == 150
    assert any("Top crashers: Firefox (all versions)" in table for table in result.tables)
    assert lines[-1] == (f"browse it: run `crashdb serve --db {result.url}` and open "
                         "http://127.0.0.1:8000/")
    assert result.created and all(name in {p["name"] for p in result.partitions}
                                  for name in result.created)


def _crashdb(directory, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CRASHDB_URL"}
    return subprocess.run(
        [sys.executable, "-m", "crashdb", *args],
        cwd=directory, env=env, capture_output=True, text=True, timeout=300,
    )


def _runDemo(directory, *args: str) -> subprocess.CompletedProcess:
    return _crashdb(directory, "demo", *args)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--product", "Firefox", "--days", "0"], "--days must be from 1 to {most}"),
        (["--product", "Firefox", "--days", "9" * 20], "--days must be from 1 to {most}"),
        (["--product", "Firefox", "--limit", "9" * 20],
         "field 'limit': integer out of range (99999999999999999999)"),
        (["--product", "Firefox", "--limit", "0"], "--limit must be at least 1"),
        (["--product", "F" * 31], "field 'product': longer than 30 characters (31)"),
    ],
)
def test_top_crashers_mistakes_are_one_line(dbUrl, tmp_path, args, message):
    result = _crashdb(tmp_path, "top-crashers", "--db", dbUrl, *args)
    most = (datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=1)
            - STORED_DAYS[0]).days
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"crashdb: error: {message}".format(most=most)]


def test_top_crashers_on_a_database_never_upgraded(tmp_path):
    result = _crashdb(tmp_path, "top-crashers", "--product", "Firefox")
    assert result.returncode == 1
    assert "run `crashdb upgrade-db`" in result.stderr and "Traceback" not in result.stderr


@pytest_twisted.inlineCallbacks
def test_demo_command_from_a_fresh_directory_twice(tmp_path):
    first = _runDemo(tmp_path)  # no arguments at all: the embedded default, here
    assert first.returncode == 0, first.stderr
    assert "Top crashers: Firefox (all versions)" in first.stdout
    assert "rank move  count" in first.stdout
    created = re.search(r"weekly partitions: (\d+) created by this run", first.stdout)
    assert created and int(created.group(1)) >= 4 * 3  # every table of three weeks at least
    assert "Traceback" not in first.stderr
    assert (tmp_path / "crashdb.sqlite").exists()
    second = _runDemo(tmp_path, "--crashes", "300")
    assert second.returncode == 0, second.stderr
    assert "Top crashers: Firefox (all versions)" in second.stdout
    top = _crashdb(tmp_path, "top-crashers", "--product", "Firefox", "--version", "17.0b3",
                   "--limit", "3")
    assert top.returncode == 0, top.stderr
    lines = top.stdout.splitlines()
    assert lines[0].startswith("Top crashers: Firefox 17.0b3, ") and len(lines) == 3 + 3
    assert lines[3].split()[:2] == ["1", "new"] and "mozilla::dom::WebSocket::Send" in lines[3]
    db = DBConnector(f"sqlite:///{tmp_path / 'crashdb.sqlite'}")
    try:
        yield db.setup()
        reports = yield db.reports.countReports()
    finally:
        yield db.stop()
    assert reports >= 4000 + 300


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
def test_demo_command_on_postgresql(tmp_path, dbUrl):
    result = _runDemo(tmp_path, "--db", dbUrl, "--crashes", "300")
    assert result.returncode == 0, result.stderr
    assert "Top crashers: Firefox (all versions)" in result.stdout
    assert "300 were made into reports" in result.stdout and "FAILED" not in result.stdout
    assert not (tmp_path / "crashdb.sqlite").exists()

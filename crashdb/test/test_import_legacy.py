"""Importing a legacy crash database: each problem on its own, the reconciliation, resuming
after an interruption, SQLite and PostgreSQL targets, and the command line."""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from crashdb import partitions
from crashdb.app.importer import (
    ImportSummary,
    LegacyImporter,
    LegacySource,
    VersionMapper,
    prepare,
)
from crashdb.exceptions import InvalidInputError
from crashdb.partitions import partitionName
from crashdb.test.fake.fakedb import FakeDBConnector
from crashdb.test.util import db as dbutil
from crashdb.test.util.db import PostgresUnavailable, postgres, requirePostgres, upgradeUrl
from crashdb.test.util.legacy import (
    CONSOLIDATED,
    REJECTED,
    VERSION_MAP,
    WRITTEN,
    ProblemDatabase,
    buildProblemDatabase,
    generateReports,
    newEmptyPostgresDatabase,
    writeLegacy,
)

SUMMARY_KEYS = ("read", "written", "consolidated", "rejected", "aliased", "versions_added")


@pytest.fixture
def problem(tmp_path) -> ProblemDatabase:
    """The problem fixture in a SQLite legacy database."""
    return buildProblemDatabase(f"sqlite:///{tmp_path / 'legacy.sqlite'}")


def counts(summary: ImportSummary) -> dict[str, int]:
    return {key: summary.asDict()[key] for key in SUMMARY_KEYS}


@defer.inlineCallbacks
def importProblem(db, problem: ProblemDatabase, batch_size: int = 4, version_map=VERSION_MAP):
    """Load the version map and import; (summary, rejects rows without the header)."""
    if version_map:
        yield db.versions.loadVersionMap(version_map)
    rejects = io.StringIO()
    summary = yield LegacyImporter(db, problem.url, batch_size=batch_size, rejects=rejects).run()
    rows = list(csv.reader(io.StringIO(rejects.getvalue())))
    assert rows[0] == ["legacy_id", "uuid", "reason"]
    return summary, rows[1:]


def snapshotThd(backend):
    """A thd reading everything an import writes, without crashdb's ids (which differ between
    databases): reports by uuid with their extensions, versions and aliases."""

    def thd(conn: sa.Connection) -> dict:
        reports = partitions.readable(conn, backend, "reports")
        extensions = partitions.readable(conn, backend, "extensions")
        byId = {}
        for row in conn.execute(sa.select(reports)).mappings():
            values = dict(row)
            report_id = values.pop("id")
            byId[report_id] = values | {"extensions": []}
        query = sa.select(extensions).order_by(extensions.c.report_id, extensions.c.extension_key)
        for row in conn.execute(query).mappings():
            byId[row["report_id"]]["extensions"].append(
                (row["extension_key"], row["extension_id"], row["extension_version"],
                 row["date_processed"])
            )
        versions = conn.execute(sa.text(
            "SELECT v.product, v.version, a.alias FROM product_versions v"
            " LEFT JOIN version_aliases a ON a.version_id = v.id"
            " ORDER BY v.product, v.version, a.alias")).all()
        return {
            "reports": sorted(byId.values(), key=lambda r: (r["uuid"], r["date_processed"])),
            "versions": [tuple(row) for row in versions],
        }

    return thd


def snapshot(db) -> defer.Deferred:
    return db.pool.do(snapshotThd(db.backend))


def byUuid(snap: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for report in snap["reports"]:
        found.setdefault(report["uuid"], []).append(report)
    return found


# -- the reconciliation ---------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_reconciliation_counts_every_row_once_and_balances(db, problem):
    summary, _ = yield importProblem(db, problem)
    assert counts(summary) == problem.expectedSummary()
    assert summary.balanced
    assert summary.read == summary.written + summary.consolidated + summary.rejected
    stored = yield snapshot(db)
    assert len(stored["reports"]) == summary.written


def test_unbalanced_books_are_reported():
    summary = ImportSummary(read=10, written=5, consolidated=2, rejected=2)
    assert not summary.balanced
    assert any("DOES NOT BALANCE" in line for line in summary.lines())
    assert summary.asDict()["balanced"] is False


# -- each problem on its own ----------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_reports_land_in_their_week_with_their_canonical_version(db, problem):
    yield importProblem(db, problem)
    stored = byUuid((yield snapshot(db)))
    for row in problem.byFate(WRITTEN):
        [report] = stored[row.values["uuid"]]
        assert report["version"] == row.version, row
        assert partitionName("reports", report["date_processed"]) == f"reports_{row.week}", row


@pytest_twisted.inlineCallbacks
def test_sunday_and_monday_boundary_rows_go_to_different_weeks(db, problem):
    yield importProblem(db, problem)
    parts = yield db.partitions.getPartitions("reports")
    assert [p["name"] for p in parts] == [
        "reports_20121008", "reports_20121015", "reports_20121022"
    ]
    stored = byUuid((yield snapshot(db)))
    # naive legacy timestamps are UTC: the last second of Sunday stays in Sunday's week
    assert partitionName("reports", stored["sunday"][0]["date_processed"]) == "reports_20121015"
    assert partitionName("reports", stored["monday"][0]["date_processed"]) == "reports_20121022"
    assert stored["sunday"][0]["date_processed"].utcoffset().total_seconds() == 0


@pytest_twisted.inlineCallbacks
def test_versions_are_mapped_through_aliases_and_counted(db, problem):
    summary, _ = yield importProblem(db, problem)
    stored = byUuid((yield snapshot(db)))
    spellings = {row.values["version"] for row in problem.rows if row.version == "4.0b1"}
    assert len(spellings) >= 7  # the fixture really has many spellings of one version
    assert {stored[f"ver-{n:02d}"][0]["version"] for n in range(1, 8)} == {"4.0b1"}
    assert summary.aliased == sum(row.aliased for row in problem.byFate(WRITTEN)) == 8


@pytest_twisted.inlineCallbacks
def test_unknown_versions_are_added_as_canonical_and_listed(db, problem):
    summary, _ = yield importProblem(db, problem)
    assert summary.new_versions == [("Firefox", "3.7a1pre"), ("Thunderbird", "3.1")]
    assert summary.asDict()["versions_added"] == 2
    assert (yield db.versions.canonicalVersion("Firefox", " 3.7a1pre")) == "3.7a1pre"
    versions = yield db.versions.getProductVersions()
    # the over-long unknown version of a rejected row was not added
    assert "3.0 pre-release build 7" not in {v["version"] for v in versions}


@pytest_twisted.inlineCallbacks
def test_without_a_version_map_every_spelling_becomes_a_version(db, problem):
    summary, _ = yield importProblem(db, problem, version_map=None)
    assert summary.aliased == 0
    assert ("Firefox", "4.0 Beta 1") in summary.new_versions
    assert summary.balanced


@pytest_twisted.inlineCallbacks
def test_duplicates_keep_the_latest_row_and_only_its_extensions(db, problem):
    yield importProblem(db, problem, batch_size=3)  # duplicates far apart, in other batches
    stored = byUuid((yield snapshot(db)))
    [dup] = stored["dup-1"]
    assert dup["date_processed"].day == 17
    assert [e[1] for e in dup["extensions"]] == ["new@example.com"]
    [tie] = stored["dup-tie"]
    assert tie["signature"] == "same"
    assert not any(len(reports) > 1 for reports in stored.values())


@pytest_twisted.inlineCallbacks
def test_a_uuid_duplicated_across_weeks_becomes_one_report_in_the_latest_week(db, problem):
    yield importProblem(db, problem)
    stored = byUuid((yield snapshot(db)))
    [report] = stored["dup-weeks"]
    assert partitionName("reports", report["date_processed"]) == "reports_20121022"
    assert [e[1] for e in report["extensions"]] == ["late@example.com"]


@pytest_twisted.inlineCallbacks
def test_an_unusable_latest_duplicate_leaves_the_earlier_row_to_win(db, problem):
    summary, rejects = yield importProblem(db, problem)
    stored = byUuid((yield snapshot(db)))
    [report] = stored["dup-bad"]
    assert partitionName("reports", report["date_processed"]) == "reports_20121008"
    assert [e[1] for e in report["extensions"]] == ["kept@example.com"]
    assert ["902", "dup-bad"] in [row[:2] for row in rejects]


@pytest_twisted.inlineCallbacks
def test_extensions_get_their_reports_date_and_keys_in_legacy_order(db, problem):
    yield importProblem(db, problem)
    [report] = byUuid((yield snapshot(db)))["clean-1"]
    processed = report["date_processed"]
    assert report["extensions"] == [
        (0, "ext-a@example.com", "1.0", processed),
        (1, "ext-b@example.com", None, processed),
    ]


@pytest_twisted.inlineCallbacks
def test_rejects_list_every_unusable_row_with_its_reason(db, problem):
    summary, rejects = yield importProblem(db, problem)
    expected = {row.id: row for row in problem.byFate(REJECTED)}
    assert sorted(int(row[0]) for row in rejects) == sorted(expected)
    for legacy_id, uuid, reason in rejects:
        row = expected[int(legacy_id)]
        assert uuid == (row.values["uuid"] or "")
        assert row.reason in reason, (row, reason)
    assert summary.rejected == len(rejects)
    stored = byUuid((yield snapshot(db)))
    for uuid in ("long-sig", "no-date", "nul", "ver-16"):
        assert uuid not in stored


@pytest_twisted.inlineCallbacks
def test_consolidated_rows_are_counted_not_written(db, problem):
    summary, rejects = yield importProblem(db, problem)
    assert summary.consolidated == len(problem.byFate(CONSOLIDATED)) == 4
    rejected_ids = {int(row[0]) for row in rejects}
    assert not rejected_ids & {row.id for row in problem.byFate(CONSOLIDATED)}


def test_prepare_rejects_blank_uuid_and_bad_extensions():
    from crashdb.app.importer import LegacyReport

    mapper = VersionMapper([], [])
    blank = LegacyReport(1, {"uuid": "  ", "date_processed": None})
    assert prepare(blank, mapper).reason == "no uuid"
    bad = LegacyReport(
        2,
        {"uuid": "u", "date_processed": problemDate()},
        extensions=[{"extension_id": None, "extension_version": "1"}],
    )
    assert "extensions.extension_id" in prepare(bad, mapper).reason


def problemDate():
    import datetime

    return datetime.datetime(2012, 10, 16, tzinfo=datetime.UTC)


@pytest_twisted.inlineCallbacks
def test_a_row_refused_only_by_the_bulk_write_is_rejected_alone(db, problem):
    real = db.reports.addReports

    def stricter(reports):
        for index, report in enumerate(reports):
            if report["uuid"] == "clean-2":
                return defer.fail(InvalidInputError("refused", field="build", index=index))
        return real(reports)

    db.reports.addReports = stricter
    summary, rejects = yield importProblem(db, problem, batch_size=50)
    expected = problem.expectedSummary()
    assert summary.rejected == expected["rejected"] + 1
    assert summary.written == expected["written"] - 1
    assert summary.balanced
    assert ["2", "clean-2", "field 'build': refused"] in rejects
    stored = byUuid((yield snapshot(db)))
    assert "clean-2" not in stored and "clean-1" in stored


# -- re-running and resuming ----------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_rerunning_a_finished_import_changes_nothing(db, problem):
    first, _ = yield importProblem(db, problem)
    before = yield snapshot(db)
    second, rejects = yield importProblem(db, problem, version_map=None)
    assert (yield snapshot(db)) == before
    assert counts(second) | {"versions_added": 2} == counts(first)
    assert second.new_versions == []  # the first run made them canonical
    assert len(rejects) == first.rejected


@pytest_twisted.inlineCallbacks
def test_the_collector_runs_less_often_during_an_import_and_as_before_after(db, problem):
    """The import raises the collector's young threshold (a fifth of its CPU went to the
    collector) only while it runs, even when it fails."""
    from crashdb.app.importer.run import GC_THRESHOLD

    before = gc.get_threshold()
    during = []
    yield LegacyImporter(db, problem.url, batch_size=4,
                         progress=lambda done, total: during.append(gc.get_threshold())).run()
    assert during and all(threshold[0] >= GC_THRESHOLD for threshold in during)
    assert gc.get_threshold() == before

    def fail(done, total):
        raise Interrupted()

    with pytest.raises(Interrupted):
        yield LegacyImporter(db, problem.url, batch_size=4, progress=fail).run()
    assert gc.get_threshold() == before


class Interrupted(Exception):
    pass


@pytest_twisted.inlineCallbacks
def test_interrupted_import_resumes_to_the_result_of_one_run(db, problem):
    real = db.reports.addReports
    calls = []

    def failingAfterTwo(reports):
        calls.append(len(reports))
        if len(calls) > 2:
            return defer.fail(Interrupted("killed half way"))
        return real(reports)

    db.reports.addReports = failingAfterTwo
    with pytest.raises(Interrupted):
        yield importProblem(db, problem, batch_size=4)
    half = yield snapshot(db)
    assert 0 < len(half["reports"]) < problem.expectedSummary()["written"]

    db.reports.addReports = real
    resumed, _ = yield importProblem(db, problem, batch_size=4, version_map=None)

    reference = FakeDBConnector()
    uninterrupted, _ = yield importProblem(reference, problem, batch_size=4)
    assert (yield snapshot(db)) == (yield snapshot(reference))
    for key in ("read", "written", "consolidated", "rejected", "aliased"):
        assert getattr(resumed, key) == getattr(uninterrupted, key), key


# -- backends -------------------------------------------------------------------------------------


def _postgresOrSkip(make):
    try:
        return make()
    except PostgresUnavailable as error:
        if requirePostgres():
            pytest.fail(str(error))
        pytest.skip(str(error))


@pytest_twisted.inlineCallbacks
def test_same_import_on_sqlite_and_postgresql_targets_gives_the_same_reports(problem, tmp_path):
    sqliteUrl = f"sqlite:///{tmp_path / 'target.sqlite'}"
    upgradeUrl(sqliteUrl)
    pgUrl = _postgresOrSkip(postgres.newDatabase)
    snapshots, summaries = [], []
    try:
        for url in (sqliteUrl, pgUrl):
            target = dbutil.TestDBConnector(url)
            try:
                summary, _ = yield importProblem(target, problem, batch_size=5)
                summaries.append(counts(summary))
                snapshots.append((yield snapshot(target)))
            finally:
                yield target.stop()
    finally:
        postgres.dropDatabase(pgUrl)
    assert summaries[0] == summaries[1] == problem.expectedSummary()
    assert snapshots[0] == snapshots[1]
    assert len(snapshots[0]["reports"]) == problem.expectedSummary()["written"]


@pytest_twisted.inlineCallbacks
def test_a_postgresql_legacy_database_imports_the_same_way(tmp_path):
    url = _postgresOrSkip(newEmptyPostgresDatabase)
    try:
        legacy = buildProblemDatabase(url)  # PostgreSQL text holds no NUL: one row fewer
        db = FakeDBConnector()
        summary, rejects = yield importProblem(db, legacy, batch_size=4)
    finally:
        postgres.dropDatabase(url)
    assert counts(summary) == legacy.expectedSummary()
    assert summary.read == 34
    stored = byUuid((yield snapshot(db)))
    assert [e[1] for e in stored["dup-1"][0]["extensions"]] == ["new@example.com"]


# -- the command line -----------------------------------------------------------------------------


def crashdb(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crashdb", *args], capture_output=True, text=True, timeout=300,
        **kw
    )


def _writeMap(path) -> None:
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["product", "alias", "version"])
        writer.writerows(VERSION_MAP)


def test_command_writes_rejects_and_summary_and_prints_the_reconciliation(problem, tmp_path):
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    upgradeUrl(target)
    _writeMap(tmp_path / "map.csv")
    result = crashdb(
        "import-legacy", "--from", problem.url, "--db", target,
        "--version-map", "map.csv", "--batch-size", "7", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "import-summary.json").read_text())
    assert {key: summary[key] for key in SUMMARY_KEYS} == problem.expectedSummary()
    assert summary["new_versions"] == [
        {"product": "Firefox", "version": "3.7a1pre"},
        {"product": "Thunderbird", "version": "3.1"},
    ]
    with open(tmp_path / "import-rejects.csv", newline="") as stream:
        rejects = list(csv.DictReader(stream))
    assert len(rejects) == summary["rejected"]
    assert set(rejects[0]) == {"legacy_id", "uuid", "reason"}
    assert "35 = 23 + 4 + 8  OK" in result.stdout
    assert "rows/s" in result.stderr or "100%" in result.stderr


def test_command_fails_with_one_line_for_a_bad_version_map_or_source(problem, tmp_path):
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    upgradeUrl(target)
    (tmp_path / "bad.csv").write_text(
        "product,alias,version\nFirefox,4.0 final,4.0.0.0.0.0.0.0.0\n"
    )
    result = crashdb("import-legacy", "--from", problem.url, "--db", target,
                     "--version-map", "bad.csv", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "bad.csv: line 2: field 'version': longer than 16" in result.stderr
    result = crashdb("import-legacy", "--from", f"sqlite:///{tmp_path / 'missing.sqlite'}",
                     "--db", target, cwd=tmp_path)
    assert result.returncode == 1 and "no such legacy database" in result.stderr
    assert not (tmp_path / "missing.sqlite").exists()


def _countReports(path) -> int:
    try:
        with sqlite3.connect(path, timeout=10) as conn:
            names = [n for (n,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'reports_2%'")]
            return sum(conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names)
    except sqlite3.OperationalError:
        return 0


def test_killed_import_run_again_equals_one_uninterrupted_run(tmp_path):
    source = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    writeLegacy(source, generateReports(12000, duplicate_every=7))
    killed, whole = tmp_path / "killed.sqlite", tmp_path / "whole.sqlite"
    for path in (killed, whole):
        upgradeUrl(f"sqlite:///{path}")

    process = subprocess.Popen(
        [sys.executable, "-m", "crashdb", "import-legacy", "--from", source,
         "--db", f"sqlite:///{killed}", "--batch-size", "25"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while _countReports(killed) < 1000 and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the import finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stored = _countReports(killed)
    assert 0 < stored < 10000

    again = crashdb("import-legacy", "--from", source, "--db", f"sqlite:///{killed}",
                    "--summary", "again.json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    once = crashdb("import-legacy", "--from", source, "--db", f"sqlite:///{whole}",
                   "--summary", "once.json", cwd=tmp_path)
    assert once.returncode == 0, once.stderr
    resumed = json.loads((tmp_path / "again.json").read_text())
    uninterrupted = json.loads((tmp_path / "once.json").read_text())
    for key in ("read", "written", "consolidated", "rejected", "aliased"):
        assert resumed[key] == uninterrupted[key], key
    assert resumed["consolidated"] > 0

    def dump(path):
        engine = sa.create_engine(f"sqlite:///{path}")
        try:
            with engine.connect() as conn:
                from crashdb.backends import SQLiteBackend

                return snapshotThd(SQLiteBackend(engine))(conn)
        finally:
            engine.dispose()

    assert dump(killed) == dump(whole)


def test_progress_shows_rows_per_second():
    from crashdb.app.scripts.import_legacy import RowsProgress

    now = [0.0]
    stream = io.StringIO()
    progress = RowsProgress("importing legacy reports", total=1000, stream=stream,
                            interactive=False, interval=0, clock=lambda: now[0])
    now[0] = 2.0
    progress.update(400)
    assert "400/1000" in stream.getvalue()
    assert "200 rows/s" in stream.getvalue()


def test_command_imports_from_a_bare_postgresql_url(tmp_path):
    """``--from postgresql://…`` means psycopg2, as ``--db`` does (SQLAlchemy alone would ask
    for psycopg 3)."""
    url = newEmptyPostgresDatabase()
    try:
        legacy = buildProblemDatabase(url)
        bare = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        assert bare.startswith("postgresql://")
        target = f"sqlite:///{tmp_path / 'target.sqlite'}"
        upgradeUrl(target)
        _writeMap(tmp_path / "map.csv")
        result = crashdb("import-legacy", "--from", bare, "--db", target,
                         "--version-map", "map.csv", cwd=tmp_path)
    finally:
        postgres.dropDatabase(url)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "import-summary.json").read_text())
    assert {key: summary[key] for key in SUMMARY_KEYS} == legacy.expectedSummary()


def test_a_missing_source_leaves_no_rejects_file(tmp_path):
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    upgradeUrl(target)
    result = crashdb("import-legacy", "--from", "postgresql+psycopg2://nobody@127.0.0.1:1/x",
                     "--db", target, cwd=tmp_path)
    assert result.returncode == 1 and "Connection refused" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target.sqlite"]


def test_streamed_batches_keep_extensions_with_their_reports(tmp_path):
    """The reports and extensions cursors are merged by key: gaps in the keys, reports
    without extensions, extensions of no report and batch edges all line up."""
    url = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    rows = [r | {"id": r["id"] * 3} for r in generateReports(40, duplicate_every=0)]
    writeLegacy(url, rows)
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # orphans: before the first report, between two, after the last
        for report_id in (1, 4, 10**6):
            conn.exec_driver_sql("INSERT INTO extensions VALUES (?, 0, 'orphan@x', '1')",
                                 (report_id,))
    engine.dispose()
    source = LegacySource(url)
    try:
        batches = list(source.batches(7))
    finally:
        source.close()
    assert [len(b) for b in batches] == [7] * 5 + [5]
    got = [(r.legacy_id, [e["extension_id"] for e in r.extensions])
           for batch in batches for r in batch]
    assert got == [(r["id"], [e[1] for e in r["extensions"]]) for r in rows]

"""The operator commands: upgrade-db and partitions, on both backends; errors are one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from crashdb import migrate, partitions


def crashdb(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crashdb", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def emptyUrl(request, tmp_path, backend: str) -> str:
    from crashdb.test.test_schema import _emptyUrl

    return _emptyUrl(request, tmp_path, backend)[0]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrade_db_twice(request, tmp_path, backend):
    url = emptyUrl(request, tmp_path, backend)
    first = crashdb("upgrade-db", "--db", url)
    assert first.returncode == 0, first.stderr
    assert "before: none" in first.stdout and f"after:  {migrate.headVersion()}" in first.stdout
    second = crashdb("upgrade-db", "--db", url)
    assert second.returncode == 0, second.stderr
    assert f"before: {migrate.headVersion()}" in second.stdout


def test_upgrade_db_uses_crashdb_url_then_the_default(tmp_path):
    url = f"sqlite:///{tmp_path / 'env.sqlite'}"
    assert crashdb("upgrade-db", env={"CRASHDB_URL": url}).returncode == 0
    assert (tmp_path / "env.sqlite").exists()
    env = {k: v for k, v in os.environ.items() if k != "CRASHDB_URL"}
    result = subprocess.run([sys.executable, "-m", "crashdb", "upgrade-db"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "crashdb.sqlite").exists()


@pytest.mark.parametrize("url,message", [
    ("nosuchdriver://x/y", "unsupported database"),
    ("not a url", "not a database URL"),
    ("postgresql+pg8000://u@127.0.0.1:1/x", "driver"),
    ("postgresql://nobody@127.0.0.1:1/nothing", "Connection refused"),
])
def test_bad_urls_are_one_line_and_a_failure(url, message):
    result = crashdb("upgrade-db", "--db", url)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines()
             if not line.startswith("crashdb: waiting for the database")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("crashdb: error:") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_commands_refuse_a_database_that_is_not_upgraded(tmp_path):
    result = crashdb("partitions", "list", "--db", f"sqlite:///{tmp_path / 'new.sqlite'}")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("run `crashdb upgrade-db`")


@pytest.mark.parametrize("dbUrl", ["sqlite", "postgresql"], indirect=True)
def test_partitions_create_list_and_drop(dbUrl):
    created = crashdb("partitions", "create", "--ahead", "3", "--db", dbUrl)
    assert created.returncode == 0, created.stderr
    assert "16 partitions created" in created.stdout
    again = crashdb("partitions", "create", "--ahead", "3", "--db", dbUrl)
    assert "0 partitions created" in again.stdout
    listing = crashdb("partitions", "list", "--db", dbUrl)
    assert listing.returncode == 0 and "16 partitions" in listing.stdout
    # all four weeks are current or ahead: nothing is old enough to drop
    dry = crashdb("partitions", "drop", "--keep-weeks", "1", "--dry-run", "--db", dbUrl)
    assert dry.returncode == 0 and "0 partitions would be dropped" in dry.stdout
    refused = crashdb("partitions", "drop", "--keep-weeks", "0", "--db", dbUrl)
    assert refused.returncode == 1 and "at least 1" in refused.stderr


@pytest.mark.parametrize("dbUrl", ["sqlite"], indirect=True)
def test_partitions_drop_keeps_the_newest_weeks(dbUrl):
    import datetime

    from crashdb.backends import createEngine
    from crashdb.partitions import WEEK, weekStart

    engine, backend, _ = createEngine(dbUrl)
    current = weekStart(datetime.datetime.now(datetime.UTC))
    for back in range(5):
        partitions.createWeek(engine, backend, current - back * WEEK)
    engine.dispose()
    dry = crashdb("partitions", "drop", "--keep-weeks", "2", "--dry-run", "--db", dbUrl)
    assert "12 partitions would be dropped" in dry.stdout
    old = f"reports_{current - 2 * WEEK:%Y%m%d}"
    assert f"would drop {old}" in dry.stdout
    dropped = crashdb("partitions", "drop", "--keep-weeks", "2", "--db", dbUrl)
    assert "12 partitions dropped" in dropped.stdout
    listing = crashdb("partitions", "list", "--db", dbUrl).stdout
    assert f"reports_{current:%Y%m%d}" in listing and f"reports_{current - WEEK:%Y%m%d}" in listing
    assert old not in listing


def test_an_unreachable_database_is_one_waiting_line_then_the_error():
    quiet = crashdb("upgrade-db", "--db", "postgresql://nobody@127.0.0.1:1/nothing")
    lines = quiet.stderr.strip().splitlines()
    assert len(lines) == 2, quiet.stderr
    assert lines[0].startswith("crashdb: waiting for the database for up to 10s:")
    assert lines[1].startswith("crashdb: error: database unavailable:")
    verbose = crashdb("upgrade-db", "--verbose", "--db", "postgresql://nobody@127.0.0.1:1/x")
    retries = [line for line in verbose.stderr.splitlines() if "retrying database call" in line]
    assert len(retries) > 3 and verbose.returncode == 1


def test_retry_notice_says_once_per_window_how_long_it_waits():
    import logging

    from crashdb.app.cli import RetryNotice

    now = [0.0]
    notice = RetryNotice(clock=lambda: now[0])

    def retry(remaining):
        record = logging.LogRecord("crashdb.pool", logging.WARNING, "", 0, "retrying %s", ("x",),
                                   None)
        record.retryRemaining, record.retryReason = remaining, "refused"
        return notice.filter(record), record.getMessage()

    assert retry(9.96) == (True, "waiting for the database for up to 10s: refused")
    now[0] = 5.0
    assert retry(4.9)[0] is False
    now[0] = 11.0  # a later outage: said again
    assert retry(10.0)[0] is True
    other = logging.LogRecord("crashdb.pool", logging.WARNING, "", 0, "other", (), None)
    assert notice.filter(other) is True


@pytest.mark.parametrize("command", [
    ["partitions", "list"],
    ["import-legacy", "--from", "sqlite:///nope.sqlite"],
    ["top-crashers", "--product", "Firefox"],
])
def test_a_failed_command_creates_no_file(tmp_path, command):
    env = {k: v for k, v in os.environ.items() if k != "CRASHDB_URL"}
    result = subprocess.run([sys.executable, "-m", "crashdb", *command], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1
    assert "crashdb upgrade-db" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dbUrl", ["sqlite", "postgresql"], indirect=True)
def test_partitions_list_counts_rows_and_totals_each_week(dbUrl):
    import datetime

    from crashdb.partitions import weekStart

    monday = weekStart(datetime.datetime.now(datetime.UTC))
    assert crashdb("partitions", "create", "--ahead", "0", "--db", dbUrl).returncode == 0
    engine = sa.create_engine(dbUrl.replace("postgresql://", "postgresql+psycopg2://"))
    child = f"reports_{monday:%Y%m%d}"
    midweek = f"{monday + datetime.timedelta(days=3, hours=12):%Y-%m-%d %H:%M:%S.%f}"
    with engine.begin() as conn:  # written behind crashdb's back: never analyzed
        for report_id in (1, 2, 3):
            conn.execute(sa.text(f'INSERT INTO "{child}" (id, uuid, date_processed)'
                                 " VALUES (:i, :u, :d)"),
                         {"i": report_id, "u": f"u{report_id}", "d": midweek})
    engine.dispose()
    listing = crashdb("partitions", "list", "--db", dbUrl)
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if line.startswith(child))
    assert line.split()[2] == "3"
    assert "?" not in listing.stdout
    total = listing.stdout.split("week total", 1)[1].splitlines()[1].split()
    assert total[1:4] == ["tables", f"{monday:%Y-%m-%d}", "3"]


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
def test_a_large_child_never_analyzed_has_no_count_until_analyzed(dbUrl):
    import datetime

    from crashdb.backends import createEngine
    from crashdb.partitions import weekStart

    monday = weekStart(datetime.datetime.now(datetime.UTC))
    engine, backend, _ = createEngine(dbUrl)
    try:
        partitions.createWeek(engine, backend, monday)
        child = f"reports_{monday:%Y%m%d}"
        with engine.begin() as conn:
            conn.execute(sa.text(f'INSERT INTO "{child}" (id, uuid, date_processed)'
                                 " SELECT i, 'u' || i, :d FROM generate_series(1, 50) i"),
                         {"d": monday + datetime.timedelta(hours=1)})
        backend.EXACT_COUNT_BYTES = -1  # every child counts as large
        with engine.connect() as conn:
            assert backend.childSizes(conn, [child])[child][0] is None
        with engine.begin() as conn:
            conn.exec_driver_sql(f'ANALYZE "{child}"')
        with engine.connect() as conn:
            assert backend.childSizes(conn, [child])[child][0] == 50  # the estimate
    finally:
        engine.dispose()

"""The operator commands: upgrade-db and partitions, on both backends; errors are one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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
    lines = [line for line in result.stderr.splitlines() if not line.startswith("crashdb: retry")]
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

"""Tests of the throwaway PostgreSQL server used by the PostgreSQL tests and benchmarks.

They skip when no PostgreSQL binaries are installed, unless CRASHDB_REQUIRE_PG=1 (as in CI),
where a missing server must fail loudly instead of silently skipping the PostgreSQL coverage.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import psycopg2
import pytest

import crashdb
from crashdb.test.util.pgserver import PostgresServer, findPostgresBinDir

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(crashdb.__file__)))


@pytest.fixture(scope="module")
def pgBinDir() -> str:
    """The PostgreSQL binaries; skip (or fail, with CRASHDB_REQUIRE_PG=1) without them."""
    bindir = findPostgresBinDir()
    if bindir is None:
        message = "no PostgreSQL server binaries (initdb, pg_ctl) installed"
        if os.environ.get("CRASHDB_REQUIRE_PG") == "1":
            pytest.fail(f"{message}, but CRASHDB_REQUIRE_PG=1", pytrace=False)
        pytest.skip(message)
    return bindir


@pytest.fixture(scope="module")
def server(pgBinDir: str) -> Iterator[PostgresServer]:
    """One server shared by the tests that leave it running."""
    with PostgresServer() as pg:
        yield pg


@pytest.fixture
def ownServer(pgBinDir: str) -> Iterator[PostgresServer]:
    """A server of the test's own, for tests that crash or stop it."""
    pg = PostgresServer()
    try:
        pg.start()
        yield pg
    finally:
        pg.cleanup()


def query(url: str, statement: str, *, syncCommit: bool = False) -> list[tuple]:
    """Run one autocommitted statement and return its rows (none for DDL/DML)."""
    conn = psycopg2.connect(url, connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            if syncCommit:
                # The server runs with synchronous_commit=off, whose last commits a crash loses.
                cur.execute("SET synchronous_commit = on")
            cur.execute(statement)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def test_urlNeedsStart() -> None:
    with pytest.raises(RuntimeError):
        PostgresServer().url  # noqa: B018


def test_startServesConnections(server: PostgresServer) -> None:
    assert server.url == f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    [(version,)] = query(server.url, "SELECT version()")
    assert version.startswith("PostgreSQL ")
    assert query(server.url, "SHOW fsync") == [("off",)]
    assert query(server.url, "SHOW listen_addresses") == [("127.0.0.1",)]
    assert query(server.url, "SHOW max_connections") == [("200",)]
    server.start()  # already running: a no-op
    assert query(server.url, "SELECT 1") == [(1,)]


def test_createDatabase(server: PostgresServer) -> None:
    url = server.createDatabase("plain")
    assert url == f"postgresql://postgres@127.0.0.1:{server.port}/plain"
    assert query(url, "SELECT current_database()") == [("plain",)]


def test_createDatabaseFromTemplate(server: PostgresServer) -> None:
    templateUrl = server.createDatabase("tmpl")
    query(templateUrl, "CREATE TABLE seeded (x int)")
    query(templateUrl, "INSERT INTO seeded VALUES (7)")
    url = server.createDatabase("fromTemplate", template="tmpl")
    assert url.endswith("/fromTemplate")
    assert query(url, "SELECT x FROM seeded") == [(7,)]


def test_crashKeepsDataAndRestartReusesPort(ownServer: PostgresServer) -> None:
    query(ownServer.url, "CREATE TABLE survivor (x int)", syncCommit=True)
    query(ownServer.url, "INSERT INTO survivor VALUES (42)", syncCommit=True)
    url, directory = ownServer.url, ownServer.directory

    ownServer.crash()
    with pytest.raises(psycopg2.OperationalError):
        query(url, "SELECT 1")
    ownServer.crash()  # already down: a no-op

    ownServer.restart()
    assert (ownServer.url, ownServer.directory) == (url, directory)
    assert query(url, "SELECT x FROM survivor") == [(42,)]
    with open(ownServer.logFile) as log:
        assert "not properly shut down" in log.read()


def test_stopRestartAndCleanup(ownServer: PostgresServer) -> None:
    query(ownServer.url, "CREATE TABLE kept (x int)")
    ownServer.stop()
    ownServer.stop()  # idempotent
    with pytest.raises(psycopg2.OperationalError):
        query(ownServer.url, "SELECT 1")
    ownServer.restart()
    assert query(ownServer.url, "SELECT count(*) FROM kept") == [(0,)]

    directory = ownServer.directory
    assert directory is not None
    ownServer.cleanup()
    assert not os.path.exists(directory)
    ownServer.cleanup()  # idempotent


def test_commandLine(pgBinDir: str) -> None:
    # Not pytest's tmp_path: as root, the postgres user cannot traverse /tmp/pytest-of-root.
    directory = tempfile.mkdtemp(prefix="crashdb-pgcli-")
    pythonPath = [REPO_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(pythonPath))
    command = [sys.executable, "-m", "crashdb.test.util.pgserver"]
    try:
        started = subprocess.run(
            [*command, "start", "--dir", directory],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip()
        assert url.startswith("postgresql://postgres@127.0.0.1:")
        assert "\n" not in url
        assert query(url, "SELECT 1") == [(1,)]

        stopped = subprocess.run(
            [*command, "stop", "--dir", directory],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert stopped.returncode == 0, stopped.stderr
        assert not os.path.exists(directory)
        with pytest.raises(psycopg2.OperationalError):
            query(url, "SELECT 1")
    finally:
        if os.path.exists(directory):
            PostgresServer(datadir=directory).cleanup()
            shutil.rmtree(directory, ignore_errors=True)

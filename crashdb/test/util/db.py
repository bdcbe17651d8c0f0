"""Real databases for tests: SQLite files and fresh PostgreSQL databases.

PostgreSQL comes from ``$CRASHDB_TEST_DB_URL`` (a server where the user may create databases),
else from a throwaway cluster started once per test run (:mod:`crashdb.test.util.pgserver`).
Each test gets a new database copied from a template that was migrated once, which takes a few
tens of milliseconds. Without PostgreSQL its tests skip, unless ``CRASHDB_REQUIRE_PG=1`` (set by
CI), which turns the skip into a failure.
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading

import sqlalchemy as sa

from crashdb import migrate, model
from crashdb.backends import backendFor, createEngine
from crashdb.connector import DBConnector
from crashdb.test.fake.fakedb import TestDataMixin


class TestDBConnector(TestDataMixin, DBConnector):
    """A real connector with ``insertTestData``, for tests against SQLite or PostgreSQL."""


def upgradeUrl(url: str) -> None:
    """Migrate the database at ``url`` to the newest schema, synchronously."""
    engine, backend, _ = createEngine(url)
    try:
        with engine.begin() as conn:
            migrate.upgrade(conn, backend)
    finally:
        engine.dispose()


def upgradeTo(engine: sa.Engine, backend, target: str = "head") -> tuple[str | None, str | None]:
    """Migrate the database of ``engine`` to revision ``target``; (version before, after)."""
    with engine.begin() as conn:
        return migrate.upgrade(conn, backend, target)


def useModelBefore007(monkeypatch) -> None:
    """Make weekly children as before migration 007, whose add-on tables had no ``uuid``: for
    tests that create a week at an older revision (``monkeypatch.undo()`` restores the model)."""
    from crashdb import partitions

    metadata = sa.MetaData()
    for table in model.metadata.tables.values():
        copy = table.to_metadata(metadata)
        if table.name in ("extensions", "plugins_reports"):
            copy._columns.remove(copy.c.uuid)
    monkeypatch.setattr(model, "metadata", metadata)
    monkeypatch.setattr(partitions, "_child_metadata", {})


class PostgresUnavailable(Exception):
    """No PostgreSQL could be found or started for the tests."""


class _PostgresProvider:
    """Hands out fresh, migrated PostgreSQL databases."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server = None
        self._adminUrl: str | None = None
        self._template: str | None = None
        self._failure: str | None = None
        self._names = itertools.count(1)

    def _admin(self) -> sa.URL:
        if self._adminUrl is None:
            url = os.environ.get("CRASHDB_TEST_DB_URL")
            if not url:
                from crashdb.test.util.pgserver import PostgresServer

                try:
                    server = PostgresServer()
                    server.start()
                except Exception as error:  # no binaries, or it would not start
                    raise PostgresUnavailable(f"cannot start PostgreSQL: {error}") from error
                self._server = server
                atexit.register(server.cleanup)
                url = server.url
            self._adminUrl = url
        return sa.make_url(self._adminUrl).set(drivername="postgresql+psycopg2")

    def _execute(self, statement: str) -> None:
        engine = sa.create_engine(
            self._admin(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
        )
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(statement)
        except sa.exc.OperationalError as error:
            raise PostgresUnavailable(f"cannot reach PostgreSQL: {error.orig}") from error
        finally:
            engine.dispose()

    def newDatabase(self) -> str:
        """The URL of a new, migrated, empty database."""
        with self._lock:
            if self._failure is not None:
                raise PostgresUnavailable(self._failure)
            try:
                if self._template is None:
                    template = f"crashdb_template_{os.getpid()}"
                    self._execute(f'DROP DATABASE IF EXISTS "{template}"')
                    self._execute(f'CREATE DATABASE "{template}"')
                    upgradeUrl(self._admin().set(database=template).render_as_string(False))
                    self._template = template
                name = f"crashdb_test_{os.getpid()}_{next(self._names)}"
                self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
            except PostgresUnavailable as error:
                self._failure = str(error)
                raise
            return self._admin().set(database=name).render_as_string(hide_password=False)

    def dropDatabase(self, url: str) -> None:
        name = sa.make_url(url).database
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def adminUrl(self) -> str:
        with self._lock:
            return self._admin().render_as_string(hide_password=False)


postgres = _PostgresProvider()


def requirePostgres() -> bool:
    """True when PostgreSQL tests must run (CI), so that unavailability fails instead."""
    return os.environ.get("CRASHDB_REQUIRE_PG") == "1"


class _CitusProvider:
    """Hands out the test Citus cluster's one database (a coordinator and two workers started
    once per test run, ``crashdb.test.util.citus``), migrated once and emptied for each test:
    Citus keeps its node list per database, so a new database per test would cost seconds."""

    #: the tables emptied between tests (the crash data goes with its weeks)
    KEPT = ("alembic_version",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cluster = None
        self._url: str | None = None
        self._failure: str | None = None

    def _start(self) -> str:
        from crashdb.test.util.citus import CitusCluster, citusInstalled

        if not citusInstalled():
            raise PostgresUnavailable("Citus is not installed (run ../shared/citus/build.sh)")
        cluster = CitusCluster()
        atexit.register(cluster.cleanup)
        try:
            cluster.start()
        except Exception as error:
            raise PostgresUnavailable(f"cannot start a Citus cluster: {error}") from error
        self._cluster = cluster
        url = sa.make_url(cluster.url).set(drivername="postgresql+psycopg2")
        upgradeUrl(url.render_as_string(hide_password=False))
        return url.render_as_string(hide_password=False)

    def newDatabase(self) -> str:
        """The URL of the cluster's migrated database, emptied: no weeks, no rows, every id
        sequence restarted."""
        with self._lock:
            if self._failure is not None:
                raise PostgresUnavailable(self._failure)
            try:
                if self._url is None:
                    self._url = self._start()
            except PostgresUnavailable as error:
                self._failure = str(error)
                raise
            self.empty(self._url)
            return self._url

    def empty(self, url: str) -> None:
        engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg2"),
                                  poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                children = backendFor(engine).childNames(conn)
                if children:  # one statement: the add-ons' references do not stand in the way
                    conn.exec_driver_sql(
                        "DROP TABLE " + ", ".join(f'"{name}"' for name in children))
                tables = [t.name for t in model.tablesFor("postgresql")
                          if t.name not in self.KEPT]
                conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{name}"' for name in tables)
                                     + " CASCADE")
                for (sequence,) in conn.exec_driver_sql(
                        "SELECT sequencename FROM pg_sequences"
                        " WHERE schemaname = current_schema()"):
                    conn.execute(sa.text("SELECT setval(:s, 1, false)"), {"s": sequence})
        finally:
            engine.dispose()

    def dropDatabase(self, url: str) -> None:
        """Nothing: the next test empties the shared database."""

    def cluster(self):
        """The running test cluster (started if need be), for tests of a database of their own."""
        self.newDatabase()
        return self._cluster


citus = _CitusProvider()

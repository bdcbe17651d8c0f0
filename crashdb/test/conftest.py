"""Fixtures: ``db`` runs a behaviour test on the fake, file SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import pytest_twisted

from crashdb.test.fake.fakedb import FakeDBConnector
from crashdb.test.util.db import (
    PostgresUnavailable,
    TestDBConnector,
    citus,
    postgres,
    requirePostgres,
    upgradeUrl,
)
from crashdb.test.util.legacy import newEmptyPostgresDatabase

BACKENDS = ("fake", "sqlite", "postgresql")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "citus: the module's db/realdb tests also run on a Citus cluster")


def pytest_generate_tests(metafunc):
    """``db`` and ``realdb`` run each test on every backend; a module marked ``citus`` adds a
    Citus coordinator with two workers (SPEC 17)."""
    extra = ("citus",) if metafunc.definition.get_closest_marker("citus") else ()
    given = {name.strip() for marker in metafunc.definition.iter_markers("parametrize")
             for name in (marker.args[0].split(",") if isinstance(marker.args[0], str)
                          else marker.args[0])}
    for name, backends in (("db", BACKENDS), ("realdb", BACKENDS[1:])):
        if name in metafunc.fixturenames and name not in given:  # unless the test chose
            metafunc.parametrize(name, backends + extra, indirect=True)


def _postgresUrl(provider=postgres) -> str:
    try:
        return provider.newDatabase()
    except PostgresUnavailable as error:
        if requirePostgres():
            pytest.fail(f"CRASHDB_REQUIRE_PG=1 but {error}")
        pytest.skip(str(error))


@pytest.fixture(params=["sqlite", "postgresql"])
def emptyUrl(request, tmp_path):
    """The URL of an empty database, never migrated (for migration tests)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite'}"
        return
    try:
        url = newEmptyPostgresDatabase("crashdb_migration")
    except PostgresUnavailable as error:
        if requirePostgres():
            pytest.fail(str(error))
        pytest.skip(str(error))
    yield url
    postgres.dropDatabase(url)


@pytest.fixture
def dbUrl(request, tmp_path):
    """The URL of an empty, migrated real database of the parametrized backend."""
    backend = getattr(request, "param", "sqlite")
    if backend == "postgresql":
        url = _postgresUrl()
        yield url
        postgres.dropDatabase(url)
    elif backend == "citus":
        yield _postgresUrl(citus)  # the cluster's one database, emptied
    else:
        url = f"sqlite:///{tmp_path / 'crashdb.sqlite'}"
        upgradeUrl(url)
        yield url


def _connector(backend: str, tmp_path):
    """A ready connector on ``backend``, stopped (and its database dropped) afterwards."""
    url = None
    if backend == "fake":
        connector = FakeDBConnector()
    else:
        if backend == "postgresql":
            url = _postgresUrl()  # copied from a migrated template
        elif backend == "citus":
            url = _postgresUrl(citus)  # the cluster's database, emptied
        else:
            url = f"sqlite:///{tmp_path / 'crashdb.sqlite'}"
            upgradeUrl(url)
        connector = TestDBConnector(url)
    connector.kind = backend  # "fake", "sqlite", "postgresql" or "citus", for tests that differ
    yield connector
    pytest_twisted.blockon(connector.stop())
    if backend == "postgresql":
        postgres.dropDatabase(url)


@pytest.fixture
def db(request, tmp_path):
    """A ready connector (with insertTestData) on the fake, SQLite and PostgreSQL in turn."""
    yield from _connector(request.param, tmp_path)


@pytest.fixture
def realdb(request, tmp_path):
    """A ready threaded connector on SQLite and PostgreSQL in turn (not the fake)."""
    yield from _connector(request.param, tmp_path)

"""The upgraded database equals the model, on both backends; upgrades are safe to repeat."""

from __future__ import annotations

import datetime
import threading

import pytest
import pytest_twisted
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from crashdb import migrate, model, partitions
from crashdb.backends import createEngine
from crashdb.connector import DBConnector
from crashdb.exceptions import DatabaseNotReadyError
from crashdb.partitions import parseChildName, weekTables

WEEK_OF = datetime.datetime(2012, 10, 16, tzinfo=datetime.UTC)


def differences(conn: sa.Connection, extra_tables=()) -> list:
    """What differs between the database and the model (plus ``extra_tables``)."""
    expected = sa.MetaData()
    for table in model.tablesFor(conn.dialect.name):
        table.to_metadata(expected)
    for table in extra_tables:
        if table.name not in expected.tables:
            table.to_metadata(expected)
    wanted = set(expected.tables)

    def include(obj, name, type_, reflected, compare_to):
        if type_ == "table":
            return name in wanted  # other weeks' children and alembic_version are not compared
        return True

    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_object": include}
    )
    return compare_metadata(context, expected)


@pytest.mark.parametrize("dbUrl", ["sqlite", "postgresql", "citus"], indirect=True)
def test_upgraded_database_matches_the_model(dbUrl):
    engine, backend, _ = createEngine(dbUrl)
    try:
        partitions.createWeek(engine, backend, WEEK_OF)
        children = weekTables(WEEK_OF, backend)
        with engine.connect() as conn:
            assert differences(conn, children) == []
            found = {name for name in sa.inspect(conn).get_table_names() if parseChildName(name)}
        assert found == {child.name for child in children}
    finally:
        engine.dispose()


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
def test_postgres_children_carry_the_seed_names(dbUrl):
    engine, backend, _ = createEngine(dbUrl)
    try:
        partitions.createWeek(engine, backend, WEEK_OF)
        with engine.connect() as conn:
            indexes = set(conn.exec_driver_sql(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'reports_20121015'"
            ).scalars())
            fks = dict(conn.exec_driver_sql(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE contype = 'f' AND conrelid::regclass::text LIKE '%%_20121015'"
            ).all())
            parents_indexes = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_indexes WHERE tablename = 'reports'").scalar()
            partitioned = set(conn.exec_driver_sql(
                "SELECT c.relname FROM pg_partitioned_table p"
                " JOIN pg_class c ON c.oid = p.partrelid"
            ).scalars())
    finally:
        engine.dispose()
    assert indexes == {
        "reports_20121015_pkey", "reports_20121015_unique_uuid", "reports_20121015_build_key",
        "reports_20121015_date_processed_key", "reports_20121015_hangid_idx",
        "reports_20121015_product_version_key", "reports_20121015_reason",
        "reports_20121015_signature_date_processed_build_key", "reports_20121015_url_key",
    }
    assert fks["extensions_20121015_report_id_fkey"] == (
        "FOREIGN KEY (report_id) REFERENCES reports_20121015(id) ON DELETE CASCADE")
    assert fks["plugins_reports_20121015_report_id_fkey"] == (
        "FOREIGN KEY (report_id) REFERENCES reports_20121015(id) ON DELETE CASCADE")
    assert parents_indexes == 0
    assert partitioned == set(model.PARTITIONED_TABLES)


def _emptyUrl(request, tmp_path, backend):
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite'}", None
    from crashdb.test.conftest import _postgresUrl
    from crashdb.test.util.db import postgres

    url = _postgresUrl()
    with sa.create_engine(url).begin() as conn:  # make it empty again: drop the template's schema
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    request.addfinalizer(lambda: postgres.dropDatabase(url))
    return url, None


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest_twisted.inlineCallbacks
def test_setup_refuses_an_empty_database_until_upgraded(request, tmp_path, backend):
    url, _ = _emptyUrl(request, tmp_path, backend)
    db = DBConnector(url)
    try:
        with pytest.raises(DatabaseNotReadyError, match="crashdb upgrade-db"):
            yield db.setup()
        assert (yield db.model.is_current()) is False
        yield db.setup(check_version=False)
        before, after = yield db.model.upgrade()
        assert (before, after) == (None, migrate.headVersion())
        assert (yield db.model.upgrade()) == (after, after)
        assert (yield db.model.is_current()) is True
        yield db.setup()
    finally:
        yield db.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_upgrades_are_serialized(request, tmp_path, backend):
    url, _ = _emptyUrl(request, tmp_path, backend)
    results, errors = [], []

    def upgrade():
        engine, backend, _ = createEngine(url)
        try:
            with engine.begin() as conn:
                results.append(migrate.upgrade(conn, backend))
        except Exception as error:  # collected and asserted below
            errors.append(error)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    head = migrate.headVersion()
    assert sorted(results, key=str) == sorted([(None, head)] + [(head, head)] * 3, key=str)


def test_constructor_does_no_io():
    db = DBConnector("postgresql://nobody@127.0.0.1:1/nothing")  # nothing listens there
    assert db.engine.url.drivername == "postgresql+psycopg2"
    db.engine.dispose()


def test_url_comes_from_the_environment_then_the_default(monkeypatch):
    monkeypatch.setenv("CRASHDB_URL", "sqlite:////tmp/from-env.sqlite")
    assert DBConnector().db_url == "sqlite:////tmp/from-env.sqlite"
    assert DBConnector("sqlite:////tmp/given.sqlite").db_url == "sqlite:////tmp/given.sqlite"
    monkeypatch.delenv("CRASHDB_URL")
    assert DBConnector().db_url == "sqlite:///crashdb.sqlite"

"""Migration 007: extensions and plugins_reports gain their report's uuid, filled for the rows
stored before it, on a database holding a week of crash data."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa
from alembic import command

from crashdb import migrate, model, partitions
from crashdb.backends import createEngine
from crashdb.test.test_migration_002 import _tablesNamed
from crashdb.test.test_schema import differences
from crashdb.test.util.db import upgradeTo, useModelBefore007

WEEK = datetime.datetime(2012, 10, 15, tzinfo=datetime.UTC)
WHEN = WEEK + datetime.timedelta(days=1, hours=3)
CHILDREN = ("extensions", "plugins_reports")


@pytest.fixture
def modelBefore007(monkeypatch):
    """The model as it was at 006 (no uuid on the add-on tables), for making a week then."""
    useModelBefore007(monkeypatch)
    return monkeypatch


def _storeWeek(engine: sa.Engine, backend) -> None:
    partitions.createWeek(engine, backend, WEEK)
    with engine.begin() as conn:
        for report_id, uuid in ((7, "u-seven"), (8, "u-eight")):
            conn.execute(sa.text(
                "INSERT INTO reports_20121015 (id, uuid, date_processed) VALUES (:i, :u, :d)"),
                {"i": report_id, "u": uuid, "d": WHEN})
            conn.execute(sa.text(
                "INSERT INTO extensions_20121015 (report_id, date_processed, extension_key,"
                " extension_id) VALUES (:i, :d, 0, 'addon@example.com')"),
                {"i": report_id, "d": WHEN})
        conn.execute(model.plugins.insert().values(id=1, filename="f.dll", name="F"))
        conn.execute(sa.text(
            "INSERT INTO plugins_reports_20121015 (report_id, plugin_id, date_processed, version)"
            " VALUES (8, 1, :d, '1.0')"), {"d": WHEN})


def test_upgrade_fills_each_add_on_with_its_reports_uuid(emptyUrl, modelBefore007):
    engine, backend, _ = createEngine(emptyUrl)
    try:
        upgradeTo(engine, backend, "006")
        _storeWeek(engine, backend)
        modelBefore007.undo()
        assert upgradeTo(engine, backend, "007") == ("006", "007")
        with engine.connect() as conn:
            extensions = conn.execute(sa.text(
                "SELECT report_id, uuid FROM extensions_20121015 ORDER BY report_id")).all()
            plugins = conn.execute(sa.text(
                "SELECT report_id, uuid FROM plugins_reports_20121015")).all()
            assert [tuple(row) for row in extensions] == [(7, "u-seven"), (8, "u-eight")]
            assert [tuple(row) for row in plugins] == [(8, "u-eight")]
            # what 007 changed matches the model (later migrations' tables are not there yet)
            changed = {f"{name}{suffix}" for name in CHILDREN for suffix in ("", "_20121015")}
            assert [d for d in differences(conn, partitions.weekTables(WEEK, backend))
                    if changed & set(_tablesNamed(d))] == []
        with engine.begin() as conn:
            command.downgrade(migrate.alembicConfig(conn), "006")
            for table in ("extensions", "extensions_20121015", "plugins_reports_20121015"):
                assert "uuid" not in {c["name"] for c in sa.inspect(conn).get_columns(table)}
            assert conn.execute(sa.text("SELECT count(*) FROM extensions_20121015")).scalar() == 2
    finally:
        engine.dispose()

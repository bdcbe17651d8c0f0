"""Migration 004 (signatures, signature_versions) on a database holding earlier data."""

from __future__ import annotations

import datetime

import pytest_twisted
import sqlalchemy as sa
from alembic import command

from crashdb import migrate, model, partitions
from crashdb.backends import createEngine
from crashdb.connector import DBConnector
from crashdb.partitions import childTable, weekStart
from crashdb.test.test_migration_002 import _tablesNamed
from crashdb.test.test_schema import differences
from crashdb.test.util.db import upgradeTo, useModelBefore007

UTC = datetime.UTC
PROCESSED = datetime.datetime(2012, 10, 16, 12, 0, tzinfo=UTC)
NEW_TABLES = {"signatures", "signature_versions"}
BEFORE = "003"  # the revision 004 follows


@pytest_twisted.inlineCallbacks
def test_upgrade_keeps_reports_and_their_day_rolls_up(emptyUrl, monkeypatch):
    engine, backend, _ = createEngine(emptyUrl)
    try:
        assert upgradeTo(engine, backend, BEFORE) == (None, BEFORE)
        monday = weekStart(PROCESSED)
        useModelBefore007(monkeypatch)  # the week as it was made then
        partitions.createWeek(engine, backend, monday)
        with engine.begin() as conn:
            report_id = backend.reserveIds(conn, "reports", 1)[0]
            conn.execute(childTable("reports", monday, backend).insert().values(
                id=report_id, uuid="u-1", date_processed=PROCESSED, product="Firefox",
                version="16.0", signature="js::GC", build="20121010"))
        monkeypatch.undo()
        before, after = upgradeTo(engine, backend, "head")
        assert (before, after) == (BEFORE, migrate.headVersion())
        with engine.connect() as conn:
            assert NEW_TABLES <= set(sa.inspect(conn).get_table_names())
            assert conn.execute(sa.select(sa.func.count()).select_from(
                model.signatures)).scalar_one() == 0
        assert upgradeTo(engine, backend, "head") == (after, after)
    finally:
        engine.dispose()

    db = DBConnector(emptyUrl)
    try:
        yield db.setup()
        written = yield db.rollups.runDay(PROCESSED.date())
        assert (written["tcbs"], written["signatures"]) == (1, 2)
        found = yield db.signatures.getSignature("js::GC")
        assert (found["first_report"], found["first_build"]) == (PROCESSED, "20121010")
        assert [v["version"] for v in found["versions"]] == ["16.0"]
    finally:
        yield db.stop()


def test_upgraded_tables_match_the_model_and_downgrade_drops_them(emptyUrl):
    engine, backend, _ = createEngine(emptyUrl)
    try:
        upgradeTo(engine, backend, "head")
        with engine.connect() as conn:
            mine = [d for d in differences(conn) if NEW_TABLES & set(_tablesNamed(d))]
            indexes = {index["name"] for index in sa.inspect(conn).get_indexes(
                "signature_versions")}
        assert mine == []
        assert "signature_versions_product_first_report_idx" in indexes
        with engine.begin() as conn:
            command.downgrade(migrate.alembicConfig(conn), BEFORE)
        with engine.connect() as conn:
            assert not NEW_TABLES & set(sa.inspect(conn).get_table_names())
            assert migrate.currentVersion(conn) == BEFORE
    finally:
        engine.dispose()

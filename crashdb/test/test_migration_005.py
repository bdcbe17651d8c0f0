"""Migration 005 (product_adu, product_throttles) on a database holding the data before it."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from crashdb import migrate, model
from crashdb.backends import createEngine
from crashdb.test.test_migration_002 import _tablesNamed
from crashdb.test.test_schema import differences
from crashdb.test.util.db import upgradeTo

DAY = datetime.date(2012, 10, 16)
NEW_TABLES = {"product_adu", "product_throttles"}
# the revision 005 follows (002 on this branch; whatever the chain says once merged)
PREVIOUS = ScriptDirectory.from_config(migrate.alembicConfig()).get_revision("005").down_revision


def test_upgrade_keeps_the_rollup_and_adds_usable_tables(emptyUrl):
    engine, backend, _ = createEngine(emptyUrl)
    try:
        assert upgradeTo(engine, backend, PREVIOUS) == (None, PREVIOUS)
        with engine.begin() as conn:
            conn.execute(model.tcbs.insert().values(
                day=DAY, product="Firefox", version="16.0", signature="sig", count=7,
                win_count=7, mac_count=0, lin_count=0, hang_count=0, startup_count=1,
            ))
        assert upgradeTo(engine, backend, "005") == (PREVIOUS, "005")
        with engine.begin() as conn:
            kept = conn.execute(sa.select(model.tcbs.c.signature, model.tcbs.c.count)).all()
            assert [tuple(row) for row in kept] == [("sig", 7)]
            conn.execute(model.product_adu.insert().values(
                day=DAY, product="Firefox", version="16.0", adu=3_000_000_000))
            conn.execute(model.product_throttles.insert().values(product="Firefox", throttle=0.1))
            assert conn.execute(sa.select(model.product_adu.c.adu)).scalar_one() == 3_000_000_000
            assert conn.execute(sa.select(model.product_throttles.c.throttle)).scalar_one() == 0.1
        refused = [
            model.product_adu.insert().values(day=DAY, product="Firefox", version="16.0", adu=1),
            model.product_adu.insert().values(day=DAY, product="Firefox", version="17.0", adu=-1),
            model.product_throttles.insert().values(product="Firefox", throttle=0.5),
            model.product_throttles.insert().values(product="Thunderbird", throttle=0),
            model.product_throttles.insert().values(product="Thunderbird", throttle=1.5),
        ]
        for statement in refused:
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
                conn.execute(statement)

        with engine.begin() as conn:
            command.downgrade(migrate.alembicConfig(conn), PREVIOUS)
            assert not NEW_TABLES & set(sa.inspect(conn).get_table_names())
            assert conn.execute(sa.select(model.tcbs.c.count)).scalar_one() == 7
        assert upgradeTo(engine, backend, "005") == (PREVIOUS, "005")
    finally:
        engine.dispose()


def test_upgraded_tables_match_the_model(emptyUrl):
    engine, backend, _ = createEngine(emptyUrl)
    try:
        upgradeTo(engine, backend, "head")
        with engine.connect() as conn:
            assert NEW_TABLES <= set(sa.inspect(conn).get_table_names())
            mine = [d for d in differences(conn) if NEW_TABLES & set(_tablesNamed(d))]
            indexes = {index["name"] for index in sa.inspect(conn).get_indexes("product_adu")}
        assert mine == []
        assert "product_adu_product_day_idx" in indexes
    finally:
        engine.dispose()

"""Migration 002 (product_versions, version_aliases) on a database holding 001's data."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa

from crashdb import migrate, model, partitions
from crashdb.backends import createEngine
from crashdb.partitions import childTable, weekStart
from crashdb.test.test_schema import differences
from crashdb.test.util.db import upgradeTo, useModelBefore007

UTC = datetime.UTC
PROCESSED = datetime.datetime(2012, 10, 16, 12, 0, tzinfo=UTC)
NEW_TABLES = {"product_versions", "version_aliases"}


def test_upgrade_from_001_keeps_data_and_adds_usable_tables(emptyUrl, monkeypatch):
    engine, backend, _ = createEngine(emptyUrl)
    try:
        assert upgradeTo(engine, backend, "001") == (None, "001")
        monday = weekStart(PROCESSED)
        useModelBefore007(monkeypatch)  # the week as it was made then
        partitions.createWeek(engine, backend, monday)
        with engine.begin() as conn:
            report_id = backend.reserveIds(conn, "reports", 1)[0]
            conn.execute(
                childTable("reports", monday, backend).insert().values(
                    id=report_id, uuid="u-001", date_processed=PROCESSED, product="Firefox",
                    version="4.0b1",
                )
            )
            conn.execute(
                model.jobs.insert().values(uuid="u-001", queued_at=PROCESSED)
            )
        monkeypatch.undo()

        before, after = upgradeTo(engine, backend, "head")
        assert (before, after) == ("001", migrate.headVersion())
        assert int(after) >= 2

        with engine.begin() as conn:
            reports = childTable("reports", monday, backend)
            kept = conn.execute(sa.select(reports.c.uuid, reports.c.version)).all()
            assert [tuple(row) for row in kept] == [("u-001", "4.0b1")]
            assert conn.execute(sa.select(model.jobs.c.uuid)).scalars().all() == ["u-001"]
            assert conn.execute(sa.select(sa.func.count()).select_from(
                model.product_versions)).scalar_one() == 0

            version_id = conn.execute(
                model.product_versions.insert()
                .values(product="Firefox", version="4.0b1")
                .returning(model.product_versions.c.id)
            ).scalar_one()
            conn.execute(
                model.version_aliases.insert().values(
                    product="Firefox", alias="4.0 Beta 1", version_id=version_id
                )
            )
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(model.product_versions.insert().values(product="Firefox", version="4.0b1"))
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(
                model.version_aliases.insert().values(
                    product="Firefox", alias="4.0 Beta 2", version_id=version_id + 1000
                )
            )
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(
                model.version_aliases.insert().values(
                    product="Firefox", alias="4.0 Beta 1", version_id=version_id
                )
            )

        # running the upgrade again changes nothing
        assert upgradeTo(engine, backend, "head") == (after, after)
    finally:
        engine.dispose()


def test_upgraded_tables_match_the_model(emptyUrl):
    engine, backend, _ = createEngine(emptyUrl)
    try:
        upgradeTo(engine, backend, "head")
        with engine.connect() as conn:
            found = differences(conn)
            inspector = sa.inspect(conn)
            assert NEW_TABLES <= set(inspector.get_table_names())
            foreign_keys = inspector.get_foreign_keys("version_aliases")
        mine = [d for d in found if NEW_TABLES & set(_tablesNamed(d))]
        assert mine == []
        assert [(fk["referred_table"], fk["options"].get("ondelete")) for fk in foreign_keys] == [
            ("product_versions", "CASCADE")
        ]
    finally:
        engine.dispose()


def _tablesNamed(difference) -> list[str]:
    """Table names mentioned in one compare_metadata difference (which may be nested)."""
    if isinstance(difference, list):
        return [name for item in difference for name in _tablesNamed(item)]
    names = []
    for part in difference:
        if isinstance(part, sa.Table):
            names.append(part.name)
        elif isinstance(part, str):
            names.append(part)
        elif hasattr(part, "table") and isinstance(part.table, sa.Table):
            names.append(part.table.name)
    return names

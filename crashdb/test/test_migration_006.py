"""Migration 006 (api_tokens) on a database holding the previous version's data."""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from crashdb import migrate, model
from crashdb.backends import createEngine
from crashdb.test.test_migration_002 import _tablesNamed
from crashdb.test.util.db import upgradeTo

UTC = datetime.UTC
CREATED = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PREVIOUS = "005"


def test_upgrade_keeps_data_adds_api_tokens_and_downgrades(emptyUrl):
    engine, backend, _ = createEngine(emptyUrl)
    try:
        upgradeTo(engine, backend, PREVIOUS)
        with engine.begin() as conn:
            conn.execute(model.product_versions.insert().values(product="Firefox", version="16.0"))
        before, after = upgradeTo(engine, backend, "head")
        assert before == PREVIOUS and after == migrate.headVersion()
        with engine.begin() as conn:
            assert conn.execute(sa.select(model.product_versions.c.version)).scalars().all() \
                == ["16.0"]
            conn.execute(model.api_tokens.insert().values(
                name="alice", token_sha256="a" * 64, created_at=CREATED))
            stored = conn.execute(sa.select(model.api_tokens.c.created_at)).scalar_one()
            assert stored == CREATED
        for duplicate in ({"name": "alice", "token_sha256": "b" * 64},
                          {"name": "bob", "token_sha256": "a" * 64}):
            try:
                with engine.begin() as conn:
                    conn.execute(model.api_tokens.insert().values(created_at=CREATED,
                                                                  **duplicate))
            except sa.exc.IntegrityError:
                continue
            raise AssertionError(f"{duplicate} was accepted")

        metadata = sa.MetaData()
        for table in model.tablesFor(backend.name):
            table.to_metadata(metadata)
        with engine.connect() as conn:
            differences = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert [d for d in differences if "api_tokens" in _tablesNamed(d)] == []

        with engine.begin() as conn:
            command.downgrade(migrate.alembicConfig(conn), PREVIOUS)
        assert "api_tokens" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()

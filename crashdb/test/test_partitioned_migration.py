"""A migration adding an index and a column to a partitioned table reaches every child, old and
new; shown with a migration written for this test."""

from __future__ import annotations

import dataclasses
import datetime
import os
import textwrap

import pytest
import sqlalchemy as sa
from alembic import command

from crashdb import migrate, model, partitions
from crashdb.backends import createEngine
from crashdb.test.test_schema import differences

OLD_WEEK = datetime.datetime(2012, 10, 16, tzinfo=datetime.UTC)
NEW_WEEK = OLD_WEEK + datetime.timedelta(days=14)

TEST_MIGRATION = '''
"""Test only: index reports children on (os_name, os_version); add raw_crashes.source."""
import sqlalchemy as sa
from crashdb.migrate.partitioned import addChildIndex, addPartitionedColumn

revision = "900"
down_revision = {head!r}
branch_labels = None
depends_on = None


def upgrade():
    addChildIndex("reports", "os_key", ["os_name", "os_version"])
    addPartitionedColumn("raw_crashes", sa.Column("source", sa.Text))
'''


@pytest.fixture
def changeModel(monkeypatch):
    """Changes the model as the test migration's author would."""
    return lambda: _change(monkeypatch)


def _change(monkeypatch) -> None:
    spec = model.CHILD_SPECS["reports"]
    changed = dataclasses.replace(spec, indexes=spec.indexes + (("os_key", ("os_name",
                                                                           "os_version"), False),))
    monkeypatch.setitem(model.CHILD_SPECS, "reports", changed)
    metadata = sa.MetaData()
    for table in model.metadata.tables.values():
        table.to_metadata(metadata)
    metadata.tables["raw_crashes"].append_column(sa.Column("source", sa.Text))
    monkeypatch.setattr(model, "metadata", metadata)
    monkeypatch.setattr(partitions, "_child_metadata", {})


@pytest.mark.parametrize("dbUrl", ["sqlite", "postgresql"], indirect=True)
def test_new_index_and_column_reach_old_and_new_children(dbUrl, tmp_path, changeModel):
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "900_test.py").write_text(
        textwrap.dedent(TEST_MIGRATION.format(head=migrate.headVersion())))
    engine, backend, _ = createEngine(dbUrl)
    try:
        partitions.createWeek(engine, backend, OLD_WEEK)  # a child made before the migration
        changeModel()
        with engine.begin() as conn:
            config = migrate.alembicConfig(conn)
            config.set_main_option("version_locations", os.pathsep.join(
                [os.path.join(migrate.HERE, "versions"), str(versions)]))
            command.upgrade(config, "900")
        partitions.createWeek(engine, backend, NEW_WEEK)  # a child made afterwards, from the model
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            for week in ("20121015", "20121029"):
                names = {ix["name"] for ix in inspector.get_indexes(f"reports_{week}")}
                assert f"reports_{week}_os_key" in names
                columns = {c["name"] for c in inspector.get_columns(f"raw_crashes_{week}")}
                assert "source" in columns
            children = (partitions.weekTables(OLD_WEEK, backend)
                        + partitions.weekTables(NEW_WEEK, backend))
            diff = differences(conn, children)
        assert diff == []
    finally:
        engine.dispose()

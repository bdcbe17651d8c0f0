"""Schema migrations: numbered Alembic revisions in ``versions/``, run through Alembic's public
``command`` and ``ScriptDirectory`` API.

A new database is an upgraded empty one. Upgrades are serialized (a PostgreSQL advisory lock, a
SQLite immediate transaction) and run in one transaction, so a second concurrent upgrade waits,
then finds nothing to do.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

HERE = os.path.dirname(os.path.abspath(__file__))


def alembicConfig(conn: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", HERE)
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.path.join(HERE, "versions"))
    config.attributes["connection"] = conn
    return config


def headVersion() -> str:
    """The newest revision this crashdb knows."""
    head = ScriptDirectory.from_config(alembicConfig()).get_current_head()
    assert head is not None
    return head


def currentVersion(conn: sa.Connection) -> str | None:
    """The database's revision, or None for a database crashdb never upgraded."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(conn: sa.Connection, backend, target: str = "head") -> tuple[str | None, str | None]:
    """Upgrade to ``target`` inside the caller's transaction; (version before, version after)."""
    backend.lockForUpgrade(conn)
    before = currentVersion(conn)
    command.upgrade(alembicConfig(conn), target)
    after = currentVersion(conn)
    if after == headVersion():
        backend.afterUpgrade(conn)
    return before, after

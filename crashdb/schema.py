"""``db.model``: the model's tables, and the database's schema version (SPEC 4 and 9).

``upgrade`` is what ``crashdb upgrade-db`` runs; ``is_current`` is what ``setup()`` checks.
"""

from __future__ import annotations

import sqlalchemy as sa
from twisted.internet import defer

from crashdb import migrate, model
from crashdb.base import DBConnectorComponent


class Model(DBConnectorComponent):
    """The tables (``db.model.reports``…) and the schema version of the database."""

    metadata = model.metadata

    def __getattr__(self, name: str) -> sa.Table:
        """``db.model.reports`` and so on: every table of the model by its name."""
        try:
            return model.metadata.tables[name]
        except KeyError:
            raise AttributeError(name) from None

    def upgrade(self) -> defer.Deferred:
        """Upgrade the database to this crashdb's schema; Deferred of (version before, after).
        Idempotent, and serialized against concurrent upgrades."""

        def thd(conn: sa.Connection) -> tuple[str | None, str | None]:
            return migrate.upgrade(conn, self.db.backend)

        return self.db.pool.do(thd)

    def is_current(self) -> defer.Deferred:
        """Deferred of True if the database is at this crashdb's newest schema version."""

        def thd(conn: sa.Connection) -> bool:
            return migrate.currentVersion(conn) == migrate.headVersion()

        return self.db.pool.doRead(thd)

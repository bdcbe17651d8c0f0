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
    reports = model.reports
    extensions = model.extensions
    plugins_reports = model.plugins_reports
    raw_crashes = model.raw_crashes
    plugins = model.plugins
    processors = model.processors
    jobs = model.jobs
    tcbs = model.tcbs
    product_versions = model.product_versions
    version_aliases = model.version_aliases
    id_sequences = model.id_sequences

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

        return self.db.pool.do(thd)

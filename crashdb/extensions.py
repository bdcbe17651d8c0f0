"""Extensions: the add-ons a report's application had, stored with the report."""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from twisted.internet import defer

from crashdb.base import DBConnectorComponent
from crashdb.partitions import WEEK, weekStart
from crashdb.validation import requireDatetime, requireInteger, validatesInput

#: what ``getExtensions`` returns of a row (its ``uuid`` is the report's, for Citus's shards)
EXTENSION_COLUMNS = ("report_id", "date_processed", "extension_key", "extension_id",
                     "extension_version")


def weekOf(report_id: int, date_processed: datetime.datetime) -> tuple:
    """Validate a (report_id, date_processed) pair; the week's [start, end)."""
    requireInteger(report_id, "report_id")
    requireDatetime(date_processed, "date_processed", stored=True)
    start = weekStart(date_processed)
    return start, start + WEEK


class ExtensionsConnectorComponent(DBConnectorComponent):
    """Reads a report's extensions (``db.extensions``); they are written by ``addReport``."""

    @validatesInput
    def getExtensions(self, report_id: int, date_processed: datetime.datetime) -> defer.Deferred:
        """Deferred of ``[{report_id, date_processed, extension_key, extension_id,
        extension_version}]`` ordered by ``extension_key``; only the report's week is read."""
        start, end = weekOf(report_id, date_processed)

        def thd(conn: sa.Connection) -> list[dict]:
            source = self.readable(conn, "extensions", start, end)
            query = (
                sa.select(*(source.c[name] for name in EXTENSION_COLUMNS))
                .where(*self.ofReport(source, report_id, start, end))
                .order_by(source.c.extension_key)
            )
            return self.rowsToDicts(conn.execute(query))

        return self.db.pool.doReplicaRead(thd)

"""Plugins: known plugins (found or created by filename and name) and the reports that had them."""

from __future__ import annotations

import datetime
from collections.abc import Iterable

import sqlalchemy as sa
from twisted.internet import defer

from crashdb import model
from crashdb.base import DBConnectorComponent, batched
from crashdb.extensions import weekOf
from crashdb.validation import requireString, validatesInput

plugins = model.plugins


def pluginIds(
    conn: sa.Connection, backend, wanted: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """Ids of the ``(filename, name)`` plugins, creating the missing ones; race-safe (the
    unique index decides, losers read the winner's row)."""
    wanted = list(dict.fromkeys(wanted))
    pairs = sa.tuple_(plugins.c.filename, plugins.c.name)

    def lookup(keys) -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        for chunk in batched(keys, 400):
            query = sa.select(plugins.c.filename, plugins.c.name, plugins.c.id).where(
                pairs.in_(chunk)
            )
            found.update({(f, n): i for f, n, i in conn.execute(query)})
        return found

    ids = lookup(wanted)
    missing = [key for key in wanted if key not in ids]
    if missing:
        conn.execute(
            backend.insert(plugins).on_conflict_do_nothing(),
            [{"filename": f, "name": n} for f, n in missing],
        )
        ids.update(lookup(missing))
    return ids


class PluginsConnectorComponent(DBConnectorComponent):
    """Plugins and the plugins each report had loaded (``db.plugins``)."""

    @validatesInput
    def findPluginId(self, filename: str, name: str) -> defer.Deferred:
        """Deferred of the id of plugin (filename, name), created if new; safe when racing."""
        requireString(filename, "filename")
        requireString(name, "name")

        def thd(conn: sa.Connection) -> int:
            return self.findOrCreateId(conn, plugins, {"filename": filename, "name": name})

        return self.db.pool.do(thd)

    @validatesInput
    def getPluginReports(self, report_id: int, date_processed: datetime.datetime) -> defer.Deferred:
        """Deferred of ``[{report_id, plugin_id, date_processed, version, filename, name}]`` of
        one report, ordered by plugin_id; only the report's week is read."""
        start, end = weekOf(report_id, date_processed)

        def thd(conn: sa.Connection) -> list[dict]:
            source = self.readable(conn, "plugins_reports", start, end)
            query = (
                sa.select(
                    source.c.report_id,
                    source.c.plugin_id,
                    source.c.date_processed,
                    source.c.version,
                    plugins.c.filename,
                    plugins.c.name,
                )
                .join(plugins, plugins.c.id == source.c.plugin_id)
                .where(*self.ofReport(source, report_id, start, end))
                .order_by(source.c.plugin_id)
            )
            return self.rowsToDicts(conn.execute(query))

        return self.db.pool.doReplicaRead(thd)

"""Reports: processed crashes, stored in the week of their ``date_processed``.

A report may carry its ``extensions`` and ``plugins``, stored in the same transaction. Writes are
idempotent per (uuid, week): re-adding a stored uuid returns its id and changes nothing, so
at-least-once delivery from processors is safe.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer

from crashdb import model
from crashdb.base import DBConnectorComponent, batched
from crashdb.exceptions import InvalidInputError
from crashdb.partitions import WEEK, childTable, executeInWeek, groupByWeek, weekStart
from crashdb.plugins import pluginIds
from crashdb.validation import (
    RowValidator,
    requireDatetime,
    requireInteger,
    requireString,
)

REPORT_FIELDS = tuple(c.name for c in model.reports.c)
CHILD_LISTS = ("extensions", "plugins")

_reportValidator = RowValidator(
    model.reports, required=("uuid", "date_processed"), exclude=("id",), extra=CHILD_LISTS
)
_extensionValidator = RowValidator(
    model.extensions,
    required=("extension_id",),
    exclude=("report_id", "date_processed", "extension_key"),
)
_pluginValidator = RowValidator(
    sa.Table(  # a plugin as the caller gives it: the plugin's identity and its loaded version
        "plugin_input",
        sa.MetaData(),
        model.plugins.c.filename._copy(),
        model.plugins.c.name._copy(),
        model.plugins_reports.c.version._copy(),
    ),
    required=("filename", "name", "version"),
)


def _validateReport(report: Any, index: int | None) -> None:
    _reportValidator.validate(report, index)
    for key, validator in (("extensions", _extensionValidator), ("plugins", _pluginValidator)):
        children = report.get(key)
        if children is None:
            continue
        if not isinstance(children, list | tuple):
            raise InvalidInputError("expected a list", field=key, index=index)
        for child in children:
            try:
                validator.validate(child)
            except InvalidInputError as error:
                raise InvalidInputError(
                    error.message, field=f"{key}.{error.field}" if error.field else key, index=index
                ) from None
    plugins = report.get("plugins") or ()
    if len({(p["filename"], p["name"]) for p in plugins}) != len(plugins):
        raise InvalidInputError("the same plugin is listed twice", field="plugins", index=index)


def validateFilters(
    product=None, version=None, signature=None, start=None, end=None, limit=None, offset=0
) -> None:
    """InvalidInputError for a filter of the wrong type (shared by getReports/countReports)."""
    for field, value, length in (("product", product, 30), ("version", version, 16),
                                 ("signature", signature, 255)):
        if value is not None:
            requireString(value, field, length)
    requireDatetime(start, "start", optional=True)
    requireDatetime(end, "end", optional=True)
    if limit is not None:
        requireInteger(limit, "limit")
        if limit < 0:
            raise InvalidInputError("must not be negative", field="limit")
    requireInteger(offset, "offset")
    if offset < 0:
        raise InvalidInputError("must not be negative", field="offset")


class ReportsConnectorComponent(DBConnectorComponent):
    """Processed crash reports (``db.reports``); see docs/components/reports.md."""

    def addReport(self, report: dict[str, Any]) -> defer.Deferred:
        """Store one report (with its extensions and plugins); Deferred of its id."""
        try:
            _validateReport(report, None)
        except InvalidInputError as error:
            return defer.fail(error)
        return self.db.pool.do(self._store, [report]).addCallback(lambda ids: ids[0])

    def addReports(self, reports: Sequence[dict[str, Any]]) -> defer.Deferred:
        """Store a batch atomically, any weeks; Deferred of the ids in input order.

        Every row is validated first: one bad row rejects the batch with an InvalidInputError
        naming its ``index`` and ``field``, and nothing is written.
        """
        if not isinstance(reports, list | tuple):
            return defer.fail(InvalidInputError(f"expected a list, got {type(reports).__name__}"))
        try:
            for index, report in enumerate(reports):
                _validateReport(report, index)
        except InvalidInputError as error:
            return defer.fail(error)
        if not reports:
            return defer.succeed([])
        return self.db.pool.do(self._store, list(reports))

    def _store(self, conn: sa.Connection, reports: list[dict[str, Any]]) -> list[int]:
        """Write reports week by week: insert what is new, look up what was already there."""
        strategy = self.db.strategy
        ids: list[int | None] = [None] * len(reports)
        indexed = [dict(report, _index=i) for i, report in enumerate(reports)]
        for monday, members in groupByWeek(indexed).items():
            child = childTable("reports", monday, strategy.name)
            first: dict[str, dict] = {}
            for member in members:  # a uuid repeated within the batch is one report
                first.setdefault(member["uuid"], member)
            fresh = list(first.values())
            reserved = strategy.reserveIds(conn, "reports", len(fresh))
            rows = []
            for member, report_id in zip(fresh, reserved):
                member["_id"] = report_id
                rows.append({name: member.get(name) for name in REPORT_FIELDS} | {"id": report_id})
            insert = (
                strategy.insert(child)
                .on_conflict_do_nothing(index_elements=["uuid"])
                .returning(child.c.uuid)
            )
            inserted = {uuid for (uuid,) in executeInWeek(conn, strategy, monday, insert, rows)}
            known = self._idsByUuid(conn, child, [u for u in first if u not in inserted])
            for member in members:
                owner = first[member["uuid"]]
                ids[member["_index"]] = owner["_id"] if owner["uuid"] in inserted else known[
                    owner["uuid"]]
            added = [m for m in fresh if m["uuid"] in inserted]
            self._storeExtensions(conn, monday, added)
            self._storePlugins(conn, monday, added)
        return ids  # type: ignore[return-value]

    @staticmethod
    def _idsByUuid(conn: sa.Connection, child: sa.Table, uuids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in batched(uuids):
            query = sa.select(child.c.uuid, child.c.id).where(child.c.uuid.in_(chunk))
            found.update((uuid, report_id) for uuid, report_id in conn.execute(query))
        return found

    def _storeExtensions(self, conn: sa.Connection, monday, reports: list[dict]) -> None:
        rows = [
            {
                "report_id": report["_id"],
                "date_processed": report["date_processed"],
                "extension_key": key,
                "extension_id": extension["extension_id"],
                "extension_version": extension.get("extension_version"),
            }
            for report in reports
            for key, extension in enumerate(report.get("extensions") or ())
        ]
        if rows:
            child = childTable("extensions", monday, self.db.strategy.name)
            executeInWeek(conn, self.db.strategy, monday, child.insert(), rows)

    def _storePlugins(self, conn: sa.Connection, monday, reports: list[dict]) -> None:
        wanted = {
            (plugin["filename"], plugin["name"])
            for report in reports
            for plugin in report.get("plugins") or ()
        }
        if not wanted:
            return
        ids = pluginIds(conn, self.db.strategy, wanted)
        rows = [
            {
                "report_id": report["_id"],
                "plugin_id": ids[(plugin["filename"], plugin["name"])],
                "date_processed": report["date_processed"],
                "version": plugin["version"],
            }
            for report in reports
            for plugin in report.get("plugins") or ()
        ]
        child = childTable("plugins_reports", monday, self.db.strategy.name)
        executeInWeek(conn, self.db.strategy, monday, child.insert(), rows)

    def getReport(
        self, uuid: str, date_processed: datetime.datetime | None = None
    ) -> defer.Deferred:
        """Deferred of the reportdict for ``uuid``, or None. With ``date_processed`` only that
        week's partition is read; without it every week is searched and, since uniqueness is
        per week, the most recently processed report with that uuid is returned."""
        try:
            requireString(uuid, "uuid", 50)
            requireDatetime(date_processed, "date_processed", optional=True)
        except InvalidInputError as error:
            return defer.fail(error)
        start = end = None
        if date_processed is not None:
            start = weekStart(date_processed)
            end = start + WEEK

        def thd(conn: sa.Connection) -> dict | None:
            source = self.db.strategy.readable(conn, "reports", start, end)
            query = sa.select(source).where(source.c.uuid == uuid)
            if start is not None:
                query = query.where(source.c.date_processed >= start,
                                    source.c.date_processed < end)
            query = query.order_by(source.c.date_processed.desc()).limit(1)
            row = conn.execute(query).first()
            return None if row is None else dict(row._mapping)

        return self.db.pool.do(thd)

    def _filtered(self, conn: sa.Connection, product, version, signature, start, end):
        source = self.db.strategy.readable(conn, "reports", start, end)
        conditions = []
        for column, value in (("product", product), ("version", version),
                              ("signature", signature)):
            if value is not None:
                conditions.append(source.c[column] == value)
        if start is not None:
            conditions.append(source.c.date_processed >= start)
        if end is not None:
            conditions.append(source.c.date_processed < end)
        return source, conditions

    def getReports(
        self,
        product: str | None = None,
        version: str | None = None,
        signature: str | None = None,
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> defer.Deferred:
        """Deferred of the matching reportdicts ordered by (date_processed, id); ``start``
        inclusive, ``end`` exclusive; only the overlapping partitions are read."""
        try:
            validateFilters(product, version, signature, start, end, limit, offset)
        except InvalidInputError as error:
            return defer.fail(error)

        def thd(conn: sa.Connection) -> list[dict]:
            source, conditions = self._filtered(conn, product, version, signature, start, end)
            query = (
                sa.select(source)
                .where(*conditions)
                .order_by(source.c.date_processed, source.c.id)
                .limit(limit)
                .offset(offset)
            )
            return self.rowsToDicts(conn.execute(query))

        return self.db.pool.do(thd)

    def countReports(
        self,
        product: str | None = None,
        version: str | None = None,
        signature: str | None = None,
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
    ) -> defer.Deferred:
        """Deferred of the number of reports matching the same filters as getReports."""
        try:
            validateFilters(product, version, signature, start, end)
        except InvalidInputError as error:
            return defer.fail(error)

        def thd(conn: sa.Connection) -> int:
            source, conditions = self._filtered(conn, product, version, signature, start, end)
            query = sa.select(sa.func.count()).select_from(source).where(*conditions)
            return conn.execute(query).scalar_one()

        return self.db.pool.do(thd)

"""Reading the legacy database: its reports in key order with their extensions, reflected
rather than assumed."""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from crashdb import model
from crashdb.app.importer.summary import LegacyImportError
from crashdb.base import batched

UTC = datetime.UTC
REPORT_COLUMNS = tuple(c.name for c in model.reports.c if c.name != "id")
DATETIME_COLUMNS = frozenset(
    c.name for c in model.reports.c if isinstance(c.type, model.UTCDateTime)
)


@dataclass
class LegacyReport:
    """One legacy ``reports`` row: its key, its crashdb columns, and its extensions."""

    legacy_id: Any
    values: dict[str, Any]
    extensions: list[dict[str, Any]] = field(default_factory=list)


def _utc(value: Any) -> Any:
    """Aware UTC for a datetime (naive ones are UTC by the legacy convention)."""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return value  # left for validation to refuse
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


class LegacySource:
    """The legacy database, reflected; every method is blocking (run it in a thread)."""

    def __init__(self, url: str) -> None:
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            if not os.path.exists(parsed.database):  # SQLite would create an empty file
                raise LegacyImportError(f"no such legacy database file: {parsed.database}")
        self.engine = sa.create_engine(parsed)
        metadata = sa.MetaData()
        try:
            metadata.reflect(self.engine, only=lambda name, _: name in ("reports", "extensions"))
        except sa.exc.DBAPIError:
            self.engine.dispose()
            raise
        if "reports" not in metadata.tables:
            self.engine.dispose()
            raise LegacyImportError(f"no reports table in the legacy database {self.engine.url!r}")
        self.reports = metadata.tables["reports"]
        self.extensions = metadata.tables.get("extensions")
        key = list(self.reports.primary_key.columns)
        if len(key) == 1:
            self.key = key[0]
        elif "id" in self.reports.c:
            self.key = self.reports.c.id
        else:
            self.engine.dispose()
            raise LegacyImportError("the legacy reports table has no single-column key (id)")
        if "uuid" not in self.reports.c:
            self.engine.dispose()
            raise LegacyImportError("the legacy reports table has no uuid column")
        self.columns = [name for name in REPORT_COLUMNS if name in self.reports.c]
        self.ignored_columns = sorted(
            c.name for c in self.reports.c if c.name not in REPORT_COLUMNS and c is not self.key
        )
        self._select = sa.select(self.key.label("legacy_key"),
                                 *(self.reports.c[name] for name in self.columns))

    def close(self) -> None:
        self.engine.dispose()

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(self.reports)).scalar_one()

    def duplicatedUuids(self) -> list[str]:
        """Every uuid held by more than one row, grouped in SQL."""
        uuid = self.reports.c.uuid
        query = sa.select(uuid).where(uuid.is_not(None)).group_by(uuid).having(
            sa.func.count() > 1
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def rowsWithUuids(self, uuids: list[str]) -> list[LegacyReport]:
        """Every row holding one of ``uuids``, with its extensions."""
        with self.engine.connect() as conn:
            rows = conn.execute(self._select.where(self.reports.c.uuid.in_(uuids)))
            reports = [self._report(row) for row in rows]
            if self.extensions is not None:
                for chunk in batched(reports):
                    keys = [report.legacy_id for report in chunk]
                    self._attachExtensions(
                        conn, chunk, self.extensions.c.report_id.in_(keys)
                    )
        return reports

    def batchAfter(self, after: Any, size: int) -> list[LegacyReport]:
        """The next ``size`` rows in key order whose key is above ``after`` (None: the first)."""
        query = self._select.order_by(self.key).limit(size)
        if after is not None:
            query = query.where(self.key > after)
        with self.engine.connect() as conn:
            reports = [self._report(row) for row in conn.execute(query)]
            if reports and self.extensions is not None:
                report_id = self.extensions.c.report_id
                self._attachExtensions(
                    conn,
                    reports,
                    sa.and_(report_id >= reports[0].legacy_id, report_id <= reports[-1].legacy_id),
                )
        return reports

    def _report(self, row: sa.Row) -> LegacyReport:
        mapping = row._mapping
        values = {
            name: _utc(mapping[name]) if name in DATETIME_COLUMNS else mapping[name]
            for name in self.columns
        }
        return LegacyReport(mapping["legacy_key"], values)

    def _attachExtensions(
        self, conn: sa.Connection, reports: Sequence[LegacyReport], where: Any
    ) -> None:
        extensions = self.extensions
        assert extensions is not None
        byKey = {report.legacy_id: report for report in reports}
        order = [extensions.c.report_id]
        if "extension_key" in extensions.c:
            order.append(extensions.c.extension_key)
        query = sa.select(extensions).where(where).order_by(*order)
        for row in conn.execute(query):
            mapping = row._mapping
            report = byKey.get(mapping["report_id"])
            if report is not None:
                report.extensions.append(
                    {
                        "extension_id": mapping.get("extension_id"),
                        "extension_version": mapping.get("extension_version"),
                    }
                )

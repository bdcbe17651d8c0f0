"""Reading the legacy database: its reports in key order with their extensions, reflected
rather than assumed, streamed through server-side cursors so that memory stays flat however
large the table is."""

from __future__ import annotations

import datetime
import os
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from crashdb import model
from crashdb.app.importer.summary import LegacyImportError
from crashdb.backends import parseUrl
from crashdb.base import batched

UTC = datetime.UTC
REPORT_COLUMNS = tuple(c.name for c in model.reports.c if c.name != "id")
DATETIME_COLUMNS = frozenset(
    c.name for c in model.reports.c if isinstance(c.type, model.UTCDateTime)
)


@dataclass(slots=True)
class LegacyReport:
    """One legacy ``reports`` row: its key, its crashdb columns, and its extensions."""

    legacy_id: Any
    values: dict[str, Any]
    extensions: list[dict[str, Any]] = field(default_factory=list)


def _utc(value: Any) -> Any:
    """Aware UTC for a datetime (naive ones are UTC by the legacy convention)."""
    if type(value) is datetime.datetime and value.tzinfo is None:  # the common case
        # the constructor: a third of the time of value.replace(tzinfo=UTC), once per value
        return datetime.datetime(value.year, value.month, value.day, value.hour, value.minute,
                                 value.second, value.microsecond, UTC)
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return value  # left for validation to refuse
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


class LegacySource:
    """The legacy database, reflected; every method is blocking (run it in a thread).

    The URL goes through crashdb's own resolution (:func:`crashdb.backends.parseUrl`: a bare
    ``postgresql://`` means psycopg2), but may name any database SQLAlchemy reaches.
    """

    def __init__(self, url: str) -> None:
        parsed = parseUrl(url, anyBackend=True)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            if not os.path.exists(parsed.database):  # SQLite would create an empty file
                raise LegacyImportError(f"no such legacy database file: {parsed.database}")
        try:
            self.engine = sa.create_engine(parsed)
        except (ImportError, sa.exc.NoSuchModuleError) as error:
            raise LegacyImportError(
                f"cannot open the legacy database {parsed.render_as_string()!r}: no driver for "
                f"{parsed.drivername} ({error})"
            ) from error
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
        self.datetimes = [name for name in self.columns if name in DATETIME_COLUMNS]
        self.ignored_columns = sorted(
            c.name for c in self.reports.c if c.name not in REPORT_COLUMNS and c is not self.key
        )
        # the key last, so that zipping a row with the columns leaves it out
        self._select = sa.select(*(self.reports.c[name] for name in self.columns),
                                 self.key.label("legacy_key"))

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

    def batches(self, size: int) -> Generator[list[LegacyReport]]:
        """Every row in key order, ``size`` at a time, each with its extensions.

        One connection reads ``reports`` and ``extensions`` through two server-side cursors
        (``yield_per``; on SQLite, cursors step through the file) and merges them by key, so a
        batch costs no query of its own and memory does not grow with the table. The generator
        may be resumed from any thread, one at a time; ``close()`` it to release the
        connection. Keys are compared in Python in the order SQL gave them (integers, as
        legacy keys are).
        """
        with self.engine.connect() as conn:
            streaming = conn.execution_options(yield_per=size)
            reports = streaming.execute(self._select.order_by(self.key))
            extensions = self._streamExtensions(streaming)
            pending = next(extensions, None)
            report = self._report
            for rows in reports.partitions():
                batch = []
                for row in rows:
                    legacy = report(row)
                    key = legacy.legacy_id
                    while pending is not None and pending[0] < key:  # an orphan: skipped
                        pending = next(extensions, None)
                    while pending is not None and pending[0] == key:
                        legacy.extensions.append(
                            {"extension_id": pending[1], "extension_version": pending[2]})
                        pending = next(extensions, None)
                    batch.append(legacy)
                yield batch

    def _streamExtensions(self, conn: sa.Connection) -> Iterator[sa.Row]:
        """``(report_id, extension_id, extension_version)`` rows in report and key order."""
        extensions = self.extensions
        if extensions is None:
            return iter(())
        report_id = extensions.c.report_id
        order = [report_id]
        if "extension_key" in extensions.c:
            order.append(extensions.c.extension_key)
        query = sa.select(
            report_id, *(extensions.c[name] if name in extensions.c else sa.null()
                         for name in ("extension_id", "extension_version"))
        ).where(report_id.is_not(None)).order_by(*order)
        return iter(conn.execute(query))

    def _report(self, row: sa.Row) -> LegacyReport:
        values = dict(zip(self.columns, row))  # the key, last, left out
        for name in self.datetimes:
            value = values[name]
            if value is not None:
                values[name] = _utc(value)
        return LegacyReport(row[-1], values)

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

"""The fake database for applications' unit tests.

:class:`FakeDBConnector` is the real connector with the real components, over an in-memory SQLite
database whose pool runs each ``thd`` synchronously in the caller's thread: every Deferred has
fired before the call returns, and no reactor, thread or file is involved. Being the real code,
it cannot drift from it. Each fake is a copy (SQLite's backup API) of a template database
migrated once per process, so making one per test costs about a millisecond.

Row classes (``Report``, ``Extension``, ``Job``...) seed data through ``db.insertTestData(rows)``,
here and on the real-database test connector alike.
"""

from __future__ import annotations

import datetime
import itertools
import sqlite3
import threading
import uuid as uuidlib
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import sqlalchemy as sa
from twisted.internet import defer

from crashdb import migrate, model
from crashdb.backends import Backend, SQLiteBackend
from crashdb.connector import DBConnector
from crashdb.exceptions import InvalidInputError
from crashdb.partitions import childTable, executeInWeek, weekStart
from crashdb.pool import Pool, SynchronousDBPool
from crashdb.validation import RowValidator

DEFAULT_DATE = datetime.datetime(2012, 10, 16, 12, 0, tzinfo=datetime.UTC)
_counter = itertools.count(1)


def _uniqueUuid() -> str:
    return str(uuidlib.uuid4())


class Row:
    """One row of test data for ``table``; unknown columns are rejected at construction.

    Subclasses give ``defaults`` (values or callables) so a test names only what it cares about.
    """

    table: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    _validators: ClassVar[dict[str, RowValidator]] = {}

    def __init__(self, **values: Any) -> None:
        validator = self._validators.get(self.table)
        if validator is None:
            validator = self._validators[self.table] = RowValidator(
                model.metadata.tables[self.table]
            )
        filled = {
            name: (default() if callable(default) else default)
            for name, default in self.defaults.items()
            if name not in values
        }
        filled.update(values)
        validator.validate(filled)
        self.values = filled

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.values!r})"


class Report(Row):
    table = "reports"
    defaults: ClassVar[dict[str, Any]] = {"uuid": _uniqueUuid, "date_processed": DEFAULT_DATE}


class Extension(Row):
    table = "extensions"
    defaults: ClassVar[dict[str, Any]] = {
        "date_processed": DEFAULT_DATE,
        "extension_key": 0,
        "extension_id": "ext@example.com",
    }


class Plugin(Row):
    table = "plugins"
    defaults: ClassVar[dict[str, Any]] = {
        "filename": lambda: f"plugin{next(_counter)}.dll",
        "name": "Plugin",
    }


class PluginReport(Row):
    table = "plugins_reports"
    defaults: ClassVar[dict[str, Any]] = {"date_processed": DEFAULT_DATE, "version": "1.0"}


class RawCrash(Row):
    table = "raw_crashes"
    defaults: ClassVar[dict[str, Any]] = {
        "uuid": _uniqueUuid,
        "date_processed": DEFAULT_DATE,
        "raw_crash": dict,
    }


class Processor(Row):
    table = "processors"
    defaults: ClassVar[dict[str, Any]] = {
        "name": lambda: f"processor{next(_counter)}",
        "active": False,
    }


class Job(Row):
    table = "jobs"
    defaults: ClassVar[dict[str, Any]] = {
        "uuid": _uniqueUuid,
        "priority": 0,
        "queued_at": DEFAULT_DATE,
        "complete": False,
    }


class Tcbs(Row):
    table = "tcbs"
    defaults: ClassVar[dict[str, Any]] = {
        "day": DEFAULT_DATE.date(),
        "product": "Firefox",
        "version": "1.0",
        "signature": "sig",
        "count": 1,
        "win_count": 0,
        "mac_count": 0,
        "lin_count": 0,
        "hang_count": 0,
        "startup_count": 0,
    }


class ProductVersion(Row):
    table = "product_versions"
    defaults: ClassVar[dict[str, Any]] = {
        "product": "Firefox",
        "version": lambda: f"{next(_counter)}.0",
    }


class VersionAlias(Row):
    table = "version_aliases"
    defaults: ClassVar[dict[str, Any]] = {"product": "Firefox"}


class Signature(Row):
    table = "signatures"
    defaults: ClassVar[dict[str, Any]] = {
        "signature": "sig",
        "first_report": DEFAULT_DATE,
        "last_report": DEFAULT_DATE,
    }


class SignatureVersion(Row):
    table = "signature_versions"
    defaults: ClassVar[dict[str, Any]] = {
        "signature": "sig",
        "product": "Firefox",
        "version": "1.0",
        "first_report": DEFAULT_DATE,
        "last_report": DEFAULT_DATE,
    }


class ProductAdu(Row):
    table = "product_adu"
    defaults: ClassVar[dict[str, Any]] = {
        "day": DEFAULT_DATE.date(),
        "product": "Firefox",
        "version": "1.0",
        "adu": 1000,
    }


class SignatureFacet(Row):
    """A day's count of a signature's reports having ``term`` for ``field``; read for the days
    a :class:`RollupDay` of ``summaries`` marks (see crashdb.summaries)."""

    table = "signature_facets"
    defaults: ClassVar[dict[str, Any]] = {
        "day": DEFAULT_DATE.date(),
        "signature": "sig",
        "product": "Firefox",
        "version": "1.0",
        "field": "product",
        "term": "Firefox",
        "count": 1,
    }


class ProductFacet(Row):
    table = "product_facets"
    defaults: ClassVar[dict[str, Any]] = {
        "day": DEFAULT_DATE.date(),
        "product": "Firefox",
        "version": "1.0",
        "field": "product",
        "term": "Firefox",
        "count": 1,
    }


class RollupDay(Row):
    table = "rollup_days"
    defaults: ClassVar[dict[str, Any]] = {
        "rollup": "summaries",
        "day": DEFAULT_DATE.date(),
        "rolled_at": DEFAULT_DATE,
    }


def _insertionOrder() -> dict[str, int]:
    """Tables in foreign-key order, the partitioned ones after what they reference."""
    plain = [t.name for t in model.metadata.sorted_tables if t.name not in model.PARTITIONED_TABLES]
    return {name: i for i, name in enumerate(plain + list(model.PARTITIONED_TABLES))}


class TestDataMixin:
    """``insertTestData(rows)`` for any connector: rows go in foreign-key order, straight into
    their week's partition (created on demand), with the id sequences advanced past them."""

    backend: Backend
    pool: Pool

    def insertTestData(self, rows: Iterable[Row]) -> defer.Deferred:
        order = _insertionOrder()
        rows = sorted(rows, key=lambda row: order[row.table])
        backend = self.backend

        def thd(conn: sa.Connection) -> dict[int, int]:
            highest: dict[str, int] = {}
            assigned: dict[int, int] = {}  # position -> id; given to the rows once committed
            for position, row in enumerate(rows):
                values = dict(row.values)
                if row.table in model.PARTITIONED_TABLES:
                    if row.table == "reports" and values.get("id") is None:
                        values["id"] = backend.reserveIds(conn, "reports", 1)[0]
                    monday = weekStart(values["date_processed"])
                    child = childTable(row.table, monday, backend)
                    if row.table in ("extensions", "plugins_reports") and "uuid" not in values:
                        values["uuid"] = _reportUuid(conn, backend, monday, values["report_id"])
                    executeInWeek(conn, backend, monday, child.insert().values(values))
                else:
                    conn.execute(model.metadata.tables[row.table].insert().values(values))
                if isinstance(values.get("id"), int):
                    highest[row.table] = max(highest.get(row.table, 0), values["id"])
                    assigned[position] = values["id"]
            for table, top in highest.items():
                backend.advanceIds(conn, table, top)
            return assigned

        def remember(assigned: dict[int, int]) -> None:
            for position, row_id in assigned.items():
                rows[position].values["id"] = row_id

        return self.pool.do(thd).addCallback(remember)


def _reportUuid(conn: sa.Connection, backend: Backend, monday: datetime.datetime,
                report_id: Any) -> str | None:
    """The uuid of the week's report ``report_id``, which its add-on rows carry too."""
    reports = childTable("reports", monday, backend)
    query = sa.select(reports.c.uuid).where(reports.c.id == report_id)
    return executeInWeek(conn, backend, monday, query).scalar()


class _Template:
    """A migrated in-memory database, made once per process, that every fake copies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    def copy(self) -> sqlite3.Connection:
        with self._lock:
            if self._connection is None:
                self._connection = self._build()
            target = sqlite3.connect(":memory:", check_same_thread=False)
            self._connection.backup(target)
            return target

    @staticmethod
    def _build() -> sqlite3.Connection:
        connection = sqlite3.connect(":memory:", check_same_thread=False)
        engine = _engine(lambda: connection)
        with engine.begin() as conn:
            migrate.upgrade(conn, SQLiteBackend(engine))
        return connection


def _engine(creator: Callable[[], sqlite3.Connection]) -> sa.Engine:
    engine = sa.create_engine("sqlite://", creator=creator, poolclass=sa.pool.StaticPool)
    SQLiteBackend.configureEngine(engine, wal=False)
    return engine


_template = _Template()


class FakeDBConnector(TestDataMixin, DBConnector):
    """A ready, in-memory, synchronous crashdb for unit tests: no setup(), no reactor."""

    def __init__(self) -> None:
        engine = _engine(_template.copy)
        super().__init__(pool=SynchronousDBPool(engine, SQLiteBackend(engine)))

    def setup(self, check_version: bool = True) -> defer.Deferred:
        """Nothing to do: the fake is ready on construction."""
        return defer.succeed(None)


__all__ = [
    "DEFAULT_DATE",
    "Extension",
    "FakeDBConnector",
    "InvalidInputError",
    "Job",
    "Plugin",
    "PluginReport",
    "Processor",
    "ProductAdu",
    "ProductFacet",
    "ProductVersion",
    "RawCrash",
    "Report",
    "Row",
    "RollupDay",
    "Signature",
    "SignatureFacet",
    "SignatureVersion",
    "Tcbs",
    "TestDataMixin",
    "VersionAlias",
]

"""Embedded SQLite: foreign keys on, WAL, immediate transactions, per-week plain tables."""

from __future__ import annotations

import datetime
import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from crashdb import model
from crashdb.backends.base import Backend, WeekWork, plainInsert
from crashdb.base import Rows

log = logging.getLogger("crashdb.backends")

BUSY_TIMEOUT_MS = 5000


def _storedTimestamp(value: datetime.datetime) -> str:
    """A ``UTCDateTime`` as stored on SQLite, exactly as its bind processors would write it
    (naive UTC, SQLAlchemy's text format), at a fraction of their cost."""
    if value.tzinfo is not datetime.UTC:
        value = value.astimezone(datetime.UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


class SQLiteBackend(Backend):
    """Embedded SQLite. Partitions are plain tables that crashdb routes rows to and unions
    for reads; the child list is cached per ``PRAGMA schema_version``."""

    name = "sqlite"
    routesPartitions = False
    # sqlite3 binds a bool as the integer SQLAlchemy's Boolean processor would make of it
    BINDERS = ((model.UTCDateTime, _storedTimestamp), (sa.Boolean, None))
    JSON_TYPES: dict[type, tuple[str, ...]] = {
        str: ("text",), int: ("integer", "real"), float: ("integer", "real")}

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self._children: tuple[int, tuple[str, ...]] | None = None

    @classmethod
    def createEngine(cls, url: sa.URL, threads: int | None) -> tuple[sa.Engine, int]:
        memory = url.database in (None, "", ":memory:")
        kw: dict[str, Any] = {
            "connect_args": {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
        }
        if memory:
            kw["poolclass"] = sa.pool.StaticPool
        engine = sa.create_engine(url, **kw)
        cls.configureEngine(engine, wal=not memory)
        return engine, 1 if memory else (threads or 2)

    def missingDatabase(self) -> str | None:
        path = self.engine.url.database
        if path in (None, "", ":memory:") or path.startswith("file:"):
            return None  # in memory, or a URI whose mode says whether to create
        return None if os.path.exists(path) else path

    @staticmethod
    def configureEngine(engine: sa.Engine, wal: bool) -> None:
        """Take transaction control from pysqlite: BEGIN IMMEDIATE takes the write lock up front,
        so a transaction never fails half way with "database is locked"."""

        @sa.event.listens_for(engine, "connect")
        def onConnect(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if wal:
                _enableWal(cursor)
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def onBegin(conn: sa.Connection) -> None:
            # a read takes no lock up front: in WAL mode it reads a snapshot beside the writer
            read = conn.get_execution_options().get("crashdb_read_only", False)
            conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

    def insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def skipLocked(self, select: sa.Select) -> sa.Select:
        return select  # BEGIN IMMEDIATE: one writer at a time, nothing to skip

    def inList(self, column: sa.ColumnElement, name: str) -> sa.ColumnElement[bool]:
        return column.in_(sa.bindparam(name, expanding=True))  # at most 999 items

    def codePointOrder(self, expression: sa.ColumnElement) -> sa.ColumnElement:
        return expression  # BINARY, SQLite's default collation, compares UTF-8 bytes

    def jsonEquals(self, column: sa.ColumnElement, key: str, value: Any) -> sa.ColumnElement[bool]:
        if not _plainKey(key):  # a key SQLite's JSON paths cannot name: look for it by value
            each = _members(column)
            return sa.exists(sa.select(1).select_from(each).where(
                each.c.key == key, _sameValue(each.c.type, each.c.value, value, self)))
        path = '$."' + key + '"'
        return _sameValue(sa.func.json_type(column, path), sa.func.json_extract(column, path),
                          value, self)

    def jsonField(self, column: sa.ColumnElement, key: str) -> sa.ColumnElement:
        if _plainKey(key):
            return column[key]
        each = _members(column)
        text = sa.case((each.c.type == "true", "true"), (each.c.type == "false", "false"),
                       else_=sa.func.json_quote(each.c.value))
        return sa.type_coerce(sa.select(text).where(each.c.key == key).scalar_subquery(),
                              sa.JSON())

    def epochMicroseconds(self, when: sa.ColumnElement) -> sa.ColumnElement[int]:
        # stored as the text YYYY-MM-DD HH:MM:SS.ffffff: whole seconds from strftime('%s'),
        # microseconds from characters 21 to 26
        seconds = sa.cast(sa.func.strftime("%s", when), sa.BigInteger)
        return seconds * 1_000_000 + sa.cast(sa.func.substr(when, 21, 6), sa.BigInteger)

    def greatest(self, *values: sa.ColumnElement) -> sa.ColumnElement[float]:
        return sa.func.max(*values, type_=sa.Double)  # max() of several arguments is scalar

    def squareRoot(self, conn: sa.Connection, value: sa.ColumnElement) -> sa.ColumnElement[float]:
        # sqrt exists only in SQLite builds with the math functions: register Python's (the
        # same IEEE square root) on the connection
        driver = conn.connection.driver_connection
        assert driver is not None  # an open connection has its driver's
        driver.create_function("crashdb_sqrt", 1, math.sqrt, deterministic=True)
        return sa.func.crashdb_sqrt(value, type_=sa.Double)

    def caseInsensitiveLike(self, term: sa.ColumnElement, pattern: str
                            ) -> sa.ColumnElement[bool]:
        return term.like(pattern, escape="\\")  # SQLite's LIKE folds ASCII letters only

    def jsonText(self, column: sa.ColumnElement, key: str) -> tuple[sa.ColumnElement[str], Any]:
        path = f'$."{key}"'
        literal = column.op("->")(path)  # a number's text as written in the JSON
        text = sa.case(
            {"text": sa.func.json_extract(column, path), "integer": literal, "real": literal,
             "true": "true", "false": "false"},
            value=sa.func.json_type(column, path),
            else_=sa.null(),
        )
        return sa.type_coerce(text, sa.String), None  # NULL already for arrays and objects

    def sameWeek(self, a: sa.ColumnElement, b: sa.ColumnElement) -> sa.ColumnElement[bool]:
        # the Monday on or before: back six days, then forward to the next Monday
        return sa.func.date(a, "-6 days", "weekday 1") == sa.func.date(b, "-6 days", "weekday 1")

    def utcDay(self, column: sa.ColumnElement) -> sa.ColumnElement:
        return sa.func.date(column)  # stored as naive UTC text: 'YYYY-MM-DD'

    def isRetryable(self, error: sa.exc.DBAPIError) -> bool:
        message = str(error.orig)
        return "database is locked" in message or "database table is locked" in message

    def isConnectionLost(self, error: sa.exc.DBAPIError) -> bool:
        return False  # an embedded file: a failed COMMIT leaves the transaction uncommitted

    def isMissingTable(self, error: sa.exc.DBAPIError) -> bool:
        return "no such table" in str(error.orig)

    def isUniqueViolation(self, error: sa.exc.DBAPIError) -> bool:
        return isinstance(error, sa.exc.IntegrityError) and "UNIQUE constraint failed" in str(
            error.orig
        )

    def bulkInsert(
        self, conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Rows
    ) -> None:
        """One ``executemany`` of plain value lists, each value through its column type's own
        bind processor: SQLAlchemy's per-row parameter handling, most of the cost of
        ``conn.execute(insert, dicts)``, is skipped."""
        values = self.boundValues(conn.dialect, table, tuple(columns), rows)
        if values:
            conn.exec_driver_sql(plainInsert(conn.dialect, table, tuple(columns)), values)

    def reserveIds(self, conn: sa.Connection, name: str, count: int) -> Sequence[int]:
        counters = model.id_sequences
        last = conn.execute(
            sa.update(counters)
            .where(counters.c.name == name)
            .values(next_id=counters.c.next_id + count)
            .returning(counters.c.next_id)
        ).scalar_one()
        return range(last - count, last)

    def sharedIdDefault(self, parent: sa.Table, column: sa.Column) -> dict[str, Any]:
        """SQLite has no sequences: crashdb's SQL draws the id from the parent's
        ``id_sequences`` row, in the inserting transaction."""
        counters = model.id_sequences
        draw = (sa.update(counters).where(counters.c.name == parent.name)
                .values(next_id=counters.c.next_id + 1).returning(counters.c.next_id - 1))

        def nextId(context: Any) -> int:
            return context.connection.execute(draw).scalar_one()

        return {"default": nextId}

    def advanceIds(self, conn: sa.Connection, table: str, past: int) -> None:
        counters = model.id_sequences
        conn.execute(
            sa.update(counters)
            .where(counters.c.name == table)
            .values(next_id=sa.func.max(counters.c.next_id, past + 1))
        )  # other tables use SQLite's own rowid counter, which follows the largest id

    def childNames(self, conn: sa.Connection) -> Sequence[str]:
        """Cached per schema version, a counter SQLite bumps on every schema change (by any
        process), so a read of a date range costs one PRAGMA instead of a catalog scan."""
        version = conn.exec_driver_sql("PRAGMA schema_version").scalar_one()
        cached = self._children
        if cached is None or cached[0] != version:
            rows = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
            cached = self._children = (version, tuple(name for (name,) in rows))
        return cached[1]

    @staticmethod
    def timestampLiteral(when: datetime.datetime) -> str:
        return f"'{_storedTimestamp(when)}'"  # the stored text form, compared as text

    def runWeekDDL(
        self, engine: sa.Engine, monday: datetime.datetime, names: list[str], work: WeekWork
    ) -> list[str]:
        # every transaction begins IMMEDIATE: DDL is already serialized
        with engine.begin() as conn:
            return work(conn, set(self.childNames(conn)) & set(names))

    def childSizes(
        self, conn: sa.Connection, names: list[str]
    ) -> dict[str, tuple[int | None, int | None]]:
        return {name: (conn.exec_driver_sql(f'SELECT count(*) FROM "{name}"').scalar_one(), None)
                for name in names}

    def lockForUpgrade(self, conn: sa.Connection) -> None:
        pass  # every transaction begins IMMEDIATE: upgrades are already serialized


def _enableWal(cursor: Any) -> None:
    """Switch the file to WAL (persistent) once; the switch needs the file to itself and does
    not wait on the busy handler, so a connection racing another retries briefly."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as error:  # sqlite3.OperationalError: database is locked
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _plainKey(key: str) -> bool:
    """True if ``key`` is stored in the JSON text as it is (``json.dumps`` escapes quotes,
    backslashes, control and non-ASCII characters): SQLite's JSON paths compare a quoted label
    with the stored text, escapes and all, so only such keys can be named in a path."""
    return key.isascii() and key.isprintable() and '"' not in key and "\\" not in key


def _members(column: sa.ColumnElement) -> sa.TableValuedAlias:
    """``json_each(column)``: the top-level members, keys decoded."""
    return sa.func.json_each(column).table_valued("key", "value", "type")


def _sameValue(kind: sa.ColumnElement, extracted: sa.ColumnElement, value: Any,
               backend: SQLiteBackend) -> sa.ColumnElement[bool]:
    """A JSON member of type ``kind`` (``json_type``'s names) and SQL value ``extracted`` equals
    the scalar ``value``, type included (``true`` is not 1)."""
    if value is None:
        return kind == "null"
    if isinstance(value, bool):
        return kind == ("true" if value else "false")
    return sa.and_(kind.in_(backend.JSON_TYPES[type(value)]), extracted == value)

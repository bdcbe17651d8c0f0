"""Every difference between SQLite and PostgreSQL, in one place.

Components speak to a strategy (``db.strategy``) for what the backends do differently: engine
set-up, which errors are safe to retry, partition DDL, id reservation, reading a date range of a
partitioned table. Nothing outside this module asks which dialect it is talking to.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from crashdb import copytext, model
from crashdb.base import MAX_BOUND_PARAMETERS, batched
from crashdb.exceptions import CrashDBError, InvalidInputError
from crashdb.partitions import WEEK, childTable, parseChildName, partitionName, weekTables

log = logging.getLogger("crashdb.dialects")

DEFAULT_URL = "sqlite:///crashdb.sqlite"
ADVISORY_NAMESPACE = 0x63726462 & 0x7FFFFFFF  # "crdb": crashdb's advisory locks
UPGRADE_LOCK_KEY = 0
LOCK_TIMEOUT_MS = 2000
LOCK_ATTEMPTS = 10
SQLITE_BUSY_TIMEOUT_MS = 5000


def _overlaps(monday: datetime.datetime, start, end) -> bool:
    return (start is None or monday + WEEK > start) and (end is None or monday < end)


class Strategy:
    """What both backends share; subclasses hold the differences."""

    name = ""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def insert(self, table: sa.Table) -> Any:
        """An INSERT that supports ``on_conflict_do_nothing`` on this backend."""
        raise NotImplementedError

    def skipLocked(self, select: sa.Select) -> sa.Select:
        """``select`` locking the rows it reads, skipping rows other transactions hold: how
        concurrent claimers take different jobs without waiting on each other."""
        raise NotImplementedError

    def inList(self, column: sa.ColumnElement, name: str) -> sa.ColumnElement:
        """``column IN`` the list passed at execution as parameter ``name``, in a statement
        that can be compiled once and reused whatever the list's length."""
        raise NotImplementedError

    def codePointOrder(self, expression: sa.ColumnElement) -> sa.ColumnElement:
        """``expression`` to ORDER BY in code point order (Python's ``sorted``) whatever the
        database's collation, so rankings break ties identically on every backend."""
        raise NotImplementedError

    def isRetryable(self, error: sa.exc.DBAPIError) -> bool:
        """True if ``error``, raised before COMMIT was sent, means the whole transaction was
        rolled back for a transient reason, so running it again is safe and may succeed."""
        raise NotImplementedError

    def isConnectionLost(self, error: sa.exc.DBAPIError) -> bool:
        """True if ``error`` means the session is gone (or never opened): raised during COMMIT,
        the outcome of the transaction is unknown."""
        raise NotImplementedError

    def isMissingTable(self, error: sa.exc.DBAPIError) -> bool:
        raise NotImplementedError

    def isUniqueViolation(self, error: sa.exc.DBAPIError) -> bool:
        """True if ``error`` is a duplicate key in a unique index or primary key."""
        raise NotImplementedError

    def isMissingPartition(self, error: sa.exc.DBAPIError) -> bool:
        """True if ``error`` means a week's partition is missing: its child does not exist
        (``isMissingTable``), or a row sent through a parent found no child to go to."""
        return self.isMissingTable(error)

    def bulkInsertWeeks(
        self, conn: sa.Connection, parent: str, columns: Sequence[str],
        weeks: Mapping[datetime.datetime, Collection[Any]],
    ) -> None:
        """``bulkInsert`` of each week's rows into its child of ``parent``; a missing child
        fails the call (``isMissingPartition``)."""
        for monday, rows in weeks.items():
            if len(rows):
                self.bulkInsert(conn, childTable(parent, monday, self.name), columns, rows)

    def bulkInsert(
        self, conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Collection[Any]
    ) -> None:
        """Append ``rows`` (sequences of values in ``columns`` order) to ``table`` the fastest
        way this backend has. Nothing is skipped: a duplicate key fails the call (see
        ``isUniqueViolation``), so a caller expecting none wraps it in a savepoint
        (``conn.begin_nested()``) to survive one."""
        if rows:
            conn.execute(table.insert(), [dict(zip(columns, row)) for row in rows])

    def insertNew(
        self,
        conn: sa.Connection,
        table: sa.Table,
        columns: Sequence[str],
        rows: Collection[Any],
        key: str,
    ) -> set[Any]:
        """Insert those ``rows`` whose ``key`` (a uniquely indexed column) is not in ``table``
        yet; the set of keys inserted (as the driver returns them). Safe against concurrent
        writers of the same keys: the unique index decides (``ON CONFLICT DO NOTHING``)."""
        columns = tuple(columns)
        quote = conn.dialect.identifier_preparer.quote
        suffix = f" ON CONFLICT ({quote(key)}) DO NOTHING RETURNING {quote(key)}"
        values = self._boundValues(conn.dialect, table, columns, rows)
        inserted: set[Any] = set()
        for chunk in batched(values, max(1, MAX_BOUND_PARAMETERS // len(columns))):
            statement = _plainInsert(conn.dialect, table, columns, len(chunk), suffix)
            params = tuple(itertools.chain.from_iterable(chunk))
            inserted.update(value for (value,) in conn.exec_driver_sql(statement, params))
        return inserted

    #: how this backend's ``UTCDateTime`` values are bound, if quicker than the type's own way
    #: ``(type, processor or None)``: how values of these types are bound, where quicker than
    #: the types' own processors (None: the driver takes them as they are)
    BINDERS: tuple[tuple[type, Callable[[Any], Any] | None], ...] = ()

    def _boundValues(
        self, dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...], rows: Iterable[Any]
    ) -> list[tuple]:
        """``rows`` as tuples of driver values: each value through its column type's bind
        processor, as SQLAlchemy would pass it."""
        processors = _bindProcessors(dialect, table, columns, self.BINDERS)
        values = []
        for row in rows:
            row = list(row)
            for position, process in processors:
                value = row[position]
                if value is not None:
                    row[position] = process(value)
            values.append(tuple(row))
        return values

    def listChildren(self, conn: sa.Connection) -> list[tuple[str, datetime.datetime]]:
        """``(parent, monday)`` of every existing child."""
        return [p for p in map(parseChildName, self._childNames(conn)) if p is not None]

    def _childNames(self, conn: sa.Connection) -> list[str]:
        raise NotImplementedError


@functools.lru_cache(maxsize=1024)
def _plainInsert(
    dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...], rows: int = 1, suffix: str = ""
) -> str:
    """The text of an INSERT of ``rows`` rows of positional parameters, then ``suffix``: made
    once, where SQLAlchemy would compile its dialects' INSERT constructs (which it does not
    cache) on every execution."""
    quote = dialect.identifier_preparer.quote
    marks = "(" + ", ".join(["?" if dialect.paramstyle == "qmark" else "%s"] * len(columns)) + ")"
    return (
        f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))})"
        f" VALUES {', '.join([marks] * rows)}{suffix}"
    )


@functools.lru_cache(maxsize=1024)
def _bindProcessors(
    dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...], binders: tuple
) -> list[tuple[int, Callable[[Any], Any]]]:
    """``(position, processor)`` for each of ``columns`` whose value needs converting on its
    way to the driver: the first of ``binders`` (``(type, processor or None)`` pairs) that
    the column's type is an instance of, else the type's own bind processor."""

    def processor(kind: sa.types.TypeEngine) -> Callable[[Any], Any] | None:
        for cls, process in binders:
            if isinstance(kind, cls):
                return process
        return kind.dialect_impl(dialect).bind_processor(dialect)

    processors = [(position, processor(table.c[name].type)) for position, name in
                  enumerate(columns)]
    return [(position, process) for position, process in processors if process]


def _sqliteTimestamp(value: datetime.datetime) -> str:
    """A ``UTCDateTime`` as stored on SQLite, exactly as its bind processors would write it
    (naive UTC, SQLAlchemy's text format), at a fraction of their cost."""
    if value.tzinfo is not datetime.UTC:
        value = value.astimezone(datetime.UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


class SQLiteStrategy(Strategy):
    """Embedded SQLite: foreign keys on, WAL, immediate transactions, per-week plain tables."""

    name = "sqlite"
    _children: tuple[int, list[tuple[str, datetime.datetime]]] | None = None

    @classmethod
    def createEngine(cls, url: sa.URL, threads: int | None) -> tuple[sa.Engine, int]:
        memory = url.database in (None, "", ":memory:")
        kw: dict[str, Any] = {
            "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        }
        if memory:
            kw["poolclass"] = sa.pool.StaticPool
        engine = sa.create_engine(url, **kw)
        cls.configureEngine(engine, wal=not memory)
        return engine, 1 if memory else (threads or 2)

    @staticmethod
    def configureEngine(engine: sa.Engine, wal: bool) -> None:
        """Take transaction control from pysqlite: BEGIN IMMEDIATE takes the write lock up front,
        so a transaction never fails half way with "database is locked"."""

        @sa.event.listens_for(engine, "connect")
        def onConnect(dbapi_connection, record) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if wal:
                SQLiteStrategy._enableWal(cursor)
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def onBegin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    @staticmethod
    def _enableWal(cursor) -> None:
        """Switch the file to WAL (persistent) once; the switch needs the file to itself and
        does not wait on the busy handler, so a connection racing another retries briefly."""
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
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

    def insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def skipLocked(self, select: sa.Select) -> sa.Select:
        return select  # BEGIN IMMEDIATE: one writer at a time, nothing to skip

    def inList(self, column: sa.ColumnElement, name: str) -> sa.ColumnElement:
        return column.in_(sa.bindparam(name, expanding=True))  # at most 999 items

    def codePointOrder(self, expression: sa.ColumnElement) -> sa.ColumnElement:
        return expression  # BINARY, SQLite's default collation, compares UTF-8 bytes

    def isRetryable(self, error: sa.exc.DBAPIError) -> bool:
        return "database is locked" in str(error.orig) or "database table is locked" in str(
            error.orig
        )

    def isConnectionLost(self, error: sa.exc.DBAPIError) -> bool:
        return False  # an embedded file: a failed COMMIT leaves the transaction uncommitted

    def isMissingTable(self, error: sa.exc.DBAPIError) -> bool:
        return "no such table" in str(error.orig)

    def isUniqueViolation(self, error: sa.exc.DBAPIError) -> bool:
        return isinstance(error, sa.exc.IntegrityError) and "UNIQUE constraint failed" in str(
            error.orig
        )

    # sqlite3 binds a bool as the integer SQLAlchemy's Boolean processor would make of it
    BINDERS = ((model.UTCDateTime, _sqliteTimestamp), (sa.Boolean, None))

    def bulkInsert(
        self, conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Collection[Any]
    ) -> None:
        """One ``executemany`` of plain value lists, each value through its column type's own
        bind processor: SQLAlchemy's per-row parameter handling, most of the cost of
        ``conn.execute(insert, dicts)``, is skipped."""
        values = self._boundValues(conn.dialect, table, tuple(columns), rows)
        if values:
            conn.exec_driver_sql(_plainInsert(conn.dialect, table, tuple(columns)), values)

    JSON_TYPES = {str: ("text",), bool: None, int: ("integer", "real"), float: ("integer", "real")}

    def jsonEquals(self, column: sa.ColumnElement, key: str, value: Any) -> sa.ColumnElement:
        """``column``'s top-level ``key`` equals the scalar ``value``, type included."""
        path = '$."' + key.replace('"', '""') + '"'
        kind = sa.func.json_type(column, path)
        if value is None:
            return kind == "null"
        if isinstance(value, bool):
            return kind == ("true" if value else "false")
        return sa.and_(kind.in_(self.JSON_TYPES[type(value)]),
                       sa.func.json_extract(column, path) == value)

    def listChildren(self, conn: sa.Connection) -> list[tuple[str, datetime.datetime]]:
        """Cached per schema version, a counter SQLite bumps on every schema change (by any
        process), so a read of a date range costs one PRAGMA instead of a catalog scan."""
        version = conn.exec_driver_sql("PRAGMA schema_version").scalar_one()
        cached = self._children
        if cached is None or cached[0] != version:
            cached = self._children = (version, super().listChildren(conn))
        return cached[1]

    def _childNames(self, conn: sa.Connection) -> list[str]:
        rows = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
        return [name for (name,) in rows]

    def lockForUpgrade(self, conn: sa.Connection) -> None:
        pass  # every transaction begins IMMEDIATE: upgrades are already serialized

    def reserveIds(self, conn: sa.Connection, name: str, count: int) -> Sequence[int]:
        counters = model.id_sequences
        last = conn.execute(
            sa.update(counters)
            .where(counters.c.name == name)
            .values(next_id=counters.c.next_id + count)
            .returning(counters.c.next_id)
        ).scalar_one()
        return range(last - count, last)

    def advanceIds(self, conn: sa.Connection, table: str, past: int) -> None:
        """Make ids handed out later exceed ``past`` (after rows were given explicit ids)."""
        counters = model.id_sequences
        conn.execute(
            sa.update(counters)
            .where(counters.c.name == table)
            .values(next_id=sa.func.max(counters.c.next_id, past + 1))
        )  # other tables use SQLite's own rowid counter, which follows the largest id

    def createWeek(self, engine: sa.Engine, monday: datetime.datetime) -> list[str]:
        with engine.begin() as conn:
            existing = set(self._childNames(conn))
            created = []
            for child in weekTables(monday, self.name):
                if child.name not in existing:
                    child.create(conn)
                    created.append(child.name)
        if created:
            log.info("created partitions %s", ", ".join(created))
        return created

    def dropWeek(self, engine: sa.Engine, monday: datetime.datetime) -> list[str]:
        with engine.begin() as conn:
            existing = set(self._childNames(conn))
            dropped = []
            for child in reversed(weekTables(monday, self.name)):
                if child.name in existing:
                    conn.exec_driver_sql(f'DROP TABLE "{child.name}"')
                    dropped.append(child.name)
        return dropped

    def readable(self, conn: sa.Connection, parent: str, start=None, end=None) -> sa.FromClause:
        children = [
            childTable(p, monday, self.name)
            for p, monday in self.listChildren(conn)
            if p == parent and _overlaps(monday, start, end)
        ]
        if not children:
            return model.metadata.tables[parent]  # the empty parent: no rows, right columns
        if len(children) == 1:
            return children[0]
        return sa.union_all(*(sa.select(*child.c) for child in children)).subquery(parent)

    def childSizes(self, conn: sa.Connection) -> dict[str, tuple[int | None, int | None]]:
        sizes: dict[str, tuple[int | None, int | None]] = {}
        for parent, monday in self.listChildren(conn):
            name = partitionName(parent, monday)
            count = conn.exec_driver_sql(f'SELECT count(*) FROM "{name}"').scalar_one()
            sizes[name] = (count, None)
        return sizes


class PostgresStrategy(Strategy):
    """PostgreSQL: declarative range partitions attached under a bounded lock timeout."""

    name = "postgresql"
    #: serialization failure, deadlock, too many connections: the transaction was rolled back
    RETRYABLE_CODES = ("40001", "40P01", "53300")
    #: admin/crash shutdown, cannot connect now (starting up, shutting down, recovering)
    LOST_CODES = ("57P01", "57P02", "57P03")
    #: connection failures that waiting will not cure: fail at once instead of retrying
    PERMANENT_CONNECT_ERRORS = ("authentication failed", "does not exist", "pg_hba.conf",
                                "no password supplied")

    @classmethod
    def createEngine(cls, url: sa.URL, threads: int | None) -> tuple[sa.Engine, int]:
        threads = threads or 10
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg2")
        engine = sa.create_engine(
            url,
            pool_size=threads,
            max_overflow=threads,
            # No liveness ping at checkout: it is a round trip on every call (some 15% of the
            # claim path's throughput in bench/claims.py). A connection found dead by its first
            # statement is retried by the pool instead, nothing having been committed.
            pool_pre_ping=False,
            pool_recycle=3600,
            connect_args={
                "options": "-c timezone=UTC",
                "connect_timeout": 10,
                "application_name": "crashdb",
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            },
        )
        return engine, threads

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def skipLocked(self, select: sa.Select) -> sa.Select:
        return select.with_for_update(skip_locked=True)

    def inList(self, column: sa.ColumnElement, name: str) -> sa.ColumnElement:
        # one array parameter: SQLAlchemy re-renders an expanding IN on every execution
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))

    def codePointOrder(self, expression: sa.ColumnElement) -> sa.ColumnElement:
        return expression.collate("C")  # byte order of UTF-8: code point order

    def isRetryable(self, error: sa.exc.DBAPIError) -> bool:
        if getattr(error.orig, "pgcode", None) in self.RETRYABLE_CODES:
            return True
        if not self.isConnectionLost(error):
            return False
        message = str(error.orig)
        return not any(text in message for text in self.PERMANENT_CONNECT_ERRORS)

    def isConnectionLost(self, error: sa.exc.DBAPIError) -> bool:
        if error.connection_invalidated:
            return True
        code = getattr(error.orig, "pgcode", None)
        if code is None:  # raised by libpq on our side: no server connection to speak of
            return isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError)
        return code.startswith("08") or code in self.LOST_CODES

    def isMissingTable(self, error: sa.exc.DBAPIError) -> bool:
        return getattr(error.orig, "pgcode", None) == "42P01"

    def isUniqueViolation(self, error: sa.exc.DBAPIError) -> bool:
        return getattr(error.orig, "pgcode", None) == "23505"

    def isMissingPartition(self, error: sa.exc.DBAPIError) -> bool:
        if self.isMissingTable(error):
            return True
        # "no partition of relation ... found for row": a check violation naming no constraint
        diagnostics = getattr(error.orig, "diag", None)
        return (getattr(error.orig, "pgcode", None) == "23514"
                and getattr(diagnostics, "constraint_name", None) is None)

    def bulkInsertWeeks(
        self, conn: sa.Connection, parent: str, columns: Sequence[str],
        weeks: Mapping[datetime.datetime, Collection[Any]],
    ) -> None:
        """One ``COPY`` into ``parent`` for all the weeks, which PostgreSQL routes to their
        children: a statement (and its round trips) per batch rather than per week."""
        rows = copytext.chain(weeks.values())
        if len(rows) < self.COPY_MIN_ROWS:
            super().bulkInsertWeeks(conn, parent, columns, weeks)
        else:
            self.copyRows(conn, model.metadata.tables[parent], columns, rows)

    #: below this many rows a multi-row INSERT beats COPY's extra round trip
    COPY_MIN_ROWS = 16

    def bulkInsert(
        self, conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Collection[Any]
    ) -> None:
        """``COPY`` for many rows (see ``copyRows``), an INSERT for a few."""
        if len(rows) < self.COPY_MIN_ROWS:
            super().bulkInsert(conn, table, columns, rows)
        else:
            self.copyRows(conn, table, columns, rows)

    def copyRows(
        self,
        conn: sa.Connection,
        table: sa.Table,
        columns: Sequence[str],
        rows: Collection[Any],
        into: str | None = None,
    ) -> None:
        """``COPY table (columns) FROM STDIN`` of ``rows`` (values as ``table``'s types, in the
        text format of :mod:`crashdb.copytext`), into the table named ``into`` if given, in
        ``conn``'s transaction. Rows (or their lines, from a :class:`copytext.CopySource`) are
        made and sent as the server takes them; an exception raised by ``rows`` aborts the COPY
        and is raised as it was. Database errors arrive as SQLAlchemy's ``DBAPIError``, as from
        ``conn.execute``; a lost connection is invalidated."""
        quote = conn.dialect.identifier_preparer.quote
        target = quote(into or table.name)
        statement = f"COPY {target} ({', '.join(map(quote, columns))}) FROM STDIN"
        formatter = copytext.formatter(table, tuple(columns))
        data = copytext.CopyReader(copytext.lines(formatter, rows))
        dbapi_connection = conn.connection.dbapi_connection
        dbapi = conn.dialect.loaded_dbapi
        cursor = dbapi_connection.cursor()
        try:
            cursor.copy_expert(statement, data, size=copytext.CHUNK)
        except dbapi.Error as error:
            if data.error is not None:  # making the rows failed: the COPY was aborted for it
                raise data.error from None
            lost = conn.dialect.is_disconnect(error, dbapi_connection, cursor)
            if lost:
                conn.invalidate(error)
            raise sa.exc.DBAPIError.instance(
                statement, None, error, dbapi.Error, connection_invalidated=lost,
                dialect=conn.dialect,
            ) from error
        finally:
            if not cursor.closed:
                cursor.close()

    def insertNew(
        self,
        conn: sa.Connection,
        table: sa.Table,
        columns: Sequence[str],
        rows: Collection[Any],
        key: str,
    ) -> set[Any]:
        """Many rows go through a temporary staging table filled by COPY, then one
        ``INSERT ... SELECT ... ON CONFLICT (key) DO NOTHING RETURNING key``."""
        if len(rows) < self.COPY_MIN_ROWS:
            return super().insertNew(conn, table, columns, rows, key)
        quote = conn.dialect.identifier_preparer.quote
        staging = quote(f"crashdb_staging_{table.name}")
        names = ", ".join(map(quote, columns))
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {staging} (LIKE {quote(table.name)}) ON COMMIT DROP"
        )
        self.copyRows(conn, table, columns, rows, into=staging)
        inserted = conn.exec_driver_sql(
            f"INSERT INTO {quote(table.name)} ({names}) SELECT {names} FROM {staging}"
            f" ON CONFLICT ({quote(key)}) DO NOTHING RETURNING {quote(key)}"
        )
        keys = {value for (value,) in inserted}
        conn.exec_driver_sql(f"DROP TABLE {staging}")
        return keys

    def jsonEquals(self, column: sa.ColumnElement, key: str, value: Any) -> sa.ColumnElement:
        """``column``'s top-level ``key`` equals the scalar ``value``: JSONB containment."""
        return sa.type_coerce(column, postgresql.JSONB()).contains({key: value})

    def _childNames(self, conn: sa.Connection) -> list[str]:
        rows = conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid"
                " JOIN pg_class p ON p.oid = i.inhparent"
                " WHERE p.relnamespace = current_schema()::regnamespace"
                " AND p.relname = ANY(:parents)"
            ),
            {"parents": list(model.PARTITIONED_TABLES)},
        )
        return [name for (name,) in rows]

    def _existing(self, conn: sa.Connection, names: list[str]) -> set[str]:
        rows = conn.execute(
            sa.text(
                "SELECT relname FROM pg_class WHERE relname = ANY(:names)"
                " AND relnamespace = current_schema()::regnamespace"
            ),
            {"names": names},
        )
        return {name for (name,) in rows}

    def lockForUpgrade(self, conn: sa.Connection) -> None:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_NAMESPACE, UPGRADE_LOCK_KEY)))

    def reserveIds(self, conn: sa.Connection, name: str, count: int) -> Sequence[int]:
        if count == 0:
            return []
        # one row holding an array: parsed by the driver in C, not row by row in Python
        return conn.execute(
            sa.text(f"SELECT array_agg(nextval('{name}_id_seq')) FROM generate_series(1, :n)"),
            {"n": count},
        ).scalar_one()

    def advanceIds(self, conn: sa.Connection, table: str, past: int) -> None:
        """Make ids handed out later exceed ``past`` (after rows were given explicit ids)."""
        if table == "reports":
            sequence = "reports_id_seq"
        else:
            sequence = conn.execute(
                sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}
            ).scalar()
        if sequence:
            conn.execute(
                sa.text("SELECT setval(:s, GREATEST(:past, nextval(:s)))"),
                {"s": sequence, "past": past},
            )

    def _weekDDL(self, engine: sa.Engine, monday: datetime.datetime, work) -> list[str]:
        """Run ``work(conn, existing)`` holding the week's advisory lock, under a short lock
        timeout, retrying while other sessions hold conflicting locks."""
        key = int(f"{monday:%Y%m%d}")
        names = [child.name for child in weekTables(monday, self.name)]
        for attempt in range(1, LOCK_ATTEMPTS + 1):
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_NAMESPACE, key)))
                    return work(conn, self._existing(conn, names))
            except sa.exc.OperationalError as error:
                if getattr(error.orig, "pgcode", None) != "55P03" or attempt == LOCK_ATTEMPTS:
                    raise
                log.warning("partition DDL for week %s waited too long for a lock; retrying",
                            f"{monday:%Y%m%d}")
                time.sleep(0.1 * attempt)
        raise CrashDBError("unreachable")  # pragma: no cover

    def createWeek(self, engine: sa.Engine, monday: datetime.datetime) -> list[str]:
        end = monday + WEEK
        bounds = f"FROM ('{monday:%Y-%m-%d} 00:00:00+00') TO ('{end:%Y-%m-%d} 00:00:00+00')"

        def create(conn: sa.Connection, existing: set[str]) -> list[str]:
            created = []
            for parent, child in zip(model.PARTITIONED_TABLES, weekTables(monday, self.name)):
                if child.name in existing:
                    continue
                # create apart, then attach: the parent is only SHARE UPDATE EXCLUSIVE locked,
                # so readers and writers of other weeks carry on
                child.create(conn)
                conn.exec_driver_sql(
                    f'ALTER TABLE "{parent}" ATTACH PARTITION "{child.name}" FOR VALUES {bounds}'
                )
                created.append(child.name)
            return created

        created = self._weekDDL(engine, monday, create)
        if created:
            log.info("created partitions %s", ", ".join(created))
        return created

    def dropWeek(self, engine: sa.Engine, monday: datetime.datetime) -> list[str]:
        def drop(conn: sa.Connection, existing: set[str]) -> list[str]:
            dropped = []
            pairs = zip(model.PARTITIONED_TABLES, weekTables(monday, self.name))
            for parent, child in reversed(list(pairs)):
                if child.name in existing:
                    conn.exec_driver_sql(f'ALTER TABLE "{parent}" DETACH PARTITION "{child.name}"')
                    conn.exec_driver_sql(f'DROP TABLE "{child.name}"')
                    dropped.append(child.name)
            return dropped

        return self._weekDDL(engine, monday, drop)

    def readable(self, conn: sa.Connection, parent: str, start=None, end=None) -> sa.FromClause:
        return model.metadata.tables[parent]  # the planner prunes to the overlapping children

    def childSizes(self, conn: sa.Connection) -> dict[str, tuple[int | None, int | None]]:
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid)"
                " FROM pg_class c WHERE c.relname = ANY(:names)"
                " AND c.relnamespace = current_schema()::regnamespace"
            ),
            {"names": self._childNames(conn)},
        )
        return {name: (None if rows < 0 else rows, size) for name, rows, size in rows}


STRATEGIES: dict[str, type[SQLiteStrategy] | type[PostgresStrategy]] = {
    "sqlite": SQLiteStrategy,
    "postgresql": PostgresStrategy,
}


def resolveUrl(url: str | None) -> str:
    """The database URL: the caller's, else ``$CRASHDB_URL``, else the embedded default."""
    import os

    return url or os.environ.get("CRASHDB_URL") or DEFAULT_URL


def createEngine(url: str, threads: int | None = None) -> tuple[sa.Engine, Strategy, int]:
    """An engine, its strategy and the thread count to use for ``url``.

    Raises InvalidInputError for a malformed URL or an unsupported backend, and CrashDBError for
    a missing driver; no connection is made.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as error:
        raise InvalidInputError(f"not a database URL: {url!r}", field="db_url") from error
    backend = parsed.get_backend_name()
    factory = STRATEGIES.get(backend)
    if factory is None:
        raise InvalidInputError(
            f"unsupported database {backend!r} in {url!r}: use sqlite:/// or postgresql://",
            field="db_url",
        )
    try:
        engine, threads = factory.createEngine(parsed, threads)
    except ImportError as error:
        raise CrashDBError(
            f"the driver for {backend} is not installed ({error}); "
            "install crashdb[postgresql] for PostgreSQL"
        ) from error
    except sa.exc.NoSuchModuleError as error:
        raise InvalidInputError(f"unknown database driver in {url!r}", field="db_url") from error
    return engine, factory(engine), threads

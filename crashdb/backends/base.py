"""The Backend interface: everything SQLite and PostgreSQL do differently, and nothing else.

Components, partitions and the pool speak to ``db.backend``; no other module asks which database
it is talking to. Each method here is a primitive (an error's meaning, a statement's shape, a
piece of DDL); what is built from them (a week's partitions, a bulk write) lives with its
subject, in :mod:`crashdb.partitions` and :mod:`crashdb.bulk`.
"""

from __future__ import annotations

import abc
import datetime
import functools
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa

from crashdb.base import MAX_BOUND_PARAMETERS, Rows, batched

#: ``work(conn, existing)`` for :meth:`Backend.runWeekDDL`: DDL for one week's children, given
#: which of them exist; returns the names it created or dropped
WeekWork = Callable[[sa.Connection, set[str]], list[str]]


class Backend(abc.ABC):
    """One database's way of doing what crashdb needs; subclasses are the backends."""

    name: ClassVar[str]
    #: True if the database routes a row inserted into a partitioned parent to its week's
    #: child (and prunes children from a query's plan); else crashdb addresses children itself
    routesPartitions: ClassVar[bool]
    #: ``(type, processor or None)``: how values of these types are bound, where quicker than
    #: the types' own processors (None: the driver takes them as they are)
    BINDERS: ClassVar[tuple[tuple[type, Callable[[Any], Any] | None], ...]] = ()

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        #: the column the crash data is distributed on across a cluster (Citus: "uuid"), or
        #: None on a single database; known once ``detectDistribution`` has seen a connection
        self.distributionColumn: str | None = None

    @classmethod
    @abc.abstractmethod
    def createEngine(cls, url: sa.URL, threads: int | None) -> tuple[sa.Engine, int]:
        """An engine configured for crashdb, and the number of threads to use with it."""

    def missingDatabase(self) -> str | None:
        """Where the database should be, if it certainly does not exist yet and connecting
        would create it (an embedded file); else None. Checked before a connection is made by
        callers that must not create a database (``setup()`` with ``check_version``)."""
        return None

    # -- statement shapes ---------------------------------------------------------------------

    @abc.abstractmethod
    def insert(self, table: sa.Table) -> Any:
        """An INSERT that supports ``on_conflict_do_nothing``/``_do_update`` on this backend."""

    @abc.abstractmethod
    def skipLocked(self, select: sa.Select) -> sa.Select:
        """``select`` locking the rows it reads, skipping rows other transactions hold: how
        concurrent claimers take different jobs without waiting on each other."""

    @abc.abstractmethod
    def inList(self, column: sa.ColumnElement, name: str) -> sa.ColumnElement[bool]:
        """``column IN`` the list passed at execution as parameter ``name``, in a statement
        that can be compiled once and reused whatever the list's length."""

    @abc.abstractmethod
    def codePointOrder(self, expression: sa.ColumnElement) -> sa.ColumnElement:
        """``expression`` to ORDER BY in code point order (Python's ``sorted``) whatever the
        database's collation, so rankings break ties identically on every backend."""

    @abc.abstractmethod
    def jsonEquals(self, column: sa.ColumnElement, key: str, value: Any) -> sa.ColumnElement[bool]:
        """``column``'s top-level ``key`` equals the scalar ``value``, type included."""

    @abc.abstractmethod
    def epochMicroseconds(self, when: sa.ColumnElement) -> sa.ColumnElement[int]:
        """A ``UTCDateTime`` column as integer microseconds since 1970, exact on every backend
        (integers, not floats: installations are counted by distinct install times, and a float
        rounded differently on each backend would count differently)."""

    @abc.abstractmethod
    def greatest(self, *values: sa.ColumnElement) -> sa.ColumnElement[float]:
        """The largest of ``values`` (doubles), row by row."""

    @abc.abstractmethod
    def squareRoot(self, conn: sa.Connection, value: sa.ColumnElement) -> sa.ColumnElement[float]:
        """The IEEE square root of ``value`` in SQL, on ``conn``."""

    @abc.abstractmethod
    def caseInsensitiveLike(self, term: sa.ColumnElement, pattern: str
                            ) -> sa.ColumnElement[bool]:
        """``term LIKE pattern`` (``\\`` escapes), folding ASCII letters only, identically on
        every backend."""

    @abc.abstractmethod
    def jsonText(self, column: sa.ColumnElement, key: str) -> tuple[sa.ColumnElement[str], Any]:
        """A JSON object column's top-level ``key`` as text (a number as written, booleans
        ``true``/``false``), and a further condition for it to count as set (None: none), so
        that arrays and objects count as unset on every backend."""

    @abc.abstractmethod
    def sameWeek(self, a: sa.ColumnElement, b: sa.ColumnElement) -> sa.ColumnElement[bool]:
        """``a`` and ``b`` (UTCDateTime columns) fall in the same Monday-to-Monday UTC week."""

    @abc.abstractmethod
    def utcDay(self, column: sa.ColumnElement) -> sa.ColumnElement:
        """The UTC day of a UTCDateTime column, as the backend returns dates."""

    def jsonField(self, column: sa.ColumnElement, key: str) -> sa.ColumnElement:
        """``column``'s top-level ``key`` as JSON (None where it is missing), for any key."""
        return column[key]

    # -- what an error means ------------------------------------------------------------------

    @abc.abstractmethod
    def isRetryable(self, error: sa.exc.DBAPIError) -> bool:
        """True if ``error``, raised before COMMIT was sent, means the whole transaction was
        rolled back for a transient reason, so running it again is safe and may succeed."""

    @abc.abstractmethod
    def isConnectionLost(self, error: sa.exc.DBAPIError) -> bool:
        """True if ``error`` means the session is gone (or never opened): raised during COMMIT,
        the outcome of the transaction is unknown."""

    @abc.abstractmethod
    def isMissingTable(self, error: sa.exc.DBAPIError) -> bool:
        """True if ``error`` names a table that does not exist."""

    @abc.abstractmethod
    def isUniqueViolation(self, error: sa.exc.DBAPIError) -> bool:
        """True if ``error`` is a duplicate key in a unique index or primary key."""

    def isMissingPartition(self, error: sa.exc.DBAPIError) -> bool:
        """True if ``error`` means a week's partition is missing: its child does not exist
        (``isMissingTable``), or a row sent through a parent found no child to go to."""
        return self.isMissingTable(error)

    # -- bulk writes --------------------------------------------------------------------------

    def bulkInsert(
        self, conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Rows
    ) -> None:
        """Append ``rows`` (sequences of values in ``columns`` order) to ``table`` the fastest
        way this backend has. Nothing is skipped: a duplicate key fails the call (see
        ``isUniqueViolation``), so a caller expecting none wraps it in a savepoint
        (``conn.begin_nested()``) to survive one."""
        if rows:
            conn.execute(table.insert(), [dict(zip(columns, row)) for row in rows])

    def insertNew(
        self, conn: sa.Connection, table: sa.Table, columns: Sequence[str],
        rows: Rows, key: str,
    ) -> set[Any]:
        """Insert those ``rows`` whose ``key`` (a uniquely indexed column) is not in ``table``
        yet; the set of keys inserted (as the driver returns them). Safe against concurrent
        writers of the same keys: the unique index decides (``ON CONFLICT DO NOTHING``)."""
        columns = tuple(columns)
        quote = conn.dialect.identifier_preparer.quote
        suffix = f" ON CONFLICT ({quote(key)}) DO NOTHING RETURNING {quote(key)}"
        values = self.boundValues(conn.dialect, table, columns, rows)
        inserted: set[Any] = set()
        for chunk in batched(values, max(1, MAX_BOUND_PARAMETERS // len(columns))):
            statement = plainInsert(conn.dialect, table, columns, len(chunk), suffix)
            params = tuple(itertools.chain.from_iterable(chunk))
            inserted.update(value for (value,) in conn.exec_driver_sql(statement, params))
        return inserted

    def boundValues(
        self, dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...], rows: Iterable[Any]
    ) -> list[tuple]:
        """``rows`` as tuples of driver values: each value through its column type's bind
        processor (or this backend's quicker ``BINDERS``), as SQLAlchemy would pass it."""
        processors = bindProcessors(dialect, table, columns, self.BINDERS)
        values = []
        for row in rows:
            row = list(row)
            for position, process in processors:
                value = row[position]
                if value is not None:
                    row[position] = process(value)
            values.append(tuple(row))
        return values

    # -- ids ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def reserveIds(self, conn: sa.Connection, name: str, count: int) -> Sequence[int]:
        """``count`` new ids of table ``name`` (``reports``), in one round trip."""

    @abc.abstractmethod
    def sharedIdDefault(self, parent: sa.Table, column: sa.Column) -> dict[str, Any]:
        """The default of a weekly child's copy of ``parent``'s id ``column`` (keyword arguments
        of ``sa.Column``): the parent's counter, never a sequence of the child's own."""

    @abc.abstractmethod
    def advanceIds(self, conn: sa.Connection, table: str, past: int) -> None:
        """Make ids handed out later exceed ``past`` (after rows were given explicit ids)."""

    # -- partition DDL primitives (see crashdb.partitions) ------------------------------------

    @abc.abstractmethod
    def childNames(self, conn: sa.Connection) -> Sequence[str]:
        """The names of the tables that may be weekly children (crashdb.partitions parses
        them)."""

    @staticmethod
    @abc.abstractmethod
    def timestampLiteral(when: datetime.datetime) -> str:
        """``when`` (an aware UTC datetime) as a SQL literal comparable with a stored
        ``UTCDateTime`` column, for DDL, where parameters cannot be bound."""

    @classmethod
    def weekCheck(cls, monday: datetime.datetime) -> str:
        """The SQL of the CHECK that keeps a child's ``date_processed`` within its week."""
        end = monday + datetime.timedelta(days=7)
        return (f"{cls.timestampLiteral(monday)} <= date_processed"
                f" AND date_processed < {cls.timestampLiteral(end)}")

    @abc.abstractmethod
    def runWeekDDL(
        self, engine: sa.Engine, monday: datetime.datetime, names: list[str], work: WeekWork
    ) -> list[str]:
        """``work(conn, existing)`` in a transaction of its own, serialized against other DDL
        of the same week; ``existing`` are those of ``names`` that exist."""

    def attachChild(
        self, conn: sa.Connection, parent: str, child: str, monday: datetime.datetime
    ) -> None:
        """Make the new table ``child`` ``parent``'s partition for the week of ``monday``
        (nothing to do where crashdb routes rows itself)."""
        return None

    def detachChild(self, conn: sa.Connection, parent: str, child: str) -> None:
        """Undo ``attachChild`` before ``child`` is dropped."""
        return None

    def detectDistribution(self, conn: sa.Connection) -> str | None:
        """``distributionColumn``, learnt from the database behind ``conn`` if not yet known."""
        return None

    def afterUpgrade(self, conn: sa.Connection) -> list[str]:
        """What the schema needs beyond the migrations (Citus: distributing the tables), in
        the upgrade's transaction; the tables changed."""
        return []

    @abc.abstractmethod
    def childSizes(
        self, conn: sa.Connection, names: list[str]
    ) -> dict[str, tuple[int | None, int | None]]:
        """``{name: (rows or None if unknown, bytes or None if unknown)}`` of the tables."""

    # -- replicas -------------------------------------------------------------------------------

    #: True if the database can have streaming read replicas crashdb may read from
    supportsReplicas: ClassVar[bool] = False

    def replicaLag(self, conn: sa.Connection) -> float | None:
        """Seconds the replica behind ``conn`` lags its primary (0 when it has replayed all it
        received and is streaming), or None when it cannot tell (nothing replayed yet)."""
        raise NotImplementedError(f"{self.name} has no replicas")

    # -- schema upgrades ----------------------------------------------------------------------

    @abc.abstractmethod
    def lockForUpgrade(self, conn: sa.Connection) -> None:
        """Serialize concurrent schema upgrades for the rest of ``conn``'s transaction."""


@functools.lru_cache(maxsize=1024)
def plainInsert(
    dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...], rows: int = 1, suffix: str = ""
) -> str:
    """The text of an INSERT of ``rows`` rows of positional parameters, then ``suffix``, made
    once per shape and executed with plain value tuples: 1.25-1.3x SQLAlchemy 2.1's own
    (cached) INSERT on SQLite, whose per-row parameter handling it skips (bench/inserts.py;
    test_plain_insert.py pins that it stores exactly what SQLAlchemy's would)."""
    quote = dialect.identifier_preparer.quote
    marks = "(" + ", ".join(["?" if dialect.paramstyle == "qmark" else "%s"] * len(columns)) + ")"
    return (
        f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))})"
        f" VALUES {', '.join([marks] * rows)}{suffix}"
    )


@functools.lru_cache(maxsize=1024)
def plainLookup(dialect: sa.Dialect, shape: tuple[tuple[str, int], ...], key: str,
                value: str) -> str:
    """The text of one query of ``(position, key, value)`` rows for each ``(table, count)``
    of ``shape``: the rows of ``table`` whose ``key`` is one of ``count`` positional
    parameters, ``position`` being the table's place in ``shape``. Made once per shape, like
    ``plainInsert``, for look-ups on the write path where building a statement costs more
    than running it."""
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    return " UNION ALL ".join(
        f"SELECT {position}, {quote(key)}, {quote(value)} FROM {quote(table)}"
        f" WHERE {quote(key)} IN ({', '.join([mark] * count)})"
        for position, (table, count) in enumerate(shape)
    )


@functools.lru_cache(maxsize=1024)
def bindProcessors(
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

    processors = [(position, processor(table.c[name].type))
                  for position, name in enumerate(columns)]
    return [(position, process) for position, process in processors if process]

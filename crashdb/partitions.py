"""Weekly partitions: the pure helpers, the child DDL derived from the model, and the component.

A week runs from Monday 00:00:00 UTC (inclusive) to the next Monday (exclusive); its children
are named ``<parent>_<YYYYMMDD of the Monday>``. Every partitioned table is partitioned in step:
a week exists for all of them or for none.
"""

from __future__ import annotations

import datetime
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer

from crashdb import model
from crashdb.base import DBConnectorComponent
from crashdb.exceptions import InvalidInputError, RetryAfterRepair
from crashdb.validation import requireDatetime, requireString

UTC = datetime.UTC
WEEK = datetime.timedelta(days=7)
CHILD_NAME = re.compile("^(" + "|".join(model.PARTITIONED_TABLES) + r")_(\d{8})$")


def _asUTC(when: datetime.datetime | datetime.date, field: str = "when") -> datetime.datetime:
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None or when.tzinfo.utcoffset(when) is None:
            raise InvalidInputError("naive datetime; give a timezone-aware one", field=field)
        return when.astimezone(UTC)
    if isinstance(when, datetime.date):
        return datetime.datetime(when.year, when.month, when.day, tzinfo=UTC)
    raise InvalidInputError(f"expected a datetime, got {type(when).__name__}", field=field)


def weekStart(when: datetime.datetime | datetime.date) -> datetime.datetime:
    """The Monday 00:00 UTC that starts the week holding ``when`` (a date is a UTC day)."""
    moment = _asUTC(when)
    day = moment.date() - datetime.timedelta(days=moment.weekday())
    return datetime.datetime(day.year, day.month, day.day, tzinfo=UTC)


def partitionName(table: str, when: datetime.datetime | datetime.date) -> str:
    """The child of ``table`` that holds ``when``: ``partitionName("reports", t)`` →
    ``"reports_20121015"``."""
    if table not in model.PARTITIONED_TABLES:
        raise InvalidInputError(f"{table!r} is not a partitioned table", field="table")
    return f"{table}_{weekStart(when):%Y%m%d}"


def parseChildName(name: str) -> tuple[str, datetime.datetime] | None:
    """``("reports", Monday)`` for a child's name, or None if it names no child."""
    match = CHILD_NAME.match(name)
    if match is None:
        return None
    monday = datetime.datetime.strptime(match.group(2), "%Y%m%d").replace(tzinfo=UTC)
    return match.group(1), monday


def weeksBetween(start: datetime.datetime, end: datetime.datetime) -> list[datetime.datetime]:
    """Mondays of the weeks overlapping the half-open range [start, end)."""
    mondays = []
    monday = weekStart(start)
    while monday < end:
        mondays.append(monday)
        monday += WEEK
    return mondays


# -- child DDL from the model ---------------------------------------------------------------------

_child_metadata: dict[str, sa.MetaData] = {}
_child_lock = threading.Lock()


def _dateCheck(dialect: str, monday: datetime.datetime) -> str:
    """The half-open CHECK of a week, in the form the dialect stores timestamps."""
    end = monday + WEEK
    if dialect == "sqlite":  # SQLAlchemy's SQLite DateTime storage format, compared as text
        fmt = "'%Y-%m-%d %H:%M:%S.000000'"
        return f"date_processed >= {monday:{fmt}} AND date_processed < {end:{fmt}}"
    fmt = "'%Y-%m-%d %H:%M:%S+00'::timestamp with time zone"
    return f"{monday:{fmt}} <= date_processed AND date_processed < {end:{fmt}}"


def childTable(parent: str, monday: datetime.datetime, dialect: str) -> sa.Table:
    """The weekly child of ``parent`` as a Table: the parent's columns, plus the indexes,
    keys and date check of ``model.CHILD_SPECS``, all named ``<child>_<suffix>``."""
    name = partitionName(parent, monday)
    with _child_lock:
        metadata = _child_metadata.get(dialect)
        if metadata is None:
            metadata = _child_metadata[dialect] = sa.MetaData()
            model.plugins.to_metadata(metadata)
        if name in metadata.tables:
            return metadata.tables[name]
        if parent != "reports":
            childTable_locked("reports", monday, dialect, metadata)
        return childTable_locked(parent, monday, dialect, metadata)


def childTable_locked(
    parent: str, monday: datetime.datetime, dialect: str, metadata: sa.MetaData
) -> sa.Table:
    name = partitionName(parent, monday)
    if name in metadata.tables:
        return metadata.tables[name]
    spec = model.CHILD_SPECS[parent]
    parentTable = model.metadata.tables[parent]
    columns = [_childColumn(parentTable, c, spec, dialect) for c in parentTable.c]
    constraints: list[Any] = [
        sa.PrimaryKeyConstraint(*spec.primary_key, name=f"{name}_pkey"),
        sa.CheckConstraint(_dateCheck(dialect, monday), name=f"{name}_date_check"),
    ]
    for fk in spec.foreign_keys:
        target = fk.target or partitionName("reports", monday)
        constraints.append(
            sa.ForeignKeyConstraint(
                [fk.column],
                [f"{target}.{fk.target_column}"],
                name=f"{name}_{fk.suffix}",
                ondelete=fk.ondelete,
            )
        )
    indexes = [
        sa.Index(f"{name}_{suffix}", *cols, unique=unique) for suffix, cols, unique in spec.indexes
    ]
    return sa.Table(name, metadata, *columns, *constraints, *indexes)


def _childColumn(parent: sa.Table, column: sa.Column, spec: model.ChildSpec, dialect: str
                 ) -> sa.Column:
    """A child's copy of the parent's ``column``. The shared id is never SERIAL (a sequence of
    the child's own): on PostgreSQL its default is the parent's, the shared sequence; on SQLite,
    which has no sequences, crashdb's SQL draws it from the parent's ``id_sequences`` row."""
    if column.name != spec.shared_id:
        return sa.Column(column.name, column.type, nullable=column.nullable)
    if dialect != "sqlite":
        sequence = column.default
        assert isinstance(sequence, sa.Sequence), "a shared id comes from the parent's sequence"
        return sa.Column(column.name, column.type, nullable=column.nullable, autoincrement=False,
                         server_default=sequence.next_value())
    counters = model.id_sequences
    draw = (sa.update(counters).where(counters.c.name == parent.name)
            .values(next_id=counters.c.next_id + 1).returning(counters.c.next_id - 1))

    def nextId(context) -> int:
        return context.connection.execute(draw).scalar_one()

    return sa.Column(column.name, column.type, nullable=column.nullable, autoincrement=False,
                     default=nextId)


def weekTables(monday: datetime.datetime, dialect: str) -> list[sa.Table]:
    """Every child of one week, ``reports`` first (the others reference it)."""
    return [childTable(parent, monday, dialect) for parent in model.PARTITIONED_TABLES]


# -- the insert path ------------------------------------------------------------------------------


def groupByWeek(rows: Iterable[dict], key: str = "date_processed") -> dict[datetime.datetime, list]:
    """Rows grouped by the Monday of their ``key``, in first-seen order."""
    groups: dict[datetime.datetime, list] = {}
    for row in rows:
        groups.setdefault(weekStart(row[key]), []).append(row)
    return groups


def missingPartition(strategy: Any, monday: datetime.datetime) -> RetryAfterRepair:
    """The signal that rolls back, creates ``monday``'s week in its own transaction, retries."""
    return RetryAfterRepair(
        f"no partition for the week of {monday:%Y-%m-%d}",
        repair=lambda engine: strategy.createWeek(engine, monday),
    )


def executeInWeek(conn: sa.Connection, strategy: Any, monday: datetime.datetime, statement, *args):
    """Execute a statement against a week's child; a missing child becomes the repair signal."""
    try:
        return conn.execute(statement, *args)
    except sa.exc.DBAPIError as error:
        if strategy.isMissingTable(error):
            raise missingPartition(strategy, monday) from error
        raise


# -- reading by uuid ------------------------------------------------------------------------------


def uuidLookup(uuid: Any, date_processed: Any) -> tuple[datetime.datetime | None,
                                                       datetime.datetime | None]:
    """Validate a look-up by uuid and optional processing time; the week to read, or Nones
    for every week."""
    requireString(uuid, "uuid", 50)
    requireDatetime(date_processed, "date_processed", optional=True)
    if date_processed is None:
        return None, None
    start = weekStart(date_processed)
    return start, start + WEEK


def latestByUuid(conn: sa.Connection, strategy: Any, parent: str, uuid: str, start, end,
                 columns: Callable[[sa.FromClause], list] | None = None) -> sa.Row | None:
    """The most recently processed row of ``parent`` with ``uuid`` within [start, end) (any
    week when they are None): uniqueness is per week, so a uuid may be stored in several."""
    source = strategy.readable(conn, parent, start, end)
    query = sa.select(*(columns(source) if columns else [source])).where(source.c.uuid == uuid)
    if start is not None:
        query = query.where(source.c.date_processed >= start, source.c.date_processed < end)
    return conn.execute(query.order_by(source.c.date_processed.desc()).limit(1)).first()


# -- the component --------------------------------------------------------------------------------


class PartitionsConnectorComponent(DBConnectorComponent):
    """Creates, lists and drops the weekly partitions of every partitioned table."""

    def ensureWeek(self, when: datetime.datetime | datetime.date) -> defer.Deferred:
        """Create the week holding ``when`` for every partitioned table; Deferred of the names
        created (empty if the week existed)."""
        try:
            monday = weekStart(when)
        except InvalidInputError as error:
            return defer.fail(error)
        return self.db.pool.do_with_engine(self.db.strategy.createWeek, monday)

    def createAhead(
        self, weeks: int, now: datetime.datetime | None = None
    ) -> defer.Deferred:
        """Create the week of ``now`` and the next ``weeks`` weeks; Deferred of names created."""
        if isinstance(weeks, bool) or not isinstance(weeks, int) or weeks < 0:
            return defer.fail(InvalidInputError("must be a whole number >= 0", field="weeks"))
        try:
            first = weekStart(now if now is not None else datetime.datetime.now(UTC))
        except InvalidInputError as error:
            return defer.fail(error)
        mondays = [first + i * WEEK for i in range(weeks + 1)]

        def create(engine: sa.Engine) -> list[str]:
            names: list[str] = []
            for monday in mondays:
                names.extend(self.db.strategy.createWeek(engine, monday))
            return names

        return self.db.pool.do_with_engine(create)

    def dropWeeksBefore(self, cutoff: datetime.datetime) -> defer.Deferred:
        """Drop every week that ends on or before ``cutoff``; Deferred of the names dropped."""
        try:
            cutoff = _asUTC(cutoff, "cutoff")
        except InvalidInputError as error:
            return defer.fail(error)

        def drop(engine: sa.Engine) -> list[str]:
            with engine.connect() as conn:
                mondays = sorted({m for _, m in self.db.strategy.listChildren(conn)})
            names: list[str] = []
            for monday in mondays:
                if monday + WEEK <= cutoff:
                    names.extend(self.db.strategy.dropWeek(engine, monday))
            return names

        return self.db.pool.do_with_engine(drop)

    def getPartitions(self, table: str | None = None) -> defer.Deferred:
        """Deferred of ``[{table, name, start, end}]`` ordered by table, then start."""
        if table is not None and table not in model.PARTITIONED_TABLES:
            return defer.fail(InvalidInputError(f"{table!r} is not partitioned", field="table"))

        def thd(conn: sa.Connection) -> list[dict]:
            rows = [
                {"table": parent, "name": partitionName(parent, monday), "start": monday,
                 "end": monday + WEEK}
                for parent, monday in self.db.strategy.listChildren(conn)
                if table is None or parent == table
            ]
            return sorted(rows, key=lambda r: (r["table"], r["start"]))

        return self.db.pool.do(thd)

    def getPartitionSizes(self) -> defer.Deferred:
        """Deferred of ``{child name: (rows, bytes or None)}``, for ``crashdb partitions list``."""
        return self.db.pool.do(self.db.strategy.childSizes)


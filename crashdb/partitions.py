"""Weekly partitions: the pure helpers, the child DDL derived from the model, and the component.

A week runs from Monday 00:00:00 UTC (inclusive) to the next Monday (exclusive); its children
are named ``<parent>_<YYYYMMDD of the Monday>``. Every partitioned table is partitioned in step:
a week exists for all of them or for none.
"""

from __future__ import annotations

import datetime
import functools
import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from twisted.internet import defer

from crashdb import model
from crashdb.base import DBConnectorComponent
from crashdb.exceptions import InvalidInputError, RetryAfterRepair
from crashdb.validation import requireDatetime, requireInteger, requireString, validatesInput

if TYPE_CHECKING:
    from crashdb.backends.base import Backend

log = logging.getLogger("crashdb.partitions")

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


# -- child DDL from the model ---------------------------------------------------------------------

_child_metadata: dict[tuple[str, str | None], sa.MetaData] = {}
_child_lock = threading.Lock()


def overlaps(monday: datetime.datetime, start: datetime.datetime | None,
             end: datetime.datetime | None) -> bool:
    """True if the week starting ``monday`` overlaps [start, end) (None: unbounded)."""
    return (start is None or monday + WEEK > start) and (end is None or monday < end)


def childTable(parent: str, monday: datetime.datetime, backend: Backend) -> sa.Table:
    """The weekly child of ``parent`` as a Table: the parent's columns, plus the indexes,
    keys and date check (``backend.weekCheck``) of ``model.CHILD_SPECS``, all named
    ``<child>_<suffix>``. Any time of the week names the same child (the cache is by name).

    On a cluster (``backend.distributionColumn``) primary keys and foreign keys to the week's
    reports child include the distribution column, as Citus requires."""
    monday = weekStart(monday)
    name = partitionName(parent, monday)
    variant = (backend.name, backend.distributionColumn)
    with _child_lock:
        metadata = _child_metadata.get(variant)
        if metadata is None:
            metadata = _child_metadata[variant] = sa.MetaData()
            model.plugins.to_metadata(metadata)
        if name in metadata.tables:
            return metadata.tables[name]
        if parent != "reports":  # the others reference the week's reports child
            _newChildTable("reports", monday, backend, metadata)
        return _newChildTable(parent, monday, backend, metadata)


def _newChildTable(
    parent: str, monday: datetime.datetime, backend: Backend, metadata: sa.MetaData
) -> sa.Table:
    name = partitionName(parent, monday)
    if name in metadata.tables:
        return metadata.tables[name]
    spec = model.CHILD_SPECS[parent]
    parentTable = model.metadata.tables[parent]
    extra = backend.distributionColumn
    key = spec.primary_key
    if extra and extra not in key:
        key = (*key, extra)
    columns = [_childColumn(parentTable, c, spec, backend, c.name in key) for c in parentTable.c]
    constraints: list[Any] = [
        sa.PrimaryKeyConstraint(*key, name=f"{name}_pkey"),
        sa.CheckConstraint(backend.weekCheck(monday), name=f"{name}_date_check"),
    ]
    for fk in spec.foreign_keys:
        if extra and fk.target is not None:
            # On Citus a foreign key from a distributed table to a reference table runs every
            # transaction writing both over one connection per worker: no parallel COPY
            continue
        target = fk.target or partitionName("reports", monday)
        pairs = [(fk.column, fk.target_column)]
        if extra:  # co-located: the report's row on the same shard
            pairs.append((extra, extra))
        constraints.append(
            sa.ForeignKeyConstraint(
                [mine for mine, _ in pairs],
                [f"{target}.{theirs}" for _, theirs in pairs],
                name=f"{name}_{fk.suffix}",
                ondelete=fk.ondelete,
            )
        )
    indexes = [
        sa.Index(f"{name}_{suffix}", *cols, unique=unique) for suffix, cols, unique in spec.indexes
    ]
    return sa.Table(name, metadata, *columns, *constraints, *indexes)


def _childColumn(parent: sa.Table, column: sa.Column, spec: model.ChildSpec,
                 backend: Backend, keyed: bool) -> sa.Column:
    """A child's copy of the parent's ``column`` (not null when ``keyed``, part of the primary
    key). The shared id is never SERIAL (a sequence of the child's own): it draws from the
    parent's counter, as the backend keeps it (``Backend.sharedIdDefault``)."""
    nullable = column.nullable and not keyed
    if column.name != spec.shared_id:
        return sa.Column(column.name, column.type, nullable=nullable)
    return sa.Column(column.name, column.type, nullable=nullable, autoincrement=False,
                     **backend.sharedIdDefault(parent, column))


def weekNames(monday: datetime.datetime) -> list[str]:
    """The names of every child of one week, ``reports`` first."""
    return [partitionName(parent, monday) for parent in model.PARTITIONED_TABLES]


def weekTables(monday: datetime.datetime, backend: Backend) -> list[sa.Table]:
    """Every child of one week, ``reports`` first (the others reference it)."""
    return [childTable(parent, monday, backend) for parent in model.PARTITIONED_TABLES]


# -- week DDL from the backend's primitives -------------------------------------------------------


def createWeek(engine: sa.Engine, backend: Backend, monday: datetime.datetime) -> list[str]:
    """Create every missing child of the week of ``monday``, all or none, in a transaction of
    its own; the names created. Safe when racing: the backend serializes a week's DDL."""

    def create(conn: sa.Connection, existing: set[str]) -> list[str]:
        created = []
        for parent, child in zip(model.PARTITIONED_TABLES, weekTables(monday, backend)):
            if child.name not in existing:
                child.create(conn)
                backend.attachChild(conn, parent, child.name, monday)
                created.append(child.name)
        return created

    created = backend.runWeekDDL(engine, monday, weekNames(monday), create)
    if created:
        log.info("created partitions %s", ", ".join(created))
    return created


def dropWeek(engine: sa.Engine, backend: Backend, monday: datetime.datetime) -> list[str]:
    """Drop every child of the week of ``monday``, those referencing ``reports`` first; the
    names dropped."""
    names = weekNames(monday)

    def drop(conn: sa.Connection, existing: set[str]) -> list[str]:
        dropped = []
        for parent, child in reversed(list(zip(model.PARTITIONED_TABLES, names))):
            if child in existing:
                backend.detachChild(conn, parent, child)
                conn.exec_driver_sql(f'DROP TABLE "{child}"')
                dropped.append(child)
        return dropped

    return backend.runWeekDDL(engine, monday, names, drop)


@functools.lru_cache(maxsize=64)
def _parsedChildren(names: tuple[str, ...]) -> list[tuple[str, datetime.datetime]]:
    return [p for p in map(parseChildName, names) if p is not None]


def listChildren(conn: sa.Connection, backend: Backend) -> list[tuple[str, datetime.datetime]]:
    """``(parent, monday)`` of every existing child."""
    return _parsedChildren(tuple(backend.childNames(conn)))


def readable(conn: sa.Connection, backend: Backend, parent: str,
             start: datetime.datetime | None = None,
             end: datetime.datetime | None = None,
             columns: Sequence[str] | None = None) -> sa.FromClause:
    """What to read ``parent``'s rows of [start, end) from: the parent itself where the
    database prunes partitions, else the union of the overlapping children only. ``columns``:
    the only ones the caller reads (a union of every column of reports costs SQLAlchemy more
    to build than a small read costs SQLite to run); a table offers all of them anyway."""
    if backend.routesPartitions:
        return model.metadata.tables[parent]
    children = [childTable(p, monday, backend) for p, monday in listChildren(conn, backend)
                if p == parent and overlaps(monday, start, end)]
    if not children:
        return model.metadata.tables[parent]  # the empty parent: no rows, right columns
    if len(children) == 1:
        return children[0]
    return sa.union_all(*(sa.select(*(child.c if columns is None else child.c[tuple(columns)]))
                          for child in children)).subquery(parent)


# -- the insert path ------------------------------------------------------------------------------


def missingWeeks(backend: Backend, mondays: Sequence[datetime.datetime]) -> RetryAfterRepair:
    """The signal that rolls back, creates the weeks of ``mondays`` (each in a transaction of
    its own), and retries: one repair for a whole batch, however many weeks it spans."""
    ordered = sorted(set(mondays))
    span = f"{ordered[0]:%Y-%m-%d}" + (f" to {ordered[-1]:%Y-%m-%d}" if len(ordered) > 1 else "")
    return RetryAfterRepair(
        f"no partition for the week of {span}",
        repair=lambda engine: [createWeek(engine, backend, monday) for monday in ordered],
    )


def executeInWeek(conn: sa.Connection, backend: Backend, monday: datetime.datetime,
                  statement: Any, *args: Any) -> sa.CursorResult:
    """Execute a statement against a week's child; a missing child becomes the repair signal."""
    try:
        return conn.execute(statement, *args)
    except sa.exc.DBAPIError as error:
        if backend.isMissingPartition(error):
            raise missingWeeks(backend, [monday]) from error
        raise


# -- reading by uuid ------------------------------------------------------------------------------


def uuidLookup(uuid: Any, date_processed: Any) -> tuple[datetime.datetime | None,
                                                       datetime.datetime | None]:
    """Validate a look-up by uuid and optional processing time; the week to read, or Nones
    for every week."""
    requireString(uuid, "uuid", 50)
    requireDatetime(date_processed, "date_processed", optional=True, stored=True)
    if date_processed is None:
        return None, None
    start = weekStart(date_processed)
    return start, start + WEEK


def latestByUuid(conn: sa.Connection, backend: Backend, parent: str, uuid: str,
                 start: datetime.datetime | None, end: datetime.datetime | None,
                 columns: Callable[[sa.FromClause], list] | None = None) -> sa.Row | None:
    """The most recently processed row of ``parent`` with ``uuid`` within [start, end) (any
    week when they are None): uniqueness is per week, so a uuid may be stored in several."""
    source = readable(conn, backend, parent, start, end)
    query = sa.select(*(columns(source) if columns else [source])).where(source.c.uuid == uuid)
    if start is not None:
        query = query.where(source.c.date_processed >= start, source.c.date_processed < end)
    return conn.execute(query.order_by(source.c.date_processed.desc()).limit(1)).first()


# -- the component --------------------------------------------------------------------------------


class PartitionsConnectorComponent(DBConnectorComponent):
    """Creates, lists and drops the weekly partitions of every partitioned table."""

    @validatesInput
    def ensureWeek(self, when: datetime.datetime | datetime.date) -> defer.Deferred:
        """Create the week holding ``when`` for every partitioned table; Deferred of the names
        created (empty if the week existed)."""
        return self.db.pool.doWithEngine(createWeek, self.db.backend, weekStart(when))

    @validatesInput
    def createAhead(self, weeks: int, now: datetime.datetime | None = None) -> defer.Deferred:
        """Create the week of ``now`` and the next ``weeks`` weeks; Deferred of names created."""
        requireInteger(weeks, "weeks", minimum=0)
        first = weekStart(now if now is not None else datetime.datetime.now(UTC))
        mondays = [first + i * WEEK for i in range(weeks + 1)]

        def create(engine: sa.Engine) -> list[str]:
            return [name for monday in mondays
                    for name in createWeek(engine, self.db.backend, monday)]

        return self.db.pool.doWithEngine(create)

    @validatesInput
    def dropWeeksBefore(self, cutoff: datetime.datetime) -> defer.Deferred:
        """Drop every week that ends on or before ``cutoff``; Deferred of the names dropped."""
        cutoff = _asUTC(cutoff, "cutoff")
        backend = self.db.backend

        def drop(engine: sa.Engine) -> list[str]:
            with engine.connect() as conn:
                mondays = sorted({monday for _, monday in listChildren(conn, backend)})
            return [name for monday in mondays if monday + WEEK <= cutoff
                    for name in dropWeek(engine, backend, monday)]

        return self.db.pool.doWithEngine(drop)

    def getPartitions(self, table: str | None = None) -> defer.Deferred:
        """Deferred of ``[{table, name, start, end}]`` ordered by table, then start."""
        if table is not None and table not in model.PARTITIONED_TABLES:
            return defer.fail(InvalidInputError(f"{table!r} is not partitioned", field="table"))

        def thd(conn: sa.Connection) -> list[dict]:
            rows = [
                {"table": parent, "name": partitionName(parent, monday), "start": monday,
                 "end": monday + WEEK}
                for parent, monday in listChildren(conn, self.db.backend)
                if table is None or parent == table
            ]
            return sorted(rows, key=lambda r: (r["table"], r["start"]))

        return self.db.pool.doRead(thd)

    def getPartitionSizes(self) -> defer.Deferred:
        """Deferred of ``{child name: (rows, bytes or None)}``, for ``crashdb partitions list``."""

        def thd(conn: sa.Connection) -> dict[str, tuple[int | None, int | None]]:
            names = [partitionName(parent, monday)
                     for parent, monday in listChildren(conn, self.db.backend)]
            return self.db.backend.childSizes(conn, names)

        return self.db.pool.doRead(thd)

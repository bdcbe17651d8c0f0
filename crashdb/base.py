"""What every connector component shares."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import sqlalchemy as sa

if TYPE_CHECKING:
    from crashdb.connector import DBConnector

T = TypeVar("T")

# SQLite's default limit on bound parameters per statement (SQLITE_MAX_VARIABLE_NUMBER before
# 3.32); batches of ids stay under it on every backend.
MAX_BOUND_PARAMETERS = 999


def batched(items: Sequence[T], size: int = MAX_BOUND_PARAMETERS) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Rows(Protocol):
    """Rows for a bulk write: sized (a backend picks its method by the count) and iterable
    (each row a sequence of values in the order of the statement's columns)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...


class DBConnectorComponent:
    """A component of the connector: one table family, its public methods its API.

    ``_race_hook``, if set, is called as ``_race_hook(conn)`` at the point where a concurrent
    writer could interfere, so that a test can force the race deterministically.
    """

    _race_hook: Callable[[sa.Connection], Any] | None = None

    def __init__(self, db: DBConnector) -> None:
        self.db = db

    def findOrCreateId(
        self,
        conn: sa.Connection,
        table: sa.Table,
        key: dict[str, Any],
        values: dict[str, Any] | None = None,
    ) -> int:
        """The id of the row of ``table`` matching ``key``, inserting it (with ``values``) if
        missing. Race-safe: the unique index decides, a losing insert does nothing and the
        winner's row is read back (Buildbot's ``findSomethingId``)."""
        where = sa.and_(*(table.c[name] == value for name, value in key.items()))
        found = conn.execute(sa.select(table.c.id).where(where)).scalar_one_or_none()
        if found is not None:
            return found
        if self._race_hook is not None:
            self._race_hook(conn)
        insert = (
            self.db.backend.insert(table)
            .values(**key, **(values or {}))
            .on_conflict_do_nothing()
            .returning(table.c.id)
        )
        created = conn.execute(insert).scalar_one_or_none()
        if created is not None:
            return created
        return conn.execute(sa.select(table.c.id).where(where)).scalar_one()

    def readable(self, conn: sa.Connection, parent: str,
                 start: datetime.datetime | None = None,
                 end: datetime.datetime | None = None,
                 columns: Sequence[str] | None = None) -> sa.FromClause:
        """What to read ``parent``'s rows of [start, end) from (its ``columns`` at least): only
        the weekly partitions that overlap the range are touched (see
        :func:`crashdb.partitions.readable`)."""
        from crashdb.partitions import readable  # which builds on this module's component

        return readable(conn, self.db.backend, parent, start, end, columns)

    @staticmethod
    def ofReport(source: sa.FromClause, report_id: int, start: datetime.datetime,
                 end: datetime.datetime) -> list[sa.ColumnElement[bool]]:
        """The conditions selecting one report's rows of a child table (extensions, plugins)
        in the report's week [start, end)."""
        return [source.c.report_id == report_id, source.c.date_processed >= start,
                source.c.date_processed < end]

    @staticmethod
    def rowsToDicts(rows: Iterable[sa.Row]) -> list[dict[str, Any]]:
        """Plain dicts for result rows: callers never see SQLAlchemy objects."""
        return [dict(row._mapping) for row in rows]

"""Raw crashes: each crash's submitted metadata as JSON (JSONB on PostgreSQL).

New keys need no schema change to be stored or queried: ``where`` filters and
``countRawCrashesBy`` run in SQL on any top-level key.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer

from crashdb import model
from crashdb.base import DBConnectorComponent
from crashdb.exceptions import InvalidInputError
from crashdb.partitions import childTable, executeInWeek, latestByUuid, uuidLookup, weekStart
from crashdb.validation import (
    RowValidator,
    jsonProblem,
    requireDatetime,
    requireInteger,
    requireString,
    validatesInput,
)

_validator = RowValidator(model.raw_crashes, required=("uuid", "date_processed", "raw_crash"))
SCALARS = (str, int, float, bool, type(None))


def _requireKey(key: Any, field: str) -> None:
    requireString(key, field)
    if not key:
        raise InvalidInputError("must not be empty", field=field)


def _requireRange(start, end) -> None:
    requireDatetime(start, "start")
    requireDatetime(end, "end")


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value


class RawCrashesConnectorComponent(DBConnectorComponent):
    """Raw JSON crashes (``db.rawcrashes``), partitioned by week like reports."""

    @validatesInput
    def addRawCrash(
        self, uuid: str, date_processed: datetime.datetime, raw_crash: dict[str, Any]
    ) -> defer.Deferred:
        """Store a raw crash; Deferred of True if stored, False if that uuid was already
        stored for the week (idempotent: nothing changes)."""
        row = {"uuid": uuid, "date_processed": date_processed, "raw_crash": raw_crash}
        _validator.validate(row)
        monday = weekStart(date_processed)

        def thd(conn: sa.Connection) -> bool:
            child = childTable("raw_crashes", monday, self.db.backend)
            insert = self.db.backend.insert(child).on_conflict_do_nothing(index_elements=["uuid"])
            result = executeInWeek(conn, self.db.backend, monday, insert.values(row))
            return result.rowcount == 1

        return self.db.pool.do(thd)

    @validatesInput
    def getRawCrash(
        self, uuid: str, date_processed: datetime.datetime | None = None
    ) -> defer.Deferred:
        """Deferred of the raw crash dict, or None; with ``date_processed`` only its week is
        read, without it the most recently processed one with that uuid is returned."""
        start, end = uuidLookup(uuid, date_processed)

        def thd(conn: sa.Connection) -> dict | None:
            row = latestByUuid(conn, self.db.backend, "raw_crashes", uuid, start, end,
                               columns=lambda source: [source.c.raw_crash])
            return None if row is None else row.raw_crash

        return self.db.pool.doReplicaRead(thd)

    @validatesInput
    def getRawCrashes(
        self,
        start: datetime.datetime,
        end: datetime.datetime,
        where: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> defer.Deferred:
        """Deferred of ``[{uuid, date_processed, raw_crash}]`` processed in [start, end) whose
        top-level keys equal ``where``'s scalar values (in SQL), ordered by (date_processed,
        uuid)."""
        _requireRange(start, end)
        if where is not None and not isinstance(where, dict):
            raise InvalidInputError("expected a dict of key -> value", field="where")
        for key, value in (where or {}).items():
            _requireKey(key, "where")
            if not isinstance(value, SCALARS):
                raise InvalidInputError(f"{key!r}: only scalar values compare", field="where")
            problem = jsonProblem(value)
            if problem is not None:
                raise InvalidInputError(f"{key!r}: {problem}", field="where")
        if limit is not None:
            requireInteger(limit, "limit")
            if limit < 0:
                raise InvalidInputError("must not be negative", field="limit")

        def thd(conn: sa.Connection) -> list[dict]:
            source = self.readable(conn, "raw_crashes", start, end)
            conditions = [source.c.date_processed >= start, source.c.date_processed < end]
            for key, value in (where or {}).items():
                conditions.append(self.db.backend.jsonEquals(source.c.raw_crash, key, value))
            query = (
                sa.select(source.c.uuid, source.c.date_processed, source.c.raw_crash)
                .where(*conditions)
                .order_by(source.c.date_processed, source.c.uuid)
                .limit(limit)
            )
            return self.rowsToDicts(conn.execute(query))

        return self.db.pool.doReplicaRead(thd)

    @validatesInput
    def countRawCrashesBy(
        self, key: str, start: datetime.datetime, end: datetime.datetime
    ) -> defer.Deferred:
        """Deferred of ``{value: count}`` of top-level ``key`` over crashes processed in
        [start, end), grouped in SQL; crashes without the key count under None, and list or
        object values under their JSON text."""
        _requireKey(key, "key")
        _requireRange(start, end)

        def thd(conn: sa.Connection) -> dict[Any, int]:
            source = self.readable(conn, "raw_crashes", start, end)
            values = (
                sa.select(self.db.backend.jsonField(source.c.raw_crash, key).label("value"))
                .where(source.c.date_processed >= start, source.c.date_processed < end)
                .subquery()
            )
            query = sa.select(values.c.value, sa.func.count()).group_by(values.c.value)
            counts: dict[Any, int] = {}
            for value, count in conn.execute(query):
                counts[_hashable(value)] = counts.get(_hashable(value), 0) + count
            return counts

        return self.db.pool.doReplicaRead(thd)

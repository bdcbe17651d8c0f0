"""Processors: the workers that claim jobs, their liveness, and the release of a dead one's claims.

Processors check in periodically (``setProcessorState(id, True)``), as Buildbot's masters do;
``expireProcessors`` marks those that stopped checking in as inactive and releases their claims
so that other processors can take the jobs over.
"""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer

from crashdb import model
from crashdb.base import DBConnectorComponent
from crashdb.exceptions import InvalidInputError
from crashdb.validation import (
    columnLength,
    requireBoolean,
    requireDatetime,
    requireInteger,
    requireString,
    validatesInput,
)

UTC = datetime.UTC
processors = model.processors
jobs = model.jobs

NAME_LENGTH = columnLength(processors.c.name)


def releaseClaims(conn: sa.Connection, holders: Any) -> int:
    """Release the claims on incomplete jobs of the processors ``holders`` (an id, or a select
    of ids); completed jobs keep theirs. Returns the number of jobs released."""
    if isinstance(holders, int):
        holder = jobs.c.claimed_by_processorid == holders
    else:
        holder = jobs.c.claimed_by_processorid.in_(holders)
    result = conn.execute(
        sa.update(jobs)
        .where(holder, sa.not_(jobs.c.complete))
        .values(claimed_by_processorid=None, claimed_at=None)
    )
    return result.rowcount


def toTimedelta(timeout: Any, field: str = "timeout") -> datetime.timedelta:
    """``timeout`` (a timedelta, or seconds) as a timedelta of zero or more."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float | datetime.timedelta):
        raise InvalidInputError(
            f"expected a timedelta or seconds, got {type(timeout).__name__}", field=field
        )
    if not isinstance(timeout, datetime.timedelta):
        try:
            timeout = datetime.timedelta(seconds=timeout)
        except (OverflowError, ValueError) as error:  # too large, infinite or NaN
            raise InvalidInputError(f"not a usable duration: {error}", field=field) from error
    if timeout < datetime.timedelta(0):
        raise InvalidInputError("must not be negative", field=field)
    return timeout


class ProcessorsConnectorComponent(DBConnectorComponent):
    """Registered processors, their liveness, and the release of a dead one's claims."""

    @staticmethod
    def _processorDict(row: sa.Row) -> dict[str, Any]:
        return {
            "id": row.id,
            "name": row.name,
            "active": bool(row.active),
            "last_active": row.last_active,
        }

    @validatesInput
    def findProcessorId(self, name: str) -> defer.Deferred:
        """Deferred of the id of the processor called ``name``, created inactive if new.
        Race-safe: processes registering the same name at once all get the same id."""
        requireString(name, "name", NAME_LENGTH)
        if not name:
            raise InvalidInputError("must not be empty", field="name")

        def thd(conn: sa.Connection) -> int:
            return self.findOrCreateId(conn, processors, {"name": name}, {"active": False})

        return self.db.pool.do(thd)

    @validatesInput
    def setProcessorState(self, processorid: int, active: bool) -> defer.Deferred:
        """Mark the processor active (refreshing ``last_active``: the heartbeat) or inactive
        (releasing its claims on incomplete jobs). Deferred of True if ``active`` changed; False
        also for an unknown processor."""
        requireInteger(processorid, "processorid")
        requireBoolean(active, "active")
        now = datetime.datetime.now(UTC)

        def thd(conn: sa.Connection) -> bool:
            this = processors.c.id == processorid
            if active:
                # the common case, a heartbeat of an active processor, in one statement
                beat = sa.update(processors).where(this, processors.c.active)
                if conn.execute(beat.values(last_active=now)).rowcount:
                    return False
                woken = sa.update(processors).where(this).values(active=True, last_active=now)
                return bool(conn.execute(woken).rowcount)
            stopped = conn.execute(
                sa.update(processors).where(this, processors.c.active).values(active=False)
            ).rowcount
            releaseClaims(conn, processorid)
            return bool(stopped)

        return self.db.pool.do(thd)

    @validatesInput
    def getProcessor(self, processorid: int) -> defer.Deferred:
        """Deferred of ``{id, name, active, last_active}``, or None if there is no such one."""
        requireInteger(processorid, "processorid")

        def thd(conn: sa.Connection) -> dict[str, Any] | None:
            row = conn.execute(sa.select(processors).where(processors.c.id == processorid)).first()
            return None if row is None else self._processorDict(row)

        return self.db.pool.doRead(thd)

    def getProcessors(self) -> defer.Deferred:
        """Deferred of every processor's dict, ordered by id."""

        def thd(conn: sa.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(sa.select(processors).order_by(processors.c.id))
            return [self._processorDict(row) for row in rows]

        return self.db.pool.doRead(thd)

    @validatesInput
    def expireProcessors(
        self, timeout: datetime.timedelta | float, now: datetime.datetime | None = None
    ) -> defer.Deferred:
        """Mark inactive every active processor whose ``last_active`` is older than ``now -
        timeout`` (a timedelta or seconds) and release its claims; Deferred of their ids.

        Claims still held by a processor that is already inactive and has not checked in since
        the cut-off (it claimed after being expired, then died) are released too.
        """
        requireDatetime(now, "now", optional=True)
        try:
            cutoff = (now or datetime.datetime.now(UTC)) - toTimedelta(timeout)
        except OverflowError:
            raise InvalidInputError("reaches before year 1", field="timeout") from None

        def thd(conn: sa.Connection) -> list[int]:
            stale = sa.or_(processors.c.last_active.is_(None), processors.c.last_active < cutoff)
            expired = conn.execute(
                sa.update(processors)
                .where(processors.c.active, stale)
                .values(active=False)
                .returning(processors.c.id)
            ).scalars().all()
            releaseClaims(
                conn, sa.select(processors.c.id).where(sa.not_(processors.c.active), stale)
            )
            return sorted(expired)

        return self.db.pool.do(thd)

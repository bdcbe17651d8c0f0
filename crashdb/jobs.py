"""Jobs: the processing queue, claimed in the manner of Buildbot's build requests.

A job is claimed by at most one processor (``claimed_by_processorid``). Claims and completions
are single conditional statements whose row counts decide the outcome, so the database settles
every race: a lost claim is ``AlreadyClaimedError``, a completion of a job that is not ours is
``NotClaimedError``, and in both cases the transaction is rolled back and nothing changes.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer

from crashdb import model
from crashdb.base import DBConnectorComponent, batched
from crashdb.exceptions import AlreadyClaimedError, InvalidInputError, NotClaimedError
from crashdb.validation import (
    INT32,
    columnLength,
    requireBoolean,
    requireDatetime,
    requireInteger,
    requireString,
    validatesInput,
)

UTC = datetime.UTC
jobs = model.jobs

UUID_LENGTH = columnLength(jobs.c.uuid)
PRUNE_CHUNK = 10000  # completed jobs deleted per transaction by pruneJobs
JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.uuid,
    jobs.c.priority,
    jobs.c.queued_at,
    jobs.c.claimed_by_processorid,
    jobs.c.claimed_at,
    jobs.c.complete,
    jobs.c.completed_at,
    jobs.c.success,
    jobs.c.message,
)
# The predicate of the partial index jobs_unclaimed_idx, word for word: SQLite uses a partial
# index only for queries that repeat its WHERE terms (SQLAlchemy would write "complete = 0").
UNCLAIMED_INDEX = next(index for index in jobs.indexes if index.name == "jobs_unclaimed_idx")
UNCLAIMED = UNCLAIMED_INDEX.dialect_options["sqlite"]["where"]


def heldBy(processorid: Any) -> sa.ColumnElement:
    """``claimed_by_processorid = processorid``, for statements that name their jobs by id.

    Written through an expression so that the planner finds the jobs by primary key: given a
    plain comparison and stale statistics, PostgreSQL scanned the processor's every claim,
    completed ones included, to complete ten jobs (10,000 index entries, 0.7 ms in
    bench/claims.py)."""
    return sa.func.coalesce(jobs.c.claimed_by_processorid, 0) == processorid


def _jobDict(row: sa.Row) -> dict[str, Any]:
    return {
        "jobid": row.id,
        "uuid": row.uuid,
        "priority": row.priority,
        "queued_at": row.queued_at,
        "claimed": row.claimed_by_processorid is not None,
        "claimed_at": row.claimed_at,
        "claimed_by_processorid": row.claimed_by_processorid,
        "complete": bool(row.complete),
        "completed_at": row.completed_at,
        "success": None if row.success is None else bool(row.success),
        "message": row.message,
    }


def claimOrder(job: dict[str, Any]) -> tuple:
    """The order jobs are claimed in: highest priority first, then oldest, then lowest id."""
    return (-job["priority"], job["queued_at"], job["jobid"])


def _jobIds(jobids: Any) -> list[int]:
    """The distinct ids of ``jobids`` in the order given, or InvalidInputError."""
    if isinstance(jobids, str | bytes) or not isinstance(jobids, Sequence | set | frozenset):
        raise InvalidInputError(
            f"expected a list of job ids, got {type(jobids).__name__}", field="jobids"
        )
    if not all(type(jobid) is int and INT32[0] <= jobid <= INT32[1] for jobid in jobids):
        for index, jobid in enumerate(jobids):  # find the culprit
            try:
                requireInteger(jobid, "jobids")
            except InvalidInputError as error:
                raise InvalidInputError(error.message, field="jobids", index=index) from None
    return list(dict.fromkeys(jobids))


class JobsConnectorComponent(DBConnectorComponent):
    """The processing queue: one job per crash uuid, claimed by at most one processor."""

    # -- statements built once: the claim path runs thousands of times a second ----------------

    @cached_property
    def _claimNext(self) -> sa.Update:
        oldest = (
            sa.select(jobs.c.id)
            .where(UNCLAIMED)  # unqualified names: the subquery's own jobs
            .order_by(jobs.c.priority.desc(), jobs.c.queued_at, jobs.c.id)
            .limit(sa.bindparam("limit", type_=sa.Integer))
            .correlate(None)
        )
        return (
            sa.update(jobs)
            .where(jobs.c.id.in_(self.db.backend.skipLocked(oldest).scalar_subquery()))
            .values(
                claimed_by_processorid=sa.bindparam("processorid"),
                claimed_at=sa.bindparam("claimed_at"),
            )
            # the rest of each jobdict is known: returning less halves the cost of the rows
            .returning(jobs.c.id, jobs.c.uuid, jobs.c.priority, jobs.c.queued_at)
        )

    @cached_property
    def _claim(self) -> sa.Update:
        processor = jobs.c.claimed_by_processorid
        return (
            sa.update(jobs)
            .where(
                self.db.backend.inList(jobs.c.id, "jobids"),
                sa.not_(jobs.c.complete),
                sa.or_(processor.is_(None), processor == sa.bindparam("processorid")),
            )
            .values(claimed_by_processorid=sa.bindparam("processorid"),
                    claimed_at=sa.bindparam("claimed_at"))
        )

    @cached_property
    def _complete(self) -> sa.Update:
        return (
            sa.update(jobs)
            .where(
                self.db.backend.inList(jobs.c.id, "jobids"),
                heldBy(sa.bindparam("processorid")),
                sa.not_(jobs.c.complete),
            )
            .values(
                complete=True,
                completed_at=sa.bindparam("completed_at"),
                success=sa.bindparam("success"),
                message=sa.bindparam("message"),
            )
        )

    # -- queueing and reading --------------------------------------------------------------------

    @validatesInput
    def addJobs(self, uuids: Sequence[str], priority: int = 0) -> defer.Deferred:
        """Queue a job per crash uuid; Deferred of their ids in input order. A uuid already
        queued keeps its job (and priority) and returns its existing id."""
        if isinstance(uuids, str) or not isinstance(uuids, Sequence):
            raise InvalidInputError(
                f"expected a list of uuids, got {type(uuids).__name__}", field="uuids"
            )
        for index, uuid in enumerate(uuids):
            try:
                requireString(uuid, "uuids", UUID_LENGTH)
                if not uuid:
                    raise InvalidInputError("must not be empty", field="uuids")
            except InvalidInputError as error:
                raise InvalidInputError(error.message, field="uuids", index=index) from None
        requireInteger(priority, "priority")
        distinct = list(dict.fromkeys(uuids))
        now = datetime.datetime.now(UTC)

        def thd(conn: sa.Connection) -> list[int]:
            if not distinct:
                return []
            conn.execute(
                self.db.backend.insert(jobs).on_conflict_do_nothing(),
                [{"uuid": uuid, "priority": priority, "queued_at": now} for uuid in distinct],
            )
            ids: dict[str, int] = {}
            for chunk in batched(distinct):
                rows = conn.execute(sa.select(jobs.c.uuid, jobs.c.id).where(jobs.c.uuid.in_(chunk)))
                ids.update((uuid, jobid) for uuid, jobid in rows)
            return [ids[uuid] for uuid in uuids]

        return self.db.pool.do(thd)

    @validatesInput
    def getJob(self, jobid: int) -> defer.Deferred:
        """Deferred of the jobdict of ``jobid``, or None if there is no such job."""
        requireInteger(jobid, "jobid")

        def thd(conn: sa.Connection) -> dict[str, Any] | None:
            row = conn.execute(sa.select(*JOB_COLUMNS).where(jobs.c.id == jobid)).first()
            return None if row is None else _jobDict(row)

        return self.db.pool.doRead(thd)

    @validatesInput
    def getJobs(
        self,
        claimed: bool | int | None = None,
        complete: bool | None = None,
        limit: int | None = None,
    ) -> defer.Deferred:
        """Deferred of jobdicts ordered by jobid. ``claimed``: None (any), True (claimed),
        False (unclaimed) or a processor id (claimed by it); ``complete``: None, True or False.
        A job completed through ``completeJobs`` keeps its claim, so counts as claimed."""
        if claimed is not None and type(claimed) is not bool:
            requireInteger(claimed, "claimed")
        if complete is not None:
            requireBoolean(complete, "complete")
        if limit is not None:
            requireInteger(limit, "limit", minimum=0)

        def thd(conn: sa.Connection) -> list[dict[str, Any]]:
            query = sa.select(*JOB_COLUMNS).order_by(jobs.c.id)
            processor = jobs.c.claimed_by_processorid
            if claimed is True:
                query = query.where(processor.is_not(None))
            elif claimed is False:
                query = query.where(processor.is_(None))
            elif claimed is not None:
                query = query.where(processor == claimed)
            if complete is not None:
                query = query.where(jobs.c.complete if complete else sa.not_(jobs.c.complete))
            if limit is not None:
                query = query.limit(limit)
            return [_jobDict(row) for row in conn.execute(query)]

        return self.db.pool.doRead(thd)

    # -- claiming and completing -----------------------------------------------------------------

    def _held(self, conn: sa.Connection, ids: list[int], processorid: int) -> set[int]:
        """Which of ``ids`` are incomplete and claimed by ``processorid``."""
        held: set[int] = set()
        for chunk in batched(ids):
            held.update(
                conn.execute(
                    sa.select(jobs.c.id).where(
                        jobs.c.id.in_(chunk),
                        heldBy(processorid),
                        sa.not_(jobs.c.complete),
                    )
                ).scalars()
            )
        return held

    def _execute(self, conn: sa.Connection, statement: Any, params: dict[str, Any]) -> Any:
        """Run a claim; a claim naming an unknown processor breaks the foreign key."""
        try:
            return conn.execute(statement, params)
        except sa.exc.IntegrityError as error:
            raise InvalidInputError(
                f"no processor with id {params['processorid']}", field="processorid"
            ) from error

    @validatesInput
    def claimJobs(
        self,
        jobids: Sequence[int],
        processorid: int,
        claimed_at: datetime.datetime | None = None,
    ) -> defer.Deferred:
        """Claim every job of ``jobids`` for ``processorid``, all or nothing: if any is claimed
        by another processor, complete or unknown, fail with AlreadyClaimedError and claim none.
        Re-claiming a job this processor holds succeeds and refreshes ``claimed_at``."""
        ids = _jobIds(jobids)
        requireInteger(processorid, "processorid")
        requireDatetime(claimed_at, "claimed_at", optional=True)
        when = claimed_at or datetime.datetime.now(UTC)

        def thd(conn: sa.Connection) -> None:
            claimed = 0
            for chunk in batched(ids):
                params = {"jobids": list(chunk), "processorid": processorid, "claimed_at": when}
                claimed += self._execute(conn, self._claim, params).rowcount
            if claimed != len(ids):
                held = self._held(conn, ids, processorid)
                lost = [jobid for jobid in ids if jobid not in held]
                raise AlreadyClaimedError(
                    f"jobs {lost[:10]}{'...' if len(lost) > 10 else ''} are claimed by another "
                    "processor, complete or unknown; no job was claimed"
                )  # raising rolls back the claims already made

        return self.db.pool.do(thd)

    @validatesInput
    def claimNextJobs(self, processorid: int, limit: int = 1) -> defer.Deferred:
        """Claim up to ``limit`` unclaimed, incomplete jobs for ``processorid``; Deferred of
        their jobdicts, highest priority first, then oldest. Concurrent callers never receive
        the same job and do not wait for each other: one statement, which on PostgreSQL skips
        rows another claimer has locked, and on SQLite runs in an immediate transaction."""
        requireInteger(processorid, "processorid")
        requireInteger(limit, "limit", minimum=1)

        def thd(conn: sa.Connection) -> list[dict[str, Any]]:
            now = datetime.datetime.now(UTC)
            params = {"processorid": processorid, "claimed_at": now, "limit": limit}
            claimed = [
                {"jobid": jobid, "uuid": uuid, "priority": priority, "queued_at": queued_at,
                 "claimed": True, "claimed_at": now, "claimed_by_processorid": processorid,
                 "complete": False, "completed_at": None, "success": None, "message": None}
                for jobid, uuid, priority, queued_at
                in self._execute(conn, self._claimNext, params)
            ]
            return sorted(claimed, key=claimOrder)

        return self.db.pool.do(thd)

    @validatesInput
    def unclaimJobs(self, jobids: Sequence[int], processorid: int) -> defer.Deferred:
        """Release this processor's claims on the incomplete jobs of ``jobids``; claims of other
        processors and completed jobs are left alone, silently. Deferred of None."""
        ids = _jobIds(jobids)
        requireInteger(processorid, "processorid")

        def thd(conn: sa.Connection) -> None:
            for chunk in batched(ids):
                conn.execute(
                    sa.update(jobs)
                    .where(
                        jobs.c.id.in_(chunk),
                        heldBy(processorid),
                        sa.not_(jobs.c.complete),
                    )
                    .values(claimed_by_processorid=None, claimed_at=None)
                )

        return self.db.pool.do(thd)

    @validatesInput
    def completeJobs(
        self,
        jobids: Sequence[int],
        processorid: int,
        success: bool,
        message: str | None = None,
        completed_at: datetime.datetime | None = None,
    ) -> defer.Deferred:
        """Mark the jobs of ``jobids`` complete with ``success`` and ``message``. Every one must
        be incomplete and claimed by ``processorid``, else NotClaimedError and nothing changes.
        The jobs keep their claim: who completed them and when they were claimed."""
        ids = _jobIds(jobids)
        requireInteger(processorid, "processorid")
        requireBoolean(success, "success")
        if message is not None:
            requireString(message, "message")
        requireDatetime(completed_at, "completed_at", optional=True)
        when = completed_at or datetime.datetime.now(UTC)

        def thd(conn: sa.Connection) -> None:
            completed = 0
            for chunk in batched(ids):
                params = {
                    "jobids": list(chunk),
                    "processorid": processorid,
                    "completed_at": when,
                    "success": success,
                    "message": message,
                }
                completed += conn.execute(self._complete, params).rowcount
            if completed != len(ids):
                held = self._held(conn, ids, processorid)  # still sees the rows as completed
                raise NotClaimedError(
                    f"jobs {[j for j in ids if j not in held][:10]} are not claimed by processor "
                    f"{processorid} or are complete; no job was completed"
                )

        return self.db.pool.do(thd)

    @validatesInput
    def pruneJobs(self, completed_before: datetime.datetime) -> defer.Deferred:
        """Delete the jobs completed before ``completed_before``; Deferred of how many.
        Deletes in chunks of a transaction each, so claimers are never held up for long."""
        requireDatetime(completed_before, "completed_before")
        done = jobs.alias("done")
        chunk = (
            sa.select(done.c.id)
            .where(done.c.complete, done.c.completed_at < completed_before)
            .limit(PRUNE_CHUNK)
        )
        delete = sa.delete(jobs).where(jobs.c.id.in_(chunk.scalar_subquery()))

        def thd(conn: sa.Connection) -> int:
            return conn.execute(delete).rowcount

        @defer.inlineCallbacks
        def prune():
            total = 0
            while True:
                deleted = yield self.db.pool.do(thd)
                total += deleted
                if deleted < PRUNE_CHUNK:
                    return total

        return prune()

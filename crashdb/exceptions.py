"""The exceptions crashdb raises to its callers.

They live here, apart from the pool and the components, so that no layer has to import another
just to name an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class CrashDBError(Exception):
    """Base class of every crashdb error."""


class InvalidInputError(CrashDBError, ValueError):
    """A caller passed a value crashdb will not store; nothing was written.

    ``field`` names the offending key (or None), ``index`` its position in a batch (or None).
    """

    def __init__(self, message: str, field: str | None = None, index: int | None = None) -> None:
        self.field = field
        self.index = index
        where = []
        if index is not None:
            where.append(f"row {index}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + message)
        self.message = message


class AlreadyClaimedError(CrashDBError):
    """A job is claimed by another processor, complete or unknown; no claim took effect."""


class NotClaimedError(CrashDBError):
    """A job is not claimed by this processor, or is already complete; nothing changed."""


class DatabaseNotReadyError(CrashDBError):
    """The database schema is missing or older than this crashdb: run ``crashdb upgrade-db``."""


class DatabaseUnavailableError(CrashDBError):
    """The database did not complete the call within the pool's retry bound, for a transient
    reason (server down or restarting, connection lost, SQLite write lock held by others,
    repeated deadlocks). Nothing of the call was written; it may be sent again later.
    See docs/failures.md."""


class CommitOutcomeUnknownError(DatabaseUnavailableError):
    """The connection was lost while COMMIT was in flight, so the call's writes may or may not
    be stored. Not retried by crashdb; crashdb's writes are idempotent (per uuid for reports,
    raw crashes and jobs), so a caller may send the same call again. See docs/failures.md."""


class RetryAfterRepair(CrashDBError):  # noqa: N818 - a signal, not a failure callers see
    """Raised inside a ``thd`` to ask the pool to roll back, run ``repair(engine)``, and retry.

    The seeds' insert algorithm needs exactly this: an insert into a missing weekly partition
    rolls back, creates the week in a transaction of its own, then retries the insert. The pool
    knows only this protocol, not partitions.
    """

    def __init__(self, description: str, repair: Callable[[Any], object]) -> None:
        super().__init__(description)
        self.repair = repair

"""Sending an idempotent write again when its outcome is unknown.

crashdb's writes that a collector or processor makes (``rawcrashes.addRawCrash``,
``jobs.addJobs``, ``reports.addReport(s)``) are idempotent: storing the same crash twice stores
it once. So when a call fails with :class:`~crashdb.exceptions.CommitOutcomeUnknownError` (the
connection died during COMMIT) or :class:`~crashdb.exceptions.DatabaseUnavailableError` (the
database stayed away for the pool's whole retry window), the safe answer is to send it again,
a little later, a bounded number of times. docs/failures.md shows the pattern.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task

from crashdb.exceptions import CommitOutcomeUnknownError, DatabaseUnavailableError

log = logging.getLogger("crashdb.retry")

#: the errors after which an idempotent call may (and should) be sent again
TRANSIENT = (CommitOutcomeUnknownError, DatabaseUnavailableError)


async def retryIdempotent(
    call: Callable[..., defer.Deferred], *args: Any, attempts: int = 5, delay: float = 1.0,
    clock: Any = None, **kw: Any,
) -> Any:
    """``await call(*args, **kw)``, sent again after a TRANSIENT error up to ``attempts``
    times in all, waiting ``delay`` seconds (doubling) in between; the last error is raised.
    Only for calls that are idempotent: a retried write must not store twice."""
    if clock is None:
        from twisted.internet import reactor as clock
    for attempt in range(1, attempts + 1):
        try:
            return await call(*args, **kw)
        except TRANSIENT as error:
            if attempt == attempts:
                raise
            log.warning("%s failed (%s); sending it again in %.1fs (attempt %d of %d)",
                        getattr(call, "__name__", "call"), error, delay, attempt + 1, attempts)
            await task.deferLater(clock, delay, lambda: None)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover

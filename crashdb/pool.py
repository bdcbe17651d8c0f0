"""Running database work off the reactor thread, one transaction per call.

A ``thd(conn, *args, **kw)`` function runs inside a transaction that the pool owns: commit when
it returns, roll back when it raises. A ``thd`` never commits by itself. The pool runs a ``thd``
again only when nothing of it can have committed: the error came before COMMIT was sent (a dead
or refused connection, a SQLite write lock not obtained, a PostgreSQL deadlock or serialization
failure), or the server answered the COMMIT with an error that rolled it back. A connection lost
while COMMIT was in flight leaves the outcome unknown: that is never retried, the caller gets
:class:`~crashdb.exceptions.CommitOutcomeUnknownError`. So a ``thd`` must only touch the
database: it may run more than once.

Retries back off from 0.05 s, doubling up to 1 s, until ``retryWindow`` seconds (10 by default)
after the call was made, then the caller gets :class:`~crashdb.exceptions.DatabaseUnavailableError`.
The window counts from the call, not from when a thread picked it up, so work queued behind an
outage fails promptly instead of each call waiting a window of its own. docs/failures.md has the
whole story.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import sqlalchemy as sa
from twisted.internet import defer, threads
from twisted.python import threadpool

from crashdb.exceptions import (
    CommitOutcomeUnknownError,
    CrashDBError,
    DatabaseUnavailableError,
    RetryAfterRepair,
)

if TYPE_CHECKING:
    from crashdb.backends.base import Backend

log = logging.getLogger("crashdb.pool")

T = TypeVar("T")

RETRY_WINDOW = 10.0  # seconds after a call was made during which transient errors are retried
REPLICA_PAUSE = 5.0  # seconds a replica that failed or lagged is skipped
FIRST_DELAY = 0.05
MAX_DELAY = 1.0
MAX_REPAIRS = 3  # times the same repair may be asked for: a batch may need many different ones


class Replica:
    """A streaming read replica: its engine and backend, and until when it is skipped."""

    def __init__(self, engine: sa.Engine, backend: Backend) -> None:
        self.engine = engine
        self.backend = backend
        self.name = engine.url.render_as_string(hide_password=True)
        self.skippedUntil = 0.0  # time.monotonic() before which it is not tried


class _Stale(Exception):  # noqa: N818 - internal signal
    """A replica lags more than allowed, or cannot tell how much."""


def _fresh(conn: sa.Connection, backend: Backend, maxLag: float, thd: Callable[..., T],
           args: tuple, kw: dict[str, Any]) -> T:
    """``thd`` on a replica, in the transaction whose snapshot is checked to be recent."""
    lag = backend.replicaLag(conn)
    if lag is None or lag > maxLag:
        raise _Stale("nothing replayed yet" if lag is None else f"{lag:.1f}s behind")
    return thd(conn, *args, **kw)


class _TransactionLost(Exception):  # noqa: N818 - internal signal
    """The connection died inside ``thd`` but ``thd`` raised or returned something else: the
    transaction is gone, so running it again is safe."""


def _reason(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error.__cause__ or error
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def _runInTransaction(
    engine: sa.Engine,
    backend: Backend,
    deadline: float,
    thd: Callable[..., T],
    args: tuple,
    kw: dict[str, Any],
    readOnly: bool = False,
) -> T:
    """The retry loop: transient errors are retried until ``deadline`` (``time.monotonic()``).

    A ``readOnly`` call's transaction is rolled back instead of committed: it cannot have
    written anything, so a connection lost at any point is retried like one lost before, and
    its caller never sees CommitOutcomeUnknownError."""
    repairs: dict[str, int] = {}
    attempt = 0
    repair: Callable[[Any], object] | None = None
    while True:
        attempt += 1
        stage = "connect"
        try:
            if repair is not None:
                stage = "repair"  # repairs are idempotent DDL in transactions of their own
                repair(engine)
                repair = None
                stage = "connect"
            with engine.connect() as conn:
                if readOnly:
                    conn.execution_options(crashdb_read_only=True)  # SQLite: a deferred BEGIN
                trans = conn.begin()  # SQLite: BEGIN IMMEDIATE, which may find the file locked
                stage = "work"
                try:
                    result = thd(conn, *args, **kw)
                except BaseException as error:
                    if trans.is_active:
                        try:
                            trans.rollback()
                        except sa.exc.DBAPIError:
                            pass  # the connection is gone; the server rolled back for us
                    if conn.invalidated and isinstance(error, Exception) and not isinstance(
                        error, sa.exc.DBAPIError | RetryAfterRepair
                    ):
                        raise _TransactionLost(_reason(error)) from error
                    raise
                if conn.invalidated:  # thd swallowed a disconnect: nothing left to commit
                    raise _TransactionLost("the connection was lost during the transaction")
                if readOnly:
                    stage = "committed"  # nothing to keep: the result is all there is
                    try:
                        trans.rollback()
                    except sa.exc.DBAPIError:
                        pass  # the connection is gone, and with it nothing of value
                    return result
                stage = "commit"
                try:
                    trans.commit()
                except BaseException:
                    # SQLAlchemy returns a connection whose COMMIT failed to the pool without
                    # a rollback, still inside the transaction: discard it instead
                    if not conn.invalidated:
                        conn.invalidate()
                    raise
                stage = "committed"
            return result
        except RetryAfterRepair as signal:
            repairs[str(signal)] = repairs.get(str(signal), 0) + 1
            if repairs[str(signal)] > MAX_REPAIRS:
                raise CrashDBError(
                    f"gave up after repairing {MAX_REPAIRS} times: {signal}") from signal
            log.info("retrying after repair: %s", signal)
            repair = signal.repair
            attempt -= 1  # a repair is progress, not a failed attempt
        except (sa.exc.DBAPIError, sa.exc.TimeoutError, _TransactionLost) as error:
            if stage == "committed":  # closing the connection failed; the COMMIT went through
                log.warning("error after commit, ignored: %s", _reason(error))
                return result
            if not _isRetryable(backend, error, stage):
                if (stage == "commit" and isinstance(error, sa.exc.DBAPIError)
                        and backend.isConnectionLost(error)):
                    raise CommitOutcomeUnknownError(
                        "the connection to the database was lost during COMMIT, so it is unknown "
                        f"whether the call's writes were stored ({_reason(error)}); crashdb's "
                        "writes are idempotent, so the call may be sent again"
                    ) from error
                raise  # a real error: the caller sees the database's own words
            now = time.monotonic()
            if now >= deadline:
                raise DatabaseUnavailableError(
                    f"database unavailable: {_reason(error)} "
                    f"(gave up after {attempt} attempt{'s' if attempt > 1 else ''})"
                ) from error
            delay = min(MAX_DELAY, FIRST_DELAY * 2 ** (attempt - 1), deadline - now)
            log.warning(
                "retrying database call in %.2fs (attempt %d, %s): %s",
                delay, attempt, stage, _reason(error),
                extra={"retryReason": _reason(error), "retryRemaining": deadline - now},
            )
            time.sleep(delay)


def _isRetryable(backend: Backend, error: BaseException, stage: str) -> bool:
    """Whether running the call again is safe (nothing can have committed) and may help."""
    if isinstance(error, _TransactionLost):
        return True
    if isinstance(error, sa.exc.TimeoutError):  # no pooled connection came free in time
        return stage != "commit"
    assert isinstance(error, sa.exc.DBAPIError)
    if stage == "commit":
        # the server answered COMMIT with an error (rolled back); a lost connection is unknown
        return not backend.isConnectionLost(error) and backend.isRetryable(error)
    return backend.isRetryable(error)


class Pool(Protocol):
    """What the connector and its components need of a pool (DBThreadPool, SynchronousDBPool)."""

    engine: sa.Engine
    backend: Backend

    def do(self, thd: Callable[..., Any], *args: Any, **kw: Any) -> defer.Deferred: ...

    def doRead(self, thd: Callable[..., Any], *args: Any, **kw: Any) -> defer.Deferred: ...

    def doReplicaRead(self, thd: Callable[..., Any], *args: Any, **kw: Any
                      ) -> defer.Deferred: ...

    def doWithEngine(self, function: Callable[..., Any], *args: Any, **kw: Any
                       ) -> defer.Deferred: ...

    def stop(self) -> defer.Deferred: ...


class DBThreadPool:
    """Runs ``thd`` functions on a Twisted thread pool and returns Deferreds.

    The threads start with the first call; ``stop()`` (also run at reactor shutdown) lets queued
    work finish, joins every thread and disposes of the engine's connections. ``retryWindow``
    is how long after a call transient errors are retried (see the module docstring).
    """

    def __init__(
        self, engine: sa.Engine, backend: Backend, threads: int, reactor: Any = None,
        replicas: Sequence[Replica] = (), maxReplicaLag: float = 30.0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.engine = engine
        self.backend = backend
        self.reactor = reactor
        self.retryWindow: float = RETRY_WINDOW
        self.replicas = list(replicas)
        self.maxReplicaLag = maxReplicaLag
        self._turns = itertools.count()
        self._threadpool = threadpool.ThreadPool(minthreads=1, maxthreads=threads, name="crashdb")
        self._started = False
        self._stopped = False
        self._stopDone: defer.Deferred | None = None
        self._shutdown_trigger: Any = None

    def _start(self) -> None:
        self._threadpool.start()
        self._started = True
        self._shutdown_trigger = self.reactor.addSystemEventTrigger(
            "during", "shutdown", self._stopAtShutdown
        )

    def _defer(self, function: Callable[..., T], *args: Any, **kw: Any) -> defer.Deferred:
        if self._stopped:
            return defer.fail(CrashDBError("the database pool has been stopped"))
        if not self._started:
            self._start()
        return threads.deferToThreadPool(self.reactor, self._threadpool, function, *args, **kw)

    def do(self, thd: Callable[..., Any], *args: Any, **kw: Any) -> defer.Deferred:
        """Run ``thd(conn, *args, **kw)`` in a thread, in a transaction; Deferred of its result."""
        deadline = time.monotonic() + self.retryWindow
        return self._defer(
            _runInTransaction, self.engine, self.backend, deadline, thd, args, kw
        )

    def doRead(self, thd: Callable[..., Any], *args: Any, **kw: Any) -> defer.Deferred:
        """``do`` for a ``thd`` that only reads: its transaction is rolled back, never
        committed, so a lost connection is always retried (within the retry window)."""
        deadline = time.monotonic() + self.retryWindow
        return self._defer(
            _runInTransaction, self.engine, self.backend, deadline, thd, args, kw, True
        )

    def doReplicaRead(self, thd: Callable[..., Any], *args: Any, **kw: Any) -> defer.Deferred:
        """``doRead`` on a replica (round robin) whose lag is within ``maxReplicaLag``, checked
        in the read's own transaction; on the primary when there is none. A replica that fails
        or lags is skipped for ``REPLICA_PAUSE`` seconds and the read goes on elsewhere: the
        caller never sees a replica's failure."""
        deadline = time.monotonic() + self.retryWindow
        return self._defer(self._readOnReplica, deadline, thd, args, kw)

    def _readOnReplica(self, deadline: float, thd: Callable[..., T], args: tuple,
                       kw: dict[str, Any]) -> T:
        count = len(self.replicas)
        first = next(self._turns) % count if count else 0
        for replica in self.replicas[first:] + self.replicas[:first]:
            if replica.skippedUntil > time.monotonic():
                continue
            try:  # no retry window on a replica: the primary is the fallback
                return _runInTransaction(
                    replica.engine, replica.backend, time.monotonic(), _fresh,
                    (replica.backend, self.maxReplicaLag, thd, args, kw), {}, True)
            except (_Stale, DatabaseUnavailableError, sa.exc.DBAPIError,
                    sa.exc.TimeoutError) as error:
                replica.skippedUntil = time.monotonic() + REPLICA_PAUSE
                log.warning("replica %s skipped for %.0fs: %s", replica.name, REPLICA_PAUSE,
                            _reason(error))
        return _runInTransaction(self.engine, self.backend, deadline, thd, args, kw, True)

    def doWithEngine(self, function: Callable[..., Any], *args: Any, **kw: Any) -> defer.Deferred:
        """Run ``function(engine, *args, **kw)`` in a thread: for schema work, which manages
        its own transactions (and is not retried)."""
        return self._defer(function, self.engine, *args, **kw)

    def _stopAtShutdown(self) -> defer.Deferred:
        self._shutdown_trigger = None
        return self.stop()

    def stop(self) -> defer.Deferred:
        """Finish queued work, join the threads and dispose of the engine. Calls made after
        ``stop()`` fail with CrashDBError. Idempotent: every call's Deferred fires when the
        pool is fully stopped."""
        if self._stopDone is None:
            self._stopDone = self._stop()
        done: defer.Deferred = defer.Deferred()

        def fire(result: Any) -> Any:
            done.callback(None)
            return result

        self._stopDone.addBoth(fire)
        return done

    def _stop(self) -> defer.Deferred:
        self._stopped = True
        if self._shutdown_trigger is not None:
            self.reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        if not self._started:
            self.engine.dispose()
            for replica in self.replicas:
                replica.engine.dispose()
            return defer.succeed(None)
        done: defer.Deferred = defer.Deferred()

        def finished() -> None:
            joiner.join()  # it has only to return from callFromThread: no thread is left behind
            done.callback(None)

        def join() -> None:
            try:
                self._threadpool.stop()  # waits for queued and running work
                self.engine.dispose()
                for replica in self.replicas:
                    replica.engine.dispose()
            except Exception:
                log.exception("error while stopping the database pool")
            finally:
                self.reactor.callFromThread(finished)

        # joining blocks, so it happens off the reactor thread
        joiner = threading.Thread(target=join, name="crashdb-pool-stop", daemon=True)
        joiner.start()
        return done


class SynchronousDBPool:
    """The same contract as :class:`DBThreadPool`, but each call runs in the caller's thread.

    Every Deferred has fired before the call returns; errors arrive as failed Deferreds. The
    fake connector uses it so that unit tests need no reactor and no threads.
    """

    def __init__(self, engine: sa.Engine, backend: Backend) -> None:
        self.engine = engine
        self.backend = backend
        self.retryWindow: float = RETRY_WINDOW
        self._stopped = False

    def _call(self, function: Callable[..., Any], *args: Any) -> defer.Deferred:
        if self._stopped:
            return defer.fail(CrashDBError("the database pool has been stopped"))
        return defer.maybeDeferred(function, *args)

    def do(self, thd: Callable[..., Any], *args: Any, **kw: Any) -> defer.Deferred:
        deadline = time.monotonic() + self.retryWindow
        return self._call(
            _runInTransaction, self.engine, self.backend, deadline, thd, args, kw
        )

    def doRead(self, thd: Callable[..., Any], *args: Any, **kw: Any) -> defer.Deferred:
        deadline = time.monotonic() + self.retryWindow
        return self._call(
            _runInTransaction, self.engine, self.backend, deadline, thd, args, kw, True
        )

    doReplicaRead = doRead  # the fake has no replicas

    def doWithEngine(self, function: Callable[..., Any], *args: Any, **kw: Any) -> defer.Deferred:
        return self._call(lambda: function(self.engine, *args, **kw))

    def stop(self) -> defer.Deferred:
        self._stopped = True
        self.engine.dispose()
        return defer.succeed(None)

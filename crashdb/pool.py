"""Running database work off the reactor thread, one transaction per call.

A ``thd(conn, *args, **kw)`` function runs inside a transaction that the pool owns: commit when
it returns, roll back when it raises. A ``thd`` never commits by itself. The pool retries a
``thd`` only when nothing of it can have committed (a dead connection before COMMIT was sent, a
SQLite write lock not obtained, a PostgreSQL deadlock or serialization failure, all of which roll
the whole transaction back), with a bounded back-off, and logs each retry. So a ``thd`` must only
touch the database: it may run more than once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from twisted.internet import defer, threads
from twisted.python import threadpool

from crashdb.exceptions import CrashDBError, RetryAfterRepair

log = logging.getLogger("crashdb.pool")

T = TypeVar("T")

MAX_ATTEMPTS = 6  # back-off 0.05 s doubling: under 2 s of sleeping in all
MAX_REPAIRS = 5


def run_in_transaction(
    engine: sa.Engine, strategy: Any, thd: Callable[..., T], *args: Any, **kw: Any
) -> T:
    """Run ``thd(conn, *args, **kw)`` in a transaction, retrying only where that is safe."""
    repairs = 0
    attempt = 0
    while True:
        committing = False
        try:
            with engine.connect() as conn:
                trans = conn.begin()
                try:
                    result = thd(conn, *args, **kw)
                except BaseException:
                    if trans.is_active:
                        try:
                            trans.rollback()
                        except sa.exc.DBAPIError:
                            pass  # the connection is gone; the server rolled back for us
                    raise
                committing = True
                trans.commit()
                return result
        except RetryAfterRepair as signal:
            repairs += 1
            if repairs > MAX_REPAIRS:
                raise CrashDBError(f"gave up after {MAX_REPAIRS} repairs: {signal}") from signal
            log.info("retrying after repair: %s", signal)
            signal.repair(engine)
        except sa.exc.DBAPIError as error:
            attempt += 1
            if committing or attempt >= MAX_ATTEMPTS or not strategy.isRetryable(error):
                raise
            delay = 0.05 * 2 ** (attempt - 1)
            reason = (str(error.orig).strip().splitlines() or [type(error.orig).__name__])[0]
            log.warning("retrying database call in %.2fs (attempt %d): %s", delay, attempt, reason)
            time.sleep(delay)


class DBThreadPool:
    """Runs ``thd`` functions on a Twisted thread pool and returns Deferreds.

    The threads start with the first call; ``stop()`` (also run at reactor shutdown) lets queued
    work finish, joins every thread and disposes of the engine's connections.
    """

    def __init__(self, engine: sa.Engine, strategy: Any, threads: int, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.engine = engine
        self.strategy = strategy
        self.reactor = reactor
        self._threadpool = threadpool.ThreadPool(minthreads=1, maxthreads=threads, name="crashdb")
        self._started = False
        self._stopped = False
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
        return self._defer(run_in_transaction, self.engine, self.strategy, thd, *args, **kw)

    def do_with_engine(self, function: Callable[..., Any], *args: Any, **kw: Any) -> defer.Deferred:
        """Run ``function(engine, *args, **kw)`` in a thread: for schema work, which manages
        its own transactions."""
        return self._defer(function, self.engine, *args, **kw)

    def _stopAtShutdown(self) -> defer.Deferred:
        self._shutdown_trigger = None
        return self.stop()

    def stop(self) -> defer.Deferred:
        """Finish queued work, join the threads and dispose of the engine; idempotent."""
        if self._stopped:
            return defer.succeed(None)
        self._stopped = True
        if self._shutdown_trigger is not None:
            self.reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        if not self._started:
            self.engine.dispose()
            return defer.succeed(None)
        done: defer.Deferred = defer.Deferred()

        def join() -> None:
            try:
                self._threadpool.stop()  # waits for queued and running work
                self.engine.dispose()
            finally:
                self.reactor.callFromThread(done.callback, None)

        threading.Thread(target=join, name="crashdb-pool-stop", daemon=True).start()
        return done


class SynchronousDBPool:
    """The same contract as :class:`DBThreadPool`, but each call runs in the caller's thread.

    Every Deferred has fired before the call returns; errors arrive as failed Deferreds. The
    fake connector uses it so that unit tests need no reactor and no threads.
    """

    def __init__(self, engine: sa.Engine, strategy: Any) -> None:
        self.engine = engine
        self.strategy = strategy

    def do(self, thd: Callable[..., Any], *args: Any, **kw: Any) -> defer.Deferred:
        return defer.maybeDeferred(run_in_transaction, self.engine, self.strategy, thd, *args, **kw)

    def do_with_engine(self, function: Callable[..., Any], *args: Any, **kw: Any) -> defer.Deferred:
        return defer.maybeDeferred(function, self.engine, *args, **kw)

    def stop(self) -> defer.Deferred:
        self.engine.dispose()
        return defer.succeed(None)

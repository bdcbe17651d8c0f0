"""The processing loop every processor application needs, ready-made.

:class:`ProcessorService` is a Twisted ``Service``: give it a connector, the processor's name and
a ``process(jobdict)`` callable, add it to your application, and it registers the processor,
heartbeats, claims jobs in batches, runs them with bounded concurrency, completes each one with
its outcome, backs off while the queue is empty and, on a clean stop, finishes what it runs and
releases whatever it still holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.python import failure

from crashdb.exceptions import CommitOutcomeUnknownError, NotClaimedError
from crashdb.retry import TRANSIENT

if TYPE_CHECKING:
    from crashdb.connector import DBConnector

log = logging.getLogger("crashdb.app.service")

MESSAGE_LENGTH = 2000  # a failure's message is cut to this many characters


def failureMessage(reason: failure.Failure) -> str:
    """The message recorded for a failed job: the exception's type and text, storable."""
    text = reason.getErrorMessage()
    name = reason.type.__name__ if reason.type is not None else "Exception"
    message = f"{name}: {text}" if text and text != name else name
    return message.replace("\x00", "\\x00")[:MESSAGE_LENGTH]


class _Abandoned(Exception):  # noqa: N818 - internal signal
    """A job left unfinished because the service stopped while the database was away: it is
    not completed, and stopping releases its claim."""


class ProcessorService(service.Service):
    """Claims jobs for the processor ``name`` and runs ``process(jobdict)`` on each.

    ``process`` returns a value or a Deferred; a job whose call succeeds is completed with
    ``success=True``, one that fails with ``success=False`` and the failure's message. At most
    ``concurrency`` jobs run at once, claimed ``batchSize`` at a time. While the queue is empty
    the service polls every ``pollInterval`` seconds, doubling up to ``maxPollInterval``;
    ``wakeUp()`` polls at once. It heartbeats every ``heartbeatInterval`` seconds; run
    ``crashdb housekeeping`` with a timeout well above that so dead processors' jobs are
    released. ``stopService`` waits for running jobs (at most ``stopTimeout`` seconds if given),
    writes their outcomes and marks the processor inactive, releasing any claim left.
    ``clock`` (default: the reactor) schedules everything, so tests can pass a ``task.Clock``.

    ``name`` must be unique among running processors (say ``host:directory``); a processor
    restarted under its old name first releases the claims its earlier run left behind.

    A ``process`` call that fails because of the database, not the crash
    (``DatabaseUnavailableError``, ``CommitOutcomeUnknownError``), is run again, the job still
    claimed, after a pause that doubles from ``pollInterval`` up to ``maxPollInterval``; only
    after ``databaseAttempts`` such failures is the job completed as failed, with a message
    saying so. Retrying is safe because crashdb's writes are idempotent. Any other error fails
    the job at once. (docs/processing.md, "When the database fails".)
    """

    def __init__(
        self,
        db: DBConnector,
        name: str,
        process: Callable[[dict[str, Any]], Any],
        batchSize: int = 10,
        concurrency: int = 10,
        heartbeatInterval: float = 10.0,
        pollInterval: float = 0.5,
        maxPollInterval: float = 10.0,
        stopTimeout: float | None = None,
        clock: Any = None,
        databaseAttempts: int = 5,
    ) -> None:
        if batchSize < 1 or concurrency < 1:
            raise ValueError("batchSize and concurrency must be at least 1")
        if not 0 < pollInterval <= maxPollInterval or heartbeatInterval <= 0:
            raise ValueError("intervals must be positive, pollInterval <= maxPollInterval")
        if clock is None:
            from twisted.internet import reactor as clock
        self.db = db
        self.setName(name)
        self.process = process
        self.batchSize = batchSize
        self.concurrency = concurrency
        self.heartbeatInterval = heartbeatInterval
        self.pollInterval = pollInterval
        self.maxPollInterval = maxPollInterval
        self.stopTimeout = stopTimeout
        self.databaseAttempts = databaseAttempts
        self.clock = clock
        self.processorid: int | None = None  # known once registered
        self.succeeded = 0  # jobs completed with success, since start
        self.failed = 0  # jobs completed as failed
        self._delay = pollInterval
        self._running: dict[int, defer.Deferred] = {}
        self._pending: list[tuple[int, bool, str | None]] = []
        self._pollCall: Any = None  # the delayed call of the next poll
        self._claiming: defer.Deferred | None = None
        self._flushing: defer.Deferred | None = None
        self._starting: defer.Deferred | None = None
        self._stopped = False  # set once stopping has given up on the running jobs
        self._batching = False  # starting a claimed batch: hold completions until all started
        self._writing: set[int] = set()  # jobs whose completion is being written
        self._heartbeat = task.LoopingCall(self._beat)
        self._heartbeat.clock = clock

    # -- start and stop ----------------------------------------------------------------------

    def startService(self) -> defer.Deferred:
        """Register, mark active, start heartbeating and polling; Deferred fired when running."""
        super().startService()
        self._stopped = False
        self._starting = self._register()
        return self._starting

    @defer.inlineCallbacks
    def _register(self):
        while self.running:
            try:
                self.processorid = yield self.db.processors.findProcessorId(self.name)
                # an earlier run under this name may have died holding claims: release them
                yield self.db.processors.setProcessorState(self.processorid, False)
                yield self.db.processors.setProcessorState(self.processorid, True)
                break
            except Exception:
                log.exception("processor %s could not register; retrying", self.name)
                yield task.deferLater(self.clock, self.maxPollInterval, lambda: None)
        if not self.running:
            return
        log.info("processor %s (id %s) started", self.name, self.processorid)
        self._heartbeat.start(self.heartbeatInterval, now=False)
        self._schedulePoll(0)

    @defer.inlineCallbacks
    def stopService(self):
        """Stop claiming, let running jobs finish, record them, release what is left."""
        super().stopService()
        if self._pollCall is not None and self._pollCall.active():
            self._pollCall.cancel()
        self._pollCall = None
        if self._heartbeat.running:
            self._heartbeat.stop()
        if self._starting is not None:
            yield self._starting
        if self._claiming is not None:
            yield self._claiming
        if self._running:
            finished = yield self._waitForRunning()
            if not finished:
                log.warning("processor %s stops with %d jobs still running; their claims are "
                            "released", self.name, len(self._running))
        if self._flushing is not None:
            yield self._flushing
        self._stopped = True
        if self.processorid is not None:
            try:
                yield self.db.processors.setProcessorState(self.processorid, False)
            except Exception:
                log.exception("processor %s could not mark itself inactive; its claims wait "
                              "for expiry", self.name)
        log.info("processor %s stopped", self.name)

    def _waitForRunning(self) -> defer.Deferred:
        """Deferred of True once every running job has finished, or of False after
        ``stopTimeout`` seconds. Jobs are never cancelled."""
        waiter: defer.Deferred = defer.Deferred()

        def done(finished: bool) -> None:
            if not waiter.called:
                waiter.callback(finished)

        running = defer.DeferredList(list(self._running.values()), consumeErrors=True)
        running.addCallback(lambda _: done(True))
        if self.stopTimeout is not None:
            timer = self.clock.callLater(self.stopTimeout, done, False)

            def cancelTimer(finished: bool) -> bool:
                if timer.active():
                    timer.cancel()
                return finished

            waiter.addCallback(cancelTimer)
        return waiter

    def wakeUp(self) -> None:
        """Poll now (say, after being told new jobs were queued) instead of after the back-off."""
        self._delay = self.pollInterval
        if self._pollCall is not None and self._pollCall.active():
            self._pollCall.cancel()
            self._pollCall = None
        self._schedulePoll(0)

    # -- heartbeat ---------------------------------------------------------------------------

    def _beat(self) -> defer.Deferred:
        assert self.processorid is not None  # the heartbeat starts once registered
        d = self.db.processors.setProcessorState(self.processorid, True)

        def checked(changed: bool) -> None:
            if changed:
                log.warning("processor %s had been marked inactive (expired?): jobs it held "
                            "then were released and may be processed elsewhere", self.name)

        d.addCallbacks(checked, lambda f: log.error("heartbeat failed: %s", f.getErrorMessage()))
        return d

    # -- claiming ----------------------------------------------------------------------------

    def _schedulePoll(self, delay: float) -> None:
        if self.running and self._pollCall is None and self._claiming is None:
            self._pollCall = self.clock.callLater(delay, self._poll)

    def _poll(self) -> None:
        self._pollCall = None
        free = self.concurrency - len(self._running)
        if not self.running or free <= 0 or self.processorid is None:
            return  # a job finishing polls again
        self._claiming = d = self.db.jobs.claimNextJobs(self.processorid, min(free, self.batchSize))
        d.addCallbacks(self._claimed, self._claimFailed)
        d.addBoth(self._claimDone)

    def _claimDone(self, _: Any) -> None:
        self._claiming = None
        self._schedulePoll(0)  # unless backing off: more work may wait, so poll again

    def _claimed(self, jobs: list[dict[str, Any]]) -> None:
        if not jobs:
            self._backOff()
            return
        self._delay = self.pollInterval
        self._batching = True  # jobs that finish at once are completed in one statement
        try:
            for job in jobs:
                self._start(job)
        finally:
            self._batching = False
        self._flushSoon()

    def _claimFailed(self, reason: failure.Failure) -> defer.Deferred | None:
        log.error("claiming jobs failed: %s", reason.getErrorMessage())
        self._backOff()
        if reason.check(CommitOutcomeUnknownError):
            return self._releaseStrays()  # no poll until done: _claiming stays set
        return None

    @defer.inlineCallbacks
    def _releaseStrays(self):
        """After a claim whose COMMIT was lost: jobs may be claimed by us that we never heard
        of. Release every incomplete job we hold but neither run nor are completing."""
        try:
            held = yield self.db.jobs.getJobs(claimed=self.processorid, complete=False)
            known = set(self._running) | {jobid for jobid, _, _ in self._pending} | self._writing
            strays = [job["jobid"] for job in held if job["jobid"] not in known]
            if strays:
                yield self.db.jobs.unclaimJobs(strays, self.processorid)
                log.warning("released %d jobs a lost claim may have taken", len(strays))
        except Exception:
            log.exception("could not release the jobs of a lost claim; they wait for this "
                          "processor's stop or expiry")

    def _backOff(self) -> None:
        self._pollCall = self.clock.callLater(self._delay, self._poll) if self.running else None
        self._delay = min(self._delay * 2, self.maxPollInterval)

    # -- processing --------------------------------------------------------------------------

    def _start(self, job: dict[str, Any]) -> None:
        jobid = job["jobid"]
        d = self._attempt(job)
        self._running[jobid] = d
        d.addCallbacks(lambda _: (True, None), self._processFailed, errbackArgs=(job,))
        d.addCallback(self._finished, jobid)

    @defer.inlineCallbacks
    def _attempt(self, job: dict[str, Any]):
        """``process(job)``, run again while it fails because of the database."""
        delay = self.pollInterval
        for attempt in range(1, self.databaseAttempts + 1):
            try:
                result = yield defer.maybeDeferred(self.process, job)
                return result
            except TRANSIENT as error:
                if attempt == self.databaseAttempts:
                    raise type(error)(f"gave up after {attempt} attempts, the database failing "
                                      f"each time: {error}") from error
                if not self.running:
                    raise _Abandoned() from error
                log.warning("job %s (%s): database error, running it again in %.1fs "
                            "(attempt %d of %d): %s", job["jobid"], job["uuid"], delay,
                            attempt + 1, self.databaseAttempts, error)
                yield task.deferLater(self.clock, delay, lambda: None)
                delay = min(delay * 2, self.maxPollInterval)

    def _processFailed(self, reason: failure.Failure, job: dict[str, Any]
                       ) -> tuple[bool, str] | None:
        if reason.check(_Abandoned):
            log.warning("job %s (%s) abandoned at stop while the database failed; its claim is "
                        "released", job["jobid"], job["uuid"])
            return None
        log.warning("job %s (%s) failed:\n%s", job["jobid"], job["uuid"], reason.getTraceback())
        return False, failureMessage(reason)

    def _finished(self, outcome: tuple[bool, str | None] | None, jobid: int) -> None:
        del self._running[jobid]
        if outcome is None:  # abandoned: stopping releases the claim
            return
        if self._stopped:
            log.warning("job %s finished after processor %s stopped; its claim was released and "
                        "its outcome is dropped", jobid, self.name)
            return
        self._pending.append((jobid, *outcome))
        if not self._batching:
            self._flushSoon()
        self._schedulePoll(0)

    def _flushSoon(self) -> None:
        if self._flushing is None and self._pending:
            self._flushing = d = self._flush()
            d.addBoth(self._flushDone)

    def _flushDone(self, result: Any) -> None:
        self._flushing = None
        if isinstance(result, failure.Failure):
            log.error("recording job outcomes failed:\n%s", result.getTraceback())

    @defer.inlineCallbacks
    def _flush(self):
        """Complete finished jobs, grouped by outcome: every success since the last write in
        one statement. Outcomes that arrive meanwhile are written by the next round."""
        while self._pending:
            pending, self._pending = self._pending, []
            groups: dict[tuple[bool, str | None], list[int]] = {}
            for jobid, success, message in pending:
                groups.setdefault((success, message), []).append(jobid)
            self._writing = {jobid for jobid, _, _ in pending}
            try:
                for (success, message), jobids in groups.items():
                    yield self._complete(jobids, success, message)
            finally:
                self._writing = set()

    @defer.inlineCallbacks
    def _complete(self, jobids: list[int], success: bool, message: str | None):
        assert self.processorid is not None  # jobs are claimed once registered
        try:
            yield self.db.jobs.completeJobs(jobids, self.processorid, success, message)
        except NotClaimedError:
            if len(jobids) > 1:  # keep what is still ours: complete them one by one
                for jobid in jobids:
                    yield self._complete([jobid], success, message)
                return
            log.warning("job %s was no longer claimed by processor %s (expired?); its outcome "
                        "is dropped", jobids[0], self.name)
            return
        except Exception:
            if not self.running:
                log.exception("could not record jobs %s; their claims are released", jobids)
                return
            log.exception("could not record jobs %s; retrying", jobids)
            self._pending.extend((jobid, success, message) for jobid in jobids)
            yield task.deferLater(self.clock, self.maxPollInterval, lambda: None)
            return
        if success:
            self.succeeded += len(jobids)
        else:
            self.failed += len(jobids)

"""The demo pipeline: collector, processors, rollups and the printed results."""

from __future__ import annotations

import dataclasses
import datetime
import random
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task

from crashdb.app.demo.generator import (
    DEMO_DAYS,
    REGRESSION,
    CrashGenerator,
    dailyUsers,
    dayOfUuid,
    withExplosion,
)
from crashdb.app.demo.processing import reportFromRawCrash
from crashdb.app.progress import Progress
from crashdb.exceptions import CrashDBError
from crashdb.partitions import WEEK
from crashdb.retry import retryIdempotent

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)


# -- the pipeline ---------------------------------------------------------------------------------

DEFAULT_CRASHES = 4000
DEFAULT_PROCESSORS = 3
COLLECTOR_BATCH = 100  # crashes stored before their jobs are queued together
COLLECTOR_CONCURRENCY = 4
PROCESSOR_CONCURRENCY = 4  # jobs each processor runs at once
POLL_SECONDS = 0.2
STALL_SECONDS = 60.0  # without a crash processed: give up waiting


@dataclasses.dataclass
class DemoResult:
    """What a demo run did, for its summary and for tests."""

    url: str
    schema: tuple[str | None, str | None]
    collected: int = 0
    processed: int = 0  # this run's jobs processed, failed ones included
    failed: int = 0
    days: list[datetime.date] = dataclasses.field(default_factory=list)
    rolled_up: int = 0
    tables: list[str] = dataclasses.field(default_factory=list)
    partitions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    created: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    correlations: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    explosive: list[dict[str, Any]] = dataclasses.field(default_factory=list)



def _rollupDays(start: datetime.datetime, end: datetime.datetime) -> list[datetime.date]:
    days = []
    day = start.date()
    while day <= end.date():
        days.append(day)
        day += DAY
    return days


def _printLine(line: str) -> None:
    print(line, flush=True)  # before the progress lines on stderr, even through a pipe


class Demo:
    """One run of the pipeline against ``db`` (a set-up-free :class:`DBConnector`).

    ``out`` receives the human-readable results line by line; progress goes to
    ``progress_stream`` (stderr by default).
    """

    def __init__(
        self,
        reactor: Any,
        db: Any,
        crashes: int = DEFAULT_CRASHES,
        processors: int = DEFAULT_PROCESSORS,
        seed: int | None = None,
        out: Callable[[str], Any] = _printLine,
        progress_stream: Any = None,
    ) -> None:
        self.reactor = reactor
        self.db = db
        self.crashes = crashes
        self.processors = processors
        self.rng = random.Random(seed)
        self.out = out
        self.progress_stream = progress_stream
        self.result = DemoResult(url=db.engine.url.render_as_string(hide_password=True),
                                 schema=(None, None))
        self._progress: Progress | None = None
        self._ours: set[str] = set()

    async def run(self) -> DemoResult:
        started = time.monotonic()
        await self.db.setup(check_version=False)
        self.result.schema = await self.db.model.upgrade()
        before, after = self.result.schema
        self.out(f"database {self.result.url}: schema {before or 'new'} -> {after}")
        existing = {p["name"] for p in await self.db.partitions.getPartitions()}
        now = datetime.datetime.now(UTC)
        generator = CrashGenerator(self.rng, now)
        crashes = withExplosion(generator, self.crashes, now.date() - DAY)
        self._ours = {uuid for uuid, _, _ in crashes}
        services = await self._startProcessors()
        try:
            with Progress("processing crashes", total=len(crashes),
                          stream=self.progress_stream) as self._progress:
                await self._collect(crashes, services)
                await self._waitForJobs()
        finally:
            for service in services:
                await service.stopService()
        made = len(self._ours) - self.result.failed
        self.out(f"collected {self.result.collected} crashes over {DEMO_DAYS} days; "
                 f"{made} were made into reports"
                 + (f"; {self.result.failed} crashes FAILED (see `crashdb` jobs' messages)"
                    if self.result.failed else ""))
        self.result.days = _rollupDays(generator.start, now)
        await self._rollUp()
        await self._showTopCrashers(now.date() + DAY)
        await self._showSignatures(now.date() + DAY)
        await self._showExplosive(now.date() - DAY)
        await self._showPartitions(existing)
        self.result.seconds = time.monotonic() - started
        self.out(f"done in {self.result.seconds:.1f}s; try `crashdb top-crashers --product "
                 "Firefox --version 17.0b3`, `crashdb signature "
                 f"'{REGRESSION[0]}'` or `crashdb partitions list`")
        self.out(f"browse it: run `crashdb serve --db {self.result.url}` and open http://127.0.0.1:8000/")
        return self.result

    # -- the collector --

    async def _collect(
        self, crashes: list[tuple[str, datetime.datetime, dict]], services: list[Any]
    ) -> None:
        """Store raw crashes (a few at a time), then queue their jobs, batch by batch."""
        semaphore = defer.DeferredSemaphore(COLLECTOR_CONCURRENCY)
        for start in range(0, len(crashes), COLLECTOR_BATCH):
            batch = crashes[start : start + COLLECTOR_BATCH]
            # idempotent writes: a call whose outcome a database restart hid is sent again
            await defer.gatherResults(
                [semaphore.run(self._send, self.db.rawcrashes.addRawCrash, uuid, received, raw)
                 for uuid, received, raw in batch],
                consumeErrors=True,
            )
            await self._send(self.db.jobs.addJobs, [uuid for uuid, _, _ in batch])
            self.result.collected += len(batch)
            for service in services:
                service.wakeUp()  # as a collector's notification would

    def _send(self, call: Callable[..., defer.Deferred], *args: Any) -> defer.Deferred:
        return defer.ensureDeferred(retryIdempotent(call, *args, clock=self.reactor))

    # -- the processors --

    async def _startProcessors(self) -> list[Any]:
        from crashdb.app.service import ProcessorService

        services = []
        for number in range(1, self.processors + 1):
            name = f"demo-processor-{number}"
            # (a demo killed earlier may have left claims under this name: the service's start
            # releases them)
            service = ProcessorService(self.db, name, self._processor(name), batchSize=10,
                                       concurrency=PROCESSOR_CONCURRENCY, clock=self.reactor)
            await service.startService()
            services.append(service)
        return services

    def _processor(self, name: str) -> Callable[[dict[str, Any]], defer.Deferred]:
        def process(job: dict[str, Any]) -> defer.Deferred:
            return defer.ensureDeferred(self._process(name, job))

        return process

    async def _process(self, name: str, job: dict[str, Any]) -> None:
        """A processor's work on one job: raw crash in, report out."""
        uuid = job["uuid"]
        ours = uuid in self._ours
        try:
            day: datetime.datetime | None = dayOfUuid(uuid)
        except ValueError:
            day = None  # not a demo id: search every week
        raw = await self.db.rawcrashes.getRawCrash(uuid, day)
        if raw is None:
            raise CrashDBError(f"no raw crash for {uuid}")
        await self.db.reports.addReport(reportFromRawCrash(uuid, raw, name))
        if ours:
            self.result.processed += 1
            if self._progress is not None:
                self._progress.update(self.result.processed)

    async def _waitForJobs(self) -> None:
        """Until the queue holds none of this run's jobs incomplete (whichever processors, of
        this demo or another, completed them); then count the failed ones. CrashDBError if
        processing stalls (say, a job held by a processor elsewhere that died and was never
        expired)."""
        seen, lastChange = -1, time.monotonic()
        while True:
            pending = await self.db.jobs.getJobs(complete=False)
            left = sum(job["uuid"] in self._ours for job in pending)
            if not left:
                break
            if left != seen:
                seen, lastChange = left, time.monotonic()
            elif time.monotonic() - lastChange > STALL_SECONDS:
                raise CrashDBError(f"processing stalled: {left} jobs of this run left incomplete")
            await task.deferLater(self.reactor, POLL_SECONDS * 5, lambda: None)
        done = await self.db.jobs.getJobs(complete=True)
        self.result.failed = sum(job["uuid"] in self._ours and not job["success"] for job in done)

    # -- the rollup and the report --

    async def _rollUp(self) -> None:
        with Progress("rolling up", total=len(self.result.days),
                      stream=self.progress_stream) as progress:
            for day in self.result.days:
                written = await self.db.rollups.runDay(day)
                self.result.rolled_up += written["tcbs"]
                progress.advance()
        self.out(f"rolled up {len(self.result.days)} days into {self.result.rolled_up} "
                 "top-crasher rows and the signatures' lifecycles")

    async def _showTopCrashers(self, end: datetime.date) -> None:
        from crashdb.app.scripts.top_crashers import formatTable, periodTitle

        start = end - 7 * DAY
        for product, version, limit in (("Firefox", None, 10), ("Firefox", "17.0b3", 5),
                                        ("Thunderbird", None, 5)):
            crashers = await self.db.tcbs.getTopCrashers(
                product, version=version, start_day=start, end_day=end, limit=limit
            )
            table = formatTable(crashers, periodTitle(product, version, start, end))
            self.result.tables.append(table)
            self.out("")
            self.out(table)

    async def _showSignatures(self, end: datetime.date) -> None:
        """The regressed beta's new signatures, and what its top signature's crashes share."""
        from crashdb.app.scripts.signature import (
            formatCorrelations,
            formatNewSignatures,
            periodName,
        )

        product, version = "Firefox", REGRESSION[1]
        start = end - 7 * DAY
        period = periodName(product, version, start, end)
        new = await self.db.signatures.getNewSignatures(product, version, start, end, limit=5)
        self.out("")
        self.out(formatNewSignatures(new, f"New signatures: {period}"))
        top = await self.db.tcbs.getTopCrashers(product, version, start, end, limit=1)
        if top:
            signature = top[0]["signature"]
            rows = await self.db.signatures.getCorrelations(signature, product, version,
                                                            start, end)
            self.result.correlations = rows
            self.out("")
            self.out(formatCorrelations(rows, f"Correlations of {signature}: {period}"))

    async def _showExplosive(self, day: datetime.date) -> None:
        """Feed the usage of every rolled-up day, then list what exploded on ``day``."""
        from crashdb.app.scripts.explosive import formatTable, title

        usage = dailyUsers(self.crashes, self.result.days)
        await self._send(self.db.crashrates.addAdu, usage)
        self.result.explosive = await self.db.crashrates.getExplosive("Firefox", day, limit=5)
        table = formatTable(self.result.explosive, title("Firefox", None, day, per_adu=True))
        self.result.tables.append(table)
        self.out("")
        self.out(f"fed {len(usage)} ADU rows (active daily users per product version and day)")
        self.out(table)

    async def _showPartitions(self, existing: set[str]) -> None:
        parts = await self.db.partitions.getPartitions()
        self.result.partitions = parts
        self.result.created = sorted(p["name"] for p in parts if p["name"] not in existing)
        weeks: dict[datetime.datetime, list[str]] = {}
        for part in parts:
            weeks.setdefault(part["start"], []).append(part["name"])
        self.out("")
        self.out(f"weekly partitions: {len(self.result.created)} created by this run, "
                 f"{len(parts) - len(self.result.created)} there before")
        for monday in sorted(weeks):
            reports = await self.db.reports.countReports(start=monday, end=monday + WEEK)
            names = weeks[monday]
            new = "created" if all(n in self.result.created for n in names) else "existed"
            tables = ",".join(n.rsplit("_", 1)[0] for n in names)
            self.out(f"  week of {monday:%Y-%m-%d}  {new:<8} {reports:>6} reports  "
                     f"{{{tables}}}_{monday:%Y%m%d}")


async def runDemo(
    reactor: Any,
    db_url: str | None = None,
    crashes: int = DEFAULT_CRASHES,
    processors: int = DEFAULT_PROCESSORS,
    seed: int | None = None,
    out: Callable[[str], Any] = _printLine,
    progress_stream: Any = None,
) -> DemoResult:
    """Play the demo against the database at ``db_url`` (default: the embedded SQLite file)."""
    from crashdb.connector import DBConnector

    db = DBConnector(db_url, reactor=reactor)
    try:
        return await Demo(reactor, db, crashes, processors, seed, out, progress_stream).run()
    finally:
        await db.stop()

"""The import itself: batches of prepared reports written through ``db.reports.addReports``,
rejects written down, progress reported."""

from __future__ import annotations

import contextlib
import csv
import datetime
import gc
import time
from collections.abc import Callable, Generator, Iterator
from typing import IO, Any

from twisted.internet import defer, threads

from crashdb.app.importer.prepare import ALIAS, NEW, Prepared, VersionMapper, chooseWinners, prepare
from crashdb.app.importer.source import LegacyReport, LegacySource
from crashdb.app.importer.summary import ImportSummary
from crashdb.base import batched
from crashdb.exceptions import InvalidInputError
from crashdb.partitions import weekStart
from crashdb.reports import validateReport

DEFAULT_BATCH_SIZE = 2000
UUID_CHUNK = 500
REJECT_COLUMNS = ("legacy_id", "uuid", "reason")
#: allocations between two young-generation collections while an import runs (Python's default
#: is 700): the import allocates some thirty objects a row and keeps few, and at the default
#: the collector (its full passes over every object of the process above all) took a fifth of
#: the import's CPU
GC_THRESHOLD = 100_000


class _Collections:
    """Python's cyclic collector run less often while any import runs in the process: its young
    threshold raised to ``GC_THRESHOLD``, and put back when the last import ends. Only cyclic
    garbage waits longer, and the import makes little."""

    def __init__(self) -> None:
        self.running = 0
        self.saved = gc.get_threshold()

    @contextlib.contextmanager
    def fewer(self) -> Iterator[None]:
        if self.running == 0:
            self.saved = gc.get_threshold()
            gc.set_threshold(max(GC_THRESHOLD, self.saved[0]), *self.saved[1:])
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            if self.running == 0:
                gc.set_threshold(*self.saved)


_collections = _Collections()


class LegacyImporter:
    """Imports the legacy database at ``source`` (a URL, or a :class:`LegacySource` the caller
    opened and closes) into ``db`` (a DBConnector).

    ``rejects`` receives the rejects CSV (``legacy_id,uuid,reason``); ``progress(done, total)``
    is called after each batch is written. Source reads run in the reactor's thread pool while
    the previous batch is prepared and the one before it written.
    """

    def __init__(
        self,
        db: Any,
        source: str | LegacySource,
        batch_size: int = DEFAULT_BATCH_SIZE,
        rejects: IO[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
        reactor: Any = None,
    ) -> None:
        if batch_size < 1:
            raise InvalidInputError("must be at least 1", field="batch_size")
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.db = db
        self.source_url = source if isinstance(source, str) else None
        self.source = None if isinstance(source, str) else source
        self.batch_size = batch_size
        self.rejects = csv.writer(rejects) if rejects is not None else None
        self.rejectsFile = rejects
        self.progress = progress
        self.reactor = reactor
        self.summary = ImportSummary()
        self.weeks: set[datetime.datetime] = set()

    def _inThread(self, function: Callable[..., Any], *args: Any) -> defer.Deferred:
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function,
                                         *args)

    def run(self) -> defer.Deferred:
        """Deferred of the :class:`ImportSummary`; check its ``balanced``."""
        return defer.ensureDeferred(self._run())

    async def _run(self) -> ImportSummary:
        with _collections.fewer():
            return await self._import()

    async def _import(self) -> ImportSummary:
        started = time.monotonic()
        source = self.source
        if source is None:
            source = await self._inThread(LegacySource, self.source_url)
        try:
            self.summary.ignored_columns = source.ignored_columns
            total = await self._inThread(source.count)
            mapper = VersionMapper(
                await self.db.versions.getProductVersions(),
                await self.db.versions.getVersionAliases(),
            )
            winners = await self._findWinners(source, mapper)
            if self.rejects is not None:
                self.rejects.writerow(REJECT_COLUMNS)
            await self._stream(source.batches(self.batch_size), mapper, winners, total)
        finally:
            if source is not self.source:
                source.close()
        self.summary.seconds = time.monotonic() - started
        return self.summary

    async def _stream(self, batches: Generator[list[LegacyReport]], mapper: VersionMapper,
                      winners: dict[str, Any], total: int) -> None:
        """Three stages overlap: reading batch n+1 (a thread of the reactor's pool), preparing
        batch n (the reactor's thread), writing batch n-1 (crashdb's pool)."""
        pending: defer.Deferred = self._inThread(next, batches, [])
        writing: defer.Deferred | None = None
        try:
            while True:
                batch = await pending
                if not batch:
                    break
                pending = self._inThread(next, batches, [])
                accepted = self._classify(batch, mapper, winners)
                del batch  # freed while the previous batch is written
                if writing is not None:
                    await writing
                await self._addNewVersions(accepted, mapper)
                await self._ensureWeeks(accepted)
                writing = defer.ensureDeferred(self._writeBatch(accepted, total))
            if writing is not None:
                await writing
        except BaseException:
            if writing is not None:  # the first failure is the one raised
                writing.addErrback(lambda _: None)
            raise
        finally:
            # the reader may be running: the generator is closed when it has stopped
            pending.addErrback(lambda _: None)
            await pending
            batches.close()

    async def _findWinners(self, source: LegacySource, mapper: VersionMapper) -> dict[str, Any]:
        """The winning legacy key of every duplicated uuid: the pre-pass that makes
        consolidation right however far apart in key order the duplicates are."""
        duplicated = await self._inThread(source.duplicatedUuids)
        winners: dict[str, Any] = {}
        for chunk in batched(duplicated, UUID_CHUNK):
            rows = await self._inThread(source.rowsWithUuids, list(chunk))
            groups: dict[str, list[LegacyReport]] = {}
            for row in rows:
                groups.setdefault(row.values["uuid"], []).append(row)
            winners.update(chooseWinners(groups, mapper))
        return winners

    def _classify(
        self, batch: list[LegacyReport], mapper: VersionMapper, winners: dict[str, Any]
    ) -> list[Prepared]:
        """Count the batch as read; reject or consolidate what will not be written; the rest."""
        summary = self.summary
        summary.read += len(batch)
        accepted: list[Prepared] = []
        for legacy in batch:
            # a duplicated uuid's rows are validated here, as they were when its winner was
            # chosen; the rest as addReports writes them
            prepared = prepare(legacy, mapper, validate=legacy.values.get("uuid") in winners)
            if prepared.report is None:
                self._reject(legacy, prepared.reason or "rejected")
                continue
            uuid = prepared.report["uuid"]
            if uuid in winners and winners[uuid] != legacy.legacy_id:
                summary.consolidated += 1
                continue
            accepted.append(prepared)
        return accepted

    async def _writeBatch(self, accepted: list[Prepared], total: int) -> None:
        stored = await self._write(accepted)
        self.summary.written += len(stored)
        self.summary.aliased += sum(1 for p in stored if p.how == ALIAS)
        if self.rejectsFile is not None:
            self.rejectsFile.flush()
        if self.progress is not None:
            self.progress(self.summary.read, max(total, self.summary.read))

    async def _addNewVersions(self, accepted: list[Prepared], mapper: VersionMapper) -> None:
        """Make every unknown version canonical before the reports naming it are written."""
        for prepared in accepted:
            if prepared.how != NEW:
                continue
            report = prepared.report
            assert report is not None
            key = (report["product"], report["version"])
            if key not in mapper.canonical:
                await self.db.versions.addProductVersion(*key)
                mapper.canonical.add(key)
                self.summary.new_versions.append(key)

    async def _ensureWeeks(self, accepted: list[Prepared]) -> None:
        """Create the batch's weeks up front: a batch of legacy rows may span many weeks, and
        the bulk path would otherwise roll back and repair once per missing week."""
        days = set()
        for prepared in accepted:
            assert prepared.report is not None
            days.add(prepared.report["date_processed"].date())  # aware UTC (from the source)
        for monday in sorted({weekStart(day) for day in days} - self.weeks):
            await self.db.partitions.ensureWeek(monday)
            self.weeks.add(monday)

    async def _write(self, accepted: list[Prepared]) -> list[Prepared]:
        """Write through the bulk path, which validates each row as it sends it. When it
        refuses one, every row of the batch is validated, the bad ones are rejected and the
        rest is written again (a batch is written at most twice); a row refused even then is
        rejected on its own."""
        checked = False
        while accepted:
            try:
                await self.db.reports.addReports([p.report for p in accepted])
                return accepted
            except InvalidInputError as error:
                if error.index is None or not 0 <= error.index < len(accepted):
                    raise
                if not checked:
                    accepted = [p for p in accepted if self._valid(p)]
                    checked = True
                    continue
                refused = accepted.pop(error.index)
                self._reject(refused.legacy, error.message if error.field is None
                             else f"field {error.field!r}: {error.message}")
        return accepted

    def _valid(self, prepared: Prepared) -> bool:
        """Whether ``prepared`` is a valid report; rejected if not."""
        try:
            validateReport(prepared.report)
        except InvalidInputError as error:
            self._reject(prepared.legacy, str(error))
            return False
        return True

    def _reject(self, legacy: LegacyReport, reason: str) -> None:
        self.summary.rejected += 1
        if self.rejects is not None:
            uuid = legacy.values.get("uuid")
            self.rejects.writerow([legacy.legacy_id, "" if uuid is None else uuid, reason])

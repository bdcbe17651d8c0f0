"""Importing a legacy crash database into crashdb (SPEC 11; docs/importing.md).

The legacy database (any SQLAlchemy backend) holds one unpartitioned ``reports`` table and an
``extensions`` table without ``date_processed``; both are reflected, not assumed. The import:

1. finds, in SQL, every uuid the legacy ``reports`` holds more than once and picks its winner:
   the most recently processed row that crashdb can take (ties: the highest legacy id);
2. reads ``reports`` in key order, in batches, with each batch's extensions;
3. turns each row into a reportdict: timestamps to aware UTC, the version mapped through the
   ``versions`` component (canonical, else alias, else added as canonical), extensions
   renumbered in legacy key order (crashdb gives them the report's ``date_processed``);
4. rejects what crashdb cannot take (no uuid, no date, a value validation refuses), one row at
   a time, and counts the losing duplicates as consolidated;
5. writes the rest through ``db.reports.addReports``: atomic per batch and idempotent per (uuid,
   week), so an interrupted import is finished by running it again.

Every legacy row is read once and lands in exactly one of written, consolidated or rejected:
``read == written + consolidated + rejected`` is the reconciliation.
"""

from __future__ import annotations

import csv
import datetime
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

import sqlalchemy as sa
from twisted.internet import defer, threads

from crashdb import model
from crashdb.base import batched
from crashdb.exceptions import CrashDBError, InvalidInputError
from crashdb.partitions import weekStart
from crashdb.validation import RowValidator

UTC = datetime.UTC
DEFAULT_BATCH_SIZE = 2000
UUID_CHUNK = 500
REJECT_COLUMNS = ("legacy_id", "uuid", "reason")
REPORT_COLUMNS = tuple(c.name for c in model.reports.c if c.name != "id")
DATETIME_COLUMNS = frozenset(
    c.name for c in model.reports.c if isinstance(c.type, model.UTCDateTime)
)

_reportValidator = RowValidator(
    model.reports, required=("uuid", "date_processed"), exclude=("id",), extra=("extensions",)
)
_extensionValidator = RowValidator(
    model.extensions,
    required=("extension_id",),
    exclude=("report_id", "date_processed", "extension_key"),
)


class LegacyImportError(CrashDBError):
    """The legacy database cannot be imported as a whole (no reports table, no key)."""


# -- the reconciliation ---------------------------------------------------------------------------


@dataclass
class ImportSummary:
    """The reconciliation of one run: counts of legacy report rows (``versions_added`` aside)."""

    read: int = 0
    written: int = 0
    consolidated: int = 0
    rejected: int = 0
    aliased: int = 0
    new_versions: list[tuple[str, str]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def versions_added(self) -> int:
        return len(self.new_versions)

    @property
    def balanced(self) -> bool:
        return self.read == self.written + self.consolidated + self.rejected

    def asDict(self) -> dict[str, Any]:
        """The summary JSON: the reconciliation keys, then the versions added."""
        return {
            "read": self.read,
            "written": self.written,
            "consolidated": self.consolidated,
            "rejected": self.rejected,
            "aliased": self.aliased,
            "versions_added": self.versions_added,
            "balanced": self.balanced,
            "new_versions": [{"product": p, "version": v} for p, v in self.new_versions],
            "ignored_columns": self.ignored_columns,
            "seconds": round(self.seconds, 3),
        }

    def lines(self) -> list[str]:
        """The reconciliation as printed at the end of an import."""
        width = len(str(max(self.read, 1)))
        sign = "=" if self.balanced else "!="
        out = [
            f"read          {self.read:>{width}}  legacy report rows",
            f"written       {self.written:>{width}}  stored (by this run or an earlier run)",
            f"consolidated  {self.consolidated:>{width}}  duplicates of a uuid merged "
            "into its latest row",
            f"rejected      {self.rejected:>{width}}  listed in the rejects file",
            f"balance       {self.read} {sign} {self.written} + {self.consolidated} + "
            f"{self.rejected}  {'OK' if self.balanced else 'DOES NOT BALANCE'}",
            f"aliased       {self.aliased:>{width}}  written with a version mapped by an alias",
            f"versions added {self.versions_added}"
            + (": " + ", ".join(f"{p} {v}" for p, v in self.new_versions) if self.new_versions
               else ""),
        ]
        if self.ignored_columns:
            out.append("ignored legacy columns: " + ", ".join(self.ignored_columns))
        return out


# -- reading the legacy database ------------------------------------------------------------------


@dataclass
class LegacyReport:
    """One legacy ``reports`` row: its key, its crashdb columns, and its extensions."""

    legacy_id: Any
    values: dict[str, Any]
    extensions: list[dict[str, Any]] = field(default_factory=list)


def _utc(value: Any) -> Any:
    """Aware UTC for a datetime (naive ones are UTC by the legacy convention)."""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return value  # left for validation to refuse
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


class LegacySource:
    """The legacy database, reflected; every method is blocking (run it in a thread)."""

    def __init__(self, url: str) -> None:
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            if not os.path.exists(parsed.database):  # SQLite would create an empty file
                raise LegacyImportError(f"no such legacy database file: {parsed.database}")
        self.engine = sa.create_engine(parsed)
        metadata = sa.MetaData()
        try:
            metadata.reflect(self.engine, only=lambda name, _: name in ("reports", "extensions"))
        except sa.exc.DBAPIError:
            self.engine.dispose()
            raise
        if "reports" not in metadata.tables:
            self.engine.dispose()
            raise LegacyImportError(f"no reports table in the legacy database {self.engine.url!r}")
        self.reports = metadata.tables["reports"]
        self.extensions = metadata.tables.get("extensions")
        key = list(self.reports.primary_key.columns)
        if len(key) == 1:
            self.key = key[0]
        elif "id" in self.reports.c:
            self.key = self.reports.c.id
        else:
            self.engine.dispose()
            raise LegacyImportError("the legacy reports table has no single-column key (id)")
        if "uuid" not in self.reports.c:
            self.engine.dispose()
            raise LegacyImportError("the legacy reports table has no uuid column")
        self.columns = [name for name in REPORT_COLUMNS if name in self.reports.c]
        self.ignored_columns = sorted(
            c.name for c in self.reports.c if c.name not in REPORT_COLUMNS and c is not self.key
        )
        self._select = sa.select(self.key.label("legacy_key"),
                                 *(self.reports.c[name] for name in self.columns))

    def close(self) -> None:
        self.engine.dispose()

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(self.reports)).scalar_one()

    def duplicatedUuids(self) -> list[str]:
        """Every uuid held by more than one row, grouped in SQL."""
        uuid = self.reports.c.uuid
        query = sa.select(uuid).where(uuid.is_not(None)).group_by(uuid).having(
            sa.func.count() > 1
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def rowsWithUuids(self, uuids: list[str]) -> list[LegacyReport]:
        """Every row holding one of ``uuids``, with its extensions."""
        with self.engine.connect() as conn:
            rows = conn.execute(self._select.where(self.reports.c.uuid.in_(uuids)))
            reports = [self._report(row) for row in rows]
            if self.extensions is not None:
                for chunk in batched(reports):
                    keys = [report.legacy_id for report in chunk]
                    self._attachExtensions(
                        conn, chunk, self.extensions.c.report_id.in_(keys)
                    )
        return reports

    def batchAfter(self, after: Any, size: int) -> list[LegacyReport]:
        """The next ``size`` rows in key order whose key is above ``after`` (None: the first)."""
        query = self._select.order_by(self.key).limit(size)
        if after is not None:
            query = query.where(self.key > after)
        with self.engine.connect() as conn:
            reports = [self._report(row) for row in conn.execute(query)]
            if reports and self.extensions is not None:
                report_id = self.extensions.c.report_id
                self._attachExtensions(
                    conn,
                    reports,
                    sa.and_(report_id >= reports[0].legacy_id, report_id <= reports[-1].legacy_id),
                )
        return reports

    def _report(self, row: sa.Row) -> LegacyReport:
        mapping = row._mapping
        values = {
            name: _utc(mapping[name]) if name in DATETIME_COLUMNS else mapping[name]
            for name in self.columns
        }
        return LegacyReport(mapping["legacy_key"], values)

    def _attachExtensions(self, conn: sa.Connection, reports: list[LegacyReport], where) -> None:
        extensions = self.extensions
        assert extensions is not None
        byKey = {report.legacy_id: report for report in reports}
        order = [extensions.c.report_id]
        if "extension_key" in extensions.c:
            order.append(extensions.c.extension_key)
        query = sa.select(extensions).where(where).order_by(*order)
        for row in conn.execute(query):
            mapping = row._mapping
            report = byKey.get(mapping["report_id"])
            if report is not None:
                report.extensions.append(
                    {
                        "extension_id": mapping.get("extension_id"),
                        "extension_version": mapping.get("extension_version"),
                    }
                )


# -- turning legacy rows into reportdicts ---------------------------------------------------------

CANONICAL = "canonical"
ALIAS = "alias"
NEW = "new"


class VersionMapper:
    """The version lookup of ``db.versions`` held in memory for the length of an import:
    canonical exact match first, then alias, surrounding white space ignored."""

    def __init__(self, versions: Iterable[dict], aliases: Iterable[dict]) -> None:
        self.canonical = {(v["product"], v["version"]) for v in versions}
        self.aliases = {(a["product"], a["alias"]): a["version"] for a in aliases}

    def map(self, product: Any, raw: Any) -> tuple[Any, str | None]:
        """``(version, how)``: how is canonical, alias, new (no form known), or None when
        there is nothing to map (no product or no version)."""
        if not isinstance(product, str) or not isinstance(raw, str):
            return raw, None
        wanted = raw.strip()
        if (product, wanted) in self.canonical:
            return wanted, CANONICAL
        aliased = self.aliases.get((product, wanted))
        if aliased is not None:
            return aliased, ALIAS
        return wanted, NEW


@dataclass
class Prepared:
    """A legacy row ready for ``addReports``, or the reason it cannot be imported."""

    legacy: LegacyReport
    report: dict[str, Any] | None = None
    how: str | None = None
    reason: str | None = None


def prepare(legacy: LegacyReport, mapper: VersionMapper) -> Prepared:
    """The reportdict for a legacy row (validated, version mapped), or a rejection reason.

    Pure: it only reads ``mapper``, so deciding which duplicate wins and importing it agree.
    """
    values = legacy.values
    uuid = values.get("uuid")
    if uuid is None or (isinstance(uuid, str) and not uuid.strip()):
        return Prepared(legacy, reason="no uuid")
    if values.get("date_processed") is None:
        return Prepared(legacy, reason="no date_processed")
    report = dict(values)
    report["version"], how = mapper.map(values.get("product"), values.get("version"))
    if legacy.extensions:
        report["extensions"] = legacy.extensions
    try:
        _reportValidator.validate(report)
        for extension in legacy.extensions:
            try:
                _extensionValidator.validate(extension)
            except InvalidInputError as error:
                raise InvalidInputError(error.message, field=f"extensions.{error.field}") from None
    except InvalidInputError as error:
        return Prepared(legacy, reason=str(error))
    return Prepared(legacy, report=report, how=how)


def _processedOrder(prepared: Prepared) -> tuple:
    return (prepared.legacy.values.get("date_processed"), prepared.legacy.legacy_id)


def chooseWinners(groups: dict[str, list[LegacyReport]], mapper: VersionMapper) -> dict[str, Any]:
    """For each duplicated uuid, the legacy key of the row to import: the most recently
    processed row that can be imported, the highest key on a tie; None if none can."""
    winners: dict[str, Any] = {}
    for uuid, rows in groups.items():
        usable = [p for p in (prepare(row, mapper) for row in rows) if p.report is not None]
        winners[uuid] = max(usable, key=_processedOrder).legacy.legacy_id if usable else None
    return winners


# -- the import -----------------------------------------------------------------------------------


class LegacyImporter:
    """Imports the legacy database at ``source_url`` into ``db`` (a DBConnector).

    ``rejects`` receives the rejects CSV (``legacy_id,uuid,reason``); ``progress(done, total)``
    is called after each batch is written. Source reads run in the reactor's thread pool while
    the previous batch is prepared and the one before it written.
    """

    def __init__(
        self,
        db: Any,
        source_url: str,
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
        self.source_url = source_url
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
        started = time.monotonic()
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
            # three stages overlap: reading batch n+1, preparing batch n, writing batch n-1
            pending = self._inThread(source.batchAfter, None, self.batch_size)
            writing: defer.Deferred | None = None
            try:
                while True:
                    batch = await pending
                    if not batch:
                        break
                    pending = self._inThread(source.batchAfter, batch[-1].legacy_id,
                                             self.batch_size)
                    accepted = self._classify(batch, mapper, winners)
                    if writing is not None:
                        await writing
                    await self._addNewVersions(accepted, mapper)
                    await self._ensureWeeks(accepted)
                    writing = defer.ensureDeferred(self._writeBatch(accepted, total))
                if writing is not None:
                    await writing
            except BaseException:
                for inFlight in (pending, writing):  # the first failure is the one raised
                    if inFlight is not None:
                        inFlight.addErrback(lambda _: None)
                raise
        finally:
            source.close()
        self.summary.seconds = time.monotonic() - started
        return self.summary

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
            prepared = prepare(legacy, mapper)
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
        for prepared in accepted:
            assert prepared.report is not None
            monday = weekStart(prepared.report["date_processed"])
            if monday not in self.weeks:
                await self.db.partitions.ensureWeek(monday)
                self.weeks.add(monday)

    async def _write(self, accepted: list[Prepared]) -> list[Prepared]:
        """Write through the bulk path; a row it still refuses is rejected on its own and the
        rest of the batch is written without it."""
        while accepted:
            try:
                await self.db.reports.addReports([p.report for p in accepted])
                return accepted
            except InvalidInputError as error:
                if error.index is None or not 0 <= error.index < len(accepted):
                    raise
                refused = accepted.pop(error.index)
                self._reject(refused.legacy, error.message if error.field is None
                             else f"field {error.field!r}: {error.message}")
        return accepted

    def _reject(self, legacy: LegacyReport, reason: str) -> None:
        self.summary.rejected += 1
        if self.rejects is not None:
            uuid = legacy.values.get("uuid")
            self.rejects.writerow([legacy.legacy_id, "" if uuid is None else uuid, reason])


def importLegacy(db: Any, source_url: str, **kw: Any) -> defer.Deferred:
    """Deferred of the :class:`ImportSummary` of importing ``source_url`` into ``db``; keyword
    arguments as for :class:`LegacyImporter`."""
    return LegacyImporter(db, source_url, **kw).run()

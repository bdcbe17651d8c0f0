"""Reports: processed crashes, stored in the week of their ``date_processed``.

A report may carry its ``extensions`` and ``plugins``, stored in the same transaction. Writes are
idempotent per (uuid, week): re-adding a stored uuid returns its id and changes nothing, so
at-least-once delivery from processors is safe.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer

from crashdb import model
from crashdb.backends.base import Backend, plainLookup
from crashdb.base import DBConnectorComponent, batched
from crashdb.bulk import bulkInsertWeeks, copytext
from crashdb.bulk.encoder import CheckingEncoder
from crashdb.exceptions import InvalidInputError
from crashdb.partitions import (
    childTable,
    latestByUuid,
    missingWeeks,
    partitionName,
    uuidLookup,
    weekStart,
)
from crashdb.plugins import pluginIds
from crashdb.validation import (
    RowValidator,
    requireDatetime,
    requireInteger,
    requireString,
    validatesInput,
)

REPORT_FIELDS = tuple(c.name for c in model.reports.c)
VALUE_FIELDS = REPORT_FIELDS[1:]  # all but "id", which crashdb assigns
assert REPORT_FIELDS[0] == "id"
# Each add-on row carries its report's uuid too: the distribution column on Citus (SPEC 17).
EXTENSION_FIELDS = ("report_id", "date_processed", "extension_key", "extension_id",
                    "extension_version", "uuid")
PLUGIN_FIELDS = ("report_id", "plugin_id", "date_processed", "version", "uuid")
CHILD_LISTS = ("extensions", "plugins")
#: batches with fewer new reports skip the optimistic append (a savepoint costs two round trips)
BULK_MIN_ROWS = 16
#: uuids per look-up of stored reports (SQLite binds each one)
UUID_LOOKUP_CHUNK = 900
UTC = datetime.UTC

_reportValidator = RowValidator(
    model.reports, required=("uuid", "date_processed"), exclude=("id",), extra=CHILD_LISTS
)
_extensionValidator = RowValidator(
    model.extensions,
    required=("extension_id",),
    exclude=("report_id", "date_processed", "extension_key"),
)
_reportEncoder = CheckingEncoder(
    model.reports, VALUE_FIELDS, keys=(*VALUE_FIELDS, *CHILD_LISTS), required=("uuid",
                                                                                "date_processed")
)
_extensionEncoder = CheckingEncoder(
    model.extensions, EXTENSION_FIELDS[3:5], keys=EXTENSION_FIELDS[3:5],
    required=("extension_id",), leadFields=3,
)
_pluginValidator = RowValidator(
    sa.Table(  # a plugin as the caller gives it: the plugin's identity and its loaded version
        "plugin_input",
        sa.MetaData(),
        model.plugins.c.filename._copy(),
        model.plugins.c.name._copy(),
        model.plugins_reports.c.version._copy(),
    ),
    required=("filename", "name", "version"),
)


def validateReport(report: Any, index: int | None = None) -> None:
    """InvalidInputError (naming ``field`` and ``index``) unless ``report`` is a reportdict
    ``addReport`` takes, its ``extensions`` and ``plugins`` included.

    A row the bulk encoder vouches for is valid without the validator's per-value checks (the
    encoder's pass costs about half as much; the legacy import checks many rows)."""
    if _reportEncoder.values(report, None) is None:
        _reportValidator.validate(report, index)
    _validateChildLists(report, index)


def _validateChildLists(report: dict, index: int | None) -> None:
    """The checks of a (valid) report's ``extensions`` and ``plugins``."""
    extensions = report.get("extensions")
    if extensions is not None and not (
        type(extensions) is list
        and all(_extensionEncoder.values(e, None) is not None for e in extensions)
    ):
        _validateChildren(extensions, "extensions", _extensionValidator, index)
    _validatePlugins(report, index)


def _validatePlugins(report: dict, index: int | None) -> None:
    plugins = report.get("plugins")
    if plugins is not None:
        _validateChildren(plugins, "plugins", _pluginValidator, index)
        if len({(p["filename"], p["name"]) for p in plugins}) != len(plugins):
            raise InvalidInputError("the same plugin is listed twice", field="plugins",
                                    index=index)


def _validateChildren(children: Any, key: str, validator: RowValidator, index: int | None) -> None:
    if not isinstance(children, list | tuple):
        raise InvalidInputError("expected a list", field=key, index=index)
    for child in children:
        try:
            validator.validate(child)
        except InvalidInputError as error:
            raise InvalidInputError(
                error.message, field=f"{key}.{error.field}" if error.field else key, index=index
            ) from None


def _validateAll(reports: Sequence[Any]) -> None:
    """InvalidInputError for the first bad report, in input order."""
    for index, report in enumerate(reports):
        validateReport(report, index)

@functools.lru_cache(maxsize=4096)
def _mondayOfDay(day: datetime.date) -> datetime.datetime:
    return weekStart(day)


def _monday(when: datetime.datetime) -> datetime.datetime:
    """``weekStart(when)`` for a validated datetime, cached per UTC day (it is on the profile)."""
    return _mondayOfDay((when if when.tzinfo is UTC else when.astimezone(UTC)).date())


def _sample(uuids: list[str]) -> list[str]:
    """The first, middle and last of ``uuids``: what ``_storedUuids`` probes."""
    return list({uuids[0], uuids[len(uuids) // 2], uuids[-1]})


def _unstored(weeks: dict[datetime.datetime, dict[str, tuple[int, dict]]],
              known: dict[datetime.datetime, dict]) -> dict[datetime.datetime, dict]:
    """The members of ``weeks`` whose uuid ``known`` does not hold; those it holds are
    validated, since they are not written (so not checked on the way)."""
    new: dict[datetime.datetime, dict[str, tuple[int, dict]]] = {}
    for monday, members in weeks.items():
        for uuid, (index, report) in members.items():
            if uuid in known[monday]:
                validateReport(report, index)
            else:
                new.setdefault(monday, {})[uuid] = (index, report)
    return new


@contextlib.contextmanager
def _inBatch(backend: Backend, weeks: Iterable[datetime.datetime]) -> Iterator[None]:
    """Writes of a batch spanning ``weeks``: a missing partition becomes the repair signal,
    whose repair creates every week of the batch (one rollback and retry per batch, not one a
    week)."""
    try:
        yield
    except sa.exc.DBAPIError as error:
        if backend.isMissingPartition(error):
            raise missingWeeks(backend, list(weeks)) from error
        raise


def validateFilters(
    product: Any = None, version: Any = None, signature: Any = None, start: Any = None,
    end: Any = None, limit: Any = None, offset: Any = 0,
) -> None:
    """InvalidInputError for a filter of the wrong type (shared by getReports/countReports)."""
    for field, value in (("product", product), ("version", version), ("signature", signature)):
        if value is not None:
            requireString(value, field, model.reports.c[field])
    requireDatetime(start, "start", optional=True)
    requireDatetime(end, "end", optional=True)
    if limit is not None:
        requireInteger(limit, "limit", minimum=0)
    requireInteger(offset, "offset", minimum=0)


class _ReportRows:
    """The rows of one week's new reports (``REPORT_FIELDS`` order), made as they are read,
    each report validated on the way; sized, for the backend's choice of method, and a
    :class:`copytext.CopySource`, so that a COPY checks and formats each value in one pass.
    ``parents`` collects the ``(id, report)`` of those read that carry extensions or plugins.

    Validation is cheap for the common row, which the encoder accepts as certainly valid; only
    a row it cannot vouch for goes through :func:`validateReport`.
    """

    def __init__(self, members: dict[str, tuple[int, dict]], ids: dict[str, int]) -> None:
        self.members = members
        self.ids = ids  # in the order of members
        self.parents: list[tuple[int, dict]] = []

    def __len__(self) -> int:
        return len(self.members)

    def _reports(self) -> Iterator[tuple[int, int, dict]]:
        for (index, report), report_id in zip(self.members.values(), self.ids.values()):
            yield index, report_id, report

    def _parent(self, index: int, report_id: int, report: dict, checked: bool) -> None:
        """Note a report with extensions or plugins (validating its plugins unless
        ``checked``; its extensions are checked as they are written, by ``_ExtensionRows``)."""
        if "extensions" in report or "plugins" in report:
            if not checked:
                _validatePlugins(report, index)
            self.parents.append((report_id, report))

    def __iter__(self) -> Iterator[list]:
        take = _reportEncoder.values
        for index, report_id, report in self._reports():
            row = take(report, report_id)
            checked = row is None
            if row is None:  # not certainly valid: validate properly, take plainly
                validateReport(report, index)
                row = [report_id, *map(report.get, VALUE_FIELDS)]
            self._parent(index, report_id, report, checked)
            yield row

    def copyLines(self, formatter: copytext.CopyFormatter) -> Iterator[str]:
        encode = _reportEncoder.line
        for index, report_id, report in self._reports():
            line = encode(report, str(report_id))
            checked = line is None
            if line is None:  # not certainly valid: validate properly, format plainly
                validateReport(report, index)
                line = formatter.line([report_id, *map(report.get, VALUE_FIELDS)])
            self._parent(index, report_id, report, checked)
            yield line


class _ExtensionRows:
    """The extensions of one week's new ``(id, report)`` pairs, as ``EXTENSION_FIELDS`` rows,
    each checked as it is taken (once: the encoder that formats it vouches for it, else the
    validator raises); as a :class:`copytext.CopySource`, each report's timestamp is formatted
    once for all of its extensions. A refusal carries no ``index``: ``_store`` names the
    report."""

    def __init__(self, parents: list[tuple[int, dict]]) -> None:
        self.parents: list[tuple[int, dict, list[dict]]] = []
        for report_id, report in parents:
            extensions = report.get("extensions")
            if extensions:
                if type(extensions) is not list:  # a tuple, or not a list at all
                    _validateChildren(extensions, "extensions", _extensionValidator, None)
                self.parents.append((report_id, report, extensions))

    def __len__(self) -> int:
        return sum(len(extensions) for _, _, extensions in self.parents)

    def __iter__(self) -> Iterator[tuple]:
        check = _extensionEncoder.values
        for report_id, report, extensions in self.parents:
            for key, extension in enumerate(extensions):
                if check(extension, None) is None:
                    _validateChildren(extensions, "extensions", _extensionValidator, None)
                yield (report_id, report["date_processed"], key, extension["extension_id"],
                       extension.get("extension_version"), report["uuid"])

    def copyLines(self, formatter: copytext.CopyFormatter) -> Iterator[str]:
        encode = _extensionEncoder.line
        for report_id, report, extensions in self.parents:
            lead = f"{report_id}\t{copytext.timestamp(report['date_processed'])}\t"
            tail = "\t" + copytext.escape(report["uuid"])
            for key, extension in enumerate(extensions):
                line = encode(extension, f"{lead}{key}")
                if line is None:  # not certainly valid: validate properly, format plainly
                    _validateChildren(extensions, "extensions", _extensionValidator, None)
                    yield formatter.line((report_id, report["date_processed"], key,
                                          extension["extension_id"],
                                          extension.get("extension_version"), report["uuid"]))
                else:
                    yield line + tail


class ReportsConnectorComponent(DBConnectorComponent):
    """Processed crash reports (``db.reports``); see docs/components/reports.md."""

    @validatesInput
    def addReport(self, report: dict[str, Any]) -> defer.Deferred:
        """Store one report (with its extensions and plugins); Deferred of its id."""
        validateReport(report)
        return self.db.pool.do(self._store, [report]).addCallback(lambda ids: ids[0])

    def addReports(self, reports: Sequence[dict[str, Any]]) -> defer.Deferred:
        """Store a batch atomically, any weeks; Deferred of the ids in input order.

        Every row is validated: one bad row rejects the batch with an InvalidInputError
        naming its ``index`` and ``field`` (the first bad row's), and nothing is stored.
        """
        if not isinstance(reports, list | tuple):
            return defer.fail(InvalidInputError(f"expected a list, got {type(reports).__name__}"))
        if not reports:
            return defer.succeed([])
        return self.db.pool.do(self._store, list(reports))

    def _store(self, conn: sa.Connection, reports: list[dict[str, Any]]) -> list[int]:
        """Write ``reports``; the ids in input order.

        Each report is validated just before its row is sent (see ``_ReportRows``), so that on
        PostgreSQL the checks run while the server is busy with the rows sent before. Any
        failure first validates the whole batch in order: a bad report is always reported as
        the InvalidInputError of the first bad one (and never leads to a partition being
        created), and the transaction rolls back, so nothing is stored.
        """
        try:
            return self._write(conn, reports)
        except Exception:
            _validateAll(reports)
            raise

    def _write(self, conn: sa.Connection, reports: list[dict[str, Any]]) -> list[int]:
        """Ids are drawn from the sequence, in one round trip, only for reports not stored
        yet, so that a re-delivered batch or a re-run import consumes none: the stored uuids
        are looked up first (see ``_storedUuids``). Then, optimistically, the new rows are
        appended (COPY on PostgreSQL) inside a savepoint; only if one of them is stored after
        all (another writer's, or one the look-up's sample missed) does the savepoint roll back
        and the careful path run, which skips stored uuids (``ON CONFLICT DO NOTHING``) and
        looks up their ids. Small batches go the careful way at once (a savepoint costs two
        round trips)."""
        backend = self.db.backend
        weeks: dict[datetime.datetime, dict[str, tuple[int, dict]]] = {}
        placed: list[tuple[datetime.datetime, str]] = []
        for index, report in enumerate(reports):
            monday = _monday(report["date_processed"])
            uuid = report["uuid"]
            members = weeks.setdefault(monday, {})
            if uuid in members:  # a uuid repeated within the batch is one report
                validateReport(report, index)  # never written, so never checked on the way
            else:
                members[uuid] = (index, report)
            placed.append((monday, uuid))
        known = self._storedUuids(conn, weeks)
        new = _unstored(weeks, known) if any(known.values()) else weeks
        count = sum(map(len, new.values()))
        reserved = iter(backend.reserveIds(conn, "reports", count))
        assigned = {monday: dict(zip(members, reserved)) for monday, members in new.items()}
        stored = None
        if count >= BULK_MIN_ROWS:
            if self._race_hook is not None:  # where another writer may store one of our uuids
                self._race_hook(conn)
            try:
                with conn.begin_nested():
                    self._appendAll(conn, new, assigned)
                stored = assigned
            except sa.exc.DBAPIError as error:
                if not backend.isUniqueViolation(error):
                    raise
        if stored is None:
            stored = self._insertNew(conn, new, assigned)
        for monday, ids in stored.items():
            known[monday].update(ids)
        return [known[monday][uuid] for monday, uuid in placed]

    def _storedUuids(self, conn: sa.Connection, weeks: dict) -> dict[datetime.datetime, dict]:
        """``{monday: {uuid: id}}`` of the batch's reports already stored in their week.

        A large batch is first probed with a sample (the first, middle and last uuid of each
        week): looking every uuid of a batch up cost a fast-path write 40% of its speed,
        while re-deliveries come whole (a batch sent again, an import run again) and the probe
        finds them. Only if it finds one is every uuid looked up. A batch partly stored that
        the sample misses fails the append and takes the careful path, the ids it drew for
        the stored reports unused.
        """
        if sum(map(len, weeks.values())) >= BULK_MIN_ROWS:
            found = self._storedIds(conn, weeks, {monday: _sample(list(members))
                                                  for monday, members in weeks.items()})
            if not any(found.values()):
                return found
        return self._storedIds(conn, weeks, {monday: list(members)
                                             for monday, members in weeks.items()})

    def _storedIds(self, conn: sa.Connection, weeks: dict, wanted: dict[datetime.datetime, list]
                   ) -> dict[datetime.datetime, dict]:
        """``{monday: {uuid: id}}`` of the ``wanted`` uuids of each week stored in it: one
        query of every week's child per 900 uuids (a missing week is repaired with the
        batch's others)."""
        found: dict[datetime.datetime, dict[str, int]] = {monday: {} for monday in weeks}
        pairs = [(monday, uuid) for monday, uuids in wanted.items() for uuid in uuids]
        for chunk in batched(pairs, UUID_LOOKUP_CHUNK):
            byWeek: dict[datetime.datetime, list[str]] = {}
            for monday, uuid in chunk:
                byWeek.setdefault(monday, []).append(uuid)
            mondays = list(byWeek)
            shape = tuple((partitionName("reports", monday), len(byWeek[monday]))
                          for monday in mondays)
            statement = plainLookup(conn.dialect, shape, "uuid", "id")
            params = tuple(uuid for monday in mondays for uuid in byWeek[monday])
            with _inBatch(self.db.backend, weeks):
                for position, uuid, report_id in conn.exec_driver_sql(statement, params):
                    found[mondays[position]][uuid] = report_id
        return found

    def _appendAll(self, conn: sa.Connection, weeks: dict, assigned: dict) -> None:
        """The fast path: every report is new (else a unique violation is raised)."""
        rows = {monday: _ReportRows(members, assigned[monday])
                for monday, members in weeks.items()}
        with _inBatch(self.db.backend, weeks):
            bulkInsertWeeks(conn, self.db.backend, "reports", REPORT_FIELDS, rows)
        self._storeChildren(conn, {monday: week.parents for monday, week in rows.items()})

    def _insertNew(self, conn: sa.Connection, weeks: dict, assigned: dict) -> dict:
        """The careful path: stored uuids are skipped and their ids looked up; the new
        reports' children are written."""
        backend = self.db.backend
        stored: dict[datetime.datetime, dict[str, int]] = {}
        added: dict[datetime.datetime, list[tuple[int, dict]]] = {}
        for monday, members in weeks.items():
            ids = assigned[monday]
            child = childTable("reports", monday, backend)
            rows = _ReportRows(members, ids)
            with _inBatch(backend, weeks):
                inserted = backend.insertNew(conn, child, REPORT_FIELDS, rows, "uuid")
            known = self._idsByUuid(conn, child, [u for u in members if u not in inserted])
            for uuid in known:  # stored meanwhile: its extensions are not written, nor checked
                index, report = members[uuid]
                _validateChildLists(report, index)
            stored[monday] = {uuid: ids[uuid] if uuid in inserted else known[uuid]
                              for uuid in members}
            added[monday] = [(report_id, report) for report_id, report in rows.parents
                             if report["uuid"] in inserted]
        self._storeChildren(conn, added)
        return stored

    @staticmethod
    def _idsByUuid(conn: sa.Connection, child: sa.Table, uuids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in batched(uuids):
            query = sa.select(child.c.uuid, child.c.id).where(child.c.uuid.in_(chunk))
            found.update((uuid, report_id) for uuid, report_id in conn.execute(query))
        return found

    def _storeChildren(
        self, conn: sa.Connection, added: dict[datetime.datetime, list[tuple[int, dict]]]
    ) -> None:
        """The extensions and plugins of newly added ``(id, report)`` pairs (by week)."""
        backend = self.db.backend
        wanted = {
            (plugin["filename"], plugin["name"])
            for reports in added.values()
            for _, report in reports
            for plugin in report.get("plugins") or ()
        }
        pluginIdsByKey = pluginIds(conn, backend, wanted) if wanted else {}
        plugins = {
            monday: [
                (report_id, pluginIdsByKey[(plugin["filename"], plugin["name"])],
                 report["date_processed"], plugin["version"], report["uuid"])
                for report_id, report in reports
                for plugin in report.get("plugins") or ()
            ]
            for monday, reports in added.items()
        }
        with _inBatch(backend, added):
            bulkInsertWeeks(conn, backend, "extensions", EXTENSION_FIELDS, {
                monday: _ExtensionRows(reports) for monday, reports in added.items()})
            if wanted:
                bulkInsertWeeks(conn, backend, "plugins_reports", PLUGIN_FIELDS, plugins)

    @validatesInput
    def getReport(
        self, uuid: str, date_processed: datetime.datetime | None = None
    ) -> defer.Deferred:
        """Deferred of the reportdict for ``uuid``, or None. With ``date_processed`` only that
        week's partition is read; without it every week is searched and, since uniqueness is
        per week, the most recently processed report with that uuid is returned."""
        start, end = uuidLookup(uuid, date_processed)

        def thd(conn: sa.Connection) -> dict | None:
            row = latestByUuid(conn, self.db.backend, "reports", uuid, start, end)
            return None if row is None else dict(row._mapping)

        return self.db.pool.doReplicaRead(thd)

    def _filtered(self, conn: sa.Connection, product, version, signature, start, end):
        source = self.readable(conn, "reports", start, end)
        conditions = []
        for column, value in (("product", product), ("version", version),
                              ("signature", signature)):
            if value is not None:
                conditions.append(source.c[column] == value)
        if start is not None:
            conditions.append(source.c.date_processed >= start)
        if end is not None:
            conditions.append(source.c.date_processed < end)
        return source, conditions

    @validatesInput
    def getReports(
        self,
        product: str | None = None,
        version: str | None = None,
        signature: str | None = None,
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
        newestFirst: bool = False,
    ) -> defer.Deferred:
        """Deferred of the matching reportdicts ordered by (date_processed, id), or the reverse
        with ``newestFirst`` (the latest few, read from the end of the date index); ``start``
        inclusive, ``end`` exclusive; only the overlapping partitions are read."""
        validateFilters(product, version, signature, start, end, limit, offset)
        if not isinstance(newestFirst, bool):
            raise InvalidInputError("must be True or False", field="newestFirst")

        def thd(conn: sa.Connection) -> list[dict]:
            source, conditions = self._filtered(conn, product, version, signature, start, end)
            order = [source.c.date_processed, source.c.id]
            query = (
                sa.select(source)
                .where(*conditions)
                .order_by(*(column.desc() if newestFirst else column for column in order))
                .limit(limit)
                .offset(offset)
            )
            return self.rowsToDicts(conn.execute(query))

        return self.db.pool.doReplicaRead(thd)

    @validatesInput
    def countReports(
        self,
        product: str | None = None,
        version: str | None = None,
        signature: str | None = None,
        start: datetime.datetime | None = None,
        end: datetime.datetime | None = None,
    ) -> defer.Deferred:
        """Deferred of the number of reports matching the same filters as getReports."""
        validateFilters(product, version, signature, start, end)

        def thd(conn: sa.Connection) -> int:
            source, conditions = self._filtered(conn, product, version, signature, start, end)
            query = sa.select(sa.func.count()).select_from(source).where(*conditions)
            return conn.execute(query).scalar_one()

        return self.db.pool.doReplicaRead(thd)

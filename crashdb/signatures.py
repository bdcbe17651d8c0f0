"""Signatures: each signature's lifecycle, the summary of its crashes and their correlations.

Triage asks of one signature: is it new, since which build and on which versions (the daily
``signatures`` rollup, :meth:`updateSignatures`), on how many installations and which systems
(:meth:`getSummary`), and what do its crashes have in common that other crashes lack
(:meth:`getCorrelations`, dbaron's rule from Socorro). Every answer is computed in SQL, reading
only the weekly partitions that overlap the period asked about.
"""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer

from crashdb.base import DBConnectorComponent
from crashdb.exceptions import InvalidInputError
from crashdb.tcbs import DAY, dayStart
from crashdb.validation import requireDay, requirePeriod, requireString

UTC = datetime.UTC

# The report columns getSummary facets on, besides ``uptime`` (bucketed) and ``addon``.
SUMMARY_FIELDS = ("product", "version", "os_name", "os_version", "cpu_name", "build",
                  "process_type", "release_channel", "reason")
FACETS = (*SUMMARY_FIELDS, "uptime", "addon")
# Uptime buckets: (term, from, to) in seconds, half-open; the last has no end.
UPTIME_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("< 1 min", 0, 60), ("1-5 min", 60, 300), ("5-15 min", 300, 900), ("15-60 min", 900, 3600),
    ("> 1 hour", 3600, None),
)
# The report columns getCorrelations compares, besides ``addon``.
CORRELATION_FIELDS = ("os_version", "cpu_info", "flash_version", "process_type",
                      "release_channel", "build")
# What each read takes from a report: its key (to join its add-ons) and what it counts.
# id, uuid and date_processed tie a report to its add-ons (uuid: co-located on Citus)
SUMMARY_COLUMNS = ("id", "uuid", "date_processed", "client_crash_date", "install_age", "uptime",
                   *SUMMARY_FIELDS)
CORRELATION_COLUMNS = ("id", "uuid", "date_processed", *CORRELATION_FIELDS)
# Rows of getSummary's one query that carry totals rather than a facet's term.
COUNT_ROW, INSTALLATIONS_ROW = "#count", "#installations"
LIFECYCLE = ("first_report", "first_build", "last_report")
MICROSECONDS = 1_000_000


def uptimeBucket(uptime: sa.ColumnElement[int]) -> sa.ColumnElement[str]:
    """The ``uptime`` facet's term for a report: a bucket name, or NULL (no or negative uptime)."""
    return sa.case(
        *((sa.and_(uptime >= low, *([] if high is None else [uptime < high])), term)
          for term, low, high in UPTIME_BUCKETS),
        else_=sa.null(),
    )


class SignaturesConnectorComponent(DBConnectorComponent):
    """Signature lifecycles (a daily rollup), summaries and correlations.

    The lifecycle tables hold every non-empty signature; the per-version one holds reports
    with a product, under version ``''`` when the report has none (as ``tcbs`` does).
    """

    # -- the rollup --

    def updateSignatures(self, day: datetime.date) -> defer.Deferred:
        """Merge one UTC day of ``reports`` into the lifecycle tables; Deferred of the rows
        written (inserted, or changed by the day: re-running a day writes none).

        Each table gets one ``INSERT ... SELECT ... GROUP BY`` over the day's partition whose
        conflicts keep the earlier first report and build and the later last report: days may
        be rolled up in any order, any number of times, and the tables end the same.
        """
        try:
            requireDay(day, "day")
        except InvalidInputError as error:
            return defer.fail(error)
        start = dayStart(day)
        end = start + DAY
        model = self.db.model

        def thd(conn: sa.Connection) -> int:
            r = self.readable(conn, "reports", start, end).c
            where = [r.date_processed >= start, r.date_processed < end,
                     r.signature.is_not(None), r.signature != ""]
            written = self._merge(conn, model.signatures, {"signature": r.signature}, where)
            keys = {"signature": r.signature, "product": r.product,
                    "version": sa.func.coalesce(r.version, "")}
            return written + self._merge(
                conn, model.signature_versions, keys, [*where, r.product.is_not(None)]
            )

        return self.db.pool.do(thd)

    def _merge(
        self,
        conn: sa.Connection,
        table: sa.Table,
        keys: dict[str, sa.ColumnElement],
        where: list[sa.ColumnElement[bool]],
    ) -> int:
        """Upsert the lifecycle of each group of ``keys`` among the reports matching ``where``."""
        reports = keys["signature"].table.c
        order = self.db.backend.codePointOrder
        groups = (
            sa.select(
                *(column.label(name) for name, column in keys.items()),
                sa.func.min(reports.date_processed).label("first_report"),
                sa.func.min(order(reports.build)).label("first_build"),
                sa.func.max(reports.date_processed).label("last_report"),
            )
            .where(*where)
            .group_by(*keys.values())
        )
        insert = self.db.backend.insert(table).from_select([*keys, *LIFECYCLE], groups)
        new, old = insert.excluded, table.c
        earlier = new.first_report < old.first_report
        smaller = sa.and_(new.first_build.is_not(None), sa.or_(
            old.first_build.is_(None), order(new.first_build) < order(old.first_build)))
        later = new.last_report > old.last_report
        insert = insert.on_conflict_do_update(
            index_elements=list(keys),
            set_={
                "first_report": _keep(earlier, new, old, "first_report"),
                "first_build": _keep(smaller, new, old, "first_build"),
                "last_report": _keep(later, new, old, "last_report"),
            },
            # a row the day does not change is not rewritten: hourly re-runs write little
            where=sa.or_(earlier, smaller, later),
        )
        # counted from RETURNING: Citus's rowcount of an INSERT ... SELECT into a reference
        # table is the rows selected, not those the conflict clause let through
        return len(conn.execute(insert.returning(sa.literal(1))).all())

    # -- lifecycle reads --

    def getSignature(self, signature: str) -> defer.Deferred:
        """Deferred of ``{signature, first_report, first_build, last_report, versions}`` or None;
        ``versions`` is ``[{product, version, first_report, first_build, last_report}]``
        ordered by product, then first_report."""
        try:
            requireString(signature, "signature", 255)
        except InvalidInputError as error:
            return defer.fail(error)
        signatures, versions = self.db.model.signatures, self.db.model.signature_versions
        order = self.db.backend.codePointOrder

        def thd(conn: sa.Connection) -> dict[str, Any] | None:
            found = conn.execute(
                sa.select(signatures).where(signatures.c.signature == signature)
            ).mappings().first()
            if found is None:
                return None
            rows = conn.execute(
                sa.select(versions.c.product, versions.c.version, *versions.c[LIFECYCLE])
                .where(versions.c.signature == signature)
                .order_by(order(versions.c.product), versions.c.first_report,
                          order(versions.c.version))
            )
            return {**found, "versions": self.rowsToDicts(rows)}

        return self.db.pool.do(thd)

    def getNewSignatures(
        self,
        product: str,
        version: str | None = None,
        start_day: datetime.date | None = None,
        end_day: datetime.date | None = None,
        limit: int = 100,
    ) -> defer.Deferred:
        """Signatures first reported for ``product`` (and ``version``) in [start_day, end_day).

        Deferred of ``[{signature, first_report, first_build, count}]`` ordered by count
        descending, then signature; first report and build are the product's (or version's),
        ``count`` the signature's reports in the period, from the ``tcbs`` rollup.
        """
        try:
            requireString(product, "product", 30)
            if version is not None:
                requireString(version, "version", 16)
            start_day, end_day = requirePeriod(start_day, end_day)
            _requireLimit(limit)
        except InvalidInputError as error:
            return defer.fail(error)
        start, end = dayStart(start_day), dayStart(end_day)
        versions, tcbs = self.db.model.signature_versions, self.db.model.tcbs
        order = self.db.backend.codePointOrder
        scope = [versions.c.product == product]
        counted = [tcbs.c.product == product, tcbs.c.day >= start_day, tcbs.c.day < end_day]
        if version is not None:
            scope.append(versions.c.version == version)
            counted.append(tcbs.c.version == version)
        seen = versions.alias("seen")  # rows first reported in the period: the candidates
        candidates = sa.select(seen.c.signature).where(
            seen.c.product == product, seen.c.first_report >= start, seen.c.first_report < end,
            *([] if version is None else [seen.c.version == version]),
        )
        first = sa.func.min(versions.c.first_report)
        new = (
            sa.select(versions.c.signature, first.label("first_report"),
                      sa.func.min(order(versions.c.first_build)).label("first_build"))
            .where(*scope, versions.c.signature.in_(candidates))
            .group_by(versions.c.signature)
            .having(first >= start)
            .subquery("new")
        )
        counts = (
            sa.select(tcbs.c.signature, sa.func.sum(tcbs.c.count).label("count"))
            .where(*counted, tcbs.c.signature.in_(sa.select(new.c.signature)))
            .group_by(tcbs.c.signature)
            .subquery("counts")
        )
        count = sa.func.coalesce(counts.c.count, 0)
        query = (
            sa.select(new.c.signature, new.c.first_report, new.c.first_build,
                      count.label("count"))
            .select_from(new.outerjoin(counts, counts.c.signature == new.c.signature))
            .order_by(count.desc(), order(new.c.signature))
            .limit(limit)
        )

        def thd(conn: sa.Connection) -> list[dict[str, Any]]:
            return [{**row, "count": int(row["count"])} for row in conn.execute(query).mappings()]

        return self.db.pool.do(thd)

    # -- reads over the period's reports --

    def getSummary(
        self,
        signature: str,
        product: str | None = None,
        version: str | None = None,
        start_day: datetime.date | None = None,
        end_day: datetime.date | None = None,
    ) -> defer.Deferred:
        """Deferred of ``{count, installations, facets}`` over the signature's reports in the
        period (SPEC 13): ``facets`` maps each of :data:`FACETS` to ``[{term, count,
        percent}]``, count descending then term (None last)."""
        try:
            start, end = self._readArguments(signature, product, version, start_day, end_day)
        except InvalidInputError as error:
            return defer.fail(error)

        def thd(conn: sa.Connection) -> dict[str, Any]:
            scope = self._scope(conn, start, end, product, version, signature, SUMMARY_COLUMNS)
            query = self._summaryQuery(conn, scope, start, end)
            summary: dict[str, Any] = {"count": 0, "installations": 0,
                                       "facets": {facet: [] for facet in FACETS}}
            for facet, term, count in conn.execute(query):
                if facet == COUNT_ROW:
                    summary["count"] = int(count)
                elif facet == INSTALLATIONS_ROW:
                    summary["installations"] = int(count)
                else:
                    summary["facets"][facet].append({"term": term, "count": int(count)})
            for terms in summary["facets"].values():
                for term in terms:
                    term["percent"] = 100.0 * term["count"] / summary["count"]
            return summary

        return self.db.pool.do(thd)

    def _summaryQuery(
        self, conn: sa.Connection, scope: sa.CTE, start: datetime.datetime,
        end: datetime.datetime,
    ) -> sa.Select:
        """One statement: the totals, then (facet, term, count) for every facet's terms."""
        s = scope.c
        install = (self.db.backend.epochMicroseconds(s.client_crash_date)
                   - sa.cast(s.install_age, sa.BigInteger) * MICROSECONDS)
        term = sa.null().label("term")
        parts: list[sa.Select] = [
            sa.select(sa.literal(COUNT_ROW).label("facet"), term, sa.func.count()),
            sa.select(sa.literal(INSTALLATIONS_ROW), term, sa.func.count(sa.distinct(install))),
        ]
        bucket = uptimeBucket(s.uptime)
        for facet, column in (*((name, s[name]) for name in SUMMARY_FIELDS), ("uptime", bucket)):
            value = sa.cast(column, sa.Text)
            parts.append(sa.select(sa.literal(facet), value, sa.func.count()).group_by(value))
        parts = [part.select_from(scope) for part in parts]
        e = self.readable(conn, "extensions", start, end).c
        # a semi-join, so that the planner walks the signature's few reports and looks their
        # add-ons up by (report_id, date_processed) instead of scanning every add-on of the week
        reports = sa.tuple_(e.report_id, e.uuid, e.date_processed).in_(
            sa.select(s.id, s.uuid, s.date_processed))
        parts.append(
            sa.select(sa.literal("addon"), e.extension_id,
                      sa.func.count(sa.distinct(e.report_id)))
            .where(reports)
            .group_by(e.extension_id)
        )
        rows = sa.union_all(*parts).subquery("rows")
        return sa.select(rows.c.facet, rows.c.term, rows.c.count).order_by(
            rows.c.facet, rows.c.count.desc(), rows.c.term.is_(None),
            self.db.backend.codePointOrder(rows.c.term),
        )

    def getCorrelations(
        self,
        signature: str,
        product: str,
        version: str | None = None,
        start_day: datetime.date | None = None,
        end_day: datetime.date | None = None,
        min_count: int = 10,
        min_difference: float = 0.05,
    ) -> defer.Deferred:
        """What the signature's crashes have in common that the product's other crashes lack.

        Deferred of ``[{field, value, count, in_signature, overall, difference}]`` (SPEC 13,
        dbaron's rule): for each add-on and each value of :data:`CORRELATION_FIELDS`, the
        fraction of the signature's reports in the period having it, the same among all the
        product's (and version's) reports, and their difference; rows with a difference of at
        least ``min_difference``, by difference descending, then field, then value. ``[]``
        when the signature has fewer than ``min_count`` reports in the period.
        """
        try:
            if product is None:
                raise InvalidInputError("a product is required", field="product")
            start, end = self._readArguments(signature, product, version, start_day, end_day)
            if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 0:
                raise InvalidInputError("must be an integer of at least 0", field="min_count")
            if isinstance(min_difference, bool) or not isinstance(min_difference, int | float):
                raise InvalidInputError("must be a number", field="min_difference")
        except InvalidInputError as error:
            return defer.fail(error)

        def thd(conn: sa.Connection) -> list[dict[str, Any]]:
            mine = self._scope(conn, start, end, product, version, signature, ("id",))
            in_signature = conn.execute(sa.select(sa.func.count()).select_from(mine)).scalar_one()
            if in_signature == 0 or in_signature < min_count:
                return []
            scope = self._scope(conn, start, end, product, version, None, CORRELATION_COLUMNS,
                                mine=signature)
            query = self._correlationsQuery(conn, scope, in_signature, start, end,
                                            min_difference)
            return [{**row, "count": int(row["count"])} for row in conn.execute(query).mappings()]

        return self.db.pool.do(thd)

    def _correlationsQuery(
        self, conn: sa.Connection, scope: sa.CTE, in_signature: int,
        start: datetime.datetime, end: datetime.datetime, min_difference: float,
    ) -> sa.Select:
        """(field, value, count, in_signature, overall, difference) above ``min_difference``."""
        s = scope.c
        parts: list[sa.Select] = []
        for field in CORRELATION_FIELDS:
            value = sa.cast(s[field], sa.Text)
            parts.append(
                sa.select(sa.literal(field).label("field"), value.label("value"),
                          sa.func.sum(s.mine).label("count"), sa.func.count().label("overall"))
                .where(s[field].is_not(None))
                .group_by(value)
            )
        extensions = self.readable(conn, "extensions", start, end)
        e = extensions.c
        parts.append(
            sa.select(sa.literal("addon"), e.extension_id,
                      sa.func.count(sa.distinct(sa.case((s.mine == 1, e.report_id)))),
                      sa.func.count(sa.distinct(e.report_id)))
            .select_from(scope.join(extensions, sa.and_(
                e.report_id == s.id, e.uuid == s.uuid, e.date_processed == s.date_processed)))
            .group_by(e.extension_id)
        )
        rows = sa.union_all(*parts).subquery("rows")
        totals = sa.select(sa.func.count().label("total")).select_from(scope).subquery("totals")
        fraction = sa.cast(rows.c.count, sa.Float) / in_signature
        overall = sa.cast(rows.c.overall, sa.Float) / totals.c.total
        difference = fraction - overall
        return (
            sa.select(rows.c.field, rows.c.value, rows.c.count,
                      fraction.label("in_signature"), overall.label("overall"),
                      difference.label("difference"))
            .select_from(rows.join(totals, sa.true()))
            .where(difference >= min_difference)
            .order_by(difference.desc(), rows.c.field,
                      self.db.backend.codePointOrder(rows.c.value))
        )

    # -- shared by the reads --

    def _readArguments(
        self, signature: str, product: str | None, version: str | None,
        start_day: datetime.date | None, end_day: datetime.date | None,
    ) -> tuple[datetime.datetime, datetime.datetime]:
        """Validate the common arguments; the period as [start, end) datetimes."""
        requireString(signature, "signature", 255)
        if product is not None:
            requireString(product, "product", 30)
        if version is not None:
            requireString(version, "version", 16)
        start_day, end_day = requirePeriod(start_day, end_day)
        return dayStart(start_day), dayStart(end_day)

    def _scope(
        self, conn: sa.Connection, start: datetime.datetime, end: datetime.datetime,
        product: str | None, version: str | None, signature: str | None,
        columns: tuple[str, ...], mine: str | None = None,
    ) -> sa.CTE:
        """``columns`` of the period's reports (of the product, version and signature given),
        read from the overlapping partitions only; with ``mine``, also column ``mine``: 1 for
        the reports of that signature, else 0 (compared once per report, not per use)."""
        r = self.readable(conn, "reports", start, end).c
        where = [r.date_processed >= start, r.date_processed < end]
        if product is not None:
            where.append(r.product == product)
        if version is not None:
            where.append(r.version == version)
        if signature is not None:
            where.append(r.signature == signature)
        flag = [] if mine is None else [sa.case((r.signature == mine, 1), else_=0).label("mine")]
        return sa.select(*r[columns], *flag).where(*where).cte("scope")


def _keep(newer_wins: sa.ColumnElement[bool], new: Any, old: Any, name: str) -> sa.ColumnElement:
    """The stored value of ``name``, or the incoming one when ``newer_wins`` or nothing is
    stored: NULL-safe min/max of two values, the same SQL on both backends (SQLite's two-
    argument min() returns NULL if either is NULL; PostgreSQL's LEAST ignores NULLs)."""
    return sa.case((newer_wins, new[name]), else_=sa.func.coalesce(old[name], new[name]))


def _requireLimit(limit: Any) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInputError("must be a positive integer", field="limit")

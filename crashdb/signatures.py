"""Signatures: each signature's lifecycle, the summary of its crashes and their correlations.

Triage asks of one signature: is it new, since which build and on which versions (the daily
``signatures`` rollup, :meth:`updateSignatures`), on how many installations and which systems
(:meth:`getSummary`), and what do its crashes have in common that other crashes lack
(:meth:`getCorrelations`, dbaron's rule from Socorro). The summary and correlations read the
daily ``summaries`` rollup (:meth:`updateSummaries`, :mod:`crashdb.summaries`) for the days it
covers and the reports, only the weekly partitions that overlap them, for the others.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer

from crashdb.base import DBConnectorComponent
from crashdb.exceptions import InvalidInputError
from crashdb.summaries import (
    PRODUCT_FIELDS,
    ROLLUP,
    SCOPE_COLUMNS,
    SIGNATURE_FIELDS,
    byCountThenTerm,
    coveredDays,
    facetRows,
    readFacets,
)
from crashdb.tcbs import DAY, dayStart
from crashdb.validation import (
    requireDay,
    requireInteger,
    requirePeriod,
    requireString,
    validatesInput,
)

UTC = datetime.UTC

# The report columns getSummary facets on, besides ``uptime`` (bucketed) and ``addon``.
SUMMARY_FIELDS = ("product", "version", "os_name", "os_version", "cpu_name", "build",
                  "process_type", "release_channel", "reason")
FACETS = (*SUMMARY_FIELDS, "uptime", "addon")
# The report columns getCorrelations compares, besides ``addon``.
CORRELATION_FIELDS = ("os_version", "cpu_info", "flash_version", "process_type",
                      "release_channel", "build")
LIFECYCLE = ("first_report", "first_build", "last_report")


class SignaturesConnectorComponent(DBConnectorComponent):
    """Signature lifecycles (a daily rollup), summaries and correlations.

    The lifecycle tables hold every non-empty signature; the per-version one holds reports
    with a product, under version ``''`` when the report has none (as ``tcbs`` does).
    """

    # -- the rollup --

    @validatesInput
    def updateSignatures(self, day: datetime.date) -> defer.Deferred:
        """Merge one UTC day of ``reports`` into the lifecycle tables; Deferred of the rows
        written (inserted, or changed by the day: re-running a day writes none).

        Each table gets one ``INSERT ... SELECT ... GROUP BY`` over the day's partition whose
        conflicts keep the earlier first report and build and the later last report: days may
        be rolled up in any order, any number of times, and the tables end the same.
        """
        requireDay(day, "day")
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

    @validatesInput
    def updateSummaries(self, day: datetime.date) -> defer.Deferred:
        """Recompute one UTC day of the facet counts behind :meth:`getSummary` and
        :meth:`getCorrelations` (``signature_facets``, ``product_facets``) from ``reports``, and
        mark the day covered in ``rollup_days``; Deferred of the rows written.

        One transaction: the day's ``rollup_days`` row is written first, so a concurrent run of
        the same day waits for this one, then the day's rows are deleted and regrouped (two
        ``INSERT ... SELECT``, each one pass over the day's partition). A reader sees the day
        before or after, never half of it.
        """
        requireDay(day, "day")
        start = dayStart(day)
        end = start + DAY
        model, backend = self.db.model, self.db.backend

        def regroup(conn: sa.Connection, table: sa.Table, fields: tuple[str, ...],
                    groups: tuple[str, ...],
                    where: Callable[[Any], list[sa.ColumnElement[bool]]]) -> int:
            r = self.readable(conn, "reports", start, end).c
            scope = sa.select(*r[tuple(dict.fromkeys((*SCOPE_COLUMNS, *groups)))]).where(
                r.date_processed >= start, r.date_processed < end, *where(r)).cte("scope")
            rows = facetRows(backend, scope, self.readable(conn, "extensions", start, end),
                             fields, groups).subquery("rows")
            conn.execute(sa.delete(table).where(table.c.day == day))
            conn.execute(table.insert().from_select(
                ["day", *groups, "field", "term", "count"],
                sa.select(sa.literal(day, sa.Date), *rows.c)))
            # counted, not the rowcount: SQLite's driver gives -1 for a statement starting
            # with WITH, Citus the rows selected
            written = sa.select(sa.func.count()).select_from(table).where(table.c.day == day)
            return conn.execute(written).scalar_one()

        def thd(conn: sa.Connection) -> int:
            days = model.rollup_days
            mark = backend.insert(days).values(rollup=ROLLUP, day=day,
                                               rolled_at=datetime.datetime.now(UTC))
            conn.execute(mark.on_conflict_do_update(
                index_elements=["rollup", "day"], set_={"rolled_at": mark.excluded.rolled_at}))
            signed = regroup(
                conn, model.signature_facets, SIGNATURE_FIELDS, ("product", "version", "signature"),
                lambda r: [r.signature.is_not(None), r.signature != ""])
            return signed + regroup(conn, model.product_facets, PRODUCT_FIELDS,
                                    ("product", "version"), lambda r: [r.product.is_not(None)])

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

    @validatesInput
    def getSignature(self, signature: str) -> defer.Deferred:
        """Deferred of ``{signature, first_report, first_build, last_report, versions}`` or None;
        ``versions`` is ``[{product, version, first_report, first_build, last_report}]``
        ordered by product, then first_report."""
        requireString(signature, "signature", 255)
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

    @validatesInput
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
        requireString(product, "product", 30)
        if version is not None:
            requireString(version, "version", 16)
        start_day, end_day = requirePeriod(start_day, end_day)
        requireInteger(limit, "limit", minimum=1)
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

    # -- reads over the period: the summaries rollup, and the reports of days it lacks --

    @validatesInput
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
        percent}]``, count descending then term (None last). Days the summaries rollup covers
        are read from it, the others from the reports (see :mod:`crashdb.summaries`)."""
        first, last = self._readArguments(signature, product, version, start_day, end_day)

        def thd(conn: sa.Connection) -> dict[str, Any]:
            found = readFacets(
                conn, self.db.backend, self.readable, self.db.model.signature_facets,
                (*FACETS, "installation"), first, last,
                {"signature": signature, "product": product, "version": version})
            count = found.total()
            facets = {}
            for facet in FACETS:
                terms = sorted(found.terms(facet), key=byCountThenTerm)
                facets[facet] = [{"term": term, "count": n,
                                  "percent": 100.0 * n / count if count else 0.0}
                                 for term, n in terms]
            return {"count": count, "installations": found.installations, "facets": facets}

        return self.db.pool.do(thd)

    @validatesInput
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
        when the signature has fewer than ``min_count`` reports in the period. Both sides are
        counted as :meth:`getSummary` counts (the summaries rollup, and the reports of the
        days it lacks).
        """
        if product is None:
            raise InvalidInputError("a product is required", field="product")
        first, last = self._readArguments(signature, product, version, start_day, end_day)
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 0:
            raise InvalidInputError("must be an integer of at least 0", field="min_count")
        if isinstance(min_difference, bool) or not isinstance(min_difference, int | float):
            raise InvalidInputError("must be a number", field="min_difference")
        fields = ("product", *CORRELATION_FIELDS, "addon")

        def thd(conn: sa.Connection) -> list[dict[str, Any]]:
            model, backend = self.db.model, self.db.backend
            scope = {"product": product, "version": version}
            # both sides split the period the same way, even if a rollup commits meanwhile
            covered = coveredDays(conn, first, last)
            mine = readFacets(conn, backend, self.readable, model.signature_facets, fields,
                              first, last, {"signature": signature, **scope}, covered=covered)
            in_signature = mine.total()
            if in_signature == 0 or in_signature < min_count:
                return []
            everyone = readFacets(conn, backend, self.readable, model.product_facets, fields,
                                  first, last, scope, covered=covered)
            total = everyone.total()
            rows: list[dict[str, Any]] = []
            for field in fields[1:]:
                counts = dict(mine.terms(field))
                for value, overall in everyone.terms(field):
                    if value is None:
                        continue
                    count = counts.get(value, 0)
                    fraction = count / in_signature
                    share = overall / total if total else 0.0
                    if fraction - share >= min_difference:
                        rows.append({"field": field, "value": value, "count": count,
                                     "in_signature": fraction, "overall": share,
                                     "difference": fraction - share})
            rows.sort(key=lambda row: (-row["difference"], row["field"], row["value"]))
            return rows

        return self.db.pool.do(thd)

    # -- shared by the reads --

    def _readArguments(
        self, signature: str, product: str | None, version: str | None,
        start_day: datetime.date | None, end_day: datetime.date | None,
    ) -> tuple[datetime.date, datetime.date]:
        """Validate the common arguments; the period's [first, last) days."""
        requireString(signature, "signature", 255)
        if product is not None:
            requireString(product, "product", 30)
        if version is not None:
            requireString(version, "version", 16)
        return requirePeriod(start_day, end_day)


def _keep(newer_wins: sa.ColumnElement[bool], new: Any, old: Any, name: str) -> sa.ColumnElement:
    """The stored value of ``name``, or the incoming one when ``newer_wins`` or nothing is
    stored: NULL-safe min/max of two values, the same SQL on both backends (SQLite's two-
    argument min() returns NULL if either is NULL; PostgreSQL's LEAST ignores NULLs)."""
    return sa.case((newer_wins, new[name]), else_=sa.func.coalesce(old[name], new[name]))



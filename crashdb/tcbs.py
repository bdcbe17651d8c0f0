"""Top crashers by signature (TCBS): a daily rollup of ``reports`` and its ranked reads.

Front ends ask "what crashes most" without scanning weeks of reports: ``updateTcbs(day)`` groups
one UTC day of reports once, in SQL, into ``tcbs`` rows keyed on (day, product, version,
signature); ``getTopCrashers`` sums and ranks those rows, also in SQL.
"""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer

from crashdb.base import DBConnectorComponent, batched
from crashdb.exceptions import InvalidInputError
from crashdb.validation import (
    requireDay,
    requireInteger,
    requirePeriod,
    requireString,
    validatesInput,
)

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)

# The operating systems counted apart, by the reports' os_name.
OS_COUNTS = {"win_count": "Windows NT", "mac_count": "Mac OS X", "lin_count": "Linux"}
STARTUP_SECONDS = 60  # a crash within this uptime is a startup crash

COUNT_COLUMNS = ("count", "win_count", "mac_count", "lin_count", "hang_count", "startup_count")


def dayStart(day: datetime.date) -> datetime.datetime:
    """Midnight UTC starting ``day``."""
    return datetime.datetime(day.year, day.month, day.day, tzinfo=UTC)


def _countIf(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.sum(sa.case((condition, 1), else_=0))


class TcbsConnectorComponent(DBConnectorComponent):
    """The daily top-crashers rollup and its ranked reads.

    A report counts under its product, its version (``''`` when it has none) and its signature
    (``''`` when it has none); reports without a product are left out, since every question
    the rollup answers names a product.
    """

    @validatesInput
    def updateTcbs(self, day: datetime.date) -> defer.Deferred:
        """Recompute the rollup of one UTC day from ``reports``; Deferred of the rows written.

        One transaction deletes the day and inserts its groups (``INSERT ... SELECT ... GROUP
        BY``), reading only the partition that holds the day, so re-running it gives the same
        table and a reader never sees a half-written day.
        """
        requireDay(day, "day")
        start = dayStart(day)
        end = start + DAY
        tcbs = self.db.model.tcbs

        def thd(conn: sa.Connection) -> int:
            reports = self.readable(conn, "reports", start, end)
            r = reports.c
            version = sa.func.coalesce(r.version, "")
            signature = sa.func.coalesce(r.signature, "")
            groups = (
                sa.select(
                    sa.literal(day, sa.Date).label("day"),
                    r.product,
                    version.label("version"),
                    signature.label("signature"),
                    sa.func.count().label("count"),
                    *(
                        _countIf(r.os_name == os_name).label(column)
                        for column, os_name in OS_COUNTS.items()
                    ),
                    _countIf(sa.and_(r.hangid.is_not(None), r.hangid != "")).label("hang_count"),
                    _countIf(r.uptime < STARTUP_SECONDS).label("startup_count"),
                )
                .where(r.date_processed >= start, r.date_processed < end, r.product.is_not(None))
                .group_by(r.product, version, signature)
            )
            conn.execute(sa.delete(tcbs).where(tcbs.c.day == day))
            insert = self.db.backend.insert(tcbs).from_select(
                ["day", "product", "version", "signature", *COUNT_COLUMNS], groups
            )
            # a concurrent run of the same day may have inserted after our DELETE: take ours
            insert = insert.on_conflict_do_update(
                index_elements=["day", "product", "version", "signature"],
                set_={name: insert.excluded[name] for name in COUNT_COLUMNS},
            )
            return conn.execute(insert).rowcount

        return self.db.pool.do(thd)

    @validatesInput
    def getTopCrashers(
        self,
        product: str,
        version: str | None = None,
        start_day: datetime.date | None = None,
        end_day: datetime.date | None = None,
        limit: int = 20,
    ) -> defer.Deferred:
        """The most frequent signatures of ``product`` (and ``version``) in [start_day, end_day).

        Deferred of a list of ``{rank, signature, count, percent, win_count, mac_count,
        lin_count, hang_count, startup_count, previous_rank}`` ordered by count, ties by
        signature. ``end_day`` defaults to tomorrow (UTC), ``start_day`` to a week before it;
        ``previous_rank`` is the rank in the period of equal length just before, or None.
        """
        requireString(product, "product", self.db.model.tcbs.c.product)
        if version is not None:
            requireString(version, "version", self.db.model.tcbs.c.version)
        start_day, end_day = requirePeriod(start_day, end_day)
        requireInteger(limit, "limit", minimum=1)
        # the period of equal length before, cut at the first day Python has
        previous_start = start_day - min(end_day - start_day, start_day - datetime.date.min)
        tcbs = self.db.model.tcbs

        def period(first: datetime.date, last: datetime.date, name: str) -> sa.Subquery:
            """Per-signature sums over [first, last), each with its rank and the total."""
            where = [tcbs.c.product == product, tcbs.c.day >= first, tcbs.c.day < last]
            if version is not None:
                where.append(tcbs.c.version == version)
            total = sa.func.sum(tcbs.c.count)
            bySignature = self.db.backend.codePointOrder(tcbs.c.signature)
            return (
                sa.select(
                    tcbs.c.signature,
                    *(sa.func.sum(tcbs.c[column]).label(column) for column in COUNT_COLUMNS),
                    sa.func.row_number()
                    .over(order_by=(total.desc(), bySignature))
                    .label("rank"),
                    sa.func.sum(total).over().label("total"),
                )
                .where(*where)
                .group_by(tcbs.c.signature)
                .subquery(name)
            )

        current = period(start_day, end_day, "current")
        previous = period(previous_start, start_day, "previous")
        query = (
            sa.select(current, previous.c.rank.label("previous_rank"))
            .select_from(
                current.outerjoin(previous, previous.c.signature == current.c.signature)
            )
            .where(current.c.rank <= limit)
            .order_by(current.c.rank)
        )

        def thd(conn: sa.Connection) -> list[dict[str, Any]]:
            return [self._rowToDict(row) for row in conn.execute(query)]

        return self.db.pool.doReplicaRead(thd)

    @staticmethod
    def _rowToDict(row: sa.Row) -> dict[str, Any]:
        values = row._mapping
        total = int(values["total"])  # sums come back as Decimal from PostgreSQL
        crasher: dict[str, Any] = {"rank": int(values["rank"]), "signature": values["signature"]}
        crasher.update((column, int(values[column])) for column in COUNT_COLUMNS)
        crasher["percent"] = 100.0 * crasher["count"] / total if total else 0.0
        previous = values["previous_rank"]
        crasher["previous_rank"] = None if previous is None else int(previous)
        return crasher

    def getProducts(self) -> defer.Deferred:
        """Deferred of ``[{product, versions}]``: every product in the rollup, by name, with its
        versions (``''`` for reports without one left out) newest first as text sorts them."""
        tcbs = self.db.model.tcbs

        def thd(conn: sa.Connection) -> list[dict[str, Any]]:
            pairs = conn.execute(sa.select(tcbs.c.product, tcbs.c.version).distinct())
            products: dict[str, list[str]] = {}
            for product, version in pairs:
                versions = products.setdefault(product, [])
                if version:
                    versions.append(version)
            return [{"product": product, "versions": sorted(products[product], reverse=True)}
                    for product in sorted(products)]

        return self.db.pool.doReplicaRead(thd)

    @validatesInput
    def getDailyCounts(
        self,
        product: str,
        signatures: list[str],
        version: str | None = None,
        start_day: datetime.date | None = None,
        end_day: datetime.date | None = None,
    ) -> defer.Deferred:
        """Deferred of ``{signature: [count of each day of [start_day, end_day)]}`` for
        ``product`` (and ``version``), zero-filled, oldest day first: a sparkline's points.
        Defaults as in :meth:`getTopCrashers`."""
        requireString(product, "product", self.db.model.tcbs.c.product)
        if version is not None:
            requireString(version, "version", self.db.model.tcbs.c.version)
        if not isinstance(signatures, (list, tuple)):
            raise InvalidInputError("expected a list of signatures", field="signatures")
        for signature in signatures:
            requireString(signature, "signatures", self.db.model.tcbs.c.signature)
        start_day, end_day = requirePeriod(start_day, end_day)
        days = (end_day - start_day).days
        wanted = list(dict.fromkeys(signatures))
        tcbs = self.db.model.tcbs
        where = [tcbs.c.product == product, tcbs.c.day >= start_day, tcbs.c.day < end_day]
        if version is not None:
            where.append(tcbs.c.version == version)

        def thd(conn: sa.Connection) -> dict[str, list[int]]:
            counts = {signature: [0] * days for signature in wanted}
            for chunk in batched(wanted):
                query = (
                    sa.select(tcbs.c.signature, tcbs.c.day, sa.func.sum(tcbs.c.count))
                    .where(*where, tcbs.c.signature.in_(chunk))
                    .group_by(tcbs.c.signature, tcbs.c.day)
                )
                for signature, day, count in conn.execute(query):
                    counts[signature][(day - start_day).days] = int(count)
            return counts

        return self.db.pool.doReplicaRead(thd)

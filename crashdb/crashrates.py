"""Crash rates per usage and explosive crashes (SPEC 14; seed: Socorro's product_adu, throttle
and explosiveness).

Raw crash counts jump when a release doubles its users. ``product_adu`` holds the active daily
users (ADU) of each product version, fed from outside; ``product_throttles`` the share of a
product's crashes the collector keeps. ``getCrashRates`` divides the TCBS rollup's daily counts
by both; ``getExplosive`` scores each signature's last day (and last three days) against its
own previous days, as Socorro's ``update_explosiveness`` did.

Everything is computed in SQL over ``tcbs`` and ``product_adu``. ``getExplosive`` turns each
signature's ten days into columns (one statement, one ``GROUP BY signature``) and computes the
means, maximum, sample standard deviation and scores from those columns in a fixed order, so
every backend does the same floating-point operations in the same order; only the rounding of
the returned scores to four places is Python's.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer

from crashdb import model
from crashdb.base import DBConnectorComponent
from crashdb.exceptions import InvalidInputError
from crashdb.tcbs import DAY
from crashdb.validation import (
    requireDay,
    requireInteger,
    requireName,
    requirePeriod,
    requireString,
    validatesInput,
)

UTC = datetime.UTC


def _length(column: sa.Column) -> int | None:
    kind = column.type
    return kind.length if isinstance(kind, sa.String) else None


PRODUCT_LENGTH = _length(model.product_adu.c.product)
VERSION_LENGTH = _length(model.product_adu.c.version)
MAX_ADU = 2**63 - 1  # a PostgreSQL bigint
ADU_KEYS = ("day", "product", "version", "adu")

WINDOW_DAYS = 10  # the day scored and the nine before it
PER_MILLION = 1_000_000.0  # rates are crashes per million ADU
MIN_RATE = 10.0  # below this rate (or count) on the scored day(s), a score is 0
FLOOR = 30.0  # the divisor's floor m: 30 crashes per million ADU, or 30 crashes
SCORE_PLACES = 4


def _aduRow(row: Any, index: int) -> tuple[datetime.date, str, str, int]:
    """``(day, product, version, adu)`` of one ``addAdu`` row, checked."""
    if not isinstance(row, dict):
        raise InvalidInputError(f"expected a dict, got {type(row).__name__}", index=index)
    for name in row:
        if name not in ADU_KEYS:
            raise InvalidInputError("is not a known column", field=name, index=index)
    for name in ADU_KEYS:
        if row.get(name) is None:
            raise InvalidInputError("is required", field=name, index=index)
    try:
        requireDay(row["day"], "day")
    except InvalidInputError as error:
        raise InvalidInputError(error.message, field="day", index=index) from None
    product = requireName(row["product"], "product", PRODUCT_LENGTH, index)
    version = requireName(row["version"], "version", VERSION_LENGTH, index)
    adu = row["adu"]
    if type(adu) is not int:
        raise InvalidInputError(
            f"expected an integer, got {type(adu).__name__}", field="adu", index=index
        )
    if not 0 <= adu <= MAX_ADU:
        raise InvalidInputError(f"must be 0 or more, at most {MAX_ADU}", field="adu", index=index)
    return row["day"], product, version, adu


def _double(value: Any) -> sa.ColumnElement[float]:
    """``value`` (an expression or a Python number) as a double-precision float in SQL.

    Explicit, because PostgreSQL reads ``1000000.0`` as ``numeric``, whose arithmetic differs
    from the IEEE doubles SQLite and Python use.
    """
    if not isinstance(value, sa.ColumnElement):
        value = sa.literal(value)
    return sa.cast(value, sa.Double)


def _fenced(query: sa.Select) -> sa.Select:
    """``query`` as a subquery the planner computes once per row instead of merging it into the
    outer query: ``OFFSET 0`` stops PostgreSQL's subquery pull-up and SQLite's flattening,
    which would copy every expression of the layers below into each use above it (the
    scores use each rate dozens of times)."""
    return query.offset(0)


def _sumSeries(values: Sequence[sa.ColumnElement]) -> sa.ColumnElement[float]:
    """``values[0] + values[1] + ...``, added left to right in that order on every backend."""
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


class CrashRatesConnectorComponent(DBConnectorComponent):
    """Usage figures, throttles, crash rates and explosive signatures of each product."""

    @validatesInput
    def addAdu(self, rows: Sequence[dict[str, Any]]) -> defer.Deferred:
        """Store ``{day, product, version, adu}`` rows (a list); Deferred of the number of
        distinct (day, product, version) stored.

        A row for a (day, product, version) already stored replaces it, as does a later row of
        the same batch. All or nothing: a bad row raises InvalidInputError naming its ``index``
        and ``field``, and nothing is written.
        """
        latest: dict[tuple[datetime.date, str, str], int] = {}
        if not isinstance(rows, list | tuple):
            raise InvalidInputError(f"expected a list of rows, got {type(rows).__name__}")
        for index, row in enumerate(rows):
            day, product, version, adu = _aduRow(row, index)
            latest[(day, product, version)] = adu
        values = [
            {"day": day, "product": product, "version": version, "adu": adu}
            for (day, product, version), adu in latest.items()
        ]
        table = model.product_adu

        def thd(conn: sa.Connection) -> int:
            if values:
                insert = self.db.backend.insert(table)
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=["day", "product", "version"],
                        set_={"adu": insert.excluded.adu},
                    ),
                    values,
                )
            return len(values)

        return self.db.pool.do(thd)

    @validatesInput
    def setThrottle(self, product: str, throttle: float) -> defer.Deferred:
        """Record that the collector keeps the fraction ``throttle`` (0 < throttle ≤ 1) of
        ``product``'s crashes; Deferred of None. A product never set keeps them all (1)."""
        requireName(product, "product", PRODUCT_LENGTH)
        if isinstance(throttle, bool) or not isinstance(throttle, int | float):
            raise InvalidInputError(
                f"expected a number, got {type(throttle).__name__}", field="throttle"
            )
        if not 0 < throttle <= 1:  # NaN fails too
            raise InvalidInputError("must be above 0 and at most 1", field="throttle")
        table = model.product_throttles

        def thd(conn: sa.Connection) -> None:
            insert = self.db.backend.insert(table).values(
                product=product, throttle=float(throttle)
            )
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["product"], set_={"throttle": insert.excluded.throttle}
                )
            )

        return self.db.pool.do(thd)

    @validatesInput
    def getThrottle(self, product: str) -> defer.Deferred:
        """Deferred of ``product``'s throttle: 1.0 unless ``setThrottle`` said otherwise."""
        requireName(product, "product", PRODUCT_LENGTH)

        def thd(conn: sa.Connection) -> float:
            return float(conn.execute(sa.select(self._throttleOf(product))).scalar_one())

        return self.db.pool.do(thd)

    @validatesInput
    def getCrashRates(
        self,
        product: str,
        version: str | None = None,
        start_day: datetime.date | None = None,
        end_day: datetime.date | None = None,
    ) -> defer.Deferred:
        """Crashes per usage of ``product`` (and ``version``), day by day over [start_day,
        end_day) (defaults: the week up to today, UTC).

        Deferred of ``[{day, crashes, adjusted, adu, per_100_adu}]``, one per day, oldest
        first, days without data included: ``crashes`` from the TCBS rollup, ``adjusted =
        crashes / throttle``, ``adu`` summed over the versions (None without an ADU row),
        ``per_100_adu = adjusted × 100 / adu`` (None when ``adu`` is None or 0).
        """
        requireName(product, "product", PRODUCT_LENGTH)
        if version is not None:
            requireString(version, "version", VERSION_LENGTH)
        start_day, end_day = requirePeriod(start_day, end_day)
        query = self._dailyRatesQuery(product, version, start_day, end_day)

        def thd(conn: sa.Connection) -> list[dict[str, Any]]:
            found = {row.day: row for row in conn.execute(query)}
            days = []
            day = start_day
            while day < end_day:
                days.append(self._rateToDict(day, found.get(day)))
                day += DAY
            return days

        return self.db.pool.do(thd)

    @validatesInput
    def getExplosive(
        self,
        product: str,
        day: datetime.date,
        version: str | None = None,
        limit: int = 20,
    ) -> defer.Deferred:
        """Signatures of ``product`` (and ``version``) whose crashes exploded on ``day``.

        Deferred of ``[{signature, one_day, three_day, counts}]``: Socorro's one-day and
        three-day explosiveness scores (SPEC 14) of every signature with crashes on ``day``,
        ``counts`` its daily crashes over the ten days ending on ``day``, oldest first. Only
        signatures with a score above 0 are listed, by their larger score descending, then
        signature; scores are rounded to 4 places. Rates use the ADU when it is known for all
        ten days, else the counts themselves.
        """
        requireName(product, "product", PRODUCT_LENGTH)
        requireDay(day, "day")
        if version is not None:
            requireString(version, "version", VERSION_LENGTH)
        requireInteger(limit, "limit", minimum=1)

        def thd(conn: sa.Connection) -> list[dict[str, Any]]:
            query = self._explosiveQuery(conn, product, day, version, limit)
            return [self._explosiveToDict(row) for row in conn.execute(query)]

        return self.db.pool.do(thd)

    # -- queries ----------------------------------------------------------------------------------

    @staticmethod
    def _throttleOf(product: str) -> sa.ColumnElement[float]:
        """``product``'s throttle, 1 when none was set."""
        throttles = model.product_throttles
        kept = sa.select(throttles.c.throttle).where(throttles.c.product == product)
        return sa.func.coalesce(kept.scalar_subquery(), _double(1.0))

    def _dailyRatesQuery(
        self, product: str, version: str | None, first: datetime.date, end: datetime.date
    ) -> sa.Select:
        """A row per day of [first, end) having crashes or ADU, with its rates."""
        tcbs, usage = model.tcbs, model.product_adu
        crashes = sa.select(
            tcbs.c.day, tcbs.c.count.label("crashes"), sa.null().cast(sa.BigInteger).label("adu")
        ).where(tcbs.c.product == product, tcbs.c.day >= first, tcbs.c.day < end)
        users = sa.select(
            usage.c.day, sa.literal(0, sa.Integer).label("crashes"), usage.c.adu
        ).where(usage.c.product == product, usage.c.day >= first, usage.c.day < end)
        if version is not None:
            crashes = crashes.where(tcbs.c.version == version)
            users = users.where(usage.c.version == version)
        both = sa.union_all(crashes, users).subquery("both")
        total = sa.cast(sa.func.sum(both.c.crashes), sa.BigInteger)
        adu = sa.cast(sa.func.sum(both.c.adu), sa.BigInteger)  # PostgreSQL's sum(bigint): numeric
        adjusted = _double(total) / self._throttleOf(product)
        per100 = sa.case((adu > 0, adjusted * _double(100.0) / _double(adu)))
        return (
            sa.select(
                both.c.day,
                total.label("crashes"),
                adjusted.label("adjusted"),
                adu.label("adu"),
                per100.label("per_100_adu"),
            )
            .group_by(both.c.day)
        )

    def _explosiveQuery(
        self,
        conn: sa.Connection,
        product: str,
        day: datetime.date,
        version: str | None,
        limit: int,
    ) -> sa.Select:
        """The explosiveness of ``day``'s signatures, in one statement (see the module's doc):
        from each signature's ten rates, the means, maximum and deviation, then the scores."""
        rates = self._tenDayRates(product, day, version)
        r = [rates.c[f"r{k}"] for k in range(WINDOW_DAYS)]
        statsQuery = sa.select(
            rates,
            (_sumSeries(r[:9]) / _double(9.0)).label("mean9"),
            self.db.backend.greatest(*r[:9]).label("max9"),
            (_sumSeries(r[7:]) / _double(3.0)).label("mean3"),
            (_sumSeries(r[:7]) / _double(7.0)).label("mean7"),
        )
        stats = _fenced(statsQuery).subquery("stats")

        s = stats.c
        deviations = [(s[f"r{k}"] - s.mean7) * (s[f"r{k}"] - s.mean7) for k in range(7)]
        stddev7 = self.db.backend.squareRoot(conn, _sumSeries(deviations) / _double(6.0))
        oneDay = sa.case(
            (s.r9 > MIN_RATE, (s.r9 - s.mean9) / self.db.backend.greatest(s.max9 - s.mean9, s.m)),
            else_=_double(0.0),
        )
        threeDay = sa.case(
            (s.mean3 > MIN_RATE, (s.mean3 - s.mean7) / self.db.backend.greatest(stddev7, s.m)),
            else_=_double(0.0),
        )
        scoresQuery = sa.select(
            s.signature,
            *(s[f"c{k}"] for k in range(WINDOW_DAYS)),
            oneDay.label("one_day"),
            threeDay.label("three_day"),
        )
        scores = _fenced(scoresQuery).subquery("scores")

        return (
            sa.select(scores)
            .where(sa.or_(scores.c.one_day > 0, scores.c.three_day > 0))
            .order_by(
                self.db.backend.greatest(scores.c.one_day, scores.c.three_day).desc(),
                self.db.backend.codePointOrder(scores.c.signature),
            )
            .limit(limit)
        )

    def _tenDayRates(
        self, product: str, day: datetime.date, version: str | None
    ) -> sa.Subquery:
        """A row per signature with crashes on ``day``: ``c0``…``c9``, its crashes on day−9 …
        day; ``r0``…``r9``, the rates compared (per million ADU when the ten days' ADU
        ``a0``…``a9`` are all known, else the counts themselves); ``m``, the floor."""
        first = day - (WINDOW_DAYS - 1) * DAY
        days = [first + offset * DAY for offset in range(WINDOW_DAYS)]
        tcbs, usage = model.tcbs, model.product_adu

        aduWhere = [usage.c.product == product, usage.c.day >= first, usage.c.day <= day]
        if version is not None:
            aduWhere.append(usage.c.version == version)
        aduByDay = (
            sa.select(usage.c.day, sa.func.sum(usage.c.adu).label("adu"))
            .where(*aduWhere)
            .group_by(usage.c.day)
            .having(sa.func.sum(usage.c.adu) > 0)
            .subquery("adu_by_day")
        )
        scale = sa.select(
            sa.func.count().label("known_days"),
            *(
                _double(sa.func.max(sa.case((aduByDay.c.day == d, aduByDay.c.adu)))).label(f"a{k}")
                for k, d in enumerate(days)
            ),
        ).subquery("scale")

        countWhere = [tcbs.c.product == product, tcbs.c.day >= first, tcbs.c.day <= day]
        if version is not None:
            countWhere.append(tcbs.c.version == version)
        daily = [sa.func.sum(sa.case((tcbs.c.day == d, tcbs.c.count), else_=0)) for d in days]
        counts = (
            sa.select(tcbs.c.signature, *(c.label(f"c{k}") for k, c in enumerate(daily)))
            .where(*countWhere)
            .group_by(tcbs.c.signature)
            .having(daily[-1] > 0)
            .subquery("counts")
        )

        known = scale.c.known_days == WINDOW_DAYS
        ratesQuery = sa.select(
            counts,
            *(
                sa.case(
                    (known, _double(counts.c[f"c{k}"]) * _double(PER_MILLION) / scale.c[f"a{k}"]),
                    else_=_double(counts.c[f"c{k}"]),
                ).label(f"r{k}")
                for k in range(WINDOW_DAYS)
            ),
            sa.case(
                (known, _double(FLOOR * PER_MILLION) / scale.c[f"a{WINDOW_DAYS - 1}"]),
                else_=_double(FLOOR),
            ).label("m"),
        ).select_from(counts.join(scale, sa.true()))
        return _fenced(ratesQuery).subquery("rates")


    # -- rows to dicts ----------------------------------------------------------------------------

    @staticmethod
    def _rateToDict(day: datetime.date, row: sa.Row | None) -> dict[str, Any]:
        if row is None:
            return {"day": day, "crashes": 0, "adjusted": 0.0, "adu": None, "per_100_adu": None}
        per100 = row.per_100_adu
        return {
            "day": day,
            "crashes": int(row.crashes),
            "adjusted": float(row.adjusted),
            "adu": None if row.adu is None else int(row.adu),
            "per_100_adu": None if per100 is None else float(per100),
        }

    @staticmethod
    def _explosiveToDict(row: sa.Row) -> dict[str, Any]:
        values = row._mapping
        return {
            "signature": values["signature"],
            "one_day": round(float(values["one_day"]), SCORE_PLACES),
            "three_day": round(float(values["three_day"]), SCORE_PLACES),
            "counts": [int(values[f"c{k}"]) for k in range(WINDOW_DAYS)],
        }

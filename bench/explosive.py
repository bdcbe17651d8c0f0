"""Explosive-crashes benchmark: ``getExplosive`` against the same computation written by hand.

Run as ``python bench/explosive.py [--db POSTGRES_URL] [--repeat N]`` (a throwaway PostgreSQL
otherwise); SQLite is measured too. The rollup holds a product with 5,000 signatures a day over
30 days (most split over several versions), another product besides, and ten days of ADU.
Two hand-written SQL statements per backend compute SPEC 14's scores as one would write them
directly: *calendar* cross-joins the signatures with the ten days and aggregates with FILTERed
``avg``/``max`` and ``stddev_samp`` (sums of squares on SQLite, which has no ``stddev``);
*sums* aggregates the per-day sums without a calendar, counting the missing days through the
divisors. Both run through the same engine and return the same list as ``getExplosive``, which
the benchmark checks. The contenders take turns, repetition by repetition, so load from
elsewhere weighs on all alike. The goal: ``getExplosive`` takes at most 2 times the median time
of the faster hand-written statement, on each backend.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sqlalchemy as sa  # noqa: E402

from bench._common import freshDatabase, postgresUrl  # noqa: E402
from crashdb.test.util.db import upgradeUrl  # noqa: E402

DAY = datetime.timedelta(days=1)
SCORED = datetime.date(2024, 3, 20)
DAYS = 30  # rolled up, the scored day last
SIGNATURES = 5000
GOAL = 2.0

# The hand-written baselines; :first is SCORED - 9 days, :day SCORED.
POSTGRES_BASELINE = """
WITH days AS (
    SELECT d::date AS day
    FROM generate_series(CAST(:first AS timestamp), CAST(:day AS timestamp), interval '1 day') AS d
), adu AS (
    SELECT day, sum(adu)::float8 AS adu FROM product_adu
    WHERE product = :product AND day BETWEEN :first AND :day
    GROUP BY day HAVING sum(adu) > 0
), usage AS (
    SELECT count(*) = 10 AS known,
           CASE WHEN count(*) = 10 THEN 30e6::float8 / max(adu) FILTER (WHERE day = :day)
                ELSE 30::float8 END AS m
    FROM adu
), counts AS (
    SELECT signature, day, sum(count) AS c FROM tcbs
    WHERE product = :product AND day BETWEEN :first AND :day
    GROUP BY signature, day
), rates AS (
    SELECT s.signature, d.day, coalesce(c.c, 0) AS c,
           CASE WHEN u.known THEN coalesce(c.c, 0) * 1e6::float8 / a.adu
                ELSE coalesce(c.c, 0)::float8 END AS r
    FROM (SELECT signature FROM counts WHERE day = :day) AS s
    CROSS JOIN days AS d CROSS JOIN usage AS u
    LEFT JOIN counts AS c ON c.signature = s.signature AND c.day = d.day
    LEFT JOIN adu AS a ON a.day = d.day
), stats AS (
    SELECT signature, array_agg(c ORDER BY day) AS counts,
           max(r) FILTER (WHERE day = :day) AS r_day,
           avg(r) FILTER (WHERE day < :day) AS mean9,
           max(r) FILTER (WHERE day < :day) AS max9,
           avg(r) FILTER (WHERE day >= :day - 2) AS mean3,
           avg(r) FILTER (WHERE day <= :day - 3) AS mean7,
           stddev_samp(r) FILTER (WHERE day <= :day - 3) AS sd7
    FROM rates GROUP BY signature
), scores AS (
    SELECT signature, counts,
           CASE WHEN r_day > 10 THEN (r_day - mean9) / greatest(max9 - mean9, m) ELSE 0 END
               AS one_day,
           CASE WHEN mean3 > 10 THEN (mean3 - mean7) / greatest(sd7, m) ELSE 0 END AS three_day
    FROM stats CROSS JOIN usage
)
SELECT signature, one_day, three_day, counts FROM scores
WHERE one_day > 0 OR three_day > 0
ORDER BY greatest(one_day, three_day) DESC, signature COLLATE "C"
LIMIT :limit
"""

SQLITE_BASELINE = """
WITH RECURSIVE days(day) AS (
    SELECT :first UNION ALL SELECT date(day, '+1 day') FROM days WHERE day < :day
), adu AS (
    SELECT day, CAST(sum(adu) AS REAL) AS adu FROM product_adu
    WHERE product = :product AND day BETWEEN :first AND :day
    GROUP BY day HAVING sum(adu) > 0
), usage AS (
    SELECT count(*) = 10 AS known,
           CASE WHEN count(*) = 10 THEN 30e6 / max(adu) FILTER (WHERE day = :day)
                ELSE 30.0 END AS m
    FROM adu
), counts AS (
    SELECT signature, day, sum(count) AS c FROM tcbs
    WHERE product = :product AND day BETWEEN :first AND :day
    GROUP BY signature, day
), rates AS (
    SELECT s.signature, d.day, coalesce(c.c, 0) AS c,
           CASE WHEN u.known THEN coalesce(c.c, 0) * 1e6 / a.adu
                ELSE CAST(coalesce(c.c, 0) AS REAL) END AS r
    FROM (SELECT signature FROM counts WHERE day = :day) AS s
    CROSS JOIN days AS d CROSS JOIN usage AS u
    LEFT JOIN counts AS c ON c.signature = s.signature AND c.day = d.day
    LEFT JOIN adu AS a ON a.day = d.day
), stats AS (
    SELECT signature, group_concat(c, ' ') AS counts,
           max(r) FILTER (WHERE day = :day) AS r_day,
           avg(r) FILTER (WHERE day < :day) AS mean9,
           max(r) FILTER (WHERE day < :day) AS max9,
           avg(r) FILTER (WHERE day >= :last3) AS mean3,
           avg(r) FILTER (WHERE day <= :first7end) AS mean7,
           sum(r * r) FILTER (WHERE day <= :first7end) AS squares7,
           sum(r) FILTER (WHERE day <= :first7end) AS sum7
    FROM (SELECT * FROM rates ORDER BY signature, day) GROUP BY signature
), scores AS (
    SELECT signature, counts,
           CASE WHEN r_day > 10 THEN (r_day - mean9) / max(max9 - mean9, m) ELSE 0 END
               AS one_day,
           CASE WHEN mean3 > 10
                THEN (mean3 - mean7)
                     / max(sqrt(max((squares7 - sum7 * sum7 / 7) / 6, 0)), m)
                ELSE 0 END AS three_day
    FROM stats CROSS JOIN usage
)
SELECT signature, one_day, three_day, counts FROM scores
WHERE one_day > 0 OR three_day > 0
ORDER BY max(one_day, three_day) DESC, signature
LIMIT :limit
"""


# The second way by hand: per-day sums without a calendar; days without crashes enter the means
# and the variance through the divisors (``sum(r*r) - 7 mean²``), the counts through ten
# FILTERed sums. :dN is day N of the ten (0 the oldest).
SUMS_BASELINE = """
WITH adu AS (
    SELECT day, CAST(sum(adu) AS {double}) AS adu FROM product_adu
    WHERE product = :product AND day BETWEEN :d0 AND :d9
    GROUP BY day HAVING sum(adu) > 0
), usage AS (
    SELECT count(*) = 10 AS known,
           CASE WHEN count(*) = 10 THEN 30e6 / max(adu) FILTER (WHERE day = :d9)
                ELSE 30.0 END AS m
    FROM adu
), rates AS (
    SELECT t.signature, t.day, t.c,
           CASE WHEN u.known THEN t.c * 1e6 / a.adu ELSE CAST(t.c AS {double}) END AS r
    FROM (SELECT signature, day, sum(count) AS c FROM tcbs
          WHERE product = :product AND day BETWEEN :d0 AND :d9
          GROUP BY signature, day) AS t
    CROSS JOIN usage AS u LEFT JOIN adu AS a ON a.day = t.day
), stats AS (
    SELECT signature, {counts},
           sum(r) FILTER (WHERE day = :d9) AS r_day,
           sum(r) FILTER (WHERE day < :d9) / 9 AS mean9,
           max(r) FILTER (WHERE day < :d9) AS max9,
           sum(r) FILTER (WHERE day >= :d7) / 3 AS mean3,
           sum(r) FILTER (WHERE day <= :d6) / 7 AS mean7,
           sum(r * r) FILTER (WHERE day <= :d6) AS squares7
    FROM rates GROUP BY signature HAVING sum(c) FILTER (WHERE day = :d9) > 0
), scores AS (
    SELECT signature, {countNames},
           CASE WHEN r_day > 10
                THEN (r_day - coalesce(mean9, 0))
                     / {greatest}(coalesce(max9, 0) - coalesce(mean9, 0), m)
                ELSE 0 END AS one_day,
           CASE WHEN coalesce(mean3, 0) > 10
                THEN (mean3 - coalesce(mean7, 0))
                     / {greatest}(sqrt({greatest}((coalesce(squares7, 0)
                                       - 7 * coalesce(mean7, 0) * coalesce(mean7, 0)) / 6, 0)), m)
                ELSE 0 END AS three_day
    FROM stats CROSS JOIN usage
)
SELECT * FROM scores
WHERE one_day > 0 OR three_day > 0
ORDER BY {greatest}(one_day, three_day) DESC, signature {collate}
LIMIT :limit
"""


def sumsBaseline(dialect: str) -> str:
    return SUMS_BASELINE.format(
        double="REAL" if dialect == "sqlite" else "DOUBLE PRECISION",
        greatest="max" if dialect == "sqlite" else "greatest",
        collate="" if dialect == "sqlite" else 'COLLATE "C"',
        counts=", ".join(f"coalesce(sum(c) FILTER (WHERE day = :d{k}), 0) AS c{k}"
                         for k in range(10)),
        countNames=", ".join(f"c{k}" for k in range(10)),
    )

def seed(url: str) -> int:
    """Fill ``tcbs`` and ``product_adu`` with bulk inserts; the number of tcbs rows."""
    rng = random.Random(16)
    engine = sa.create_engine(url)
    tcbs = sa.table("tcbs", *(sa.column(name) for name in (
        "day", "product", "version", "signature", "count", "win_count", "mac_count",
        "lin_count", "hang_count", "startup_count")))
    adu = sa.table("product_adu", *(sa.column(n) for n in ("day", "product", "version", "adu")))
    days = [SCORED - (DAYS - 1 - k) * DAY for k in range(DAYS)]
    rows = []
    for product, signatures in (("Firefox", SIGNATURES), ("Thunderbird", SIGNATURES // 2)):
        for n in range(signatures):
            rate = rng.lognormvariate(1.0, 1.3)
            versions = ["16.0", "17.0b3", "18.0a2"][: rng.choice([1, 2, 2, 3])]
            for k, day in enumerate(days):
                count = int(rng.expovariate(1 / rate)) + (day == SCORED)
                if n % 50 == 0 and k >= DAYS - 3:
                    count += rng.randrange(20, 400)  # a few explode
                for v, version in enumerate(versions):
                    share = count // len(versions) + (v < count % len(versions))
                    if share:
                        rows.append({"day": day, "product": product, "version": version,
                                     "signature": f"{product}::sig{n:05d}", "count": share,
                                     "win_count": share, "mac_count": 0, "lin_count": 0,
                                     "hang_count": 0, "startup_count": 0})
    usage = [{"day": day, "product": product, "version": version,
              "adu": rng.randrange(2_000_000, 3_000_000)}
             for day in days for product in ("Firefox", "Thunderbird")
             for version in ("16.0", "17.0b3", "18.0a2")]
    with engine.begin() as conn:
        for start in range(0, len(rows), 10_000):
            conn.execute(tcbs.insert(), rows[start:start + 10_000])
        conn.execute(adu.insert(), usage)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return len(rows)


def measure(url: str, repeat: int) -> dict[str, float]:
    """Median seconds of each contender, taking turns; the list each returns is checked."""
    from crashdb.connector import DBConnector
    from crashdb.pool import SynchronousDBPool

    db = DBConnector(url)
    db.pool = SynchronousDBPool(db.engine, db.backend)  # time the work, not thread hand-offs
    dialect = db.backend.name
    calendar = sa.text(SQLITE_BASELINE if dialect == "sqlite" else POSTGRES_BASELINE)
    sums = sa.text(sumsBaseline(dialect))
    first = SCORED - 9 * DAY
    common = {"product": "Firefox", "limit": 20}
    calendarParameters = {**common, "first": first, "day": SCORED}
    if dialect == "sqlite":
        calendarParameters.update(last3=SCORED - 2 * DAY, first7end=SCORED - 3 * DAY)
    sumsParameters = {**common, **{f"d{k}": first + k * DAY for k in range(10)}}
    if dialect == "sqlite":  # days are text there, and these statements bypass the model
        calendarParameters, sumsParameters = (
            {k: v.isoformat() if isinstance(v, datetime.date) else v for k, v in p.items()}
            for p in (calendarParameters, sumsParameters))

    def ours() -> list[dict]:
        found: list = []
        db.crashrates.getExplosive("Firefox", SCORED).addCallback(found.append)
        return found[0]

    def byHand(statement: sa.TextClause, parameters: dict) -> Callable[[], list]:
        def run() -> list:
            with db.engine.connect() as conn:
                return conn.execute(statement, parameters).all()
        return run

    contenders = {"getExplosive": ours, "calendar": byHand(calendar, calendarParameters),
                  "sums": byHand(sums, sumsParameters)}
    expected = ours()
    for name in ("calendar", "sums"):
        _check(expected, contenders[name]())
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, function in contenders.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    db.engine.dispose()
    return {name: statistics.median(values) for name, values in times.items()}


def _counts(row: Any) -> list[int]:
    if hasattr(row, "c0"):
        return [int(getattr(row, f"c{k}")) for k in range(10)]
    if isinstance(row.counts, list):
        return row.counts
    return [int(c) for c in row.counts.split()]


def _check(ours: list[dict], baseline: list) -> None:
    """Both lists name the same signatures in the same order, with the same scores."""
    assert len(ours) == len(baseline) == 20, (len(ours), len(baseline))
    for mine, theirs in zip(ours, baseline, strict=True):
        assert mine["signature"] == theirs.signature, (mine, theirs)
        assert mine["counts"] == _counts(theirs), (mine, theirs)
        assert abs(mine["one_day"] - theirs.one_day) < 1e-4, (mine, theirs)
        assert abs(mine["three_day"] - theirs.three_day) < 1e-4, (mine, theirs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="PostgreSQL URL (default: a throwaway server)")
    parser.add_argument("--repeat", type=int, default=21, help="timed turns each (21)")
    args = parser.parse_args()
    results, rows = {}, {}
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/bench.sqlite"
        upgradeUrl(url)
        rows["sqlite"] = seed(url)
        results["sqlite"] = measure(url, args.repeat)
    with postgresUrl(args.db) as admin:
        url = freshDatabase(admin, "crashdb_bench_explosive")
        rows["postgresql"] = seed(url)
        results["postgresql"] = measure(url, args.repeat)
    print(f"getExplosive over {SIGNATURES:,} signatures a day, ten days scored; median of "
          f"{args.repeat} turns each")
    print(f"{'backend':<11} {'tcbs rows':>10} {'getExplosive':>13} {'by hand:':>9} "
          f"{'calendar':>9} {'sums':>9} {'ratio':>6}  goal <= {GOAL} of the faster by hand")
    missed = False
    for backend, r in results.items():
        ratio = r["getExplosive"] / min(r["calendar"], r["sums"])
        missed |= ratio > GOAL
        print(f"{backend:<11} {rows[backend]:>10,} {r['getExplosive'] * 1000:>10.1f} ms "
              f"{'':>9} {r['calendar'] * 1000:>6.1f} ms {r['sums'] * 1000:>6.1f} ms "
              f"{ratio:>6.2f}  {'ok' if ratio <= GOAL else 'MISSED'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Rollup and signature benchmark: runDay, getSummary and getCorrelations against hand-written SQL.

Run as ``python bench/rollups.py [--db POSTGRES_URL] [--reports N] [--sqlite-reports N]`` (a
throwaway PostgreSQL otherwise). One week of reports (1,000,000 on PostgreSQL by default, fewer
on SQLite), three add-ons each on average, days growing in volume (day k holds k/28 of the
week), and one signature with 10,000 reports in the week (scaled with the week on SQLite).

Goals (issue 15): the ``tcbs`` and ``signatures`` rollups of a day at most 1.5 times the
hand-written ``INSERT ... SELECT ... GROUP BY`` per table; their cost per report about the same
on a small and a large day (linear in the day's reports); ``getSummary`` and
``getCorrelations`` each at most 2 times the hand-written SQL returning the same numbers, when
they read the reports (no day rolled up). Exit status 1 if a goal is missed.

Then (issue 18) every day of the week is rolled up by ``signatures.updateSummaries`` (timed per
report, on the small and the large day), and the two reads are timed again, now from the
rollup, against the same hand-written SQL over the reports: the speed-up the rollup buys.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sqlalchemy as sa  # noqa: E402

from bench._common import freshDatabase, median, postgresUrl  # noqa: E402
from crashdb.partitions import WEEK, partitionName  # noqa: E402
from crashdb.test.util.db import upgradeUrl  # noqa: E402

UTC = datetime.UTC
MONDAY = datetime.datetime(2020, 10, 12, tzinfo=UTC)
DAY = datetime.timedelta(days=1)
TARGET = "nsTarget::Crash"
PRODUCTS = (("Firefox", ("16.0", "17.0b3", "18.0a2"), 0.8), ("Thunderbird", ("16.0.2",), 0.2))
ADDONS = [f"addon{n}@example.org" for n in range(60)]
SIGNATURES = [f"sig{n}::Method" for n in range(3000)]
BATCH = 5000
REPEAT = 5


def makeReports(count: int, target: int, seed: int = 15) -> list[dict[str, Any]]:
    """``count`` reports over the week, ``target`` of them with signature TARGET."""
    rng = random.Random(seed)
    weights = [day + 1 for day in range(7)]
    installs = [MONDAY - datetime.timedelta(seconds=rng.randrange(200 * 86400))
                for _ in range(count // 5)]
    zipf = [1 / (rank + 1) ** 1.1 for rank in range(len(SIGNATURES))]
    reports = []
    targets = set(rng.sample(range(count), target))
    signatures = rng.choices(SIGNATURES, zipf, k=count)
    for n in range(count):
        day = rng.choices(range(7), weights)[0]
        processed = MONDAY + day * DAY + datetime.timedelta(seconds=rng.random() * 86399)
        product, versions, _ = rng.choices(PRODUCTS, [p[2] for p in PRODUCTS])[0]
        age = rng.randrange(3600, 100 * 86400)
        install = rng.choice(installs)
        signature = TARGET if n in targets else signatures[n]
        addons = rng.sample(ADDONS, rng.randrange(7))  # 0 to 6: three on average
        if signature == TARGET and rng.random() < 0.6:
            addons = [*addons[:2], "planted@example.org"]
        reports.append({
            "uuid": f"{n:08d}-bench-rollups",
            "date_processed": processed,
            "client_crash_date": install + datetime.timedelta(seconds=age),
            "install_age": age,
            "product": product,
            "version": rng.choice(versions),
            "build": rng.choice(["20201001", "20201005", "20201008", None]),
            "signature": signature,
            "os_name": rng.choice(["Windows NT", "Windows NT", "Mac OS X", "Linux"]),
            "os_version": rng.choice(["6.1.7601", "10.0.19041", "10.15.7", "5.4.0"]),
            "cpu_name": rng.choice(["x86", "amd64", "arm64"]),
            "cpu_info": rng.choice(["GenuineIntel family 6", "AuthenticAMD family 23", None]),
            "flash_version": rng.choice(["32.0.0.445", None, None]),
            "process_type": rng.choice(["plugin", None, None, None]),
            "release_channel": rng.choice(["release", "beta", "aurora"]),
            "reason": rng.choice(["EXCEPTION_ACCESS_VIOLATION_READ", "SIGSEGV"]),
            "uptime": int(rng.lognormvariate(6, 2)),
            "hangid": "hang" if rng.random() < 0.05 else None,
            "extensions": [{"extension_id": a, "extension_version": "1.0"} for a in addons],
        })
    return reports


def connector(url: str):
    from crashdb.connector import DBConnector
    from crashdb.pool import SynchronousDBPool

    db = DBConnector(url)
    db.pool = SynchronousDBPool(db.engine, db.backend)  # time the SQL, not thread hand-offs
    return db


def result(deferred) -> Any:
    """The result of a Deferred that has already fired (the synchronous pool)."""
    found: list[Any] = []
    deferred.addBoth(found.append)
    if hasattr(found[0], "raiseException"):
        found[0].raiseException()
    return found[0]


# -- the hand-written SQL -------------------------------------------------------------------------


def handRollup(conn: sa.Connection, dialect: str, day: datetime.date) -> None:
    """The day's three rollup tables' rows, one INSERT ... SELECT ... GROUP BY per table, into
    empty copies of the tables."""
    reports = "reports" if dialect == "postgresql" else partitionName("reports", MONDAY)
    collate = ' COLLATE "C"' if dialect == "postgresql" else ""
    start = datetime.datetime(day.year, day.month, day.day, tzinfo=UTC)
    bounds: dict[str, Any] = {"start": start, "end": start + DAY, "day": day}
    if dialect == "sqlite":
        bounds.update(start=str(start.replace(tzinfo=None)) + ".000000",
                      end=str((start + DAY).replace(tzinfo=None)) + ".000000")
    where = "date_processed >= :start AND date_processed < :end"
    conn.execute(sa.text(f"""
        INSERT INTO bench_tcbs (day, product, version, signature, count, win_count, mac_count,
                                lin_count, hang_count, startup_count)
        SELECT :day, product, coalesce(version, ''), coalesce(signature, ''), count(*),
               sum(CASE WHEN os_name = 'Windows NT' THEN 1 ELSE 0 END),
               sum(CASE WHEN os_name = 'Mac OS X' THEN 1 ELSE 0 END),
               sum(CASE WHEN os_name = 'Linux' THEN 1 ELSE 0 END),
               sum(CASE WHEN hangid IS NOT NULL AND hangid <> '' THEN 1 ELSE 0 END),
               sum(CASE WHEN uptime < 60 THEN 1 ELSE 0 END)
        FROM {reports} WHERE {where} AND product IS NOT NULL
        GROUP BY product, coalesce(version, ''), coalesce(signature, '')"""), bounds)
    conn.execute(sa.text(f"""
        INSERT INTO bench_signatures (signature, first_report, first_build, last_report)
        SELECT signature, min(date_processed), min(build{collate}), max(date_processed)
        FROM {reports} WHERE {where} AND signature IS NOT NULL AND signature <> ''
        GROUP BY signature"""), bounds)
    conn.execute(sa.text(f"""
        INSERT INTO bench_signature_versions
        SELECT signature, product, coalesce(version, ''), min(date_processed),
               min(build{collate}), max(date_processed)
        FROM {reports} WHERE {where} AND signature IS NOT NULL AND signature <> ''
          AND product IS NOT NULL
        GROUP BY signature, product, coalesce(version, '')"""), bounds)


def periodSql(dialect: str) -> tuple[str, str, dict[str, Any]]:
    reports = "reports" if dialect == "postgresql" else partitionName("reports", MONDAY)
    extensions = "extensions" if dialect == "postgresql" else partitionName("extensions", MONDAY)
    if dialect == "postgresql":
        bounds: dict[str, Any] = {"start": MONDAY, "end": MONDAY + WEEK}
    else:
        bounds = {"start": str(MONDAY.replace(tzinfo=None)) + ".000000",
                  "end": str((MONDAY + WEEK).replace(tzinfo=None)) + ".000000"}
    return reports, extensions, bounds


def handSummary(conn: sa.Connection, dialect: str) -> dict[str, Any]:
    reports, extensions, bounds = periodSql(dialect)
    if dialect == "postgresql":
        install = ("(extract(epoch FROM client_crash_date) * 1000000)::bigint"
                   " - install_age::bigint * 1000000")
        collate = ' COLLATE "C"'
    else:
        install = ("(strftime('%s', client_crash_date) * 1000000"
                   " + CAST(substr(client_crash_date, 21, 6) AS INTEGER))"
                   " - install_age * 1000000")
        collate = ""
    facets = " UNION ALL ".join(
        f"SELECT '{field}', CAST({field} AS TEXT), count(*) FROM s GROUP BY {field}"
        for field in ("product", "version", "os_name", "os_version", "cpu_name", "build",
                      "process_type", "release_channel", "reason"))
    rows = conn.execute(sa.text(f"""
        WITH s AS (SELECT id, date_processed, client_crash_date, install_age, uptime, product,
                          version, os_name, os_version, cpu_name, build, process_type,
                          release_channel, reason
                   FROM {reports}
                   WHERE signature = :signature AND date_processed >= :start
                     AND date_processed < :end)
        SELECT * FROM (
          SELECT '#count' AS facet, NULL AS term, count(*) AS n FROM s
          UNION ALL SELECT '#installations', NULL, count(DISTINCT {install}) FROM s
          UNION ALL {facets}
          UNION ALL SELECT 'uptime', b, count(*) FROM (SELECT CASE
              WHEN uptime >= 0 AND uptime < 60 THEN '< 1 min'
              WHEN uptime >= 60 AND uptime < 300 THEN '1-5 min'
              WHEN uptime >= 300 AND uptime < 900 THEN '5-15 min'
              WHEN uptime >= 900 AND uptime < 3600 THEN '15-60 min'
              WHEN uptime >= 3600 THEN '> 1 hour' END AS b FROM s) AS u GROUP BY b
          UNION ALL SELECT 'addon', e.extension_id, count(DISTINCT e.report_id)
              FROM {extensions} e
              WHERE (e.report_id, e.date_processed) IN (SELECT id, date_processed FROM s)
              GROUP BY e.extension_id
        ) AS r ORDER BY facet, n DESC, term IS NULL, term{collate}"""),
        {**bounds, "signature": TARGET}).all()
    return summaryFromRows(rows)


def summaryFromRows(rows) -> dict[str, Any]:
    summary: dict[str, Any] = {"facets": {}}
    for facet, term, n in rows:
        if facet == "#count":
            summary["count"] = n
        elif facet == "#installations":
            summary["installations"] = n
        else:
            summary["facets"].setdefault(facet, []).append((term, n))
    return summary


def handCorrelations(conn: sa.Connection, dialect: str, product: str) -> Any:
    reports, extensions, bounds = periodSql(dialect)
    collate = ' COLLATE "C"' if dialect == "postgresql" else ""
    mine = conn.execute(sa.text(f"""
        SELECT count(*) FROM {reports} WHERE signature = :signature AND product = :product
          AND date_processed >= :start AND date_processed < :end"""),
        {**bounds, "signature": TARGET, "product": product}).scalar_one()
    fields = " UNION ALL ".join(
        f"SELECT '{field}' AS field, CAST({field} AS TEXT) AS value, sum(mine) AS n,"
        f" count(*) AS overall FROM s WHERE {field} IS NOT NULL GROUP BY {field}"
        for field in ("os_version", "cpu_info", "flash_version", "process_type",
                      "release_channel", "build"))
    return conn.execute(sa.text(f"""
        WITH s AS (SELECT id, date_processed, os_version, cpu_info, flash_version,
                          process_type, release_channel, build,
                          CASE WHEN signature = :signature THEN 1 ELSE 0 END AS mine
                   FROM {reports} WHERE product = :product
                     AND date_processed >= :start AND date_processed < :end),
             r AS ({fields}
                   UNION ALL
                   SELECT 'addon', e.extension_id,
                          count(DISTINCT CASE WHEN s.mine = 1 THEN e.report_id END),
                          count(DISTINCT e.report_id)
                   FROM s JOIN {extensions} e
                     ON e.report_id = s.id AND e.date_processed = s.date_processed
                   GROUP BY e.extension_id),
             t AS (SELECT count(*) AS total FROM s)
        SELECT field, value, n, CAST(n AS FLOAT) / :mine AS in_signature,
               CAST(overall AS FLOAT) / total AS overall,
               CAST(n AS FLOAT) / :mine - CAST(overall AS FLOAT) / total AS difference
        FROM r, t
        WHERE CAST(n AS FLOAT) / :mine - CAST(overall AS FLOAT) / total >= 0.05
        ORDER BY difference DESC, field, value{collate}"""),
        {**bounds, "signature": TARGET, "product": product, "mine": mine}).all()


# -- the measurement ------------------------------------------------------------------------------


def copyRollupTables(engine: sa.Engine, dialect: str) -> None:
    """Empty ``bench_`` copies of the rollup tables, with their keys and indexes."""
    with engine.begin() as conn:
        for table in ("tcbs", "signatures", "signature_versions"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS bench_{table}")
            if dialect == "postgresql":
                conn.exec_driver_sql(f"CREATE TABLE bench_{table} (LIKE {table} INCLUDING ALL)")
                continue
            statements = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL"
                " ORDER BY type = 'index'", (table,)).scalars().all()
            for statement in statements:
                conn.exec_driver_sql(statement.replace(f'"{table}', f'"bench_{table}')
                                     .replace(f"TABLE {table} ", f"TABLE bench_{table} ")
                                     .replace(f" ON {table} ", f" ON bench_{table} ")
                                     .replace("INDEX ", "INDEX bench_", 1))


def clearRollups(engine: sa.Engine, prefix: str = "") -> None:
    with engine.begin() as conn:
        for table in ("tcbs", "signatures", "signature_versions"):
            conn.exec_driver_sql(f"DELETE FROM {prefix}{table}")


def measure(url: str, count: int, target: int) -> dict[str, Any]:
    db = connector(url)
    dialect = db.engine.dialect.name
    started = time.perf_counter()
    reports = makeReports(count, target)
    for start in range(0, len(reports), BATCH):
        result(db.reports.addReports(reports[start:start + BATCH]))
    loaded = time.perf_counter() - started
    days: dict[datetime.date, int] = {}
    for report in reports:
        days[report["date_processed"].date()] = days.get(report["date_processed"].date(), 0) + 1
    del reports
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    copyRollupTables(db.engine, dialect)
    small, large = MONDAY.date(), MONDAY.date() + 6 * DAY
    out: dict[str, Any] = {"reports": count, "target": target, "loaded": loaded,
                           "small": days[small], "large": days[large]}

    for name, day in (("small", small), ("large", large)):
        def first(day=day):
            clearRollups(db.engine)
            start = time.perf_counter()
            issue15Rollups(db, day)
            return time.perf_counter() - start

        def hand(day=day):
            clearRollups(db.engine, "bench_")
            start = time.perf_counter()
            with db.engine.begin() as conn:
                handRollup(conn, dialect, day)
            return time.perf_counter() - start

        def again(day=day):
            return issue15Rollups(db, day)

        hand()
        first()
        out[f"{name}_hand"] = sorted(hand() for _ in range(REPEAT))[REPEAT // 2]
        out[f"{name}_first"] = sorted(first() for _ in range(REPEAT))[REPEAT // 2]
        out[f"{name}_again"] = median(again, REPEAT)
    # same rows by both routes
    with db.engine.connect() as conn:
        for table in ("tcbs", "signatures", "signature_versions"):
            ours = conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
            theirs = conn.exec_driver_sql(f"SELECT count(*) FROM bench_{table}").scalar_one()
            assert ours == theirs, (table, ours, theirs)

    start_day, end_day = MONDAY.date(), MONDAY.date() + 7 * DAY

    def summary():
        return result(db.signatures.getSummary(TARGET, start_day=start_day, end_day=end_day))

    def handSummaryRun():
        with db.engine.connect() as conn:
            return handSummary(conn, dialect)

    ours, theirs = summary(), handSummaryRun()
    assert ours["count"] == theirs["count"] == target, (ours["count"], theirs["count"])
    assert ours["installations"] == theirs["installations"]
    assert {f: [(t["term"], t["count"]) for t in terms] for f, terms in ours["facets"].items()
            if terms} == theirs["facets"]
    out["summary"] = median(summary, REPEAT)
    out["summary_hand"] = median(handSummaryRun, REPEAT)

    def correlations():
        return result(db.signatures.getCorrelations(TARGET, "Firefox", start_day=start_day,
                                                    end_day=end_day))

    def handCorrelationsRun():
        with db.engine.connect() as conn:
            return handCorrelations(conn, dialect, "Firefox")

    ours, theirs = correlations(), handCorrelationsRun()
    assert [tuple(row.values()) for row in ours] == [tuple(row) for row in theirs], (ours, theirs)
    assert ours and ours[0]["value"] == "planted@example.org"
    out["correlations"] = median(correlations, REPEAT)
    out["correlations_hand"] = median(handCorrelationsRun, REPEAT)

    # issue 18: the same reads once every day of the week is rolled up
    live = summary(), correlations()
    for day in (start_day + n * DAY for n in range(7)):
        started = time.perf_counter()
        result(db.signatures.updateSummaries(day))
        if day in (small, large):
            out[f"{'small' if day == small else 'large'}_summaries"] = \
                time.perf_counter() - started
    assert (summary(), correlations()) == live  # every report was stored before its day's rollup
    out["summary_rolled"] = median(summary, REPEAT)
    out["correlations_rolled"] = median(correlations, REPEAT)
    db.engine.dispose()
    return out


def issue15Rollups(db: Any, day: datetime.date) -> None:
    """The rollups issue 15 compared with hand-written SQL (runDay also runs ``summaries``)."""
    result(db.tcbs.updateTcbs(day))
    result(db.signatures.updateSignatures(day))


def report(backend: str, r: dict[str, Any]) -> bool:
    ok = True

    def line(label: str, ours: float, hand: float, goal: float) -> None:
        nonlocal ok
        ratio = ours / hand
        ok &= ratio <= goal
        print(f"  {label:<34} {ours * 1000:>9.1f} ms {hand * 1000:>9.1f} ms {ratio:>6.2f}"
              f"   <= {goal}  {'ok' if ratio <= goal else 'MISSED'}")

    print(f"{backend}: {r['reports']:,} reports in the week (loaded in {r['loaded']:.0f} s), "
          f"{r['target']:,} of the signature")
    print(f"  {'':<34} {'crashdb':>12} {'by hand':>12} {'ratio':>6}")
    for name in ("small", "large"):
        label = f"tcbs+signatures, {r[name]:,}-report day"
        line(f"{label}, first run", r[f"{name}_first"], r[f"{name}_hand"], 1.5)
        line(f"{label}, again", r[f"{name}_again"], r[f"{name}_hand"], 1.5)
    per_small = r["small_first"] / r["small"] * 1e6
    per_large = r["large_first"] / r["large"] * 1e6
    print(f"  tcbs+signatures per report: {per_small:.1f} µs on the small day, "
          f"{per_large:.1f} µs on the large day ({r['large'] / r['small']:.1f}x the reports)")
    line("getSummary, from the reports", r["summary"], r["summary_hand"], 2.0)
    line("getCorrelations, from the reports", r["correlations"], r["correlations_hand"], 2.0)
    print(f"  summaries rollup per report: {r['small_summaries'] / r['small'] * 1e6:.1f} µs on "
          f"the small day, {r['large_summaries'] / r['large'] * 1e6:.1f} µs on the large day")
    for name in ("summary", "correlations"):
        label = f"get{name.capitalize()}, every day rolled up"
        ours, hand = r[f"{name}_rolled"], r[f"{name}_hand"]
        print(f"  {label:<34} {ours * 1000:>9.1f} ms {hand * 1000:>9.1f} ms {ours / hand:>6.3f}"
              f"   ({hand / ours:.0f}x faster than reading the reports)")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="PostgreSQL URL (default: a throwaway server)")
    parser.add_argument("--reports", type=int, default=1_000_000,
                        help="reports in the week on PostgreSQL (default 1,000,000)")
    parser.add_argument("--sqlite-reports", type=int, default=200_000,
                        help="reports in the week on SQLite (default 200,000)")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgresql", action="store_true")
    args = parser.parse_args()
    ok = True
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite:///{directory}/bench.sqlite"
            upgradeUrl(url)
            target = max(10, args.sqlite_reports // 100)
            ok &= report("sqlite", measure(url, args.sqlite_reports, target))
    if not args.skip_postgresql:
        with postgresUrl(args.db) as admin:
            url = freshDatabase(admin, "crashdb_bench_rollups")
            ok &= report("postgresql", measure(url, args.reports, 10_000))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Search benchmark: five realistic searches by ``db.search.search`` against the SQL a DBA would
write by hand for the same numbers, in the same run; then one week's search with 52 weeks stored
against one week stored.

Run as ``python bench/search.py [--db POSTGRES_URL] [--reports N] [--sqlite-reports N]``
(a throwaway PostgreSQL otherwise). One week of reports with add-ons and raw crashes is loaded
(COPY on PostgreSQL, executemany on SQLite); the other 51 weeks of the second part hold
``--other-reports`` each. Goals: every search at most 1.2 times its hand-written SQL; a one-week
search with 52 weeks stored at most 1.2 times the same search with one week stored.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import random
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sqlalchemy as sa  # noqa: E402

from bench._common import freshDatabase, postgresUrl  # noqa: E402
from crashdb import partitions  # noqa: E402
from crashdb.connector import DBConnector  # noqa: E402
from crashdb.partitions import WEEK, childTable, partitionName  # noqa: E402
from crashdb.pool import SynchronousDBPool  # noqa: E402
from crashdb.test.util.db import upgradeUrl  # noqa: E402

UTC = datetime.UTC
TARGET = datetime.datetime(2012, 10, 15, tzinfo=UTC)  # the searched week
INSTALLED = datetime.datetime(2012, 1, 1, tzinfo=UTC)
PRODUCTS = [("Firefox", 70), ("Thunderbird", 15), ("SeaMonkey", 10), ("Fennec", 5)]
VERSIONS = ["17.0b3", "16.0.2", "16.0.1", "17.0b2", "18.0a2", "19.0a1", "16.0", "15.0.1"]
OS = [("Windows NT", 80, ["5.1.2600 Service Pack 3", "6.1.7601 Service Pack 1", "6.2.9200"]),
      ("Mac OS X", 12, ["10.8.2 12C60", "10.7.5 11G63"]), ("Linux", 8, ["3.2.0-32-generic"])]
FRAMES = ["js::GCMarker::processMarkStack", "nsObjectLoadingContent::Instantiate",
          "mozilla::ipc::RPCChannel::Call", "nsCOMPtr_base::assign_with_AddRef", "JS_GC",
          "RtlpWaitOnCriticalSection", "F_1152915508", "CGLReleaseContext", "strlen",
          "mozilla::layers::BasicLayerManager::EndTransaction"]
ADAPTERS = [("0x10de", 35), ("0x8086", 45), ("0x1002", 18), ("0x5333", 2)]
REASONS = ["EXCEPTION_ACCESS_VIOLATION_READ", "EXCEPTION_ACCESS_VIOLATION_WRITE", "SIGSEGV",
           "EXCEPTION_BREAKPOINT"]
CHANNELS = ["release", "beta", "aurora", "nightly"]
REPORT_COLUMNS = ("id", "uuid", "date_processed", "client_crash_date", "install_age", "product",
                  "version", "build", "signature", "uptime", "os_name", "os_version", "reason",
                  "hangid", "process_type", "release_channel", "cpu_name")
EXTENSION_COLUMNS = ("report_id", "date_processed", "extension_key", "extension_id",
                     "extension_version", "uuid")
RAW_COLUMNS = ("uuid", "date_processed", "raw_crash")


def weighted(rng: random.Random, choices):
    return rng.choices([c[0] for c in choices], [c[1] for c in choices])[0]


def weekRows(rng: random.Random, monday: datetime.datetime, count: int, first_id: int):
    """``count`` reports processed in the week of ``monday``, with their add-ons and raw
    crashes, as value tuples in the column orders above."""
    reports, extensions, raws = [], [], []
    for n in range(count):
        report_id = first_id + n
        when = monday + datetime.timedelta(seconds=rng.randrange(7 * 86400),
                                           microseconds=rng.randrange(10**6))
        os_name = weighted(rng, [(name, share) for name, share, _ in OS])
        os_version = rng.choice(next(v for name, _, v in OS if name == os_name))
        signature_number = int(rng.random() ** 3 * 20000)
        signature = f"{FRAMES[signature_number % len(FRAMES)]} #{signature_number}"
        machine = rng.randrange(200_000)
        installed = INSTALLED + datetime.timedelta(seconds=97 * machine)
        crashed = when.replace(microsecond=0) - datetime.timedelta(seconds=30)
        build = f"201210{rng.randrange(1, 31):02d}030203"
        uuid = f"{report_id:08x}-b3f7-4c1e-9a1d-{monday:%y%m%d}{n:06d}"
        version = VERSIONS[int(rng.random() ** 2 * len(VERSIONS))]
        product = weighted(rng, PRODUCTS)
        reports.append((
            report_id, uuid, when, crashed, int((crashed - installed).total_seconds()), product,
            version, build, signature, int(rng.expovariate(1 / 1200)), os_name, os_version,
            rng.choice(REASONS), f"hang-{n}" if rng.random() < 0.05 else None,
            "plugin" if rng.random() < 0.1 else None, rng.choice(CHANNELS), "x86"))
        for key in range(report_id % 4):
            extension = f"ext-{int(rng.random() ** 2 * 200)}@example.com"
            extensions.append((report_id, when, key, extension, "1.0", uuid))
        adapter = weighted(rng, ADAPTERS)
        raws.append((uuid, when, {
            "ProductName": product, "Version": version, "BuildID": build, "Vendor": "Mozilla",
            "GraphicsAdapter": adapter, "GraphicsDevice": f"0x{rng.randrange(4096):04x}",
            "Throttleable": "1", "InstallTime": str(int(installed.timestamp())),
            "CrashTime": str(int(crashed.timestamp())), "Theme": "classic/1.0"}))
    return reports, extensions, raws


def load(db: DBConnector, monday: datetime.datetime, count: int, first_id: int,
         seed: int) -> None:
    """One week's rows, straight into the week's children (made first)."""
    rows = weekRows(random.Random(seed), monday, count, first_id)
    backend = db.backend
    partitions.createWeek(db.engine, backend, monday)
    tables = [("reports", REPORT_COLUMNS), ("extensions", EXTENSION_COLUMNS),
              ("raw_crashes", RAW_COLUMNS)]
    for (parent, columns), values in zip(tables, rows):
        child = childTable(parent, monday, backend)
        for chunk in range(0, len(values), 50_000):
            with db.engine.begin() as conn:
                backend.bulkInsert(conn, child, columns, values[chunk:chunk + 50_000])
    if backend.name == "postgresql":  # VACUUM: outside a transaction
        connection = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    else:
        connection = db.engine.begin()
    with connection as conn:
        for parent, _ in tables:
            analyze = "VACUUM ANALYZE" if backend.name == "postgresql" else "ANALYZE"
            conn.exec_driver_sql(f'{analyze} "{partitionName(parent, monday)}"')


# -- the five searches, by crashdb and by hand -----------------------------------------------------


def searches(top_signature: str, top_addon: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("signature + facets", {
            "filters": [("signature", "=", top_signature)],
            "facets": ["product", "version", "os_name", "build", "uptime",
                       "_cardinality.installations"]}),
        ("product+version+os, 3 facets + days", {
            "filters": [("product", "=", "Firefox"), ("version", "=", "17.0b3"),
                        ("os_name", "=", "Windows NT")],
            "facets": ["signature", "build", "os_version", "_histogram.day"]}),
        ("add-on", {
            "filters": [("addon", "=", top_addon)],
            "facets": ["signature", "version"]}),
        ("raw.GraphicsAdapter ^", {
            "filters": [("raw.GraphicsAdapter", "^", "0x10de")],
            "facets": ["signature", "os_version"]}),
        ("signature ~", {
            "filters": [("signature", "~", "gc")],
            "facets": ["signature", "product"]}),
    ]


HITS = ("SELECT uuid, date_processed, product, version, signature, os_name, build, reason"
        " FROM {reports} r WHERE {where} ORDER BY date_processed DESC, id LIMIT 100")
TOTAL = "SELECT count(*) FROM {reports} r WHERE {where}"
TERMS = ("SELECT {term} AS term, count(*) FROM {reports} r WHERE {where}"
         " GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10")
BUCKETS = ("CASE WHEN uptime < 60 THEN '< 1 min' WHEN uptime < 300 THEN '1-5 min'"
           " WHEN uptime < 900 THEN '5-15 min' WHEN uptime < 3600 THEN '15-60 min'"
           " WHEN uptime IS NOT NULL THEN '> 1 hour' END")


def handWritten(backend: str, monday: datetime.datetime) -> list[list[str]]:
    """The same five searches as a DBA writes them for ``backend``: a statement for the total,
    the hits and each facet, parameters :start, :end, :week_start, :week_end, :value."""
    pg = backend == "postgresql"
    reports = "reports" if pg else partitionName("reports", monday)
    extensions = "extensions" if pg else partitionName("extensions", monday)
    raws = "raw_crashes" if pg else partitionName("raw_crashes", monday)
    when = "r.date_processed >= :start AND r.date_processed < :end"
    like = "ILIKE" if pg else "LIKE"
    adapter = "c.raw_crash ->> 'GraphicsAdapter'" if pg else \
        "json_extract(c.raw_crash, '$.GraphicsAdapter')"
    day = "CAST(r.date_processed AS date)" if pg else "date(r.date_processed)"
    installs = ("count(DISTINCT client_crash_date - install_age * interval '1 second')" if pg
                else "count(DISTINCT (CAST(strftime('%s', client_crash_date) AS INTEGER)"
                     " - install_age) || substr(client_crash_date, 20))")
    wheres = [
        f"{when} AND signature = :value",
        f"{when} AND product = 'Firefox' AND version = '17.0b3' AND os_name = 'Windows NT'",
        f"{when} AND EXISTS (SELECT 1 FROM {extensions} e WHERE e.report_id = r.id"
        " AND e.extension_id = :value"
        " AND e.date_processed >= :week_start AND e.date_processed < :week_end)",
        f"{when} AND EXISTS (SELECT 1 FROM {raws} c WHERE c.uuid = r.uuid"
        f" AND c.date_processed >= :week_start AND c.date_processed < :week_end"
        f" AND {adapter} {like} '0x10de%')",
        f"{when} AND signature {like} '%gc%'",
    ]

    def statements(where: str, facets: list[str]) -> list[str]:
        made = [TOTAL.format(reports=reports, where=where),
                HITS.format(reports=reports, where=where)]
        for facet in facets:
            if facet == "_histogram.day":
                made.append(f"SELECT {day}, count(*) FROM {reports} r WHERE {where} GROUP BY 1")
            elif facet == "_cardinality.installations":
                made.append(f"SELECT {installs} FROM {reports} r WHERE {where}"
                            " AND client_crash_date IS NOT NULL AND install_age IS NOT NULL")
            else:
                term = BUCKETS if facet == "uptime" else facet
                made.append(TERMS.format(term=term, reports=reports, where=where))
        return made

    facets = [spec["facets"] for _, spec in searches("", "")]
    return [statements(where, each) for where, each in zip(wheres, facets)]


def runHandWritten(db: DBConnector, statements: list[str], params: dict) -> list:
    with db.engine.begin() as conn:
        return [conn.execute(sa.text(statement), params).fetchall() for statement in statements]


def runCrashdb(db: DBConnector, spec: dict, start, end) -> dict:
    results: list = []
    db.search.search(start, end, **spec).addBoth(results.append)
    if not isinstance(results[0], dict):
        results[0].raiseException()
    return results[0]


def sameNumbers(crashdb: dict, hand: list) -> bool:
    """The hand-written answer holds crashdb's total, hits and facet counts."""
    if crashdb["total"] != hand[0][0][0] or len(crashdb["hits"]) != len(hand[1]):
        return False
    if [hit["uuid"] for hit in crashdb["hits"]] != [row[0] for row in hand[1]]:
        return False
    for facet, rows in zip(crashdb["facets"].values(), hand[2:]):
        if isinstance(facet, int):
            if facet != rows[0][0]:
                return False
        elif sorted(t["count"] for t in facet) != sorted(row[-1] for row in rows):
            return False
    return True


def middle(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def timed(function, repeat: int) -> float:
    """Median wall time of ``function()``, in seconds."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return middle(times)


def topValues(db: DBConnector) -> tuple[str, str]:
    with db.engine.begin() as conn:
        monday = TARGET
        reports = "reports" if db.backend.name == "postgresql" else partitionName(
            "reports", monday)
        extensions = "extensions" if db.backend.name == "postgresql" else partitionName(
            "extensions", monday)
        signature = conn.exec_driver_sql(
            f"SELECT signature FROM {reports} GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).scalar_one()
        addon = conn.exec_driver_sql(
            f"SELECT extension_id FROM {extensions} GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).scalar_one()
    return signature, addon


def measure(url: str, count: int, other: int, repeat: int, week_repeat: int) -> dict[str, Any]:
    db = DBConnector(url)
    db.pool = SynchronousDBPool(db.engine, db.backend)  # time the queries, not thread hand-offs
    began = time.perf_counter()
    load(db, TARGET, count, 1, seed=1)
    loaded = time.perf_counter() - began
    print(f"  {db.backend.name}: loaded {count:,} reports in {loaded:.0f} s", flush=True)
    signature, addon = topValues(db)
    start, end = TARGET, TARGET + WEEK
    params = {"start": start, "end": end, "week_start": TARGET, "week_end": TARGET + WEEK}
    if db.backend.name == "sqlite":  # stored as naive UTC text: bind what SQLAlchemy would
        params = {k: v.replace(tzinfo=None).isoformat(" ", "microseconds")
                  for k, v in params.items()}
    rows = []
    hands = handWritten(db.backend.name, TARGET)
    for (name, spec), statements in zip(searches(signature, addon), hands):
        values = {**params, "value": signature if "signature +" in name else addon}
        mine = runCrashdb(db, spec, start, end)
        hand = runHandWritten(db, statements, values)
        assert sameNumbers(mine, hand), name
        mineTimes, handTimes, ratios = [], [], []
        searchByCrashdb = functools.partial(runCrashdb, db, spec, start, end)
        searchByHand = functools.partial(runHandWritten, db, statements, values)
        for _ in range(repeat):  # alternate, so that load on the machine falls on both
            mineTimes.append(timed(searchByCrashdb, 1))
            handTimes.append(timed(searchByHand, 1))
            ratios.append(mineTimes[-1] / handTimes[-1])
        rows.append((name, mine["total"], middle(mineTimes), middle(handTimes), middle(ratios)))
        print(f"    {name}: {mine['total']:,} matches, {middle(mineTimes) * 1000:.0f} ms vs"
              f" {middle(handTimes) * 1000:.0f} ms, ratio {middle(ratios):.2f}", flush=True)

    def allFive() -> float:
        return sum(timed(functools.partial(runCrashdb, db, spec, start, end), week_repeat)
                   for _, spec in searches(signature, addon))

    others = [TARGET - week * WEEK for week in range(1, 52)]
    before = allFive()
    for n, monday in enumerate(others, 1):
        load(db, monday, other, 1 + count + n * other, seed=1 + n)
    print(f"  {db.backend.name}: 51 more weeks of {other:,} reports loaded", flush=True)
    many = allFive()
    for monday in others:  # and measure one week alone again: load on the machine drifts
        partitions.dropWeek(db.engine, db.backend, monday)
    after = allFive()
    db.engine.dispose()
    return {"rows": rows, "one": (before + after) / 2, "many": many, "loaded": loaded}


def report(backend: str, count: int, other: int, result: dict) -> None:
    print(f"\n{backend}: one week of {count:,} reports (+ add-ons, raw crashes)")
    print(f"{'search':<38} {'matches':>9} {'crashdb':>10} {'by hand':>10} {'ratio':>6}"
          "  (medians of the rounds; ratio: of each round's ratio)")
    for name, total, mine, hand, ratio in result["rows"]:
        print(f"{name:<38} {total:>9,} {mine * 1000:>7.0f} ms {hand * 1000:>7.0f} ms"
              f" {ratio:>6.2f}  {'ok' if ratio <= 1.2 else 'MISSED'}")
    ratio = result["many"] / result["one"]
    print(f"all five searches, 1 week stored (before and after): {result['one'] * 1000:.0f} ms;"
          " 52 weeks stored"
          f" (51 of {other:,} reports): {result['many'] * 1000:.0f} ms; ratio {ratio:.2f}"
          f"  {'ok' if ratio <= 1.2 else 'MISSED'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="PostgreSQL URL (default: a throwaway server)")
    parser.add_argument("--reports", type=int, default=1_000_000, help="PostgreSQL week size")
    parser.add_argument("--sqlite-reports", type=int, default=200_000, help="SQLite week size")
    parser.add_argument("--other-reports", type=int, default=20_000,
                        help="reports in each of the 51 other weeks")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each search")
    parser.add_argument("--week-repeat", type=int, default=3,
                        help="runs of each search for the 1-week vs 52-weeks comparison")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgresql", action="store_true")
    args = parser.parse_args()
    results = {}
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite:///{directory}/bench.sqlite"
            upgradeUrl(url)
            results["sqlite"] = (args.sqlite_reports, measure(
                url, args.sqlite_reports, args.other_reports, args.repeat, args.week_repeat))
    if not args.skip_postgresql:
        with postgresUrl(args.db) as admin:
            url = freshDatabase(admin, "crashdb_bench_search")
            results["postgresql"] = (args.reports, measure(
                url, args.reports, args.other_reports, args.repeat, args.week_repeat))
    for backend, (count, result) in results.items():
        report(backend, count, args.other_reports, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Partition benchmark: creating 52 weeks, and a one-week query with 1 against 104 weeks present.

Run as ``python bench/partitions.py [--db POSTGRES_URL]`` (a throwaway PostgreSQL otherwise);
SQLite is measured too. The goal: the one-week query with 104 weeks present takes at most 1.2
times as long as with one week present (pruning makes the other weeks free).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import freshDatabase, median, postgresUrl  # noqa: E402
from crashdb import partitions
from crashdb.backends import createEngine  # noqa: E402
from crashdb.partitions import WEEK, weekStart  # noqa: E402
from crashdb.test.util.db import upgradeUrl  # noqa: E402

FIRST = weekStart(datetime.datetime(2020, 1, 6, tzinfo=datetime.UTC))
TARGET = FIRST + 52 * WEEK
ROWS = 5000


def measure(url: str) -> dict[str, float]:
    from crashdb.connector import DBConnector
    from crashdb.pool import SynchronousDBPool

    engine, backend, _ = createEngine(url)
    start = time.perf_counter()
    for n in range(52):
        partitions.createWeek(engine, backend, FIRST + n * WEEK)
    create52 = time.perf_counter() - start

    db = DBConnector(url)
    db.pool = SynchronousDBPool(db.engine, db.backend)  # time the query, not thread hand-offs
    reports = [{"uuid": f"u{i}", "date_processed": TARGET + datetime.timedelta(seconds=i * 60),
                "product": "Firefox" if i % 3 else "Fennec", "signature": f"sig{i % 50}"}
               for i in range(ROWS)]
    for chunk in range(0, ROWS, 1000):
        db.reports.addReports(reports[chunk:chunk + 1000])

    def query():
        results = []
        db.reports.getReports(product="Firefox", signature="sig7", start=TARGET,
                              end=TARGET + WEEK).addCallback(results.append)
        db.reports.countReports(product="Fennec", start=TARGET,
                                end=TARGET + WEEK).addCallback(results.append)
        assert results[0] and results[1], results

    for n in range(52):  # drop the 52 empty weeks: only the target week is present
        partitions.dropWeek(engine, backend, FIRST + n * WEEK)
    if backend.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    query()
    one = median(query, 50)
    for n in list(range(52)) + list(range(53, 104)):
        partitions.createWeek(engine, backend, FIRST + n * WEEK)
    if backend.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    query()
    many = median(query, 50)
    engine.dispose()
    db.engine.dispose()
    return {"create52": create52, "one": one, "many": many}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="PostgreSQL URL (default: a throwaway server)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/bench.sqlite"
        upgradeUrl(url)
        results["sqlite"] = measure(url)
    with postgresUrl(args.db) as admin:
        results["postgresql"] = measure(freshDatabase(admin, "crashdb_bench_partitions"))
    print(f"{'backend':<11} {'create 52 weeks':>16} {'query, 1 week':>15} "
          f"{'query, 104 weeks':>17} {'ratio':>7}  goal <= 1.2")
    for backend, r in results.items():
        ratio = r["many"] / r["one"]
        print(f"{backend:<11} {r['create52']:>14.2f} s {r['one'] * 1000:>12.2f} ms "
              f"{r['many'] * 1000:>14.2f} ms {ratio:>7.2f}  {'ok' if ratio <= 1.2 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

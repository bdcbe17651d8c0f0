"""Legacy import benchmark: rows/s of ``crashdb import-legacy`` against COPY of the same rows.

Run as ``python bench/import.py [--db POSTGRES_URL] [--rows 200000] [--batch-size N]`` (a
throwaway PostgreSQL otherwise). A legacy PostgreSQL database of ``--rows`` reports (about 1.5
extensions each, one row in 100 a duplicate uuid, versions in several spellings) is imported
into a fresh crashdb database on the same server. The baseline copies the same legacy rows
(reports and extensions) with ``COPY ... TO STDOUT`` / ``COPY ... FROM STDIN`` into a fresh
database holding the legacy schema (same keys and indexes): what moving the bytes costs, with
none of the import's work (reading in key order, consolidation, version mapping, validation,
routing to weeks). A second import over the finished one measures what resuming costs.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sqlalchemy as sa  # noqa: E402

from bench._common import freshDatabase, postgresUrl  # noqa: E402
from crashdb.app.cli import runDeferred  # noqa: E402
from crashdb.app.importer import DEFAULT_BATCH_SIZE, LegacyImporter  # noqa: E402
from crashdb.connector import DBConnector  # noqa: E402
from crashdb.test.util.legacy import (  # noqa: E402
    VERSION_MAP,
    generateReports,
    legacyMetadata,
    writeLegacy,
)


def emptyDatabase(adminUrl: str, name: str) -> str:
    return freshDatabase(adminUrl, name, upgrade=False)


def runImports(target: str, source: str, batch_size: int) -> list[tuple]:
    """Import twice (the second run finds everything stored); [(summary, seconds)] of each.
    One reactor run for both: a Twisted reactor cannot be restarted."""

    async def main(reactor):
        results = []
        for load_map in (True, False):
            db = DBConnector(target, reactor=reactor)
            try:
                await db.setup()
                if load_map:
                    await db.versions.loadVersionMap(VERSION_MAP)
                started = time.perf_counter()
                summary = await LegacyImporter(db, source, batch_size=batch_size,
                                               reactor=reactor).run()
                results.append((summary, time.perf_counter() - started))
            finally:
                await db.stop()
        return results

    return runDeferred(main)


def copyRows(source: str, target: str) -> tuple[int, float]:
    """COPY the legacy reports and extensions from ``source`` into ``target``; (rows, s)."""
    sourceEngine = sa.create_engine(source)
    targetEngine = sa.create_engine(target)
    legacyMetadata().create_all(targetEngine)
    rows = 0
    started = time.perf_counter()
    try:
        with sourceEngine.connect() as reading, targetEngine.begin() as writing:
            out = reading.connection.dbapi_connection.cursor()
            into = writing.connection.dbapi_connection.cursor()
            for table, order in (("reports", "id"), ("extensions", "report_id, extension_key")):
                buffer = io.BytesIO()
                out.copy_expert(
                    f"COPY (SELECT * FROM {table} ORDER BY {order}) TO STDOUT", buffer
                )
                buffer.seek(0)
                into.copy_expert(f"COPY {table} FROM STDIN", buffer)
                if table == "reports":
                    rows = into.rowcount
        elapsed = time.perf_counter() - started
    finally:
        sourceEngine.dispose()
        targetEngine.dispose()
    return rows, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="PostgreSQL server URL (default: a throwaway server)")
    parser.add_argument("--rows", type=int, default=200_000, help="legacy reports (200000)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"import batch size ({DEFAULT_BATCH_SIZE})")
    args = parser.parse_args()
    with postgresUrl(args.db) as admin:
        source = emptyDatabase(admin, "crashdb_bench_legacy")
        started = time.perf_counter()
        writeLegacy(source, generateReports(args.rows))
        with sa.create_engine(source).begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        print(f"legacy database: {args.rows} reports written in "
              f"{time.perf_counter() - started:.1f}s")

        target = freshDatabase(admin, "crashdb_bench_import")
        (summary, seconds), (rerun, rerunSeconds) = runImports(target, source, args.batch_size)
        assert summary.balanced and summary.read == args.rows, summary
        assert rerun.written == summary.written, rerun

        copied, copySeconds = copyRows(source, emptyDatabase(admin, "crashdb_bench_copy"))
        assert copied == args.rows, copied

    importRate = summary.read / seconds
    copyRate = copied / copySeconds
    print(f"reconciliation: read {summary.read} = written {summary.written} + consolidated "
          f"{summary.consolidated} + rejected {summary.rejected}; aliased {summary.aliased}")
    print(f"{'':<28} {'seconds':>9} {'rows/s':>10} {'vs COPY':>8}")
    for label, secs, rate in (
        ("COPY (baseline)", copySeconds, copyRate),
        ("import-legacy", seconds, importRate),
        ("import-legacy, re-run", rerunSeconds, summary.read / rerunSeconds),
    ):
        print(f"{label:<28} {secs:>9.2f} {rate:>10.0f} {rate / copyRate:>7.2f}x")
    print(f"import-legacy runs at {importRate / copyRate:.1%} of COPY's rate "
          f"(COPY is {copyRate / importRate:.1f} times as fast)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

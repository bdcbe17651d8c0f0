"""Legacy import benchmark: rows/s of ``crashdb import-legacy`` against COPY of the same rows.

Run as ``python bench/import.py [--db POSTGRES_URL] [--rows 200000] [--batch-size N]`` (a
throwaway PostgreSQL otherwise). A legacy PostgreSQL database of ``--rows`` reports (about 1.5
extensions each, one row in 100 a duplicate uuid, versions in several spellings) is imported
into a fresh crashdb database on the same server. The baseline is a bare ``COPY ... TO
STDOUT`` / ``COPY ... FROM STDIN`` of the same rows into the same tables: the rows the import
writes (each uuid's latest row, with its extensions given their report's ``date_processed``)
into crashdb's partitioned ``reports`` and ``extensions`` of a fresh crashdb database whose
weeks exist, so that the server maintains the same indexes and checks the same keys. It is
what moving the bytes costs, with none of the import's work (reading in key order,
consolidation, version mapping, validation, routing to weeks in Python, ids). A second
baseline copies the legacy rows into the legacy schema (two indexes on reports instead of
nine), the comparison of earlier versions of this benchmark. A second import over the finished
one measures what resuming costs.
"""

from __future__ import annotations

import argparse
import datetime
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
    LEGACY_COLUMNS,
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


# one row per uuid, as many as the import writes (it keeps the latest processed, not the last key)
WINNERS = "SELECT max(id) FROM reports GROUP BY uuid"


def copyIntoCrashdb(source: str, target: str) -> tuple[int, float]:
    """COPY the rows the import writes from ``source`` into crashdb's tables at ``target`` (a
    migrated database), the weeks made beforehand; (reports, seconds)."""
    from crashdb import partitions
    from crashdb.backends import createEngine

    sourceEngine = sa.create_engine(source)
    with sourceEngine.connect() as conn:
        first, last = conn.execute(
            sa.text("SELECT min(date_processed), max(date_processed) FROM reports")).one()
    engine, backend, _ = createEngine(target)
    monday = partitions.weekStart(first.replace(tzinfo=datetime.UTC))
    while monday <= last.replace(tzinfo=datetime.UTC):
        partitions.createWeek(engine, backend, monday)
        monday += partitions.WEEK
    engine.dispose()
    columns = ", ".join(LEGACY_COLUMNS)
    statements = (
        (f"COPY (SELECT id, {columns} FROM reports WHERE id IN ({WINNERS}) ORDER BY id) TO STDOUT",
         f"COPY reports (id, {columns}) FROM STDIN"),
        ("COPY (SELECT e.report_id, r.date_processed, e.extension_key, e.extension_id,"
         " e.extension_version, r.uuid FROM extensions e JOIN reports r ON r.id = e.report_id"
         f" WHERE r.id IN ({WINNERS}) ORDER BY e.report_id, e.extension_key) TO STDOUT",
         "COPY extensions (report_id, date_processed, extension_key, extension_id,"
         " extension_version, uuid) FROM STDIN"),
    )
    targetEngine = sa.create_engine(target, connect_args={"options": "-c timezone=UTC"})
    rows = 0
    started = time.perf_counter()
    try:
        with sourceEngine.connect() as reading, targetEngine.begin() as writing:
            out = reading.connection.dbapi_connection.cursor()
            into = writing.connection.dbapi_connection.cursor()
            for export, load in statements:
                buffer = io.BytesIO()
                out.copy_expert(export, buffer)
                buffer.seek(0)
                into.copy_expert(load, buffer)
                rows = rows or into.rowcount
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
        same, sameSeconds = copyIntoCrashdb(source, freshDatabase(admin, "crashdb_bench_same"))
        assert same == summary.written, (same, summary.written)

    # rates in legacy rows read per second: the baselines move the same rows' bytes
    importRate = summary.read / seconds
    copyRate = summary.read / sameSeconds
    print(f"reconciliation: read {summary.read} = written {summary.written} + consolidated "
          f"{summary.consolidated} + rejected {summary.rejected}; aliased {summary.aliased}")
    print(f"{'':<40} {'seconds':>9} {'rows/s':>10} {'vs COPY':>8}")
    for label, secs, rate in (
        ("COPY into crashdb's tables (baseline)", sameSeconds, copyRate),
        ("COPY into the legacy schema", copySeconds, copied / copySeconds),
        ("import-legacy", seconds, importRate),
        ("import-legacy, re-run", rerunSeconds, summary.read / rerunSeconds),
    ):
        print(f"{label:<40} {secs:>9.2f} {rate:>10.0f} {rate / copyRate:>7.2f}x")
    print(f"import-legacy runs at {importRate / copyRate:.1%} of the rate of COPY into the same "
          f"tables (goal: 50%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

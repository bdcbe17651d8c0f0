"""Legacy import benchmark: rows/s of ``crashdb import-legacy`` against COPY of the same rows.

Run as ``python bench/import.py [--db POSTGRES_URL] [--rows 200000] [--batch-size N]
[--rounds 3]`` (a throwaway PostgreSQL otherwise). A legacy PostgreSQL database of ``--rows``
reports (about 1.5 extensions each, one row in 100 a duplicate uuid, versions in several
spellings) is imported into a fresh crashdb database on the same server. The baseline is a bare
``COPY ... TO STDOUT`` / ``COPY ... FROM STDIN`` of the same rows into the same tables: the rows
the import writes (each uuid's latest row, with its extensions given their report's
``date_processed``) into crashdb's partitioned ``reports`` and ``extensions`` of a fresh crashdb
database whose weeks exist, so that the server maintains the same indexes and checks the same
keys. It is what moving the bytes costs, with none of the import's work (reading in key order,
consolidation, version mapping, validation, routing to weeks in Python, ids). A second baseline
copies the legacy rows into the legacy schema (two indexes on reports instead of nine), the
comparison of earlier versions of this benchmark. A second import over the finished one measures
what resuming costs.

The machine's load moves both figures, so each of ``--rounds`` rounds runs the baseline and then
the import into fresh databases, back to back, and the ratio is the median of the rounds'. Each
round prints the load average and the import's CPU seconds in this process: the client's work,
which the server's (the same COPY as the baseline's) overlaps only when a core is free.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sqlalchemy as sa  # noqa: E402

from bench._common import freshDatabase, postgresUrl, serverCpu  # noqa: E402
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


def _cpuSeconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def dataDirectory(admin: str) -> str | None:
    """The server's data directory if it is on this machine (its CPU is measured then)."""
    engine = sa.create_engine(sa.make_url(admin).set(drivername="postgresql+psycopg2"))
    try:
        with engine.connect() as conn:
            directory = conn.exec_driver_sql("SHOW data_directory").scalar()
    except sa.exc.DBAPIError:  # not allowed to see it
        return None
    finally:
        engine.dispose()
    return directory if os.path.exists(os.path.join(directory, "postmaster.pid")) else None


def runRounds(admin: str, source: str, rounds: int, batch_size: int,
              pgdata: str | None) -> list[dict]:
    """``rounds`` times: the baseline COPY into fresh crashdb tables, then an import into a
    fresh crashdb database, then (first round only) the import again over it, which finds
    everything stored. The server's CPU seconds of the COPY and of the import are measured when
its data directory ``pgdata`` is local. One reactor run for all: a Twisted reactor cannot be
restarted."""

    async def main(reactor):
        results = []
        for number in range(rounds):
            same, sameSeconds, copyServer = copyIntoCrashdb(
                source, freshDatabase(admin, "crashdb_bench_same"), pgdata)
            target = freshDatabase(admin, "crashdb_bench_import")
            load = os.getloadavg()[0]
            db = DBConnector(target, reactor=reactor)
            try:
                await db.setup()
                await db.versions.loadVersionMap(VERSION_MAP)
                server, cpu, started = serverCpu(pgdata), _cpuSeconds(), time.perf_counter()
                summary = await LegacyImporter(db, source, batch_size=batch_size,
                                               reactor=reactor).run()
                seconds, cpu = time.perf_counter() - started, _cpuSeconds() - cpu
                server = None if server is None else serverCpu(pgdata) - server
                assert summary.balanced and same == summary.written, (same, summary)
                result = {"copy": sameSeconds, "import": seconds, "summary": summary,
                          "cpuRatio": None if server is None or copyServer is None
                          else copyServer / (server + cpu)}
                if number == 0:
                    started = time.perf_counter()
                    rerun = await LegacyImporter(db, source, batch_size=batch_size,
                                                 reactor=reactor).run()
                    result["rerun"] = time.perf_counter() - started
                    assert rerun.written == summary.written, rerun
            finally:
                await db.stop()
            print(f"round {number + 1}: load average {load:.1f}; COPY {sameSeconds:.2f}s; "
                  f"import {seconds:.2f}s = {sameSeconds / seconds:.2f}x; CPU seconds: "
                  + (f"COPY {copyServer:.2f} (server), " if copyServer is not None else "")
                  + f"import {cpu:.2f} (here)"
                  + (f" + {server:.2f} (server) = {result['cpuRatio']:.2f}x"
                     if result["cpuRatio"] is not None else ""), flush=True)
            results.append(result)
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


def copyIntoCrashdb(source: str, target: str, pgdata: str | None = None
                    ) -> tuple[int, float, float | None]:
    """COPY the rows the import writes from ``source`` into crashdb's tables at ``target`` (a
    migrated database), the weeks made beforehand; (reports, seconds, the server's CPU seconds
    if ``pgdata`` is given and local)."""
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
    server = serverCpu(pgdata)
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
    used = serverCpu(pgdata)
    return rows, elapsed, None if used is None or server is None else used - server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="PostgreSQL server URL (default: a throwaway server)")
    parser.add_argument("--rows", type=int, default=200_000, help="legacy reports (200000)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"import batch size ({DEFAULT_BATCH_SIZE})")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of baseline then import; the ratio is their median (3)")
    args = parser.parse_args()
    with postgresUrl(args.db) as admin:
        pgdata = dataDirectory(admin)
        source = emptyDatabase(admin, "crashdb_bench_legacy")
        started = time.perf_counter()
        writeLegacy(source, generateReports(args.rows))
        with sa.create_engine(source).begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        print(f"legacy database: {args.rows} reports written in "
              f"{time.perf_counter() - started:.1f}s")

        copied, copySeconds = copyRows(source, emptyDatabase(admin, "crashdb_bench_copy"))
        assert copied == args.rows, copied
        rounds = runRounds(admin, source, args.rounds, args.batch_size, pgdata)

    # rates in legacy rows read per second: the baselines move the same rows' bytes
    first = rounds[0]
    summary = first["summary"]
    ratios = sorted(r["copy"] / r["import"] for r in rounds)
    copySame = statistics.median(r["copy"] for r in rounds)
    seconds = statistics.median(r["import"] for r in rounds)
    print(f"reconciliation: read {summary.read} = written {summary.written} + consolidated "
          f"{summary.consolidated} + rejected {summary.rejected}; aliased {summary.aliased}")
    print(f"medians of {len(rounds)} rounds:")
    print(f"{'':<40} {'seconds':>9} {'rows/s':>10} {'vs COPY':>8}")
    copyRate = summary.read / copySame
    for label, secs in (
        ("COPY into crashdb's tables (baseline)", copySame),
        ("COPY into the legacy schema", copySeconds),
        ("import-legacy", seconds),
        ("import-legacy, re-run (round 1)", first["rerun"]),
    ):
        rate = summary.read / secs
        print(f"{label:<40} {secs:>9.2f} {rate:>10.0f} {rate / copyRate:>7.2f}x")
    print(f"import-legacy runs at {statistics.median(ratios):.2f} of the rate of COPY into the "
          f"same tables, the median of the rounds' ({', '.join(f'{r:.2f}' for r in ratios)});"
          " goal: 0.5")
    cpuRatios = sorted(r["cpuRatio"] for r in rounds if r["cpuRatio"] is not None)
    if cpuRatios:
        print(f"CPU seconds of COPY / CPU seconds of the import (client and server), what the "
              f"ratio tends to when no core is free: median {statistics.median(cpuRatios):.2f} "
              f"({', '.join(f'{r:.2f}' for r in cpuRatios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Ingest benchmark: crashdb's write paths against raw COPY, in one run, on identical tables.

Run as ``python bench/ingest.py [--db POSTGRES_URL]``: a throwaway PostgreSQL is started when no
URL is given; with one, a scratch database ``crashdb_bench_ingest`` is created on that server
(the user needs CREATEDB) and dropped afterwards. The same generated reports (36 columns, mixed
over four weeks whose partitions exist beforehand) go through each contender in 1,000-row
batches, one transaction per batch:

- COPY: the reports as COPY text (crashdb's formatter, streamed as it formats) into the
  partitioned parent ``reports``; the baseline every ratio is taken against. "COPY, text
  prepared beforehand" times the server alone (the text is built before the clock starts).
- crashdb ``addReports``: validated, ids returned, idempotent.
- the same two with three extensions per report (COPY into ``reports`` and ``extensions``).
- naive SQLAlchemy ``executemany`` (``conn.execute(reports.insert(), rows)``).
- crashdb ``addReport``, one report per call, eight calls in flight: rows/s, p50 and p99.
- SQLite (a file in WAL mode): crashdb ``addReports``, rows/s.

The PostgreSQL contenders take turns batch by batch into the same (truncated) tables, so that
other work on the machine weighs on all of them alike; each stores the same reports, with the
first character of the uuids its own. A round is repeated ``--rounds`` times; each contender's
best round is reported, and the median over rounds of its ratio to COPY within the round. The
goals (issue 8): addReports >= 0.8 of COPY, with extensions >= 0.6, SQLite >= 20,000 rows/s.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import io
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
import uuid as uuidlib
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sqlalchemy as sa  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from bench._common import freshDatabase, postgresUrl  # noqa: E402
from crashdb import model
from crashdb.bulk import copytext  # noqa: E402
from crashdb.connector import DBConnector  # noqa: E402
from crashdb.partitions import WEEK  # noqa: E402
from crashdb.test.util.db import upgradeUrl  # noqa: E402

UTC = datetime.UTC
FIRST_MONDAY = datetime.datetime(2012, 10, 15, tzinfo=UTC)
DATABASE = "crashdb_bench_ingest"
REPORT_COLUMNS = tuple(c.name for c in model.reports.c)
EXTENSION_COLUMNS = tuple(c.name for c in model.extensions.c)
GOALS = {"bulk": 0.8, "family": 0.6, "sqlite": 20000}

# -- the reports ----------------------------------------------------------------------------------

SIGNATURES = [f"js::GCMarker::processMarkStackTop | js::gc::Mark{n}" for n in range(40)] + [
    "@0x0", "nsCycleCollector::Collect | nsCycleCollector_collect(nsICycleCollectorListener*)",
    "hang | WaitForSingleObjectEx | WaitForSingleObject", "OOM | small",
]
COMMENTS = ["it crashed again", "Firefox crashed while I was typing a long message.\nAgain.",
            "C:\\Users\\me\\Downloads\\file.pdf was open", "closed a tab\tthen boom\r\n"]


def makeReports(count: int, weeks: int = 4, extensions: int = 0, seed: int = 8) -> list[dict]:
    """``count`` reports with every column, processed at random times over ``weeks`` weeks;
    about one in ten has a user comment, some of them needing COPY escapes."""
    rng = random.Random(seed)
    reports = []
    for _ in range(count):
        when = FIRST_MONDAY + datetime.timedelta(
            seconds=rng.randrange(weeks * 7 * 86400), microseconds=rng.randrange(10**6))
        crashed = when - datetime.timedelta(seconds=rng.randrange(3600))
        report: dict[str, Any] = {
            "uuid": str(uuidlib.UUID(int=rng.getrandbits(128))),
            "date_processed": when,
            "client_crash_date": crashed,
            "product": rng.choice(["Firefox", "Firefox", "Thunderbird", "SeaMonkey", "Fennec"]),
            "version": rng.choice(["16.0.1", "16.0.2", "17.0b3", "18.0a2", "19.0a1"]),
            "build": f"201210{rng.randrange(10, 31)}0{rng.randrange(10**7):07}",
            "signature": rng.choice(SIGNATURES),
            "url": rng.choice([None, "", f"http://example.com/{rng.randrange(10**6)}/index.html"]),
            "install_age": rng.randrange(10**7),
            "last_crash": rng.choice([None, rng.randrange(10**6)]),
            "uptime": rng.randrange(10**5),
            "cpu_name": rng.choice(["x86", "amd64", "arm"]),
            "cpu_info": f"GenuineIntel family 6 model {rng.randrange(60)} stepping 10",
            "reason": rng.choice(["EXCEPTION_ACCESS_VIOLATION_READ", "SIGSEGV", "EXC_BAD_ACCESS"]),
            "address": f"0x{rng.getrandbits(32):x}",
            "os_name": rng.choice(["Windows NT", "Mac OS X", "Linux"]),
            "os_version": "6.1.7601 Service Pack 1",
            "email": None,
            "user_id": "",
            "started_datetime": crashed - datetime.timedelta(seconds=rng.randrange(10**5)),
            "completed_datetime": when - datetime.timedelta(milliseconds=rng.randrange(5000)),
            "success": True,
            "truncated": rng.random() < 0.01,
            "processor_notes": "sp-processor03_phx1_mozilla_com.7212:2012; exploitability tool",
            "user_comments": rng.choice(COMMENTS) if rng.random() < 0.1 else None,
            "app_notes": "AdapterVendorID: 0x8086, AdapterDeviceID: 0x0046, D2D? D2D+ DWrite?",
            "distributor": None,
            "distributor_version": None,
            "topmost_filenames": "hg:hg.mozilla.org/releases/mozilla-release:js/src/jsgc.cpp:1f1a",
            "addons_checked": rng.random() < 0.9,
            "flash_version": "11.4.402.287",
            "hangid": None,
            "process_type": rng.choice([None, None, "plugin"]),
            "release_channel": "release",
            "productid": "{ec8030f7-c20a-464f-9b0e-13a3a9e97384}",
        }
        if extensions:
            report["extensions"] = [
                {"extension_id": f"addon{rng.randrange(500)}@example.com",
                 "extension_version": f"{rng.randrange(9)}.{rng.randrange(9)}"}
                for _ in range(extensions)
            ]
        reports.append(report)
    return reports


def batches(rows: list, size: int) -> list[list]:
    return [rows[start:start + size] for start in range(0, len(rows), size)]


@dataclasses.dataclass
class Result:
    """One contender's round: rows stored, wall seconds and this process's CPU seconds (all
    its threads, the reactor's and the pool's, system time included), summed over its turns."""

    rows: int
    wall: float = 0.0
    cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.rows / self.wall

    @property
    def cpuPerRow(self) -> float:
        return self.cpu / self.rows * 1e6

    def __enter__(self) -> Result:
        self.wall -= time.perf_counter()
        self.cpu -= time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter()
        self.cpu += time.process_time()


# -- PostgreSQL contenders ------------------------------------------------------------------------
#
# The contenders take turns batch by batch, into the same tables, so that whatever else runs on
# the machine weighs on all of them alike. Each stores the same reports, its uuids made its own
# by their first character.


class Contender:
    """A way of storing reports: ``start`` makes a round's batches before any clock runs,
    ``turn(n)`` stores batch ``n`` in a transaction of its own."""

    def __init__(self, name: str, bench: PostgresBench, reports: list[dict]) -> None:
        self.name = name
        self.bench = bench
        self.marker = f"{len(bench.contenders):x}"
        bench.contenders.append(self)
        self.reports = [{**report, "uuid": self.marker + report["uuid"][1:]}
                        for report in reports]
        self.extensions = sum(len(report.get("extensions", ())) for report in reports)
        self.batches = batches(self.reports, bench.batch)

    def start(self) -> None:
        pass

    async def turn(self, n: int) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        pass


class CopyContender(Contender):
    """COPY into the partitioned parents through a connection of its own. The values are taken
    from the reports before the clock runs (the ids from a counter); with ``prepared`` they are
    made into COPY text beforehand too, else crashdb's formatter makes it as the driver reads."""

    reportText = copytext.formatter(model.reports, REPORT_COLUMNS)
    extensionText = copytext.formatter(model.extensions, EXTENSION_COLUMNS)

    def __init__(self, name: str, bench: PostgresBench, reports: list[dict],
                 prepared: bool = False) -> None:
        super().__init__(name, bench, reports)
        self.prepared = prepared

    def start(self) -> None:
        self.work = []
        for chunk in self.batches:
            rows = [[next(self.bench.ids), *map(report.get, REPORT_COLUMNS[1:])]
                    for report in chunk]
            extensions = [
                (row[0], report["date_processed"], key, extension["extension_id"],
                 extension["extension_version"], report["uuid"])
                for report, row in zip(chunk, rows)
                for key, extension in enumerate(report.get("extensions", ()))
            ]
            if self.prepared:
                self.work.append((self.reportText.text(rows), self.extensionText.text(extensions)))
            else:
                self.work.append((rows, extensions))
        self.raw = self.bench.engine.raw_connection()
        self.cursor = self.raw.cursor()

    def _copy(self, table: str, columns: tuple[str, ...], data: Any) -> None:
        self.cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", data,
                                size=copytext.CHUNK)

    def _source(self, formatter: copytext.CopyFormatter, rows: Any) -> Any:
        if self.prepared:
            return io.StringIO(rows)
        return copytext.CopyReader(map(formatter.line, rows))

    async def turn(self, n: int) -> None:
        rows, extensions = self.work[n]
        self._copy("reports", REPORT_COLUMNS, self._source(self.reportText, rows))
        if extensions:
            self._copy("extensions", EXTENSION_COLUMNS, self._source(self.extensionText,
                                                                     extensions))
        self.raw.commit()

    def finish(self) -> None:
        self.raw.close()


class ExecutemanyContender(Contender):
    """SQLAlchemy Core's ``conn.execute(reports.insert(), rows)`` into the partitioned parent."""

    def start(self) -> None:
        self.work = [[dict(zip(REPORT_COLUMNS, (next(self.bench.ids), *map(r.get,
                                                                            REPORT_COLUMNS[1:]))))
                      for r in chunk] for chunk in self.batches]

    async def turn(self, n: int) -> None:
        with self.bench.engine.begin() as conn:
            conn.execute(model.reports.insert(), self.work[n])


class CrashdbContender(Contender):
    """crashdb's ``addReports``, one batch in flight; its ids checked."""

    def start(self) -> None:
        self.ids: list[int] = []

    async def turn(self, n: int) -> None:
        self.ids.extend(await self.bench.db.reports.addReports(self.batches[n]))

    def finish(self) -> None:
        assert len(set(self.ids)) == len(self.reports), "ids must be distinct"


class PostgresBench:
    """The contenders, on one scratch database."""

    def __init__(self, url: str, batch: int) -> None:
        self.engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg2"),
                                       connect_args={"options": "-c timezone=UTC"})
        self.db = DBConnector(url)
        self.batch = batch
        self.ids = itertools.count(10**9)  # explicit ids for the baselines, far from crashdb's
        self.contenders: list[Contender] = []

    def truncate(self) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE reports, extensions, plugins_reports")
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("CHECKPOINT")

    def stored(self, contender: Contender) -> tuple[int, int]:
        """Reports and extensions stored by ``contender`` (told apart by uuid)."""
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(
                "SELECT (SELECT count(*) FROM reports WHERE uuid LIKE %(m)s),"
                " (SELECT count(*) FROM extensions e JOIN reports r ON r.id = e.report_id"
                "  AND r.date_processed = e.date_processed WHERE r.uuid LIKE %(m)s)",
                {"m": contender.marker + "%"},
            ).one()

    async def round(self) -> dict[str, Result]:
        """Every contender stores all its batches, taking turns; their results."""
        self.truncate()
        results = {c.name: Result(len(c.reports)) for c in self.contenders}
        for contender in self.contenders:
            contender.start()
        count = len(self.contenders)
        for n in range(len(self.contenders[0].batches)):
            for contender in self.contenders[n % count:] + self.contenders[:n % count]:
                with results[contender.name]:
                    await contender.turn(n)
        for contender in self.contenders:
            contender.finish()
            stored = self.stored(contender)
            assert stored == (len(contender.reports), contender.extensions), (contender.name,
                                                                                stored)
        return results

    async def single(self, reports: list[dict], inFlight: int) -> tuple[Result, list[float]]:
        """crashdb's addReport, ``inFlight`` calls outstanding; the round and each latency."""
        self.truncate()
        latencies: list[float] = []
        semaphore = defer.DeferredSemaphore(inFlight)

        async def one(report: dict) -> None:
            began = time.perf_counter()
            await self.db.reports.addReport(report)
            latencies.append(time.perf_counter() - began)

        with Result(len(reports)) as result:
            await defer.gatherResults([
                semaphore.run(lambda r=report: defer.ensureDeferred(one(r)))
                for report in reports
            ])
        return result, latencies

    def close(self) -> defer.Deferred:
        self.engine.dispose()
        return self.db.stop()


# -- SQLite ---------------------------------------------------------------------------------------


async def sqliteBulk(reports: list[dict], batch: int, weeks: int) -> Result:
    """crashdb's addReports into a fresh SQLite file (WAL)."""
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/bench.sqlite"
        upgradeUrl(url)
        db = DBConnector(url)
        try:
            for week in range(weeks):
                await db.partitions.ensureWeek(FIRST_MONDAY + week * WEEK)
            with Result(len(reports)) as result:
                for chunk in batches(reports, batch):
                    await db.reports.addReports(chunk)
            assert await db.reports.countReports() == len(reports)
        finally:
            await db.stop()
    return result


# -- the run --------------------------------------------------------------------------------------


def line(label: str, result: Result, baseline: Result | None, extra: str = "") -> str:
    ratio = f"{result.rate / baseline.rate:8.2f}" if baseline else " " * 8
    return (f"  {label:<46}{result.rate:>10,.0f}{ratio}{result.cpuPerRow:>8.1f}  {extra}"
            .rstrip())


async def measure(reactor, args: argparse.Namespace) -> None:
    reports = makeReports(args.rows, args.weeks)
    family = makeReports(args.rows, args.weeks, extensions=args.extensions, seed=9)
    rounds: dict[str, list[Result]] = collections.defaultdict(list)
    latencies: dict[int, list[float]] = {}

    with postgresUrl(args.db) as serverUrl:
        url = freshDatabase(serverUrl, DATABASE)
        bench = PostgresBench(url, args.batch)
        try:
            for week in range(args.weeks):
                await bench.db.partitions.ensureWeek(FIRST_MONDAY + week * WEEK)
            CopyContender("copy", bench, reports)
            CopyContender("copy prepared", bench, reports, prepared=True)
            CrashdbContender("bulk", bench, reports)
            ExecutemanyContender("executemany", bench, reports)
            CopyContender("copy family", bench, family)
            CrashdbContender("bulk family", bench, family)
            single = [{**report, "uuid": "f" + report["uuid"][1:]}
                      for report in reports[:args.single]]
            for round_ in range(args.rounds):
                for name, result in (await bench.round()).items():
                    rounds[name].append(result)
                result, times = await bench.single(single, args.in_flight)
                rounds["single"].append(result)
                latencies[id(result)] = times
                print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr)
            with bench.engine.connect() as conn:
                settings = {name: conn.exec_driver_sql(f"SHOW {name}").scalar_one()
                            for name in ("server_version", "fsync", "synchronous_commit")}
        finally:
            await bench.close()
            dropDatabase(serverUrl)
    for _ in range(args.rounds):
        rounds["sqlite"].append(await sqliteBulk(reports, args.batch, args.weeks))

    best = {name: max(results, key=lambda r: r.rate) for name, results in rounds.items()}
    times = latencies[id(best["single"])]
    p50 = statistics.median(times) * 1000
    p99 = statistics.quantiles(times, n=100)[98] * 1000
    copy, familyCopy = best["copy"], best["copy family"]

    def paired(name: str, baseline: str) -> str:
        """The median over rounds of the ratio within a round."""
        ratios = [a.rate / b.rate for a, b in zip(rounds[name], rounds[baseline])]
        return f"median of rounds {statistics.median(ratios):.2f}"

    print(f"PostgreSQL {settings['server_version'].split()[0]} (fsync {settings['fsync']}, "
          f"synchronous_commit {settings['synchronous_commit']}), {os.cpu_count()} CPUs; "
          f"{args.rows:,} reports of 36 columns over {args.weeks} weeks in "
          f"{args.batch:,}-row batches, contenders taking turns; best of {args.rounds} rounds")
    print(f"  {'':<46}{'rows/s':>10}{'vs COPY':>8}{'CPU µs':>8}")
    print(line("COPY (formatted while streaming)", copy, copy))
    print(line("COPY, text prepared beforehand (server only)", best["copy prepared"], copy))
    print(line("crashdb addReports", best["bulk"], copy,
               f"goal >= {GOALS['bulk']}; {paired('bulk', 'copy')}"))
    print(line(f"crashdb addReport, {args.in_flight} in flight", best["single"], copy,
               f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"))
    print(line("naive SQLAlchemy executemany", best["executemany"], copy))
    print(f"  with {args.extensions} extensions per report (rows/s of reports):")
    print(line("COPY reports + extensions", familyCopy, familyCopy))
    print(line("crashdb addReports", best["bulk family"], familyCopy,
               f"goal >= {GOALS['family']}; {paired('bulk family', 'copy family')}"))
    print("SQLite (file, WAL)")
    print(line("crashdb addReports", best["sqlite"], None, f"goal >= {GOALS['sqlite']:,} rows/s"))
    print("(CPU µs: this process's CPU time per report, all threads, system time included)")
    met = (best["bulk"].rate >= GOALS["bulk"] * copy.rate
           and best["bulk family"].rate >= GOALS["family"] * familyCopy.rate
           and best["sqlite"].rate >= GOALS["sqlite"])
    print("goals met" if met else "goals NOT met")
    if not met:
        raise SystemExit(1)  # task.react's exit status


def dropDatabase(serverUrl: str) -> None:
    engine = sa.create_engine(sa.make_url(serverUrl).set(drivername="postgresql+psycopg2"),
                              isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="PostgreSQL server URL (default: a throwaway server)")
    parser.add_argument("--rows", type=int, default=20000, help="reports per contender")
    parser.add_argument("--batch", type=int, default=1000, help="reports per batch")
    parser.add_argument("--weeks", type=int, default=4, help="weeks the reports span")
    parser.add_argument("--extensions", type=int, default=3, help="extensions per report")
    parser.add_argument("--single", type=int, default=2000, help="reports for addReport")
    parser.add_argument("--in-flight", type=int, default=8, help="addReport calls outstanding")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best is reported")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(measure(reactor, args)))


if __name__ == "__main__":
    main()

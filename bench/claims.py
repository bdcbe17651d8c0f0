"""How fast processors drain the queue: jobs claimed and completed per second on PostgreSQL.

N processes drain the same queue of no-op jobs, claimed and completed in batches, done four
ways side by side in one run:

* ``crashdb``: the public API, ``jobs.claimNextJobs`` + ``jobs.completeJobs``, with ``--loops``
  claim/complete loops at once per process (each on its own pool thread and connection);
* ``service``: :class:`crashdb.app.service.ProcessorService` with a no-op ``process``;
* ``naive``: the same thread pool and table, but a conditional UPDATE per job to claim it
  (``... WHERE id = ? AND claimed_by_processorid IS NULL``) and another to complete it;
* ``pgqueuer``: pgqueuer 1.6 on asyncpg (``pip install crashdb[bench]``), if importable.

Without ``--db`` a throwaway PostgreSQL server is started (fsync and synchronous_commit off) and
removed afterwards. Each run starts from a freshly queued, vacuumed table; the clock runs from
the moment every worker process is connected and told to go until the last one has found the
queue empty. CPU per job is the workers' and, when the server runs on this machine, the
server's (its backends for the benchmark database). Usage::

    python bench/claims.py [--db URL] [--jobs 30000] [--batch 10] [--processes 1,2,4]
                           [--loops 4] [--methods crashdb,service,naive,pgqueuer] [--repeat 1]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import subprocess
import sys
import time

import sqlalchemy as sa

UTC = datetime.UTC
HERE = os.path.abspath(__file__)


# -- workers: each prints "ready", waits for a line on stdin, drains, reports, waits to close --


_cpuAtGo = 0.0


def _handshake() -> None:
    global _cpuAtGo
    print(json.dumps({"ready": os.getpid()}), flush=True)
    sys.stdin.readline()
    _cpuAtGo = time.process_time()


def _done(count: int) -> None:
    """Report, then wait to be told to close: the server's CPU is read while still connected."""
    print(json.dumps({"done": count, "cpu": time.process_time() - _cpuAtGo}), flush=True)
    sys.stdin.readline()


def crashdbWorker(url: str, name: str, batch: int, loops: int, kind: str) -> None:
    from twisted.internet import defer

    from crashdb.app.cli import runDeferred
    from crashdb.connector import DBConnector

    async def main(reactor) -> None:
        db = DBConnector(url, threads=loops, reactor=reactor)
        await db.setup()
        if kind == "service":
            await runService(reactor, db, name, batch, loops)
            return
        pid = await db.processors.findProcessorId(name)
        await db.processors.setProcessorState(pid, True)
        counts = []

        async def loop() -> None:
            done = 0
            while True:
                if kind == "naive":
                    ids = await db.pool.do(naiveClaim, pid, batch)
                else:
                    ids = [job["jobid"] for job in await db.jobs.claimNextJobs(pid, batch)]
                if not ids:
                    break
                if kind == "naive":
                    await db.pool.do(naiveComplete, pid, ids)
                else:
                    await db.jobs.completeJobs(ids, pid, True)
                done += len(ids)
            counts.append(done)

        _handshake()
        await defer.gatherResults([defer.ensureDeferred(loop()) for _ in range(loops)])
        _done(sum(counts))
        await db.stop()

    runDeferred(main)


async def runService(reactor, db, name: str, batch: int, loops: int) -> None:
    """ProcessorService with a no-op ``process``, stopped once a claim finds the queue empty."""
    from twisted.internet import defer

    from crashdb.app.service import ProcessorService

    drained: defer.Deferred = defer.Deferred()
    claimNextJobs = db.jobs.claimNextJobs

    def claimWatchingForEmpty(*args):
        def check(jobs):
            if not jobs and not drained.called:
                drained.callback(None)
            return jobs

        return claimNextJobs(*args).addCallback(check)

    db.jobs.claimNextJobs = claimWatchingForEmpty
    service = ProcessorService(db, name, lambda job: None, batchSize=batch,
                               concurrency=batch * loops)
    await service.startService()
    _handshake()
    await drained
    await service.stopService()
    _done(service.succeeded)
    await db.stop()


def naiveClaim(conn: sa.Connection, pid: int, batch: int) -> list[int]:
    """Read candidates, then try to take each with a conditional UPDATE: a job another process
    updated first is lost (after waiting for that process's transaction to end)."""
    from crashdb.model import jobs

    candidates = conn.execute(
        sa.select(jobs.c.id)
        .where(sa.not_(jobs.c.complete), jobs.c.claimed_by_processorid.is_(None))
        .order_by(jobs.c.priority.desc(), jobs.c.queued_at, jobs.c.id)
        .limit(batch)
    ).scalars().all()
    now = datetime.datetime.now(UTC)
    won = []
    for jobid in candidates:
        taken = conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == jobid, jobs.c.claimed_by_processorid.is_(None),
                   sa.not_(jobs.c.complete))
            .values(claimed_by_processorid=pid, claimed_at=now)
        ).rowcount
        if taken:
            won.append(jobid)
    if candidates and not won:
        return naiveClaim(conn, pid, batch)  # lost every race: look again
    return won


def naiveComplete(conn: sa.Connection, pid: int, ids: list[int]) -> None:
    from crashdb.jobs import heldBy
    from crashdb.model import jobs

    now = datetime.datetime.now(UTC)
    for jobid in ids:
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == jobid, heldBy(pid))  # by primary key, as crashdb does
            .values(complete=True, completed_at=now, success=True)
        )


def pgqueuerWorker(url: str, batch: int) -> None:
    import asyncpg
    from pgqueuer import QueueManager
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    async def main() -> int:
        connection = await asyncpg.connect(_plainUrl(url))
        manager = QueueManager(Queries(AsyncpgDriver(connection)))
        count = 0

        @manager.entrypoint("noop")
        async def noop(job) -> None:
            nonlocal count
            count += 1

        _handshake()
        await manager.run(batch_size=batch, mode=QueueExecutionMode.drain,
                          dequeue_timeout=datetime.timedelta(seconds=0.05))
        _done(count)
        await connection.close()

    asyncio.run(main())


# -- the runner -----------------------------------------------------------------------------------


def _plainUrl(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def queueCrashdb(engine: sa.Engine, count: int) -> None:
    from crashdb.model import jobs, processors

    now = datetime.datetime.now(UTC)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {jobs.name}, {processors.name} RESTART IDENTITY")
        conn.execute(jobs.insert(), [
            {"uuid": f"bench-{i:08d}", "priority": 0, "queued_at": now} for i in range(count)
        ])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE jobs")


def checkCrashdb(engine: sa.Engine, count: int) -> None:
    with engine.connect() as conn:
        done = conn.exec_driver_sql("SELECT count(*) FROM jobs WHERE complete").scalar_one()
    if done != count:
        raise SystemExit(f"only {done} of {count} jobs were completed")


def queuePgqueuer(url: str, count: int) -> None:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    async def main() -> None:
        connection = await asyncpg.connect(_plainUrl(url))
        queries = Queries(AsyncpgDriver(connection))
        if not await queries.schema_is_installed():
            await queries.install()
        await connection.execute("TRUNCATE pgqueuer, pgqueuer_log")
        for start in range(0, count, 5000):
            n = min(5000, count - start)
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        await connection.execute("VACUUM ANALYZE pgqueuer")
        await connection.close()

    asyncio.run(main())


def checkPgqueuer(engine: sa.Engine, count: int) -> None:
    with engine.connect() as conn:
        left = conn.exec_driver_sql("SELECT count(*) FROM pgqueuer").scalar_one()
    if left:
        raise SystemExit(f"pgqueuer left {left} of {count} jobs")


def serverCpu(database: str) -> float | None:
    """CPU seconds used so far by the server processes serving ``database``, if the server runs
    on this machine (Linux), else None."""
    tick = os.sysconf("SC_CLK_TCK")
    total, found = 0.0, False
    for pid in filter(str.isdigit, os.listdir("/proc") if os.path.isdir("/proc") else []):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().decode(errors="replace")
            if not command.startswith("postgres:") or f" {database} " not in command:
                continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone, or not ours to read
        total += (int(fields[11]) + int(fields[12])) / tick
        found = True
    return total if found else None


def runWorkers(
    command: list[str], processes: int, expected: int, database: str
) -> tuple[float, float, float | None]:
    """Start the workers, let them go together; the seconds until all are done, and the CPU
    seconds the workers and (if local) the server used meanwhile."""
    workers = [subprocess.Popen(command + [f"bench{i}"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for i in range(processes)]
    for worker in workers:
        line = worker.stdout.readline()
        if not line:
            raise SystemExit(f"a worker failed to start: {' '.join(command)}")
    serverBefore = serverCpu(database)
    start = time.perf_counter()
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    total = cpu = 0
    for worker in workers:
        done = json.loads(worker.stdout.readline())
        total += done["done"]
        cpu += done["cpu"]
    elapsed = time.perf_counter() - start
    serverAfter = serverCpu(database)
    server = None if serverBefore is None or serverAfter is None else serverAfter - serverBefore
    for worker in workers:
        worker.stdin.write("quit\n")
        worker.stdin.flush()
    for worker in workers:
        if worker.wait(timeout=60) != 0:
            raise SystemExit("a worker failed")
    if total != expected:
        raise SystemExit(f"workers processed {total} jobs, expected {expected}")
    return elapsed, cpu, server


def pgqueuerAvailable() -> bool:
    try:
        import asyncpg  # noqa: F401
        import pgqueuer  # noqa: F401
    except ImportError:
        return False
    return True


def benchmark(url: str, args: argparse.Namespace) -> dict[tuple[str, int], float]:
    from crashdb.test.util.db import upgradeUrl

    upgradeUrl(url)
    engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg2"))
    methods = [m for m in args.methods.split(",") if m]
    if "pgqueuer" in methods and not pgqueuerAvailable():
        print("pgqueuer or asyncpg is not installed (pip install crashdb[bench]): skipped")
        methods.remove("pgqueuer")
    rates: dict[tuple[str, int], float] = {}
    # rounds interleave the methods, so that a neighbour's load spoils no method alone
    for processes in args.processes:
        for _ in range(args.repeat):
            for method in methods:
                if method == "pgqueuer":
                    queuePgqueuer(url, args.jobs)
                    command = [sys.executable, HERE, "--worker", "pgqueuer", url,
                               str(args.batch)]
                else:
                    queueCrashdb(engine, args.jobs)
                    command = [sys.executable, HERE, "--worker", method, url, str(args.batch),
                               str(args.loops)]
                database = sa.make_url(url).database
                elapsed, cpu, server = runWorkers(command, processes, args.jobs, database)
                (checkPgqueuer if method == "pgqueuer" else checkCrashdb)(engine, args.jobs)
                rate = args.jobs / elapsed
                rates[(method, processes)] = max(rate, rates.get((method, processes), 0))
                print(f"  {method:<9} {processes} process(es): {elapsed:6.2f} s, "
                      f"{rate:8.0f} jobs/s; CPU per job: workers {cpu / args.jobs * 1e6:4.0f} us"
                      + ("" if server is None else f", server {server / args.jobs * 1e6:4.0f} us"),
                      flush=True)
    engine.dispose()
    return rates


RATIOS = (("crashdb", "naive"), ("crashdb", "pgqueuer"), ("service", "pgqueuer"))


def report(rates: dict[tuple[str, int], float], args: argparse.Namespace) -> None:
    methods = [m for m in ("crashdb", "service", "naive", "pgqueuer")
               if any(k[0] == m for k in rates)]
    ratios = [(a, b) for a, b in RATIOS if a in methods and b in methods]
    print()
    print(f"{args.jobs} no-op jobs, batch {args.batch}; crashdb: {args.loops} claim loops per "
          f"process, service: ProcessorService with concurrency {args.batch * args.loops}")
    print(f"jobs claimed and completed per second, best of {args.repeat}")
    print(f"{'processes':>9}" + "".join(f" {m:>9}" for m in methods)
          + "".join(f" {a + '/' + b:>17}" for a, b in ratios))
    for processes in args.processes:
        row = f"{processes:>9}" + "".join(f" {rates.get((m, processes), 0):>9.0f}"
                                          for m in methods)
        for a, b in ratios:
            mine, theirs = rates.get((a, processes)), rates.get((b, processes))
            row += f" {mine / theirs:>16.2f}x" if mine and theirs else f" {'-':>17}"
        print(row)
    best = {m: max(r for (k, _), r in rates.items() if k == m) for m in methods}
    for a, b in ratios:
        print(f"best {a} / best {b}: {best[a]:.0f} / {best[b]:.0f} = {best[a] / best[b]:.2f}x")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        kind, url, batch = argv[1], argv[2], int(argv[3])
        if kind == "pgqueuer":
            pgqueuerWorker(url, batch)
        else:
            crashdbWorker(url, argv[-1], batch, int(argv[4]), kind)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="a PostgreSQL database URL (default: a throwaway server)")
    parser.add_argument("--jobs", type=int, default=30000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--processes", type=lambda s: [int(n) for n in s.split(",")],
                        default=[1, 2, 4])
    parser.add_argument("--loops", type=int, default=4,
                        help="concurrent claim/complete loops (and threads) per crashdb process")
    parser.add_argument("--methods", default="crashdb,service,naive,pgqueuer")
    parser.add_argument("--repeat", type=int, default=2,
                        help="rounds of runs, methods interleaved; a cell's best counts")
    args = parser.parse_args(argv)
    if args.db:
        rates = benchmark(args.db, args)
    else:
        from crashdb.test.util.pgserver import PostgresServer

        with PostgresServer() as server:
            print(f"throwaway PostgreSQL at {server.url}")
            rates = benchmark(server.createDatabase("bench"), args)
    report(rates, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

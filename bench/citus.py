"""What a Citus cluster costs on one machine: plain PostgreSQL against a coordinator with two
workers (SPEC 17), the same data and calls, in the same run.

Run as ``python bench/citus.py [--reports N] [--batch B] [--repeat R]``. Both servers are
throwaway clusters started here (Citus must be installed: ``../shared/citus/build.sh``). For
each: ``addReports`` of N reports (one add-on each) over one week in batches of B, rows/s; then
a one-week search with three facets, a signature search and ``getReport`` by uuid, each the
median of R runs. The server CPU each part takes is read from /proc for every node (the
coordinator and each worker apart), so that the figures say what N workers on N machines
would give: the workers' share spreads over them, the coordinator's does not.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import freshDatabase, serverCpu  # noqa: E402
from bench.ingest import FIRST_MONDAY, batches, makeReports  # noqa: E402
from crashdb.connector import DBConnector  # noqa: E402
from crashdb.pool import SynchronousDBPool  # noqa: E402
from crashdb.test.util.citus import CitusCluster  # noqa: E402
from crashdb.test.util.db import upgradeUrl  # noqa: E402
from crashdb.test.util.pgserver import PostgresServer  # noqa: E402

FACETS = ["product", "version", "os_name"]


class Meter:
    """Wall time and each node's server CPU over a part of the run."""

    def __init__(self, nodes: list[PostgresServer]) -> None:
        self.nodes = nodes

    def measure(self, work: Callable[[], object]) -> tuple[float, list[float]]:
        before = [self._cpu(node) for node in self.nodes]
        started = time.perf_counter()
        work()
        wall = time.perf_counter() - started
        return wall, [self._cpu(node) - cpu for node, cpu in zip(self.nodes, before)]

    @staticmethod
    def _cpu(node: PostgresServer) -> float:
        used = serverCpu(node.pgdata)
        assert used is not None, "the nodes run on this machine"
        return used


def connector(url: str) -> DBConnector:
    db = DBConnector(url)
    db.pool = SynchronousDBPool(db.engine, db.backend)
    return db


def run(label: str, url: str, nodes: list[PostgresServer], reports: list[dict], batch: int,
        repeat: int) -> dict:
    db = connector(url)
    meter = Meter(nodes)

    def ingest() -> None:
        for chunk in batches(reports, batch):
            db.reports.addReports(chunk)

    wall, cpu = meter.measure(ingest)
    figures = {"ingest rows/s": len(reports) / wall, "ingest cpu": cpu}
    start, end = FIRST_MONDAY, FIRST_MONDAY + datetime.timedelta(days=7)
    signature = reports[0]["signature"]
    calls = {
        "search, 3 facets": lambda: db.search.search(
            start, end, [("product", "=", "Firefox")], facets=FACETS),
        "search, a signature": lambda: db.search.search(
            start, end, [("signature", "=", signature)], facets=FACETS),
        "getReport(uuid)": lambda: db.reports.getReport(reports[len(reports) // 2]["uuid"]),
    }
    for name, call in calls.items():
        call()  # warm
        times, cpus = [], []
        for _ in range(repeat):
            wall, cpu = meter.measure(call)
            times.append(wall)
            cpus.append(cpu)
        figures[name] = statistics.median(times)
        figures[name + " cpu"] = [statistics.median(c[i] for c in cpus)
                                  for i in range(len(nodes))]
    db.engine.dispose()
    print(f"  {label}: done", flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    reports = makeReports(args.reports, weeks=1, extensions=1)
    print(f"{args.reports:,} reports over one week, one add-on each; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)

    plain = PostgresServer()
    cluster = CitusCluster()
    try:
        plain.start()
        cluster.start()
        upgradeUrl(cluster.url)
        results = {
            "postgresql": run("plain PostgreSQL", freshDatabase(plain.url, "crashdb_bench"),
                              [plain], reports, args.batch, args.repeat),
            "citus": run("Citus 1+2", cluster.url, cluster.nodes, reports, args.batch,
                         args.repeat),
        }
    finally:
        cluster.cleanup()
        plain.cleanup()

    pg, ci = results["postgresql"], results["citus"]
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| figure | plain PostgreSQL | Citus 1+2 | Citus / plain |")
    print("|---|---:|---:|---:|")
    print(f"| ingest, rows/s | {pg['ingest rows/s']:,.0f} | {ci['ingest rows/s']:,.0f} |"
          f" {ci['ingest rows/s'] / pg['ingest rows/s']:.2f} |")
    for name in ("search, 3 facets", "search, a signature", "getReport(uuid)"):
        print(f"| {name}, median ms | {pg[name] * 1000:.1f} | {ci[name] * 1000:.1f} |"
              f" {ci[name] / pg[name]:.2f} |")
    print("\nserver CPU per part (coordinator, worker 1, worker 2 for Citus):")
    rows = args.reports
    print(f"- ingest: plain {pg['ingest cpu'][0] / rows * 1e6:.1f} µs/row; Citus "
          + ", ".join(f"{c / rows * 1e6:.1f}" for c in ci["ingest cpu"]) + " µs/row")
    for name in ("search, 3 facets", "search, a signature", "getReport(uuid)"):
        print(f"- {name}: plain {pg[name + ' cpu'][0] * 1000:.1f} ms; Citus "
              + ", ".join(f"{c * 1000:.1f}" for c in ci[name + " cpu"]) + " ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""crash-stats benchmark: every page and API call of ``crashdb serve`` against the component
calls it renders, measured in the same run, then under concurrent clients.

Run as ``python bench/web.py [--db POSTGRES_URL] [--reports N] [--clients 20] [--seconds S]``
(a throwaway PostgreSQL otherwise). A week of the demo's crashes (``--reports``, processed, with
one exploding signature), rolled up, with ADU, is loaded; ``crashdb serve`` runs in its own
process. For each page: the median of its component calls (the view's gathering, in this
process, without HTTP or template), the median of one client's requests and their ratio
(goal: at most 1.5), then the median and p99 latency and the throughput of ``--clients``
clients requesting it for ``--seconds`` over keep-alive loopback connections (goal: the top
crashers page under 100 ms median).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import os
import random
import statistics
import sys
import threading
import time
import types
import urllib.parse
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import freshDatabase, postgresUrl  # noqa: E402
from crashdb.app.cli import runDeferred  # noqa: E402
from crashdb.app.demo import CrashGenerator, reportFromRawCrash  # noqa: E402
from crashdb.app.demo.generator import dailyUsers, withExplosion  # noqa: E402
from crashdb.app.web import server  # noqa: E402
from crashdb.app.web.query import Query  # noqa: E402
from crashdb.connector import DBConnector  # noqa: E402
from crashdb.test.util.webserver import Server  # noqa: E402

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
BATCH = 5000
SEQUENTIAL = 15  # requests (and component runs) behind each single-client median


async def fill(db: Any, reports: int) -> dict[str, str]:
    """A week of demo crashes, processed and rolled up; what the pages will be asked for."""
    now = datetime.datetime.now(UTC)
    rng = random.Random(18)
    crashes = withExplosion(CrashGenerator(rng, now, days=7), reports, now.date() - DAY)
    made = [reportFromRawCrash(uuid, raw, "bench", now=lambda r=received: r)
            for uuid, received, raw in crashes]
    for start in range(0, len(made), BATCH):
        await db.reports.addReports(made[start:start + BATCH])
    uuid, received, raw = crashes[len(crashes) // 2]
    await db.rawcrashes.addRawCrash(uuid, received, raw)
    days = [(now - n * DAY).date() for n in range(7, -1, -1)]
    for day in days:
        await db.rollups.runDay(day)
    await db.crashrates.addAdu(dailyUsers(reports * 3, days))
    return {"uuid": uuid, "yesterday": (now.date() - DAY).isoformat()}


def pages(found: dict[str, str], top: str) -> dict[str, tuple[str, Any, dict[str, Any]]]:
    """name → (path, view function, path arguments)."""
    signature = urllib.parse.urlencode({"signature": top, "product": "Firefox"})
    return {
        "products": ("/", server.products, {}),
        "topcrashers": ("/topcrashers/Firefox", server.topCrashers, {"product": "Firefox"}),
        "signature": (f"/signature?{signature}", server.signature, {}),
        "report": (f"/report/{found['uuid']}", server.report, {"uuid": found["uuid"]}),
        "search": ("/search?product=Firefox", server.search, {}),
        "explosive": (f"/explosive/Firefox?day={found['yesterday']}", server.explosive,
                      {"product": "Firefox"}),
        "crashrates": ("/crashrates/Firefox", server.crashRates, {"product": "Firefox"}),
    }


async def componentMedians(db: Any, views: dict[str, tuple[str, Any, dict]]) -> dict[str, float]:
    """Median seconds of each view's component calls, run in this process."""
    app = types.SimpleNamespace(db=db)
    medians = {}
    for name, (path, view, kw) in views.items():
        args = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        query = Query({k.encode(): [v.encode() for v in vs] for k, vs in args.items()})
        times = []
        for _ in range(SEQUENTIAL):
            started = time.perf_counter()
            await view(app, query, False, **kw)
            times.append(time.perf_counter() - started)
        medians[name] = statistics.median(times)
    return medians


def request(conn: http.client.HTTPConnection, path: str) -> float:
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, (path, response.status, body[:200])
    return time.perf_counter() - started


def load(host: str, port: int, path: str, clients: int, seconds: float) -> list[float]:
    """Latencies of ``clients`` keep-alive clients requesting ``path`` for ``seconds``."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        mine = []
        while time.monotonic() < deadline:
            mine.append(request(conn, path))
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="a PostgreSQL server URL (default: a throwaway one)")
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with postgresUrl(args.db) as admin:
        url = freshDatabase(admin, "crashdb_bench_web")
        state: dict[str, Any] = {}

        async def prepare(reactor: Any) -> None:
            db = DBConnector(url, reactor=reactor)
            try:
                await db.setup()
                started = time.perf_counter()
                state["found"] = await fill(db, args.reports)
                print(f"loaded {args.reports} reports over a week in "
                      f"{time.perf_counter() - started:.0f}s", flush=True)
                end = datetime.datetime.now(UTC).date() + DAY
                top = await db.tcbs.getTopCrashers("Firefox", start_day=end - 7 * DAY,
                                                   end_day=end, limit=1)
                state["views"] = pages(state["found"], top[0]["signature"])
                state["components"] = await componentMedians(db, state["views"])
            finally:
                await db.stop()

        runDeferred(prepare)
        met = measure(url, state, args.clients, args.seconds)
    print("goals met" if met else "a goal was missed")
    return 0 if met else 1


def measure(url: str, state: dict[str, Any], clients: int, seconds: float) -> bool:
    """Print the table; False when a goal is missed."""
    web = Server(url)
    parsed = urllib.parse.urlsplit(web.base)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    met = True
    print(f"{'page':<22} {'components':>10} {'1 client':>9} {'ratio':>6} "
          f"{f'{clients} clients: median':>20} {'p99':>8} {'req/s':>7}")
    try:
        for name, (path, _, _) in state["views"].items():
            for api in (False, True):
                target = ("/api/products" if path == "/" else "/api" + path) if api else path
                conn = http.client.HTTPConnection(host, port, timeout=60)
                request(conn, target)  # warm
                single = statistics.median(request(conn, target) for _ in range(SEQUENTIAL))
                conn.close()
                latencies = load(host, port, target, clients, seconds)
                component = state["components"][name]
                ratio = single / component
                label = f"{'api ' if api else ''}{name}"
                median = statistics.median(latencies)
                print(f"{label:<22} {component * 1000:>8.1f}ms {single * 1000:>7.1f}ms "
                      f"{ratio:>6.2f} {median * 1000:>18.1f}ms "
                      f"{percentile(latencies, 0.99) * 1000:>6.0f}ms "
                      f"{len(latencies) / seconds:>7.1f}", flush=True)
                met &= ratio <= 1.5
                if name == "topcrashers" and not api:
                    met &= median < 0.100
    finally:
        web.stop()
    return met


if __name__ == "__main__":
    sys.exit(main())

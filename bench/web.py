"""crash-stats benchmark: every page and API call of ``crashdb serve`` against the component
calls it renders, measured in the same run, then under concurrent clients.

Run as ``python bench/web.py [--db POSTGRES_URL] [--reports N] [--clients 20] [--seconds S]
[--only topcrashers,signature] [--reuse]`` (a throwaway PostgreSQL otherwise; ``--reuse`` keeps
the database an earlier run with ``--db`` filled, instead of loading another). A week of
``--reports`` crashes is loaded through the bulk path (``db.reports.addReports``): a pool of the
demo's crashes (processed, with one exploding signature) is drawn once and repeated under fresh
uuids and times of the same day, then rolled up, with ADU. Two ``crashdb serve`` run in their
own processes: one rendering every request (``--cache-seconds 0``), one as served by default
(the rollup-backed pages kept rendered).

For each page: the median of its component calls (the view's gathering, in this process, without
HTTP or template), the median of one client's requests to the rendering server and their ratio
(goal: at most 1.5; the two are timed in turn, so both meet the same load), the median of one
client's requests to the default server ("served": a page kept rendered costs only its HTTP),
then the median and p99 latency and the throughput of ``--clients`` clients requesting it for
``--seconds`` over keep-alive loopback connections from the default server (goal: the top
crashers page under 100 ms median), and for the cached pages the same from the rendering server,
for comparison. Every page and API call should answer one client in well under a second (SPEC
16); each goal missed is printed.
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
from crashdb.app.demo.generator import crashUuid, dailyUsers, withExplosion  # noqa: E402
from crashdb.app.web import server  # noqa: E402
from crashdb.app.web.query import Query  # noqa: E402
from crashdb.connector import DBConnector  # noqa: E402
from crashdb.test.util.webserver import Server  # noqa: E402

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
BATCH = 5000
KINDS = 20_000  # distinct demo crashes drawn; the rest of the week repeats them
SEQUENTIAL = 15  # requests (and component runs) behind each single-client median...
SEQUENTIAL_SECONDS = 60.0  # ...unless they take longer than this (3 at least)
MOST_SAMPLES, FAST_SECONDS = 200, 2.0  # a fast page's: as many as fit in FAST_SECONDS
CACHED = ("products", "topcrashers", "explosive", "crashrates")


def repeated(template: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Another crash like ``template``: a new uuid, processed up to a second later."""
    processed = template["date_processed"] + datetime.timedelta(microseconds=rng.randrange(10**6))
    return {**template, "uuid": crashUuid(rng, processed.date()), "date_processed": processed}


async def fill(db: Any, reports: int) -> dict[str, str]:
    """A week of crashes, rolled up; what the pages will be asked for."""
    now = datetime.datetime.now(UTC)
    rng = random.Random(18)
    kinds = min(reports, KINDS)
    crashes = withExplosion(CrashGenerator(rng, now, days=7), kinds, now.date() - DAY)
    templates = [reportFromRawCrash(uuid, raw, "bench", now=lambda r=received: r)
                 for uuid, received, raw in crashes]
    for start in range(0, reports, BATCH):
        await db.reports.addReports([
            templates[n] if n < kinds else repeated(templates[n % kinds], rng)
            for n in range(start, min(start + BATCH, reports))
        ])
    uuid, received, raw = crashes[kinds // 2]
    await db.rawcrashes.addRawCrash(uuid, received, raw)
    days = [(now - n * DAY).date() for n in range(7, -1, -1)]
    for day in days:
        await db.rollups.runDay(day)
    await db.crashrates.addAdu(dailyUsers(reports * 3, days))
    return {"uuid": uuid, "yesterday": (now.date() - DAY).isoformat()}


def filledDatabase(adminUrl: str) -> str | None:
    """The URL of the database an earlier run filled on this server (it has a raw crash, the
    last thing :func:`fill` stores before rolling up, and ADU, the very last), else None."""
    import sqlalchemy as sa

    url = sa.make_url(adminUrl).set(drivername="postgresql+psycopg2",
                                    database="crashdb_bench_web")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            filled = conn.exec_driver_sql("SELECT EXISTS (SELECT 1 FROM product_adu)").scalar()
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    return url.render_as_string(hide_password=False) if filled else None


def filledAnswers(url: str) -> dict[str, str]:
    """What :func:`fill` returned when it filled the database at ``url``."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            uuid = conn.exec_driver_sql("SELECT uuid FROM raw_crashes LIMIT 1").scalar_one()
    finally:
        engine.dispose()
    yesterday = datetime.datetime.now(UTC).date() - DAY
    return {"uuid": uuid, "yesterday": yesterday.isoformat()}


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


def moreNeeded(times: list[float]) -> bool:
    """Whether to time another run: SEQUENTIAL of them, fewer (3 at least) past
    SEQUENTIAL_SECONDS; and for a fast page more, up to MOST_SAMPLES within FAST_SECONDS, so
    that a median of a few milliseconds (and the ratio of two) is not a few samples' noise."""
    if len(times) < 3:
        return True
    if len(times) < SEQUENTIAL:
        return sum(times) < SEQUENTIAL_SECONDS
    return len(times) < MOST_SAMPLES and sum(times) < FAST_SECONDS


async def pairedMedians(db: Any, views: dict[str, tuple[str, Any, dict]],
                       rendering: Server) -> dict[str, tuple[float, float, float]]:
    """Each view's median seconds: of its component calls (run in this process), of one
    client's requests of its page and of its API twin from ``rendering``. They are timed in
    turn (components, page, API, again), so a change of the machine's load meanwhile moves
    all three alike instead of one ratio."""
    app = types.SimpleNamespace(db=db)
    conn = http.client.HTTPConnection(*address(rendering), timeout=600)
    medians = {}
    try:
        for name, (path, view, kw) in views.items():
            args = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
            query = Query({k.encode(): [v.encode() for v in vs] for k, vs in args.items()})
            targets = (path, apiPath(path))
            for target in targets:  # (the first request of a page warms the server up)
                request(conn, target)
            times: tuple[list[float], list[float], list[float]] = ([], [], [])
            while moreNeeded(times[0]):
                started = time.perf_counter()
                await view(app, query, False, **kw)
                times[0].append(time.perf_counter() - started)
                for target, kept in zip(targets, times[1:], strict=True):
                    kept.append(request(conn, target))
            medians[name] = (statistics.median(times[0]), statistics.median(times[1]),
                             statistics.median(times[2]))
    finally:
        conn.close()
    return medians


def apiPath(path: str) -> str:
    """The API twin of the page at ``path``."""
    return "/api/products" if path == "/" else "/api" + path


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
        conn = http.client.HTTPConnection(host, port, timeout=600)
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
    parser.add_argument("--reuse", action="store_true", help="measure the database an earlier "
                        "run filled on the --db server, if there is one")
    parser.add_argument("--only", help="the pages to measure, by name, comma-separated "
                        "(default: every page)")
    args = parser.parse_args()
    with postgresUrl(args.db) as admin:
        url = filledDatabase(admin) if args.reuse else None
        state: dict[str, Any] = {}
        if url is None:
            url = freshDatabase(admin, "crashdb_bench_web")
        else:  # (filled today, or the pages' default periods miss part of the week)
            state["found"] = filledAnswers(url)

        async def prepare(reactor: Any) -> None:
            db = DBConnector(url, reactor=reactor)
            try:
                await db.setup()
                if "found" in state:
                    print("reusing the database a run filled before", flush=True)
                else:
                    started = time.perf_counter()
                    state["found"] = await fill(db, args.reports)
                    print(f"loaded {args.reports} reports over a week in "
                          f"{time.perf_counter() - started:.0f}s", flush=True)
                end = datetime.datetime.now(UTC).date() + DAY
                top = await db.tcbs.getTopCrashers("Firefox", start_day=end - 7 * DAY,
                                                   end_day=end, limit=1)
                views = pages(state["found"], top[0]["signature"])
                wanted = args.only.split(",") if args.only else list(views)
                state["views"] = {name: views[name] for name in wanted}
                state["rendering"] = Server(url, "--cache-seconds", "0")
                print(f"load average at the start: {os.getloadavg()[0]:.1f}", flush=True)
                state["paired"] = await pairedMedians(db, state["views"], state["rendering"])
            finally:
                await db.stop()

        try:
            runDeferred(prepare)
            met = measure(url, state, args.clients, args.seconds)
        finally:
            if "rendering" in state:
                state["rendering"].stop()
    print("goals met" if met else "a goal was missed")
    return 0 if met else 1


def measure(url: str, state: dict[str, Any], clients: int, seconds: float) -> bool:
    """Print the table; False when a goal is missed."""
    rendering, served = state["rendering"], Server(url)
    missed: list[str] = []
    print(f"{'page':<18} {'components':>10} {'1 client':>9} {'ratio':>6} {'served':>8} "
          f"{f'{clients} clients: median':>20} {'p99':>8} {'req/s':>7}  "
          f"{'uncached: median':>16} {'p99':>8} {'req/s':>7}")
    try:
        for name, (path, _, _) in state["views"].items():
            component, page, api = state["paired"][name]
            for target, single in ((path, page), (apiPath(path), api)):
                label = ("api " if target != path else "") + name
                ratio = single / component
                hit = statistics.median(oneClient(served, target))
                median, p99, rate = concurrently(served, target, clients, seconds)
                line = (f"{label:<18} {component * 1000:>8.1f}ms "
                        f"{single * 1000:>7.1f}ms {ratio:>6.2f} {hit * 1000:>6.1f}ms "
                        f"{median * 1000:>18.1f}ms "
                        f"{p99 * 1000:>6.0f}ms {rate:>7.1f}")
                if name in CACHED:
                    median_, p99_, rate_ = concurrently(rendering, target, clients, seconds)
                    line += f"  {median_ * 1000:>14.1f}ms {p99_ * 1000:>6.0f}ms {rate_:>7.1f}"
                print(line, flush=True)
                if ratio > 1.5:
                    missed.append(f"{label}: {ratio:.2f} times its components (goal 1.5)")
                if single >= 1.0:
                    missed.append(f"{label}: {single:.2f} s for one client (goal: under 1 s)")
                if label == "topcrashers" and median >= 0.100:
                    missed.append(f"{label}: {median * 1000:.0f} ms median under {clients} "
                                  "clients (goal: under 100 ms)")
    finally:
        served.stop()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    for line in missed:
        print(f"missed: {line}")
    return not missed


def address(web: Server) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(web.base)
    return parsed.hostname or "127.0.0.1", parsed.port or 80


def oneClient(web: Server, target: str) -> list[float]:
    """Seconds of each of one client's requests of ``target`` (after one to warm up)."""
    conn = http.client.HTTPConnection(*address(web), timeout=600)
    request(conn, target)
    times: list[float] = []
    try:
        while moreNeeded(times):
            times.append(request(conn, target))
        return times
    finally:
        conn.close()


def concurrently(web: Server, target: str, clients: int,
                 seconds: float) -> tuple[float, float, float]:
    """Median and p99 seconds, and requests per second, of ``clients`` clients (per second
    until the last request answered: a slow page's last requests end well past ``seconds``)."""
    started = time.perf_counter()
    latencies = load(*address(web), target, clients, seconds)
    elapsed = time.perf_counter() - started
    return statistics.median(latencies), percentile(latencies, 0.99), len(latencies) / elapsed


if __name__ == "__main__":
    sys.exit(main())

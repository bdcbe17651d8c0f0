"""Shared set-up for the benchmarks: a database URL, or a throwaway PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator

from crashdb.test.util.db import upgradeUrl


@contextlib.contextmanager
def postgresUrl(given: str | None) -> Iterator[str]:
    """``given``, or the URL of a throwaway PostgreSQL server stopped afterwards."""
    if given:
        yield given
        return
    from crashdb.test.util.pgserver import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        yield server.url
    finally:
        server.cleanup()


def freshDatabase(adminUrl: str, name: str, upgrade: bool = True) -> str:
    """A new database called ``name`` on the server of ``adminUrl``, migrated unless told
    otherwise."""
    import sqlalchemy as sa

    url = sa.make_url(adminUrl).set(drivername="postgresql+psycopg2")
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    fresh = url.set(database=name).render_as_string(hide_password=False)
    if upgrade:
        upgradeUrl(fresh)
    return fresh


def median(function: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``function()`` in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def serverCpu(pgdata: str | None) -> float | None:
    """CPU seconds the PostgreSQL server whose data directory is ``pgdata`` has used so far:
    the postmaster, its ended children (reaped into it) and its live ones; None unless the
    server is local and ``/proc`` shows it (Linux)."""
    if pgdata is None:
        return None
    try:
        with open(os.path.join(pgdata, "postmaster.pid")) as pidFile:
            postmaster = int(pidFile.readline())
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:  # ended meanwhile: reaped into the postmaster's children's time
                continue
            if int(entry) == postmaster:
                total += sum(map(int, fields[11:15]))  # its own and its reaped children's
            elif int(fields[1]) == postmaster:
                total += int(fields[11]) + int(fields[12])
        return total / ticks
    except (OSError, ValueError):
        return None

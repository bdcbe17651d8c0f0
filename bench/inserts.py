"""Does crashdb's hand-written INSERT still pay on SQLAlchemy 2.1?

``crashdb.backends.base.plainInsert`` renders an INSERT's text once per shape and executes it
with plain value tuples (each value through its column type's bind processor, or the backend's
quicker ``BINDERS``). SQLAlchemy 2.1 caches the compiled form of a dialect INSERT
(``insert(...).on_conflict_do_nothing(...).returning(...)``), so what is left to save is its
per-row parameter handling. This measures both ways of the two places the hand-written path is
used on SQLite (where every bulk write goes through it): ``insertNew`` (multi-row INSERT ... ON
CONFLICT DO NOTHING RETURNING) and ``bulkInsert`` (executemany), 100 rows a transaction, the
contenders taking turns. Run as ``python bench/inserts.py``; it prints rows/s and the ratio.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.dialects import sqlite  # noqa: E402

from crashdb import model  # noqa: E402
from crashdb.backends import createEngine  # noqa: E402

ROWS = 100
SECONDS = 1.0
ROUNDS = 3
COLUMNS = ("id", "uuid", "product", "date_processed", "uptime")
table = sa.Table(
    "bench_rows", sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("uuid", sa.String(50), unique=True),
    sa.Column("product", sa.String(30)),
    sa.Column("date_processed", model.UTCDateTime),
    sa.Column("uptime", sa.Integer),
)


def main() -> None:
    engine, backend, _ = createEngine("sqlite://")
    with engine.begin() as conn:
        table.create(conn)
    now = datetime.datetime.now(datetime.UTC)
    counter = iter(range(1, 10**9))

    def rows() -> list[tuple]:
        return [(next(counter), str(uuid.uuid4()), "Firefox", now, n) for n in range(ROWS)]

    def dicts(values: list[tuple]) -> list[dict]:
        return [dict(zip(COLUMNS, row)) for row in values]

    upsert = (sqlite.insert(table).on_conflict_do_nothing(index_elements=["uuid"])
              .returning(table.c.uuid))
    contenders = {
        "insertNew, crashdb": lambda conn: backend.insertNew(conn, table, COLUMNS, rows(), "uuid"),
        "insertNew, SQLAlchemy": lambda conn: conn.execute(upsert, dicts(rows())).all(),
        "bulkInsert, crashdb": lambda conn: backend.bulkInsert(conn, table, COLUMNS, rows()),
        "bulkInsert, SQLAlchemy": lambda conn: conn.execute(table.insert(), dicts(rows())),
    }
    totals = dict.fromkeys(contenders, 0.0)
    for _ in range(ROUNDS):
        for name, work in contenders.items():
            started, done = time.perf_counter(), 0
            while time.perf_counter() - started < SECONDS:
                with engine.begin() as conn:
                    work(conn)
                done += ROWS
            totals[name] += done / (time.perf_counter() - started) / ROUNDS
    print(f"SQLAlchemy {sa.__version__}, SQLite, {ROWS} rows a transaction")
    for name, rate in totals.items():
        print(f"  {name:<24} {rate:>10,.0f} rows/s")
    for what in ("insertNew", "bulkInsert"):
        ratio = totals[f"{what}, crashdb"] / totals[f"{what}, SQLAlchemy"]
        print(f"  {what}: crashdb's hand-written INSERT is {ratio:.2f}x SQLAlchemy's")


if __name__ == "__main__":
    main()

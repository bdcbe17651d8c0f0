"""The hand-written INSERT path (``backends.base.plainInsert`` with ``Backend.boundValues``)
stores exactly what SQLAlchemy's own INSERT would.

It exists for speed alone (bench/inserts.py: 1.25-1.3x SQLAlchemy 2.1's compiled-and-cached
dialect INSERT on SQLite, the per-row parameter handling it skips); these tests pin that it
changes nothing else, so it can be dropped the day the benchmark says it no longer pays.
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from crashdb import model
from crashdb.backends import createEngine

COLUMNS = ("id", "uuid", "when", "flag", "count", "note")
table = sa.Table(
    "rows", sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("uuid", sa.String(50), unique=True),
    sa.Column("when", model.UTCDateTime),
    sa.Column("flag", sa.Boolean),
    sa.Column("count", sa.Integer),
    sa.Column("note", sa.Text),
)
ROWS = [
    (1, "a", datetime.datetime(2012, 10, 16, 10, 30, 0, 123456, tzinfo=datetime.UTC), True, 0,
     "plain"),
    (2, "b", datetime.datetime(2012, 10, 16, 12, 30, tzinfo=datetime.timezone(
        datetime.timedelta(hours=2))), False, -5, "tab\there 'quoted' ünïcode"),
    (3, "c", None, None, None, None),
]


def _stored(write) -> list[tuple]:
    engine, backend, _ = createEngine("sqlite://")
    with engine.begin() as conn:
        table.create(conn)
        write(conn, backend)
        raw = conn.exec_driver_sql('SELECT * FROM "rows" ORDER BY id').all()
        typed = conn.execute(sa.select(table).order_by(table.c.id)).all()
    engine.dispose()
    return [tuple(row) for row in raw] + [tuple(row) for row in typed]


def test_bulk_insert_stores_what_sqlalchemy_stores():
    ours = _stored(lambda conn, backend: backend.bulkInsert(conn, table, COLUMNS, ROWS))
    theirs = _stored(lambda conn, backend: conn.execute(
        table.insert(), [dict(zip(COLUMNS, row)) for row in ROWS]))
    assert ours == theirs


def test_insert_new_stores_and_returns_what_sqlalchemy_does():
    returned = {}

    def ours(conn, backend):
        conn.execute(table.insert().values(dict(zip(COLUMNS, ROWS[0]))))
        returned["ours"] = backend.insertNew(conn, table, COLUMNS, ROWS, "uuid")

    def theirs(conn, backend):
        conn.execute(table.insert().values(dict(zip(COLUMNS, ROWS[0]))))
        statement = (sqlite.insert(table).on_conflict_do_nothing(index_elements=["uuid"])
                     .returning(table.c.uuid))
        returned["theirs"] = {uuid for (uuid,) in conn.execute(
            statement, [dict(zip(COLUMNS, row)) for row in ROWS])}

    assert _stored(ours) == _stored(theirs)
    assert returned["ours"] == returned["theirs"] == {"b", "c"}

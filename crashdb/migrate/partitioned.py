"""Helpers for migrations that change a partitioned table.

A weekly child is made from the model (``model.CHILD_SPECS`` and the parent's columns), so a
migration that adds an index or a column changes the model for children made afterwards, and
calls one of these to bring every existing child in line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from alembic import op

from crashdb.backends import backendFor
from crashdb.partitions import listChildren, partitionName

log = logging.getLogger("crashdb.migrate")
T = TypeVar("T")


def existingChildren(conn: sa.Connection, parent: str) -> list[str]:
    """Names of ``parent``'s existing weekly children."""
    return sorted(partitionName(p, monday)
                  for p, monday in listChildren(conn, backendFor(conn.engine)) if p == parent)


def addChildIndex(parent: str, suffix: str, columns: list[str], unique: bool = False) -> list[str]:
    """Create index ``<child>_<suffix>`` on every existing child of ``parent``; the names made.

    Add the same ``(suffix, columns, unique)`` to ``model.CHILD_SPECS[parent]`` so that new
    children get it too.
    """
    conn = op.get_bind()
    made = []
    for child in existingChildren(conn, parent):
        op.create_index(f"{child}_{suffix}", child, columns, unique=unique)
        made.append(f"{child}_{suffix}")
    return made


def addPartitionedColumn(parent: str, column: sa.Column) -> None:
    """Add ``column`` to ``parent`` and every existing child (PostgreSQL propagates it from the
    parent; SQLite's children are separate tables). Add it to the model's parent too."""
    conn = op.get_bind()
    op.add_column(parent, column)
    if not backendFor(conn.engine).routesPartitions:
        for child in existingChildren(conn, parent):
            op.add_column(child, column._copy())


def underLockTimeout(work: Callable[[sa.Connection], T], timeout_ms: int = 2000,
                     attempts: int = 10) -> T:
    """Run ``work(conn)`` in a savepoint of the upgrade with PostgreSQL's ``lock_timeout`` at
    ``timeout_ms``; when a lock is not granted in time, roll the savepoint back (releasing every
    lock it took) and try again after a pause, ``attempts`` times in all.

    So DDL on a busy partitioned table never queues readers and writers behind it for longer
    than a lock timeout: the locks it has taken are held only until the upgrade commits, and
    a wait for one more is bounded. The session's ``lock_timeout`` is restored afterwards.
    """
    conn = op.get_bind()
    previous = conn.exec_driver_sql("SHOW lock_timeout").scalar_one()
    setting = sa.text("SELECT set_config('lock_timeout', :value, true)")
    conn.execute(setting, {"value": f"{timeout_ms}ms"})
    try:
        for attempt in range(1, attempts + 1):
            try:
                with conn.begin_nested():
                    return work(conn)
            except sa.exc.OperationalError as error:
                if getattr(error.orig, "pgcode", None) != "55P03" or attempt == attempts:
                    raise
                log.warning("migration waited %d ms for a lock; retrying", timeout_ms)
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        conn.execute(setting, {"value": previous})

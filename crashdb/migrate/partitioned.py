"""Helpers for migrations that change a partitioned table.

A weekly child is made from the model (``model.CHILD_SPECS`` and the parent's columns), so a
migration that adds an index or a column changes the model for children made afterwards, and
calls one of these to bring every existing child in line.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from crashdb.backends import backendFor
from crashdb.partitions import listChildren, partitionName


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


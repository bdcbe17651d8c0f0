"""Citus: crashdb distributed over a coordinator and workers (SPEC 17, docs/scaling.md).

A PostgreSQL database with the ``citus`` extension is a Citus coordinator. ``crashdb
upgrade-db`` builds the schema as on plain PostgreSQL, then :func:`distribute` makes each table
what it is on a cluster:

- the four partitioned crash-data tables are distributed on ``uuid`` and co-located, so a
  report, its add-ons and its raw crash share a shard; their weekly children are distributed as
  they are attached;
- ``jobs`` stays on the coordinator (a Citus local table: claims lock many rows with ``FOR
  UPDATE SKIP LOCKED``, which Citus runs on one node only);
- every other table (look-ups, rollups, tokens) is a reference table, a copy on every node,
  so that any shard can join with it.

Citus enforces a primary key or unique index only if it holds the distribution column, so a
child's primary key gains ``uuid`` (``reports_<week>_pkey (id, uuid)``), and a foreign key to
the week's reports child is ``(report_id, uuid) → (id, uuid)``: see ``partitions.childTable``.
"""

from __future__ import annotations

import sqlalchemy as sa

from crashdb import model
from crashdb.exceptions import CrashDBError

#: the crash-data tables' distribution column
DISTRIBUTION_COLUMN = "uuid"
#: kept on the coordinator, out of the shards
LOCAL_TABLES = ("jobs",)


def hasCitus(conn: sa.Connection) -> bool:
    """True if the database has the ``citus`` extension: it is a Citus coordinator."""
    return bool(conn.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')").scalar())


def referenceTables() -> list[str]:
    """The model's tables that are copied to every node: all but the crash data and ``jobs``
    (a table a later migration adds is a reference table unless it says otherwise)."""
    return [t.name for t in model.tablesFor("postgresql")
            if t.name not in model.PARTITIONED_TABLES and t.name not in LOCAL_TABLES]


def distribute(conn: sa.Connection, holdsWeeks: bool) -> list[str]:
    """Make every crashdb table what it is on Citus, in the caller's transaction; the tables
    changed (none when the database was distributed already). ``holdsWeeks``: the database has
    weekly children already, which are not converted."""
    done = {name for (name,) in conn.exec_driver_sql(
        "SELECT logicalrelid::regclass::text FROM pg_dist_partition")}
    if "reports" not in done and holdsWeeks:
        raise CrashDBError(
            "this database already holds weeks of crash data: crashdb distributes a database "
            "before its first week; load the data into a new distributed database instead "
            "(docs/scaling.md)")
    changed = []
    for name in referenceTables():
        if name not in done:
            conn.execute(sa.text("SELECT create_reference_table(:t)"), {"t": name})
            changed.append(name)
    for name in LOCAL_TABLES:
        if name not in done:
            conn.execute(sa.text("SELECT citus_add_local_table_to_metadata(:t)"), {"t": name})
            changed.append(name)
    for name in model.PARTITIONED_TABLES:
        if name not in done:
            conn.execute(
                sa.text("SELECT create_distributed_table(:t, :c, colocate_with => :with)"),
                {"t": name, "c": DISTRIBUTION_COLUMN,
                 "with": "none" if name == "reports" else "reports"})
            changed.append(name)
    return changed

"""``extensions`` and ``plugins_reports`` carry their report's ``uuid`` (SPEC 17).

On a Citus cluster the four crash-data tables are distributed on ``uuid`` and co-located, so
that a report's add-ons live on its shard and the report → extensions/plugins joins run on the
workers; a table can only be distributed on a column of its own. On every backend the column
is added (PostgreSQL: on the parent, a catalog change that reaches every child; SQLite: on each
child) and filled from each row's report, week by week; writes fill it from now on. The
joins read ``report_id`` and ``uuid`` together, so the backends keep one code path.
"""

import sqlalchemy as sa
from alembic import op

from crashdb.migrate.partitioned import addPartitionedColumn, existingChildren

revision = "007"
down_revision = "006"
branch_labels = None
depends_on = None

CHILDREN = ("extensions", "plugins_reports")


def upgrade() -> None:
    conn = op.get_bind()
    quote = conn.dialect.identifier_preparer.quote
    for parent in CHILDREN:
        addPartitionedColumn(parent, sa.Column("uuid", sa.String(50)))
        for child in existingChildren(conn, parent):
            reports = quote("reports" + child[len(parent):])  # the same week's reports child
            conn.exec_driver_sql(
                f"UPDATE {quote(child)} SET uuid = (SELECT r.uuid FROM {reports} r"
                f" WHERE r.id = {quote(child)}.report_id)"
            )


def downgrade() -> None:
    conn = op.get_bind()
    for parent in CHILDREN:
        if conn.dialect.name == "sqlite":
            for child in existingChildren(conn, parent):
                op.drop_column(child, "uuid")
        op.drop_column(parent, "uuid")

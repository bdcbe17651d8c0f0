"""reports.id defaults to the shared sequence on the parent and every child (SPEC 5, the seed).

Until now the parent had no default (so a ``COPY reports (uuid, ...)`` without ids failed) and
each weekly child was made with a sequence of its own (``reports_20121015_id_seq``, a SERIAL
by accident) as its default, so a direct insert into a child drew ids from 1. On PostgreSQL
every child's default becomes ``nextval('reports_id_seq'::regclass)``, its own sequence is
dropped, the shared sequence is moved past every stored id, and the parent gets the same
default. Only the catalog changes: no table is rewritten. All of it runs under a bounded lock
timeout, retried, the parent last, so no lock is waited for, or held on the parent, for longer
than a lock timeout. Children made from now on come out right from the model.

SQLite has no sequences: crashdb's own SQL draws ids from ``id_sequences`` (see
``crashdb.partitions``), and nothing stored changes.
"""

import sqlalchemy as sa
from alembic import op

from crashdb.migrate.partitioned import underLockTimeout

revision = "003"
down_revision = "002"
branch_labels = None
depends_on = None

SHARED = "nextval('reports_id_seq'::regclass)"

# every child of reports: its id default and the sequence its id column owns, if any
CHILDREN = sa.text(
    "SELECT c.relname, pg_get_expr(d.adbin, d.adrelid),"
    " pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), 'id')"
    " FROM pg_inherits i"
    " JOIN pg_class c ON c.oid = i.inhrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'id'"
    " LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum"
    " WHERE i.inhparent = 'reports'::regclass"
    " ORDER BY c.relname"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    underLockTimeout(repair)


def repair(conn: sa.Connection) -> None:
    quote = conn.dialect.identifier_preparer.quote
    for child, default, sequence in conn.execute(CHILDREN).all():
        if default != SHARED:
            conn.exec_driver_sql(f"ALTER TABLE {quote(child)} ALTER COLUMN id SET DEFAULT {SHARED}")
        if sequence is not None:
            conn.exec_driver_sql(f"DROP SEQUENCE {sequence}")  # already quoted and qualified
    # ids drawn from the children's own sequences are never handed out again (no child can
    # draw one any more: each is altered, and locked until the upgrade commits)
    top = conn.exec_driver_sql("SELECT max(id) FROM reports").scalar()
    if top is not None:
        conn.execute(sa.text("SELECT setval('reports_id_seq',"
                             " GREATEST(:top, nextval('reports_id_seq')))"), {"top": top})
    conn.exec_driver_sql(f"ALTER TABLE ONLY reports ALTER COLUMN id SET DEFAULT {SHARED}")


def downgrade() -> None:
    """The parent loses its default; the children keep the shared one, which 002 allows."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ONLY reports ALTER COLUMN id DROP DEFAULT")

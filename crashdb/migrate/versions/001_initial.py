"""The initial schema: crash data (partitioned parents), plugins, processing control, TCBS.

Frozen: this file never changes once released; later schema changes are new revisions. The
partitioned parents hold no data and no indexes; weekly children are created at run time from
the model (crashdb.partitions), so they are not made here.
"""

import sqlalchemy as sa
from alembic import op

revision = "001"
down_revision = None
branch_labels = None
depends_on = None

PARTITIONED = {"postgresql_partition_by": "RANGE (date_processed)"}


def timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    partitioned = PARTITIONED if dialect == "postgresql" else {}

    op.create_table(
        "reports",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("client_crash_date", timestamp()),
        sa.Column("date_processed", timestamp()),
        sa.Column("uuid", sa.String(50), nullable=False),
        sa.Column("product", sa.String(30)),
        sa.Column("version", sa.String(16)),
        sa.Column("build", sa.String(30)),
        sa.Column("signature", sa.String(255)),
        sa.Column("url", sa.String(255)),
        sa.Column("install_age", sa.Integer),
        sa.Column("last_crash", sa.Integer),
        sa.Column("uptime", sa.Integer),
        sa.Column("cpu_name", sa.String(100)),
        sa.Column("cpu_info", sa.String(100)),
        sa.Column("reason", sa.String(255)),
        sa.Column("address", sa.String(20)),
        sa.Column("os_name", sa.String(100)),
        sa.Column("os_version", sa.String(100)),
        sa.Column("email", sa.String(100)),
        sa.Column("user_id", sa.String(50)),
        sa.Column("started_datetime", timestamp()),
        sa.Column("completed_datetime", timestamp()),
        sa.Column("success", sa.Boolean),
        sa.Column("truncated", sa.Boolean),
        sa.Column("processor_notes", sa.Text),
        sa.Column("user_comments", sa.String(1024)),
        sa.Column("app_notes", sa.String(1024)),
        sa.Column("distributor", sa.String(20)),
        sa.Column("distributor_version", sa.String(20)),
        sa.Column("topmost_filenames", sa.Text),
        sa.Column("addons_checked", sa.Boolean),
        sa.Column("flash_version", sa.Text),
        sa.Column("hangid", sa.Text),
        sa.Column("process_type", sa.Text),
        sa.Column("release_channel", sa.Text),
        sa.Column("productid", sa.Text),
        **partitioned,
    )
    op.create_table(
        "extensions",
        sa.Column("report_id", sa.Integer, nullable=False),
        sa.Column("date_processed", timestamp()),
        sa.Column("extension_key", sa.Integer, nullable=False),
        sa.Column("extension_id", sa.Text, nullable=False),
        sa.Column("extension_version", sa.Text),
        **partitioned,
    )
    op.create_table(
        "plugins_reports",
        sa.Column("report_id", sa.Integer, nullable=False),
        sa.Column("plugin_id", sa.Integer, nullable=False),
        sa.Column("date_processed", timestamp()),
        sa.Column("version", sa.Text, nullable=False),
        **partitioned,
    )
    raw_crash = sa.JSON()
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        raw_crash = JSONB()
    op.create_table(
        "raw_crashes",
        sa.Column("uuid", sa.String(50), nullable=False),
        sa.Column("date_processed", timestamp()),
        sa.Column("raw_crash", raw_crash, nullable=False),
        **partitioned,
    )
    op.create_table(
        "plugins",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.UniqueConstraint("filename", "name", name="plugins_filename_name_key"),
    )
    op.create_table(
        "processors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("last_active", timestamp()),
        sa.UniqueConstraint("name", name="processors_name_key"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uuid", sa.String(50), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("queued_at", timestamp(), nullable=False),
        sa.Column(
            "claimed_by_processorid",
            sa.Integer,
            sa.ForeignKey("processors.id", name="jobs_claimed_by_processorid_fkey"),
        ),
        sa.Column("claimed_at", timestamp()),
        sa.Column("complete", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("completed_at", timestamp()),
        sa.Column("success", sa.Boolean),
        sa.Column("message", sa.Text),
        sa.UniqueConstraint("uuid", name="jobs_uuid_key"),
    )
    op.create_index("jobs_claimed_by_processorid_idx", "jobs", ["claimed_by_processorid"])
    unclaimed = sa.text("NOT complete AND claimed_by_processorid IS NULL")
    op.create_index(
        "jobs_unclaimed_idx",
        "jobs",
        [sa.text("priority DESC"), "queued_at", "id"],
        postgresql_where=unclaimed,
        sqlite_where=unclaimed,
    )
    op.create_index("jobs_completed_at_idx", "jobs", ["completed_at"])
    op.create_table(
        "tcbs",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("product", sa.String(30), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("signature", sa.String(255), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("win_count", sa.Integer, nullable=False),
        sa.Column("mac_count", sa.Integer, nullable=False),
        sa.Column("lin_count", sa.Integer, nullable=False),
        sa.Column("hang_count", sa.Integer, nullable=False),
        sa.Column("startup_count", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("day", "product", "version", "signature", name="tcbs_pkey"),
    )
    op.create_index("tcbs_product_day_idx", "tcbs", ["product", "day"])

    if dialect == "postgresql":
        op.execute("CREATE SEQUENCE reports_id_seq")
    else:
        sequences = op.create_table(
            "id_sequences",
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("next_id", sa.Integer, nullable=False),
        )
        op.bulk_insert(sequences, [{"name": "reports", "next_id": 1}])

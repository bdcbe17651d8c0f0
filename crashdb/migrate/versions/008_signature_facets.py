"""Daily facet rollups behind a signature's summary and correlations (SPEC 13, 16).

``signature_facets`` and ``product_facets`` hold, per UTC day, the counts a signature's page
needs, so that it reads a few hundred rows instead of a week of reports; ``rollup_days`` marks
the days they cover. All three are new tables, filled by ``crashdb rollup``: no existing row
changes, and until days are rolled up the reads compute them from the reports as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "008"
down_revision = "007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signature_facets",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("signature", sa.String(255), nullable=False),
        sa.Column("product", sa.String(30)),
        sa.Column("version", sa.String(16)),
        sa.Column("field", sa.String(20), nullable=False),
        sa.Column("term", sa.Text),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_index("signature_facets_signature_day_idx", "signature_facets",
                    ["signature", "day"])
    op.create_index("signature_facets_day_idx", "signature_facets", ["day"])
    op.create_table(
        "product_facets",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("product", sa.String(30), nullable=False),
        sa.Column("version", sa.String(16)),
        sa.Column("field", sa.String(20), nullable=False),
        sa.Column("term", sa.Text),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_index("product_facets_product_day_idx", "product_facets", ["product", "day"])
    op.create_index("product_facets_day_idx", "product_facets", ["day"])
    op.create_table(
        "rollup_days",
        sa.Column("rollup", sa.String(30), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("rolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rollup", "day", name="rollup_days_pkey"),
    )


def downgrade() -> None:
    op.drop_table("rollup_days")
    for table in ("product_facets", "signature_facets"):
        op.drop_index(f"{table}_day_idx", table)
    op.drop_index("product_facets_product_day_idx", "product_facets")
    op.drop_index("signature_facets_signature_day_idx", "signature_facets")
    op.drop_table("product_facets")
    op.drop_table("signature_facets")

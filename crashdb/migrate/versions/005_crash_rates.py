"""Crash rates (SPEC 14): active daily users per product version, and each product's throttle.

``product_adu`` holds the usage figures fed from outside, per (day, product, version);
``product_throttles`` the fraction of a product's crashes the collector keeps. Both are new
tables: no existing row changes.

The chain continues from 004 once 003 and 004 are merged; on this branch it follows 002.
"""

import sqlalchemy as sa
from alembic import op

revision = "005"
down_revision = "004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "product_adu",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("product", sa.String(30), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("adu", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("day", "product", "version", name="product_adu_pkey"),
        sa.CheckConstraint("adu >= 0", name="product_adu_adu_check"),
    )
    op.create_index("product_adu_product_day_idx", "product_adu", ["product", "day"])
    op.create_table(
        "product_throttles",
        sa.Column("product", sa.String(30), primary_key=True),
        sa.Column("throttle", sa.Double, nullable=False),
        sa.CheckConstraint(
            "throttle > 0 AND throttle <= 1", name="product_throttles_throttle_check"
        ),
    )


def downgrade() -> None:
    op.drop_table("product_throttles")
    op.drop_index("product_adu_product_day_idx", "product_adu")
    op.drop_table("product_adu")

"""Signature lifecycles (SPEC 13): ``signatures`` and ``signature_versions``.

The daily ``signatures`` rollup keeps, per signature and per (signature, product, version), the
first and last report and the smallest build. Both are new tables, filled by rolling days up
(``crashdb rollup``): no existing row changes.
"""

import sqlalchemy as sa
from alembic import op

revision = "004"
down_revision = "003"
branch_labels = None
depends_on = None


def timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "signatures",
        sa.Column("signature", sa.String(255), nullable=False),
        sa.Column("first_report", timestamp(), nullable=False),
        sa.Column("first_build", sa.String(30)),
        sa.Column("last_report", timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("signature", name="signatures_pkey"),
    )
    op.create_table(
        "signature_versions",
        sa.Column("signature", sa.String(255), nullable=False),
        sa.Column("product", sa.String(30), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("first_report", timestamp(), nullable=False),
        sa.Column("first_build", sa.String(30)),
        sa.Column("last_report", timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("signature", "product", "version", name="signature_versions_pkey"),
    )
    op.create_index(
        "signature_versions_product_first_report_idx",
        "signature_versions",
        ["product", "first_report"],
    )


def downgrade() -> None:
    op.drop_index("signature_versions_product_first_report_idx", "signature_versions")
    op.drop_table("signature_versions")
    op.drop_table("signatures")

"""Product versions and their aliases (SPEC 11, the Remora migration seed).

``product_versions`` holds the canonical versions of each product; ``version_aliases`` maps the
fuzzy strings found in old data ("4.0 Beta 1", "4.0b1 ") to one of them. Both are new tables:
no existing row changes.
"""

import sqlalchemy as sa
from alembic import op

revision = "002"
down_revision = "001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "product_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("product", sa.String(30), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.UniqueConstraint("product", "version", name="product_versions_product_version_key"),
    )
    op.create_table(
        "version_aliases",
        sa.Column("product", sa.String(30), nullable=False),
        sa.Column("alias", sa.Text, nullable=False),
        sa.Column(
            "version_id",
            sa.Integer,
            sa.ForeignKey(
                "product_versions.id", name="version_aliases_version_id_fkey", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("product", "alias", name="version_aliases_pkey"),
    )
    op.create_index("version_aliases_version_id_idx", "version_aliases", ["version_id"])


def downgrade() -> None:
    op.drop_index("version_aliases_version_id_idx", "version_aliases")
    op.drop_table("version_aliases")
    op.drop_table("product_versions")

"""API tokens of the web front end (SPEC 16): ``api_tokens`` holds a name and the SHA-256 of
each token ``crashdb tokens create`` printed, never the token itself. A new table: no existing
row changes.

On branch issue-18 it follows 005, the newest migration merged there; the lead renumbers the
chain on merge.
"""

import sqlalchemy as sa
from alembic import op

revision = "006"
down_revision = "005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("token_sha256", name="api_tokens_token_sha256_key"),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")

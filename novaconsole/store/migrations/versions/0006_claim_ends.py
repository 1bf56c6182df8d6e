"""Claims ended by one transaction share one end record (``schema_version`` 6).

Claims ended before this revision have no end record: each is taken again once its lease runs
out, as a claim whose end was never stamped always was.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True).with_variant(sa.BigInteger(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "novaconsole_claim_ends",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("ended_at", _TIME, nullable=False),
    )
    with op.batch_alter_table("novaconsole_claims") as batch:
        batch.add_column(sa.Column("ended_by", sa.BigInteger()))
    op.execute("UPDATE novaconsole_meta SET value = '6' WHERE key = 'schema_version'")


def downgrade() -> None:
    with op.batch_alter_table("novaconsole_claims") as batch:
        batch.drop_column("ended_by")
    op.drop_table("novaconsole_claim_ends")
    op.execute("UPDATE novaconsole_meta SET value = '5' WHERE key = 'schema_version'")

"""Circuit breakers a worker has open, and operators' resets (issue 13.3).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True).with_variant(sa.BigInteger(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "novaconsole_breakers",
        sa.Column("handler", sa.String(200), primary_key=True),
        sa.Column("worker_id", sa.String(300), primary_key=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("tripped_at", _TIME),
        sa.Column("retry_in", sa.Float()),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.Column("reset_by", sa.String(300)),
        sa.Column("reset_at", _TIME),
    )
    op.execute("UPDATE novaconsole_meta SET value = '4' WHERE key = 'schema_version'")


def downgrade() -> None:
    op.drop_table("novaconsole_breakers")
    op.execute("UPDATE novaconsole_meta SET value = '3' WHERE key = 'schema_version'")

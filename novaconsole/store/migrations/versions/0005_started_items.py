"""Items started and not finished, to count the crashes they cause (``schema_version`` 5).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "novaconsole_started",
        sa.Column("handler", sa.String(200), primary_key=True),
        sa.Column("item_id", sa.String(500), primary_key=True),
        sa.Column("run_id", sa.String(300), nullable=False),
        sa.Column("alone", sa.Boolean(), nullable=False),
        sa.Column("crashes", sa.Integer(), nullable=False),
    )
    op.execute("UPDATE novaconsole_meta SET value = '5' WHERE key = 'schema_version'")


def downgrade() -> None:
    op.drop_table("novaconsole_started")
    op.execute("UPDATE novaconsole_meta SET value = '4' WHERE key = 'schema_version'")

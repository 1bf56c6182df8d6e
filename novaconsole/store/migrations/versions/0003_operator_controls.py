"""The operator's control plane: who paused and until when, the audit history, retry
requests (``schema_version`` 3).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True).with_variant(sa.BigInteger(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "novaconsole_pauses",
        sa.Column("scope", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("paused_by", sa.String(300)),
        sa.Column("paused_at", _TIME),
        sa.Column("reason", sa.String(500)),
        sa.Column("resumes_at", _TIME),
    )
    op.create_table(
        "novaconsole_audit",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("by", sa.String(300), nullable=False),
        sa.Column("what", sa.String(50), nullable=False),
        sa.Column("handler", sa.String(200)),
        sa.Column("old", sa.String(200)),
        sa.Column("new", sa.String(200)),
        sa.Column("detail", sa.String(500)),
    )
    op.create_table(
        "novaconsole_retries",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("handler", sa.String(200), nullable=False),
        sa.Column("item_id", sa.String(500), nullable=False),
        sa.Column("requested_by", sa.String(300), nullable=False),
        sa.Column("requested_at", _TIME, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("detail", sa.String(500)),
        sa.Column("taken_by", sa.String(300)),
        sa.Column("updated_at", _TIME),
    )
    op.create_index("ix_novaconsole_retries_taken_by", "novaconsole_retries", ["taken_by"])
    op.execute("UPDATE novaconsole_meta SET value = '3' WHERE key = 'schema_version'")


def downgrade() -> None:
    op.drop_table("novaconsole_retries")
    op.drop_table("novaconsole_audit")
    op.drop_table("novaconsole_pauses")
    op.execute("UPDATE novaconsole_meta SET value = '2' WHERE key = 'schema_version'")

"""Many workers on one database: claims, workers and commands; the worker of each result
(``schema_version`` 2).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True).with_variant(sa.BigInteger(), "sqlite")


def upgrade() -> None:
    op.add_column("novaconsole_results", sa.Column("worker_id", sa.String(300)))
    op.create_table(
        "novaconsole_claims",
        sa.Column("handler", sa.String(200), primary_key=True),
        sa.Column("item_id", sa.String(500), primary_key=True),
        sa.Column("worker_id", sa.String(300), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("lease_until", _TIME, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("finished_at", _TIME),
    )
    op.create_index(
        "ix_novaconsole_claims_state_finished", "novaconsole_claims", ["state", "finished_at"]
    )
    op.create_table(
        "novaconsole_workers",
        sa.Column("worker_id", sa.String(300), primary_key=True),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("last_beat", _TIME, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("processed", sa.BigInteger(), nullable=False),
        sa.Column("lease", sa.Float(), nullable=False),
    )
    op.create_table(
        "novaconsole_commands",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("taken_by", sa.String(300)),
        sa.Column("taken_at", _TIME),
    )
    op.create_index("ix_novaconsole_commands_taken_by", "novaconsole_commands", ["taken_by"])
    op.execute("UPDATE novaconsole_meta SET value = '2' WHERE key = 'schema_version'")


def downgrade() -> None:
    op.drop_table("novaconsole_commands")
    op.drop_table("novaconsole_workers")
    op.drop_table("novaconsole_claims")
    with op.batch_alter_table("novaconsole_results") as batch:
        batch.drop_column("worker_id")
    op.execute("UPDATE novaconsole_meta SET value = '1' WHERE key = 'schema_version'")

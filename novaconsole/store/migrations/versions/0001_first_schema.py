"""The first schema: results, item states and controls (``schema_version`` 1).

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# As written by models.py then: ids alias SQLite's rowid, timestamps are integer microseconds
# on SQLite (UtcDateTime).
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True).with_variant(sa.BigInteger(), "sqlite")


def upgrade() -> None:
    meta = op.create_table(
        "novaconsole_meta",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
    )
    op.create_table(
        "novaconsole_results",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("handler", sa.String(200), nullable=False),
        sa.Column("item_id", sa.String(500), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("finished_at", _TIME, nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("traceback", sa.Text()),
        sa.Column("history", sa.JSON(none_as_null=True)),
    )
    op.create_index(
        "ix_novaconsole_results_handler_finished", "novaconsole_results", ["handler", "finished_at"]
    )
    op.create_index("ix_novaconsole_results_status", "novaconsole_results", ["status"])
    op.create_table(
        "novaconsole_item_states",
        sa.Column("handler", sa.String(200), primary_key=True),
        sa.Column("item_id", sa.String(500), primary_key=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("dead", sa.Boolean(), nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "novaconsole_controls",
        sa.Column("scope", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("paused", sa.Boolean()),
        sa.Column("concurrency", sa.Integer()),
        sa.Column("batch_size", sa.Integer()),
    )
    op.bulk_insert(meta, [{"key": "schema_version", "value": "1"}])


def downgrade() -> None:
    for table in (
        "novaconsole_controls",
        "novaconsole_item_states",
        "novaconsole_results",
        "novaconsole_meta",
    ):
        op.drop_table(table)

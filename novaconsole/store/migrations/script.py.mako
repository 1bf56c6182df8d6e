"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Name the file after the revision id (``0003_what_it_does.py``, id ``"0003"``) and set
``novaconsole_meta``'s ``schema_version`` to the same number at the end of ``upgrade``: a
novaconsole from before Alembic reads that and refuses a schema newer than its own.
Types are written out here, not imported from ``models``: a revision stays as it was written.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}
    op.execute("UPDATE novaconsole_meta SET value = 'N' WHERE key = 'schema_version'")


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}

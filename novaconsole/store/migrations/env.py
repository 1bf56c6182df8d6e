"""Alembic's environment for the store's migrations, run by :mod:`novaconsole.store.schema`.

Online, the migrations run on the connection handed over in ``config.attributes`` (inside the
caller's transaction, with its lock held); offline (``novaconsole db sql``) they are written as
SQL for the dialect named there. The version table is the store's own, so that an
application's Alembic history can live in the same database.
"""

from __future__ import annotations

from alembic import context

from novaconsole.store.models import VERSION_TABLE, metadata

config = context.config

if context.is_offline_mode():
    context.configure(
        dialect_name=config.attributes["dialect"],
        literal_binds=True,
        version_table=VERSION_TABLE,
        target_metadata=metadata,
        output_buffer=config.attributes["output"],
    )
else:
    context.configure(
        connection=config.attributes["connection"],
        version_table=VERSION_TABLE,
        target_metadata=metadata,
    )
with context.begin_transaction():
    context.run_migrations()

"""Sessions for a peek: every ``ctx.session()`` joins one connection's transaction, which is
rolled back at the end (SQLAlchemy's "joining a session into an external transaction": a
handler's own ``commit()`` only releases a savepoint)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from novaconsole.engine.handler import SessionFactory


@asynccontextmanager
async def rolled_back_sessions(engine: AsyncEngine) -> AsyncIterator[SessionFactory]:
    """A session factory whose sessions share one transaction, rolled back when this ends."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield lambda: AsyncSession(
                bind=connection,
                join_transaction_mode="create_savepoint",
                expire_on_commit=False,
            )
        finally:
            with anyio.CancelScope(shield=True):
                await transaction.rollback()

"""Sessions for a peek: every ``ctx.session()`` joins one connection's transaction, which is
rolled back at the end (SQLAlchemy's "joining a session into an external transaction": a
handler's own ``commit()`` only releases a savepoint).

A fetch cut off by its timeout leaves its statement running on a PostgreSQL server, in the
open transaction, holding the row locks the fetch took (the client stops waiting; the server
does not notice): the peek then cancels that statement on the server before rolling back,
and if the connection cannot roll back it ends the server's session and drops the connection,
so that no lock or transaction outlives the peek."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, AsyncTransaction

from novaconsole.engine.handler import SessionFactory

log = logging.getLogger("novaconsole.store")

ROLLBACK_WAIT = 10.0
"""Seconds the rollback may take before the connection is given up (and, on PostgreSQL, its
server session ended)."""


@asynccontextmanager
async def rolled_back_sessions(engine: AsyncEngine) -> AsyncIterator[SessionFactory]:
    """A session factory whose sessions share one transaction, rolled back when this ends."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        pid: int | None = None
        if connection.dialect.name == "postgresql":
            pid = await connection.scalar(select(func.pg_backend_pid()))
        failed = True
        try:
            yield lambda: AsyncSession(
                bind=connection,
                join_transaction_mode="create_savepoint",
                expire_on_commit=False,
            )
            failed = False
        finally:
            with anyio.CancelScope(shield=True):
                await _end(engine, connection, transaction, pid, interrupted=failed)


async def _end(
    engine: AsyncEngine,
    connection: AsyncConnection,
    transaction: AsyncTransaction,
    pid: int | None,
    *,
    interrupted: bool,
) -> None:
    """Roll back; after a fetch that ended in an error (a timeout among them), first cancel
    whatever statement of it may still run on the server."""
    if interrupted and pid is not None:
        await _on_server(engine, func.pg_cancel_backend(pid), pid)
    rolled_back = False
    with anyio.move_on_after(ROLLBACK_WAIT):
        try:
            await transaction.rollback()
            rolled_back = True
        except Exception:
            log.warning("peek: the rollback failed; dropping the connection", exc_info=True)
    if rolled_back:
        return
    if pid is not None:
        await _on_server(engine, func.pg_terminate_backend(pid), pid)
    await connection.invalidate()


async def _on_server(engine: AsyncEngine, call: object, pid: int) -> None:
    """Run ``pg_cancel_backend``/``pg_terminate_backend`` of ``pid`` from another connection."""
    try:
        with anyio.fail_after(ROLLBACK_WAIT):
            async with engine.connect() as other:
                await other.execute(select(call))  # type: ignore[call-overload]
    except Exception:
        log.warning("peek: could not stop server session %s", pid, exc_info=True)

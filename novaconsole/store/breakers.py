"""Circuit breakers in the database: each worker writes the breakers it has open (so that
``novaconsole status`` and ``breaker reset`` see them) and takes operators' resets; the
operator's side reads them and requests resets (works whether workers run or not)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
from sqlalchemy import and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from novaconsole.engine.breaker import BreakerState
from novaconsole.redaction import redact
from novaconsole.store.database import reader, uncancelled
from novaconsole.store.models import HANDLER_LENGTH, WORKER_ID_LENGTH, breakers

T = TypeVar("T")

STALE = timedelta(seconds=30)
"""A breaker row not written for this long is a dead worker's: not shown, not reset."""


def _now() -> datetime:
    return datetime.now(UTC)


async def write_states(
    connection: AsyncConnection, worker_id: str, states: Sequence[BreakerState]
) -> None:
    """This worker's breakers as they are now: open ones written, closed ones deleted."""
    worker = worker_id[:WORKER_ID_LENGTH]
    now = _now()
    for state in states:
        name = state.handler[:HANDLER_LENGTH]
        key = and_(breakers.c.handler == name, breakers.c.worker_id == worker)
        if state.state == "closed":
            await connection.execute(delete(breakers).where(key))
            continue
        values = {
            "state": state.state,
            "reason": redact(state.reason or "")[:2000] or None,
            "tripped_at": state.tripped_at,
            "retry_in": state.retry_in,
            "updated_at": now,
        }
        changed = await connection.execute(update(breakers).where(key).values(**values))
        if not changed.rowcount:
            await connection.execute(
                breakers.insert().values(handler=name, worker_id=worker, **values)
            )
        elif state.tripped_at is not None:
            # A reset asked before this trip was for the one before: it is done.
            await connection.execute(
                update(breakers)
                .where(key, breakers.c.reset_at < state.tripped_at)
                .values(reset_by=None, reset_at=None)
            )


async def resets_for(connection: AsyncConnection, worker_id: str) -> list[tuple[str, str]]:
    """(handler, by) of each reset an operator requested of this worker's breakers."""
    rows = await connection.execute(
        select(breakers.c.handler, breakers.c.reset_by).where(
            breakers.c.worker_id == worker_id[:WORKER_ID_LENGTH], breakers.c.reset_at.is_not(None)
        )
    )
    return [(row.handler, row.reset_by or "an operator") for row in rows]


async def read_open(
    connection: AsyncConnection, handler: str | None = None
) -> list[dict[str, Any]]:
    """Breakers open on live workers (rows written within :data:`STALE`), as JSON-ready dicts."""
    query = select(breakers).where(breakers.c.updated_at >= _now() - STALE)
    if handler is not None:
        query = query.where(breakers.c.handler == handler[:HANDLER_LENGTH])
    rows = await connection.execute(query.order_by(breakers.c.handler, breakers.c.worker_id))
    return [
        {
            "handler": row["handler"],
            "worker_id": redact(row["worker_id"]),
            "state": row["state"],
            "reason": row["reason"],
            "tripped_at": row["tripped_at"].isoformat() if row["tripped_at"] else None,
            "retry_in": row["retry_in"],
            "reset_requested": row["reset_at"] is not None,
        }
        for row in rows.mappings()
    ]


async def request_reset(connection: AsyncConnection, handler: str, by: str) -> int:
    """Ask every live worker with ``handler``'s breaker open to close it; how many there are."""
    changed = await connection.execute(
        update(breakers)
        .where(
            breakers.c.handler == handler[:HANDLER_LENGTH],
            breakers.c.updated_at >= _now() - STALE,
        )
        .values(reset_by=by[:WORKER_ID_LENGTH], reset_at=_now())
    )
    return int(changed.rowcount or 0)


class SqlBreakerBoard:
    """A worker's side (:class:`~novaconsole.engine.breaker.BreakerBoard`), on its store's
    engine; ``lock`` is the store's writer lock on SQLite (one writer per process)."""

    def __init__(self, engine: AsyncEngine, *, lock: anyio.Lock | None) -> None:
        self.engine = engine
        self._lock = lock
        self._reader = reader(engine)

    async def publish(self, worker_id: str, states: Sequence[BreakerState]) -> None:
        async def transaction() -> None:
            async with AsyncExitStack() as stack:
                if self._lock is not None:
                    await stack.enter_async_context(self._lock)
                connection = await stack.enter_async_context(self.engine.begin())
                await write_states(connection, worker_id, states)

        await uncancelled(transaction)

    async def take_resets(self, worker_id: str) -> list[tuple[str, str]]:
        return await self._read(lambda c: resets_for(c, worker_id))

    async def _read(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async def read() -> T:
            async with self._reader.connect() as connection:
                return await work(connection)

        return await uncancelled(read)


async def open_breakers(url: str, handler: str | None = None) -> list[dict[str, Any]]:
    """``novaconsole status``/``handlers``: breakers open on live workers of ``url``."""
    from novaconsole.store.queries import reading

    async with reading(url) as connection:
        if connection is None:
            return []
        return await read_open(connection, handler)


async def reset_breaker(url: str, handler: str, by: str) -> int:
    """``novaconsole breaker reset``: ask the workers with ``handler``'s breaker open to close
    it (each does within a second or two); how many workers were asked."""
    from novaconsole.engine.operator import AuditEntry
    from novaconsole.store.control_plane import add_audit, database_now
    from novaconsole.store.queries import writing

    async with writing(url) as connection:
        if connection is None:
            return 0
        asked = await request_reset(connection, handler, by)
        if asked:
            plural = "" if asked == 1 else "s"
            entry = AuditEntry(
                await database_now(connection),
                by,
                "breaker_reset",
                handler,
                "tripped",
                "closed",
                f"{asked} worker{plural}",
            )
            await add_audit(connection, [entry])
        return asked


async def reset_pending(url: str, handler: str) -> int:
    """Workers that have not carried out a reset of ``handler``'s breaker yet."""
    from novaconsole.store.queries import reading

    async with reading(url) as connection:
        if connection is None:
            return 0
        rows = await connection.execute(
            select(breakers.c.worker_id).where(
                breakers.c.handler == handler[:HANDLER_LENGTH],
                breakers.c.reset_at.is_not(None),
                breakers.c.updated_at >= _now() - STALE,
            )
        )
        return len(rows.all())


async def mark_tripped(status: dict[str, Any], url: str) -> dict[str, Any]:
    """``novaconsole status`` from the database: each handler whose breaker is open on a live
    worker is ``tripped``, with the reason (the first worker's) under ``breaker``."""
    for row in await open_breakers(url):
        view = status["handlers"].get(row["handler"])
        if view is None:
            continue
        if view["state"] in ("active", "failing"):
            view["state"] = "tripped"
        view["breaker"] = view.get("breaker") or row["reason"]
    return status

"""Retention: old results are deleted in small batches, each in its own short transaction.

Results are deleted oldest first by id (insertion order). The boundary is found with reads
only; the deletes then take the write lock for one batch at a time, so flushes and handler
transactions interleave with a long prune.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import anyio.lowlevel
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from novaconsole.store.database import PRUNE_BATCH, reader, uncancelled
from novaconsole.store.models import results


async def prune_bound(
    engine: AsyncEngine,
    *,
    keep_age: timedelta | None,
    keep_count: int | None,
    now: datetime | None = None,
) -> int | None:
    """The id below which every result is out of retention, or ``None`` if none is."""
    bounds: list[int] = []

    async def read() -> None:
        async with reader(engine).connect() as connection:
            if keep_count is not None:
                # The newest keep_count rows stay; the id just past them is the first to go.
                last_gone = await connection.scalar(
                    select(results.c.id).order_by(results.c.id.desc()).offset(keep_count).limit(1)
                )
                if last_gone is not None:
                    bounds.append(last_gone + 1)
            if keep_age is not None:
                cutoff = (now or datetime.now(UTC)) - keep_age
                oldest = await connection.scalar(
                    select(results.c.finished_at).order_by(results.c.id).limit(1)
                )
                if oldest is not None and oldest < cutoff:
                    first_kept = await connection.scalar(
                        select(results.c.id)
                        .where(results.c.finished_at >= cutoff)
                        .order_by(results.c.id)
                        .limit(1)
                    )
                    if first_kept is None:
                        first_kept = (await connection.scalar(select(func.max(results.c.id)))) + 1
                    bounds.append(first_kept)

    await uncancelled(read)
    return max(bounds) if bounds else None


async def prune_results(
    engine: AsyncEngine,
    lock: anyio.Lock,
    *,
    keep_age: timedelta | None,
    keep_count: int | None,
    now: datetime | None = None,
    batch: int = PRUNE_BATCH,
) -> int:
    """Delete results beyond ``keep_count`` or older than ``keep_age``; the number deleted.

    ``lock`` is the store's writer lock, held for one batch at a time.
    """
    if keep_age is None and keep_count is None:
        return 0
    bound = await prune_bound(engine, keep_age=keep_age, keep_count=keep_count, now=now)
    if bound is None:
        return 0
    doomed = select(results.c.id).where(results.c.id < bound).order_by(results.c.id).limit(batch)
    statement = delete(results).where(results.c.id.in_(doomed.scalar_subquery()))

    async def delete_batch() -> int:
        async with engine.begin() as connection:
            return (await connection.execute(statement)).rowcount

    deleted = 0
    while True:
        async with lock:
            count = await uncancelled(delete_batch)
        deleted += count
        if count < batch:
            return deleted
        await anyio.lowlevel.checkpoint()

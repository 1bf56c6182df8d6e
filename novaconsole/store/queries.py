"""Reading the database without starting the service (``novaconsole results``, ``handlers``,
``retry``, ``workers``).

Each function opens its own engine and disposes of it. A SQLite file that does not exist yet
is not created: it simply has no results.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from novaconsole.engine.fleet_protocol import WorkerView
from novaconsole.engine.outcomes import OutcomeStatus
from novaconsole.store.database import engine_on, reader
from novaconsole.store.fleet import read_workers
from novaconsole.store.models import item_states, results, stored_key
from novaconsole.store.rows import row_dict
from novaconsole.store.schema import ensure_schema, read_schema

TOTAL_KEYS = tuple(status.value for status in OutcomeStatus)


async def list_results(
    url: str, *, handler: str | None = None, status: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Recorded results, newest first, as JSON-ready dicts (timestamps in ISO 8601)."""
    query = select(results).order_by(results.c.id.desc()).limit(max(limit, 0))
    if handler is not None:
        query = query.where(results.c.handler == handler)
    if status is not None:
        query = query.where(results.c.status == str(status))
    async with reading(url) as connection:
        if connection is None:
            return []
        rows = await connection.execute(query)
        return [row_dict(row) for row in rows.mappings()]


async def handler_totals(url: str) -> dict[str, dict[str, Any]]:
    """Per handler: the count of each status among the kept results and ``last_finished_at``
    (ISO 8601, or ``None``)."""
    query = select(
        results.c.handler,
        results.c.status,
        func.count().label("count"),
        func.max(results.c.finished_at).label("last"),
    ).group_by(results.c.handler, results.c.status)
    totals: dict[str, dict[str, Any]] = {}
    latest: dict[str, datetime] = {}
    async with reading(url) as connection:
        if connection is None:
            return {}
        rows = await connection.execute(query)
        for name, status, count, last in rows:
            entry = totals.setdefault(name, dict.fromkeys(TOTAL_KEYS, 0))
            entry[status] = entry.get(status, 0) + count
            if last is not None and (name not in latest or last > latest[name]):
                latest[name] = last
    for name, entry in totals.items():
        entry["last_finished_at"] = latest[name].isoformat() if name in latest else None
    return totals


async def list_workers(url: str) -> list[WorkerView]:
    """The workers that share the database at ``url`` (``novaconsole workers``)."""
    async with reading(url) as connection:
        if connection is None:
            return []
        return await read_workers(connection)


async def forget_item(url: str, handler: str, item_id: str) -> bool:
    """Forget an item's attempts so that it is processed again; True if it had any.

    A service running meanwhile sees it at its next fetch of that item.
    """
    async with engine_on(url) as engine:
        if engine is None or not await _has_schema(engine):
            return False
        async with engine.begin() as connection:
            return await delete_item_state(connection, handler, item_id)


async def _has_schema(engine: AsyncEngine) -> bool:
    """Whether the database has novaconsole's tables, brought up to date first if they are
    older (as a worker would: see :func:`~novaconsole.store.schema.ensure_schema`)."""
    async with reader(engine).connect() as connection:
        state = await read_schema(connection)
    if state.status == "empty":
        return False
    if state.status != "current":
        await ensure_schema(engine)
    return True


@asynccontextmanager
async def reading(url: str) -> AsyncIterator[AsyncConnection | None]:
    """A read-only connection to ``url``, or ``None`` when the database has no novaconsole
    tables (a SQLite file that does not exist is not created)."""
    async with engine_on(url) as engine:
        if engine is None or not await _has_schema(engine):
            yield None
            return
        async with reader(engine).connect() as connection:
            yield connection


@asynccontextmanager
async def writing(url: str) -> AsyncIterator[AsyncConnection | None]:
    """A write transaction on ``url`` (committed at the end), or ``None`` when the database
    has no novaconsole tables."""
    async with engine_on(url) as engine:
        if engine is None or not await _has_schema(engine):
            yield None
            return
        async with engine.begin() as connection:
            yield connection


async def delete_item_state(connection: AsyncConnection, handler: str, item_id: str) -> bool:
    """Forget an item's attempts; True if it had any."""
    stored_name, stored_id = stored_key(handler, item_id)
    statement = item_states.delete().where(
        item_states.c.handler == stored_name, item_states.c.item_id == stored_id
    )
    return bool((await connection.execute(statement)).rowcount > 0)

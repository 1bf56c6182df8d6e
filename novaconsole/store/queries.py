"""Reading the database without starting the service (``novaconsole results``, ``handlers``,
``retry``), and filling the console from a running store.

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

from novaconsole.engine.outcomes import ItemOutcome, OutcomeStatus
from novaconsole.store.database import (
    OPEN_ERRORS,
    check_schema_version,
    connection_error,
    create_engine,
    ensure_schema,
    read_schema_version,
    reader,
    sqlite_file,
)
from novaconsole.store.models import (
    HANDLER_LENGTH,
    ITEM_ID_LENGTH,
    SCHEMA_VERSION,
    item_states,
    results,
)
from novaconsole.store.recorder import row_dict
from novaconsole.store.sql_store import SqlStore

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


async def forget_item(url: str, handler: str, item_id: str) -> bool:
    """Forget an item's attempts so that it is processed again; True if it had any.

    A service running meanwhile sees it at its next fetch of that item.
    """
    statement = item_states.delete().where(
        item_states.c.handler == handler[:HANDLER_LENGTH],
        item_states.c.item_id == str(item_id)[:ITEM_ID_LENGTH],
    )
    engine = _engine_for(url)
    if engine is None:
        return False
    try:
        async with engine.begin() as connection:
            if not await _usable(connection, engine):
                return False
            return (await connection.execute(statement)).rowcount > 0
    except OPEN_ERRORS as error:
        raise connection_error(error, engine) from None
    finally:
        await engine.dispose()


async def recent_results(store: SqlStore, limit: int = 200) -> list[ItemOutcome]:
    """The latest ``limit`` outcomes of an open store, oldest first (to fill the console)."""
    return await store.recent_outcomes(limit)


def _engine_for(url: str) -> AsyncEngine | None:
    """An engine for ``url``, or ``None`` for a SQLite file that does not exist."""
    engine = create_engine(url)
    path = sqlite_file(engine)
    return None if path is not None and not path.exists() else engine


async def _usable(connection: AsyncConnection, engine: AsyncEngine) -> bool:
    version = await read_schema_version(connection)
    check_schema_version(version, engine)
    return version is not None


@asynccontextmanager
async def reading(url: str) -> AsyncIterator[AsyncConnection | None]:
    """A read-only connection to ``url``, or ``None`` when the database has no novaconsole
    tables (a SQLite file that does not exist is not created)."""
    engine = _engine_for(url)
    if engine is None:
        yield None
        return
    try:
        try:
            async with reader(engine).connect() as connection:
                version = await read_schema_version(connection)
            if version is not None and version < SCHEMA_VERSION:
                await ensure_schema(engine)  # an older novaconsole wrote it: bring it up first
            async with reader(engine).connect() as connection:
                yield connection if await _usable(connection, engine) else None
        except OPEN_ERRORS as error:
            raise connection_error(error, engine) from None
    finally:
        await engine.dispose()

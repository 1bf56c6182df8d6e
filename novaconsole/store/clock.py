"""The database clock, which every lease, heartbeat and command time is read from.

PostgreSQL's ``now()`` is one clock for every worker on every machine. A SQLite file lives on
one machine, so there the clock is that machine's (the same for every process sharing the
file), read in this process and bound as a value: no round trip.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


def on_postgresql(connection: AsyncConnection) -> bool:
    """Whether ``connection`` is to PostgreSQL (else SQLite: the only two that share work)."""
    return connection.dialect.name == "postgresql"


def sql_now(connection: AsyncConnection) -> Any:
    """The database clock for a statement: ``now()`` on PostgreSQL, a bound value on SQLite."""
    return func.now() if on_postgresql(connection) else datetime.now(UTC)


async def database_now(connection: AsyncConnection) -> datetime:
    """The database clock, read (on SQLite without a query)."""
    if not on_postgresql(connection):
        return datetime.now(UTC)
    value = await connection.scalar(text("SELECT now()"))
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


async def engine_now(engine: AsyncEngine) -> datetime:
    """The database clock of ``engine`` (on SQLite without connecting)."""
    if engine.dialect.name != "postgresql":
        return datetime.now(UTC)
    async with engine.connect() as connection:
        return await database_now(connection)

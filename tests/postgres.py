"""A throwaway PostgreSQL database on the machine's server, for the tests that need one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # type: ignore[import-untyped]
import pytest

SERVER = "postgresql://postgres@127.0.0.1:5432/test"
"""Trust auth on loopback, database ``test``: see the machine's notes."""


@asynccontextmanager
async def throwaway_database(prefix: str, *, password: str | None = None) -> AsyncIterator[str]:
    """The async URL of a fresh database, dropped afterwards (its connections too); the test
    is skipped, saying why, when no server answers on 127.0.0.1:5432."""
    try:
        admin = await asyncpg.connect(SERVER, timeout=3)
    except (OSError, asyncpg.PostgresError) as error:
        pytest.skip(f"PostgreSQL server on 127.0.0.1:5432 unreachable: {error}")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    user = f"postgres:{password}" if password else "postgres"
    try:
        yield f"postgresql+asyncpg://{user}@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def drop_database(url: str) -> None:
    """Drop the database of ``url`` now (a test that needs its database to vanish)."""
    name = url.rsplit("/", 1)[-1]
    admin = await asyncpg.connect(SERVER, timeout=3)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()

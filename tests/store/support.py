"""What store tests do to a database from outside (outcomes come from :mod:`tests.factories`)."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncConnection

from novaconsole.engine.outcomes import ItemOutcome
from novaconsole.store import SqlStore
from novaconsole.store.database import engine_on
from novaconsole.store.fleet import insert_command, write_controls
from novaconsole.store.schema import ensure_schema
from tests.factories import outcome

T = TypeVar("T")

__all__ = ["join_driver_threads", "outcome"]


async def join_driver_threads() -> None:
    """Wait for aiosqlite's worker threads to end.

    After a failed connect, aiosqlite stops its thread without awaiting it; if the test's event
    loop closed first, the thread would report to a closed loop.
    """
    workers = [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]
    for worker in workers:
        await anyio.to_thread.run_sync(worker.join, 5.0)


async def recent_results(store: SqlStore, limit: int = 200) -> list[ItemOutcome]:
    """The latest ``limit`` outcomes of an open store, oldest first."""
    return await store.recent_outcomes(limit)


async def _writing(url: str, write: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    async with engine_on(url) as engine:
        assert engine is not None, f"no database at {url}"
        await ensure_schema(engine)
        async with engine.begin() as connection:
            return await write(connection)


async def enqueue_command(url: str, kind: str, args: Mapping[str, Any] | None = None) -> int:
    """Queue a fleet command (``run_once``) on the database at ``url``; its id."""
    return await _writing(url, lambda connection: insert_command(connection, kind, args))


async def update_controls(url: str, **changes: Any) -> None:
    """:func:`~novaconsole.store.fleet.write_controls` on the database at ``url``."""
    await _writing(url, lambda connection: write_controls(connection, **changes))

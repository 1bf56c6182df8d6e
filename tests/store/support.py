"""Helpers for store tests (outcomes come from :mod:`tests.factories`)."""

from __future__ import annotations

import threading

import anyio
import anyio.to_thread

from tests.factories import outcome

__all__ = ["join_driver_threads", "outcome"]


async def join_driver_threads() -> None:
    """Wait for aiosqlite's worker threads to end.

    After a failed connect, aiosqlite stops its thread without awaiting it; if the test's event
    loop closed first, the thread would report to a closed loop.
    """
    workers = [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]
    for worker in workers:
        await anyio.to_thread.run_sync(worker.join, 5.0)

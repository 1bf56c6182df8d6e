"""Outcomes to record in store tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import anyio
import anyio.to_thread

from novaconsole.engine.outcomes import Attempt, ItemOutcome, OutcomeStatus


def outcome(
    item_id: object = 1,
    *,
    handler: str = "Ping",
    status: OutcomeStatus = OutcomeStatus.SUCCEEDED,
    attempts: int = 1,
    error: str | None = None,
    finished_at: datetime | None = None,
) -> ItemOutcome:
    """A final outcome with one attempt per ``attempts``, finished at ``finished_at``."""
    finished = finished_at or datetime.now(UTC)
    started = finished - timedelta(seconds=attempts)
    history = tuple(
        Attempt(
            number=n,
            started_at=started + timedelta(seconds=n - 1),
            duration=0.5,
            error=error if n == attempts or error is None else f"try {n}: {error}",
        )
        for n in range(1, attempts + 1)
    )
    return ItemOutcome(
        handler=handler,
        item_id=item_id,
        status=status,
        attempts=attempts,
        duration=0.5 * attempts,
        error=error,
        started_at=started,
        finished_at=finished,
        traceback="Traceback (most recent call last):\n  boom" if error else None,
        history=history,
    )


async def join_driver_threads() -> None:
    """Wait for aiosqlite's worker threads to end.

    After a failed connect, aiosqlite stops its thread without awaiting it; if the test's event
    loop closed first, the thread would report to a closed loop.
    """
    workers = [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]
    for worker in workers:
        await anyio.to_thread.run_sync(worker.join, 5.0)

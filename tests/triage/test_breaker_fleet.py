"""A tripped breaker in the database: a headless worker on a SQLite file shows it to operators
and closes it when `breaker reset` asks (as from another terminal), within a sync or two."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from novaconsole import RetryPolicy
from novaconsole.engine.events import BreakerClosed, BreakerTripped
from novaconsole.store import open_store
from novaconsole.store.breakers import open_breakers, reset_breaker, reset_pending
from tests.engine.support import next_event, processing
from tests.engine.test_breaker import Feed

pytestmark = pytest.mark.anyio


async def until(check: object, within: float = 10.0) -> None:
    with anyio.fail_after(within):
        # The database has no events to wait for: look again, as an operator's CLI would.
        while not await check():  # type: ignore[operator]  # noqa: ASYNC110
            await anyio.sleep(0.02)


async def test_reset_through_the_database_reaches_a_running_worker(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'n.db'}"
    feed = Feed()
    service = (
        processing(
            poll_interval=0.01,
            max_concurrency=1,
            retry=RetryPolicy(max_attempts=1),
            breaker_cooldown=600,
        )
        .add_handler(feed.handler(), name="A", max_items_per_cycle=2, breaker_threshold=2)
        .build(url, store=open_store(url))
    )
    events = service.events()
    async with service.running():
        await next_event(events, lambda e: isinstance(e, BreakerTripped))

        async def shown() -> bool:
            return bool(await open_breakers(url))

        await until(shown)
        [row] = await open_breakers(url)
        assert row["handler"] == "A" and row["state"] == "tripped"
        assert row["reason"].startswith("breaker: 2 failures in a row: RuntimeError: boom")
        assert row["worker_id"] == service.worker_id

        feed.failing = False
        assert await reset_breaker(url, "A", "cli@ops1") == 1
        event = await next_event(events, lambda e: isinstance(e, BreakerClosed), within=10)
        assert isinstance(event, BreakerClosed) and event.why == "reset by cli@ops1"

        async def gone() -> bool:
            return not await open_breakers(url) and not await reset_pending(url, "A")

        await until(gone)
        assert await reset_breaker(url, "A", "cli@ops1") == 0  # nothing open any more

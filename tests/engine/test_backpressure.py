"""A store that cannot keep up slows the engine down; no outcome is dropped."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from novaconsole.store.sql_store import SqlStore
from tests.engine.support import processing

# Holds the database locked from outside until the service pushes back: tens of seconds.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@dataclass(frozen=True)
class Item:
    id: int


class Plenty:
    async def fetch_next(self, max_items: int) -> list[Item]:
        return [Item(i) for i in range(max_items)]

    async def process(self, item: Item) -> None:
        return None


@pytest.mark.xfail(
    strict=False,
    reason="open (issue 11 follow-up): once in the full suite, with the database locked from "
    "outside, the store did not report 'not accepting' within 60 s (the crash records' start "
    "mark and the single writer's retries both wait on the lock); the outcomes dropped in that "
    "log came after the timeout, from the teardown's cancelled items. Passes alone in 50 s.",
)
async def test_workers_wait_for_the_writer_instead_of_dropping_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "slow.db"
    store = SqlStore(f"sqlite+aiosqlite:///{path}", buffer_capacity=100, flush_at=20)
    service = (
        processing(max_concurrency=4)
        .add_handler(Plenty, name="Plenty", max_items_per_cycle=500)
        .build(store=store)
    )
    async with service.running(poll=False):
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the store's writer now waits for the file
        async with anyio.create_task_group() as group:
            group.start_soon(service.run_once)
            # A guard, not a timing: admission first waits out the busy timeout (5 s) to
            # record the batch's start, gives up on that (a locked database is not the
            # items' fault) and runs them unmarked; then the outcome buffer fills.
            with anyio.fail_after(60):
                while store.accepting:
                    await anyio.wait_all_tasks_blocked()
            await anyio.wait_all_tasks_blocked()
            snap = service.snapshot()
            assert snap.in_flight == 0, "no item starts while the store is not accepting"
            assert snap.queue_depth > 0
            assert store.buffered_outcomes <= 50 + 4
            blocker.rollback()
        await store.settled()
    blocker.close()
    assert store.dropped_outcomes == 0
    with sqlite3.connect(path) as connection:
        (rows,) = connection.execute("SELECT count(*) FROM novaconsole_results").fetchone()
    assert rows == 500

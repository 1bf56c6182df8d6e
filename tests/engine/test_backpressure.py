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

ITEMS = 500


@dataclass(frozen=True)
class Item:
    id: int


class Plenty:
    """Hands out ``ITEMS`` items; counts those that start while the store is not accepting."""

    store: SqlStore
    started_refused = 0

    async def fetch_next(self, max_items: int) -> list[Item]:
        return [Item(i) for i in range(max_items)]

    async def process(self, item: Item) -> None:
        if not Plenty.store.accepting:
            Plenty.started_refused += 1


async def test_workers_wait_for_the_writer_instead_of_dropping_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "slow.db"
    store = SqlStore(f"sqlite+aiosqlite:///{path}", buffer_capacity=100, flush_at=20)
    Plenty.store, Plenty.started_refused = store, 0
    service = (
        processing(max_concurrency=4)
        .add_handler(Plenty, name="Plenty", max_items_per_cycle=ITEMS)
        .build(store=store)
    )
    async with service.running(poll=False):
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # locked from outside: every write of the store waits
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(service.run_once)
                # Admission waits out the start mark's short busy timeout (1 s), runs the
                # batch unmarked (a locked database is not the items' fault), and the
                # outcomes pile up until the store stops accepting. Everything then waits:
                # the slots for the writer, the writer for the file. The limit is a guard.
                with anyio.fail_after(60):
                    while store.accepting:
                        await anyio.wait_all_tasks_blocked()
                    await anyio.wait_all_tasks_blocked()
                snap = service.snapshot()
                assert snap.in_flight == 0, "the slots wait for the writer"
                assert snap.queue_depth > 0
                assert 50 <= store.buffered_outcomes <= 50 + 4
                blocker.rollback()
                with anyio.fail_after(60):
                    await store.settled()
        finally:
            blocker.close()
    assert Plenty.started_refused == 0, "no item starts while the store is not accepting"
    assert store.dropped_outcomes == 0
    with sqlite3.connect(path) as connection:
        (rows,) = connection.execute("SELECT count(*) FROM novaconsole_results").fetchone()
    assert rows == ITEMS

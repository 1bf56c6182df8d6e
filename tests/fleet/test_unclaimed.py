"""``ctx.unclaimed()``: a fetch on the natural ``ORDER BY id`` query leaves out what other
workers hold and what this worker has in flight (issue 16).

Items wait at a gate (a row the test inserts), so a batch stays in flight for as long as the
test needs: what each fetch returned is then certain, not a matter of timing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from sqlalchemy import Boolean, Column, Integer, MetaData, Table, select, text

from novaconsole import BackgroundProcessing, HandlerContext
from novaconsole.store import open_store
from tests.fleet.conftest import Fleet

pytestmark = pytest.mark.anyio

GATED = ("--order", "unclaimed", "--gated", "--batch", "5", "--concurrency", "5")
GATE_TABLES = (
    "CREATE TABLE fleet_gate (opened INTEGER)",
    "CREATE TABLE fleet_fetches (worker TEXT NOT NULL, item_id INTEGER NOT NULL)",
)


async def _execute(fleet: Fleet, *statements: str) -> None:
    async with fleet.engine.begin() as connection:
        for statement in statements:
            await connection.execute(text(statement))


async def _fetched(fleet: Fleet, worker: str) -> list[int]:
    rows = await fleet.rows(
        "SELECT item_id FROM fleet_fetches WHERE worker = :w ORDER BY item_id", w=worker
    )
    return [row.item_id for row in rows]


async def _two_workers_take_different_rows(fleet: Fleet) -> None:
    await fleet.setup(20)
    await _execute(fleet, *GATE_TABLES)
    [first] = fleet.start(1, *GATED, "--lease", "5")
    await fleet.ready([first])

    async def first_holds_its_batch() -> bool:
        held = await fleet.scalar("SELECT count(*) FROM novaconsole_claims WHERE state = 'held'")
        return bool(held == 5)

    await fleet.until(first_holds_its_batch, 30, "the first worker to claim its batch")
    [second] = fleet.start(1, *GATED, "--lease", "5")
    await fleet.ready([second])

    async def second_fetched() -> list[int]:
        return await _fetched(fleet, second.worker_id)

    await fleet.until(second_fetched, 30, "the second worker's first fetch")
    # Both ask for the head of the same natural query: the second gets the next rows.
    assert await _fetched(fleet, first.worker_id) == [1, 2, 3, 4, 5]
    assert await _fetched(fleet, second.worker_id) == [6, 7, 8, 9, 10]

    await _execute(fleet, "INSERT INTO fleet_gate (opened) VALUES (1)")

    async def all_done() -> bool:
        done = await fleet.scalar("SELECT count(*) FROM fleet_items WHERE done")
        return bool(done == 20)

    await fleet.until(all_done, 60, "every item done")
    runs = await fleet.rows("SELECT item_id, count(*) AS n FROM fleet_runs GROUP BY item_id")
    assert sorted(row.item_id for row in runs) == list(range(1, 21))
    assert all(row.n == 1 for row in runs)
    await fleet.stop()


@pytest.mark.postgres
async def test_postgres_two_workers_on_the_natural_query_take_different_rows(
    pg_fleet: Fleet,
) -> None:
    await _two_workers_take_different_rows(pg_fleet)


async def test_sqlite_two_workers_on_the_natural_query_take_different_rows(
    sqlite_fleet: Fleet,
) -> None:
    await _two_workers_take_different_rows(sqlite_fleet)


metadata = MetaData()
work = Table(
    "work",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("done", Boolean, nullable=False, default=False),
)


@dataclass(frozen=True)
class Row:
    id: int


@dataclass
class Gate:
    """The first ``held`` items wait for ``opened``; every fetch is written down."""

    held: int
    opened: anyio.Event
    started: anyio.Event
    fetches: list[list[int]]
    in_flight_seen: list[list[int]]


def _drain(gate: Gate) -> type:
    class Drain:
        def __init__(self, ctx: HandlerContext) -> None:
            self.ctx = ctx

        async def fetch_next(self, max_items: int) -> Sequence[Row]:
            gate.in_flight_seen.append(sorted(self.ctx.in_flight_ids()))
            query = select(work.c.id).where(~work.c.done).order_by(work.c.id)
            async with self.ctx.session() as session:
                rows = await session.scalars(self.ctx.unclaimed(query, work.c.id).limit(max_items))
                ids = list(rows)
            gate.fetches.append(ids)
            return [Row(i) for i in ids]

        async def process(self, item: Row) -> None:
            if item.id <= gate.held:
                if item.id == gate.held:
                    gate.started.set()
                await gate.opened.wait()
            self.ctx.write(work.update().where(work.c.id == item.id).values(done=True))

    return Drain


@pytest.mark.parametrize("shared", [False, True], ids=["alone", "with-claims"])
async def test_a_workers_next_fetch_skips_its_own_in_flight_rows(
    tmp_path: Path, shared: bool
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'drain.db'}"
    store = open_store(url, shared=shared)
    await store.open()
    async with store.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(work.insert(), [{"id": i, "done": False} for i in range(1, 13)])
    gate = Gate(held=4, opened=anyio.Event(), started=anyio.Event(), fetches=[], in_flight_seen=[])
    service = (
        BackgroundProcessing(poll_interval=3600, max_concurrency=8)
        .add_handler(_drain(gate), name="Drain", max_items_per_cycle=4)
        .build(store=store)
    )
    async with service.running():
        await gate.started.wait()  # the poll loop's batch, rows 1-4, is in flight
        report = await service.run_once()
        assert gate.fetches[:2] == [[1, 2, 3, 4], [5, 6, 7, 8]]
        assert gate.in_flight_seen[1] == [1, 2, 3, 4]
        assert len(report.outcomes) == 4
        gate.opened.set()
        await service.run_once()
    async with store.engine.connect() as connection:
        left = await connection.scalar(select(work.c.id).where(~work.c.done).limit(1))
    await store.close()
    assert left is None

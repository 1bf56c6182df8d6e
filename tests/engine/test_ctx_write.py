"""ctx.write(): items' statements run grouped, one commit, a savepoint per item.

The store's one writer runs the group, on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select, update

from novaconsole import HandlerContext, HandlerPurpose, OutcomeStatus, RetryPolicy
from novaconsole.store import open_store
from novaconsole.store.sql_store import SqlStore
from tests.engine.support import processing
from tests.postgres import throwaway_database

pytestmark = pytest.mark.anyio

metadata = MetaData()
work = Table(
    "work",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("state", String(20), nullable=False),
)


@dataclass(frozen=True)
class Row:
    id: int


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    if request.param == "sqlite":
        yield open_store(f"sqlite+aiosqlite:///{tmp_path / 'work.db'}")
        return
    async with throwaway_database("nc_grouped") as url:
        yield open_store(url)


async def fill(store: SqlStore, rows: int) -> None:
    async with store.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(
            insert(work), [{"id": i, "state": "pending"} for i in range(1, rows + 1)]
        )


async def test_ctx_write_without_a_database_fails_the_item() -> None:
    class NoDatabase(WriteDone):
        async def fetch_next(self, max_items: int) -> list[Row]:
            return [Row(1)]

    service = (
        processing(retry=RetryPolicy(max_attempts=1)).add_handler(NoDatabase, name="N").build()
    )
    async with service.running(poll=False):
        [outcome] = (await service.run_once()).outcomes
    assert outcome.status is OutcomeStatus.FAILED
    assert "used ctx.write(), but the service was built without a database" in (outcome.error or "")


class WriteDone:
    """Marks each row done through ctx.write(): the worker moves on, the outcome waits. Row 7
    also inserts a duplicate key (only its savepoint is rolled back); row 9 raises."""

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx

    async def fetch_next(self, max_items: int) -> list[Row]:
        async with self.ctx.session() as session:
            ids = await session.scalars(
                select(work.c.id).where(work.c.state == "pending").order_by(work.c.id)
            )
            return [Row(row_id) for row_id in ids][:max_items]

    async def process(self, item: Row) -> None:
        self.ctx.write(update(work).where(work.c.id == item.id).values(state="done"))
        if item.id == 7:
            self.ctx.write(insert(work).values(id=1, state="duplicate"))
        if item.id == 9:
            raise ValueError("item 9 gives up before its writes run")


async def test_ctx_write_records_outcomes_only_once_committed(store: SqlStore) -> None:
    await fill(store, rows=40)
    service = (
        processing(max_concurrency=4, retry=RetryPolicy(max_attempts=1))
        .add_handler(WriteDone, name="WriteDone", max_items_per_cycle=40)
        .build(store=store)
    )
    commits: list[int] = []
    async with service.running(poll=False):
        event.listen(store.engine.sync_engine, "commit", lambda conn: commits.append(1))
        report = await service.run_once()
        async with store.engine.connect() as connection:
            states = dict((await connection.execute(select(work.c.id, work.c.state))).all())
    by_id = {o.item_id: o for o in report.outcomes}
    assert by_id[7].status is OutcomeStatus.FAILED
    assert "IntegrityError" in (by_id[7].error or "")
    assert by_id[7].history[-1].error == by_id[7].error
    assert by_id[9].status is OutcomeStatus.FAILED
    assert {by_id[i].status for i in by_id if i not in (7, 9)} == {OutcomeStatus.SUCCEEDED}
    assert (states[7], states[9]) == ("pending", "pending")
    assert all(state == "done" for row_id, state in states.items() if row_id not in (7, 9))
    assert 1 <= len(commits) < 38, f"{len(commits)} commits for 38 items"


class MarkFailed(WriteDone):
    """Fails rows 3 and 5 for good; ``on_failure`` marks them failed with ctx.write() (row 5's
    mark breaks a constraint: the failure is still recorded, without it)."""

    async def process(self, item: Row) -> None:
        if item.id in (3, 5):
            raise ValueError(f"row {item.id} is bad")
        await super().process(item)

    async def on_failure(self, item: Row, error: BaseException) -> None:
        self.ctx.write(update(work).where(work.c.id == item.id).values(state="failed"))
        if item.id == 5:
            self.ctx.write(insert(work).values(id=1, state="duplicate"))


async def test_ctx_write_in_on_failure_is_written_with_the_failure(store: SqlStore) -> None:
    await fill(store, rows=6)
    service = (
        processing(max_concurrency=2, retry=RetryPolicy(max_attempts=1))
        .add_handler(MarkFailed, name="MarkFailed", max_items_per_cycle=10)
        .build(store=store)
    )
    async with service.running(poll=False):
        report = await service.run_once()
        second = await service.run_once()  # row 5 is still pending at its source: skipped
        async with store.engine.connect() as connection:
            states = dict((await connection.execute(select(work.c.id, work.c.state))).all())
    statuses = {o.item_id: o.status for o in report.outcomes}
    assert statuses == {
        1: OutcomeStatus.SUCCEEDED,
        2: OutcomeStatus.SUCCEEDED,
        3: OutcomeStatus.FAILED,
        4: OutcomeStatus.SUCCEEDED,
        5: OutcomeStatus.FAILED,
        6: OutcomeStatus.SUCCEEDED,
    }
    assert states == {1: "done", 2: "done", 3: "failed", 4: "done", 5: "pending", 6: "done"}
    assert [(o.item_id, o.status) for o in second.outcomes] == [(5, OutcomeStatus.SKIPPED)]


async def test_ctx_write_outside_the_engine_waits_for_flush_writes(tmp_path: Path) -> None:
    store = open_store(f"sqlite+aiosqlite:///{tmp_path / 'work.db'}")
    await fill(store, rows=2)
    ctx = HandlerContext(
        name="WriteDone", purpose=HandlerPurpose.INTERNAL, session_factory=store.session_factory
    )
    handler = WriteDone(ctx)
    for row in await handler.fetch_next(10):
        await handler.process(row)
    async with store.engine.connect() as connection:
        before = sorted((await connection.execute(select(work.c.state))).scalars())
    await ctx.flush_writes()
    async with store.engine.connect() as connection:
        after = sorted((await connection.execute(select(work.c.state))).scalars())
    await ctx.aclose()
    await store.engine.dispose()
    assert (before, after) == (["pending", "pending"], ["done", "done"])


def test_only_consecutive_uses_of_one_statement_are_merged() -> None:
    from novaconsole.engine.writes import ItemWrites
    from novaconsole.store.write_batch import PendingWrites, _merged

    mark = update(work).values(state="done")
    audit = insert(work)

    def entry(*statements: tuple[object, object]) -> PendingWrites:
        writes = ItemWrites()
        for statement, params in statements:
            writes.execute(statement, params)  # type: ignore[arg-type]
        return PendingWrites(writes, None, lambda error: None)

    def merged(entries: list[PendingWrites]) -> object:
        return _merged(entries, lambda outcome: True)

    same = [entry((mark, {"id": i})) for i in range(3)]
    assert merged(same) == [(mark, [{"id": 0}, {"id": 1}, {"id": 2}])]
    alternating = [entry((mark, {"id": i}), (audit, {"id": i})) for i in range(2)]
    assert merged(alternating) == [
        (mark, {"id": 0}),
        (audit, {"id": 0}),
        (mark, {"id": 1}),
        (audit, {"id": 1}),
    ], "an item's own statements keep their order"
    many = [entry((mark, [{"id": 1}, {"id": 2}])), entry((mark, {"id": 3}))]
    assert merged(many) == [(mark, [{"id": 1}, {"id": 2}]), (mark, {"id": 3})]

"""ctx.batch_session(): one transaction per batch, a savepoint per item, on a real SQLite file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from novaconsole import HandlerContext, OutcomeStatus, RetryPolicy
from novaconsole.store import open_store
from tests.engine.support import processing

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Row:
    id: int


class MarkDone:
    """Sets each pending row done through the shared batch transaction; row 7 fails after."""

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx

    async def fetch_next(self, max_items: int) -> list[Row]:
        async with self.ctx.session() as session:
            result = await session.execute(
                text("SELECT id FROM work WHERE state = 'pending' ORDER BY id LIMIT :n"),
                {"n": max_items},
            )
            return [Row(row_id) for (row_id,) in result]

    async def process(self, item: Row) -> None:
        async with self.ctx.batch_session() as session:
            await session.execute(
                text("UPDATE work SET state = 'done' WHERE id = :id"), {"id": item.id}
            )
            if item.id == 7:
                raise ValueError("row 7 is cursed")


async def prepare(tmp_path: Path, rows: int) -> Any:
    url = f"sqlite+aiosqlite:///{tmp_path / 'work.db'}"
    store = open_store(url)
    async with store.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE work (id INTEGER PRIMARY KEY, state TEXT)"))
        await connection.execute(
            text("INSERT INTO work (id, state) VALUES (:id, 'pending')"),
            [{"id": i} for i in range(1, rows + 1)],
        )
    return store


async def test_items_share_commits_and_a_failing_item_rolls_back_alone(tmp_path: Path) -> None:
    store = await prepare(tmp_path, rows=40)
    commits: list[int] = []
    event.listen(store.engine.sync_engine, "commit", lambda conn: commits.append(1))
    service = (
        processing(max_concurrency=4, retry=RetryPolicy(max_attempts=1))
        .add_handler(MarkDone, name="MarkDone", max_items_per_cycle=40)
        .build(store=store)
    )
    async with service.running(poll=False):
        commits.clear()
        report = await service.run_once()
        # Read at once: every success was durable before its outcome was reported.
        async with store.engine.connect() as connection:
            states = dict((await connection.execute(text("SELECT id, state FROM work"))).all())
    by_status = {o.item_id: o.status for o in report.outcomes}
    assert by_status.pop(7) is OutcomeStatus.FAILED
    assert set(by_status.values()) == {OutcomeStatus.SUCCEEDED}
    assert states[7] == "pending", "the failing item's savepoint was rolled back"
    assert all(state == "done" for row_id, state in states.items() if row_id != 7)
    assert 1 <= len(commits) < 39, f"{len(commits)} commits for 39 items"


async def test_a_failed_commit_fails_the_items_it_held(tmp_path: Path) -> None:
    store = await prepare(tmp_path, rows=1)
    async with store.engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER "
                "REFERENCES work(id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )

    class OrphanMaker(MarkDone):
        async def process(self, item: Row) -> None:
            async with self.ctx.batch_session() as session:
                await session.execute(
                    text("UPDATE work SET state = 'done' WHERE id = :id"), {"id": item.id}
                )
                # Passes at once; the deferred foreign key fails only at COMMIT.
                await session.execute(text("INSERT INTO child (id, parent) VALUES (1, 999)"))

    service = (
        processing(retry=RetryPolicy(max_attempts=1))
        .add_handler(OrphanMaker, name="Orphans")
        .build(store=store)
    )
    async with service.running(poll=False):
        report = await service.run_once()
        async with store.engine.connect() as connection:
            state = (await connection.execute(text("SELECT state FROM work"))).scalar_one()
    [outcome] = report.outcomes
    assert outcome.status is OutcomeStatus.FAILED
    assert "failed to commit" in (outcome.error or "")
    assert state == "pending"

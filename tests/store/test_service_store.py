"""The store behind a real service: what a run leaves in SQLite is there after a restart."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from novaconsole import BackgroundProcessing, HandlerContext, OutcomeStatus, RetryPolicy
from novaconsole.engine.service import ProcessingService
from novaconsole.store.queries import list_results

pytestmark = pytest.mark.anyio

BAD_ITEM = 3


@dataclass(frozen=True)
class Item:
    id: int


class RecordingHandler:
    """Items 1-5; item 3 always fails. Each processed item is written through ctx.session()."""

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx

    async def fetch_next(self, max_items: int) -> Sequence[Item]:
        async with self.ctx.session() as session:
            done = set(await session.scalars(text("SELECT item_id FROM processed")))
        return [Item(i) for i in range(1, 6) if i not in done][:max_items]

    async def process(self, item: Item) -> None:
        if item.id == BAD_ITEM:
            raise RuntimeError("item 3 is broken")
        async with self.ctx.session() as session, session.begin():
            await session.execute(text("INSERT INTO processed VALUES (:id)"), {"id": item.id})


def build(db_url: str) -> ProcessingService:
    return (
        BackgroundProcessing(
            poll_interval=3600,
            shutdown_grace=2,
            retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02),
        )
        .add_handler(RecordingHandler, name="Ping", max_items_per_cycle=10)
        .build(database_url=db_url)
    )


async def test_results_states_and_controls_survive_a_service_restart(
    db_url: str, db_path: Path
) -> None:
    with sqlite3.connect(db_path) as connection:
        connection.execute("CREATE TABLE processed (item_id INTEGER PRIMARY KEY)")

    first = build(db_url)
    async with first.running(poll=False):
        report = await first.run_once()
        first.set_batch_size("Ping", 7)
        first.set_concurrency(3)
        first.pause_handler("Ping")
    assert {(o.item_id, o.status) for o in report.outcomes} == {
        (1, OutcomeStatus.SUCCEEDED),
        (2, OutcomeStatus.SUCCEEDED),
        (3, OutcomeStatus.FAILED),
        (4, OutcomeStatus.SUCCEEDED),
        (5, OutcomeStatus.SUCCEEDED),
    }

    second = build(db_url)
    async with second.running(poll=False):
        view = second.snapshot().handlers["Ping"]
        concurrency = second.snapshot().concurrency
        second.resume_handler("Ping")
        skipped = await second.run_once()
        reopened = await second.retry_item("Ping", BAD_ITEM)
        retried = await second.run_once()

    assert (view.paused, view.batch_size, concurrency) == (True, 7, 3)
    assert [(o.item_id, o.status) for o in skipped.outcomes] == [(3, OutcomeStatus.SKIPPED)]
    assert reopened is True
    assert [(o.item_id, o.status, o.attempts) for o in retried.outcomes] == [
        (3, OutcomeStatus.FAILED, 2)
    ]
    rows = await list_results(db_url, handler="Ping", limit=100)
    assert [(r["item_id"], r["status"]) for r in rows[:2]] == [
        ("3", "failed"),
        ("3", "skipped"),
    ]
    assert len(rows) == 7
    failed = next(r for r in rows if r["status"] == "failed")
    assert [a["error"] for a in failed["history"]] == ["RuntimeError: item 3 is broken"] * 2
    with sqlite3.connect(db_path) as connection:
        processed = connection.execute("SELECT count(*) FROM processed").fetchone()[0]
    assert processed == 4

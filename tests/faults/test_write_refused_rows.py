"""A row the database refuses for a reason of its own (a constraint, a trigger): not a fault of
the database, so not retried forever. The writer splits the batch down to that row, records
every other outcome, logs one line naming the refused one, and goes on writing."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from novaconsole.store.sql_store import SqlStore
from tests.engine.support import processing

pytestmark = pytest.mark.anyio

REFUSE = (
    "CREATE TRIGGER refuse_poison BEFORE INSERT ON novaconsole_results "
    "WHEN NEW.item_id = 'poison' BEGIN SELECT RAISE(ABORT, 'poison is not welcome'); END"
)


@dataclass(frozen=True)
class Item:
    id: str


class Batch:
    """Twenty items, one of which ("poison") the database will not take a result row for;
    with ``Batch.writes``, each item marks itself done in ``source`` through ``ctx.write``."""

    writes = False

    def __init__(self, ctx: object) -> None:
        self.ctx = ctx

    async def fetch_next(self, max_items: int) -> Sequence[Item]:
        ids = [f"ok-{i}" for i in range(10)] + ["poison"] + [f"ok-{i}" for i in range(10, 19)]
        return [Item(i) for i in ids]

    async def process(self, item: Item) -> None:
        if Batch.writes:
            self.ctx.write(  # type: ignore[attr-defined]
                "INSERT OR IGNORE INTO source (id) VALUES (:id)", {"id": item.id}
            )


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(sql).fetchall()


@pytest.mark.parametrize("writes", [False, True], ids=["outcomes", "ctx-write"])
async def test_one_refused_row_does_not_wedge_the_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, writes: bool
) -> None:
    path = tmp_path / "refusing.db"
    store = SqlStore(f"sqlite+aiosqlite:///{path}")
    await store.open()
    with sqlite3.connect(path) as connection:
        connection.execute(REFUSE)
        connection.execute("CREATE TABLE source (id TEXT PRIMARY KEY)")
    Batch.writes = writes
    service = (
        processing(max_concurrency=4)
        .add_handler(Batch, name="Batch", max_items_per_cycle=20, max_attempts=2)
        .build(store=store)
    )
    async with service.running(poll=False):
        with anyio.fail_after(60):  # a guard: without the split, the writer retries forever
            await service.run_once()
            await store.settled()
            # The writer goes on: the next cycle is written too (its items all succeed again).
            await service.run_once()
            await store.settled()
    results = rows(path, "SELECT item_id, status FROM novaconsole_results")
    recorded = sorted(item for item, _ in results)
    assert recorded == sorted([f"ok-{i}" for i in range(19)] * 2), "all but the refused row"
    assert {status for _, status in results} == {"succeeded"}
    refused = [r.getMessage() for r in caplog.records if "database refused the" in r.getMessage()]
    assert refused, caplog.text
    assert all("Batch item poison" in message for message in refused), refused
    if writes:
        # Its writes were rolled back with its refused result: not done at its source.
        done = {row[0] for row in rows(path, "SELECT id FROM source")}
        assert done == {f"ok-{i}" for i in range(19)}
